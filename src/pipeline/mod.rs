//! The processing pipeline: after an upload completes, scan, extract, save, create records.

pub mod extract;

/// How many times a job is tried before it fails for good.
pub const MAX_ATTEMPTS: i64 = 8;
