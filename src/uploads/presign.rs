//! `request_presigned_url`: validate the request in the page's order, make the
//! object key (never from the client's file name), presign a single PUT bound to
//! length and type or create a multipart upload and presign every part, and record
//! the file session. The request's fields are parsed in `presign_request.rs`.

use serde_json::{Map, Value};

use super::Uploads;
pub use super::presign_request::PresignRequest;
use crate::config::UploadSettings;
use crate::db::now_ms;
use crate::db::uploads::{NewUploadFile, UploadRow};
use crate::protocol::{PartUrl, PresignedUrlReady, WsError};
use crate::store::StoreError;

/// The file types accepted as ZIP archives. Browsers on Windows report ZIPs as
/// `application/x-zip-compressed`; both mean the same bytes.
pub const ALLOWED_FILE_TYPES: [&str; 2] = ["application/zip", "application/x-zip-compressed"];

/// S3's limits on multipart uploads.
const MIN_PART: u64 = 5 * 1024 * 1024;
/// The most parts S3 accepts in one multipart upload.
pub use crate::protocol::MAX_PARTS;
const DEFAULT_CHUNK: u64 = 16 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

/// Chooses the chunk size: the configured one or 16 MiB, grown (in whole MiB) so
/// that there are at most 10,000 parts; never under 5 MiB.
pub fn chunk_size(file_size: u64, configured: Option<u64>) -> u64 {
    let base = configured.unwrap_or(DEFAULT_CHUNK).max(MIN_PART);
    let needed = file_size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    base.max(needed)
}

impl PresignRequest {
    /// Checks type, size and target against the settings and the upload.
    pub fn check(&self, settings: &UploadSettings, upload: &UploadRow) -> Result<(), WsError> {
        if !ALLOWED_FILE_TYPES.contains(&self.file_type.to_ascii_lowercase().as_str()) {
            return Err(WsError::UnsupportedFileType {
                file_type: self.file_type.clone(),
                allowed: ALLOWED_FILE_TYPES.join(", "),
            });
        }
        if self.file_size <= 0 {
            return Err(WsError::FileEmpty);
        }
        if self.file_size as u64 > settings.max_upload_bytes {
            return Err(WsError::FileTooLarge {
                limit_gb: settings.max_upload_gb(),
            });
        }
        if self.object_class != upload.object_class_id || self.class_field != upload.class_field_id
        {
            return Err(WsError::DoesNotExist);
        }
        Ok(())
    }
}

fn generation(e: StoreError) -> WsError {
    tracing::error!(error = %e, "presigning an upload");
    WsError::GenerationError
}

/// Answers `request_presigned_url` on `upload`: the `presigned_url_ready` reply.
pub async fn presign(
    up: &Uploads,
    upload: &UploadRow,
    msg: &Map<String, Value>,
) -> Result<PresignedUrlReady, WsError> {
    // Past its lifetime an upload takes no new file, even while an earlier one
    // is processing (its sockets may still follow it and complete issued files).
    if now_ms() > upload.expires_at {
        return Err(WsError::InvalidUuid);
    }
    let req = PresignRequest::parse(msg)?;
    let settings = &up.settings.uploads;
    req.check(settings, upload)?;
    let size = req.file_size as u64;
    let session_id = uuid::Uuid::new_v4().to_string();
    let s3_key = format!("uploads/{}/{}.zip", upload.id, session_id);
    let reply = if size >= settings.multipart_threshold_bytes {
        presign_multipart(up, &req, session_id, s3_key).await?
    } else {
        let ttl = settings.presign_ttl;
        let url = match &req.checksums {
            Some(c) => {
                up.store
                    .presign_put_checked(&s3_key, size, &req.file_type, &c.object(), ttl)
                    .await
            }
            None => {
                up.store
                    .presign_put(&s3_key, size, &req.file_type, ttl)
                    .await
            }
        }
        .map_err(generation)?;
        PresignedUrlReady {
            upload_id: session_id,
            temp_upload_id: req.temp_upload_id.clone(),
            presigned_url: Some(url),
            fields: Map::new(),
            s3_key,
            is_multipart: false,
            part_urls: Vec::new(),
            s3_upload_id: None,
            chunk_size: None,
            total_parts: 1,
            checksum_algorithm: req.checksums.as_ref().map(|c| c.algorithm.name()),
        }
    };
    record(up, upload, &req, &reply).await?;
    tracing::info!(upload_id = %upload.id, session = %reply.upload_id, size, multipart = reply.is_multipart, "presigned upload issued");
    Ok(reply)
}

