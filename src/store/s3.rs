//! [`S3Store`]: the [`ObjectStore`] on the official `aws-sdk-s3` client, the
//! same code for the embedded endpoint and for AWS, MinIO, Garage or Ceph.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::client::customize::CustomizableOperation;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use aws_sdk_s3::primitives::{ByteStream, ByteStreamError, Length};
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration,
};
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use tokio::io::AsyncWriteExt as _;
use tracing::{debug, info, warn};

use super::presign::QueryPresigner;
use super::{Checksum, ObjectMeta, ObjectStore, Result, S3Config, StoreError};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// S3 refuses a single PUT or CopyObject above 5 GiB, and parts above 5 GiB.
const S3_SINGLE_MAX: u64 = 5 * GIB;
/// S3 refuses parts below 5 MiB, except the last one.
const S3_PART_MIN: u64 = 5 * MIB;
const S3_MAX_PARTS: u64 = 10_000;

/// Time to open a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for one attempt of a small call, from sending to the response headers.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for a small call including the SDK's retries.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(90);
/// Slowest transfer rate we wait for when sizing timeouts of big transfers.
const MIN_TRANSFER_RATE: u64 = MIB; // per second
/// CompleteMultipartUpload may concatenate gigabytes before answering (the
/// embedded store does); it is bounded by this instead of [`ATTEMPT_TIMEOUT`].
const COMPLETE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// A body that moves no byte for this long fails (SDK stalled-stream protection).
const STALL_GRACE: Duration = Duration::from_secs(30);
/// Buffer for streaming objects to and from disk.
const FILE_BUFFER: usize = 256 * 1024;
/// Parallel requests for deletes and part uploads/copies.
const CONCURRENCY: usize = 4;

/// Sizes at which big transfers switch to multipart, adjustable in tests.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// `put_file` above this size uses a multipart upload.
    single_put_max: u64,
    /// Part size for `put_file` multipart uploads (grown to fit 10,000 parts).
    put_part_size: u64,
    /// `copy` above this size uses a multipart copy.
    single_copy_max: u64,
    /// Part size for multipart copies.
    copy_part_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            single_put_max: 256 * MIB,
            put_part_size: 64 * MIB,
            single_copy_max: S3_SINGLE_MAX,
            copy_part_size: GIB,
        }
    }
}

/// The tail every SDK call shares: a failure becomes a [`StoreError`] that names
/// the S3 operation and the key, upload or bucket it was about.
trait OrStore<T> {
    fn or_store(self, op: &'static str, target: &str) -> Result<T>;
}

impl<T, E> OrStore<T> for std::result::Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn or_store(self, op: &'static str, target: &str) -> Result<T> {
        self.map_err(|e| {
            let e = StoreError::from_sdk(op, target, e);
            crate::telemetry::s3_error(op, e.kind());
            e
        })
    }
}

/// [`OrStore`] for presigning: the URL of the presigned request.
trait UriOrStore {
    fn uri_or_store(self, op: &'static str, target: &str) -> Result<String>;
}

impl<E> UriOrStore for std::result::Result<PresignedRequest, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn uri_or_store(self, op: &'static str, target: &str) -> Result<String> {
        Ok(self.or_store(op, target)?.uri().to_owned())
    }
}

/// Per-call timeouts, for calls that move more than the default allows for.
trait WithTimeouts {
    fn with_timeouts(self, timeouts: TimeoutConfig) -> Self;
}

impl<T, E, B> WithTimeouts for CustomizableOperation<T, E, B> {
    fn with_timeouts(self, timeouts: TimeoutConfig) -> Self {
        self.config_override(aws_sdk_s3::config::Builder::new().timeout_config(timeouts))
    }
}

/// [`ObjectStore`] on one bucket of an S3-compatible store.
///
/// Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub struct S3Store {
    /// Server-side calls go through `S3Config::endpoint`.
    client: Client,
    /// Presigned URLs are signed for `S3Config::public_url` when set.
    presigner: Client,
    /// The same URLs as `presigner`'s for the hot paths, without the SDK's
    /// orchestrator (`super::presign`).
    fast: std::sync::Arc<QueryPresigner>,
    bucket: String,
    region: String,
    limits: Limits,
}

impl S3Store {
    /// Builds the store and creates the bucket when it does not exist yet.
    pub async fn connect(cfg: &S3Config) -> Result<Self> {
        let store = Self::new(cfg)?;
        store.ensure_bucket().await?;
        Ok(store)
    }

