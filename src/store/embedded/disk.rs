//! The embedded store's storage: an index in SQLite and object bodies in it or in files.
//!
//! Layout under the root (`<data dir>/s3`):
//!
//! - `objects.db` (SQLite, WAL, `synchronous = FULL`): buckets, objects (size, ETag,
//!   attributes, checksums and, for small objects, the body itself), each big object's
//!   extents (the files holding its bytes, in order), multipart uploads and their parts.
//! - `data/<2 hex>/<uuid>`: the body of a big object, or one part of a multipart upload.
//!   A completed multipart object keeps its parts' files as its extents: completion
//!   moves rows, never bytes.
//! - `<bucket>/<key>`: objects written by the `s3s-fs` layout of earlier versions,
//!   indexed in place the first time this layout opens the root (never moved).
//!
//! Durability rule: an object is reachable only through its row, and the row is
//! committed only after the bytes it points at are on disk (the file and its directory
//! entry synced) or inside the same transaction (small bodies). A commit is synced
//! (`synchronous = FULL`) before the call returns, so once a write has answered, a
//! crash or power loss cannot take it back, and a caller that records the key in its
//! own database afterwards never points at a lost object. Files left by a write that
//! never committed are removed when the store opens; files of a replaced or deleted
//! object are removed after the commit that drops their row (and at the next open if
//! the process died in between).
//!
//! Why on `std::fs` and SQLite rather than `object_store`'s `LocalFileSystem`: the
//! store needs what that crate does not give, namely small objects packed (a file per
//! object tops out at a few thousand creates per second on this kind of disk, while a
//! SQLite transaction takes thousands of small rows at once), multipart completion
//! without copying the parts, and ListParts / ListMultipartUploads with ETags.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr as _;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::Stream;
use s3s::crypto::{Checksum as _, Md5};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite, Transaction};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio_util::io::ReaderStream;
use tracing::{info, warn};
use uuid::Uuid;

/// Bodies up to this size are kept in the index by default (see `Disk::open`).
pub const DEFAULT_INLINE_MAX: usize = 64 * 1024;
/// Buffer of a body being written to a file.
const FILE_BUFFER: usize = 256 * 1024;
/// Chunk size of bodies read from files.
const READ_CHUNK: usize = 64 * 1024;

const SCHEMA: &str = r"
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    modified INTEGER NOT NULL,
    attrs TEXT NOT NULL,
    checksum TEXT NOT NULL,
    body BLOB,
    PRIMARY KEY (bucket, key)
);
CREATE TABLE IF NOT EXISTS extents (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (bucket, key, seq)
);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    attrs TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads (bucket, key);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    md5 TEXT NOT NULL,
    modified INTEGER NOT NULL,
    PRIMARY KEY (upload_id, number)
);
CREATE TABLE IF NOT EXISTS layout (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// What went wrong in the store, in the terms the S3 layer answers with.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("no such bucket")]
    NoSuchBucket,
    #[error("bucket already exists")]
    BucketExists,
    #[error("bucket not empty")]
    BucketNotEmpty,
    #[error("no such key")]
    NoSuchKey,
    #[error("no such upload")]
    NoSuchUpload,
    #[error("{0}")]
    InvalidPart(String),
    #[error("parts must be listed in ascending order")]
    InvalidPartOrder,
    #[error("part {0} is smaller than 5 MiB")]
    EntityTooSmall(i32),
    #[error("the range is not satisfiable")]
    InvalidRange,
    #[error("precondition failed: {0}")]
    Precondition(&'static str),
    #[error("storage I/O: {0}")]
    Io(#[from] io::Error),
    #[error("storage index: {0}")]
    Db(#[from] sqlx::Error),
    #[error("storage index is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = DiskError> = std::result::Result<T, E>;

/// HTTP attributes stored with an object and returned on GET/HEAD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// The flexible checksums of a single-PUT object (base64), as its writer declared
/// and the store verified them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sums {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
}

/// An object's index row.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Unquoted: `<md5 hex>` or `<md5 of the parts' md5s>-<parts>`.
    pub etag: String,
    pub modified: SystemTime,
    pub attrs: Attrs,
    pub sums: Sums,
}

/// Where an object's bytes are.
#[derive(Debug, Clone)]
enum Content {
    Inline(Bytes),
    Extents(Vec<Extent>),
}

#[derive(Debug, Clone)]
struct Extent {
    /// Relative to the root.
    file: String,
    size: u64,
}

/// A part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub number: i32,
    pub md5: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// A multipart upload in progress.
#[derive(Debug, Clone)]
pub struct UploadInfo {
    pub id: String,
    pub key: String,
    pub created: SystemTime,
}

/// A body on its way in: kept in memory while it fits `inline_max`, else in a new
/// file under `data/`; its MD5 (the ETag) is computed on the way. Flexible checksums
/// are the caller's (the S3 layer hashes what the request declares).
pub struct Staging {
    root: PathBuf,
    inline_max: usize,
    buf: Vec<u8>,
    file: Option<(tokio::io::BufWriter<tokio::fs::File>, String)>,
    size: u64,
    md5: Md5,
}

/// A body written and synced, not yet reachable. Dropping it removes its file.
pub struct Staged {
    root: PathBuf,
    content: Option<Content>,
    size: u64,
    md5: [u8; 16],
}

impl Staged {
    pub fn md5_hex(&self) -> String {
        hex::encode(self.md5)
    }

    /// The row pointing at the content is committed: keep its file.
    fn committed(&mut self) {
        self.content = None;
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(Content::Extents(extents)) = &self.content {
            for e in extents {
                let _ = std::fs::remove_file(self.root.join(&e.file));
            }
        }
    }
}

impl Staging {
    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.md5.update(chunk);
        self.size += chunk.len() as u64;
        if self.file.is_none() && self.buf.len() + chunk.len() <= self.inline_max {
            self.buf.extend_from_slice(chunk);
            return Ok(());
        }
        if self.file.is_none() {
            let (file, rel) = new_data_file(&self.root).await?;
            let mut writer = tokio::io::BufWriter::with_capacity(FILE_BUFFER, file);
            writer.write_all(&self.buf).await?;
            self.buf = Vec::new();
            self.file = Some((writer, rel));
        }
        let (writer, _) = self.file.as_mut().expect("file just opened");
        writer.write_all(chunk).await
    }

    /// Syncs the body (file and directory entry) and hands it over.
    pub async fn finish(mut self) -> io::Result<Staged> {
        let md5: [u8; 16] = std::mem::take(&mut self.md5).finalize();
        let content = match self.file.take() {
            None => Content::Inline(Bytes::from(std::mem::take(&mut self.buf))),
            Some((mut writer, rel)) => {
                // Owned by a `Staged` before the flush and syncs, so that the file is
                // removed if one of them fails.
                let staged_file = Staged {
                    root: self.root.clone(),
                    content: Some(Content::Extents(vec![Extent {
                        file: rel.clone(),
                        size: self.size,
                    }])),
                    size: self.size,
                    md5,
                };
                writer.flush().await?;
                let file = writer.into_inner();
                file.sync_all().await?;
                drop(file);
                sync_dir(self.root.join(&rel)).await?;
                return Ok(staged_file);
            }
        };
        Ok(Staged {
            root: self.root.clone(),
            content: Some(content),
            size: self.size,
            md5,
        })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some((_, rel)) = self.file.take() {
            let _ = std::fs::remove_file(self.root.join(rel));
        }
    }
}

async fn new_data_file(root: &Path) -> io::Result<(tokio::fs::File, String)> {
    let id = Uuid::new_v4().simple().to_string();
    let rel = format!("data/{}/{id}", &id[..2]);
    let path = root.join(&rel);
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .await?;
    Ok((file, rel))
}

/// Syncs the directory holding `file`, so that its entry survives a power loss.
async fn sync_dir(file: PathBuf) -> io::Result<()> {
    tokio::task::spawn_blocking(move || match file.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    })
    .await
    .map_err(io::Error::other)?
}

