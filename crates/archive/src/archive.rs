//! [`SafeArchive`]: validates an archive read from any [`ArchiveSource`] (a local
//! file, bytes in memory, an object store), then hands out its files one at a time;
//! and the types describing its entries.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use zip::ZipArchive;

use crate::directory::check_declared_entry_count;
use crate::layout::check_layout;
use crate::source::SourceCursor;
use crate::validate::validate;
use crate::{ArchiveSource, ExtractError, ExtractLimits, FileSource};

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
    pub(crate) archive: ZipArchive<BufReader<TrackedSource>>,
    /// Read failures of the source, so they are not mistaken for corruption.
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
    ///
    /// [`SafeArchive::from_source`] on the file (a [`FileSource`]).
    pub fn open(path: &Path, limits: ExtractLimits) -> Result<Self, ExtractError> {
        let file = File::open(path).map_err(|e| ExtractError::io("opening the archive", e))?;
        let source = FileSource::new(file)
            .map_err(|e| ExtractError::io("reading the archive's metadata", e))?;
        Self::from_source(Arc::new(source), limits)
    }

    /// Validates the archive whose bytes `source` holds; refuses it (with nothing
    /// extracted) if any entry is unsafe or any limit is exceeded by the headers.
    ///
    /// Every read, while validating and while extracting, is a positional read of
    /// `source`. Its [`io::ErrorKind::UnexpectedEof`] errors refuse the archive as
    /// truncated; any other read error is an [`ExtractError::Io`] (retryable).
    pub fn from_source(
        source: Arc<dyn ArchiveSource>,
        limits: ExtractLimits,
    ) -> Result<Self, ExtractError> {
        // Before the zip crate builds its in-memory directory, which costs memory per
        // declared entry.
        check_declared_entry_count(&*source, &limits)?;
        // The canonical-archive rule, on the raw bytes, before any other reading.
        check_layout(&*source)?;

        // Our own header reads are positional, so they never move the position the
        // crate's reader relies on.
        let fault = FaultSlot::default();
        let tracked = TrackedSource {
            cursor: SourceCursor::new(Arc::clone(&source), 0),
            fault: Arc::clone(&fault),
        };
        let archive = ZipArchive::new(BufReader::with_capacity(COPY_BUFFER_BYTES, tracked))
            .map_err(|e| match take_fault(&fault) {
                Some(source) => ExtractError::io("reading the archive", source),
                None => ExtractError::invalid(e.to_string()),
            })?;
        let entries = validate(&archive, &*source, &limits)?;
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

/// The first read failure of the archive's source since it was last taken.
pub(crate) type FaultSlot = Arc<Mutex<Option<io::Error>>>;

pub(crate) fn take_fault(fault: &FaultSlot) -> Option<io::Error> {
    fault.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// The archive's source as the zip crate reads it. The crate reports a failing source
/// and a corrupt archive alike; recording real read failures here tells them apart, so
/// disk and network errors stay retryable and corrupt uploads stay final.
pub(crate) struct TrackedSource {
    cursor: SourceCursor<Arc<dyn ArchiveSource>>,
    fault: FaultSlot,
}

impl Read for TrackedSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.cursor.read(buf).inspect_err(|e| {
            // Interrupts are retried by the caller. A read past the end is no fault
            // (the cursor returns 0 there; a source's `UnexpectedEof` says the same):
            // it is the archive that is short. Seek errors are not recorded either: a
            // crafted offset can make them.
            if !matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::UnexpectedEof
            ) {
                let mut slot = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
                slot.get_or_insert_with(|| io::Error::new(e.kind(), e.to_string()));
            }
        })
    }
}

impl Seek for TrackedSource {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.cursor.seek(pos)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        self.cursor.stream_position()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use super::*;
    use crate::test_support::{PDF, PNG, extract_all, open_ok, open_with, sha256_hex};
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

    /// What an archive gives: its entries and each one's extraction (result and bytes),
    /// or the refusal (code and message).
    type Outcome = Result<
        (
            Vec<EntryInfo>,
            Vec<Result<(ExtractedFile, Vec<u8>), String>>,
        ),
        String,
    >;

