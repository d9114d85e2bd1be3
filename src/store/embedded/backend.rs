//! The embedded endpoint's storage: `s3s-fs`, plus what it lacks for uploads.
//!
//! `s3s-fs` 0.14 accepts any ETag in CompleteMultipartUpload, reports no
//! ETags and no order in ListParts, and destroys the upload when completion
//! fails half-way (e.g. a too-small part). Real S3 does none of this, and
//! the upload flow depends on it, so this layer records each part's ETag and
//! size in a sidecar directory and checks a completion against it before
//! `s3s-fs` touches anything. Every other operation is passed through; the
//! ones not listed here answer `NotImplemented`.
//!
//! Layout under the root, next to `s3s-fs`'s own files:
//! `.intake-upload-<upload id>/<part number>` holds `<md5 hex> <size>`.
//! The names depend on `s3s-fs` 0.14 internals (`.upload-<id>.json` marks a
//! live upload, `.upload_id-<id>.part-<n>` holds a part): re-check them when
//! upgrading `s3s-fs` (tests/store.rs covers the multipart paths).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::{StreamExt as _, TryStreamExt as _};

use async_trait::async_trait;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use s3s_fs::FileSystem;
use tracing::{debug, warn};
use uuid::Uuid;

/// S3's minimum size for every part but the last.
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_PART_NUMBER: i32 = 10_000;
/// Parts per ListParts page when the client does not ask for fewer.
const DEFAULT_MAX_PARTS: i32 = 1000;

/// `s3s-fs` with multipart bookkeeping.
#[derive(Debug)]
pub(super) struct Backend {
    fs: FileSystem,
    /// Same canonical root `s3s-fs` resolves its paths against.
    root: PathBuf,
}

/// What the sidecar remembers about a stored part.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartRecord {
    number: i32,
    md5: String,
    size: u64,
    modified: SystemTime,
}

impl Backend {
    /// Opens (and cleans temp files of) the store rooted at an existing `root`.
    pub(super) fn new(root: &Path) -> anyhow::Result<Self> {
        let root = root.canonicalize()?;
        let fs = FileSystem::new(&root).map_err(|e| anyhow::anyhow!("s3s-fs: {e:?}"))?;
        Ok(Self { fs, root })
    }

    fn upload_marker(&self, id: Uuid) -> PathBuf {
        self.root.join(format!(".upload-{id}.json"))
    }

    fn part_file(&self, id: Uuid, number: i32) -> PathBuf {
        self.root.join(format!(".upload_id-{id}.part-{number}"))
    }

    fn sidecar_dir(&self, id: Uuid) -> PathBuf {
        self.root.join(format!(".intake-upload-{id}"))
    }

    /// Fails with `NoSuchUpload` unless `upload_id` names a live upload.
    async fn live_upload(&self, upload_id: &str) -> S3Result<Uuid> {
        let id = Uuid::parse_str(upload_id).map_err(|_| s3_error!(NoSuchUpload))?;
        match tokio::fs::try_exists(self.upload_marker(id)).await {
            Ok(true) => Ok(id),
            Ok(false) => Err(s3_error!(NoSuchUpload)),
            Err(e) => Err(s3_error!(e, InternalError)),
        }
    }

    /// Remembers the ETag `s3s-fs` gave a freshly written part.
    async fn record_part(&self, id: Uuid, number: i32, etag: Option<&ETag>) -> S3Result<()> {
        let md5 = etag
            .map(|e| e.value().to_ascii_lowercase())
            .ok_or_else(|| s3_error!(InternalError, "part stored without ETag"))?;
        let size = tokio::fs::metadata(self.part_file(id, number))
            .await
            .map_err(|e| s3_error!(e, InternalError))?
            .len();
        let dir = self.sidecar_dir(id);
        let write = async {
            tokio::fs::create_dir_all(&dir).await?;
            // Write-then-rename so a reader never sees half a record.
            let tmp = dir.join(format!("{number}.{}.tmp", Uuid::new_v4()));
            tokio::fs::write(&tmp, format!("{md5} {size}")).await?;
            tokio::fs::rename(&tmp, dir.join(number.to_string())).await
        };
        write.await.map_err(|e| s3_error!(e, InternalError))
    }

