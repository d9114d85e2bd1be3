//! The one error type of the crate: every refusal with its stable code, and disk errors.

use std::io;

/// Why an archive or entry was refused, or a local disk failure.
///
/// Every variant but [`ExtractError::Io`] is final: the same upload will be refused
/// again, so it must not be retried. Each has a stable code ([`ExtractError::code`])
/// and a message naming the offending entry.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Not a ZIP archive, or its structure is corrupt or self-contradictory.
    #[error("not a valid ZIP archive: {detail}")]
    Invalid {
        /// What is wrong.
        detail: String,
    },
    /// A name that is absolute, has a drive letter, climbs out with `..`, uses
    /// backslashes or contains control characters.
    #[error("entry {name:?} has an unsafe name: {reason}")]
    UnsafePath {
        /// The entry's name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A symbolic link, device, pipe, socket or other non-regular entry.
    #[error("entry {name:?} is a {kind}; only regular files and directories are accepted")]
    NotRegularFile {
        /// The entry's name.
        name: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// Two entries whose names are equal after NFC normalisation and case folding.
    #[error(
        "entries {first:?} and {second:?} have the same name once Unicode normalisation and case are ignored"
    )]
    DuplicateName {
        /// The earlier entry.
        first: String,
        /// The later entry.
        second: String,
    },
    /// An encrypted entry.
    #[error("entry {name:?} is encrypted; encrypted archives are not accepted")]
    Encrypted {
        /// The entry's name.
        name: String,
    },
    /// A compression method other than stored (0) and deflate (8).
    #[error(
        "entry {name:?} uses compression method {method}; only stored (0) and deflate (8) are accepted"
    )]
    UnsupportedMethod {
        /// The entry's name.
        name: String,
        /// The method number from the header.
        method: u16,
    },
    /// An entry's header or data overlaps another entry or the central directory.
    #[error("entry {name:?} overlaps {other}; overlapping entries are a ZIP bomb technique")]
    Overlap {
        /// The entry's name.
        name: String,
        /// What it overlaps (another entry, or the central directory).
        other: String,
    },
    /// The local file header disagrees with the central directory.
    #[error("entry {name:?}: the local file header disagrees with the central directory: {detail}")]
    HeaderMismatch {
        /// The entry's name.
        name: String,
        /// Which field differs.
        detail: String,
    },
    /// More entries than [`ExtractLimits::max_entries`](crate::ExtractLimits::max_entries).
    #[error("the archive lists {count} entries; at most {limit} are accepted")]
    TooManyEntries {
        /// Entries the archive declares.
        count: u64,
        /// The limit.
        limit: u64,
    },
    /// An entry, or the archive in total, over a byte limit.
    #[error("entry {name:?} is too large: {detail}")]
    TooLarge {
        /// The entry's name (for the archive total, the entry that crossed it).
        name: String,
        /// Which limit, and by how much.
        detail: String,
    },
    /// An entry that inflates beyond [`ExtractLimits::max_ratio`](crate::ExtractLimits::max_ratio).
    #[error(
        "entry {name:?} expands {compressed} compressed bytes to {expanded} bytes, beyond the accepted ratio of {limit}:1"
    )]
    Ratio {
        /// The entry's name.
        name: String,
        /// Compressed size.
        compressed: u64,
        /// Inflated (or declared) size.
        expanded: u64,
        /// The ratio limit.
        limit: u64,
    },
    /// An entry whose data does not inflate cleanly, fails its CRC-32, or inflates to
    /// a size other than the one declared.
    #[error("entry {name:?} is corrupt: {detail}")]
    CorruptEntry {
        /// The entry's name.
        name: String,
        /// What went wrong.
        detail: String,
    },
    /// `extract_to` was given an entry that this archive did not list (a caller bug).
    #[error("entry {name:?} is not a file of this archive")]
    UnknownEntry {
        /// The name the caller passed.
        name: String,
    },
    /// Reading the archive or writing the output failed on the local disk. Retryable.
    #[error("local disk error while {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl ExtractError {
    /// Stable machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "ERR_ARCHIVE_INVALID",
            Self::UnsafePath { .. } => "ERR_ARCHIVE_UNSAFE_PATH",
            Self::NotRegularFile { .. } => "ERR_ARCHIVE_SYMLINK",
            Self::DuplicateName { .. } => "ERR_ARCHIVE_DUPLICATE_NAME",
            Self::Encrypted { .. } => "ERR_ARCHIVE_ENCRYPTED",
            Self::UnsupportedMethod { .. } => "ERR_ARCHIVE_UNSUPPORTED_METHOD",
            Self::Overlap { .. } => "ERR_ARCHIVE_OVERLAP",
            Self::HeaderMismatch { .. } => "ERR_ARCHIVE_HEADER_MISMATCH",
            Self::TooManyEntries { .. } => "ERR_ARCHIVE_TOO_MANY_ENTRIES",
            Self::TooLarge { .. } => "ERR_ARCHIVE_TOO_LARGE",
            Self::Ratio { .. } => "ERR_ARCHIVE_RATIO",
            Self::CorruptEntry { .. } => "ERR_ARCHIVE_CORRUPT_ENTRY",
            Self::UnknownEntry { .. } => "ERR_EXTRACT_UNKNOWN_ENTRY",
            Self::Io { .. } => "ERR_IO",
        }
    }

    /// Whether retrying cannot help: true for every refusal, false for disk errors.
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Io { .. })
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn invalid(detail: impl Into<String>) -> Self {
        Self::Invalid {
            detail: detail.into(),
        }
    }
}
