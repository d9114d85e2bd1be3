//! Extra fields of local and central headers: the block must be a well-formed list of
//! records, and the two records that change how an entry is read are pulled out. The
//! ZIP64 record (0x0001) replaces header fields set to their ZIP64 markers; the
//! Info-ZIP Unicode Path record (0x7075) renames the entry for the readers that honour
//! it, so it must spell exactly the header's name.

use crate::format::{le_u16, le_u32, le_u64};

/// Header ID of the ZIP64 extended information extra field.
const ZIP64_ID: u16 = 0x0001;
/// Header ID of the Info-ZIP Unicode Path extra field.
const UNICODE_PATH_ID: u16 = 0x7075;

/// The records of an extra field block that matter for reading the entry.
#[derive(Debug, Default)]
pub(crate) struct Extras<'a> {
    /// Data of the ZIP64 extended information record, if any.
    pub(crate) zip64: Option<&'a [u8]>,
    /// Data of the Info-ZIP Unicode Path record, if any.
    pub(crate) unicode_path: Option<&'a [u8]>,
}

/// Splits an extra field block into its records; refuses a block that does not end
/// exactly at a record boundary or that repeats one of the records that matter (a
/// reader taking the first and one taking the last would disagree).
pub(crate) fn parse(block: &[u8]) -> Result<Extras<'_>, &'static str> {
    let mut extras = Extras::default();
    let mut rest = block;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err("its extra field ends in a truncated record");
        }
        let id = le_u16(rest, 0);
        let len = usize::from(le_u16(rest, 2));
        let Some(data) = rest.get(4..4 + len) else {
            return Err("an extra field record runs past the end of the extra field");
        };
        let slot = match id {
            ZIP64_ID => &mut extras.zip64,
            UNICODE_PATH_ID => &mut extras.unicode_path,
            _ => {
                rest = &rest[4 + len..];
                continue;
            }
        };
        if slot.replace(data).is_some() {
            return Err("its extra field holds the same record twice");
        }
        rest = &rest[4 + len..];
    }
    Ok(extras)
}

/// Values a ZIP64 record supplies, in the order the format lays them out: each is
/// present exactly when the header field it replaces holds its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Zip64Values {
    pub(crate) size: Option<u64>,
    pub(crate) compressed_size: Option<u64>,
    pub(crate) local_offset: Option<u64>,
    pub(crate) disk: Option<u32>,
}

impl Zip64Values {
    /// Whether some value the record holds does not fit its classic field (the
    /// marker itself included): ZIP64 is used only where it is needed.
    pub(crate) fn needed(self) -> bool {
        let wide = |v: Option<u64>| v.is_some_and(|v| v >= u64::from(u32::MAX));
        wide(self.size) || wide(self.compressed_size) || wide(self.local_offset)
    }
}

/// Which header fields hold their ZIP64 marker, and so must come from the record.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Markers {
    pub(crate) size: bool,
    pub(crate) compressed_size: bool,
    pub(crate) local_offset: bool,
    pub(crate) disk: bool,
}

impl Markers {
    fn any(self) -> bool {
        self.size || self.compressed_size || self.local_offset || self.disk
    }
}

/// Reads the ZIP64 record against the header's markers. The record must be present
/// exactly when some field holds its marker and hold exactly the replaced fields.
pub(crate) fn zip64_values(
    record: Option<&[u8]>,
    markers: Markers,
) -> Result<Zip64Values, &'static str> {
    let Some(data) = record else {
        if markers.any() {
            return Err("a header field holds its ZIP64 marker but there is no ZIP64 extra field");
        }
        return Ok(Zip64Values::default());
    };
    if !markers.any() {
        return Err("it has a ZIP64 extra field but no header field holds its ZIP64 marker");
    }
    let expected = 8
        * (usize::from(markers.size)
            + usize::from(markers.compressed_size)
            + usize::from(markers.local_offset))
        + 4 * usize::from(markers.disk);
    if data.len() != expected {
        return Err("its ZIP64 extra field does not hold exactly the fields its markers defer");
    }
    let mut at = 0;
    let mut next = |present: bool| {
        present.then(|| {
            at += 8;
            le_u64(data, at - 8)
        })
    };
    let size = next(markers.size);
    let compressed_size = next(markers.compressed_size);
    let local_offset = next(markers.local_offset);
    let disk = markers.disk.then(|| le_u32(data, at));
    Ok(Zip64Values {
        size,
        compressed_size,
        local_offset,
        disk,
    })
}

