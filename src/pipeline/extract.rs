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
//! The `zip` crate parses the central directory and inflates; this module does not
//! trust its view alone. It reads each entry's central and local headers itself
//! (positional reads on a second handle) and requires them to agree with the crate, so
//! readers that walk local headers (streaming unzippers, scanners) and readers that use
//! the central directory cannot be shown two different archives.
//!
//! Everything here blocks (file I/O, inflating, hashing): async callers run it in
//! `tokio::task::spawn_blocking`. Unix only, for the positional reads.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;
use zip::ZipArchive;

/// Entries that inflate to at most this many bytes are never refused for their
/// compression ratio: small, highly regular files (a page of blank CSV rows, an empty
/// spreadsheet template) legitimately compress far beyond 200:1, and 1 MiB cannot hurt.
pub const RATIO_FLOOR_BYTES: u64 = 1 << 20;

const GIB: u64 = 1 << 30;
/// Longest accepted entry name. Real names are far shorter (file systems stop at
/// 4096-byte paths); the cap also bounds the memory the names of 100,000 entries take.
pub const MAX_NAME_BYTES: usize = 4096;
/// Size of the single copy buffer per archive; also the archive reader's buffer.
const COPY_BUFFER_BYTES: usize = 64 * 1024;
/// How much of the start of each file is kept for content sniffing; `infer` looks at
/// signatures within the first few KiB.
const SNIFF_BYTES: usize = 8 * 1024;

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD64_SIG: u32 = 0x0606_4b50;
const EOCD64_LOCATOR_SIG: u32 = 0x0706_4b50;
const LOCAL_HEADER_LEN: u64 = 30;
const CENTRAL_HEADER_LEN: usize = 46;
const EOCD_LEN: usize = 22;
const EOCD64_LOCATOR_LEN: u64 = 20;
const EOCD64_MIN_LEN: u64 = 56;
/// The end of central directory record sits in the last 22 bytes plus a comment of at
/// most 64 KiB; the `zip` crate searches the same window (plus a signature's slack).
const EOCD_SEARCH_WINDOW: u64 = EOCD_LEN as u64 + 4 + (1 << 16);

/// General purpose flags that mean the data (or the directory) is encrypted: bit 0
/// (traditional or AES), bit 6 (strong encryption), bit 13 (masked central directory).
const ENCRYPTION_FLAGS: u16 = 0x0001 | 0x0040 | 0x2000;
/// General purpose flag bit 3: CRC and sizes follow the data, local fields may be zero.
const DATA_DESCRIPTOR_FLAG: u16 = 0x0008;
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATE: u16 = 8;
/// WinZip AES marks entries with this pseudo compression method.
const METHOD_AES: u16 = 99;

const S_IFMT: u32 = 0o170_000;
const S_IFSOCK: u32 = 0o140_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFREG: u32 = 0o100_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFIFO: u32 = 0o010_000;
/// MS-DOS attribute of NTFS reparse points (symbolic links, junctions).
const DOS_REPARSE_POINT: u32 = 0x0400;

/// Limits applied to one archive. Counts and sizes are checked against the headers at
/// [`SafeArchive::open`] and against the bytes actually inflated during extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Most entries (files and directories) the central directory may list.
    pub max_entries: u64,
    /// Most bytes inflated across the whole archive, over every `extract_to` call
    /// (re-extracting an entry counts again).
    pub max_total_bytes: u64,
    /// Most bytes any one entry may inflate to.
    pub max_entry_bytes: u64,
    /// Highest accepted inflated : compressed ratio of an entry, above
    /// [`RATIO_FLOOR_BYTES`].
    pub max_ratio: u64,
}

impl Default for ExtractLimits {
    /// 100,000 entries; 5 GiB per entry; 20 GiB per archive; 200:1.
    ///
    /// 5 GiB per entry fits scanned books, long recordings and database dumps (and
    /// needs ZIP64, which is supported) while keeping a single record uploadable in
    /// one multipart upload. 20 GiB per archive bounds the scratch disk one job can
    /// fill; it is several times a typical batch. Ordinary documents compress to well
    /// under 20:1 and even repetitive logs and CSV rarely pass 100:1, while deflate
    /// can reach about 1000:1, so 200:1 only refuses crafted or degenerate data.
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_total_bytes: 20 * GIB,
            max_entry_bytes: 5 * GIB,
            max_ratio: 200,
        }
    }
}

/// A regular file of a validated archive, in archive order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Position of the entry in the central directory.
    pub index: usize,
    /// Full name as stored in the archive (e.g. `reports/2024/q1.pdf`).
    pub name: String,
    /// Last path component of `name` (e.g. `q1.pdf`).
    pub base_name: String,
    /// Uncompressed size the headers declare; extraction refuses any other size.
    pub declared_size: u64,
    /// Size of the compressed data in the archive.
    pub compressed_size: u64,
}

/// What [`SafeArchive::extract_to`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractedFile {
    /// Bytes written (equal to the declared size).
    pub size: u64,
    /// SHA-256 of the bytes written, lowercase hex.
    pub sha256: String,
    /// MIME type sniffed from the content, else guessed from the extension, else
    /// `application/octet-stream`.
    pub content_type: String,
}

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
    /// More entries than [`ExtractLimits::max_entries`].
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
    /// An entry that inflates beyond [`ExtractLimits::max_ratio`].
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

    fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    fn invalid(detail: impl Into<String>) -> Self {
        Self::Invalid {
            detail: detail.into(),
        }
    }
}

/// A validated archive, ready to extract its files one at a time.
pub struct SafeArchive {
    archive: ZipArchive<BufReader<TrackedFile>>,
    /// Read failures of the underlying file, so they are not mistaken for corruption.
    fault: FaultSlot,
    limits: ExtractLimits,
    entries: Vec<EntryInfo>,
    /// Bytes inflated so far by every `extract_to` call, refused or not.
    inflated_total: u64,
    buf: Box<[u8]>,
}

impl fmt::Debug for SafeArchive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafeArchive")
            .field("entries", &self.entries.len())
            .field("limits", &self.limits)
            .field("inflated_total", &self.inflated_total)
            .finish_non_exhaustive()
    }
}

