//! Safe extraction of untrusted ZIP uploads: every file in the archive becomes one record.
//!
//! The archive is read from any [`ArchiveSource`]: a fixed length and positional
//! reads, so it can stay where it is (a local file, a [`FileSource`]; bytes in memory,
//! a `Vec<u8>`; an object store served by ranged reads) instead of being copied to a
//! local file first. [`SafeArchive::from_source`] takes any source,
//! [`SafeArchive::open`] a file by its path.
//!
//! [`SafeArchive::from_source`] validates the whole archive before anything is extracted and
//! refuses it outright on any sign of a hostile or ambiguous archive: unsafe names,
//! links and other non-regular entries, names that collide once Unicode normalisation
//! and case are ignored, encryption, compression methods other than stored/deflate,
//! overlapping entries (overlap bombs), local headers that disagree with the central
//! directory, and declared sizes, counts or ratios over [`ExtractLimits`].
//! [`SafeArchive::extract_to`] then inflates one entry at a time into a file the caller
//! chooses, through a fixed buffer, counting the bytes it really inflates rather than
//! trusting the headers.
//!
//! Before anything else reads the archive, it must be canonical (`layout`): every
//! byte accounted for (entries contiguous from offset 0, one central directory, the
//! ZIP64 end records where used, one end record ending the file) and every redundant
//! field agreeing (local and central headers, data descriptors, ZIP64 fields, entry
//! counts, Unicode Path fields), so that readers that walk local headers (streaming
//! unzippers, scanners), readers that search for the end record and readers that use
//! the central directory cannot be shown different archives. The rule and its error
//! codes are written down in `docs/PROTOCOL.md` ("Canonical archives").
//!
//! The `zip` crate then parses the central directory and inflates; this crate does not
//! trust its view alone and requires it to agree with its own reading of the headers
//! (positional reads of the same source, which move no cursor the crate relies on).
//!
//! The modules follow the checks in the order they run: `directory` (declared entry
//! counts), `layout` with `end`, `local` and `extra` (the canonical-archive rule),
//! `validate` (each entry's type, method and sizes), `names` (name safety, canonical
//! names, duplicates), `headers` (the crate's view against the headers), then `inflate`
//! (streaming extraction, counting, hashing). `archive` ties them together behind
//! [`SafeArchive`]; `source` holds [`ArchiveSource`] and the `Read + Seek` view of a
//! source the `zip` crate reads through.
//!
//! A source's read errors are told apart from a corrupt archive: a read past its end
//! (`UnexpectedEof`) refuses the archive as truncated, any other read error is an
//! [`ExtractError::Io`], retryable.
//!
//! Everything here blocks (source reads, inflating, hashing): async callers run it in
//! `tokio::task::spawn_blocking`, and a source backed by async I/O blocks on it in
//! `read_exact_at`. Unix only, for the positional reads of files.

mod archive;
mod directory;
mod end;
mod error;
mod extra;
mod format;
mod headers;
mod inflate;
mod layout;
mod limits;
mod local;
mod names;
mod source;
mod validate;

#[cfg(test)]
mod test_support;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use archive::{EntryInfo, ExtractedFile, SafeArchive};
pub use error::ExtractError;
pub use limits::{ExtractLimits, MAX_NAME_BYTES, RATIO_FLOOR_BYTES};
pub use source::{ArchiveSource, FileSource};
