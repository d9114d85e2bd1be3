//! The S3 operations of the embedded endpoint, on intake's own storage ([`Disk`]).
//!
//! `s3s` parses requests, checks SigV4 (headers and presigned queries) and decodes
//! `aws-chunked` bodies; this file maps exactly the operations intake, its uploader
//! and browsers use onto [`Disk`]: buckets (create, head, list, delete, location),
//! PutObject, GetObject (ranges, `response-content-*` overrides), HeadObject,
//! CopyObject, DeleteObject(s), ListObjects(V2), and the multipart set (create,
//! UploadPart, UploadPartCopy, ListParts, ListMultipartUploads, Complete, Abort).
//! Every other operation answers `NotImplemented`.
//!
//! Checksums are checked as S3 checks them: `Content-MD5` and every
//! `x-amz-checksum-*` value given in headers or in `aws-chunked` trailers is
//! computed over the body as it streams; on a mismatch the request is answered
//! `BadDigest` and nothing of the body is kept.

use std::time::SystemTime;

use async_trait::async_trait;
use futures::StreamExt as _;
use s3s::checksum::ChecksumHasher;
use s3s::dto::*;
use s3s::{S3, S3Error, S3Request, S3Response, S3Result, s3_error};
use tracing::error;

use super::disk::{self, Attrs, Disk, DiskError, ObjectInfo, Staged, Sums};

/// Parts per ListParts page when the client does not ask for fewer.
const DEFAULT_MAX_PARTS: i32 = 1000;
/// Keys per ListObjects page when the client does not ask for fewer.
const DEFAULT_MAX_KEYS: i32 = 1000;
const MAX_PART_NUMBER: i32 = 10_000;

/// The embedded endpoint's S3 implementation.
#[derive(Debug, Clone)]
pub(crate) struct Backend {
    disk: Disk,
}

impl Backend {
    pub(crate) fn new(disk: Disk) -> Self {
        Self { disk }
    }
}

fn s3_err(e: DiskError) -> S3Error {
    match e {
        DiskError::NoSuchBucket => s3_error!(NoSuchBucket),
        DiskError::BucketExists => s3_error!(BucketAlreadyOwnedByYou),
        DiskError::BucketNotEmpty => s3_error!(BucketNotEmpty),
        DiskError::NoSuchKey => s3_error!(NoSuchKey),
        DiskError::NoSuchUpload => s3_error!(NoSuchUpload),
        DiskError::InvalidPart(why) => s3_error!(InvalidPart, "{why}"),
        DiskError::InvalidPartOrder => s3_error!(
            InvalidPartOrder,
            "The list of parts was not in ascending order."
        ),
        DiskError::EntityTooSmall(n) => s3_error!(
            EntityTooSmall,
            "Part {n}: your proposed upload is smaller than the minimum allowed size (5 MiB)."
        ),
        DiskError::Precondition(why) => s3_error!(PreconditionFailed, "{why}"),
        DiskError::InvalidRange => s3_error!(InvalidRange),
        e @ (DiskError::Io(_) | DiskError::Db(_) | DiskError::Corrupt(_)) => {
            error!(error = %e, "embedded S3: storage failed");
            s3_error!(InternalError, "the embedded store failed: {e}")
        }
    }
}

fn timestamp(t: SystemTime) -> Timestamp {
    Timestamp::from(t)
}

fn attrs_of(
    content_type: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    metadata: Option<Metadata>,
) -> Attrs {
    Attrs {
        content_type,
        content_disposition,
        content_encoding,
        content_language,
        cache_control,
        metadata: metadata.unwrap_or_default().into_iter().collect(),
    }
}

fn metadata_of(attrs: &Attrs) -> Option<Metadata> {
    (!attrs.metadata.is_empty()).then(|| attrs.metadata.clone().into_iter().collect())
}

/// The checksums a request declares, by header or (for `aws-chunked` bodies) by the
/// `x-amz-trailer` header naming the trailer that will carry one.
#[derive(Default)]
struct Declared {
    sums: Sums,
    trailer: Option<String>,
    content_md5: Option<String>,
}