    /// Builds the store without any network call (see [`S3Store::connect`]).
    pub fn new(cfg: &S3Config) -> Result<Self> {
        if cfg.bucket.is_empty() {
            return Err(StoreError::Invalid("bucket name is empty".into()));
        }
        if cfg.region.is_empty() {
            return Err(StoreError::Invalid("region is empty".into()));
        }
        let client = Client::from_conf(sdk_config(cfg, cfg.endpoint.as_deref())?);
        let presigner = match cfg.public_url.as_deref() {
            Some(public) => Client::from_conf(sdk_config(cfg, Some(public))?),
            None => client.clone(),
        };
        Ok(Self {
            client,
            presigner,
            fast: std::sync::Arc::new(QueryPresigner::new(
                &cfg.access_key_id,
                &cfg.secret_access_key,
                &cfg.region,
            )),
            bucket: cfg.bucket.clone(),
            region: cfg.region.clone(),
            limits: Limits::default(),
        })
    }

    /// [`ObjectStore::presign_put_any`] through the SDK's presigner (what the fast
    /// path is checked against).
    async fn sdk_presign_put_any(&self, key: &str, expires: Duration) -> Result<String> {
        self.presigner
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning(expires)?)
            .await
            .uri_or_store("PutObject(presign)", key)
    }

    /// `method` on `key` presigned now by the fast presigner (its base address
    /// found through the SDK the first time).
    async fn presign_fast(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        expires: Duration,
    ) -> Result<String> {
        let base = self
            .fast
            .base(|probe| self.sdk_presign_put_any(probe, expires))
            .await?;
        let now = std::time::SystemTime::now();
        self.fast.sign(base, method, key, query, expires, now)
    }

    /// The bucket this store writes to.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket unless it already exists and is usable by us.
    pub async fn ensure_bucket(&self) -> Result<()> {
        let bucket = self.bucket.as_str();
        match self
            .client
            .head_bucket()
            .bucket(bucket)
            .customize()
            .config_override(start_up_attempt())
            .send()
            .await
            .or_store("HeadBucket", bucket)
        {
            Ok(_) => return Ok(()),
            // A HEAD answer has no body, so a refusal (wrong region, bad key) comes
            // without its reason: ask again with a GET to get the server's own words.
            Err(e @ StoreError::Rejected { .. }) if e.code() == Some("") => {
                return match self
                    .client
                    .list_objects_v2()
                    .bucket(bucket)
                    .max_keys(1)
                    .send()
                    .await
                    .or_store("ListObjectsV2", bucket)
                {
                    Err(why) if why.code().is_some_and(|c| !c.is_empty()) => Err(why),
                    _ => Err(e),
                };
            }
            Err(e) if !e.is_not_found() => return Err(e),
            Err(_) => {}
        }
        let mut create = self.client.create_bucket().bucket(bucket);
        // AWS rejects an explicit us-east-1 constraint; every other region needs one.
        if self.region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        match create.send().await.or_store("CreateBucket", bucket) {
            Ok(_) => {
                info!(bucket, "created bucket");
                Ok(())
            }
            Err(e) => match e.code() {
                Some("BucketAlreadyOwnedByYou") => Ok(()),
                // Someone created it between our HEAD and CREATE; it is
                // ours if we can use it.
                Some("BucketAlreadyExists") => self.ping().await,
                _ => Err(e),
            },
        }
    }

    /// Parts stored so far as `(part_number, etag, size)`, by part number.
    pub async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<(i32, String, u64)>> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .or_store("ListParts", key)?;
            for part in out.parts() {
                let (Some(number), Some(etag)) = (part.part_number(), part.e_tag()) else {
                    return Err(missing("ListParts", key, "PartNumber/ETag"));
                };
                let size = u64::try_from(part.size().unwrap_or_default()).unwrap_or_default();
                parts.push((number, etag.to_owned(), size));
            }
            let next = out.next_part_number_marker().map(str::to_owned);
            if !out.is_truncated().unwrap_or(false) || next.is_none() || next == marker {
                break;
            }
            marker = next;
        }
        parts.sort_by_key(|(number, _, _)| *number);
        Ok(parts)
    }

    /// Reads all of `key` into memory; for small objects only.
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .or_store("GetObject", key)?;
        let data = out.body.collect().await.map_err(|e| body_error(key, &e))?;
        Ok(data.into_bytes())
    }

    /// Writes `data` to `key`.
    pub async fn put_bytes(&self, key: &str, data: Bytes, content_type: &str) -> Result<()> {
        let size = data.len() as u64;
        check_transfer_size(size, "object")?;
        self.put_object_body(key, content_type, ByteStream::from(data), size)
            .await
    }

    /// Every key starting with `prefix`, in lexicographic order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut all = Vec::new();
        self.for_each_key_page(prefix, |keys| {
            all.extend(keys);
            async { Ok(()) }
        })
        .await?;
        Ok(all)
    }

    async fn single_copy(&self, src: &str, dst: &str, size: u64) -> Result<()> {
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(dst)
            .copy_source(copy_source(&self.bucket, src))
            .customize()
            .with_timeouts(transfer_timeouts(size))
            .send()
            .await
            .or_store("CopyObject", src)?;
        Ok(())
    }

    /// Runs a multipart upload of `size` bytes to `key`: creates it, sends the parts
    /// (`send_part(upload_id, number, offset, len)` → ETag) at most `CONCURRENCY` at
    /// once, completes it, and aborts it if anything failed.
    async fn multipart<F, Fut>(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        part_size: u64,
        send_part: F,
    ) -> Result<()>
    where
        F: Fn(String, i32, u64, u64) -> Fut,
        Fut: std::future::Future<Output = Result<String>>,
    {
        let upload_id = self.create_multipart(key, content_type).await?;
        let result = async {
            let parts: Vec<(i32, String)> = futures::stream::iter(part_ranges(size, part_size))
                .map(|(number, offset, len)| {
                    let part = send_part(upload_id.clone(), number, offset, len);
                    async move { Ok::<_, StoreError>((number, part.await?)) }
                })
                .buffer_unordered(CONCURRENCY)
                .try_collect()
                .await?;
            self.complete_multipart(key, &upload_id, &parts).await
        }
        .await;
        if result.is_err() {
            self.abort_quietly(key, &upload_id).await;
        }
        result
    }

    async fn multipart_copy(&self, src: &str, dst: &str, meta: &ObjectMeta) -> Result<()> {
        let content_type = meta
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream");
        let part_size = part_size_for(meta.size, self.limits.copy_part_size);
        self.multipart(
            dst,
            content_type,
            meta.size,
            part_size,
            |upload_id, number, offset, len| async move {
                let out = self
                    .client
                    .upload_part_copy()
                    .bucket(&self.bucket)
                    .key(dst)
                    .upload_id(upload_id)
                    .part_number(number)
                    .copy_source(copy_source(&self.bucket, src))
                    .copy_source_range(format!("bytes={}-{}", offset, offset + len - 1))
                    .customize()
                    .with_timeouts(transfer_timeouts(len))
                    .send()
                    .await
                    .or_store("UploadPartCopy", src)?;
                out.copy_part_result()
                    .and_then(|r| r.e_tag())
                    .map(str::to_owned)
                    .ok_or_else(|| missing("UploadPartCopy", src, "ETag"))
            },
        )
        .await
    }

    async fn multipart_put_file(
        &self,
        key: &str,
        path: &Path,
        content_type: &str,
        size: u64,
    ) -> Result<()> {
        let part_size = part_size_for(size, self.limits.put_part_size);
        self.multipart(
            key,
            content_type,
            size,
            part_size,
            |upload_id, number, offset, len| async move {
                let body = file_body("UploadPart", path, offset, len).await?;
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .content_length(to_i64(len)?)
                    .body(body)
                    .customize()
                    .with_timeouts(transfer_timeouts(len))
                    .send()
                    .await
                    .or_store("UploadPart", key)?;
                out.e_tag()
                    .map(str::to_owned)
                    .ok_or_else(|| missing("UploadPart", key, "ETag"))
            },
        )
        .await
    }

    /// Calls `each` with the keys under `prefix` one page (up to 1,000 keys) at
    /// a time, in lexicographic order, so memory stays bounded for any number of keys.
    async fn for_each_key_page<F, Fut>(&self, prefix: &str, mut each: F) -> Result<()>
    where
        F: FnMut(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.or_store("ListObjectsV2", prefix)?;
            each(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .map(str::to_owned)
                    .collect(),
            )
            .await?;
        }
        Ok(())
    }

    /// A single PUT of `body`, `size` bytes, to `key`.
    async fn put_object_body(
        &self,
        key: &str,
        content_type: &str,
        body: ByteStream,
        size: u64,
    ) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(to_i64(size)?)
            .body(body)
            .customize()
            .with_timeouts(transfer_timeouts(size))
            .send()
            .await
            .or_store("PutObject", key)?;
        Ok(())
    }

    async fn abort_quietly(&self, key: &str, upload_id: &str) {
        if let Err(e) = self.abort_multipart(key, upload_id).await {
            warn!(key, upload_id, error = %e, "could not abort multipart upload");
        }
    }

    #[cfg(test)]
    fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// A pinned read of an object that has been replaced since (412): the pass over it