    fn outcome(opened: Result<SafeArchive, ExtractError>) -> Outcome {
        let shown = |e: ExtractError| format!("{}: {e}", e.code());
        let mut archive = opened.map_err(shown)?;
        let entries = archive.entries().to_vec();
        let extracted = entries
            .iter()
            .map(|entry| {
                let mut out = Vec::new();
                let file = archive.extract_into(entry, &mut out).map_err(shown)?;
                Ok((file, out))
            })
            .collect();
        Ok((entries, extracted))
    }

    /// Opens `zip` from a file and from memory; the two must agree in everything, and
    /// neither may see an I/O error.
    fn assert_sources_agree(what: &str, zip: &[u8]) -> Outcome {
        let (_dir, from_file) = open_with(zip, ExtractLimits::default());
        let from_file = outcome(from_file);
        let from_memory = outcome(SafeArchive::from_source(
            Arc::new(zip.to_vec()),
            ExtractLimits::default(),
        ));
        assert_eq!(from_memory, from_file, "{what}");
        let errors = match &from_file {
            Ok((_, extracted)) => extracted.iter().filter_map(|r| r.as_ref().err()).collect(),
            Err(e) => vec![e],
        };
        for e in errors {
            assert!(!e.starts_with("ERR_IO"), "{what}: {e}");
        }
        from_file
    }

    /// Every archive of the test kit, and every truncation of the valid ones.
    fn kit_archives() -> Vec<(String, Vec<u8>)> {
        let files = sample_files();
        let mut all: Vec<(String, Vec<u8>)> = testkit::crafted()
            .into_iter()
            .map(|(name, zip)| (name.to_owned(), zip))
            .collect();
        let more = [
            ("sample deflated", testkit::zip_of(&as_pairs(&files))),
            ("sample stored", testkit::zip_stored(&as_pairs(&files))),
            ("drive letter", testkit::zip_drive_letter()),
            (
                "unicode path traversal",
                testkit::zip_unicode_path_traversal(),
            ),
            ("ratio bomb", testkit::zip_ratio_bomb()),
            ("too many entries", testkit::zip_too_many_entries(100_001)),
        ];
        all.extend(more.into_iter().map(|(name, zip)| (name.to_owned(), zip)));
        for (i, base) in testkit::mutation_bases().into_iter().enumerate() {
            for cut in 0..base.len() {
                all.push((format!("base {i} cut at {cut}"), base[..cut].to_vec()));
            }
            all.push((format!("base {i}"), base));
        }
        all
    }

