//! The embedded store as the server itself uses it: every server-side call goes
//! straight to its storage ([`Disk`]), with the same keys, answers and durability as
//! the same call over the S3 endpoint, but without SigV4, HTTP and loopback; URLs for
//! clients are still presigned for the endpoint, which keeps serving them.

use std::path::Path;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::disk::{Attrs, Disk, DiskError, Staged, Sums};
use crate::store::{Checksum, ObjectMeta, ObjectStore, Result, S3Store, StoreError};

/// How many keys one listing page holds.
const PAGE: usize = 1000;
/// Read size when a local file is stored.
const READ_CHUNK: usize = 256 * 1024;

/// [`ObjectStore`] on the embedded store's storage; presigning through `urls`.
pub struct DirectStore {
    urls: S3Store,
    disk: Disk,
    bucket: String,
}

impl DirectStore {
    /// Server-side calls on `disk`'s `bucket` (created when missing); URLs from `urls`,
    /// which must address the endpoint serving the same `disk`.
    pub async fn new(urls: S3Store, disk: Disk, bucket: &str) -> Result<DirectStore> {
        match disk.create_bucket(bucket).await {
            Ok(()) | Err(DiskError::BucketExists) => {}
            Err(e) => return Err(store_err("CreateBucket", bucket, e)),
        }
        Ok(DirectStore {
            urls,
            disk,
            bucket: bucket.to_owned(),
        })
    }

    async fn commit(&self, op: &'static str, key: &str, staged: Staged, ct: &str) -> Result<()> {
        let attrs = Attrs {
            content_type: Some(ct.to_owned()),
            ..Attrs::default()
        };
        self.disk
            .commit_object(&self.bucket, key, staged, &attrs, &Sums::default(), false)
            .await
            .map_err(|e| store_err(op, key, e))?;
        Ok(())
    }

    /// Every key under `prefix`, with its last write, a page at a time.
    async fn keys_under(
        &self,
        op: &'static str,
        prefix: &str,
    ) -> Result<Vec<(String, SystemTime)>> {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let page = self
                .disk
                .list(&self.bucket, prefix, &after, PAGE)
                .await
                .map_err(|e| store_err(op, prefix, e))?;
            let full = page.len() == PAGE;
            all.extend(page.into_iter().map(|o| (o.key, o.modified)));
            match all.last() {
                Some((last, _)) if full => after.clone_from(last),
                _ => return Ok(all),
            }
        }
    }
}

/// The S3 layer's answer for a storage failure, as the SDK would classify it: a missing
/// bucket, key or upload is `NotFound`, a refused request `Rejected` (400), a failing disk
/// or index `Transient` (the endpoint answers 500 for those). Counted as the SDK path
/// counts its failures.
fn store_err(op: &'static str, target: &str, e: DiskError) -> StoreError {
    let e = classify(op, target, e);
    crate::telemetry::s3_error(op, e.kind());
    e
}

fn classify(op: &'static str, target: &str, e: DiskError) -> StoreError {
    let rejected = |code: &str| StoreError::Rejected {
        op,
        target: target.to_owned(),
        status: 400,
        code: code.to_owned(),
        message: e.to_string(),
    };
    match &e {
        DiskError::NoSuchBucket | DiskError::NoSuchKey | DiskError::NoSuchUpload => {
            StoreError::NotFound {
                op,
                target: target.to_owned(),
            }
        }
        DiskError::InvalidPart(_) => rejected("InvalidPart"),
        DiskError::InvalidPartOrder => rejected("InvalidPartOrder"),
        DiskError::EntityTooSmall(_) => rejected("EntityTooSmall"),
        DiskError::InvalidRange => rejected("InvalidRange"),
        DiskError::Precondition(_) => rejected("PreconditionFailed"),
        DiskError::BucketExists | DiskError::BucketNotEmpty => rejected("BucketNotEmpty"),
        DiskError::Io(_) | DiskError::Db(_) => StoreError::transient(op, target, e.to_string()),
        DiskError::Corrupt(_) => StoreError::Other {
            op,
            target: target.to_owned(),
            detail: e.to_string(),
        },
    }
}

fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

#[async_trait]
impl ObjectStore for DirectStore {
    async fn presign_put(
        &self,
        key: &str,
        len: u64,
        ct: &str,
        expires: Duration,
    ) -> Result<String> {
        self.urls.presign_put(key, len, ct, expires).await
    }

