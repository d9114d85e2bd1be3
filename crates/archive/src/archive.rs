//! [`SafeArchive`]: opens and validates an archive, then hands out its files one at a
//! time; and the types describing its entries.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use zip::ZipArchive;

use crate::directory::check_declared_entry_count;
use crate::layout::check_layout;
use crate::validate::validate;
use crate::{ExtractError, ExtractLimits};

/// Size of the single copy buffer per archive; also the archive reader's buffer.
const COPY_BUFFER_BYTES: usize = 64 * 1024;

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

/// A validated archive, ready to extract its files one at a time.
pub struct SafeArchive {
    pub(crate) archive: ZipArchive<BufReader<TrackedFile>>,
    /// Read failures of the underlying file, so they are not mistaken for corruption.
    pub(crate) fault: FaultSlot,
    pub(crate) limits: ExtractLimits,
    pub(crate) entries: Vec<EntryInfo>,
    /// Bytes inflated so far by every `extract_to` call, refused or not.
    pub(crate) inflated_total: u64,
    pub(crate) buf: Box<[u8]>,
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
        // The canonical-archive rule, on the raw bytes, before any other reading.
        check_layout(&file, file_len)?;

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
        let entry = self.known(entry)?;
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(dest)
            .map_err(|e| ExtractError::io(format!("creating {}", dest.display()), e))?;
        let result = self.inflate_into(&entry, &mut out, &dest.display().to_string());
        drop(out);
        if result.is_err() {
            // Best effort: the file is incomplete or refused either way.
            let _ = fs::remove_file(dest);
        }
        result
    }

    /// [`SafeArchive::extract_to`] into `out` (a buffer in memory, say) instead of a
    /// file, with the same checks. On an error `out` holds a partial or refused entry:
    /// the caller discards it.
    pub fn extract_into<W: Write>(
        &mut self,
        entry: &EntryInfo,
        out: &mut W,
    ) -> Result<ExtractedFile, ExtractError> {
        let entry = self.known(entry)?;
        self.inflate_into(&entry, out, "the output")
    }

    /// Our own copy of `entry`, so a caller cannot loosen the declared sizes.
    fn known(&self, entry: &EntryInfo) -> Result<EntryInfo, ExtractError> {
        self.entries
            .binary_search_by_key(&entry.index, |known| known.index)
            .ok()
            .map(|at| &self.entries[at])
            .filter(|known| *known == entry)
            .cloned()
            .ok_or_else(|| ExtractError::UnknownEntry {
                name: entry.name.clone(),
            })
    }
}

/// The first read failure of the archive file since it was last taken.
pub(crate) type FaultSlot = Arc<Mutex<Option<io::Error>>>;

pub(crate) fn take_fault(fault: &FaultSlot) -> Option<io::Error> {
    fault.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// The archive file as the zip crate reads it. The crate reports a failing disk and a
/// corrupt archive alike; recording real read failures here tells them apart, so disk
/// errors stay retryable and corrupt uploads stay final.
pub(crate) struct TrackedFile {
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
    use super::*;
    use crate::test_support::{PDF, PNG, extract_all, open_ok, sha256_hex};
    use crate::testkit;

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