/// starts again, on the new version.
pub(crate) fn changed_is_transient(e: StoreError, key: &str) -> StoreError {
    match e {
        StoreError::Rejected { status: 412, .. } => StoreError::changed(key),
        e => e,
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn presign_put(
        &self,
        key: &str,
        content_length: u64,
        content_type: &str,
        expires: Duration,
    ) -> Result<String> {
        check_transfer_size(content_length, "object")?;
        // An explicit Content-Length/Content-Type is serialized as a header
        // before signing, so both land in X-Amz-SignedHeaders; the store then
        // rejects a PUT whose headers differ (checked in tests/store.rs).
        self.presigner
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(to_i64(content_length)?)
            .content_type(content_type)
            .presigned(presigning(expires)?)
            .await
            .uri_or_store("PutObject(presign)", key)
    }

    async fn presign_put_any(&self, key: &str, expires: Duration) -> Result<String> {
        self.presign_fast("PUT", key, &[("x-id", "PutObject")], expires)
            .await
    }

    async fn presign_put_checked(
        &self,
        key: &str,
        content_length: u64,
        content_type: &str,
        checksum: &Checksum,
        expires: Duration,
    ) -> Result<String> {
        check_transfer_size(content_length, "object")?;
        // Like the length, an explicit checksum is a header before signing, so it
        // lands in X-Amz-SignedHeaders (checked in tests/store.rs).
        let req = self
            .presigner
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(to_i64(content_length)?)
            .content_type(content_type);
        let req = match checksum {
            Checksum::Crc32c(v) => req.checksum_crc32_c(v),
            Checksum::Sha256(v) => req.checksum_sha256(v),
        };
        req.presigned(presigning(expires)?)
            .await
            .uri_or_store("PutObject(presign)", key)
    }

    async fn presign_part_checked(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        content_length: u64,
        checksum: &Checksum,
        expires: Duration,
    ) -> Result<String> {
        check_part_number(part_number)?;
        check_transfer_size(content_length, "part")?;
        let req = self
            .presigner
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .content_length(to_i64(content_length)?);
        let req = match checksum {
            Checksum::Crc32c(v) => req.checksum_crc32_c(v),
            Checksum::Sha256(v) => req.checksum_sha256(v),
        };
        req.presigned(presigning(expires)?)
            .await
            .uri_or_store("UploadPart(presign)", key)
    }

    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .or_store("CreateMultipartUpload", key)?;
        let upload_id = out
            .upload_id()
            .ok_or_else(|| missing("CreateMultipartUpload", key, "UploadId"))?;
        debug!(key, upload_id, "multipart upload created");
        Ok(upload_id.to_owned())
    }

    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        content_length: u64,
        expires: Duration,
    ) -> Result<String> {
        check_part_number(part_number)?;
        check_transfer_size(content_length, "part")?;
        self.presigner
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .content_length(to_i64(content_length)?)
            .presigned(presigning(expires)?)
            .await
            .uri_or_store("UploadPart(presign)", key)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<()> {
        let sorted = completion_parts(key, parts)?;
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                sorted
                    .into_iter()
                    .map(|(number, etag)| {
                        CompletedPart::builder()
                            .part_number(number)
                            .e_tag(etag)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        // S3 may report a failure inside a 200 response; the SDK turns that
        // into a service error, so `Ok` here really means completed.
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .customize()
            .with_timeouts(timeouts(COMPLETE_TIMEOUT))
            .send()
            .await
            .or_store("CompleteMultipartUpload", key)?;
        debug!(
            key,
            upload_id,
            parts = parts.len(),
            "multipart upload completed"
        );
        Ok(())
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<(i32, String, u64)>> {
        S3Store::list_parts(self, key, upload_id).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .or_store("AbortMultipartUpload", key)?;
        debug!(key, upload_id, "multipart upload aborted");
        Ok(())
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Option<Vec<(String, String)>>> {
        let mut all = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let out = match self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .or_store("ListMultipartUploads", prefix)
            {
                Ok(out) => out,
                // A store without the call (e.g. an older S3-compatible server) answers 501.
                Err(e) if e.code() == Some("NotImplemented") || e.to_string().contains("501") => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            for u in out.uploads() {
                if let (Some(key), Some(id)) = (u.key(), u.upload_id()) {
                    all.push((key.to_owned(), id.to_owned()));
                }
            }
            if !out.is_truncated().unwrap_or(false) {
                break;
            }
            let next = (
                out.next_key_marker().map(str::to_owned),
                out.next_upload_id_marker().map(str::to_owned),
            );
            if next.0.is_none() || next == (key_marker.clone(), id_marker.clone()) {
                break;
            }
            (key_marker, id_marker) = next;
        }
        Ok(Some(all))
    }

    async fn list_older_than(
        &self,
        prefix: &str,
        before: std::time::SystemTime,
    ) -> Result<Vec<String>> {
        let before = aws_sdk_s3::primitives::DateTime::from(before);
        let mut old = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.or_store("ListObjectsV2", prefix)?;
            for o in page.contents() {
                if let (Some(key), Some(at)) = (o.key(), o.last_modified())
                    && at.secs() < before.secs()
                {
                    old.push(key.to_owned());
                }
            }
        }
        Ok(old)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .or_store("HeadObject", key)
        {
            Ok(out) => Ok(Some(ObjectMeta {
                size: u64::try_from(out.content_length().unwrap_or_default()).unwrap_or_default(),
                content_type: out.content_type().map(str::to_owned),
                etag: out.e_tag().map(str::to_owned),
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get_range(
        &self,
        key: &str,
        start: u64,
        len: u64,
        etag: Option<&str>,
    ) -> Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let last = start + len - 1;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={start}-{last}"))
            .set_if_match(etag.map(str::to_owned))
            .send()
            .await
            .or_store("GetObject", key)
            .map_err(|e| changed_is_transient(e, key))?;
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| body_error(key, &e))?
            .into_bytes();
        StoreError::exact_range(key, start, len, data)
    }

    async fn get_to_file(&self, key: &str, path: &Path) -> Result<u64> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .or_store("GetObject", key)?;
        let expected = out.content_length().and_then(|n| u64::try_from(n).ok());
        let mut body = out.body;
        let result = async {
            let io = |e| StoreError::io("GetObject", path, e);
            let file = tokio::fs::File::create(path).await.map_err(io)?;
            let mut writer = tokio::io::BufWriter::with_capacity(FILE_BUFFER, file);
            let mut written = 0u64;
            while let Some(chunk) = body.try_next().await.map_err(|e| body_error(key, &e))? {
                writer.write_all(&chunk).await.map_err(io)?;
                written += chunk.len() as u64;
            }
            writer.flush().await.map_err(io)?;
            if let Some(expected) = expected
                && expected != written
            {
                return Err(StoreError::transient(
                    "GetObject",
                    key,
                    format!("body ended after {written} of {expected} bytes"),
                ));
            }
            Ok(written)
        }
        .await;
        if result.is_err()
            && let Err(e) = tokio::fs::remove_file(path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(path = %path.display(), error = %e, "could not remove partial download");
        }
        result
    }

    async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<()> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| StoreError::io("PutObject", path, e))?
            .len();
        if size > self.limits.single_put_max {
            return self.multipart_put_file(key, path, content_type, size).await;
        }
        let body = file_body("PutObject", path, 0, size).await?;
        self.put_object_body(key, content_type, body, size).await
    }

    async fn put_bytes(&self, key: &str, body: Bytes, content_type: &str) -> Result<()> {
        let size = body.len() as u64;
        self.put_object_body(key, content_type, ByteStream::from(body), size)
            .await
    }

    async fn copy(&self, src: &str, dst: &str) -> Result<()> {
        let meta = self.head(src).await?.ok_or_else(|| StoreError::NotFound {
            op: "CopyObject",
            target: src.to_owned(),
        })?;
        if meta.size > self.limits.single_copy_max {
            self.multipart_copy(src, dst, &meta).await
        } else {
            self.single_copy(src, dst, meta.size).await
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .or_store("DeleteObject", key)?;
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        if prefix.is_empty() {
            return Err(StoreError::Invalid(
                "refusing to delete with an empty prefix (the whole bucket)".into(),
            ));
        }
        // One DeleteObject per key: DeleteObjects would be faster, but the
        // checksum header it requires is not accepted by every S3-compatible
        // store.
        let mut count = 0u64;
        self.for_each_key_page(prefix, |keys| {
            count += keys.len() as u64;
            futures::stream::iter(keys)
                .map(|key| async move { self.delete(&key).await })
                .buffer_unordered(CONCURRENCY)
                .try_collect::<()>()
        })
        .await?;
        debug!(prefix, count, "deleted prefix");
        Ok(count)
    }

    async fn presign_get(
        &self,
        key: &str,
        expires: Duration,
        download_name: Option<&str>,
    ) -> Result<String> {
        let disposition = download_name.map(attachment_disposition);
        self.presign_fast("GET", key, &get_query(disposition.as_deref()), expires)
            .await
    }

    async fn ping(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .or_store("HeadBucket", &self.bucket)?;
        Ok(())
    }
}

/// SDK configuration shared by the server-side client and the presigner.
fn sdk_config(cfg: &S3Config, endpoint: Option<&str>) -> Result<aws_sdk_s3::Config> {
    let credentials = Credentials::new(
        cfg.access_key_id.clone(),
        cfg.secret_access_key.clone(),
        None,
        None,
        "intake-config",
    );
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(cfg.region.clone()))
        .credentials_provider(credentials)
        .force_path_style(cfg.force_path_style)
        .timeout_config(timeouts(ATTEMPT_TIMEOUT))
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .stalled_stream_protection(
            StalledStreamProtectionConfig::enabled()
                .grace_period(STALL_GRACE)
                .build(),
        )
        // Flexible checksums (aws-chunked bodies with trailers) are not
        // understood by every S3-compatible store; send them only when an
        // operation requires one.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(endpoint) = endpoint {
        let url = url::Url::parse(endpoint)
            .map_err(|e| StoreError::Invalid(format!("endpoint {endpoint:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(StoreError::Invalid(format!(
                "endpoint {endpoint:?} is not an http(s) URL"
            )));
        }
        builder = builder.endpoint_url(endpoint.trim_end_matches('/'));
    }
    Ok(builder.build())
}

/// The first call at start-up: one attempt within 4 s, so that an unreachable or
/// refusing store stops start-up at once with its reason (the process exits within
/// 5 s) instead of after the SDK's retries.
fn start_up_attempt() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::new()
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(4))
                .operation_timeout(Duration::from_secs(4))
                .build(),
        )
}

