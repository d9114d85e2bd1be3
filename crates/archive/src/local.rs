//! One entry's local part against its central header: the local header where the
//! previous entry ended, saying what the central header says; then the data; then,
//! when flagged, a data descriptor that agrees too. Returns where the next entry must
//! begin.

use crate::end::End;
use crate::extra::{self, Markers};
use crate::format::{
    DATA_DESCRIPTOR_FLAG, DESCRIPTOR_SIG, LOCAL_HEADER_LEN, LOCAL_SIG, METHOD_STORED,
    contains_signature, le_u16, le_u32, le_u64, read_at,
};
use crate::layout::Central;
use crate::{ArchiveSource, ExtractError};

/// Chunk in which stored data is scanned for a descriptor signature.
const SCAN_BYTES: usize = 64 * 1024;

/// What the local header says once its ZIP64 record is applied.
struct Local {
    crc32: u32,
    compressed_size: u64,
    size: u64,
    /// Whether sizes are ZIP64 (8 bytes) in the data descriptor too.
    zip64: bool,
    /// Offset of the entry's data.
    data_start: u64,
}

/// Checks entry `central`, whose local header must start at `expected`, right after
/// `previous` (the entry before it, if any). Returns the offset just past the entry.
pub(crate) fn check_local(
    source: &dyn ArchiveSource,
    central: &Central,
    expected: u64,
    previous: Option<&str>,
    end: &End,
) -> Result<u64, ExtractError> {
    let name = central.display_name();
    if central.local_offset < expected {
        return Err(ExtractError::Overlap {
            name,
            other: previous.map_or_else(
                || "the start of the archive".to_owned(),
                |p| format!("entry {p:?}"),
            ),
        });
    }
    if central.local_offset > expected {
        return Err(ExtractError::UnaccountedBytes {
            start: expected,
            end: central.local_offset,
        });
    }
    let local = read_local(source, central, &name, end.directory_offset)?;
    let data_end = local
        .data_start
        .checked_add(central.compressed_size)
        .filter(|&e| e <= end.directory_offset)
        .ok_or_else(|| into_directory(&name))?;
    if central.flags & DATA_DESCRIPTOR_FLAG == 0 {
        return Ok(data_end);
    }
    if central.method == METHOD_STORED {
        check_stored_data(source, &name, local.data_start, data_end)?;
    }
    check_descriptor(
        source,
        central,
        &local,
        &name,
        data_end,
        end.directory_offset,
    )
}

fn into_directory(name: &str) -> ExtractError {
    ExtractError::Overlap {
        name: name.to_owned(),
        other: "the central directory".to_owned(),
    }
}

/// Reads the local header and compares it with the central one.
fn read_local(
    source: &dyn ArchiveSource,
    central: &Central,
    name: &str,
    directory_offset: u64,
) -> Result<Local, ExtractError> {
    let mismatch = |detail: String| ExtractError::HeaderMismatch {
        name: name.to_owned(),
        detail,
    };
    let at = central.local_offset;
    if at + LOCAL_HEADER_LEN > directory_offset {
        return Err(into_directory(name));
    }
    let mut fixed = [0u8; LOCAL_HEADER_LEN as usize];
    read_at(source, at, &mut fixed, "local file header")?;
    if le_u32(&fixed, 0) != LOCAL_SIG {
        return Err(mismatch(format!(
            "there is no local file header at offset {at}"
        )));
    }
    let name_len = u64::from(le_u16(&fixed, 26));
    let extra_len = u64::from(le_u16(&fixed, 28));
    let data_start = at + LOCAL_HEADER_LEN + name_len + extra_len;
    if data_start > directory_offset {
        return Err(into_directory(name));
    }
    let mut variable = vec![0u8; (name_len + extra_len) as usize];
    read_at(
        source,
        at + LOCAL_HEADER_LEN,
        &mut variable,
        "local file name",
    )?;
    let (local_name, extra_block) = variable.split_at(name_len as usize);
    if *local_name != *central.name {
        return Err(mismatch("the file name differs".to_owned()));
    }
    let flags = le_u16(&fixed, 6);
    if flags != central.flags {
        return Err(mismatch(format!(
            "general purpose flags {flags:#06x} locally, {:#06x} in the directory",
            central.flags
        )));
    }
    let method = le_u16(&fixed, 8);
    if method != central.method {
        return Err(mismatch(format!(
            "compression method {method} locally, {} in the directory",
            central.method
        )));
    }
    let local = apply_local_extras(&fixed, extra_block, central, name, data_start)?;
    compare_values(&local, central, name)?;
    Ok(local)
}