impl Declared {
    fn hasher(&self, algorithm: Option<&ChecksumAlgorithm>) -> ChecksumHasher {
        let mut h = ChecksumHasher::default();
        let trailer = self.trailer.as_deref().unwrap_or_default();
        let algorithm = algorithm.map(ChecksumAlgorithm::as_str).unwrap_or_default();
        let wants = |given: &Option<String>, name: &str, alg: &str| {
            given.is_some() || trailer == name || algorithm == alg
        };
        let s = &self.sums;
        use ChecksumAlgorithm as A;
        on(
            &mut h.crc32,
            wants(&s.crc32, "x-amz-checksum-crc32", A::CRC32),
        );
        on(
            &mut h.crc32c,
            wants(&s.crc32c, "x-amz-checksum-crc32c", A::CRC32C),
        );
        on(&mut h.sha1, wants(&s.sha1, "x-amz-checksum-sha1", A::SHA1));
        on(
            &mut h.sha256,
            wants(&s.sha256, "x-amz-checksum-sha256", A::SHA256),
        );
        on(
            &mut h.crc64nvme,
            wants(&s.crc64nvme, "x-amz-checksum-crc64nvme", A::CRC64NVME),
        );
        h
    }
}

/// [`receive`] for a PutObject or UploadPart input (the same checksum fields).
macro_rules! receive_body {
    ($disk:expr, $input:ident, $trailer:expr, $trailers:expr, $files_only:expr) => {{
        let declared = Declared {
            sums: Sums {
                crc32: $input.checksum_crc32,
                crc32c: $input.checksum_crc32c,
                sha1: $input.checksum_sha1,
                sha256: $input.checksum_sha256,
                crc64nvme: $input.checksum_crc64nvme,
            },
            trailer: $trailer,
            content_md5: $input.content_md5,
        };
        let algorithm = $input.checksum_algorithm.as_ref();
        receive(
            &$disk,
            $input.body,
            $files_only,
            declared,
            algorithm,
            $trailers,
        )
        .await?
    }};
}

/// Turns on the hasher in `slot` when `wanted`.
fn on<T: Default>(slot: &mut Option<T>, wanted: bool) {
    if wanted {
        *slot = Some(T::default());
    }
}

/// Streams a request body into the store, hashing it; checks every declared checksum
/// and returns the body staged (not yet reachable) with the checksums to keep.
async fn receive(
    disk: &Disk,
    body: Option<StreamingBlob>,
    files_only: bool,
    declared: Declared,
    algorithm: Option<&ChecksumAlgorithm>,
    trailers: Option<s3s::TrailingHeaders>,
) -> S3Result<(Staged, Sums)> {
    let mut body = body.ok_or_else(|| s3_error!(IncompleteBody))?;
    let mut hasher = declared.hasher(algorithm);
    let mut staging = disk.staging(files_only);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| s3_error!(IncompleteBody, "reading the body: {e}"))?;
        hasher.update(&chunk);
        staging.write(&chunk).await.map_err(|e| s3_err(e.into()))?;
    }
    let staged = staging.finish().await.map_err(|e| s3_err(e.into()))?;
    let mut expected = declared.sums;
    if let Some(headers) = trailers.and_then(|t| t.take()) {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        expected.crc32 = expected.crc32.or_else(|| get("x-amz-checksum-crc32"));
        expected.crc32c = expected.crc32c.or_else(|| get("x-amz-checksum-crc32c"));
        expected.sha1 = expected.sha1.or_else(|| get("x-amz-checksum-sha1"));
        expected.sha256 = expected.sha256.or_else(|| get("x-amz-checksum-sha256"));
        expected.crc64nvme = expected
            .crc64nvme
            .or_else(|| get("x-amz-checksum-crc64nvme"));
    }
    let got = hasher.finalize();
    let pairs = [
        ("CRC32", &expected.crc32, &got.checksum_crc32),
        ("CRC32C", &expected.crc32c, &got.checksum_crc32c),
        ("SHA1", &expected.sha1, &got.checksum_sha1),
        ("SHA256", &expected.sha256, &got.checksum_sha256),
        ("CRC64NVME", &expected.crc64nvme, &got.checksum_crc64nvme),
    ];
    for (name, want, have) in pairs {
        if want.is_some() && want != have {
            return Err(s3_error!(
                BadDigest,
                "The {name} you specified did not match the calculated checksum."
            ));
        }
    }
    if let Some(md5) = declared.content_md5 {
        use base64::Engine as _;
        let given = base64::engine::general_purpose::STANDARD
            .decode(md5.as_bytes())
            .map_err(|_| s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid."))?;
        if hex::encode(given) != staged.md5_hex() {
            return Err(s3_error!(
                BadDigest,
                "The Content-MD5 you specified did not match what we received."
            ));
        }
    }
    Ok((staged, expected))
}