impl SafeArchive {
    /// Opens and validates the archive at `path`; refuses it (with nothing extracted)
    /// if any entry is unsafe or any limit is exceeded by the headers.
    pub fn open(path: &Path, limits: ExtractLimits) -> Result<Self, ExtractError> {
        let file = File::open(path).map_err(|e| ExtractError::io("opening the archive", e))?;
        let file_len = file
            .metadata()
            .map_err(|e| ExtractError::io("reading the archive's metadata", e))?
            .len();
        // Before the zip crate builds its in-memory directory, which costs memory per
        // declared entry.
        check_declared_entry_count(&file, file_len, &limits)?;

        // Our own header reads are positional (pread) on a clone, so they never move
        // the offset the crate's reader relies on.
        let headers = file
            .try_clone()
            .map_err(|e| ExtractError::io("opening the archive", e))?;
        let fault = FaultSlot::default();
        let tracked = TrackedFile {
            file,
            fault: Arc::clone(&fault),
        };
        let archive = ZipArchive::new(BufReader::with_capacity(COPY_BUFFER_BYTES, tracked))
            .map_err(|e| match take_fault(&fault) {
                Some(source) => ExtractError::io("reading the archive", source),
                None => ExtractError::invalid(e.to_string()),
            })?;
        let entries = validate(&archive, &headers, &limits)?;
        Ok(Self {
            archive,
            fault,
            limits,
            entries,
            inflated_total: 0,
            buf: vec![0; COPY_BUFFER_BYTES].into_boxed_slice(),
        })
    }

    /// The regular files of the archive, in archive order (directories are left out).
    pub fn entries(&self) -> &[EntryInfo] {
        &self.entries
    }

    /// Inflates `entry` into a new file at `dest` (created or truncated; the caller
    /// chooses it, it is never derived from the entry's name) and returns its size,
    /// SHA-256 and content type.
    ///
    /// Memory stays bounded by one fixed buffer. The bytes actually inflated are
    /// counted against the per-entry limit, the archive's running total and the ratio
    /// limit, and must match the declared size and CRC-32. On any error the partial
    /// file at `dest` is removed.
    pub fn extract_to(
        &mut self,
        entry: &EntryInfo,
        dest: &Path,
    ) -> Result<ExtractedFile, ExtractError> {
        // Use our own copy of the entry, so a caller cannot loosen the declared sizes.
        let entry = self
            .entries
            .binary_search_by_key(&entry.index, |known| known.index)
            .ok()
            .map(|at| &self.entries[at])
            .filter(|known| *known == entry)
            .cloned()
            .ok_or_else(|| ExtractError::UnknownEntry {
                name: entry.name.clone(),
            })?;
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(dest)
            .map_err(|e| ExtractError::io(format!("creating {}", dest.display()), e))?;
        let result = self.inflate_into(&entry, &mut out, dest);
        drop(out);
        if result.is_err() {
            // Best effort: the file is incomplete or refused either way.
            let _ = fs::remove_file(dest);
        }
        result
    }

    fn inflate_into(
        &mut self,
        entry: &EntryInfo,
        out: &mut File,
        dest: &Path,
    ) -> Result<ExtractedFile, ExtractError> {
        let Self {
            archive,
            fault,
            limits,
            inflated_total,
            buf,
            ..
        } = self;
        let read_failed = |detail: String| match take_fault(fault) {
            Some(source) => ExtractError::io(
                format!("reading entry {:?} from the archive", entry.name),
                source,
            ),
            None => ExtractError::CorruptEntry {
                name: entry.name.clone(),
                detail,
            },
        };
        // A failure left over from an earlier call must not be blamed on this one.
        take_fault(fault);
        let mut reader = archive
            .by_index(entry.index)
            .map_err(|e| read_failed(e.to_string()))?;

        let mut hasher = Sha256::new();
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        let mut size = 0u64;
        loop {
            let n = match reader.read(&mut buf[..]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_failed(format!("inflating failed: {e}"))),
            };
            let chunk = &buf[..n];
            size = size.saturating_add(n as u64);
            *inflated_total = inflated_total.saturating_add(n as u64);
            check_progress(limits, entry, size, *inflated_total)?;
            hasher.update(chunk);
            let room = SNIFF_BYTES - head.len();
            head.extend_from_slice(&chunk[..room.min(n)]);
            out.write_all(chunk)
                .map_err(|e| ExtractError::io(format!("writing {}", dest.display()), e))?;
        }
        if size != entry.declared_size {
            return Err(ExtractError::CorruptEntry {
                name: entry.name.clone(),
                detail: format!(
                    "it inflates to {size} bytes but declares {}",
                    entry.declared_size
                ),
            });
        }
        Ok(ExtractedFile {
            size,
            sha256: hex::encode(hasher.finalize()),
            content_type: sniff_content_type(&head, &entry.base_name),
        })
    }
}

/// Checks the bytes inflated so far for one entry (`size`) and for the whole archive
/// (`total`) against the limits and the entry's declared size.
fn check_progress(
    limits: &ExtractLimits,
    entry: &EntryInfo,
    size: u64,
    total: u64,
) -> Result<(), ExtractError> {
    let too_large = |detail: String| ExtractError::TooLarge {
        name: entry.name.clone(),
        detail,
    };
    if size > limits.max_entry_bytes {
        return Err(too_large(format!(
            "it inflates past the per-entry limit of {} bytes",
            limits.max_entry_bytes
        )));
    }
    if total > limits.max_total_bytes {
        return Err(too_large(format!(
            "extracting it takes the archive past its limit of {} bytes in total",
            limits.max_total_bytes
        )));
    }
    if ratio_exceeded(size, entry.compressed_size, limits.max_ratio) {
        return Err(ExtractError::Ratio {
            name: entry.name.clone(),
            compressed: entry.compressed_size,
            expanded: size,
            limit: limits.max_ratio,
        });
    }
    if size > entry.declared_size {
        return Err(ExtractError::CorruptEntry {
            name: entry.name.clone(),
            detail: format!(
                "it inflates past its declared size of {} bytes",
                entry.declared_size
            ),
        });
    }
    Ok(())
}

/// Whether `expanded` bytes from `compressed` bytes is beyond `max_ratio`. Entries up
/// to [`RATIO_FLOOR_BYTES`] always pass.
fn ratio_exceeded(expanded: u64, compressed: u64, max_ratio: u64) -> bool {
    expanded > RATIO_FLOOR_BYTES && expanded > compressed.saturating_mul(max_ratio)
}

/// One entry of the central directory, as both the crate and our own read see it.
struct Scanned {
    index: usize,
    name: String,
    is_dir: bool,
    central: CentralHeader,
    header_start: u64,
    compressed_size: u64,
    size: u64,
}

/// Validates every entry; returns the regular files in archive order.
fn validate<R: Read + Seek>(
    archive: &ZipArchive<R>,
    headers: &File,
    limits: &ExtractLimits,
) -> Result<Vec<EntryInfo>, ExtractError> {
    // The crate keys entries by name, so byte-identical names collapse into one there
    // and its indices stop matching the central directory. Refuse before relying on them.
    if archive.has_duplicate_names() {
        return Err(exact_duplicate(archive, headers));
    }
    let count = archive.len();
    if count as u64 > limits.max_entries {
        return Err(ExtractError::TooManyEntries {
            count: count as u64,
            limit: limits.max_entries,
        });
    }

    let mut scanned = Vec::with_capacity(count);
    let mut declared_total = 0u64;
    for index in 0..count {
        let s = scan_entry(archive, headers, index)?;
        check_entry(&s, limits, &mut declared_total)?;
        scanned.push(s);
    }
    check_duplicates(&scanned)?;
    check_local_headers(&scanned, headers, archive.central_directory_start())?;

    Ok(scanned
        .into_iter()
        .filter(|s| !s.is_dir)
        .map(|s| EntryInfo {
            index: s.index,
            base_name: base_name(&s.name).to_owned(),
            name: s.name,
            declared_size: s.size,
            compressed_size: s.compressed_size,
        })
        .collect())
}