    async fn presign_put_any(&self, key: &str, expires: Duration) -> Result<String> {
        self.urls.presign_put_any(key, expires).await
    }

    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String> {
        let attrs = Attrs {
            content_type: Some(content_type.to_owned()),
            ..Attrs::default()
        };
        self.disk
            .create_upload(&self.bucket, key, &attrs)
            .await
            .map_err(|e| store_err("CreateMultipartUpload", key, e))
    }

    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        len: u64,
        expires: Duration,
    ) -> Result<String> {
        self.urls
            .presign_part(key, upload_id, part_number, len, expires)
            .await
    }

    async fn presign_put_checked(
        &self,
        key: &str,
        len: u64,
        ct: &str,
        checksum: &Checksum,
        expires: Duration,
    ) -> Result<String> {
        self.urls
            .presign_put_checked(key, len, ct, checksum, expires)
            .await
    }

    async fn presign_part_checked(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        len: u64,
        checksum: &Checksum,
        expires: Duration,
    ) -> Result<String> {
        self.urls
            .presign_part_checked(key, upload_id, part_number, len, checksum, expires)
            .await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<()> {
        let sorted = crate::store::s3::completion_parts(key, parts)?;
        self.disk
            .complete(&self.bucket, key, upload_id, &sorted)
            .await
            .map_err(|e| store_err("CompleteMultipartUpload", key, e))?;
        Ok(())
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<(i32, String, u64)>> {
        let parts = self
            .disk
            .list_parts(&self.bucket, key, upload_id)
            .await
            .map_err(|e| store_err("ListParts", key, e))?;
        Ok(parts
            .into_iter()
            .map(|p| (p.number, quoted(&p.md5), p.size))
            .collect())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.disk
            .abort(&self.bucket, key, upload_id)
            .await
            .map_err(|e| store_err("AbortMultipartUpload", key, e))
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Option<Vec<(String, String)>>> {
        let uploads = self
            .disk
            .list_uploads(&self.bucket, prefix)
            .await
            .map_err(|e| store_err("ListMultipartUploads", prefix, e))?;
        Ok(Some(uploads.into_iter().map(|u| (u.key, u.id)).collect()))
    }

    async fn list_older_than(&self, prefix: &str, before: SystemTime) -> Result<Vec<String>> {
        // S3 reports times in whole seconds: compare as the SDK path does.
        let secs = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        Ok(self
            .keys_under("ListObjectsV2", prefix)
            .await?
            .into_iter()
            .filter(|(_, at)| secs(*at) < secs(before))
            .map(|(key, _)| key)
            .collect())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let info = self
            .disk
            .head(&self.bucket, key)
            .await
            .map_err(|e| store_err("HeadObject", key, e))?;
        if info.is_none() {
            // Over HTTP this is a 404, which the SDK path counts.
            crate::telemetry::s3_error("HeadObject", "not_found");
        }
        Ok(info.map(|o| ObjectMeta {
            size: o.size,
            content_type: o.attrs.content_type,
            etag: Some(quoted(&o.etag)),
        }))
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
        let range = s3s::dto::Range::Int {
            first: start,
            last: Some(start + len - 1),
        };
        let (info, _, mut body) = match self.disk.read(&self.bucket, key, Some(range)).await {
            // The precondition comes before the range (RFC 9110, 13.2.2): a range
            // past the end of a replaced object is the replacement's fault.
            Err(DiskError::InvalidRange) if etag.is_some() => {
                let now = self.disk.head(&self.bucket, key).await;
                if now.is_ok_and(|o| o.map(|o| quoted(&o.etag)).as_deref() != etag) {
                    return Err(StoreError::changed(key));
                }
                return Err(store_err("GetObject", key, DiskError::InvalidRange));
            }
            read => read.map_err(|e| store_err("GetObject", key, e))?,
        };
        if etag.is_some_and(|want| want != quoted(&info.etag)) {
            return Err(StoreError::changed(key));
        }
        let mut out = bytes::BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| StoreError::transient("GetObject", key, e.to_string()))?;
            out.extend_from_slice(&chunk);
        }
        StoreError::exact_range(key, start, len, out.freeze())
    }

    async fn get_to_file(&self, key: &str, path: &Path) -> Result<u64> {
        let (info, _, mut body) = self
            .disk
            .read(&self.bucket, key, None)
            .await
            .map_err(|e| store_err("GetObject", key, e))?;
        let io = |e| StoreError::io("GetObject", path, e);
        let result = async {
            let mut file = tokio::fs::File::create(path).await.map_err(io)?;
            let mut written = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(io)?;
                file.write_all(&chunk).await.map_err(io)?;
                written += chunk.len() as u64;
            }
            file.flush().await.map_err(io)?;
            if written != info.size {
                return Err(StoreError::transient(
                    "GetObject",
                    key,
                    format!("body ended after {written} of {} bytes", info.size),
                ));
            }
            Ok(written)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(path).await;
        }
        result
    }

    async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<()> {
        let io = |e| StoreError::io("PutObject", path, e);
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut staging = self.disk.staging(false);
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = file.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            staging
                .write(&buf[..n])
                .await
                .map_err(|e| store_err("PutObject", key, e.into()))?;
        }
        let staged = staging
            .finish()
            .await
            .map_err(|e| store_err("PutObject", key, e.into()))?;
        self.commit("PutObject", key, staged, content_type).await
    }

    async fn put_bytes(&self, key: &str, body: Bytes, content_type: &str) -> Result<()> {
        let staged = self
            .disk
            .stage_bytes(&body)
            .await
            .map_err(|e| store_err("PutObject", key, e.into()))?;
        self.commit("PutObject", key, staged, content_type).await
    }

    async fn copy(&self, src: &str, dst: &str) -> Result<()> {
        self.disk
            .copy(&self.bucket, src, &self.bucket, dst, None)
            .await
            .map_err(|e| store_err("CopyObject", src, e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.disk
            .delete(&self.bucket, key)
            .await
            .map_err(|e| store_err("DeleteObject", key, e))
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        if prefix.is_empty() {
            return Err(StoreError::Invalid(
                "refusing to delete with an empty prefix (the whole bucket)".into(),
            ));
        }
        let keys = self.keys_under("ListObjectsV2", prefix).await?;
        for (key, _) in &keys {
            self.delete(key).await?;
        }
        Ok(keys.len() as u64)
    }

    async fn presign_get(
        &self,
        key: &str,
        expires: Duration,
        download_name: Option<&str>,
    ) -> Result<String> {
        self.urls.presign_get(key, expires, download_name).await
    }

    async fn ping(&self) -> Result<()> {
        match self.disk.bucket_exists(&self.bucket).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(store_err(
                "HeadBucket",
                &self.bucket,
                DiskError::NoSuchBucket,
            )),
            Err(e) => Err(store_err("HeadBucket", &self.bucket, e)),
        }
    }
}