/// An object's info from the columns `size, etag, modified, attrs, checksum` of
/// `row`, starting at column `at`.
fn object_info(key: String, row: &sqlx::sqlite::SqliteRow, at: usize) -> ObjectInfo {
    ObjectInfo {
        key,
        size: to_u64(row.get(at)),
        etag: row.get(at + 1),
        modified: from_millis(row.get(at + 2)),
        attrs: parse_json(row.get::<&str, _>(at + 3)),
        sums: parse_json(row.get::<&str, _>(at + 4)),
    }
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

fn parse_json<T: for<'de> Deserialize<'de> + Default>(text: &str) -> T {
    serde_json::from_str(text).unwrap_or_default()
}

/// The store: index and files under one root.
#[derive(Debug, Clone)]
pub struct Disk {
    root: PathBuf,
    /// One connection: SQLite has one writer, and a single connection avoids
    /// upgrade deadlocks between deferred transactions.
    write: SqlitePool,
    read: SqlitePool,
    inline_max: usize,
    /// To the task that commits new objects in groups.
    commits: mpsc::UnboundedSender<PendingCommit>,
}

impl Disk {
    /// Opens (creating if needed) the store under `root`; bodies up to `inline_max`
    /// bytes are kept in the index. Indexes an earlier version's `s3s-fs` files in
    /// place on the first open, and removes files no row points at.
    pub async fn open(root: &Path, inline_max: usize) -> Result<Disk> {
        tokio::fs::create_dir_all(root.join("data")).await?;
        let root = tokio::fs::canonicalize(root).await?;
        let options = SqliteConnectOptions::new()
            .filename(root.join("objects.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(false);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let (commits, pending) = mpsc::unbounded_channel();
        tokio::spawn(group_commits(write.clone(), root.clone(), pending));
        let disk = Disk {
            root,
            write,
            read,
            inline_max,
            commits,
        };
        disk.import_legacy().await?;
        disk.remove_unreferenced().await?;
        Ok(disk)
    }

    #[cfg(test)]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A new body to fill; `files_only` for multipart parts (always a file).
    pub fn staging(&self, files_only: bool) -> Staging {
        Staging {
            root: self.root.clone(),
            inline_max: if files_only { 0 } else { self.inline_max },
            buf: Vec::new(),
            file: None,
            size: 0,
            md5: Md5::new(),
        }
    }

    /// Writes `bytes` as a staged body (for callers that already hold them).
    pub async fn stage_bytes(&self, bytes: &[u8]) -> io::Result<Staged> {
        let mut staging = self.staging(false);
        staging.write(bytes).await?;
        staging.finish().await
    }

    // ----- buckets -----

    pub async fn create_bucket(&self, name: &str) -> Result<()> {
        let done =
            sqlx::query("INSERT INTO buckets (name, created) VALUES (?, ?) ON CONFLICT DO NOTHING")
                .bind(name)
                .bind(millis(SystemTime::now()))
                .execute(&self.write)
                .await?;
        if done.rows_affected() == 0 {
            return Err(DiskError::BucketExists);
        }
        Ok(())
    }

    pub async fn bucket_exists(&self, name: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM buckets WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.read)
            .await?
            .is_some())
    }

    async fn require_bucket(&self, name: &str) -> Result<()> {
        if self.bucket_exists(name).await? {
            Ok(())
        } else {
            Err(DiskError::NoSuchBucket)
        }
    }

    pub async fn list_buckets(&self) -> Result<Vec<(String, SystemTime)>> {
        let rows = sqlx::query("SELECT name, created FROM buckets ORDER BY name")
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>(0), from_millis(r.get(1))))
            .collect())
    }

    pub async fn delete_bucket(&self, name: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        if sqlx::query("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some()
        {
            return Err(DiskError::BucketNotEmpty);
        }
        let done = sqlx::query("DELETE FROM buckets WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(DiskError::NoSuchBucket);
        }
        tx.commit().await?;
        Ok(())
    }

    // ----- objects -----

    /// Makes `staged` the object `bucket/key`, replacing any former one. With
    /// `if_none_match`, fails when the key exists. Commits of concurrent writers are
    /// grouped into one transaction (one sync for the group): see [`group_commits`].
    pub async fn commit_object(
        &self,
        bucket: &str,
        key: &str,
        staged: Staged,
        attrs: &Attrs,
        sums: &Sums,
        if_none_match: bool,
    ) -> Result<ObjectInfo> {
        let (reply, answer) = oneshot::channel();
        let stopped = || DiskError::Io(io::Error::other("the embedded store's writer stopped"));
        self.commits
            .send(PendingCommit {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                staged,
                attrs: attrs.clone(),
                sums: sums.clone(),
                if_none_match,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>> {
        let row = sqlx::query(
            "SELECT size, etag, modified, attrs, checksum FROM objects WHERE bucket = ? AND key = ?",
        )
        .bind(bucket)
        .bind(key)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|r| object_info(key.to_owned(), &r, 0)))
    }

    /// `bucket/key`, the byte range asked for (checked against its size), and a
    /// stream of those bytes (all of them without a range).
    pub async fn read(
        &self,
        bucket: &str,
        key: &str,
        range: Option<s3s::dto::Range>,
    ) -> Result<(ObjectInfo, Option<std::ops::Range<u64>>, Body)> {
        let mut conn = self.read.acquire().await?;
        let row = sqlx::query(
            "SELECT size, etag, modified, attrs, checksum, body FROM objects WHERE bucket = ? AND key = ?",
        )
        .bind(bucket)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(r) = row else {
            return if self.bucket_exists(bucket).await? {
                Err(DiskError::NoSuchKey)
            } else {
                Err(DiskError::NoSuchBucket)
            };
        };
        let info = object_info(key.to_owned(), &r, 0);
        let asked = match range {
            Some(r) => Some(r.check(info.size).map_err(|_| DiskError::InvalidRange)?),
            None => None,
        };
        let range = asked.clone().unwrap_or(0..info.size);
        let body: Option<Vec<u8>> = r.get(5);
        let body = match body {
            Some(bytes) => {
                let bytes = Bytes::from(bytes);
                let start = usize::try_from(range.start)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let end = usize::try_from(range.end)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                Body::inline(bytes.slice(start..end.max(start)))
            }
            None => {
                let extents = extents_in(&mut conn, bucket, key).await?;
                Body::files(&self.root, &extents, range)
            }
        };
        Ok((info, asked, body))
    }

    /// Objects of `bucket` whose key starts with `prefix` and sorts after `after`,
    /// in key order, at most `limit`.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        let from = if after < prefix { prefix } else { after };
        let rows = sqlx::query(
            "SELECT key, size, etag, modified, attrs, checksum FROM objects
             WHERE bucket = ? AND key >= ? AND key > ? ORDER BY key LIMIT ?",
        )
        .bind(bucket)
        .bind(from)
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| object_info(r.get(0), r, 1))
            .take_while(|o| o.key.starts_with(prefix))
            .collect())
    }

    /// Deletes `bucket/key`; a missing key is not an error (S3 semantics).
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        require_bucket_in(&mut tx, bucket).await?;
        let old = drop_object_in(&mut tx, bucket, key).await?;
        tx.commit().await?;
        self.remove_files(old).await;
        Ok(())
    }

    /// Server-side copy: small bodies are copied, files hard-linked (no bytes move).
    /// `attrs` replaces the source's attributes when given.
    pub async fn copy(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
        attrs: Option<Attrs>,
    ) -> Result<ObjectInfo> {
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(
            "SELECT size, etag, attrs, checksum, body FROM objects WHERE bucket = ? AND key = ?",
        )
        .bind(src_bucket)
        .bind(src_key)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(DiskError::NoSuchKey)?;
        require_bucket_in(&mut tx, dst_bucket).await?;
        let size = to_u64(row.get(0));
        let etag: String = row.get(1);
        let attrs = attrs.unwrap_or_else(|| parse_json(row.get::<&str, _>(2)));
        let sums: Sums = parse_json(row.get::<&str, _>(3));
        let body: Option<Vec<u8>> = row.get(4);
        let modified = SystemTime::now();
        let mut linked = Vec::new();
        let content = match body {
            Some(bytes) => Content::Inline(Bytes::from(bytes)),
            None => {
                let mut extents = Vec::new();
                for e in extents_in(&mut tx, src_bucket, src_key).await? {
                    let id = Uuid::new_v4().simple().to_string();
                    let rel = format!("data/{}/{id}", &id[..2]);
                    let (from, to) = (self.root.join(&e.file), self.root.join(&rel));
                    let link = tokio::task::spawn_blocking(move || {
                        if let Some(dir) = to.parent() {
                            std::fs::create_dir_all(dir)?;
                        }
                        std::fs::hard_link(&from, &to)?;
                        std::fs::File::open(to.parent().unwrap_or(&to))?.sync_all()
                    })
                    .await
                    .map_err(io::Error::other)?;
                    if let Err(err) = link {
                        self.remove_files(linked).await;
                        return Err(err.into());
                    }
                    linked.push(rel.clone());
                    extents.push(Extent {
                        file: rel,
                        size: e.size,
                    });
                }
                Content::Extents(extents)
            }
        };
        let result = async {
            let old = drop_object_in(&mut tx, dst_bucket, dst_key).await?;
            insert_object_in(
                &mut tx, dst_bucket, dst_key, size, &etag, modified, &attrs, &sums, &content,
            )
            .await?;
            tx.commit().await?;
            Ok::<_, DiskError>(old)
        }
        .await;
        match result {
            Ok(old) => {
                // A self-copy drops and re-links the same files: keep the new ones.
                let old: Vec<String> = old.into_iter().filter(|f| !linked.contains(f)).collect();
                self.remove_files(old).await;
                Ok(ObjectInfo {
                    key: dst_key.to_owned(),
                    size,
                    etag,
                    modified,
                    attrs,
                    sums,
                })
            }
            Err(e) => {
                self.remove_files(linked).await;
                Err(e)
            }
        }
    }

    // ----- multipart -----

    pub async fn create_upload(&self, bucket: &str, key: &str, attrs: &Attrs) -> Result<String> {
        self.require_bucket(bucket).await?;
        let id = Uuid::new_v4().to_string();
        sqlx::query("INSERT INTO uploads (id, bucket, key, attrs, created) VALUES (?, ?, ?, ?, ?)")
            .bind(&id)
            .bind(bucket)
            .bind(key)
            .bind(json(attrs))
            .bind(millis(SystemTime::now()))
            .execute(&self.write)
            .await?;
        Ok(id)
    }

    /// Fails with `NoSuchUpload` unless `id` is an upload of `bucket/key` in progress.
    pub async fn require_upload(&self, bucket: &str, key: &str, id: &str) -> Result<()> {
        let found = sqlx::query("SELECT 1 FROM uploads WHERE id = ? AND bucket = ? AND key = ?")
            .bind(id)
            .bind(bucket)
            .bind(key)
            .fetch_optional(&self.read)
            .await?;
        found.map(|_| ()).ok_or(DiskError::NoSuchUpload)
    }

    /// Makes `staged` part `number` of upload `id` (replacing an earlier one).
    pub async fn commit_part(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        number: i32,
        mut staged: Staged,
    ) -> Result<String> {
        let md5 = staged.md5_hex();
        let Some(Content::Extents(extents)) = &staged.content else {
            return Err(DiskError::Corrupt("a part must be a file".into()));
        };
        let file = extents[0].file.clone();
        let mut tx = self.write.begin().await?;
        if sqlx::query("SELECT 1 FROM uploads WHERE id = ? AND bucket = ? AND key = ?")
            .bind(id)
            .bind(bucket)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?
            .is_none()
        {
            return Err(DiskError::NoSuchUpload);
        }
        let old: Option<String> =
            sqlx::query_scalar("SELECT file FROM parts WHERE upload_id = ? AND number = ?")
                .bind(id)
                .bind(number)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO parts (upload_id, number, file, size, md5, modified) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (upload_id, number) DO UPDATE SET
               file = excluded.file, size = excluded.size, md5 = excluded.md5, modified = excluded.modified",
        )
        .bind(id)
        .bind(number)
        .bind(&file)
        .bind(to_i64(staged.size))
        .bind(&md5)
        .bind(millis(SystemTime::now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        staged.committed();
        self.remove_files(old.into_iter().collect()).await;
        Ok(md5)
    }

    pub async fn list_parts(&self, bucket: &str, key: &str, id: &str) -> Result<Vec<PartInfo>> {
        self.require_upload(bucket, key, id).await?;
        let rows = sqlx::query(
            "SELECT number, md5, size, modified FROM parts WHERE upload_id = ? ORDER BY number",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| PartInfo {
                number: r.get(0),
                md5: r.get(1),
                size: to_u64(r.get(2)),
                modified: from_millis(r.get(3)),
            })
            .collect())
    }

    /// Uploads in progress in `bucket` whose key starts with `prefix`, by key.
    pub async fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadInfo>> {
        self.require_bucket(bucket).await?;
        let rows = sqlx::query(
            "SELECT id, key, created FROM uploads WHERE bucket = ? AND key >= ? ORDER BY key, created",
        )
        .bind(bucket)
        .bind(prefix)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| UploadInfo {
                id: r.get(0),
                key: r.get(1),
                created: from_millis(r.get(2)),
            })
            .take_while(|u| u.key.starts_with(prefix))
            .collect())
    }

    /// Makes the listed parts, in order, the object `bucket/key`: their files become
    /// its extents (nothing is copied). Checks the list as S3 does: ascending part
    /// numbers, each uploaded, with its ETag, each but the last at least 5 MiB.
    pub async fn complete(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        requested: &[(i32, String)],
    ) -> Result<ObjectInfo> {
        const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
        if requested.is_empty() {
            return Err(DiskError::InvalidPart(
                "You must specify at least one part".into(),
            ));
        }
        let mut tx = self.write.begin().await?;
        let attrs: String =
            sqlx::query_scalar("SELECT attrs FROM uploads WHERE id = ? AND bucket = ? AND key = ?")
                .bind(id)
                .bind(bucket)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(DiskError::NoSuchUpload)?;
        let rows = sqlx::query("SELECT number, file, size, md5 FROM parts WHERE upload_id = ?")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let mut stored: BTreeMap<i32, (String, u64, String)> = rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), to_u64(r.get(2)), r.get(3))))
            .collect();
        let mut extents = Vec::with_capacity(requested.len());
        let mut etag_md5 = Md5::new();
        let mut size = 0u64;
        let mut previous = 0;
        for (index, (number, etag)) in requested.iter().enumerate() {
            if *number <= previous {
                return Err(DiskError::InvalidPartOrder);
            }
            previous = *number;
            let Some((file, part_size, md5)) = stored.remove(number) else {
                return Err(DiskError::InvalidPart(format!(
                    "part {number} was not uploaded"
                )));
            };
            if !etag.trim_matches('"').eq_ignore_ascii_case(&md5) {
                return Err(DiskError::InvalidPart(format!(
                    "part {number}: ETag does not match the stored part"
                )));
            }
            if index + 1 < requested.len() && part_size < MIN_PART_SIZE {
                return Err(DiskError::EntityTooSmall(*number));
            }
            let digest =
                hex::decode(&md5).map_err(|_| DiskError::Corrupt(format!("part md5 {md5}")))?;
            etag_md5.update(&digest);
            size += part_size;
            extents.push(Extent {
                file,
                size: part_size,
            });
        }
        let etag = format!("{}-{}", hex::encode(etag_md5.finalize()), requested.len());
        let modified = SystemTime::now();
        let attrs: Attrs = parse_json(&attrs);
        let old = drop_object_in(&mut tx, bucket, key).await?;
        insert_object_in(
            &mut tx,
            bucket,
            key,
            size,
            &etag,
            modified,
            &attrs,
            &Sums::default(),
            &Content::Extents(extents),
        )
        .await?;
        sqlx::query("DELETE FROM parts WHERE upload_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM uploads WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // Parts uploaded but not listed are dropped, as S3 does.
        let unused = stored.into_values().map(|(file, _, _)| file);
        self.remove_files(old.into_iter().chain(unused).collect())
            .await;
        Ok(ObjectInfo {
            key: key.to_owned(),
            size,
            etag,
            modified,
            attrs,
            sums: Sums::default(),
        })
    }

    pub async fn abort(&self, bucket: &str, key: &str, id: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let found = sqlx::query("DELETE FROM uploads WHERE id = ? AND bucket = ? AND key = ?")
            .bind(id)
            .bind(bucket)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        if found.rows_affected() == 0 {
            return Err(DiskError::NoSuchUpload);
        }
        let files: Vec<String> = sqlx::query_scalar("SELECT file FROM parts WHERE upload_id = ?")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM parts WHERE upload_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.remove_files(files).await;
        Ok(())
    }

    // ----- housekeeping -----

    async fn remove_files(&self, files: Vec<String>) {
        remove_files(&self.root, files).await;
    }

    /// Removes the files under `data/` that no row points at: bodies of writes that
    /// never committed, and files of rows dropped just before a crash.
    async fn remove_unreferenced(&self) -> Result<()> {
        let mut referenced: HashSet<String> = sqlx::query_scalar("SELECT file FROM extents")
            .fetch_all(&self.write)
            .await?
            .into_iter()
            .collect();
        referenced.extend(
            sqlx::query_scalar::<_, String>("SELECT file FROM parts")
                .fetch_all(&self.write)
                .await?,
        );
        let root = self.root.clone();
        let removed = tokio::task::spawn_blocking(move || -> io::Result<u64> {
            let mut removed = 0;
            for dir in std::fs::read_dir(root.join("data"))? {
                let dir = dir?;
                if !dir.file_type()?.is_dir() {
                    continue;
                }
                for file in std::fs::read_dir(dir.path())? {
                    let file = file?;
                    let rel = format!(
                        "data/{}/{}",
                        dir.file_name().to_string_lossy(),
                        file.file_name().to_string_lossy()
                    );
                    if !referenced.contains(&rel) {
                        std::fs::remove_file(file.path())?;
                        removed += 1;
                    }
                }
            }
            Ok(removed)
        })
        .await
        .map_err(io::Error::other)??;
        if removed > 0 {
            info!(removed, "embedded S3: removed files no object points at");
        }
        Ok(())
    }

    /// Indexes, in place, the buckets and objects an `s3s-fs` root of an earlier
    /// version holds (each top-level directory a bucket, each file below it an
    /// object), once. Multipart uploads in progress there are not carried over.
    async fn import_legacy(&self) -> Result<()> {
        let done: Option<String> =
            sqlx::query_scalar("SELECT value FROM layout WHERE name = 'imported_s3s_fs'")
                .fetch_optional(&self.write)
                .await?;
        if done.is_some() {
            return Ok(());
        }
        let root = self.root.clone();
        let found = tokio::task::spawn_blocking(move || legacy_objects(&root))
            .await
            .map_err(io::Error::other)??;
        let mut tx = self.write.begin().await?;
        let (mut buckets, mut objects) = (0, 0);
        for (bucket, files) in found {
            buckets += 1;
            sqlx::query("INSERT INTO buckets (name, created) VALUES (?, ?) ON CONFLICT DO NOTHING")
                .bind(&bucket)
                .bind(millis(SystemTime::now()))
                .execute(&mut *tx)
                .await?;
            for (key, rel, size, modified, md5) in files {
                objects += 1;
                insert_object_in(
                    &mut tx,
                    &bucket,
                    &key,
                    size,
                    &md5,
                    modified,
                    &Attrs::default(),
                    &Sums::default(),
                    &Content::Extents(vec![Extent { file: rel, size }]),
                )
                .await?;
            }
        }
        sqlx::query("INSERT INTO layout (name, value) VALUES ('imported_s3s_fs', ?)")
            .bind(millis(SystemTime::now()).to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if objects > 0 {
            info!(
                buckets,
                objects, "embedded S3: indexed the objects of the earlier layout in place"
            );
        }
        Ok(())
    }
}

