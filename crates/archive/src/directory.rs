//! The end of the archive and its central directory, read by hand: the entry counts
//! every end record declares (checked before the `zip` crate allocates per entry) and
//! the central directory file headers.

use std::collections::HashSet;
use std::io::{Read, Seek};

use zip::ZipArchive;

use crate::format::{
    CENTRAL_HEADER_LEN, CENTRAL_SIG, EOCD_LEN, EOCD_SEARCH_WINDOW, EOCD_SIG, EOCD64_LOCATOR_LEN,
    EOCD64_LOCATOR_SIG, EOCD64_MIN_LEN, EOCD64_SIG, le_u16, le_u32, le_u64, read_at,
};
use crate::{ArchiveSource, ExtractError, ExtractLimits};

/// Builds the error for byte-identical names, naming one if our own walk of the
/// central directory finds it.
pub(crate) fn exact_duplicate<R: Read + Seek>(
    archive: &ZipArchive<R>,
    headers: &dyn ArchiveSource,
) -> ExtractError {
    let mut seen = HashSet::new();
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
pub(crate) struct CentralHeader {
    pub(crate) flags: u16,
    pub(crate) method: u16,
    pub(crate) crc32: u32,
    pub(crate) compressed_size: u32,
    pub(crate) size: u32,
    pub(crate) external_attributes: u32,
    pub(crate) local_offset: u32,
    pub(crate) name: Vec<u8>,
    /// Length of the whole header, variable parts included.
    pub(crate) len: u64,
}

pub(crate) fn read_central_header(
    source: &dyn ArchiveSource,
    at: u64,
) -> Result<CentralHeader, ExtractError> {
    let mut fixed = [0u8; CENTRAL_HEADER_LEN];
    read_at(source, at, &mut fixed, "central directory header")?;
    if le_u32(&fixed, 0) != CENTRAL_SIG {
        return Err(ExtractError::invalid(format!(
            "no central directory header at offset {at}"
        )));
    }
    let name_len = le_u16(&fixed, 28);
    let mut name = vec![0u8; usize::from(name_len)];
    read_at(
        source,
        at + CENTRAL_HEADER_LEN as u64,
        &mut name,
        "file name",
    )?;
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
pub(crate) fn check_declared_entry_count(
    source: &dyn ArchiveSource,
    limits: &ExtractLimits,
) -> Result<(), ExtractError> {
    let len = source.len();
    let start = len.saturating_sub(EOCD_SEARCH_WINDOW);
    // At most EOCD_SEARCH_WINDOW bytes.
    let mut tail = vec![0u8; (len - start) as usize];
    read_at(source, start, &mut tail, "end of the archive")?;
    let mut declared = 0u64;
    for at in (0..tail.len().saturating_sub(EOCD_LEN - 1)).rev() {
        if le_u32(&tail, at) != EOCD_SIG {
            continue;
        }
        // Entries on this disk and in total; only one disk is supported, take both.
        declared = declared
            .max(u64::from(le_u16(&tail, at + 8)))
            .max(u64::from(le_u16(&tail, at + 10)));
        if let Some(zip64) = zip64_declared_entries(source, start + at as u64)? {
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
fn zip64_declared_entries(
    source: &dyn ArchiveSource,
    eocd_at: u64,
) -> Result<Option<u64>, ExtractError> {
    let Some(locator_at) = eocd_at.checked_sub(EOCD64_LOCATOR_LEN) else {
        return Ok(None);
    };
    let mut locator = [0u8; EOCD64_LOCATOR_LEN as usize];
    read_at(source, locator_at, &mut locator, "ZIP64 locator")?;
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
        read_at(source, at, &mut record, "ZIP64 end of central directory")?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{PDF, open_ok, refusal};
    use crate::testkit;

    #[test]
    fn refuses_more_than_the_default_entry_limit_via_zip64() {
        let zip = testkit::zip_too_many_entries(100_001);
        let e = refusal(&zip);
        assert_eq!(e.code(), "ERR_ARCHIVE_TOO_MANY_ENTRIES", "{e}");

        // Refused from the ZIP64 end record, before the zip crate lists the entries.
        let limits = ExtractLimits::default();
        let e = check_declared_entry_count(&zip, &limits).unwrap_err();
        assert_eq!(e.code(), "ERR_ARCHIVE_TOO_MANY_ENTRIES", "{e}");
    }

    #[test]
    fn accepts_zip64_archives_within_the_entry_limit() {
        let (_dir, archive) = open_ok(&testkit::zip_too_many_entries(70_000));
        assert_eq!(archive.entries().len(), 70_000);
        assert_eq!(archive.entries()[69_999].name, "f69999");
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
}
