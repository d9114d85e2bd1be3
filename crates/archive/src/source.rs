//! Where an archive's bytes are: [`ArchiveSource`], a fixed length and positional
//! reads, for a local file ([`FileSource`]), bytes in memory (`Vec<u8>`,
//! `Box<[u8]>`) or anything else the caller implements it for (ranged GETs on an
//! object store, say); and the one `Read + Seek` view of a source that the `zip`
//! crate and the central directory walk read through.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Deref;
use std::os::unix::fs::FileExt;

/// Where an archive's bytes are: a fixed length and positional reads.
///
/// Reads may come from several places at once (`&self`), in any order, and never
/// depend on a cursor. The archive is validated and extracted through these reads
/// only, so a source must serve the same bytes for as long as the archive is open.
///
/// How errors are taken: [`io::ErrorKind::UnexpectedEof`] means the read runs past
/// the end of the bytes, so the archive is shorter than it claims and is refused for
/// good (as a truncated file is); any other error is a failure of the source itself
/// (a disk, a network) and is reported as [`ExtractError::Io`](crate::ExtractError::Io),
/// which is retryable. [`io::ErrorKind::Interrupted`] may be retried by the caller.
pub trait ArchiveSource: Send + Sync {
    /// Length in bytes (fixed for the archive's lifetime).
    fn len(&self) -> u64;

    /// Whether the source holds no bytes at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` from `offset`; `UnexpectedEof` when that runs past `len()`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

/// A local file as an [`ArchiveSource`]: positional reads (`pread`), with the length
/// taken once when it is wrapped.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    /// Wraps `file`, reading its length from its metadata now; the file must not
    /// change while the archive is open.
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self { file, len })
    }
}

impl ArchiveSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        // Past the length taken at the start, whatever the file does since (and for
        // offsets `pread` cannot take).
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(past_the_end(buf.len(), offset, self.len));
        }
        // One pread of `buf.len()` bytes on a regular file; it only loops on a short
        // read. If the file has shrunk since, `UnexpectedEof` too.
        FileExt::read_exact_at(&self.file, buf, offset)
    }
}

impl ArchiveSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_slice(self, buf, offset)
    }
}

impl ArchiveSource for Box<[u8]> {
    fn len(&self) -> u64 {
        (**self).len() as u64
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_slice(self, buf, offset)
    }
}

/// Positional read of bytes in memory.
fn read_slice(bytes: &[u8], buf: &mut [u8], offset: u64) -> io::Result<()> {
    let bytes = usize::try_from(offset)
        .ok()
        .and_then(|start| bytes.get(start..start.checked_add(buf.len())?))
        .ok_or_else(|| past_the_end(buf.len(), offset, bytes.len() as u64))?;
    buf.copy_from_slice(bytes);
    Ok(())
}

fn past_the_end(wanted: usize, offset: u64, len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("reading {wanted} bytes at offset {offset} runs past the end of {len} bytes"),
    )
}

/// A source read as a stream: a position, and reads and seeks that behave like a
/// file's. A read asks the source for exactly the bytes it returns (one `pread` of
/// the requested size on a file, never more), up to the end of the source; at or past
/// the end it returns 0. Seeking costs no I/O.
pub(crate) struct SourceCursor<S> {
    source: S,
    len: u64,
    pos: u64,
}

impl<S> SourceCursor<S>
where
    S: Deref,
    S::Target: ArchiveSource,
{
    /// A cursor at offset `pos` of `source`.
    pub(crate) fn new(source: S, pos: u64) -> Self {
        let len = source.len();
        Self { source, len, pos }
    }
}