type LegacyObject = (String, String, u64, SystemTime, String);

/// The buckets and files of an `s3s-fs` root: `(bucket, [(key, relative path, size,
/// modified, md5 hex)])`. Its own bookkeeping files (dot files at the root) are skipped.
fn legacy_objects(root: &Path) -> io::Result<Vec<(String, Vec<LegacyObject>)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type()?.is_dir() || name == "data" || !s3s::path::check_bucket_name(&name) {
            continue;
        }
        let mut files = Vec::new();
        let mut dirs = VecDeque::from([entry.path()]);
        while let Some(dir) = dirs.pop_front() {
            for item in std::fs::read_dir(&dir)? {
                let item = item?;
                let path = item.path();
                if item.file_type()?.is_dir() {
                    dirs.push_back(path);
                    continue;
                }
                let Ok(rel) = path.strip_prefix(root) else {
                    continue;
                };
                let Some(rel) = rel
                    .to_str()
                    .map(|s| s.replace(std::path::MAIN_SEPARATOR, "/"))
                else {
                    continue;
                };
                let key = rel[name.len() + 1..].to_owned();
                let meta = item.metadata()?;
                let mut hasher = Md5::new();
                io::copy(
                    &mut std::fs::File::open(&path)?,
                    &mut HashWriter(&mut hasher),
                )?;
                files.push((
                    key,
                    rel,
                    meta.len(),
                    meta.modified().unwrap_or_else(|_| SystemTime::now()),
                    hex::encode(hasher.finalize()),
                ));
            }
        }
        found.push((name, files));
    }
    Ok(found)
}