fn trailer_of(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("x-amz-trailer")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
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

fn object_entry(o: &ObjectInfo) -> Object {
    Object {
        key: Some(o.key.clone()),
        size: Some(i64::try_from(o.size).unwrap_or(i64::MAX)),
        e_tag: Some(ETag::Strong(o.etag.clone())),
        last_modified: Some(timestamp(o.modified)),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

/// A listing page: objects and common prefixes in key order, at most `max` entries,
/// resuming after `after`. Returns the entries, whether more follow, and the token
/// to resume from (a common prefix resumes past every key under it).
async fn list_page(
    disk: &Disk,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    mut after: String,
    max: usize,
) -> S3Result<(Vec<Object>, Vec<CommonPrefix>, bool, Option<String>)> {
    /// Sorts after every key that starts with what it is appended to.
    const PAST: char = '\u{10FFFF}';
    let (mut objects, mut prefixes) = (Vec::new(), Vec::<CommonPrefix>::new());
    let mut token = None;
    if max == 0 {
        return Ok((objects, prefixes, false, None));
    }
    'pages: loop {
        let page = disk
            .list(bucket, prefix, &after, DEFAULT_MAX_KEYS as usize)
            .await
            .map_err(s3_err)?;
        if page.is_empty() {
            return Ok((objects, prefixes, false, None));
        }
        for o in &page {
            let common = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
                o.key[prefix.len()..]
                    .find(d)
                    .map(|at| prefix.len() + at + d.len())
            });
            if objects.len() + prefixes.len() == max {
                return Ok((objects, prefixes, true, token));
            }
            match common {
                Some(end) => {
                    let cp = o.key[..end].to_owned();
                    after = format!("{cp}{PAST}");
                    token = Some(after.clone());
                    prefixes.push(CommonPrefix { prefix: Some(cp) });
                    continue 'pages;
                }
                None => {
                    after.clone_from(&o.key);
                    token = Some(o.key.clone());
                    objects.push(object_entry(o));
                }
            }
        }
    }
}