    /// Every recorded part of an upload, by part number.
    async fn recorded_parts(&self, id: Uuid) -> S3Result<Vec<PartRecord>> {
        let read = async {
            let mut parts = Vec::new();
            let mut dir = match tokio::fs::read_dir(self.sidecar_dir(id)).await {
                Ok(dir) => dir,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(parts),
                Err(e) => return Err(e),
            };
            while let Some(entry) = dir.next_entry().await? {
                let Some(number) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<i32>().ok())
                else {
                    continue; // a temp file
                };
                let text = tokio::fs::read_to_string(entry.path()).await?;
                let modified = entry.metadata().await?.modified()?;
                let mut fields = text.split_whitespace();
                let (Some(md5), Some(Ok(size))) = (fields.next(), fields.next().map(str::parse))
                else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("corrupt part record {}", entry.path().display()),
                    ));
                };
                parts.push(PartRecord {
                    number,
                    md5: md5.to_owned(),
                    size,
                    modified,
                });
            }
            parts.sort_by_key(|p| p.number);
            Ok(parts)
        };
        read.await
            .map_err(|e: io::Error| s3_error!(e, InternalError))
    }

    /// Drops the sidecar and any part file `s3s-fs` left behind.
    async fn forget_upload(&self, id: Uuid, recorded: &[PartRecord]) {
        for part in recorded {
            remove_if_exists(&self.part_file(id, part.number)).await;
        }
        if let Err(e) = tokio::fs::remove_dir_all(self.sidecar_dir(id)).await
            && e.kind() != io::ErrorKind::NotFound
        {
            warn!(upload_id = %id, error = %e, "could not remove multipart sidecar");
        }
    }
}

async fn remove_if_exists(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await
        && e.kind() != io::ErrorKind::NotFound
    {
        warn!(path = %path.display(), error = %e, "could not remove file");
    }
}

/// The checksum a PUT declared (`x-amz-checksum-crc32c` / `-sha256`), base64.
///
/// `s3s-fs` 0.14 checks none on UploadPart, and on PutObject only after the
/// object is in place; real S3 (and Garage) refuse the request and keep nothing.
/// So this layer hashes the body as it streams and fails the stream at its end
/// on a mismatch: `s3s-fs` then drops its temp file, and the request is answered
/// 400 `BadDigest`.
#[derive(Debug, Clone)]
enum Expected {
    Crc32c(String),
    Sha256(String),
}

impl Expected {
    fn of(crc32c: Option<&str>, sha256: Option<&str>) -> Option<Expected> {
        match (crc32c, sha256) {
            (Some(c), _) => Some(Expected::Crc32c(c.to_owned())),
            (None, Some(s)) => Some(Expected::Sha256(s.to_owned())),
            (None, None) => None,
        }
    }
}

/// Running digest of a body.
enum Digest {
    Crc32c(u32),
    Sha256(sha2::Sha256),
}

impl Digest {
    fn update(&mut self, data: &[u8]) {
        match self {
            Digest::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
            Digest::Sha256(h) => sha2::Digest::update(h, data),
        }
    }

    fn matches(self, expected: &Expected) -> bool {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        match (self, expected) {
            (Digest::Crc32c(c), Expected::Crc32c(e)) => b64.encode(c.to_be_bytes()) == *e,
            (Digest::Sha256(h), Expected::Sha256(e)) => b64.encode(sha2::Digest::finalize(h)) == *e,
            _ => false,
        }
    }
}

/// Set when a body did not match its checksum.
#[derive(Debug, Clone, Default)]
struct Refused(Arc<AtomicBool>);

impl Refused {
    /// `BadDigest` if the body was refused, else `other` (the real failure).
    fn or(&self, other: s3s::S3Error) -> s3s::S3Error {
        if self.0.load(Ordering::SeqCst) {
            s3_error!(
                BadDigest,
                "The checksum you specified did not match the calculated checksum."
            )
        } else {
            other
        }
    }
}