struct HashWriter<'a>(&'a mut Md5);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Removes files of rows dropped by a committed transaction.
async fn remove_files(root: &Path, files: Vec<String>) {
    if files.is_empty() {
        return;
    }
    let root = root.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || {
        for f in files {
            if let Err(e) = std::fs::remove_file(root.join(&f))
                && e.kind() != io::ErrorKind::NotFound
            {
                warn!(file = %f, error = %e, "embedded S3: could not remove a dropped file");
            }
        }
    })
    .await;
}

/// A new object waiting for its group's commit.
struct PendingCommit {
    bucket: String,
    key: String,
    staged: Staged,
    attrs: Attrs,
    sums: Sums,
    if_none_match: bool,
    reply: oneshot::Sender<Result<ObjectInfo>>,
}

impl std::fmt::Debug for PendingCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PendingCommit({}/{})", self.bucket, self.key)
    }
}

/// Commits at most this many new objects per transaction.
const MAX_GROUP: usize = 256;

/// Group commit: takes every new object waiting (up to [`MAX_GROUP`]) and commits
/// them in one transaction (one refused write, e.g. a failed precondition, does not
/// fail the others: see [`commit_batch`]), so concurrent writers share one sync of the
/// index instead of queueing for one each. Each writer is answered only
/// after the group's commit is synced.
async fn group_commits(
    pool: SqlitePool,
    root: PathBuf,
    mut pending: mpsc::UnboundedReceiver<PendingCommit>,
) {
    while let Some(first) = pending.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP
            && let Ok(next) = pending.try_recv()
        {
            group.push(next);
        }
        commit_group(&pool, &root, group).await;
    }
}

