//! Safe extraction of untrusted ZIP uploads: every file in the archive becomes one record.
//!
//! [`SafeArchive::open`] validates the whole archive before anything is extracted and
//! refuses it outright on any sign of a hostile or ambiguous archive: unsafe names,
//! links and other non-regular entries, names that collide once Unicode normalisation
//! and case are ignored, encryption, compression methods other than stored/deflate,
//! overlapping entries (overlap bombs), local headers that disagree with the central
//! directory, and declared sizes, counts or ratios over [`ExtractLimits`].
//! [`SafeArchive::extract_to`] then inflates one entry at a time into a file the caller
//! chooses, through a fixed buffer, counting the bytes it really inflates rather than
//! trusting the headers.
//!
//! The `zip` crate parses the central directory and inflates; this crate does not
//! trust its view alone. It reads each entry's central and local headers itself
//! (positional reads on a second handle) and requires them to agree with the crate, so
//! readers that walk local headers (streaming unzippers, scanners) and readers that use
//! the central directory cannot be shown two different archives.
//!
//! The modules follow the checks in the order they run: `directory` (end records and
//! the central directory), `validate` (each entry's type, method and sizes), `names`
//! (name safety and duplicates), `headers` (local headers against the central
//! directory), then `inflate` (streaming extraction, counting, hashing). `archive` ties
//! them together behind [`SafeArchive`].
//!
//! Everything here blocks (file I/O, inflating, hashing): async callers run it in
//! `tokio::task::spawn_blocking`. Unix only, for the positional reads.

mod archive;
mod directory;
mod error;
mod format;
mod headers;
mod inflate;
mod limits;
mod names;
mod validate;

#[cfg(test)]
mod test_support;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use archive::{EntryInfo, ExtractedFile, SafeArchive};
pub use error::ExtractError;
pub use limits::{ExtractLimits, MAX_NAME_BYTES, RATIO_FLOOR_BYTES};