impl<S> Read for SourceCursor<S>
where
    S: Deref,
    S::Target: ArchiveSource,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
        if n == 0 {
            return Ok(0);
        }
        self.source.read_exact_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<S> Seek for SourceCursor<S> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(at) => {
                self.pos = at;
                return Ok(at);
            }
            SeekFrom::End(delta) => (self.len, delta),
            SeekFrom::Current(delta) => (self.pos, delta),
        };
        // Like a file: anywhere at or past the end is fine, before the start is not.
        let at = base.checked_add_signed(delta).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid seek to a negative or overflowing position",
            )
        })?;
        self.pos = at;
        Ok(at)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use super::*;

    fn all_sources(bytes: &[u8]) -> (tempfile::NamedTempFile, Vec<Arc<dyn ArchiveSource>>) {
        let mut temp = tempfile::NamedTempFile::new().expect("temp file");
        temp.write_all(bytes).expect("write");
        let file = FileSource::new(File::open(temp.path()).expect("open")).expect("metadata");
        let sources: Vec<Arc<dyn ArchiveSource>> = vec![
            Arc::new(file),
            Arc::new(bytes.to_vec()),
            Arc::new(bytes.to_vec().into_boxed_slice()),
        ];
        (temp, sources)
    }

    #[test]
    fn sources_read_positionally_and_refuse_reads_past_the_end() {
        let bytes: Vec<u8> = (0..100u8).collect();
        let (_temp, sources) = all_sources(&bytes);
        for source in sources {
            assert_eq!(source.len(), 100);
            assert!(!source.is_empty());
            let mut buf = [0u8; 10];
            source.read_exact_at(&mut buf, 90).expect("the last bytes");
            assert_eq!(buf.as_slice(), &bytes[90..]);
            source
                .read_exact_at(&mut [], 100)
                .expect("nothing at the end");
            for offset in [91, 100, u64::MAX] {
                let e = source.read_exact_at(&mut buf, offset).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{offset}");
            }
        }
        let (_temp, sources) = all_sources(b"");
        for source in sources {
            assert!(source.is_empty());
        }
    }

    #[test]
    fn the_cursor_reads_and_seeks_like_a_file() {
        let bytes: Vec<u8> = (0..100u8).collect();
        let (temp, sources) = all_sources(&bytes);
        for source in sources {
            let mut file = File::open(temp.path()).expect("open");
            let mut cursor = SourceCursor::new(&*source, 0);
            for to in [
                SeekFrom::Start(95),
                SeekFrom::Current(-10),
                SeekFrom::Current(7),
                SeekFrom::End(-3),
                SeekFrom::End(0),
                SeekFrom::End(20),
                SeekFrom::Start(200),
                SeekFrom::Current(-150),
                SeekFrom::Start(0),
            ] {
                let there = file.seek(to).expect("file seek");
                assert_eq!(cursor.seek(to).expect("cursor seek"), there, "{to:?}");
                let mut want = [0u8; 8];
                let mut got = [0u8; 8];
                let n = file.read(&mut want).expect("file read");
                assert_eq!(cursor.read(&mut got).expect("cursor read"), n, "{to:?}");
                assert_eq!(got[..n], want[..n]);
                assert_eq!(
                    cursor.stream_position().expect("position"),
                    there + n as u64
                );
            }
            // Before the start: an error, and the position stays.
            let at = cursor.stream_position().expect("position");
            for to in [SeekFrom::End(-101), SeekFrom::Current(-1_000)] {
                assert!(file.seek(to).is_err());
                let e = cursor.seek(to).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
                assert_eq!(cursor.stream_position().expect("position"), at);
            }
            // Reading everything from the middle.
            let mut rest = Vec::new();
            cursor.seek(SeekFrom::Start(40)).expect("seek");
            cursor.read_to_end(&mut rest).expect("read to end");
            assert_eq!(rest, &bytes[40..]);
        }
    }

    /// A source counting the reads asked of it.
    struct Counting {
        bytes: Vec<u8>,
        reads: std::sync::Mutex<Vec<(u64, usize)>>,
    }

    impl ArchiveSource for Counting {
        fn len(&self) -> u64 {
            self.bytes.len() as u64
        }

        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.reads.lock().unwrap().push((offset, buf.len()));
            self.bytes.read_exact_at(buf, offset)
        }
    }

    #[test]
    fn a_cursor_read_is_one_read_of_the_source() {
        let source = Counting {
            bytes: vec![7; 1000],
            reads: Default::default(),
        };
        let mut cursor = SourceCursor::new(&source, 990);
        let mut buf = [0u8; 64];
        assert_eq!(cursor.read(&mut buf).expect("read"), 10);
        assert_eq!(cursor.read(&mut buf).expect("at the end"), 0);
        cursor.seek(SeekFrom::Start(5000)).expect("past the end");
        assert_eq!(cursor.read(&mut buf).expect("past the end"), 0);
        cursor.seek(SeekFrom::Start(100)).expect("seek");
        assert_eq!(cursor.read(&mut buf).expect("read"), 64);
        assert_eq!(*source.reads.lock().unwrap(), [(990, 10), (100, 64)]);
    }
}
