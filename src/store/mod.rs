//! Object storage: where uploaded ZIPs and extracted files live.
//!
//! Everything above this module talks to an [`ObjectStore`]; the one real
//! implementation, [`S3Store`], drives the official `aws-sdk-s3` client and is
//! used unchanged against the [`EmbeddedS3`] endpoint this process can serve
//! itself and against any external S3 (AWS, MinIO, Garage, Ceph).
//!
//! Browsers never stream through this process: they get presigned URLs that
//! bind method, length and type, and the server only completes, checks and
//! reads what they wrote.

mod embedded;
mod error;
mod presign;
mod ranged;
mod s3;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use embedded::{DirectStore, EmbeddedS3};
pub use error::{Result, StoreError};
pub use ranged::RangedObject;
pub use s3::S3Store;

/// How to reach a bucket on an S3-compatible store.
#[derive(Clone)]
pub struct S3Config {
    /// Endpoint used for server-side calls, e.g. `http://127.0.0.1:9000`.
    /// `None` means AWS' own endpoint for `region`.
    pub endpoint: Option<String>,
    /// Signing region (`us-east-1` for most non-AWS stores; Garage uses `garage`).
    pub region: String,
    /// Bucket holding every object of this deployment; created when missing.
    pub bucket: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Address buckets as `endpoint/bucket/key` instead of `bucket.endpoint/key`.
    /// Needed for the embedded endpoint and most self-hosted stores.
    pub force_path_style: bool,
    /// Base URL browsers use to reach the store, when it differs from `endpoint`
    /// (e.g. the store sits behind a reverse proxy). SigV4 signs the host, so
    /// presigned URLs are generated against this URL. The proxy must forward
    /// the path and query unchanged and keep the `Host` it was addressed with.
    pub public_url: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("force_path_style", &self.force_path_style)
            .field("public_url", &self.public_url)
            .finish()
    }
}

/// What `head` reports about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Size in bytes.
    pub size: u64,
    /// `Content-Type` recorded when the object was written.
    pub content_type: Option<String>,
    /// ETag as the store returns it (quoted; `"<md5>-<parts>"` for multipart objects).
    pub etag: Option<String>,
}

/// A checksum a presigned `PUT` is bound to (S3 flexible checksums): it is
/// signed into the URL as the header `x-amz-checksum-<algorithm>`, so a client
/// must send exactly that header (else 403), and the store refuses a body whose
/// checksum differs (400 `BadDigest`) and keeps no byte of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// CRC32C of the body, big-endian, base64 (8 characters).
    Crc32c(String),
    /// SHA-256 of the body, base64 (44 characters).
    Sha256(String),
}

impl Checksum {
    /// The request header that carries it.
    pub fn header(&self) -> &'static str {
        match self {
            Checksum::Crc32c(_) => "x-amz-checksum-crc32c",
            Checksum::Sha256(_) => "x-amz-checksum-sha256",
        }
    }

    /// The base64 value.
    pub fn value(&self) -> &str {
        match self {
            Checksum::Crc32c(v) | Checksum::Sha256(v) => v,
        }
    }
}

