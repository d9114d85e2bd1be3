//! Resuming a file session after the client restarted (an extension beyond the
//! seed, `GET /api/object-records/uploads/{upload_id}/files/{file_id}/parts/`):
//! which parts of the session the object store already holds, read from the store
//! itself (S3 `ListParts`, or `HEAD` for a single PUT) rather than from any record
//! of ours, and fresh presigned URLs for the parts still missing. The client PUTs
//! those and completes the session on the upload socket as usual.

use std::time::Duration;

use serde::Serialize;

use super::Uploads;
use super::checksums::Checksums;
use crate::db::uploads::UploadFileRow;
use crate::domain::FileState;
use crate::protocol::PartUrl;
use crate::store::StoreError;

/// One part the store holds.
#[derive(Debug, Clone, Serialize)]
pub struct StoredPart {
    pub part_number: i32,
    pub e_tag: String,
    pub size: u64,
}

/// The answer: the session, what is stored, and URLs for what is not.
#[derive(Debug, Clone, Serialize)]
pub struct FileParts {
    /// The file session id (`presigned_url_ready`'s `upload_id`).
    pub upload_id: String,
    pub s3_key: String,
    /// `pending` while parts may be sent; anything else means the session was
    /// completed (parts and URLs are then empty: complete or follow it instead).
    pub state: FileState,
    pub is_multipart: bool,
    pub file_size: u64,
    pub chunk_size: Option<u64>,
    pub total_parts: u64,
    /// Stored parts, by part number (for a single PUT: part 1 once the object exists).
    pub parts: Vec<StoredPart>,
    /// Fresh URLs for the multipart parts not stored yet.
    pub part_urls: Vec<PartUrl>,
    /// A fresh single-PUT URL while the object does not exist yet.
    pub presigned_url: Option<String>,
    /// The algorithm the fresh URLs are bound to, when the client sent checksums
    /// (`POST`, `uploads::checksums`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<&'static str>,
}

/// Why there is no answer.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// No such upload of this user, or no such file session in it.
    #[error("not found")]
    NotFound,
    /// The session is pending but its multipart upload is gone from the store
    /// (aborted): nothing can be resumed; start a new one.
    #[error("The multipart upload of this file is no longer in the object store.")]
    Gone,
    /// The client's checksums do not fit the session (size or part size).
    #[error("Invalid checksums: {0}.")]
    BadChecksums(String),
    /// The database or the store failed.
    #[error("{0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for ResumeError {
    fn from(e: sqlx::Error) -> Self {
        ResumeError::Unavailable(e.to_string())
    }
}

impl From<StoreError> for ResumeError {
    fn from(e: StoreError) -> Self {
        if e.is_not_found() {
            ResumeError::Gone
        } else {
            ResumeError::Unavailable(e.to_string())
        }
    }
}

/// The stored parts of file session `file_id` of upload `upload_id`, as its
/// creator `user_id` may see them. With the client's `checksums` (the JSON of the
/// extension field) the fresh URLs are bound to them.
pub async fn file_parts(
    up: &Uploads,
    user_id: i64,
    upload_id: &str,
    file_id: &str,
    checksums: Option<&serde_json::Value>,
) -> Result<FileParts, ResumeError> {
    let upload = up
        .db
        .upload_by_id(upload_id)
        .await?
        .filter(|u| u.creator_id == user_id)
        .ok_or(ResumeError::NotFound)?;
    let file = up
        .db
        .upload_file_by_id(file_id)
        .await?
        .filter(|f| f.upload_id == upload.id)
        .ok_or(ResumeError::NotFound)?;
    let mut out = FileParts {
        upload_id: file.id.clone(),
        s3_key: file.s3_key.clone(),
        state: file.state,
        is_multipart: file.is_multipart,
        file_size: file.file_size as u64,
        chunk_size: file.chunk_size.map(|c| c as u64),
        total_parts: file.total_parts as u64,
        parts: Vec::new(),
        part_urls: Vec::new(),
        presigned_url: None,
        checksum_algorithm: None,
    };
    let checksums = checksums
        .map(|v| Checksums::parse(v, out.file_size))
        .transpose()
        .map_err(ResumeError::BadChecksums)?;
    if let (Some(c), Some(chunk)) = (&checksums, out.chunk_size)
        && file.is_multipart
        && c.part_size != chunk
    {
        return Err(ResumeError::BadChecksums(format!(
            "checksums.part_size must be this session's part size, {chunk}"
        )));
    }
    if file.state != FileState::Pending {
        return Ok(out);
    }
    out.checksum_algorithm = checksums.as_ref().map(|c| c.algorithm.name());
    let ttl = up.settings.uploads.presign_ttl;
    if file.is_multipart {
        multipart(up, &file, ttl, checksums.as_ref(), &mut out).await?;
    } else {
        match up.store.head(&file.s3_key).await? {
            Some(meta) if meta.size == out.file_size => out.parts.push(StoredPart {
                part_number: 1,
                e_tag: meta.etag.unwrap_or_default(),
                size: meta.size,
            }),
            _ => {
                let (key, size, ct) = (&file.s3_key, out.file_size, &file.file_type);
                out.presigned_url = Some(match &checksums {
                    Some(c) => {
                        up.store
                            .presign_put_checked(key, size, ct, &c.object(), ttl)
                            .await?
                    }
                    None => up.store.presign_put(key, size, ct, ttl).await?,
                });
            }
        }
    }
    Ok(out)
}