async fn commit_group(pool: &SqlitePool, root: &Path, group: Vec<PendingCommit>) {
    let fail_all = |group: Vec<PendingCommit>, e: &dyn std::fmt::Display| {
        for c in group {
            let _ = c.reply.send(Err(DiskError::Io(io::Error::other(format!(
                "committing to the index: {e}"
            )))));
        }
    };
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => return fail_all(group, &e),
    };
    // A statement that fails half-way through dooms the group: nothing of it is
    // committed (the transaction rolls back when dropped). A key written twice starts
    // a new batch, so the later write replaces the earlier, as if each had committed
    // alone.
    let mut outcomes = Vec::with_capacity(group.len());
    let mut buckets = HashSet::new();
    for run in runs_without_repeats(&group) {
        match commit_batch(&mut tx, &group[run], &mut buckets).await {
            Ok(batch) => outcomes.extend(batch),
            Err(e) => return fail_all(group, &e),
        }
    }
    if let Err(e) = tx.commit().await {
        return fail_all(group, &e);
    }
    for (mut c, outcome) in group.into_iter().zip(outcomes) {
        let answer = match outcome {
            Ok((info, old)) => {
                c.staged.committed();
                remove_files(root, old).await;
                Ok(info)
            }
            Err(e) => Err(e),
        };
        let _ = c.reply.send(answer);
    }
}

/// The group cut, in arrival order, into runs in which no object is written twice.
fn runs_without_repeats(group: &[PendingCommit]) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut seen = HashSet::new();
    for (i, c) in group.iter().enumerate() {
        if !seen.insert((c.bucket.as_str(), c.key.as_str())) {
            runs.push(start..i);
            start = i;
            seen.clear();
            seen.insert((c.bucket.as_str(), c.key.as_str()));
        }
    }
    runs.push(start..group.len());
    runs
}

/// One object's own outcome in its group: committed (its info and the files of the
/// object it replaced, to remove after the commit), or refused alone.
type Outcome = Result<(ObjectInfo, Vec<String>)>;

/// Keys per multi-row statement (SQLite's default limit is 32,766 variables).
const KEYS_PER_STATEMENT: usize = 500;

/// New objects (no key twice) in a few statements however many they are: each one's
/// checks (bucket, precondition) first, which refuse it alone and before anything is
/// written (so no savepoint), then one `DELETE … RETURNING` of the rows they replace
/// (and one of those rows' extents) and one multi-row `INSERT` (and one of the
/// extents) per bucket and 500 keys. Every statement costs a round trip to SQLite's
/// connection thread, so a group of small objects is a handful of them instead of
/// two per object. The outer error is a failed statement, which dooms the group.
async fn commit_batch<'g>(
    tx: &mut Transaction<'_, Sqlite>,
    group: &'g [PendingCommit],
    buckets: &mut HashSet<&'g str>,
) -> Result<Vec<Outcome>, DiskError> {
    let mut outcomes: Vec<Option<Outcome>> = (0..group.len()).map(|_| None).collect();
    let mut writes: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, c) in group.iter().enumerate() {
        if c.staged.content.is_none() {
            outcomes[i] = Some(Err(DiskError::Corrupt(
                "a staged body was committed twice".into(),
            )));
            continue;
        }
        if !buckets.contains(c.bucket.as_str()) {
            match require_bucket_in(tx, &c.bucket).await {
                Ok(()) => buckets.insert(c.bucket.as_str()),
                Err(DiskError::NoSuchBucket) => {
                    outcomes[i] = Some(Err(DiskError::NoSuchBucket));
                    continue;
                }
                Err(e) => return Err(e),
            };
        }
        if c.if_none_match && object_exists_in(tx, &c.bucket, &c.key).await? {
            outcomes[i] = Some(Err(DiskError::Precondition("the object already exists")));
            continue;
        }
        writes.entry(c.bucket.as_str()).or_default().push(i);
    }
    let modified = SystemTime::now();
    for (bucket, indexes) in writes {
        for chunk in indexes.chunks(KEYS_PER_STATEMENT) {
            let mut old = drop_objects_in(tx, bucket, chunk.iter().map(|&i| &group[i])).await?;
            insert_objects_in(tx, bucket, chunk.iter().map(|&i| &group[i]), modified).await?;
            for &i in chunk {
                let c = &group[i];
                let info = ObjectInfo {
                    key: c.key.clone(),
                    size: c.staged.size,
                    etag: c.staged.md5_hex(),
                    modified,
                    attrs: c.attrs.clone(),
                    sums: c.sums.clone(),
                };
                outcomes[i] = Some(Ok((info, old.remove(c.key.as_str()).unwrap_or_default())));
            }
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every object has an outcome"))
        .collect())
}

