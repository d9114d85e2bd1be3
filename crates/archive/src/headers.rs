//! Local file headers against the central directory: every entry's local header and
//! data must lie before the central directory without overlapping another entry, and
//! must say what the central directory says, so readers that walk local headers and
//! readers that use the central directory see the same archive.

use crate::format::{
    DATA_DESCRIPTOR_FLAG, ENCRYPTION_FLAGS, LOCAL_HEADER_LEN, LOCAL_SIG, le_u16, le_u32, read_at,
};
use crate::validate::Scanned;
use crate::{ArchiveSource, ExtractError};

/// What an entry's local file header says.
struct LocalHeader {
    flags: u16,
    method: u16,
    crc32: u32,
    compressed_size: u32,
    size: u32,
    name_matches: bool,
}

/// Where an entry's local header and data lie: `[start, end)` and the entry's position.
type Extent = (u64, u64, usize);

/// Reads every local header: refuses entries whose header and data overlap another
/// entry or reach into the central directory, then local/central disagreements.
pub(crate) fn check_local_headers(
    scanned: &[Scanned],
    headers: &dyn ArchiveSource,
    directory_start: u64,
) -> Result<(), ExtractError> {
    let mut extents = Vec::with_capacity(scanned.len());
    let mut locals = Vec::with_capacity(scanned.len());
    for (at, s) in scanned.iter().enumerate() {
        let (extent, local) = read_local_header(s, at, headers, directory_start)?;
        extents.push(extent);
        locals.push(local);
    }
    check_overlaps(scanned, &mut extents)?;
    for (s, local) in scanned.iter().zip(&locals) {
        compare(s, local.as_ref())?;
    }
    Ok(())
}

/// Reads the local header of entry `at`; `None` if there is no local header signature
/// where the central directory points (reported after overlaps: a central entry
/// pointing into another entry's data is an overlap first and foremost).
fn read_local_header(
    s: &Scanned,
    at: usize,
    headers: &dyn ArchiveSource,
    directory_start: u64,
) -> Result<(Extent, Option<LocalHeader>), ExtractError> {
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
        return Ok(((s.header_start, fixed_end, at), None));
    }
    let name_len = u64::from(le_u16(&fixed, 26));
    let extra_len = u64::from(le_u16(&fixed, 28));
    let data_end = (fixed_end + name_len + extra_len)
        .checked_add(s.compressed_size)
        .filter(|&end| end <= directory_start)
        .ok_or_else(into_directory)?;
    let mut local_name = vec![0u8; name_len as usize];
    read_at(headers, fixed_end, &mut local_name, "local file name")?;
    let local = LocalHeader {
        flags: le_u16(&fixed, 6),
        method: le_u16(&fixed, 8),
        crc32: le_u32(&fixed, 14),
        compressed_size: le_u32(&fixed, 18),
        size: le_u32(&fixed, 22),
        name_matches: local_name == s.central.name,
    };
    Ok(((s.header_start, data_end, at), Some(local)))
}

/// Refuses the first extent that overlaps an earlier one.
fn check_overlaps(scanned: &[Scanned], extents: &mut [Extent]) -> Result<(), ExtractError> {
    // Sorted by start, an extent overlaps an earlier one exactly when it starts before
    // the furthest end seen so far.
    extents.sort_unstable();
    let mut furthest: Option<(u64, usize)> = None;
    for &(start, end, at) in extents.iter() {
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
    Ok(())
}

/// Refuses a local header that disagrees with the entry's central header.
fn compare(s: &Scanned, local: Option<&LocalHeader>) -> Result<(), ExtractError> {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::test_support::refusal;
    use crate::testkit::{self, layout};

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
}