/// Applies the local header's extra fields: a Unicode Path must spell the name, and a
/// ZIP64 record replaces exactly the sizes set to their markers.
fn apply_local_extras(
    fixed: &[u8],
    extra_block: &[u8],
    central: &Central,
    name: &str,
    data_start: u64,
) -> Result<Local, ExtractError> {
    let extras = extra::parse(extra_block).map_err(|detail| ExtractError::ExtraField {
        name: name.to_owned(),
        detail,
    })?;
    if let Some(path) = extras.unicode_path {
        extra::check_unicode_path(path, &central.name).map_err(|detail| {
            ExtractError::UnicodePath {
                name: name.to_owned(),
                detail,
            }
        })?;
    }
    crate::layout::check_version_needed(le_u16(fixed, 4), name, "local header")?;
    let compressed_size = le_u32(fixed, 18);
    let size = le_u32(fixed, 22);
    let markers = Markers {
        size: size == u32::MAX,
        compressed_size: compressed_size == u32::MAX,
        ..Markers::default()
    };
    let wide =
        extra::zip64_values(extras.zip64, markers).map_err(|detail| ExtractError::Zip64 {
            subject: format!("entry {name:?} (local header)"),
            detail: detail.to_owned(),
        })?;
    let needed =
        central.size >= u64::from(u32::MAX) || central.compressed_size >= u64::from(u32::MAX);
    if extras.zip64.is_some() != needed {
        return Err(ExtractError::Zip64 {
            subject: format!("entry {name:?} (local header)"),
            detail: if needed {
                "its sizes need ZIP64 but its local header has no ZIP64 extra field"
            } else {
                "its local header uses ZIP64 fields for sizes that fit the classic ones"
            }
            .to_owned(),
        });
    }
    if contains_signature(extra_block) {
        return Err(ExtractError::HiddenRecord {
            name: name.to_owned(),
            place: "local extra field",
        });
    }
    Ok(Local {
        crc32: le_u32(fixed, 14),
        compressed_size: wide.compressed_size.unwrap_or(u64::from(compressed_size)),
        size: wide.size.unwrap_or(u64::from(size)),
        zip64: extras.zip64.is_some(),
        data_start,
    })
}

/// Without a data descriptor the local CRC and sizes are the real ones; with one, each
/// is either zero (not known yet when the header was written) or the real one.
fn compare_values(local: &Local, central: &Central, name: &str) -> Result<(), ExtractError> {
    let deferred = central.flags & DATA_DESCRIPTOR_FLAG != 0;
    for (what, here, there) in [
        ("CRC-32", u64::from(local.crc32), u64::from(central.crc32)),
        (
            "compressed size",
            local.compressed_size,
            central.compressed_size,
        ),
        ("size", local.size, central.size),
    ] {
        if here != there && !(deferred && here == 0) {
            return Err(ExtractError::HeaderMismatch {
                name: name.to_owned(),
                detail: format!("{what} {here} locally, {there} in the directory"),
            });
        }
    }
    Ok(())
}

/// A stored entry with a data descriptor can only be read from a stream by searching
/// for the descriptor's signature, so the data must not contain one.
fn check_stored_data(
    source: &dyn ArchiveSource,
    name: &str,
    start: u64,
    end: u64,
) -> Result<(), ExtractError> {
    let sig = DESCRIPTOR_SIG.to_le_bytes();
    let mut buf = vec![0u8; SCAN_BYTES + 3];
    let mut at = start;
    // The last 3 bytes of each chunk are scanned again with the next, for signatures
    // across chunk boundaries.
    while at < end {
        let len = ((end - at) as usize).min(buf.len());
        read_at(source, at, &mut buf[..len], "entry data")?;
        if buf[..len].windows(4).any(|w| w == sig) {
            return Err(ExtractError::DataDescriptor {
                name: name.to_owned(),
                detail: "the data of a stored entry contains a data descriptor signature, where streaming readers would end it"
                    .to_owned(),
            });
        }
        if at + len as u64 == end {
            break;
        }
        at += (len - 3) as u64;
    }
    Ok(())
}

/// The data descriptor right after the data: signature, then CRC-32 and sizes equal to
/// the central header's (sizes 8 bytes wide when the local header uses ZIP64).
fn check_descriptor(
    source: &dyn ArchiveSource,
    central: &Central,
    local: &Local,
    name: &str,
    data_end: u64,
    directory_offset: u64,
) -> Result<u64, ExtractError> {
    let bad = |detail: &str| ExtractError::DataDescriptor {
        name: name.to_owned(),
        detail: detail.to_owned(),
    };
    let len = if local.zip64 { 24 } else { 16 };
    let descriptor_end = data_end + len;
    if descriptor_end > directory_offset {
        return Err(bad("it runs into the central directory"));
    }
    let mut d = [0u8; 24];
    read_at(source, data_end, &mut d[..len as usize], "data descriptor")?;
    if le_u32(&d, 0) != DESCRIPTOR_SIG {
        return Err(bad(
            "there is no data descriptor signature right after the data",
        ));
    }
    let (compressed_size, size) = if local.zip64 {
        (le_u64(&d, 8), le_u64(&d, 16))
    } else {
        (u64::from(le_u32(&d, 8)), u64::from(le_u32(&d, 12)))
    };
    if le_u32(&d, 4) != central.crc32
        || compressed_size != central.compressed_size
        || size != central.size
    {
        return Err(bad(
            "its CRC-32 or sizes differ from the central directory's",
        ));
    }
    Ok(descriptor_end)
}
