//! The canonical-archive rule, checked on the raw bytes before anything else reads
//! them: every byte of the file is accounted for, and every field that is stored twice
//! says the same thing both times.
//!
//! The file is, in this order and with nothing in between: for each entry of the
//! central directory, in directory order and starting at offset 0, its local header,
//! its data and (when flagged) its data descriptor; then the central directory; then
//! the ZIP64 end record and locator where ZIP64 is used; then the end of central
//! directory record and its comment, ending the file (see `end`). So a reader that
//! walks local headers from the start, one that searches for the end record, and one
//! that follows the directory all find the same entries at the same places.

use std::io::{self, BufReader, Read};

use crate::end::{End, read_end};
use crate::extra::{self, Markers};
use crate::format::{CENTRAL_HEADER_LEN, CENTRAL_SIG, contains_signature, le_u16, le_u32};
use crate::local::check_local;
use crate::source::SourceCursor;
use crate::{ArchiveSource, ExtractError};

/// General purpose flag bit 11: the name (and comment) are UTF-8.
const UTF8_FLAG: u16 = 0x0800;
/// "Version made by" hosts whose names Info-ZIP `unzip` converts from the OEM code
/// page: MS-DOS/FAT (0), OS/2 HPFS (6), Windows NTFS (10 in APPNOTE, 11 in Info-ZIP's
/// own numbering) and VFAT (14).
const OEM_HOSTS: [u16; 5] = [0, 6, 10, 11, 14];
/// Reading buffer for the central directory.
const DIRECTORY_BUFFER_BYTES: usize = 64 * 1024;

/// One central directory header, with its ZIP64 values applied.
#[derive(Debug)]
pub(crate) struct Central {
    pub(crate) flags: u16,
    pub(crate) method: u16,
    pub(crate) crc32: u32,
    pub(crate) compressed_size: u64,
    pub(crate) size: u64,
    pub(crate) local_offset: u64,
    pub(crate) name: Vec<u8>,
}

impl Central {
    /// The name for messages.
    pub(crate) fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// Checks the whole archive against the canonical-archive rule.
pub(crate) fn check_layout(source: &dyn ArchiveSource) -> Result<(), ExtractError> {
    let end = read_end(source)?;
    let mut directory = DirectoryReader::new(source, &end);
    // Where the next local header must start: entries are contiguous from offset 0.
    let mut expected = 0u64;
    let mut previous: Option<String> = None;
    let mut count = 0u64;
    while let Some(central) = directory.next_header()? {
        count += 1;
        if count > end.entries {
            return Err(ExtractError::EntryCount {
                detail: format!(
                    "the end record lists {} entries but the central directory holds more",
                    end.entries
                ),
            });
        }
        expected = check_local(source, &central, expected, previous.as_deref(), &end)?;
        previous = Some(central.display_name());
    }
    if count != end.entries {
        return Err(ExtractError::EntryCount {
            detail: format!(
                "the end record lists {} entries but the central directory holds {count}",
                end.entries
            ),
        });
    }
    if expected != end.directory_offset {
        return Err(ExtractError::UnaccountedBytes {
            start: expected,
            end: end.directory_offset,
        });
    }
    Ok(())
}

/// Reads the central directory's headers in order, up to where it must end.
struct DirectoryReader<'a> {
    reader: BufReader<SourceCursor<&'a dyn ArchiveSource>>,
    at: u64,
    end: u64,
}