/// Drops the rows of `commits`' keys in `bucket`; the files each pointed at, by key.
async fn drop_objects_in<'a>(
    tx: &mut Transaction<'_, Sqlite>,
    bucket: &str,
    commits: impl Iterator<Item = &'a PendingCommit>,
) -> Result<std::collections::HashMap<String, Vec<String>>> {
    let mut q = sqlx::QueryBuilder::<Sqlite>::new("DELETE FROM objects WHERE bucket = ");
    q.push_bind(bucket).push(" AND key IN (");
    let mut keys = q.separated(", ");
    for c in commits {
        keys.push_bind(c.key.as_str());
    }
    keys.push_unseparated(") RETURNING key, body IS NULL");
    let dropped: Vec<(String, bool)> = q.build_query_as().fetch_all(&mut **tx).await?;
    let in_files: Vec<&str> = dropped
        .iter()
        .filter(|(_, in_files)| *in_files)
        .map(|(key, _)| key.as_str())
        .collect();
    let mut old: std::collections::HashMap<String, Vec<String>> = Default::default();
    if in_files.is_empty() {
        return Ok(old);
    }
    let mut q = sqlx::QueryBuilder::<Sqlite>::new("DELETE FROM extents WHERE bucket = ");
    q.push_bind(bucket).push(" AND key IN (");
    let mut keys = q.separated(", ");
    for key in in_files {
        keys.push_bind(key);
    }
    keys.push_unseparated(") RETURNING key, file");
    let files: Vec<(String, String)> = q.build_query_as().fetch_all(&mut **tx).await?;
    for (key, file) in files {
        old.entry(key).or_default().push(file);
    }
    Ok(old)
}

/// Inserts the rows of `commits` (checked, their keys free) in `bucket`.
async fn insert_objects_in<'a>(
    tx: &mut Transaction<'_, Sqlite>,
    bucket: &str,
    commits: impl Iterator<Item = &'a PendingCommit> + Clone,
    modified: SystemTime,
) -> Result<()> {
    let mut q = sqlx::QueryBuilder::<Sqlite>::new(
        "INSERT INTO objects (bucket, key, size, etag, modified, attrs, checksum, body) ",
    );
    q.push_values(commits.clone(), |mut row, c| {
        let body = match &c.staged.content {
            Some(Content::Inline(bytes)) => Some(bytes.as_ref()),
            _ => None,
        };
        row.push_bind(bucket)
            .push_bind(c.key.as_str())
            .push_bind(to_i64(c.staged.size))
            .push_bind(c.staged.md5_hex())
            .push_bind(millis(modified))
            .push_bind(json(&c.attrs))
            .push_bind(json(&c.sums))
            .push_bind(body);
    });
    q.build().execute(&mut **tx).await?;
    let extents: Vec<(&str, usize, &Extent)> = commits
        .filter_map(|c| match &c.staged.content {
            Some(Content::Extents(extents)) => Some((c.key.as_str(), extents)),
            _ => None,
        })
        .flat_map(|(key, extents)| {
            extents
                .iter()
                .enumerate()
                .map(move |(seq, e)| (key, seq, e))
        })
        .collect();
    for chunk in extents.chunks(KEYS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO extents (bucket, key, seq, file, size) ",
        );
        q.push_values(chunk, |mut row, (key, seq, e)| {
            row.push_bind(bucket)
                .push_bind(*key)
                .push_bind(i64::try_from(*seq).unwrap_or(i64::MAX))
                .push_bind(e.file.as_str())
                .push_bind(to_i64(e.size));
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn require_bucket_in(tx: &mut Transaction<'_, Sqlite>, bucket: &str) -> Result<()> {
    sqlx::query("SELECT 1 FROM buckets WHERE name = ?")
        .bind(bucket)
        .fetch_optional(&mut **tx)
        .await?
        .map(|_| ())
        .ok_or(DiskError::NoSuchBucket)
}

async fn object_exists_in(
    tx: &mut Transaction<'_, Sqlite>,
    bucket: &str,
    key: &str,
) -> Result<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM objects WHERE bucket = ? AND key = ?")
            .bind(bucket)
            .bind(key)
            .fetch_optional(&mut **tx)
            .await?
            .is_some(),
    )
}

async fn extents_in(
    conn: &mut sqlx::SqliteConnection,
    bucket: &str,
    key: &str,
) -> Result<Vec<Extent>> {
    let rows =
        sqlx::query("SELECT file, size FROM extents WHERE bucket = ? AND key = ? ORDER BY seq")
            .bind(bucket)
            .bind(key)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .iter()
        .map(|r| Extent {
            file: r.get(0),
            size: to_u64(r.get(1)),
        })
        .collect())
}

/// Drops the row of `bucket/key` (if any) and returns the files it pointed at, to be
/// removed once the transaction has committed.
async fn drop_object_in(
    tx: &mut Transaction<'_, Sqlite>,
    bucket: &str,
    key: &str,
) -> Result<Vec<String>> {
    // One statement when the key is new or its body was inline.
    let in_files: Option<bool> = sqlx::query_scalar(
        "DELETE FROM objects WHERE bucket = ? AND key = ? RETURNING body IS NULL",
    )
    .bind(bucket)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?;
    if in_files != Some(true) {
        return Ok(Vec::new());
    }
    Ok(
        sqlx::query_scalar("DELETE FROM extents WHERE bucket = ? AND key = ? RETURNING file")
            .bind(bucket)
            .bind(key)
            .fetch_all(&mut **tx)
            .await?,
    )
}

