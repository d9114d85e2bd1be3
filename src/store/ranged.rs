//! An object read in place by ranged GETs, so the pipeline never copies an upload to
//! local disk: positional reads for the archive validator and extractor (blocks
//! fetched on demand, the next ones fetched ahead while the reads go forward) and a
//! sequential stream for the antivirus. Every read is pinned to the ETag the object
//! had when it was opened, so one pass never mixes two versions of it.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::StreamExt as _;
use futures::future::{BoxFuture, FutureExt as _, Shared};
use tokio::io::AsyncRead;
use tokio::runtime::Handle;

use super::{ObjectStore, StoreError};

/// Size of one ranged GET. Measured on the embedded store with 1 GiB in 64 entries
/// and 10,000 small ones (docs/PERFORMANCE.md).
pub const BLOCK_BYTES: u64 = 1024 * 1024;
/// Blocks kept for reads that go back a little (the validator's passes over the
/// headers, the zip reader's buffer running past an entry's end).
const CACHED_BLOCKS: usize = 4;
/// Blocks fetched ahead of a forward read, and of the stream.
const AHEAD_BLOCKS: u64 = 2;

type Fetch = Shared<BoxFuture<'static, Result<Bytes, Arc<StoreError>>>>;

/// One version of one object, read by ranges; at most `CACHED_BLOCKS + AHEAD_BLOCKS`
/// blocks in memory.
pub struct RangedObject {
    store: Arc<dyn ObjectStore>,
    key: String,
    etag: Option<String>,
    len: u64,
    runtime: Handle,
    blocks: Mutex<Blocks>,
    /// The first store failure of a read, for the caller to classify (the archive
    /// reader sees only an `io::Error`).
    failure: Mutex<Option<Arc<StoreError>>>,
}

#[derive(Default)]
struct Blocks {
    /// Fetched or being fetched, oldest first.
    held: VecDeque<(u64, Fetch)>,
    /// The block of the last read.
    last: Option<u64>,
}

impl std::fmt::Debug for RangedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangedObject")
            .field("key", &self.key)
            .field("len", &self.len)
            .field("etag", &self.etag)
            .finish_non_exhaustive()
    }
}

impl RangedObject {
    /// `key` as it is now (one HEAD); `Ok(None)` when it does not exist. Must be
    /// called within a Tokio runtime, which the reads use.
    pub async fn open(store: Arc<dyn ObjectStore>, key: &str) -> Result<Option<Self>, StoreError> {
        let Some(meta) = store.head(key).await? else {
            return Ok(None);
        };
        Ok(Some(Self {
            store,
            key: key.to_owned(),
            etag: meta.etag,
            len: meta.size,
            runtime: Handle::current(),
            blocks: Mutex::default(),
            failure: Mutex::default(),
        }))
    }

    /// The object's size.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The object's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The first store failure any read met, if any (taken).
    pub fn take_failure(&self) -> Option<StoreError> {
        let failure = self
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        Some(Arc::try_unwrap(failure).unwrap_or_else(|shared| shared.duplicate()))
    }

    fn record(&self, e: &Arc<StoreError>) {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| Arc::clone(e));
    }

    /// The range of block `index`.
    fn span(&self, index: u64) -> (u64, u64) {
        let start = index * BLOCK_BYTES;
        (start, BLOCK_BYTES.min(self.len - start))
    }

    /// A fetch of block `index`, started now on the runtime.
    fn fetch(&self, index: u64) -> Fetch {
        let (start, len) = self.span(index);
        let store = Arc::clone(&self.store);
        let key = self.key.clone();
        let etag = self.etag.clone();
        let task = self.runtime.spawn(async move {
            store
                .get_range(&key, start, len, etag.as_deref())
                .await
                .map_err(Arc::new)
        });
        async move {
            task.await.unwrap_or_else(|e| {
                Err(Arc::new(StoreError::transient(
                    "GetObject",
                    "",
                    format!("the read task failed: {e}"),
                )))
            })
        }
        .boxed()
        .shared()
    }

    /// Block `index`, from memory or fetched; a forward read also starts the next
    /// blocks' fetches.
    fn block(&self, index: u64) -> Fetch {
        let mut blocks = self.blocks.lock().unwrap_or_else(PoisonError::into_inner);
        let forward = blocks.last.is_some_and(|last| index == last + 1);
        blocks.last = Some(index);
        let blocks_total = self.len.div_ceil(BLOCK_BYTES);
        let wanted = if forward {
            index..(index + 1 + AHEAD_BLOCKS).min(blocks_total)
        } else {
            index..index + 1
        };
        for i in wanted {
            if !blocks.held.iter().any(|(held, _)| *held == i) {
                let fetch = self.fetch(i);
                blocks.held.push_back((i, fetch));
            }
        }
        while blocks.held.len() > CACHED_BLOCKS + AHEAD_BLOCKS as usize {
            blocks.held.pop_front();
        }
        let found = blocks.held.iter().find(|(held, _)| *held == index);
        match found {
            Some((_, fetch)) => fetch.clone(),
            // Evicted by its own read-ahead (cannot happen with the sizes above).
            None => self.fetch(index),
        }
    }

    /// Fills `buf` from `offset`, waiting on the runtime: for blocking threads
    /// only (the archive validator and extractor).
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|end| *end <= self.len)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let mut at = offset;
        while at < end {
            let index = at / BLOCK_BYTES;
            let bytes = self.runtime.block_on(self.block(index)).map_err(|e| {
                self.record(&e);
                io::Error::other(e.to_string())
            })?;
            let (start, len) = self.span(index);
            if bytes.len() as u64 != len {
                // The store answers exact ranges (`get_range`); never loop on less.
                return Err(io::Error::other(format!(
                    "block {index} of {} came back with {} of {len} bytes",
                    self.key,
                    bytes.len()
                )));
            }
            let from = usize::try_from(at - start).unwrap_or(usize::MAX);
            let upto = usize::try_from((end - start).min(bytes.len() as u64)).unwrap_or(0);
            let done = usize::try_from(at - offset).unwrap_or(usize::MAX);
            let n = upto - from;
            buf[done..done + n].copy_from_slice(&bytes[from..upto]);
            at += n as u64;
        }
        Ok(())
    }

    /// The whole object as one stream, `AHEAD_BLOCKS` ranged GETs in flight, for
    /// the antivirus; each call starts from the beginning.
    pub fn reader(self: &Arc<Self>) -> Box<dyn AsyncRead + Unpin + Send + 'static> {
        let this = Arc::clone(self);
        let blocks = self.len.div_ceil(BLOCK_BYTES);
        let stream = futures::stream::iter(0..blocks)
            .map(move |index| {
                let this = Arc::clone(&this);
                async move {
                    let (start, len) = this.span(index);
                    this.store
                        .get_range(&this.key, start, len, this.etag.as_deref())
                        .await
                        .map_err(|e| {
                            let e = Arc::new(e);
                            this.record(&e);
                            io::Error::other(e.to_string())
                        })
                }
            })
            .buffered(AHEAD_BLOCKS as usize);
        Box::new(tokio_util::io::StreamReader::new(stream))
    }
}

impl intake_archive::ArchiveSource for RangedObject {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        RangedObject::read_exact_at(self, buf, offset)
    }
}
