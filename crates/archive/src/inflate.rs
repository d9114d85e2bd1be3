//! Streaming extraction of one validated entry: inflating through a fixed buffer,
//! counting the bytes really inflated against the limits, hashing, and sniffing the
//! content type.

use std::io::{self, BufRead, BufReader, Read, Write};

use flate2::bufread::DeflateDecoder;
use sha2::{Digest, Sha256};
use zip::CompressionMethod;

use crate::archive::take_fault;
use crate::limits::ratio_exceeded;
use crate::{EntryInfo, ExtractError, ExtractLimits, ExtractedFile, SafeArchive};

/// How much of the start of each file is kept for content sniffing; `infer` looks at
/// signatures within the first few KiB.
const SNIFF_BYTES: usize = 8 * 1024;
/// Read-ahead of compressed bytes for the inflater.
const RAW_BUFFER_BYTES: usize = 16 * 1024;

impl SafeArchive {
    /// Inflates the entry's raw data (as the `zip` crate locates it) ourselves, so that
    /// the deflate stream is required to end exactly where the compressed data does:
    /// bytes after its end would be the next header for a reader that streams local
    /// headers (Java's `ZipInputStream`), and data for one that follows the directory.
    pub(crate) fn inflate_into<W: Write>(
        &mut self,
        entry: &EntryInfo,
        out: &mut W,
        dest: &str,
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
        let raw = archive
            .by_index_raw(entry.index)
            .map_err(|e| read_failed(e.to_string()))?;
        let expected_crc = raw.crc32();
        let method = raw.compression();
        let mut reader = Payload::new(raw, method)
            .map_err(|method| read_failed(format!("unexpected compression method {method}")))?;

        let mut seen = Digests::default();
        loop {
            let n = match reader.read(&mut buf[..]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_failed(format!("inflating failed: {e}"))),
            };
            let chunk = &buf[..n];
            *inflated_total = inflated_total.saturating_add(n as u64);
            seen.update(chunk);
            check_progress(limits, entry, seen.size, *inflated_total)?;
            out.write_all(chunk)
                .map_err(|e| ExtractError::io(format!("writing {dest}"), e))?;
        }
        let corrupt = |detail: String| ExtractError::CorruptEntry {
            name: entry.name.clone(),
            detail,
        };
        if let Some(consumed) = reader
            .deflate_stopped_early(entry.compressed_size)
            .map_err(|e| read_failed(format!("reading failed: {e}")))?
        {
            return Err(corrupt(format!(
                "its deflate stream ends after {consumed} of its {} compressed bytes",
                entry.compressed_size
            )));
        }
        if seen.size != entry.declared_size {
            return Err(corrupt(format!(
                "it inflates to {} bytes but declares {}",
                seen.size, entry.declared_size
            )));
        }
        if seen.crc.finalize() != expected_crc {
            return Err(corrupt("its CRC-32 does not match its data".to_owned()));
        }
        Ok(ExtractedFile {
            size: seen.size,
            sha256: hex::encode(seen.sha256.finalize()),
            content_type: sniff_content_type(&seen.head, &entry.base_name),
        })
    }
}

/// What extraction has seen of an entry's bytes so far.
#[derive(Default)]
struct Digests {
    size: u64,
    sha256: Sha256,
    crc: crc32fast::Hasher,
    /// The first bytes, for content sniffing.
    head: Vec<u8>,
}

impl Digests {
    fn update(&mut self, chunk: &[u8]) {
        self.size = self.size.saturating_add(chunk.len() as u64);
        self.sha256.update(chunk);
        self.crc.update(chunk);
        let room = SNIFF_BYTES.saturating_sub(self.head.len());
        self.head.extend_from_slice(&chunk[..room.min(chunk.len())]);
    }
}

/// An entry's data as it comes out: stored bytes as they are, or inflated.
enum Payload<R: Read> {
    Stored(R),
    Deflated(DeflateDecoder<BufReader<R>>),
}

impl<R: Read> Payload<R> {
    /// Wraps the raw data of an entry compressed with `method`; refuses (returns) any
    /// method but stored and deflate.
    fn new(raw: R, method: CompressionMethod) -> Result<Self, CompressionMethod> {
        match method {
            CompressionMethod::Stored => Ok(Self::Stored(raw)),
            CompressionMethod::Deflated => Ok(Self::Deflated(DeflateDecoder::new(
                BufReader::with_capacity(RAW_BUFFER_BYTES, raw),
            ))),
            other => Err(other),
        }
    }

    /// Once the data are read: where the deflate stream ended, if that is before the
    /// `compressed_size` bytes of raw data do.
    fn deflate_stopped_early(&mut self, compressed_size: u64) -> io::Result<Option<u64>> {
        let Self::Deflated(decoder) = self else {
            return Ok(None);
        };
        let consumed = decoder.total_in();
        let rest_is_empty = decoder.get_mut().fill_buf()?.is_empty();
        Ok((consumed != compressed_size || !rest_is_empty).then_some(consumed))
    }
}

impl<R: Read> Read for Payload<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Stored(r) => r.read(buf),
            Self::Deflated(r) => r.read(buf),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{first_extract_error, open_ok, open_with};
    use crate::testkit::{self, layout};

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
        let e = first_extract_error(&zip);
        assert_eq!(e.code(), "ERR_ARCHIVE_CORRUPT_ENTRY", "{e}");
    }

    #[test]
    fn refuses_bytes_after_the_end_of_the_deflate_stream() {
        // Junk inside the entry's compressed size, after the stream's last block: a
        // reader that stops where the stream ends would parse it as the next header.
        let zip = testkit::zip_of(&[("a.txt", b"some text that deflates")]);
        let entry = layout(&zip)[0];
        let csize = testkit::get_u32(&zip, entry.central + 20) as usize;
        let data_end = 30
            + usize::from(testkit::get_u16(&zip, 26))
            + usize::from(testkit::get_u16(&zip, 28))
            + csize;
        let junk = b"PK\x03\x04decoy";
        let mut patched = zip[..data_end].to_vec();
        patched.extend_from_slice(junk);
        patched.extend_from_slice(&zip[data_end..]);
        let grown = (csize + junk.len()) as u32;
        testkit::put_u32(&mut patched, 18, grown);
        testkit::put_u32(&mut patched, entry.central + junk.len() + 20, grown);
        let eocd = patched.len() - 22;
        let offset = testkit::get_u32(&patched, eocd + 16);
        testkit::put_u32(&mut patched, eocd + 16, offset + junk.len() as u32);

        let e = first_extract_error(&patched);
        assert_eq!(e.code(), "ERR_ARCHIVE_CORRUPT_ENTRY", "{e}");
        assert!(e.to_string().contains("deflate stream ends"), "{e}");
    }

    #[test]
    fn refuses_crc_mismatches() {
        let mut zip = testkit::zip_of(&[("a.txt", b"hello world")]);
        let entry = layout(&zip)[0];
        let crc = testkit::get_u32(&zip, entry.central + 16);
        entry.put_u32(&mut zip, 16, 14, crc ^ 1);
        let e = first_extract_error(&zip);
        assert_eq!(e.code(), "ERR_ARCHIVE_CORRUPT_ENTRY", "{e}");
        assert!(e.is_final());
    }
}
