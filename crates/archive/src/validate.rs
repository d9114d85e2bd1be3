//! Each entry of the central directory on its own: read through the `zip` crate and
//! by hand, the two readings compared, then its type, encryption, method and declared
//! sizes checked against the limits.

use std::io::{Read, Seek};

use zip::ZipArchive;

use crate::directory::{CentralHeader, exact_duplicate, read_central_header};
use crate::format::{ENCRYPTION_FLAGS, METHOD_AES, METHOD_DEFLATE, METHOD_STORED};
use crate::headers::check_local_headers;
use crate::limits::ratio_exceeded;
use crate::names::{base_name, check_canonical, check_duplicates, check_path};
use crate::{ArchiveSource, EntryInfo, ExtractError, ExtractLimits};

const S_IFMT: u32 = 0o170_000;
const S_IFSOCK: u32 = 0o140_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFREG: u32 = 0o100_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFIFO: u32 = 0o010_000;
/// MS-DOS directory attribute.
const DOS_DIRECTORY: u32 = 0x0010;
/// MS-DOS attribute of NTFS reparse points (symbolic links, junctions).
const DOS_REPARSE_POINT: u32 = 0x0400;

/// One entry of the central directory, as both the crate and our own read see it.
pub(crate) struct Scanned {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) is_dir: bool,
    pub(crate) central: CentralHeader,
    pub(crate) header_start: u64,
    pub(crate) compressed_size: u64,
    pub(crate) size: u64,
}

/// Validates every entry; returns the regular files in archive order.
pub(crate) fn validate<R: Read + Seek>(
    archive: &ZipArchive<R>,
    headers: &dyn ArchiveSource,
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
    headers: &dyn ArchiveSource,
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
    check_canonical(&name).map_err(|reason| ExtractError::NoncanonicalName {
        name: name.clone(),
        reason,
    })?;

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
    if let Some(detail) = directory_marks_disagree(s.central.external_attributes, s.is_dir) {
        return Err(ExtractError::DirectoryMismatch {
            name: name(),
            detail,
        });
    }
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

/// How an entry's marks of being a directory disagree, if they do: the trailing slash
/// (what most readers go by), the MS-DOS directory attribute (what Windows tools and
/// bsdtar also honour) and the Unix file type.
fn directory_marks_disagree(external_attributes: u32, is_dir: bool) -> Option<&'static str> {
    let dos_dir = external_attributes & DOS_DIRECTORY != 0;
    let unix = (external_attributes >> 16) & S_IFMT;
    if dos_dir && !is_dir {
        Some("it has the MS-DOS directory attribute but no trailing slash")
    } else if unix == S_IFDIR && !is_dir {
        Some("its Unix mode says directory but its name has no trailing slash")
    } else if unix == S_IFREG && is_dir {
        Some("its name ends in a slash but its Unix mode says regular file")
    } else {
        None
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RATIO_FLOOR_BYTES;
    use crate::test_support::{open_ok, open_with, refusal, refusal_with};
    use crate::testkit::{self, layout};

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
    fn refuses_stored_entries_with_inconsistent_sizes() {
        let mut zip = testkit::zip_stored(&[("a.txt", b"hello world")]);
        layout(&zip)[0].put_u32(&mut zip, 24, 22, 5);
        assert_eq!(refusal(&zip).code(), "ERR_ARCHIVE_CORRUPT_ENTRY");
    }
}
