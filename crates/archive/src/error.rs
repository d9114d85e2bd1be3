//! The one error type of the crate: every refusal with its stable code, and I/O errors.

use std::io;

/// Why an archive or entry was refused, or an I/O failure (of the archive's source or
/// of the output).
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
    /// A "version needed to extract" above 4.5, the most that stored, deflate and
    /// ZIP64 entries need: readers that do not support it refuse the entry (Info-ZIP
    /// `unzip` above 4.6, Python's `zipfile` above 6.3) while others read it.
    #[error(
        "entry {name:?} needs ZIP version {}.{} to extract ({place}); at most 4.5 is accepted",
        .version / 10,
        .version % 10
    )]
    UnsupportedVersion {
        /// The entry's name.
        name: String,
        /// The version, as stored (45 is 4.5).
        version: u16,
        /// Which header says so.
        place: &'static str,
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
    /// Bytes that no entry, central directory or end record accounts for: a prefix,
    /// a gap between entries, a second directory, data after the end record. Readers
    /// that walk local headers and readers that use the directory can see different
    /// files there.
    #[error(
        "bytes {start} to {end} of the archive belong to no entry, central directory or end record"
    )]
    UnaccountedBytes {
        /// First unaccounted byte.
        start: u64,
        /// One past the last.
        end: u64,
    },
    /// The end of central directory record is not the single one ending the file, or
    /// its fields are not canonical.
    #[error("the end of central directory record is not canonical: {detail}")]
    EndRecord {
        /// What is wrong.
        detail: String,
    },
    /// ZIP64 records or fields that are missing, malformed, or disagree with the
    /// classic fields they replace.
    #[error("{subject}: ZIP64 fields disagree: {detail}")]
    Zip64 {
        /// The end record, or the entry (`entry "name"`).
        subject: String,
        /// What disagrees.
        detail: String,
    },
    /// Entry counts that disagree with each other or with the central directory.
    #[error("the archive's entry counts disagree: {detail}")]
    EntryCount {
        /// Which counts.
        detail: String,
    },
    /// A data descriptor that is missing, malformed or disagrees with the central
    /// directory.
    #[error("entry {name:?}: its data descriptor is not canonical: {detail}")]
    DataDescriptor {
        /// The entry's name.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// An entry comment or extra field that contains a ZIP record signature: readers
    /// that search for records instead of following offsets could find one there.
    #[error(
        "entry {name:?}: its {place} contains a ZIP record signature, where readers that search for records could find one"
    )]
    HiddenRecord {
        /// The entry's name.
        name: String,
        /// `comment` or `extra field`.
        place: &'static str,
    },
    /// A malformed extra field block.
    #[error("entry {name:?} has a malformed extra field: {detail}")]
    ExtraField {
        /// The entry's name.
        name: String,
        /// What is wrong.
        detail: &'static str,
    },
    /// An Info-ZIP Unicode Path extra field that does not spell the header's name.
    #[error("entry {name:?}: {detail}; tools that honour it would show another name")]
    UnicodePath {
        /// The entry's name, as the header spells it.
        name: String,
        /// What differs.
        detail: &'static str,
    },
    /// A non-ASCII name without the UTF-8 flag, or one that is not valid UTF-8.
    #[error("entry {name:?}: {detail}; readers would decode its name differently")]
    NameEncoding {
        /// The entry's name, decoded lossily.
        name: String,
        /// What is wrong.
        detail: &'static str,
    },
    /// A name that different systems or tools would read as different names: bidi or
    /// zero-width controls, `:`, Windows device names or reserved characters, trailing
    /// dots or spaces, empty or `.` components.
    #[error("entry {name:?} has a name that tools read differently: {reason}")]
    NoncanonicalName {
        /// The entry's name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// An entry that is a directory by one of its marks (trailing slash, MS-DOS
    /// attribute, Unix mode) and a file by another.
    #[error("entry {name:?} is a directory to some readers and a file to others: {detail}")]
    DirectoryMismatch {
        /// The entry's name.
        name: String,
        /// Which marks disagree.
        detail: &'static str,
    },
    /// `extract_to` was given an entry that this archive did not list (a caller bug).
    #[error("entry {name:?} is not a file of this archive")]
    UnknownEntry {
        /// The name the caller passed.
        name: String,
    },
    /// Reading the archive from its [`ArchiveSource`](crate::ArchiveSource) (a local
    /// disk, an object store) or writing the output failed. Retryable.
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
            Self::UnsupportedVersion { .. } => "ERR_ARCHIVE_UNSUPPORTED_VERSION",
            Self::Overlap { .. } => "ERR_ARCHIVE_OVERLAP",
            Self::HeaderMismatch { .. } => "ERR_ARCHIVE_HEADER_MISMATCH",
            Self::TooManyEntries { .. } => "ERR_ARCHIVE_TOO_MANY_ENTRIES",
            Self::TooLarge { .. } => "ERR_ARCHIVE_TOO_LARGE",
            Self::Ratio { .. } => "ERR_ARCHIVE_RATIO",
            Self::CorruptEntry { .. } => "ERR_ARCHIVE_CORRUPT_ENTRY",
            Self::UnaccountedBytes { .. } => "ERR_ARCHIVE_UNACCOUNTED_BYTES",
            Self::EndRecord { .. } => "ERR_ARCHIVE_END_RECORD",
            Self::Zip64 { .. } => "ERR_ARCHIVE_ZIP64",
            Self::EntryCount { .. } => "ERR_ARCHIVE_ENTRY_COUNT",
            Self::DataDescriptor { .. } => "ERR_ARCHIVE_DATA_DESCRIPTOR",
            Self::HiddenRecord { .. } => "ERR_ARCHIVE_HIDDEN_RECORD",
            Self::ExtraField { .. } => "ERR_ARCHIVE_EXTRA_FIELD",
            Self::UnicodePath { .. } => "ERR_ARCHIVE_UNICODE_PATH",
            Self::NameEncoding { .. } => "ERR_ARCHIVE_NAME_ENCODING",
            Self::NoncanonicalName { .. } => "ERR_ARCHIVE_NONCANONICAL_NAME",
            Self::DirectoryMismatch { .. } => "ERR_ARCHIVE_DIRECTORY_MISMATCH",
            Self::UnknownEntry { .. } => "ERR_EXTRACT_UNKNOWN_ENTRY",
            Self::Io { .. } => "ERR_IO",
        }
    }

    /// Whether retrying cannot help: true for every refusal, false for I/O errors.
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