impl<'a> DirectoryReader<'a> {
    fn new(source: &'a dyn ArchiveSource, end: &End) -> Self {
        let cursor = SourceCursor::new(source, end.directory_offset);
        Self {
            reader: BufReader::with_capacity(DIRECTORY_BUFFER_BYTES, cursor),
            at: end.directory_offset,
            end: end.directory_end,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<(), ExtractError> {
        if self.at + buf.len() as u64 > self.end {
            return Err(ExtractError::invalid(format!(
                "the central directory header at offset {} runs past the central directory",
                self.at
            )));
        }
        self.reader.read_exact(buf).map_err(|e| {
            // As `format::read_at`: the source ending early is a short archive, not a
            // failing source.
            if e.kind() == io::ErrorKind::UnexpectedEof {
                ExtractError::invalid(format!(
                    "the central directory header at offset {} runs past the end of the file",
                    self.at
                ))
            } else {
                ExtractError::io("reading the central directory", e)
            }
        })?;
        self.at += buf.len() as u64;
        Ok(())
    }

    /// The next header, or `None` at the directory's end.
    fn next_header(&mut self) -> Result<Option<Central>, ExtractError> {
        if self.at == self.end {
            return Ok(None);
        }
        let at = self.at;
        let mut fixed = [0u8; CENTRAL_HEADER_LEN];
        self.read(&mut fixed)?;
        if le_u32(&fixed, 0) != CENTRAL_SIG {
            return Err(ExtractError::invalid(format!(
                "no central directory header at offset {at}"
            )));
        }
        let mut name = vec![0u8; usize::from(le_u16(&fixed, 28))];
        self.read(&mut name)?;
        let mut extra = vec![0u8; usize::from(le_u16(&fixed, 30))];
        self.read(&mut extra)?;
        // The entry comment is shown by few tools and changes no name or byte.
        let mut comment = vec![0u8; usize::from(le_u16(&fixed, 32))];
        self.read(&mut comment)?;
        for (place, bytes) in [("comment", &comment), ("extra field", &extra)] {
            if contains_signature(bytes) {
                return Err(ExtractError::HiddenRecord {
                    name: String::from_utf8_lossy(&name).into_owned(),
                    place,
                });
            }
        }
        parse_central(&fixed, name, &extra).map(Some)
    }
}

/// The most any entry this crate accepts needs (ZIP64: 4.5). Readers compare the
/// low byte of "version needed to extract" with what they support.
pub(crate) const MAX_VERSION_NEEDED: u16 = 45;

/// Refuses a "version needed to extract" above [`MAX_VERSION_NEEDED`].
pub(crate) fn check_version_needed(
    field: u16,
    name: &str,
    place: &'static str,
) -> Result<(), ExtractError> {
    let version = field & 0xff;
    if version > MAX_VERSION_NEEDED {
        return Err(ExtractError::UnsupportedVersion {
            name: name.to_owned(),
            version,
            place,
        });
    }
    Ok(())
}

/// Applies the extra fields to a central header and checks its name's encoding.
fn parse_central(fixed: &[u8], name: Vec<u8>, extra: &[u8]) -> Result<Central, ExtractError> {
    let shown = String::from_utf8_lossy(&name).into_owned();
    let flags = le_u16(fixed, 8);
    check_name_encoding(&name, flags, le_u16(fixed, 4) >> 8, &shown)?;
    check_version_needed(le_u16(fixed, 6), &shown, "central header")?;
    let extras = extra::parse(extra).map_err(|detail| ExtractError::ExtraField {
        name: shown.clone(),
        detail,
    })?;
    if let Some(path) = extras.unicode_path {
        extra::check_unicode_path(path, &name).map_err(|detail| ExtractError::UnicodePath {
            name: shown.clone(),
            detail,
        })?;
    }
    let size = le_u32(fixed, 24);
    let compressed_size = le_u32(fixed, 20);
    let local_offset = le_u32(fixed, 42);
    let disk = le_u16(fixed, 34);
    let markers = Markers {
        size: size == u32::MAX,
        compressed_size: compressed_size == u32::MAX,
        local_offset: local_offset == u32::MAX,
        disk: disk == u16::MAX,
    };
    let zip64 = |detail: &str| ExtractError::Zip64 {
        subject: format!("entry {shown:?}"),
        detail: detail.to_owned(),
    };
    let wide = extra::zip64_values(extras.zip64, markers).map_err(zip64)?;
    if wide.disk.unwrap_or(u32::from(disk)) != 0 {
        return Err(zip64(
            "its central header names a disk other than the first",
        ));
    }
    if extras.zip64.is_some() && !wide.needed() {
        return Err(zip64(
            "its central header uses ZIP64 fields for values that fit the classic ones",
        ));
    }
    Ok(Central {
        flags,
        method: le_u16(fixed, 10),
        crc32: le_u32(fixed, 16),
        compressed_size: wide.compressed_size.unwrap_or(u64::from(compressed_size)),
        size: wide.size.unwrap_or(u64::from(size)),
        local_offset: wide.local_offset.unwrap_or(u64::from(local_offset)),
        name,
    })
}

/// A name is ASCII, or UTF-8 with the UTF-8 flag: without the flag, readers decode
/// non-ASCII bytes as CP437, as the system's code page or as UTF-8, and show
/// different names. Even flagged, Info-ZIP `unzip` converts the names of entries made
/// on MS-DOS, OS/2 or Windows hosts from the OEM code page, so a non-ASCII name must
/// come from another host (Unix, macOS...).
fn check_name_encoding(
    name: &[u8],
    flags: u16,
    host: u16,
    shown: &str,
) -> Result<(), ExtractError> {
    let detail = if name.is_ascii() {
        return Ok(());
    } else if flags & UTF8_FLAG == 0 {
        "it has non-ASCII bytes without the UTF-8 flag"
    } else if std::str::from_utf8(name).is_err() {
        "it is flagged UTF-8 but is not valid UTF-8"
    } else if OEM_HOSTS.contains(&host) {
        "it has a non-ASCII name from an MS-DOS, OS/2 or Windows host, which unzip converts from the OEM code page"
    } else {
        return Ok(());
    };
    Err(ExtractError::NameEncoding {
        name: shown.to_owned(),
        detail,
    })
}

#[cfg(test)]
mod tests {
    use crate::test_support::{open_ok, refusal};
    use crate::testkit::{self, layout};

    fn code(zip: &[u8]) -> &'static str {
        refusal(zip).code()
    }

    /// Offset of the classic end record of a testkit archive (no comment).
    fn eocd(zip: &[u8]) -> usize {
        zip.len() - 22
    }

    #[test]
    fn refuses_bytes_after_the_end_record() {
        let zip = testkit::zip_of(&[("a.txt", b"hello"), ("b.txt", b"world")]);
        // The case: an empty end record appended; other readers see nothing.
        let mut empty_after = zip.clone();
        empty_after.extend_from_slice(&zip[eocd(&zip)..eocd(&zip) + 8]);
        empty_after.extend_from_slice(&[0; 14]);
        assert_eq!(code(&empty_after), "ERR_ARCHIVE_UNACCOUNTED_BYTES");
        let mut garbage = zip.clone();
        garbage.extend_from_slice(b"trailing");
        assert_eq!(code(&garbage), "ERR_ARCHIVE_UNACCOUNTED_BYTES");
    }

    #[test]
    fn refuses_bytes_before_and_between_entries() {
        // A prefix, with every offset moved so the directory still points right.
        let zip = testkit::zip_stored(&[("a.txt", b"hello")]);
        let mut prefixed = b"MZ-stub-".to_vec();
        prefixed.extend_from_slice(&zip);
        let entry = layout(&zip)[0];
        testkit::put_u32(&mut prefixed, 8 + entry.central + 42, 8);
        let at = 8 + eocd(&zip) + 16;
        let offset = testkit::get_u32(&prefixed, at);
        testkit::put_u32(&mut prefixed, at, offset + 8);
        let e = refusal(&prefixed);
        assert_eq!(e.code(), "ERR_ARCHIVE_UNACCOUNTED_BYTES", "{e}");
        assert!(e.to_string().contains("bytes 0 to 8"), "{e}");
    }

    #[test]
    fn refuses_end_record_comments_holding_signatures() {
        let mut zip = testkit::zip_of(&[("a.txt", b"hello")]);
        let at = eocd(&zip);
        testkit::put_u16(&mut zip, at + 20, 22);
        let record = zip[at..at + 22].to_vec();
        zip.extend_from_slice(&record);
        assert_eq!(code(&zip), "ERR_ARCHIVE_END_RECORD");
    }

    #[test]
    fn refuses_entry_counts_that_disagree() {
        let mut zip = testkit::zip_of(&[("a.txt", b"hello"), ("b.txt", b"world")]);
        let at = eocd(&zip);
        testkit::put_u16(&mut zip, at + 8, 1);
        testkit::put_u16(&mut zip, at + 10, 1);
        assert_eq!(code(&zip), "ERR_ARCHIVE_ENTRY_COUNT");
        let mut zip = testkit::zip_of(&[("a.txt", b"hello")]);
        let at = eocd(&zip);
        testkit::put_u16(&mut zip, at + 8, 2);
        assert_eq!(code(&zip), "ERR_ARCHIVE_ENTRY_COUNT");
    }

    #[test]
    fn refuses_zip64_markers_without_zip64_records() {
        let mut zip = testkit::zip_of(&[("a.txt", b"hello")]);
        let at = eocd(&zip);
        testkit::put_u32(&mut zip, at + 12, u32::MAX);
        assert_eq!(code(&zip), "ERR_ARCHIVE_ZIP64");
    }

    #[test]
    fn refuses_flags_that_differ_between_headers() {
        let mut zip = testkit::zip_of(&[("a.txt", b"hello")]);
        let entry = layout(&zip)[0];
        let flags = testkit::get_u16(&zip, entry.local + 6);
        testkit::put_u16(&mut zip, entry.local + 6, flags | 0x0001);
        assert_eq!(code(&zip), "ERR_ARCHIVE_HEADER_MISMATCH");
    }

    #[test]
    fn refuses_unicode_path_fields_that_differ_from_the_name() {
        let e = refusal(&testkit::zip_unicode_path(&[(
            "invoice.pdf",
            "invoice.exe",
        )]));
        assert_eq!(e.code(), "ERR_ARCHIVE_UNICODE_PATH", "{e}");
        assert!(e.to_string().contains("\"invoice.pdf\""), "{e}");
        // Two entries named alike whose Unicode Path fields differ.
        let twins = testkit::zip_unicode_path(&[("report.txt", "report-1.txt")]);
        assert_eq!(code(&twins), "ERR_ARCHIVE_UNICODE_PATH");
        // A field that spells the header name is fine.
        open_ok(&testkit::zip_unicode_path(&[("same.txt", "same.txt")]));
    }

    #[test]
    fn refuses_non_ascii_names_without_the_utf8_flag() {
        let mut zip = testkit::zip_of(&[("caf\u{e9}.txt", b"x")]);
        let entry = layout(&zip)[0];
        entry.patch_flags(&mut zip, |flags| flags & !0x0800);
        assert_eq!(code(&zip), "ERR_ARCHIVE_NAME_ENCODING");
    }

    #[test]
    fn refuses_files_with_a_directory_attribute() {
        let mut zip = testkit::zip_of(&[("report", b"not a directory")]);
        let entry = layout(&zip)[0];
        let attributes = testkit::get_u32(&zip, entry.central + 38);
        testkit::put_u32(&mut zip, entry.central + 38, attributes | 0x10);
        assert_eq!(code(&zip), "ERR_ARCHIVE_DIRECTORY_MISMATCH");
    }

    #[test]
    fn refuses_non_canonical_names() {
        for name in [
            "invoice\u{202e}fdp.exe",
            "a\u{200b}b.txt",
            "file.txt:hidden",
            "CON",
            "aux.txt",
            "dir/nul",
            "./a.txt",
            "a//b.txt",
            "report.txt.",
        ] {
            let e = refusal(&testkit::zip_with_name(name));
            assert_eq!(e.code(), "ERR_ARCHIVE_NONCANONICAL_NAME", "{name:?}: {e}");
        }
    }
}