    #[test]
    fn memory_and_file_sources_agree_on_every_kit_archive() {
        let mut accepted = 0;
        for (what, zip) in kit_archives() {
            accepted += usize::from(assert_sources_agree(&what, &zip).is_ok());
        }
        assert!(accepted >= 10, "only {accepted} accepted");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// The fuzz target's patched archives, from a file and from memory.
        #[test]
        fn memory_and_file_sources_agree_on_patched_archives(
            input in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..41),
        ) {
            let zip = testkit::mutated(&testkit::mutation_bases(), &input).expect("non-empty");
            let _ = assert_sources_agree(&format!("{input:?}"), &zip);
        }
    }

    /// Bytes in memory whose reads fail (not at the end) when asked to.
    struct Flaky {
        bytes: Vec<u8>,
        reads: AtomicUsize,
        /// The read (counted from 0) that fails, once.
        fail_read: AtomicUsize,
        /// Every read that covers this offset fails.
        fail_offset: AtomicU64,
    }

    impl Flaky {
        fn new(bytes: &[u8]) -> Arc<Self> {
            Arc::new(Self {
                bytes: bytes.to_vec(),
                reads: AtomicUsize::new(0),
                fail_read: AtomicUsize::new(usize::MAX),
                fail_offset: AtomicU64::new(u64::MAX),
            })
        }

        fn open(self: &Arc<Self>) -> Result<SafeArchive, ExtractError> {
            SafeArchive::from_source(Arc::clone(self) as _, ExtractLimits::default())
        }
    }

    impl ArchiveSource for Flaky {
        fn len(&self) -> u64 {
            self.bytes.len() as u64
        }

        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let read = self.reads.fetch_add(1, Ordering::SeqCst);
            let bad = self.fail_offset.load(Ordering::SeqCst);
            if read == self.fail_read.load(Ordering::SeqCst)
                || (offset <= bad && bad - offset < buf.len() as u64)
            {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "flaky"));
            }
            self.bytes.read_exact_at(buf, offset)
        }
    }

    fn assert_retryable(e: &ExtractError, what: &str) {
        assert!(matches!(e, ExtractError::Io { .. }), "{what}: {e}");
        assert_eq!(e.code(), "ERR_IO", "{what}: {e}");
        assert!(!e.is_final(), "{what}: {e}");
    }

    /// Valid archives with stored, deflated, empty, directory, nested, Unicode Path and
    /// ZIP64 entries.
    fn valid_archives() -> Vec<Vec<u8>> {
        let files = sample_files();
        let mut all = testkit::mutation_bases();
        all.push(testkit::zip_of(&as_pairs(&files)));
        all.push(testkit::zip_stored(&as_pairs(&files)));
        all
    }

    #[test]
    fn a_failing_read_while_validating_is_an_io_error() {
        for (n, zip) in valid_archives().iter().enumerate() {
            let flaky = Flaky::new(zip);
            flaky.open().expect("opens when nothing fails");
            let reads = flaky.reads.swap(0, Ordering::SeqCst);
            assert!(reads > 3, "archive {n}: {reads} reads");
            // Whichever reader meets the failure: ours, the central directory walk or
            // the zip crate's.
            for fail in 0..reads {
                flaky.reads.store(0, Ordering::SeqCst);
                flaky.fail_read.store(fail, Ordering::SeqCst);
                let e = flaky.open().unwrap_err();
                assert_retryable(&e, &format!("archive {n}, read {fail} of {reads}"));
            }
            flaky.fail_read.store(usize::MAX, Ordering::SeqCst);
            // By offset: each byte is either never read while validating, or its read
            // fails the archive with an I/O error.
            let mut failed = 0;
            for bad in 0..zip.len() as u64 {
                flaky.fail_offset.store(bad, Ordering::SeqCst);
                if let Err(e) = flaky.open() {
                    assert_retryable(&e, &format!("archive {n}, byte {bad}"));
                    failed += 1;
                }
            }
            assert!(failed > 0, "archive {n}");
            flaky.fail_offset.store(u64::MAX, Ordering::SeqCst);
            flaky.open().expect("opens once the source recovers");
        }
    }

    #[test]
    fn a_failing_read_while_extracting_is_an_io_error() {
        for (n, zip) in valid_archives().iter().enumerate() {
            let flaky = Flaky::new(zip);
            let expected = outcome(flaky.open()).expect("opens when nothing fails").1;
            let mut archive = flaky.open().expect("opens");
            let entries = archive.entries().to_vec();
            for (entry, expected) in entries.iter().zip(&expected) {
                let expected = expected.as_ref().expect("extracts");
                if expected.0.size == 0 && entry.compressed_size == 0 {
                    continue;
                }
                let what = format!("archive {n}, entry {:?}", entry.name);
                // The first read of this extraction fails, then the next one on.
                let before = flaky.reads.load(Ordering::SeqCst);
                for fail in [before, before + 1] {
                    flaky.fail_read.store(fail, Ordering::SeqCst);
                    let mut out = Vec::new();
                    match archive.extract_into(entry, &mut out) {
                        Err(e) => assert_retryable(&e, &what),
                        // Everything came from the reader's buffer.
                        Ok(file) => assert!(
                            flaky.reads.load(Ordering::SeqCst) <= fail,
                            "{what}: {file:?}"
                        ),
                    }
                }
                flaky.fail_read.store(usize::MAX, Ordering::SeqCst);
                // Retrying works and is not blamed on the earlier failure.
                let mut out = Vec::new();
                let file = archive.extract_into(entry, &mut out).expect("retry");
                assert_eq!((&file, &out), (&expected.0, &expected.1), "{what}");
            }

            // By offset: every byte of an entry's data fails that entry's extraction.
            for (i, entry) in entries.iter().enumerate() {
                let what = format!("archive {n}, entry {:?}", entry.name);
                let mut archive = flaky.open().expect("opens");
                let data_end = zip_data_end(zip, entry);
                let data_start = data_end - entry.compressed_size;
                for bad in data_start..data_end {
                    flaky.fail_offset.store(bad, Ordering::SeqCst);
                    let e = archive
                        .extract_into(entry, &mut Vec::new())
                        .expect_err(&what);
                    assert_retryable(&e, &format!("{what}, byte {bad}"));
                }
                flaky.fail_offset.store(u64::MAX, Ordering::SeqCst);
                let mut out = Vec::new();
                let file = archive.extract_into(entry, &mut out).expect("recovers");
                let expected = expected[i].as_ref().expect("extracts");
                assert_eq!((&file, &out), (&expected.0, &expected.1), "{what}");
            }
        }
    }

    /// Where `entry`'s compressed data ends in `zip` (read with the zip crate).
    fn zip_data_end(zip: &[u8], entry: &EntryInfo) -> u64 {
        let mut archive = ZipArchive::new(io::Cursor::new(zip)).expect("zip crate");
        let raw = archive.by_index_raw(entry.index).expect("entry");
        raw.data_start().expect("data start") + raw.compressed_size()
    }

    #[test]
    fn a_short_source_is_refused_like_a_truncated_file() {
        let zip = testkit::zip_of(&[("a.txt", b"hello hello"), ("b.txt", b"world")]);
        let eocd = zip.len() - 22;
        for cut in [0, 4, 30, eocd, eocd + 10, zip.len() - 1] {
            let what = format!("cut at {cut}");
            let e = assert_sources_agree(&what, &zip[..cut]).unwrap_err();
            assert!(e.starts_with("ERR_ARCHIVE_INVALID"), "{what}: {e}");
        }

        // The central directory points past the end of a short source: the same
        // refusal, word for word, as the file holding the same bytes.
        let mut short = zip.clone();
        let offset = testkit::get_u32(&short, eocd + 16);
        testkit::put_u32(&mut short, eocd + 16, offset + 1000);
        let e = assert_sources_agree("directory past the end", &short).unwrap_err();
        assert!(e.starts_with("ERR_ARCHIVE_"), "{e}");

        // A source whose reads end early where they reach a "hole" (it has fewer bytes
        // than it claims): wherever the hole is and whichever reader meets it (ours,
        // the central directory walk, the zip crate's while extracting), the archive
        // is refused for good, never with a retryable error.
        struct Holed(Vec<u8>, u64);
        impl ArchiveSource for Holed {
            fn len(&self) -> u64 {
                self.0.len() as u64
            }
            fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
                if offset <= self.1 && self.1 - offset < buf.len() as u64 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                self.0.read_exact_at(buf, offset)
            }
        }
        let stored = testkit::zip_stored(&[
            ("a.bin", &vec![1u8; 100_000]),
            ("b.bin", &vec![2u8; 100_000]),
        ]);
        // A central directory longer than the end window read at first.
        let many = testkit::zip_too_many_entries(3_000);
        for zip in [stored, many] {
            let directory = u64::from(testkit::get_u32(&zip, zip.len() - 22 + 16));
            let holes = (0..zip.len() as u64).step_by(997).chain([directory]);
            let mut refused = 0;
            for hole in holes {
                let source = Holed(zip.clone(), hole);
                let got = outcome(SafeArchive::from_source(
                    Arc::new(source),
                    ExtractLimits::default(),
                ));
                let errors: Vec<String> = match got {
                    Ok((_, extracted)) => extracted.into_iter().filter_map(Result::err).collect(),
                    Err(e) => vec![e],
                };
                refused += usize::from(!errors.is_empty());
                for e in errors {
                    assert!(e.starts_with("ERR_ARCHIVE_"), "hole at {hole}: {e}");
                }
            }
            assert!(refused > 10, "{refused}");
        }
    }

    #[test]
    fn safe_archive_can_move_to_a_blocking_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<SafeArchive>();
        assert_send::<Arc<dyn ArchiveSource>>();
        assert_send::<ExtractError>();
    }
}