/// The object store as the rest of intake sees it.
///
/// Keys are relative to the configured bucket. Presigned URLs are meant for
/// browsers; every other method is a server-side call. Only what intake itself
/// calls is here; calls that only tests need (reading, writing and listing
/// objects directly) are inherent methods of [`S3Store`].
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// A URL for a single `PUT` of exactly `content_length` bytes (at most
    /// 5 GiB) to `key`, sent with the header `Content-Type: <content_type>`.
    /// The store rejects (403) a request with any other method, length or
    /// type, and any request after `expires` (at most 7 days).
    async fn presign_put(
        &self,
        key: &str,
        content_length: u64,
        content_type: &str,
        expires: Duration,
    ) -> Result<String>;

    /// A URL for a single `PUT` to `key` of any length and type, for callers that
    /// cannot know them in advance (the Event History API). Only the method, the key
    /// and `expires` are bound; S3 still refuses a single PUT above 5 GiB.
    async fn presign_put_any(&self, key: &str, expires: Duration) -> Result<String>;

    /// Starts a multipart upload to `key` and returns the store's upload id.
    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String>;

    /// A URL for a `PUT` of part `part_number` (1..=10000) of exactly
    /// `content_length` bytes. The response's `ETag` header is what
    /// [`ObjectStore::complete_multipart`] needs back.
    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        content_length: u64,
        expires: Duration,
    ) -> Result<String>;

    /// [`ObjectStore::presign_put`] bound to `checksum` as well.
    async fn presign_put_checked(
        &self,
        key: &str,
        content_length: u64,
        content_type: &str,
        checksum: &Checksum,
        expires: Duration,
    ) -> Result<String> {
        let _ = (key, content_length, content_type, checksum, expires);
        Err(StoreError::Invalid(
            "this store does not bind checksums into URLs".into(),
        ))
    }

    /// [`ObjectStore::presign_part`] bound to `checksum` as well.
    async fn presign_part_checked(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        content_length: u64,
        checksum: &Checksum,
        expires: Duration,
    ) -> Result<String> {
        let _ = (
            key,
            upload_id,
            part_number,
            content_length,
            checksum,
            expires,
        );
        Err(StoreError::Invalid(
            "this store does not bind checksums into URLs".into(),
        ))
    }

    /// Assembles the object from `(part_number, etag)` pairs (any order).
    /// An ETag that does not match the stored part is an error. `NotFound`
    /// means the upload is gone: aborted, or already completed (e.g. by an
    /// attempt whose answer was lost), which [`ObjectStore::head`] tells apart.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<()>;

    /// The parts of multipart upload `upload_id` stored so far, as
    /// `(part_number, etag, size)` by part number (S3 `ListParts`, every page).
    /// `NotFound` when the upload is gone (aborted or completed). Used to resume a
    /// session after the client restarted (`uploads::resume`).
    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<(i32, String, u64)>>;

    /// Drops a multipart upload and the parts stored so far.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()>;

    /// The multipart uploads in progress under `prefix`, as `(key, upload_id)`
    /// (S3 `ListMultipartUploads`, every page); `None` when the store does not
    /// implement the call (the sweeper then aborts only the uploads intake recorded).
    async fn list_multipart_uploads(&self, _prefix: &str) -> Result<Option<Vec<(String, String)>>> {
        Ok(None)
    }

    /// The keys under `prefix` last written before `before` (the sweeper's expiry of
    /// quarantined objects).
    async fn list_older_than(
        &self,
        _prefix: &str,
        _before: std::time::SystemTime,
    ) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Size, type and ETag of `key`, or `None` when it does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;

    /// Exactly `len` bytes of `key` from `start` (a ranged GET). With `etag` (as
    /// [`ObjectStore::head`] returns it) the read fails, as a transient failure,
    /// unless the object is still that version: the reads of one pass over an
    /// object never mix two versions of it, and the pass starts again.
    async fn get_range(&self, key: &str, start: u64, len: u64, etag: Option<&str>)
    -> Result<Bytes>;

    /// Streams `key` into a new file at `path` (replacing it) with bounded
    /// memory and returns the number of bytes written. On error the file is
    /// removed.
    async fn get_to_file(&self, key: &str, path: &Path) -> Result<u64>;

    /// Streams the file at `path` to `key` without loading it in memory
    /// (single PUT, so at most 5 GiB).
    async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<()>;

    /// Puts `body` (held in memory, so small) at `key`.
    async fn put_bytes(&self, key: &str, body: Bytes, content_type: &str) -> Result<()>;

    /// Server-side copy of `src` to `dst` within the bucket, any size.
    async fn copy(&self, src: &str, dst: &str) -> Result<()>;

    /// Deletes `key`; deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Deletes every key starting with `prefix` (which must not be empty) and
    /// returns how many were deleted.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64>;

    /// A URL that downloads `key` until `expires`; with `download_name` the
    /// response asks the browser to save it under that name.
    async fn presign_get(
        &self,
        key: &str,
        expires: Duration,
        download_name: Option<&str>,
    ) -> Result<String>;

    /// Checks that the bucket is reachable with our credentials (readiness).
    async fn ping(&self) -> Result<()>;
}