/// Timeouts for a call whose request or response takes up to `attempt` to
/// send and answer; three attempts fit in the operation timeout.
fn timeouts(attempt: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        // The SDK's read timeout runs until the response headers, i.e. over
        // the whole request body too, so it follows the attempt timeout.
        .read_timeout(attempt)
        .operation_attempt_timeout(attempt)
        .operation_timeout((attempt * 3).max(OPERATION_TIMEOUT))
        .build()
}

/// Timeouts for a call that moves `bytes` through the store.
fn transfer_timeouts(bytes: u64) -> TimeoutConfig {
    timeouts(ATTEMPT_TIMEOUT + Duration::from_secs(bytes / MIN_TRANSFER_RATE))
}

/// The `len` bytes of the file at `path` from `offset` on, streamed as a request body.
async fn file_body(op: &'static str, path: &Path, offset: u64, len: u64) -> Result<ByteStream> {
    ByteStream::read_from()
        .path(path)
        .offset(offset)
        .length(Length::Exact(len))
        .buffer_size(FILE_BUFFER)
        .build()
        .await
        .map_err(|e| StoreError::io(op, path, std::io::Error::other(e)))
}

/// The query of a presigned `GetObject` before the signature, in the SDK's order.
fn get_query(disposition: Option<&str>) -> Vec<(&'static str, &str)> {
    let mut query = vec![("x-id", "GetObject")];
    if let Some(d) = disposition {
        query.push(("response-content-disposition", d));
    }
    query
}