#[async_trait]
impl S3 for Backend {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        if !s3s::path::check_bucket_name(&req.input.bucket) {
            return Err(s3_error!(InvalidBucketName));
        }
        self.disk
            .create_bucket(&req.input.bucket)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", req.input.bucket)),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        if !self
            .disk
            .bucket_exists(&req.input.bucket)
            .await
            .map_err(s3_err)?
        {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self.disk.list_buckets().await.map_err(s3_err)?;
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(
                buckets
                    .into_iter()
                    .map(|(name, created)| Bucket {
                        name: Some(name),
                        creation_date: Some(timestamp(created)),
                        bucket_region: None,
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.disk
            .delete_bucket(&req.input.bucket)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        if !self
            .disk
            .bucket_exists(&req.input.bucket)
            .await
            .map_err(s3_err)?
        {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let trailer = trailer_of(&req.headers);
        let input = req.input;
        if let Some(condition) = &input.if_match {
            let current = self
                .disk
                .head(&input.bucket, &input.key)
                .await
                .map_err(s3_err)?
                .ok_or_else(|| s3_error!(PreconditionFailed, "Object does not exist"))?;
            if let ETagCondition::ETag(etag) = condition
                && !ETag::Strong(current.etag).strong_cmp(etag)
            {
                return Err(s3_error!(PreconditionFailed, "ETag does not match"));
            }
        }
        let if_none_match = input.if_none_match.as_ref().is_some_and(|c| c.is_any());
        let (staged, sums) = receive_body!(self.disk, input, trailer, req.trailing_headers, false);
        let attrs = attrs_of(
            input.content_type,
            input.content_disposition,
            input.content_encoding,
            input.content_language,
            input.cache_control,
            input.metadata,
        );
        let info = self
            .disk
            .commit_object(
                &input.bucket,
                &input.key,
                staged,
                &attrs,
                &sums,
                if_none_match,
            )
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(info.etag)),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            checksum_crc64nvme: sums.crc64nvme,
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let read = self.disk.read(&input.bucket, &input.key, input.range).await;
        if let (Err(DiskError::InvalidRange), Some(ETagCondition::ETag(etag))) =
            (&read, &input.if_match)
        {
            // The precondition comes before the range (RFC 9110, 13.2.2).
            let now = self
                .disk
                .head(&input.bucket, &input.key)
                .await
                .map_err(s3_err)?;
            if now.is_none_or(|o| !ETag::Strong(o.etag).strong_cmp(etag)) {
                return Err(s3_error!(PreconditionFailed, "ETag does not match"));
            }
        }
        let (info, range, body) = read.map_err(s3_err)?;
        if let Some(ETagCondition::ETag(etag)) = &input.if_match
            && !ETag::Strong(info.etag.clone()).strong_cmp(etag)
        {
            return Err(s3_error!(PreconditionFailed, "ETag does not match"));
        }
        let content_range = range.as_ref().map(|r| {
            format!(
                "bytes {}-{}/{}",
                r.start,
                r.end.saturating_sub(1),
                info.size
            )
        });
        // S3 returns an object's checksums only with the whole object.
        let sums = if range.is_none() {
            info.sums.clone()
        } else {
            Sums::default()
        };
        let metadata = metadata_of(&info.attrs);
        Ok(S3Response::new(GetObjectOutput {
            content_length: Some(i64::try_from(body.len()).unwrap_or(i64::MAX)),
            body: Some(StreamingBlob::wrap(body)),
            content_range,
            accept_ranges: Some("bytes".into()),
            last_modified: Some(timestamp(info.modified)),
            e_tag: Some(ETag::Strong(info.etag)),
            content_type: input.response_content_type.or(info.attrs.content_type),
            content_disposition: input
                .response_content_disposition
                .or(info.attrs.content_disposition),
            content_encoding: input
                .response_content_encoding
                .or(info.attrs.content_encoding),
            content_language: input
                .response_content_language
                .or(info.attrs.content_language),
            cache_control: input.response_cache_control.or(info.attrs.cache_control),
            metadata,
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            checksum_crc64nvme: sums.crc64nvme,
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let Some(info) = self
            .disk
            .head(&input.bucket, &input.key)
            .await
            .map_err(s3_err)?
        else {
            return Err(
                if self
                    .disk
                    .bucket_exists(&input.bucket)
                    .await
                    .map_err(s3_err)?
                {
                    s3_error!(NoSuchKey)
                } else {
                    s3_error!(NoSuchBucket)
                },
            );
        };
        let metadata = metadata_of(&info.attrs);
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(i64::try_from(info.size).unwrap_or(i64::MAX)),
            accept_ranges: Some("bytes".into()),
            last_modified: Some(timestamp(info.modified)),
            e_tag: Some(ETag::Strong(info.etag)),
            content_type: info.attrs.content_type,
            content_disposition: info.attrs.content_disposition,
            content_encoding: info.attrs.content_encoding,
            content_language: info.attrs.content_language,
            cache_control: info.attrs.cache_control,
            metadata,
            checksum_crc32: info.sums.crc32,
            checksum_crc32c: info.sums.crc32c,
            checksum_sha1: info.sums.sha1,
            checksum_sha256: info.sums.sha256,
            checksum_crc64nvme: info.sums.crc64nvme,
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let CopySource::Bucket { bucket, key, .. } = &input.copy_source else {
            return Err(s3_error!(NotImplemented));
        };
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let attrs = replace.then(|| {
            attrs_of(
                input.content_type.clone(),
                input.content_disposition.clone(),
                input.content_encoding.clone(),
                input.content_language.clone(),
                input.cache_control.clone(),
                input.metadata.clone(),
            )
        });
        let info = self
            .disk
            .copy(bucket, key, &input.bucket, &input.key, attrs)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(info.etag)),
                last_modified: Some(timestamp(info.modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.disk
            .delete(&req.input.bucket, &req.input.key)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let quiet = input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for object in input.delete.objects {
            match self.disk.delete(&input.bucket, &object.key).await {
                Ok(()) => deleted.push(DeletedObject {
                    key: Some(object.key),
                    ..Default::default()
                }),
                Err(e) => {
                    let e = s3_err(e);
                    errors.push(Error {
                        key: Some(object.key),
                        code: Some(e.code().as_str().to_owned()),
                        message: e.message().map(str::to_owned),
                        ..Default::default()
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        // V1 is V2 with `marker` as `start_after`; its next marker is V2's token.
        let marker = req.input.marker.clone();
        let v2 = self.list_objects_v2(req.map_input(Into::into)).await?;
        Ok(v2.map_output(|v2| ListObjectsOutput {
            name: v2.name,
            prefix: v2.prefix,
            delimiter: v2.delimiter,
            marker,
            max_keys: v2.max_keys,
            is_truncated: v2.is_truncated,
            next_marker: v2.next_continuation_token,
            contents: Some(v2.contents.unwrap_or_default()),
            common_prefixes: v2.common_prefixes,
            encoding_type: v2.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        if !self
            .disk
            .bucket_exists(&input.bucket)
            .await
            .map_err(s3_err)?
        {
            return Err(s3_error!(NoSuchBucket));
        }
        let prefix = input.prefix.clone().unwrap_or_default();
        let max_keys = input
            .max_keys
            .unwrap_or(DEFAULT_MAX_KEYS)
            .clamp(0, DEFAULT_MAX_KEYS);
        let after = match (&input.continuation_token, &input.start_after) {
            (Some(token), _) => token.clone(),
            (None, Some(start)) => start.clone(),
            (None, None) => String::new(),
        };
        let (contents, prefixes, truncated, token) = list_page(
            &self.disk,
            &input.bucket,
            &prefix,
            input.delimiter.as_deref(),
            after,
            usize::try_from(max_keys).unwrap_or(0),
        )
        .await?;
        let key_count = i32::try_from(contents.len() + prefixes.len()).unwrap_or(i32::MAX);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            max_keys: Some(max_keys),
            key_count: Some(key_count),
            is_truncated: Some(truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: if truncated { token } else { None },
            start_after: input.start_after,
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let attrs = attrs_of(
            input.content_type,
            input.content_disposition,
            input.content_encoding,
            input.content_language,
            input.cache_control,
            input.metadata,
        );
        let id = self
            .disk
            .create_upload(&input.bucket, &input.key, &attrs)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let trailer = trailer_of(&req.headers);
        let input = req.input;
        check_part_number(input.part_number)?;
        // Refuse before reading a byte of the body.
        self.disk
            .require_upload(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(s3_err)?;
        let (staged, sums) = receive_body!(self.disk, input, trailer, req.trailing_headers, true);
        let md5 = self
            .disk
            .commit_part(
                &input.bucket,
                &input.key,
                &input.upload_id,
                input.part_number,
                staged,
            )
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(md5)),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            checksum_crc64nvme: sums.crc64nvme,
            ..Default::default()
        }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        check_part_number(input.part_number)?;
        self.disk
            .require_upload(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(s3_err)?;
        let CopySource::Bucket { bucket, key, .. } = &input.copy_source else {
            return Err(s3_error!(NotImplemented));
        };
        let source = self
            .disk
            .head(bucket, key)
            .await
            .map_err(s3_err)?
            .ok_or_else(|| s3_error!(NoSuchKey))?;
        let range = match &input.copy_source_range {
            Some(r) => Some(
                disk::copy_range(r, source.size)
                    .ok_or_else(|| s3_error!(InvalidRange, "bad x-amz-copy-source-range"))?,
            ),
            None => None,
        };
        let range = range.map(|r| Range::Int {
            first: r.start,
            last: Some(r.end - 1),
        });
        let (_, _, mut body) = self.disk.read(bucket, key, range).await.map_err(s3_err)?;
        let mut staging = self.disk.staging(true);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| s3_err(e.into()))?;
            staging.write(&chunk).await.map_err(|e| s3_err(e.into()))?;
        }
        let staged = staging.finish().await.map_err(|e| s3_err(e.into()))?;
        let md5 = self
            .disk
            .commit_part(
                &input.bucket,
                &input.key,
                &input.upload_id,
                input.part_number,
                staged,
            )
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(md5)),
                last_modified: Some(timestamp(SystemTime::now())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let max_parts = input
            .max_parts
            .unwrap_or(DEFAULT_MAX_PARTS)
            .clamp(1, DEFAULT_MAX_PARTS);
        let marker = input.part_number_marker.unwrap_or(0);
        let after_marker: Vec<_> = self
            .disk
            .list_parts(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(s3_err)?
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
                last_modified: Some(timestamp(p.modified)),
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

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        // Every upload in one page: the uploads in progress are few (each one is a
        // client's open session), so paging is not needed.
        let uploads = self
            .disk
            .list_uploads(&input.bucket, &prefix)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            is_truncated: Some(false),
            max_uploads: Some(i32::try_from(uploads.len()).unwrap_or(i32::MAX)),
            uploads: Some(
                uploads
                    .into_iter()
                    .map(|u| MultipartUpload {
                        key: Some(u.key),
                        upload_id: Some(u.id),
                        initiated: Some(timestamp(u.created)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let requested = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let number = p
                    .part_number
                    .ok_or_else(|| s3_error!(InvalidPart, "missing part number"))?;
                let etag = p.e_tag.map(|e| e.value().to_owned()).unwrap_or_default();
                Ok((number, etag))
            })
            .collect::<S3Result<Vec<_>>>()?;
        let info = self
            .disk
            .complete(&input.bucket, &input.key, &input.upload_id, &requested)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(info.etag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.disk
            .abort(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}