/// Checks an Info-ZIP Unicode Path record against the header name: version 1, the
/// CRC-32 of the header name, and a UTF-8 name byte-identical to the header's. Any
/// other spelling would show some readers a different name than others.
pub(crate) fn check_unicode_path(data: &[u8], header_name: &[u8]) -> Result<(), &'static str> {
    if data.len() < 5 || data[0] != 1 {
        return Err("its Unicode Path extra field is malformed");
    }
    if data[5..] != *header_name {
        return Err("its Unicode Path extra field names it differently than its header");
    }
    if le_u32(data, 1) != crc32fast::hash(header_name) {
        return Err("its Unicode Path extra field carries a CRC-32 of another name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u16, data: &[u8]) -> Vec<u8> {
        let mut out = id.to_le_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u16).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn parses_records_and_refuses_malformed_blocks() {
        let mut block = record(0x5455, b"\x03abcdefgh");
        block.extend(record(ZIP64_ID, &[0; 8]));
        let extras = parse(&block).expect("well formed");
        assert_eq!(extras.zip64, Some(&[0u8; 8][..]));
        assert!(extras.unicode_path.is_none());

        assert!(
            parse(&block[..block.len() - 1]).is_err(),
            "record cut short"
        );
        let mut padded = block.clone();
        padded.extend_from_slice(&[0, 0]);
        assert!(parse(&padded).is_err(), "trailing padding");
        let mut twice = block.clone();
        twice.extend(record(ZIP64_ID, &[0; 8]));
        assert!(parse(&twice).is_err(), "repeated ZIP64 record");
    }

    #[test]
    fn zip64_record_matches_the_markers_exactly() {
        let sizes = Markers {
            size: true,
            compressed_size: true,
            ..Markers::default()
        };
        let mut data = 7u64.to_le_bytes().to_vec();
        data.extend_from_slice(&5u64.to_le_bytes());
        let values = zip64_values(Some(&data), sizes).expect("both sizes");
        assert_eq!(values.size, Some(7));
        assert_eq!(values.compressed_size, Some(5));
        assert_eq!(values.local_offset, None);

        assert!(
            zip64_values(Some(&data[..8]), sizes).is_err(),
            "one size missing"
        );
        assert!(zip64_values(None, sizes).is_err(), "markers without record");
        assert!(
            zip64_values(Some(&data), Markers::default()).is_err(),
            "record without markers"
        );
        assert_eq!(
            zip64_values(None, Markers::default()),
            Ok(Zip64Values::default())
        );
    }

    #[test]
    fn unicode_path_must_spell_the_header_name() {
        let mut same = vec![1];
        same.extend_from_slice(&crc32fast::hash(b"invoice.pdf").to_le_bytes());
        same.extend_from_slice(b"invoice.pdf");
        assert_eq!(check_unicode_path(&same, b"invoice.pdf"), Ok(()));

        let mut other = vec![1];
        other.extend_from_slice(&crc32fast::hash(b"invoice.pdf").to_le_bytes());
        other.extend_from_slice(b"invoice.exe");
        assert!(check_unicode_path(&other, b"invoice.pdf").is_err());
        assert!(check_unicode_path(&same[..3], b"invoice.pdf").is_err());
        let mut stale = same.clone();
        stale[1] ^= 1;
        assert!(check_unicode_path(&stale, b"invoice.pdf").is_err());
    }
}