/// Reads entry `index` through the crate and its central header ourselves, and
/// refuses the archive if the two readings disagree.
fn scan_entry<R: Read + Seek>(
    archive: &ZipArchive<R>,
    headers: &File,
    index: usize,
) -> Result<Scanned, ExtractError> {
    let entry = archive
        .by_index_data(index)
        .map_err(|e| ExtractError::invalid(format!("entry #{index}: {e}")))?;
    let name = entry
        .name()
        .map_err(|e| ExtractError::invalid(format!("entry #{index} has an unreadable name: {e}")))?
        .into_owned();
    let central = read_central_header(headers, entry.central_header_start())?;

    // The crate may take the name from an Info-ZIP Unicode Path field instead of the
    // header; both spellings must be safe.
    let unsafe_path = |reason| ExtractError::UnsafePath {
        name: name.clone(),
        reason,
    };
    check_path(&name).map_err(unsafe_path)?;
    if central.name != entry.name_raw() {
        check_path(&String::from_utf8_lossy(&central.name)).map_err(unsafe_path)?;
    }

    // 0xFFFFFFFF defers to the ZIP64 extra field; any other value must be what the
    // crate uses, or it would be reading a different extent than the one we check.
    let disagrees = |raw: u32, used: u64| raw != u32::MAX && u64::from(raw) != used;
    if disagrees(central.compressed_size, entry.compressed_size())
        || disagrees(central.size, entry.size())
        || (central.local_offset != u32::MAX
            && u64::from(central.local_offset).checked_add(archive.offset())
                != Some(entry.header_start()))
    {
        return Err(ExtractError::invalid(format!(
            "entry {name:?}: its ZIP64 extra field contradicts its header"
        )));
    }

    Ok(Scanned {
        index,
        is_dir: name.ends_with('/'),
        header_start: entry.header_start(),
        compressed_size: entry.compressed_size(),
        size: entry.size(),
        central,
        name,
    })
}

/// Checks one entry's type, encryption, method and declared sizes; adds its declared
/// size to `declared_total`.
fn check_entry(
    s: &Scanned,
    limits: &ExtractLimits,
    declared_total: &mut u64,
) -> Result<(), ExtractError> {
    let name = || s.name.clone();
    if let Some(kind) = non_regular_kind(s.central.external_attributes, s.is_dir) {
        return Err(ExtractError::NotRegularFile { name: name(), kind });
    }
    if s.central.flags & ENCRYPTION_FLAGS != 0 || s.central.method == METHOD_AES {
        return Err(ExtractError::Encrypted { name: name() });
    }
    if s.central.method != METHOD_STORED && s.central.method != METHOD_DEFLATE {
        return Err(ExtractError::UnsupportedMethod {
            name: name(),
            method: s.central.method,
        });
    }
    if s.is_dir {
        if s.size != 0 {
            return Err(ExtractError::CorruptEntry {
                name: name(),
                detail: format!("a directory entry declares {} bytes of content", s.size),
            });
        }
        return Ok(());
    }
    if s.size > limits.max_entry_bytes {
        return Err(ExtractError::TooLarge {
            name: name(),
            detail: format!(
                "it declares {} bytes, over the per-entry limit of {} bytes",
                s.size, limits.max_entry_bytes
            ),
        });
    }
    if ratio_exceeded(s.size, s.compressed_size, limits.max_ratio) {
        return Err(ExtractError::Ratio {
            name: name(),
            compressed: s.compressed_size,
            expanded: s.size,
            limit: limits.max_ratio,
        });
    }
    *declared_total = declared_total.saturating_add(s.size);
    if *declared_total > limits.max_total_bytes {
        return Err(ExtractError::TooLarge {
            name: name(),
            detail: format!(
                "the entries up to this one declare {declared_total} bytes, over the archive limit of {} bytes",
                limits.max_total_bytes
            ),
        });
    }
    if s.central.method == METHOD_STORED && s.compressed_size != s.size {
        return Err(ExtractError::CorruptEntry {
            name: name(),
            detail: format!(
                "a stored entry declares {} bytes but holds {}",
                s.size, s.compressed_size
            ),
        });
    }
    Ok(())
}

/// Refuses names that are equal after NFC normalisation and case folding.
fn check_duplicates(scanned: &[Scanned]) -> Result<(), ExtractError> {
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(scanned.len());
    for (at, s) in scanned.iter().enumerate() {
        if let Some(first) = seen.insert(dedupe_key(&s.name), at) {
            return Err(ExtractError::DuplicateName {
                first: scanned[first].name.clone(),
                second: s.name.clone(),
            });
        }
    }
    Ok(())
}

/// What an entry's local file header says.
struct LocalHeader {
    flags: u16,
    method: u16,
    crc32: u32,
    compressed_size: u32,
    size: u32,
    name_matches: bool,
}

