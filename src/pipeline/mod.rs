//! The stages an upload goes through after it lands, one module per stage:
//! `worker` claims durable jobs, `process` runs one (download, `scan`, `extract`,
//! save, records), `monitor` reports each step to the upload's sockets.

pub mod monitor;
pub mod process;
pub mod worker;

/// How many times a job is tried before it fails for good.
pub const MAX_ATTEMPTS: i64 = 8;
