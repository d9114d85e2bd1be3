//! The end of a canonical archive: exactly one end of central directory record, ending
//! exactly at the end of the file (its comment included), with no record signature in
//! the comment for a backwards search to stop at; before it, where ZIP64 is used, the
//! ZIP64 end record immediately followed by its locator. Every count, size and offset
//! the classic record holds is either its ZIP64 marker (only with a ZIP64 end record)
//! or the same value as the ZIP64 record.

use crate::format::{
    EOCD_LEN, EOCD_SEARCH_WINDOW, EOCD_SIG, EOCD64_LOCATOR_LEN, EOCD64_LOCATOR_SIG, EOCD64_MIN_LEN,
    EOCD64_SIG, contains_signature, le_u16, le_u32, le_u64, read_at,
};
use crate::{ArchiveSource, ExtractError};

const MARKER_16: u64 = 0xFFFF;
const MARKER_32: u64 = 0xFFFF_FFFF;

/// Where the central directory is and how many entries it holds, as the end records
/// agree on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct End {
    /// Entries the central directory holds.
    pub(crate) entries: u64,
    /// Offset of the central directory.
    pub(crate) directory_offset: u64,
    /// Where the central directory must end: at the ZIP64 end record if there is one,
    /// else at the end of central directory record.
    pub(crate) directory_end: u64,
}

/// The classic record's fields, widened.
struct Classic {
    disk: u64,
    directory_disk: u64,
    entries_on_disk: u64,
    entries: u64,
    directory_size: u64,
    directory_offset: u64,
}

/// Reads and checks the end records of the source.
pub(crate) fn read_end(source: &dyn ArchiveSource) -> Result<End, ExtractError> {
    let len = source.len();
    let start = len.saturating_sub(EOCD_SEARCH_WINDOW);
    // At most EOCD_SEARCH_WINDOW bytes.
    let mut tail = vec![0u8; (len - start) as usize];
    read_at(source, start, &mut tail, "end of the archive")?;
    let at = find_end_record(&tail, start)?;
    let comment = &tail[at + EOCD_LEN..];
    if contains_signature(comment) {
        return Err(end_record(
            "its comment contains a ZIP record signature, where readers searching for the record could stop",
        ));
    }
    let r = &tail[at..at + EOCD_LEN];
    let classic = Classic {
        disk: u64::from(le_u16(r, 4)),
        directory_disk: u64::from(le_u16(r, 6)),
        entries_on_disk: u64::from(le_u16(r, 8)),
        entries: u64::from(le_u16(r, 10)),
        directory_size: u64::from(le_u32(r, 12)),
        directory_offset: u64::from(le_u32(r, 16)),
    };
    let eocd_at = start + at as u64;
    let locator_at = eocd_at.checked_sub(EOCD64_LOCATOR_LEN);
    let mut locator_sig = [0u8; 4];
    if let Some(locator_at) = locator_at {
        read_at(source, locator_at, &mut locator_sig, "ZIP64 locator")?;
    }
    let end = match locator_at {
        Some(locator_at) if u32::from_le_bytes(locator_sig) == EOCD64_LOCATOR_SIG => {
            let (record_at, wide) = read_zip64_end(source, locator_at)?;
            agree_with_zip64(&classic, &wide)?;
            end_from(&wide, record_at)?
        }
        _ => {
            classic_only(&classic)?;
            end_from(&classic, eocd_at)?
        }
    };
    Ok(end)
}

/// Index in `tail` of the end record that ends exactly at the end of the file.
fn find_end_record(tail: &[u8], start: u64) -> Result<usize, ExtractError> {
    let mut last_seen = None;
    for at in (0..tail.len().saturating_sub(EOCD_LEN - 1)).rev() {
        if le_u32(tail, at) != EOCD_SIG {
            continue;
        }
        let end = at + EOCD_LEN + usize::from(le_u16(tail, at + 20));
        if end == tail.len() {
            return Ok(at);
        }
        last_seen.get_or_insert((at, end));
    }
    match last_seen {
        Some((_, end)) if end < tail.len() => Err(ExtractError::UnaccountedBytes {
            start: start + end as u64,
            end: start + tail.len() as u64,
        }),
        Some(_) => Err(ExtractError::invalid(
            "the end of central directory record runs past the end of the file",
        )),
        None => Err(ExtractError::invalid(
            "no end of central directory record (not a ZIP archive, or truncated)",
        )),
    }
}