/// Reads every local header: refuses entries whose header and data overlap another
/// entry or reach into the central directory, then local/central disagreements.
fn check_local_headers(
    scanned: &[Scanned],
    headers: &File,
    directory_start: u64,
) -> Result<(), ExtractError> {
    let mut extents = Vec::with_capacity(scanned.len());
    let mut locals = Vec::with_capacity(scanned.len());
    for (at, s) in scanned.iter().enumerate() {
        let into_directory = || ExtractError::Overlap {
            name: s.name.clone(),
            other: "the central directory".to_owned(),
        };
        let fixed_end = s
            .header_start
            .checked_add(LOCAL_HEADER_LEN)
            .filter(|&end| end <= directory_start)
            .ok_or_else(into_directory)?;
        let mut fixed = [0u8; LOCAL_HEADER_LEN as usize];
        read_at(headers, s.header_start, &mut fixed, "local file header")?;
        if le_u32(&fixed, 0) != LOCAL_SIG {
            // Reported below, after overlaps: a central entry pointing into another
            // entry's data is an overlap first and foremost.
            extents.push((s.header_start, fixed_end, at));
            locals.push(None);
            continue;
        }
        let name_len = u64::from(le_u16(&fixed, 26));
        let extra_len = u64::from(le_u16(&fixed, 28));
        let data_end = (fixed_end + name_len + extra_len)
            .checked_add(s.compressed_size)
            .filter(|&end| end <= directory_start)
            .ok_or_else(into_directory)?;
        let mut local_name = vec![0u8; name_len as usize];
        read_at(headers, fixed_end, &mut local_name, "local file name")?;
        extents.push((s.header_start, data_end, at));
        locals.push(Some(LocalHeader {
            flags: le_u16(&fixed, 6),
            method: le_u16(&fixed, 8),
            crc32: le_u32(&fixed, 14),
            compressed_size: le_u32(&fixed, 18),
            size: le_u32(&fixed, 22),
            name_matches: local_name == s.central.name,
        }));
    }

    // Sorted by start, an extent overlaps an earlier one exactly when it starts before
    // the furthest end seen so far.
    extents.sort_unstable();
    let mut furthest: Option<(u64, usize)> = None;
    for &(start, end, at) in &extents {
        if let Some((reach, by)) = furthest
            && start < reach
        {
            return Err(ExtractError::Overlap {
                name: scanned[at].name.clone(),
                other: format!("entry {:?}", scanned[by].name),
            });
        }
        if furthest.is_none_or(|(reach, _)| end > reach) {
            furthest = Some((end, at));
        }
    }

    for (s, local) in scanned.iter().zip(&locals) {
        let mismatch = |detail: String| ExtractError::HeaderMismatch {
            name: s.name.clone(),
            detail,
        };
        let Some(local) = local else {
            return Err(mismatch(format!(
                "there is no local file header at offset {}",
                s.header_start
            )));
        };
        if local.flags & ENCRYPTION_FLAGS != 0 {
            return Err(ExtractError::Encrypted {
                name: s.name.clone(),
            });
        }
        if !local.name_matches {
            return Err(mismatch("the file name differs".to_owned()));
        }
        if local.method != s.central.method {
            return Err(mismatch(format!(
                "compression method {} locally, {} in the directory",
                local.method, s.central.method
            )));
        }
        // Without a data descriptor the local header must carry the real CRC and sizes.
        if local.flags & DATA_DESCRIPTOR_FLAG == 0 {
            if local.crc32 != s.central.crc32 {
                return Err(mismatch("the CRC-32 differs".to_owned()));
            }
            for (what, here, there) in [
                (
                    "compressed size",
                    local.compressed_size,
                    s.central.compressed_size,
                ),
                ("size", local.size, s.central.size),
            ] {
                if here != there && here != u32::MAX && there != u32::MAX {
                    return Err(mismatch(format!(
                        "{what} {here} locally, {there} in the directory"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Builds the error for byte-identical names, naming one if our own walk of the
/// central directory finds it.
fn exact_duplicate<R: Read + Seek>(archive: &ZipArchive<R>, headers: &File) -> ExtractError {
    let mut seen = std::collections::HashSet::new();
    let mut at = archive.central_directory_start();
    // Bounded by the entry limit already checked against the end record.
    while let Ok(header) = read_central_header(headers, at) {
        let name = String::from_utf8_lossy(&header.name).into_owned();
        if !seen.insert(header.name) {
            return ExtractError::DuplicateName {
                first: name.clone(),
                second: name,
            };
        }
        at += header.len;
    }
    ExtractError::invalid("the central directory lists the same name more than once")
}

/// Fields of a central directory file header.
struct CentralHeader {
    flags: u16,
    method: u16,
    crc32: u32,
    compressed_size: u32,
    size: u32,
    external_attributes: u32,
    local_offset: u32,
    name: Vec<u8>,
    /// Length of the whole header, variable parts included.
    len: u64,
}

fn read_central_header(file: &File, at: u64) -> Result<CentralHeader, ExtractError> {
    let mut fixed = [0u8; CENTRAL_HEADER_LEN];
    read_at(file, at, &mut fixed, "central directory header")?;
    if le_u32(&fixed, 0) != CENTRAL_SIG {
        return Err(ExtractError::invalid(format!(
            "no central directory header at offset {at}"
        )));
    }
    let name_len = le_u16(&fixed, 28);
    let mut name = vec![0u8; usize::from(name_len)];
    read_at(file, at + CENTRAL_HEADER_LEN as u64, &mut name, "file name")?;
    Ok(CentralHeader {
        flags: le_u16(&fixed, 8),
        method: le_u16(&fixed, 10),
        crc32: le_u32(&fixed, 16),
        compressed_size: le_u32(&fixed, 20),
        size: le_u32(&fixed, 24),
        external_attributes: le_u32(&fixed, 38),
        local_offset: le_u32(&fixed, 42),
        len: CENTRAL_HEADER_LEN as u64
            + u64::from(name_len)
            + u64::from(le_u16(&fixed, 30))
            + u64::from(le_u16(&fixed, 32)),
        name,
    })
}

/// Refuses the archive if any end of central directory record in the search window
/// declares more entries than allowed. Every candidate counts, not only the one the
/// crate will settle on, so a decoy record cannot hide the real count.
fn check_declared_entry_count(
    file: &File,
    file_len: u64,
    limits: &ExtractLimits,
) -> Result<(), ExtractError> {
    let start = file_len.saturating_sub(EOCD_SEARCH_WINDOW);
    // At most EOCD_SEARCH_WINDOW bytes.
    let mut tail = vec![0u8; (file_len - start) as usize];
    read_at(file, start, &mut tail, "end of the archive")?;
    let mut declared = 0u64;
    for at in (0..tail.len().saturating_sub(EOCD_LEN - 1)).rev() {
        if le_u32(&tail, at) != EOCD_SIG {
            continue;
        }
        // Entries on this disk and in total; only one disk is supported, take both.
        declared = declared
            .max(u64::from(le_u16(&tail, at + 8)))
            .max(u64::from(le_u16(&tail, at + 10)));
        if let Some(zip64) = zip64_declared_entries(file, start + at as u64)? {
            declared = declared.max(zip64);
        }
    }
    if declared > limits.max_entries {
        return Err(ExtractError::TooManyEntries {
            count: declared,
            limit: limits.max_entries,
        });
    }
    Ok(())
}

/// The entry count of the ZIP64 end record belonging to the end record at `eocd_at`,
/// if it has a ZIP64 locator.
fn zip64_declared_entries(file: &File, eocd_at: u64) -> Result<Option<u64>, ExtractError> {
    let Some(locator_at) = eocd_at.checked_sub(EOCD64_LOCATOR_LEN) else {
        return Ok(None);
    };
    let mut locator = [0u8; EOCD64_LOCATOR_LEN as usize];
    read_at(file, locator_at, &mut locator, "ZIP64 locator")?;
    if le_u32(&locator, 0) != EOCD64_LOCATOR_SIG {
        return Ok(None);
    }
    // The record must end where the locator starts (the crate requires it too). Look
    // right before the locator (the usual 56-byte record) and where the locator points
    // (any record size).
    let candidates = [
        locator_at.checked_sub(EOCD64_MIN_LEN),
        Some(le_u64(&locator, 8)),
    ];
    for at in candidates.into_iter().flatten() {
        if at >= locator_at || locator_at - at < EOCD64_MIN_LEN {
            continue;
        }
        let mut record = [0u8; EOCD64_MIN_LEN as usize];
        read_at(file, at, &mut record, "ZIP64 end of central directory")?;
        if le_u32(&record, 0) == EOCD64_SIG
            && le_u64(&record, 4).checked_add(12) == Some(locator_at - at)
        {
            return Ok(Some(le_u64(&record, 24).max(le_u64(&record, 32))));
        }
    }
    Err(ExtractError::invalid(
        "the ZIP64 end of central directory record is not where its locator says",
    ))
}

/// Why `name` is unsafe, if it is. Names are never used as paths here, but they become
/// record names that people and other tools will treat as paths.
fn check_path(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.len() > MAX_NAME_BYTES {
        return Err("it is longer than 4096 bytes");
    }
    if name.chars().any(char::is_control) {
        return Err("it contains control characters");
    }
    if name.contains('\\') {
        return Err("it contains backslashes (Windows path separators)");
    }
    if name.starts_with('/') {
        return Err("it is an absolute path");
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err("it starts with a drive letter");
    }
    if name.split('/').any(|part| part == "..") {
        return Err("it climbs out of the archive with '..'");
    }
    if name.rsplit('/').next() == Some(".") {
        return Err("it does not end in a file name");
    }
    Ok(())
}

/// Last component of `name` that names something (skips empty and `.` components).
fn base_name(name: &str) -> &str {
    name.rsplit('/')
        .find(|part| !part.is_empty() && *part != ".")
        .unwrap_or("")
}

/// Key under which two names count as the same file: `.` and empty components
/// dropped, NFC, then case folded. `to_uppercase().to_lowercase()` approximates full
/// Unicode case folding (`ß` and `SS` meet as `ss`); NFC again afterwards because
/// case mapping can denormalise.
fn dedupe_key(name: &str) -> String {
    let canonical = name
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect::<Vec<_>>()
        .join("/");
    let nfc: String = canonical.nfc().collect();
    nfc.to_uppercase().to_lowercase().nfc().collect()
}

/// What kind of non-regular entry the external attributes describe, if any. Unix
/// mode bits live in the upper 16 bits (some Windows tools put them there too), MS-DOS
/// attributes in the lower ones.
fn non_regular_kind(external_attributes: u32, is_dir: bool) -> Option<&'static str> {
    if external_attributes & DOS_REPARSE_POINT != 0 {
        return Some("Windows reparse point (link or junction)");
    }
    match (external_attributes >> 16) & S_IFMT {
        0 | S_IFREG => None,
        S_IFDIR if is_dir => None,
        S_IFDIR => Some("directory without a trailing slash"),
        S_IFLNK => Some("symbolic link"),
        S_IFCHR | S_IFBLK => Some("device node"),
        S_IFIFO => Some("named pipe"),
        S_IFSOCK => Some("socket"),
        _ => Some("file of unknown type"),
    }
}

/// MIME type from the content, else from the extension, else `application/octet-stream`.
fn sniff_content_type(head: &[u8], base_name: &str) -> String {
    infer::get(head)
        .map(|kind| kind.mime_type())
        .or_else(|| type_from_extension(base_name))
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// Types `infer` cannot see in the bytes (text formats, mostly).
fn type_from_extension(base_name: &str) -> Option<&'static str> {
    let (_, extension) = base_name.rsplit_once('.')?;
    Some(match extension.to_ascii_lowercase().as_str() {
        "txt" | "text" | "log" => "text/plain",
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "md" | "markdown" => "text/markdown",
        "htm" | "html" => "text/html",
        "css" => "text/css",
        "ics" => "text/calendar",
        "vcf" => "text/vcard",
        "json" => "application/json",
        "xml" => "application/xml",
        "yaml" | "yml" => "application/yaml",
        "svg" => "image/svg+xml",
        "eml" => "message/rfc822",
        _ => return None,
    })
}

/// Reads exactly `buf.len()` bytes at `offset` without moving any file cursor. Running
/// off the end means the archive lies about its layout, not that the disk failed.
fn read_at(file: &File, offset: u64, buf: &mut [u8], what: &str) -> Result<(), ExtractError> {
    match file.read_exact_at(buf, offset) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ExtractError::invalid(format!(
            "the {what} at offset {offset} runs past the end of the file"
        ))),
        Err(e) => Err(ExtractError::io(format!("reading the {what}"), e)),
    }
}

fn le_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The first read failure of the archive file since it was last taken.
type FaultSlot = Arc<Mutex<Option<io::Error>>>;

fn take_fault(fault: &FaultSlot) -> Option<io::Error> {
    fault.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// The archive file as the zip crate reads it. The crate reports a failing disk and a
/// corrupt archive alike; recording real read failures here tells them apart, so disk
/// errors stay retryable and corrupt uploads stay final.
struct TrackedFile {
    file: File,
    fault: FaultSlot,
}

impl Read for TrackedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf).inspect_err(|e| {
            // Reading a regular file fails only when the disk does (interrupts are
            // retried by the caller). Seek errors are not recorded: a crafted offset
            // can make them.
            if e.kind() != io::ErrorKind::Interrupted {
                let mut slot = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
                slot.get_or_insert_with(|| io::Error::new(e.kind(), e.to_string()));
            }
        })
    }
}

impl Seek for TrackedFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tempfile::TempDir;

    use super::*;
    use crate::testkit::{self, layout};

    /// A temporary directory holding `upload.zip` with `bytes`.
    fn upload(bytes: &[u8]) -> (TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("upload.zip");
        fs::write(&path, bytes).expect("write upload");
        (dir, path)
    }

    fn open_with(
        bytes: &[u8],
        limits: ExtractLimits,
    ) -> (TempDir, Result<SafeArchive, ExtractError>) {
        let (dir, path) = upload(bytes);
        let result = SafeArchive::open(&path, limits);
        (dir, result)
    }

    fn open_ok(bytes: &[u8]) -> (TempDir, SafeArchive) {
        let (dir, result) = open_with(bytes, ExtractLimits::default());
        (dir, result.expect("archive should open"))
    }

    /// The code `open` refuses `bytes` with under `limits`.
    fn refusal_with(bytes: &[u8], limits: ExtractLimits) -> ExtractError {
        match open_with(bytes, limits).1 {
            Ok(archive) => panic!("archive should be refused, got {archive:?}"),
            Err(e) => e,
        }
    }

    fn refusal(bytes: &[u8]) -> ExtractError {
        refusal_with(bytes, ExtractLimits::default())
    }

    /// Extracts every file; returns each entry with its result and the bytes written.
    fn extract_all(
        archive: &mut SafeArchive,
        dir: &Path,
    ) -> Vec<(EntryInfo, ExtractedFile, Vec<u8>)> {
        let entries = archive.entries().to_vec();
        entries
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                let dest = dir.join(format!("out-{i}"));
                let file = archive.extract_to(&entry, &dest).expect("extract");
                let bytes = fs::read(&dest).expect("read output");
                (entry, file, bytes)
            })
            .collect()
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    const PNG: &[u8] =
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    const PDF: &[u8] =
        b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";

    fn sample_files() -> Vec<(&'static str, Vec<u8>, &'static str)> {
        vec![
            ("reports/2024/q1.pdf", PDF.to_vec(), "application/pdf"),
            ("img/photo.png", PNG.to_vec(), "image/png"),
            ("notes.txt", b"plain text notes\n".repeat(100), "text/plain"),
            ("data.CSV", b"a,b\n1,2\n".to_vec(), "text/csv"),
            (
                "blob",
                (0..5000u32).map(|i| (i * 7 % 256) as u8).collect(),
                "application/octet-stream",
            ),
            ("empty.txt", Vec::new(), "text/plain"),
        ]
    }

    fn check_happy_path(zip: &[u8]) {
        let files = sample_files();
        let (dir, mut archive) = open_ok(zip);
        let names: Vec<_> = archive.entries().iter().map(|e| e.name.as_str()).collect();
        let expected: Vec<_> = files.iter().map(|f| f.0).collect();
        assert_eq!(names, expected);
        let extracted = extract_all(&mut archive, dir.path());
        for ((name, data, content_type), (entry, file, written)) in files.iter().zip(extracted) {
            assert_eq!(entry.base_name, *name.rsplit('/').next().unwrap());
            assert_eq!(entry.declared_size, data.len() as u64, "{name}");
            assert_eq!(file.size, data.len() as u64, "{name}");
            assert_eq!(file.sha256, sha256_hex(data), "{name}");
            assert_eq!(file.content_type, *content_type, "{name}");
            assert_eq!(written, *data, "{name}");
        }
    }

    fn as_pairs<'a>(
        files: &'a [(&'static str, Vec<u8>, &'static str)],
    ) -> Vec<(&'static str, &'a [u8])> {
        files.iter().map(|(n, d, _)| (*n, d.as_slice())).collect()
    }

    #[test]
    fn extracts_deflated_files_with_hashes_and_types() {
        let files = sample_files();
        check_happy_path(&testkit::zip_of(&as_pairs(&files)));
    }

    #[test]
    fn extracts_stored_files_with_hashes_and_types() {
        let files = sample_files();
        check_happy_path(&testkit::zip_stored(&as_pairs(&files)));
    }

    #[test]
    fn skips_directories_and_treats_nested_archives_as_files() {
        let (dir, mut archive) = open_ok(&testkit::zip_with_directory_and_nested());
        let names: Vec<_> = archive.entries().iter().map(|e| e.name.clone()).collect();
        assert_eq!(names, ["docs/inner.zip", "docs/readme.txt"]);
        assert_eq!(
            archive.entries()[0].index,
            1,
            "index counts the directory entry"
        );
        let extracted = extract_all(&mut archive, dir.path());
        assert_eq!(extracted[0].1.content_type, "application/zip");
        assert_eq!(extracted[1].2, b"read me");

        // The nested archive comes out intact, but is not opened.
        let nested = dir.path().join("out-0");
        let inner = SafeArchive::open(&nested, ExtractLimits::default()).expect("nested zip");
        assert_eq!(inner.entries()[0].name, "inner.txt");
    }

    #[test]
    fn ten_thousand_small_files_pass_default_limits() {
        let contents: Vec<(String, Vec<u8>)> = (0..10_000)
            .map(|i| {
                (
                    format!("batch/file-{i:05}.txt"),
                    format!("record {i}\n").into_bytes(),
                )
            })
            .collect();
        let pairs: Vec<(&str, &[u8])> = contents
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        let (dir, mut archive) = open_ok(&testkit::zip_of(&pairs));
        assert_eq!(archive.entries().len(), 10_000);
        let extracted = extract_all(&mut archive, dir.path());
        for ((name, data), (entry, file, written)) in contents.iter().zip(&extracted) {
            assert_eq!(&entry.name, name);
            assert_eq!(&file.sha256, &sha256_hex(data));
            assert_eq!(written, data);
        }
    }

    #[test]
    fn refuses_unsafe_names() {
        for (zip, name) in [
            (testkit::zip_traversal(), "../evil.txt"),
            (testkit::zip_absolute(), "/etc/cron.d/evil"),
            (testkit::zip_backslash(), "..\\evil.txt"),
            (testkit::zip_drive_letter(), "C:/Windows/evil.txt"),
        ] {
            let e = refusal(&zip);
            assert_eq!(e.code(), "ERR_ARCHIVE_UNSAFE_PATH", "{name}: {e}");
            assert!(e.to_string().contains(&format!("{name:?}")), "{e}");
            assert!(e.is_final());
        }
    }

    #[test]
    fn refuses_control_characters_in_names() {
        let mut zip = testkit::zip_of(&[("a_b.txt", b"x")]);
        layout(&zip)[0].set_name(&mut zip, b"a\nb.txt");
        assert_eq!(refusal(&zip).code(), "ERR_ARCHIVE_UNSAFE_PATH");
    }

    #[test]
    fn check_path_rules() {
        for ok in [
            "a.txt",
            "dir/a.txt",
            "dir/",
            "./a.txt",
            "caf\u{e9}.txt",
            "a..b",
            "...",
            "x/C:y",
        ] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
        assert!(check_path(&"a".repeat(MAX_NAME_BYTES)).is_ok());
        assert!(check_path(&"a".repeat(MAX_NAME_BYTES + 1)).is_err());
        for bad in [
            "", "/a", "../a", "a/../b", "a/..", "C:a", "c:/a", "a\\b", "a\0b", "a/.", ".",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refuses_symlinks() {
        let e = refusal(&testkit::zip_symlink());
        assert_eq!(e.code(), "ERR_ARCHIVE_SYMLINK");
        assert!(e.to_string().contains("\"link\""), "{e}");
    }

    #[test]
    fn non_regular_kinds() {
        assert_eq!(non_regular_kind(0, false), None);
        assert_eq!(non_regular_kind((S_IFREG | 0o644) << 16, false), None);
        assert_eq!(
            non_regular_kind(((S_IFDIR | 0o755) << 16) | 0x10, true),
            None
        );
        for mode in [S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK, S_IFDIR] {
            assert!(
                non_regular_kind((mode | 0o777) << 16, false).is_some(),
                "{mode:o}"
            );
        }
        assert!(non_regular_kind(DOS_REPARSE_POINT, false).is_some());
    }

    #[test]
    fn refuses_duplicates_after_case_folding_and_normalisation() {
        let e = refusal(&testkit::zip_duplicate_casefold());
        assert_eq!(e.code(), "ERR_ARCHIVE_DUPLICATE_NAME");
        assert!(e.to_string().contains("\"report.TXT\""), "{e}");
        assert_eq!(
            refusal(&testkit::zip_duplicate_unicode()).code(),
            "ERR_ARCHIVE_DUPLICATE_NAME"
        );
        let e = refusal(&testkit::zip_duplicate_exact());
        assert_eq!(e.code(), "ERR_ARCHIVE_DUPLICATE_NAME");
        assert!(e.to_string().contains("\"a.txt\""), "{e}");
    }

    #[test]
    fn dedupe_keys() {
        assert_eq!(dedupe_key("Stra\u{df}e.txt"), dedupe_key("STRASSE.TXT"));
        assert_eq!(
            dedupe_key("\u{212a}.txt"),
            dedupe_key("k.txt"),
            "Kelvin sign"
        );
        assert_eq!(dedupe_key("./a//b.txt"), dedupe_key("a/b.txt"));
        assert_eq!(dedupe_key("dir/"), dedupe_key("dir"));
        assert_ne!(dedupe_key("a.txt"), dedupe_key("b.txt"));
    }

    #[test]
    fn refuses_encrypted_entries() {
        let e = refusal(&testkit::zip_encrypted());
        assert_eq!(e.code(), "ERR_ARCHIVE_ENCRYPTED");
        assert!(e.to_string().contains("\"secret.txt\""), "{e}");
    }

    #[test]
    fn refuses_unsupported_methods() {
        let e = refusal(&testkit::zip_unsupported_method());
        assert_eq!(e.code(), "ERR_ARCHIVE_UNSUPPORTED_METHOD");
        assert!(e.to_string().contains("method 12"), "{e}");
    }

    #[test]
    fn refuses_overlapping_entries() {
        let e = refusal(&testkit::zip_overlap());
        assert_eq!(e.code(), "ERR_ARCHIVE_OVERLAP", "{e}");
        assert!(e.to_string().contains("\"a.txt\""), "{e}");
        let e = refusal(&testkit::zip_data_past_directory());
        assert_eq!(e.code(), "ERR_ARCHIVE_OVERLAP", "{e}");
        assert!(e.to_string().contains("central directory"), "{e}");
    }

    #[test]
    fn refuses_local_header_mismatches() {
        let e = refusal(&testkit::zip_header_mismatch());
        assert_eq!(e.code(), "ERR_ARCHIVE_HEADER_MISMATCH", "{e}");

        // Local CRC differs from the central one.
        let mut zip = testkit::zip_of(&[("a.txt", b"hello")]);
        let entry = layout(&zip)[0];
        let crc = testkit::get_u32(&zip, entry.local + 14);
        testkit::put_u32(&mut zip, entry.local + 14, crc ^ 1);
        assert_eq!(refusal(&zip).code(), "ERR_ARCHIVE_HEADER_MISMATCH");

        // Central entry pointing at something that is not a local header (but that
        // overlaps nothing).
        let mut zip = testkit::zip_of(&[("a.txt", b"hello")]);
        let entry = layout(&zip)[0];
        testkit::put_u32(&mut zip, entry.local, 0xdead_beef);
        assert_eq!(refusal(&zip).code(), "ERR_ARCHIVE_HEADER_MISMATCH");
    }

    #[test]
    fn refuses_ratio_bombs_before_extracting() {
        let e = refusal(&testkit::zip_ratio_bomb());
        assert_eq!(e.code(), "ERR_ARCHIVE_RATIO", "{e}");
        assert!(e.to_string().contains("\"zeros.bin\""), "{e}");
    }

    #[test]
    fn small_entries_are_exempt_from_the_ratio_limit() {
        let zeros = vec![0u8; RATIO_FLOOR_BYTES as usize];
        let (dir, mut archive) = open_ok(&testkit::zip_of(&[("sparse.bin", &zeros)]));
        let entry = archive.entries()[0].clone();
        assert!(entry.declared_size > entry.compressed_size * 200);
        let file = archive
            .extract_to(&entry, &dir.path().join("out"))
            .expect("under the floor");
        assert_eq!(file.size, zeros.len() as u64);
    }

    #[test]
    fn refuses_too_many_entries() {
        let limits = ExtractLimits {
            max_entries: 10,
            ..ExtractLimits::default()
        };
        assert!(
            open_with(&testkit::zip_too_many_entries(10), limits)
                .1
                .is_ok()
        );
        let e = refusal_with(&testkit::zip_too_many_entries(11), limits);
        assert_eq!(e.code(), "ERR_ARCHIVE_TOO_MANY_ENTRIES");
        assert!(e.to_string().contains("11 entries"), "{e}");
    }

    #[test]
    fn refuses_more_than_the_default_entry_limit_via_zip64() {
        let zip = testkit::zip_too_many_entries(100_001);
        let e = refusal(&zip);
        assert_eq!(e.code(), "ERR_ARCHIVE_TOO_MANY_ENTRIES", "{e}");

        // Refused from the ZIP64 end record, before the zip crate lists the entries.
        let (_dir, path) = upload(&zip);
        let file = File::open(&path).expect("open");
        let limits = ExtractLimits::default();
        let e = check_declared_entry_count(&file, zip.len() as u64, &limits).unwrap_err();
        assert_eq!(e.code(), "ERR_ARCHIVE_TOO_MANY_ENTRIES", "{e}");
    }

    #[test]
    fn accepts_zip64_archives_within_the_entry_limit() {
        let (_dir, archive) = open_ok(&testkit::zip_too_many_entries(70_000));
        assert_eq!(archive.entries().len(), 70_000);
        assert_eq!(archive.entries()[69_999].name, "f69999");
    }

    #[test]
    fn checks_names_from_unicode_path_fields_too() {
        let e = refusal(&testkit::zip_unicode_path_traversal());
        assert_eq!(e.code(), "ERR_ARCHIVE_UNSAFE_PATH", "{e}");
        assert!(e.to_string().contains("../evil.txt"), "{e}");
    }

    #[test]
    fn refuses_declared_sizes_over_limits() {
        let zip = testkit::zip_of(&[("a.bin", &[1u8; 1000]), ("b.bin", &[2u8; 1000])]);
        let per_entry = ExtractLimits {
            max_entry_bytes: 999,
            ..ExtractLimits::default()
        };
        let e = refusal_with(&zip, per_entry);
        assert_eq!(e.code(), "ERR_ARCHIVE_TOO_LARGE");
        assert!(e.to_string().contains("\"a.bin\""), "{e}");

        let total = ExtractLimits {
            max_total_bytes: 1999,
            ..ExtractLimits::default()
        };
        let e = refusal_with(&zip, total);
        assert_eq!(e.code(), "ERR_ARCHIVE_TOO_LARGE");
        assert!(e.to_string().contains("\"b.bin\""), "{e}");
    }

    #[test]
    fn running_total_counts_every_extraction() {
        let zip = testkit::zip_of(&[("a.bin", &[1u8; 1000]), ("b.bin", &[2u8; 1000])]);
        let limits = ExtractLimits {
            max_total_bytes: 2000,
            ..ExtractLimits::default()
        };
        let (dir, result) = open_with(&zip, limits);
        let mut archive = result.expect("exactly at the limit");
        let entries = archive.entries().to_vec();
        for (i, entry) in entries.iter().enumerate() {
            archive
                .extract_to(entry, &dir.path().join(format!("{i}")))
                .expect("within the total");
        }
        // Extracting again inflates bytes the archive no longer has budget for.
        let dest = dir.path().join("again");
        let e = archive.extract_to(&entries[0], &dest).unwrap_err();
        assert_eq!(e.code(), "ERR_ARCHIVE_TOO_LARGE", "{e}");
        assert!(e.to_string().contains("\"a.bin\""), "{e}");
        assert!(!dest.exists(), "partial output is removed");
    }

    #[test]
    fn progress_checks_count_real_bytes() {
        let limits = ExtractLimits {
            max_entries: 10,
            max_total_bytes: 10 << 20,
            max_entry_bytes: 4 << 20,
            max_ratio: 10,
        };
        let entry = EntryInfo {
            index: 0,
            name: "x".into(),
            base_name: "x".into(),
            declared_size: 3 << 20,
            compressed_size: 1 << 20,
        };
        let code = |size, total| check_progress(&limits, &entry, size, total).map_err(|e| e.code());
        assert_eq!(code(3 << 20, 3 << 20), Ok(()));
        assert_eq!(
            code((3 << 20) + 1, 3 << 20),
            Err("ERR_ARCHIVE_CORRUPT_ENTRY")
        );
        assert_eq!(code((4 << 20) + 1, 3 << 20), Err("ERR_ARCHIVE_TOO_LARGE"));
        assert_eq!(code(1 << 20, (10 << 20) + 1), Err("ERR_ARCHIVE_TOO_LARGE"));
        let tiny = EntryInfo {
            compressed_size: 1000,
            ..entry.clone()
        };
        let ratio = check_progress(&limits, &tiny, (1 << 20) + 1, 0).map_err(|e| e.code());
        assert_eq!(ratio, Err("ERR_ARCHIVE_RATIO"));
        assert_eq!(
            check_progress(&limits, &tiny, 1 << 20, 0).map_err(|e| e.code()),
            Ok(())
        );
    }

    #[test]
    fn refuses_entries_that_inflate_past_their_declared_size() {
        let (dir, mut archive) = open_ok(&testkit::zip_lying_size());
        let entry = archive.entries()[0].clone();
        assert_eq!(entry.declared_size, 16);
        let dest = dir.path().join("out");
        let e = archive.extract_to(&entry, &dest).unwrap_err();
        assert_eq!(e.code(), "ERR_ARCHIVE_CORRUPT_ENTRY", "{e}");
        assert!(e.to_string().contains("\"lie.bin\""), "{e}");
        assert!(!dest.exists(), "partial output is removed");
    }

    #[test]
    fn refuses_entries_shorter_than_declared() {
        let mut zip = testkit::zip_of(&[("short.txt", b"hello world")]);
        layout(&zip)[0].put_u32(&mut zip, 24, 22, 12);
        let (dir, mut archive) = open_ok(&zip);
        let entry = archive.entries()[0].clone();
        let e = archive
            .extract_to(&entry, &dir.path().join("out"))
            .unwrap_err();
        assert_eq!(e.code(), "ERR_ARCHIVE_CORRUPT_ENTRY", "{e}");
    }

    #[test]
    fn refuses_crc_mismatches() {
        let mut zip = testkit::zip_of(&[("a.txt", b"hello world")]);
        let entry = layout(&zip)[0];
        let crc = testkit::get_u32(&zip, entry.central + 16);
        entry.put_u32(&mut zip, 16, 14, crc ^ 1);
        let (dir, mut archive) = open_ok(&zip);
        let entry = archive.entries()[0].clone();
        let e = archive
            .extract_to(&entry, &dir.path().join("out"))
            .unwrap_err();
        assert_eq!(e.code(), "ERR_ARCHIVE_CORRUPT_ENTRY", "{e}");
        assert!(e.is_final());
    }

    #[test]
    fn refuses_stored_entries_with_inconsistent_sizes() {
        let mut zip = testkit::zip_stored(&[("a.txt", b"hello world")]);
        layout(&zip)[0].put_u32(&mut zip, 24, 22, 5);
        assert_eq!(refusal(&zip).code(), "ERR_ARCHIVE_CORRUPT_ENTRY");
    }

    #[test]
    fn refuses_what_is_not_a_zip() {
        assert_eq!(refusal(b"").code(), "ERR_ARCHIVE_INVALID");
        assert_eq!(refusal(PDF).code(), "ERR_ARCHIVE_INVALID");
        let zip = testkit::zip_of(&[("a.txt", b"hello")]);
        assert_eq!(
            refusal(&zip[..zip.len() - 10]).code(),
            "ERR_ARCHIVE_INVALID"
        );
    }

    #[test]
    fn accepts_an_empty_archive() {
        let (_dir, archive) = open_ok(&testkit::zip_of(&[]));
        assert!(archive.entries().is_empty());
    }

    #[test]
    fn disk_errors_are_retryable() {
        let (dir, mut archive) = open_ok(&testkit::zip_of(&[("a.txt", b"hello")]));
        let entry = archive.entries()[0].clone();
        let e = archive
            .extract_to(&entry, &dir.path().join("missing/out"))
            .unwrap_err();
        assert_eq!(e.code(), "ERR_IO");
        assert!(!e.is_final());

        let e =
            SafeArchive::open(&dir.path().join("nope.zip"), ExtractLimits::default()).unwrap_err();
        assert_eq!(e.code(), "ERR_IO");
    }

    #[test]
    fn refuses_entries_of_other_archives() {
        let (dir, mut archive) = open_ok(&testkit::zip_of(&[("a.txt", b"hello")]));
        let mut entry = archive.entries()[0].clone();
        entry.declared_size = u64::MAX;
        let e = archive
            .extract_to(&entry, &dir.path().join("out"))
            .unwrap_err();
        assert_eq!(e.code(), "ERR_EXTRACT_UNKNOWN_ENTRY");
    }

    #[test]
    fn safe_archive_can_move_to_a_blocking_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<SafeArchive>();
        assert_send::<ExtractError>();
    }
}