fn presigning(expires: Duration) -> Result<PresigningConfig> {
    PresigningConfig::expires_in(expires)
        .map_err(|e| StoreError::Invalid(format!("presigned URL lifetime {expires:?}: {e}")))
}

/// The parts of a completion in S3's order (ascending numbers), checked: at least one,
/// no number twice, each within 1..=10000.
pub(super) fn completion_parts(key: &str, parts: &[(i32, String)]) -> Result<Vec<(i32, String)>> {
    if parts.is_empty() {
        return Err(StoreError::Invalid(format!(
            "cannot complete upload of {key} without parts"
        )));
    }
    let mut sorted = parts.to_vec();
    sorted.sort_by_key(|(number, _)| *number);
    if sorted.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(StoreError::Invalid(format!(
            "duplicate part number completing {key}"
        )));
    }
    for (number, _) in &sorted {
        check_part_number(*number)?;
    }
    Ok(sorted)
}

fn check_part_number(part_number: i32) -> Result<()> {
    if (1..=S3_MAX_PARTS as i32).contains(&part_number) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "part number {part_number} is outside 1..=10000"
        )))
    }
}

fn check_transfer_size(size: u64, what: &str) -> Result<()> {
    if size > S3_SINGLE_MAX {
        Err(StoreError::Invalid(format!(
            "{what} of {size} bytes exceeds the 5 GiB S3 limit"
        )))
    } else {
        Ok(())
    }
}

fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::Invalid(format!("length {n} is too large")))
}

fn missing(op: &'static str, target: &str, field: &str) -> StoreError {
    StoreError::Other {
        op,
        target: target.to_owned(),
        detail: format!("response has no {field}"),
    }
}

/// A response body that broke off (connection reset, stalled stream).
fn body_error(key: &str, e: &ByteStreamError) -> StoreError {
    StoreError::transient("GetObject", key, DisplayErrorContext(e).to_string())
}

/// Smallest part size, at least `preferred`, that fits `size` in 10,000 parts.
fn part_size_for(size: u64, preferred: u64) -> u64 {
    preferred
        .max(size.div_ceil(S3_MAX_PARTS))
        .clamp(S3_PART_MIN, S3_SINGLE_MAX)
}

/// `(part_number, offset, length)` of each part of an object of `size` bytes.
fn part_ranges(size: u64, part_size: u64) -> Vec<(i32, u64, u64)> {
    (0..size.div_ceil(part_size))
        .map(|i| {
            let offset = i * part_size;
            // At most 10,000 parts by `part_size_for`, so the number fits.
            let number = i32::try_from(i + 1).unwrap_or(i32::MAX);
            (number, offset, part_size.min(size - offset))
        })
        .collect()
}

/// `x-amz-copy-source`: bucket and URL-encoded key.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = format!("{bucket}/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `Content-Disposition: attachment` naming the file, with an ASCII fallback
/// and the exact UTF-8 name (RFC 6266 / RFC 8187).
fn attachment_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() || c == ' ') && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            let _ = write!(encoded, "%{b:02X}");
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedS3;

    #[test]
    fn parts_cover_the_object() {
        assert_eq!(part_ranges(12, 5), vec![(1, 0, 5), (2, 5, 5), (3, 10, 2)]);
        assert_eq!(part_ranges(10, 5), vec![(1, 0, 5), (2, 5, 5)]);
        assert_eq!(part_size_for(1, 64 * MIB), 64 * MIB);
        assert_eq!(part_size_for(1, 1), S3_PART_MIN);
        let huge = 5 * 1024 * GIB;
        assert!(part_size_for(huge, 64 * MIB).saturating_mul(S3_MAX_PARTS) >= huge);
    }

    /// The fast presigner gives exactly the SDK's URLs, for every way of addressing
    /// a bucket and for keys that need encoding.
    #[tokio::test]
    async fn fast_presigned_urls_are_the_sdks() {
        let at = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let expires = Duration::from_secs(900);
        let op = || {
            PresigningConfig::builder()
                .start_time(at)
                .expires_in(expires)
                .build()
                .unwrap()
        };
        let config = |endpoint: Option<&str>, path_style: bool, public: Option<&str>| S3Config {
            endpoint: endpoint.map(str::to_owned),
            region: "eu-west-1".into(),
            bucket: "intake-bucket".into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            force_path_style: path_style,
            public_url: public.map(str::to_owned),
        };
        let configs = [
            config(Some("http://127.0.0.1:9000"), true, None),
            config(Some("https://s3.example.com:8443/"), false, None),
            config(None, false, None),
            config(None, true, None),
            config(
                Some("http://10.0.0.1:3900"),
                true,
                Some("https://files.example.com"),
            ),
        ];
        let keys = [
            "tenant_a/8c1f3e2a-6d2b-4a57-9a53-0c8f4e1b2d3c",
            "a dir/é+x%y~z_(1)!*'.zip",
            "deep/er/key.txt",
        ];
        for cfg in &configs {
            let store = S3Store::new(cfg).unwrap();
            let base = store
                .fast
                .base(|probe| store.sdk_presign_put_any(probe, expires))
                .await
                .unwrap()
                .to_owned();
            for key in keys {
                let sdk = |op: PresigningConfig| async {
                    store
                        .presigner
                        .put_object()
                        .bucket(&store.bucket)
                        .key(key)
                        .presigned(op)
                        .await
                        .unwrap()
                        .uri()
                        .to_owned()
                };
                let fast = store
                    .fast
                    .sign(&base, "PUT", key, &[("x-id", "PutObject")], expires, at)
                    .unwrap();
                assert_eq!(fast, sdk(op()).await, "PUT {key} with {cfg:?}");
                for name in [None, Some("Bericht \"ä\" 1.zip")] {
                    let sdk = store
                        .presigner
                        .get_object()
                        .bucket(&store.bucket)
                        .key(key)
                        .set_response_content_disposition(name.map(attachment_disposition))
                        .presigned(op())
                        .await
                        .unwrap()
                        .uri()
                        .to_owned();
                    let disposition = name.map(attachment_disposition);
                    let query = get_query(disposition.as_deref());
                    let fast = store
                        .fast
                        .sign(&base, "GET", key, &query, expires, at)
                        .unwrap();
                    assert_eq!(fast, sdk, "GET {key} ({name:?}) with {cfg:?}");
                }
            }
        }
    }

    #[test]
    fn copy_source_encodes_the_key() {
        assert_eq!(
            copy_source("b", "a dir/é+x.zip"),
            "b/a%20dir/%C3%A9%2Bx.zip"
        );
    }

    #[test]
    fn disposition_has_fallback_and_utf8_name() {
        assert_eq!(
            attachment_disposition("Bericht \"ä\".zip"),
            "attachment; filename=\"Bericht ___.zip\"; filename*=UTF-8''Bericht%20%22%C3%A4%22.zip"
        );
    }

    /// Multipart `put_file` and `copy` are exercised with small limits; the
    /// real ones only kick in above hundreds of MiB.
    #[tokio::test]
    async fn big_transfers_go_multipart() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let s3 = EmbeddedS3::start(
            dir.path().join("s3"),
            "127.0.0.1:0".parse()?,
            "unit-access",
            "unit-secret",
        )
        .await?;
        let store = S3Store::connect(&S3Config {
            endpoint: Some(s3.endpoint()),
            region: "us-east-1".into(),
            bucket: "unit".into(),
            access_key_id: "unit-access".into(),
            secret_access_key: "unit-secret".into(),
            force_path_style: true,
            public_url: None,
        })
        .await?
        .with_limits(Limits {
            single_put_max: 6 * MIB,
            put_part_size: 5 * MIB,
            single_copy_max: 6 * MIB,
            copy_part_size: 5 * MIB,
        });

        let data: Vec<u8> = (0..12 * MIB).map(|i| (i % 251) as u8).collect();
        let src = dir.path().join("src.bin");
        tokio::fs::write(&src, &data).await?;

        store.put_file("big/a", &src, "application/zip").await?;
        let meta = store.head("big/a").await?.expect("uploaded");
        assert_eq!(meta.size, data.len() as u64);
        assert!(
            meta.etag.as_deref().unwrap_or_default().ends_with("-3\""),
            "{meta:?}"
        );

        store.copy("big/a", "big/b").await?;
        let meta = store.head("big/b").await?.expect("copied");
        assert_eq!(meta.size, data.len() as u64);
        assert_eq!(meta.content_type.as_deref(), Some("application/zip"));

        let out = dir.path().join("out.bin");
        assert_eq!(store.get_to_file("big/b", &out).await?, data.len() as u64);
        assert!(tokio::fs::read(&out).await? == data);
        s3.shutdown().await;
        Ok(())
    }
}