async fn multipart(
    up: &Uploads,
    file: &UploadFileRow,
    ttl: Duration,
    checksums: Option<&Checksums>,
    out: &mut FileParts,
) -> Result<(), ResumeError> {
    let s3_upload_id = file.s3_upload_id.as_deref().ok_or(ResumeError::Gone)?;
    let chunk = out.chunk_size.filter(|c| *c > 0).ok_or(ResumeError::Gone)?;
    let stored = up.store.list_parts(&file.s3_key, s3_upload_id).await?;
    for part in 1..=out.total_parts {
        let len = chunk.min(out.file_size - (part - 1) * chunk);
        // A part of another length (a client that sent wrong bytes) is sent again.
        match stored
            .iter()
            .find(|(n, _, size)| *n as u64 == part && *size == len)
        {
            Some((n, tag, size)) => out.parts.push(StoredPart {
                part_number: *n,
                e_tag: tag.clone(),
                size: *size,
            }),
            None => out.part_urls.push(PartUrl {
                url: match checksums {
                    Some(c) => {
                        up.store
                            .presign_part_checked(
                                &file.s3_key,
                                s3_upload_id,
                                part as i32,
                                len,
                                &c.part(part),
                                ttl,
                            )
                            .await?
                    }
                    None => {
                        up.store
                            .presign_part(&file.s3_key, s3_upload_id, part as i32, len, ttl)
                            .await?
                    }
                },
                part: part as i32,
            }),
        }
    }
    Ok(())
}

/// Why a session could not be cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// No such upload of this user, or no such file session in it.
    #[error("not found")]
    NotFound,
    /// The session was completed (or had failed) already; nothing to cancel.
    #[error("The file is no longer being uploaded; it cannot be cancelled.")]
    NotPending,
    /// The database or the store failed.
    #[error("{0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for CancelError {
    fn from(e: sqlx::Error) -> Self {
        CancelError::Unavailable(e.to_string())
    }
}

/// Cancels pending file session `file_id` of upload `upload_id` for its creator:
/// the session fails (a guarded move from `pending`, so a completion that won the
/// race is kept), its multipart upload is aborted so that the store keeps no
/// part (a single PUT's object, if any, is deleted), and the upload settles when
/// nothing else of it is pending or processing.
pub async fn cancel(
    up: &Uploads,
    user_id: i64,
    upload_id: &str,
    file_id: &str,
) -> Result<(), CancelError> {
    let upload = up
        .db
        .upload_by_id(upload_id)
        .await?
        .filter(|u| u.creator_id == user_id)
        .ok_or(CancelError::NotFound)?;
    let file = up
        .db
        .upload_file_by_id(file_id)
        .await?
        .filter(|f| f.upload_id == upload.id)
        .ok_or(CancelError::NotFound)?;
    if file.state != FileState::Pending {
        return Err(CancelError::NotPending);
    }
    up.db.fail_upload_file(&file.id).await?;
    let now = up.db.upload_file_by_id(&file.id).await?;
    if now.is_none_or(|f| f.state != FileState::Failed) {
        return Err(CancelError::NotPending);
    }
    let stored = match &file.s3_upload_id {
        Some(s3_upload_id) if file.is_multipart => {
            match up.store.abort_multipart(&file.s3_key, s3_upload_id).await {
                Err(e) if !e.is_not_found() => Err(e),
                _ => Ok(()),
            }
        }
        _ => up.store.delete(&file.s3_key).await,
    };
    if let Err(e) = stored {
        // The session is failed either way; what is left expires with the bucket's
        // lifecycle rules.
        tracing::warn!(error = %e, key = %file.s3_key, "cancelled upload left data in the store");
    }
    up.db.settle_upload(&upload.id).await?;
    tracing::info!(upload_id = %upload.id, session = %file.id, "file session cancelled");
    Ok(())
}