/// `body`, hashed on its way, ending in an error when it does not match.
fn verified(body: Option<StreamingBlob>, expected: Expected) -> (Option<StreamingBlob>, Refused) {
    let refused = Refused::default();
    let Some(body) = body else {
        return (None, refused);
    };
    let digest = Arc::new(Mutex::new(match expected {
        Expected::Crc32c(_) => Digest::Crc32c(0),
        Expected::Sha256(_) => Digest::Sha256(Default::default()),
    }));
    let hashing = digest.clone();
    let data = body.map_err(io::Error::other).inspect_ok(move |chunk| {
        hashing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(chunk);
    });
    let flag = refused.clone();
    let end = futures::stream::once(async move {
        let digest = std::mem::replace(
            &mut *digest.lock().unwrap_or_else(|e| e.into_inner()),
            Digest::Crc32c(0),
        );
        if digest.matches(&expected) {
            None
        } else {
            flag.0.store(true, Ordering::SeqCst);
            Some(Err(io::Error::other("checksum mismatch")))
        }
    })
    .filter_map(futures::future::ready);
    (Some(StreamingBlob::wrap(data.chain(end))), refused)
}

fn check_part_number(number: i32) -> S3Result<()> {
    if (1..=MAX_PART_NUMBER).contains(&number) {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ))
    }
}

/// Checks a completion request against the recorded parts, as S3 does.
fn check_completion(requested: &[CompletedPart], recorded: &[PartRecord]) -> S3Result<()> {
    if requested.is_empty() {
        return Err(s3_error!(InvalidPart, "You must specify at least one part"));
    }
    for (index, part) in requested.iter().enumerate() {
        let number = part
            .part_number
            .ok_or_else(|| s3_error!(InvalidPart, "missing part number"))?;
        // s3s-fs only assembles parts numbered 1, 2, 3, ... (S3 allows gaps).
        if usize::try_from(number).ok() != Some(index + 1) {
            return Err(s3_error!(
                InvalidPartOrder,
                "parts must be numbered consecutively from 1"
            ));
        }
        let record = recorded
            .iter()
            .find(|r| r.number == number)
            .ok_or_else(|| s3_error!(InvalidPart, "part {number} was not uploaded"))?;
        let given = part.e_tag.as_ref().map(ETag::value).unwrap_or_default();
        if !given.eq_ignore_ascii_case(&record.md5) {
            return Err(s3_error!(
                InvalidPart,
                "part {number}: ETag does not match the stored part"
            ));
        }
        let is_last = index + 1 == requested.len();
        if !is_last && record.size < MIN_PART_SIZE {
            return Err(s3_error!(
                EntityTooSmall,
                "part {number} is smaller than 5 MiB"
            ));
        }
    }
    Ok(())
}