/// Reads the ZIP64 locator at `locator_at` and the ZIP64 end record it points at,
/// which must end exactly where the locator starts.
fn read_zip64_end(
    source: &dyn ArchiveSource,
    locator_at: u64,
) -> Result<(u64, Classic), ExtractError> {
    let mut locator = [0u8; EOCD64_LOCATOR_LEN as usize];
    read_at(source, locator_at, &mut locator, "ZIP64 locator")?;
    if le_u32(&locator, 4) != 0 || le_u32(&locator, 16) > 1 {
        return Err(zip64_end("its locator names another disk"));
    }
    let record_at = le_u64(&locator, 8);
    if record_at.checked_add(EOCD64_MIN_LEN) != Some(locator_at) {
        return Err(zip64_end(
            "the ZIP64 end record does not end exactly where its locator starts",
        ));
    }
    let mut r = [0u8; EOCD64_MIN_LEN as usize];
    read_at(source, record_at, &mut r, "ZIP64 end of central directory")?;
    if le_u32(&r, 0) != EOCD64_SIG {
        return Err(zip64_end(
            "there is no ZIP64 end record where its locator points",
        ));
    }
    if le_u64(&r, 4) != EOCD64_MIN_LEN - 12 {
        return Err(zip64_end(
            "the ZIP64 end record has an extensible data sector",
        ));
    }
    let wide = Classic {
        disk: u64::from(le_u32(&r, 16)),
        directory_disk: u64::from(le_u32(&r, 20)),
        entries_on_disk: le_u64(&r, 24),
        entries: le_u64(&r, 32),
        directory_size: le_u64(&r, 40),
        directory_offset: le_u64(&r, 48),
    };
    Ok((record_at, wide))
}

/// Each classic field is its marker or the ZIP64 record's value.
fn agree_with_zip64(classic: &Classic, wide: &Classic) -> Result<(), ExtractError> {
    for (what, here, marker, there) in [
        ("disk number", classic.disk, MARKER_16, wide.disk),
        (
            "directory disk number",
            classic.directory_disk,
            MARKER_16,
            wide.directory_disk,
        ),
        (
            "entries on this disk",
            classic.entries_on_disk,
            MARKER_16,
            wide.entries_on_disk,
        ),
        ("entry count", classic.entries, MARKER_16, wide.entries),
        (
            "directory size",
            classic.directory_size,
            MARKER_32,
            wide.directory_size,
        ),
        (
            "directory offset",
            classic.directory_offset,
            MARKER_32,
            wide.directory_offset,
        ),
    ] {
        if here != marker && here != there {
            return Err(zip64_end(format!(
                "the end record's {what} is {here}, the ZIP64 end record's {there}"
            )));
        }
    }
    Ok(())
}

/// Without a ZIP64 end record no classic field may hold its ZIP64 marker: readers
/// that see one go looking for ZIP64 records elsewhere.
fn classic_only(classic: &Classic) -> Result<(), ExtractError> {
    let markers = [
        classic.disk == MARKER_16,
        classic.directory_disk == MARKER_16,
        classic.entries_on_disk == MARKER_16,
        classic.entries == MARKER_16,
        classic.directory_size == MARKER_32,
        classic.directory_offset == MARKER_32,
    ];
    if markers.contains(&true) {
        return Err(zip64_end(
            "the end record holds ZIP64 markers but there is no ZIP64 end record before it",
        ));
    }
    Ok(())
}

/// The directory's place from the (agreed) fields; the directory must end exactly at
/// `directory_end`.
fn end_from(r: &Classic, directory_end: u64) -> Result<End, ExtractError> {
    if r.disk != 0 || r.directory_disk != 0 {
        return Err(end_record(
            "it names a disk other than the first (split archive)",
        ));
    }
    if r.entries_on_disk != r.entries {
        return Err(ExtractError::EntryCount {
            detail: format!(
                "the end record lists {} entries on this disk but {} in total",
                r.entries_on_disk, r.entries
            ),
        });
    }
    let listed_end = r.directory_offset.checked_add(r.directory_size);
    match listed_end {
        Some(listed_end) if listed_end == directory_end => Ok(End {
            entries: r.entries,
            directory_offset: r.directory_offset,
            directory_end,
        }),
        Some(listed_end) if listed_end < directory_end => Err(ExtractError::UnaccountedBytes {
            start: listed_end,
            end: directory_end,
        }),
        _ => Err(end_record(
            "the central directory it points at runs into the end records",
        )),
    }
}

fn end_record(detail: impl Into<String>) -> ExtractError {
    ExtractError::EndRecord {
        detail: detail.into(),
    }
}

fn zip64_end(detail: impl Into<String>) -> ExtractError {
    ExtractError::Zip64 {
        subject: "the end records".to_owned(),
        detail: detail.into(),
    }
}