/// Creates the multipart upload and presigns each part; aborts it if any fails.
async fn presign_multipart(
    up: &Uploads,
    req: &PresignRequest,
    session_id: String,
    s3_key: String,
) -> Result<PresignedUrlReady, WsError> {
    let settings = &up.settings.uploads;
    let size = req.file_size as u64;
    let ttl = settings.presign_ttl;
    // A client that hashed its parts chose their size.
    let chunk = match &req.checksums {
        Some(c) => {
            c.check_part_size(MAX_PARTS)
                .map_err(WsError::InvalidChecksums)?;
            c.part_size
        }
        None => chunk_size(size, settings.multipart_chunk_bytes),
    };
    let total_parts = size.div_ceil(chunk);
    let s3_upload_id = up
        .store
        .create_multipart(&s3_key, &req.file_type)
        .await
        .map_err(generation)?;
    let mut part_urls = Vec::with_capacity(total_parts as usize);
    for part in 1..=total_parts {
        let len = chunk.min(size - (part - 1) * chunk);
        let url = match &req.checksums {
            Some(c) => {
                let sum = c.part(part);
                up.store
                    .presign_part_checked(&s3_key, &s3_upload_id, part as i32, len, &sum, ttl)
                    .await
            }
            None => {
                up.store
                    .presign_part(&s3_key, &s3_upload_id, part as i32, len, ttl)
                    .await
            }
        };
        match url {
            Ok(url) => part_urls.push(PartUrl {
                url,
                part: part as i32,
            }),
            Err(e) => {
                abort_quietly(up, &s3_key, &s3_upload_id).await;
                return Err(generation(e));
            }
        }
    }
    Ok(PresignedUrlReady {
        upload_id: session_id,
        temp_upload_id: req.temp_upload_id.clone(),
        presigned_url: None,
        fields: Map::new(),
        s3_key,
        is_multipart: true,
        part_urls,
        s3_upload_id: Some(s3_upload_id),
        chunk_size: Some(chunk),
        total_parts,
        checksum_algorithm: req.checksums.as_ref().map(|c| c.algorithm.name()),
    })
}

/// Records the file session the reply describes.
async fn record(
    up: &Uploads,
    upload: &UploadRow,
    req: &PresignRequest,
    reply: &PresignedUrlReady,
) -> Result<(), WsError> {
    let recorded = up
        .db
        .create_upload_file(&NewUploadFile {
            id: &reply.upload_id,
            upload_id: &upload.id,
            temp_upload_id: &reply.temp_upload_id,
            file_name: &req.file_name,
            file_size: req.file_size,
            file_type: &req.file_type,
            s3_key: &reply.s3_key,
            s3_upload_id: reply.s3_upload_id.as_deref(),
            chunk_size: reply.chunk_size.map(|c| c as i64),
            total_parts: reply.total_parts as i64,
        })
        .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, "recording an upload file");
        // Nobody will ever complete it: do not leave its parts to S3's lifecycle rules.
        if let Some(id) = &reply.s3_upload_id {
            abort_quietly(up, &reply.s3_key, id).await;
        }
        return Err(WsError::ServerError);
    }
    Ok(())
}

/// Drops a multipart upload that will never be completed; a failure only logs.
async fn abort_quietly(up: &Uploads, key: &str, s3_upload_id: &str) {
    if let Err(e) = up.store.abort_multipart(key, s3_upload_id).await {
        tracing::warn!(error = %e, key, "could not abort an unused multipart upload");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(100 * MIB, None), 16 * MIB);
        assert_eq!(chunk_size(100 * MIB, Some(5 * MIB)), 5 * MIB);
        assert_eq!(chunk_size(100 * MIB, Some(MIB)), 5 * MIB);
        // 5 TB needs bigger chunks to stay within 10,000 parts.
        let big = 5_000_000_000_000;
        let c = chunk_size(big, None);
        assert!(big.div_ceil(c) <= MAX_PARTS);
        assert_eq!(c % MIB, 0);
    }

    #[test]
    fn requests_parse_in_the_page_order() {
        let ok = json!({"type": "request_presigned_url", "temp_upload_id": 7, "file_name": " a.zip ",
            "file_size": 10, "file_type": "application/zip", "object_class": "3", "class_field": 4});
        let req = PresignRequest::parse(ok.as_object().unwrap()).unwrap();
        assert_eq!(req.temp_upload_id, "7");
        assert_eq!(req.file_name, "a.zip");
        assert_eq!((req.object_class, req.class_field), (3, 4));
        let mut null = ok.as_object().unwrap().clone();
        null.insert("file_size".into(), Value::Null);
        null.insert("file_name".into(), Value::Null);
        assert_eq!(
            PresignRequest::parse(&null),
            Err(WsError::NullField("file_name".into()))
        );
        let mut missing = ok.as_object().unwrap().clone();
        missing.remove("class_field");
        assert_eq!(
            PresignRequest::parse(&missing),
            Err(WsError::InvalidPayload)
        );
    }
}