#[async_trait]
impl S3 for Backend {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.fs.create_bucket(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.fs.list_buckets(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.fs.delete_bucket(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.fs.get_bucket_location(req).await
    }

    async fn put_object(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let expected = Expected::of(
            req.input.checksum_crc32c.as_deref(),
            req.input.checksum_sha256.as_deref(),
        );
        let Some(expected) = expected else {
            return self.fs.put_object(req).await;
        };
        let (body, refused) = verified(req.input.body.take(), expected);
        req.input.body = body;
        self.fs.put_object(req).await.map_err(|e| refused.or(e))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        // s3s-fs ignores the response-* overrides of presigned downloads.
        let disposition = req.input.response_content_disposition.clone();
        let content_type = req.input.response_content_type.clone();
        let mut resp = self.fs.get_object(req).await?;
        if disposition.is_some() {
            resp.output.content_disposition = disposition;
        }
        if content_type.is_some() {
            resp.output.content_type = content_type;
        }
        Ok(resp)
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.fs.head_object(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.fs.copy_object(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.fs.delete_object(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.fs.delete_objects(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.fs.list_objects(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.fs.list_objects_v2(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.fs.create_multipart_upload(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        check_part_number(req.input.part_number)?;
        let id = self.live_upload(&req.input.upload_id).await?;
        let number = req.input.part_number;
        let resp = match Expected::of(
            req.input.checksum_crc32c.as_deref(),
            req.input.checksum_sha256.as_deref(),
        ) {
            Some(expected) => {
                let mut req = req;
                let (body, refused) = verified(req.input.body.take(), expected);
                req.input.body = body;
                self.fs.upload_part(req).await.map_err(|e| refused.or(e))?
            }
            None => self.fs.upload_part(req).await?,
        };
        self.record_part(id, number, resp.output.e_tag.as_ref())
            .await?;
        Ok(resp)
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        check_part_number(req.input.part_number)?;
        let id = self.live_upload(&req.input.upload_id).await?;
        let number = req.input.part_number;
        let resp = self.fs.upload_part_copy(req).await?;
        let etag = resp
            .output
            .copy_part_result
            .as_ref()
            .and_then(|r| r.e_tag.as_ref());
        self.record_part(id, number, etag).await?;
        Ok(resp)
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let id = self.live_upload(&input.upload_id).await?;
        let max_parts = input
            .max_parts
            .unwrap_or(DEFAULT_MAX_PARTS)
            .clamp(1, DEFAULT_MAX_PARTS);
        let marker = input.part_number_marker.unwrap_or(0);
        let after_marker: Vec<PartRecord> = self
            .recorded_parts(id)
            .await?
            .into_iter()
            .filter(|p| p.number > marker)
            .collect();
        let page_len = usize::try_from(max_parts).unwrap_or(1);
        let is_truncated = after_marker.len() > page_len;
        let page: Vec<Part> = after_marker
            .into_iter()
            .take(page_len)
            .map(|p| Part {
                part_number: Some(p.number),
                e_tag: Some(ETag::Strong(p.md5)),
                size: i64::try_from(p.size).ok(),
                last_modified: Some(Timestamp::from(p.modified)),
                ..Default::default()
            })
            .collect();
        let next_marker = page.last().and_then(|p| p.part_number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max_parts),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: if is_truncated { next_marker } else { None },
            is_truncated: Some(is_truncated),
            parts: Some(page),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let id = self.live_upload(&req.input.upload_id).await?;
        let recorded = self.recorded_parts(id).await?;
        let requested = req
            .input
            .multipart_upload
            .as_ref()
            .and_then(|m| m.parts.as_deref())
            .unwrap_or_default();
        check_completion(requested, &recorded)?;
        let result = self.fs.complete_multipart_upload(req).await;
        // s3s-fs forgets the upload as soon as it starts assembling, so
        // whatever the outcome the bookkeeping is now stale.
        if !matches!(
            tokio::fs::try_exists(self.upload_marker(id)).await,
            Ok(true)
        ) {
            self.forget_upload(id, &recorded).await;
        }
        debug!(upload_id = %id, ok = result.is_ok(), "multipart completion");
        result
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let id = self.live_upload(&req.input.upload_id).await?;
        let recorded = self.recorded_parts(id).await?;
        let resp = self.fs.abort_multipart_upload(req).await?;
        self.forget_upload(id, &recorded).await;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(number: i32, md5: &str, size: u64) -> PartRecord {
        PartRecord {
            number,
            md5: md5.into(),
            size,
            modified: SystemTime::UNIX_EPOCH,
        }
    }

    fn part(number: i32, etag: &str) -> CompletedPart {
        CompletedPart {
            part_number: Some(number),
            e_tag: Some(ETag::Strong(etag.into())),
            ..Default::default()
        }
    }

    fn code(r: S3Result<()>) -> String {
        r.err()
            .map(|e| e.code().as_str().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn completion_is_checked_against_recorded_parts() {
        let recorded = [record(1, "aa", MIN_PART_SIZE), record(2, "bb", 1)];
        assert!(check_completion(&[part(1, "AA"), part(2, "bb")], &recorded).is_ok());
        assert_eq!(
            code(check_completion(&[part(1, "aa"), part(2, "cc")], &recorded)),
            "InvalidPart"
        );
        assert_eq!(
            code(check_completion(&[part(2, "bb")], &recorded)),
            "InvalidPartOrder"
        );
        assert_eq!(
            code(check_completion(&[part(1, "aa"), part(3, "bb")], &recorded)),
            "InvalidPartOrder"
        );
        assert_eq!(code(check_completion(&[], &recorded)), "InvalidPart");
        let small = [record(1, "aa", 1), record(2, "bb", 1)];
        assert_eq!(
            code(check_completion(&[part(1, "aa"), part(2, "bb")], &small)),
            "EntityTooSmall"
        );
    }
}