#[allow(clippy::too_many_arguments)]
async fn insert_object_in(
    tx: &mut Transaction<'_, Sqlite>,
    bucket: &str,
    key: &str,
    size: u64,
    etag: &str,
    modified: SystemTime,
    attrs: &Attrs,
    sums: &Sums,
    content: &Content,
) -> Result<()> {
    let body = match content {
        Content::Inline(bytes) => Some(bytes.as_ref()),
        Content::Extents(_) => None,
    };
    sqlx::query(
        "INSERT INTO objects (bucket, key, size, etag, modified, attrs, checksum, body)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(bucket)
    .bind(key)
    .bind(to_i64(size))
    .bind(etag)
    .bind(millis(modified))
    .bind(json(attrs))
    .bind(json(sums))
    .bind(body)
    .execute(&mut **tx)
    .await?;
    if let Content::Extents(extents) = content {
        for (seq, e) in extents.iter().enumerate() {
            sqlx::query(
                "INSERT INTO extents (bucket, key, seq, file, size) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(bucket)
            .bind(key)
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .bind(&e.file)
            .bind(to_i64(e.size))
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// An object's bytes (or a range of them) as a stream of chunks: one slice of a
/// small body, or the extents' files read in turn, each opened when reached.
pub struct Body {
    len: u64,
    inline: Option<Bytes>,
    /// `(path, offset, len)` still to read.
    pending: VecDeque<(PathBuf, u64, u64)>,
    current: Option<ReaderStream<tokio::io::Take<tokio::fs::File>>>,
}

impl Body {
    fn inline(bytes: Bytes) -> Body {
        Body {
            len: bytes.len() as u64,
            inline: Some(bytes),
            pending: VecDeque::new(),
            current: None,
        }
    }

    fn files(root: &Path, extents: &[Extent], range: std::ops::Range<u64>) -> Body {
        let mut pending = VecDeque::new();
        let mut at = 0u64;
        for e in extents {
            let (start, end) = (at, at + e.size);
            at = end;
            let (from, to) = (range.start.max(start), range.end.min(end));
            if from < to {
                pending.push_back((root.join(&e.file), from - start, to - from));
            }
        }
        Body {
            len: range.end.saturating_sub(range.start),
            inline: None,
            pending,
            current: None,
        }
    }

    /// Bytes this body yields.
    pub fn len(&self) -> u64 {
        self.len
    }

    #[cfg(test)]
    /// Collects the body (for small objects).
    pub async fn collect(mut self) -> io::Result<Vec<u8>> {
        use futures::StreamExt as _;
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        while let Some(chunk) = self.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }
}

impl Stream for Body {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(bytes) = self.inline.take() {
            return Poll::Ready((!bytes.is_empty()).then_some(Ok(bytes)));
        }
        loop {
            if let Some(current) = self.current.as_mut() {
                match Pin::new(current).poll_next(cx) {
                    Poll::Ready(None) => self.current = None,
                    other => return other,
                }
            }
            let Some((path, offset, len)) = self.pending.pop_front() else {
                return Poll::Ready(None);
            };
            // Opening and seeking are one quick syscall each: done in place rather
            // than on a blocking thread, so the stream needs no boxed future.
            let opened = (|| {
                use std::io::Seek as _;
                let mut file = std::fs::File::open(&path)?;
                file.seek(io::SeekFrom::Start(offset))?;
                Ok::<_, io::Error>(file)
            })();
            match opened {
                Ok(file) => {
                    let take = tokio::fs::File::from_std(file).take(len);
                    self.current = Some(ReaderStream::with_capacity(take, READ_CHUNK));
                }
                Err(e) => {
                    self.pending.clear();
                    return Poll::Ready(Some(Err(io::Error::new(
                        e.kind(),
                        format!("embedded S3: reading {}: {e}", path.display()),
                    ))));
                }
            }
        }
    }
}

/// Parses an `UploadPartCopy` source range, `bytes=<first>-<last>`, against `size`.
pub fn copy_range(range: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let (first, last) = range.strip_prefix("bytes=")?.split_once('-')?;
    let first = u64::from_str(first).ok()?;
    let last = if last.is_empty() {
        size.checked_sub(1)?
    } else {
        u64::from_str(last).ok()?
    };
    (first <= last && last < size).then_some(first..last + 1)
}

/// The body of `bucket/key` read to the end, for tests and small objects.
#[cfg(test)]
async fn read_all(disk: &Disk, bucket: &str, key: &str) -> Result<Vec<u8>> {
    let (_, _, body) = disk.read(bucket, key, None).await?;
    Ok(body.collect().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, end: u64) -> s3s::dto::Range {
        s3s::dto::Range::Int {
            first: start,
            last: Some(end - 1),
        }
    }

    async fn disk(dir: &Path, inline_max: usize) -> Disk {
        let disk = Disk::open(dir, inline_max).await.unwrap();
        let _ = disk.create_bucket("b").await;
        disk
    }

    async fn put(disk: &Disk, key: &str, bytes: &[u8]) {
        let staged = disk.stage_bytes(bytes).await.unwrap();
        disk.commit_object("b", key, staged, &Attrs::default(), &Sums::default(), false)
            .await
            .unwrap();
    }

    fn data_files(root: &Path) -> usize {
        walk(&root.join("data"))
    }

    fn walk(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|it| {
                it.flatten()
                    .map(|e| {
                        if e.file_type().unwrap().is_dir() {
                            walk(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn small_bodies_are_rows_and_big_ones_files() {
        let dir = tempfile::tempdir().unwrap();
        let disk = disk(dir.path(), 16).await;
        put(&disk, "small", b"0123456789").await;
        assert_eq!(data_files(disk.root()), 0);
        put(&disk, "big", &[7u8; 100]).await;
        assert_eq!(data_files(disk.root()), 1);
        assert_eq!(read_all(&disk, "b", "small").await.unwrap(), b"0123456789");
        assert_eq!(read_all(&disk, "b", "big").await.unwrap(), vec![7u8; 100]);
        let (_, _, part) = disk.read("b", "big", Some(range(10, 20))).await.unwrap();
        assert_eq!(part.collect().await.unwrap(), vec![7u8; 10]);
        // Replacing and deleting remove the old file once committed.
        put(&disk, "big", b"now small").await;
        assert_eq!(data_files(disk.root()), 0);
        put(&disk, "big", &[1u8; 100]).await;
        disk.delete("b", "big").await.unwrap();
        assert_eq!(data_files(disk.root()), 0);
        assert!(matches!(
            disk.read("b", "big", None).await,
            Err(DiskError::NoSuchKey)
        ));
    }

    #[tokio::test]
    async fn multipart_completion_keeps_the_parts_as_extents() {
        let dir = tempfile::tempdir().unwrap();
        let disk = disk(dir.path(), 16).await;
        let id = disk
            .create_upload("b", "mp", &Attrs::default())
            .await
            .unwrap();
        let five = 5 * 1024 * 1024;
        let mut etags = Vec::new();
        for (n, byte) in [(1, 1u8), (2, 2), (3, 3)] {
            let len = if n == 3 { 10 } else { five };
            let mut staging = disk.staging(true);
            staging.write(&vec![byte; len]).await.unwrap();
            let staged = staging.finish().await.unwrap();
            etags.push((
                n,
                disk.commit_part("b", "mp", &id, n, staged).await.unwrap(),
            ));
        }
        assert_eq!(disk.list_parts("b", "mp", &id).await.unwrap().len(), 3);
        let wrong = vec![(1, etags[0].1.clone()), (2, "00".into())];
        assert!(matches!(
            disk.complete("b", "mp", &id, &wrong).await,
            Err(DiskError::InvalidPart(_))
        ));
        let info = disk.complete("b", "mp", &id, &etags).await.unwrap();
        assert_eq!(info.size, 2 * five as u64 + 10);
        assert!(info.etag.ends_with("-3"));
        assert_eq!(data_files(disk.root()), 3, "no copy was made");
        // A range across the boundary of parts 1 and 2, and the tail in part 3.
        let at = five as u64;
        let (_, _, body) = disk
            .read("b", "mp", Some(range(at - 2, at + 2)))
            .await
            .unwrap();
        assert_eq!(body.collect().await.unwrap(), vec![1, 1, 2, 2]);
        let (_, _, body) = disk
            .read("b", "mp", Some(range(2 * at + 8, 2 * at + 10)))
            .await
            .unwrap();
        assert_eq!(body.collect().await.unwrap(), vec![3, 3]);
        assert!(matches!(
            disk.list_parts("b", "mp", &id).await,
            Err(DiskError::NoSuchUpload)
        ));
    }

    #[tokio::test]
    async fn copies_link_files_and_survive_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let disk = disk(dir.path(), 4).await;
        put(&disk, "src", b"a file body").await;
        disk.copy("b", "src", "b", "dst", None).await.unwrap();
        disk.delete("b", "src").await.unwrap();
        assert_eq!(read_all(&disk, "b", "dst").await.unwrap(), b"a file body");
        disk.copy("b", "dst", "b", "dst", None).await.unwrap();
        assert_eq!(read_all(&disk, "b", "dst").await.unwrap(), b"a file body");
        assert_eq!(data_files(disk.root()), 1);
    }

    #[tokio::test]
    async fn unreferenced_files_are_removed_on_open_and_old_layouts_indexed() {
        let dir = tempfile::tempdir().unwrap();
        // An s3s-fs root of an earlier version.
        std::fs::create_dir_all(dir.path().join("old-bucket/a/b")).unwrap();
        std::fs::write(dir.path().join("old-bucket/a/b/c.txt"), b"legacy").unwrap();
        std::fs::write(dir.path().join(".upload-x.json"), b"{}").unwrap();
        {
            let disk = disk(dir.path(), 4).await;
            // A write that never committed (a crash between sync and commit).
            let mut staging = disk.staging(true);
            staging.write(b"orphan").await.unwrap();
            std::mem::forget(staging.finish().await.unwrap());
            assert_eq!(data_files(disk.root()), 1);
        }
        let disk = Disk::open(dir.path(), 4).await.unwrap();
        assert_eq!(data_files(disk.root()), 0);
        assert_eq!(
            read_all(&disk, "old-bucket", "a/b/c.txt").await.unwrap(),
            b"legacy"
        );
        let info = disk.head("old-bucket", "a/b/c.txt").await.unwrap().unwrap();
        assert_eq!(info.etag, hex::encode(Md5::checksum(b"legacy")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_commit_together_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let disk = disk(dir.path(), 16).await;
        put(&disk, "taken", b"first").await;
        let writes = (0..64).map(|i| {
            let disk = disk.clone();
            async move {
                let body = if i % 2 == 0 {
                    vec![i as u8; 8]
                } else {
                    vec![i as u8; 100]
                };
                let staged = disk.stage_bytes(&body).await.unwrap();
                // Every 8th asks for a key that exists, and must be refused alone.
                let (key, only_new) = if i % 8 == 0 {
                    ("taken".to_owned(), true)
                } else {
                    (format!("k{i}"), false)
                };
                let r = disk
                    .commit_object(
                        "b",
                        &key,
                        staged,
                        &Attrs::default(),
                        &Sums::default(),
                        only_new,
                    )
                    .await;
                (i, body, r)
            }
        });
        for (i, body, r) in futures::future::join_all(writes).await {
            if i % 8 == 0 {
                assert!(matches!(r, Err(DiskError::Precondition(_))), "{i}: {r:?}");
            } else {
                r.unwrap();
                assert_eq!(read_all(&disk, "b", &format!("k{i}")).await.unwrap(), body);
            }
        }
        assert_eq!(read_all(&disk, "b", "taken").await.unwrap(), b"first");
        // Only the committed big bodies have files: the refused ones were removed.
        let big_committed = (0..64).filter(|i| i % 2 == 1 && i % 8 != 0).count();
        assert_eq!(data_files(disk.root()), big_committed);
    }

    #[tokio::test]
    async fn a_group_replaces_objects_and_removes_their_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let disk = disk(dir.path(), 16).await;
        // Old objects: even ones inline, odd ones in files.
        for i in 0..16u8 {
            let old = if i % 2 == 0 { vec![i; 4] } else { vec![i; 64] };
            put(&disk, &format!("k{i}"), &old).await;
        }
        assert_eq!(data_files(disk.root()), 8);
        // Rewritten at once (one group, or a few): inline <-> file both ways, and
        // "k0" twice in the same burst (the last one to commit wins).
        let writes = (0..18u8).map(|i| {
            let disk = disk.clone();
            async move {
                let (key, body) = match i {
                    16 | 17 => ("k0".to_owned(), vec![100 + i; 40]),
                    i if i % 4 < 2 => (format!("k{i}"), vec![i + 50; 3]),
                    i => (format!("k{i}"), vec![i + 50; 90]),
                };
                let staged = disk.stage_bytes(&body).await.unwrap();
                disk.commit_object(
                    "b",
                    &key,
                    staged,
                    &Attrs::default(),
                    &Sums::default(),
                    false,
                )
                .await
                .unwrap();
                (key, body)
            }
        });
        let written = futures::future::join_all(writes).await;
        for (key, body) in &written {
            if key != "k0" {
                assert_eq!(&read_all(&disk, "b", key).await.unwrap(), body, "{key}");
            }
        }
        let k0 = read_all(&disk, "b", "k0").await.unwrap();
        assert!(
            written.iter().any(|(k, b)| k == "k0" && *b == k0),
            "k0 holds one of its writes"
        );
        // Only the current big bodies have files: every replaced one was removed.
        let big_now = (1..16u8).filter(|i| i % 4 >= 2).count() + usize::from(k0.len() > 16);
        assert_eq!(data_files(disk.root()), big_now);
        let listed = disk.list("b", "", "", 1000).await.unwrap();
        assert_eq!(listed.len(), 16);
    }

    #[test]
    fn copy_ranges() {
        assert_eq!(copy_range("bytes=0-9", 10), Some(0..10));
        assert_eq!(copy_range("bytes=5-", 10), Some(5..10));
        assert_eq!(copy_range("bytes=5-10", 10), None);
        assert_eq!(copy_range("bytes=6-5", 10), None);
        assert_eq!(copy_range("5-6", 10), None);
    }
}
