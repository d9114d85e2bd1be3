//! `upload_complete` and `complete_multipart_upload`: find the file session the
//! message names, finish the multipart upload, check the object (it must exist
//! with exactly the declared size), then record the completion, its job and the
//! first `monitoring_update` in one transaction. A repeated completion changes
//! nothing and says nothing.

use serde_json::{Map, Value, json};

use super::job::JobPayload;
use super::{MAX_ATTEMPTS, Uploads};
use crate::db::uploads::{UploadFileRow, UploadRow};
use crate::domain::{FileState, Step};
use crate::protocol::{WsError, monitoring_update, parse_parts};

fn server(what: &'static str) -> impl Fn(sqlx::Error) -> WsError {
    move |e| {
        tracing::error!(error = %e, "{what}");
        WsError::ServerError
    }
}

/// Handles `upload_complete` (a single PUT finished).
pub async fn upload_complete(
    up: &Uploads,
    upload: &UploadRow,
    msg: &Map<String, Value>,
) -> Result<(), WsError> {
    let field = |name: &str| msg.get(name).and_then(Value::as_str);
    let id = field("upload_id").ok_or(WsError::InvalidPayload)?;
    let s3_key = field("s3_key").ok_or(WsError::InvalidPayload)?;
    let file = find_file(up, upload, id, Some(s3_key)).await?;
    if file.s3_key != s3_key {
        return Err(WsError::DoesNotExist);
    }
    if !still_pending(&file, WsError::FileIncomplete)? {
        return Ok(());
    }
    finish(up, upload, &file).await
}

/// Handles `complete_multipart_upload`: every part named once, then S3 assembles.
pub async fn complete_multipart(
    up: &Uploads,
    upload: &UploadRow,
    msg: &Map<String, Value>,
) -> Result<(), WsError> {
    let parts = parse_parts(msg.get("parts")).ok_or(WsError::InvalidPayload)?;
    let s3_key = match msg.get("s3_key") {
        None => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err(WsError::InvalidPayload),
    };
    let file = multipart_file(up, upload, msg.get("upload_id"), s3_key).await?;
    if !file.is_multipart || s3_key.is_some_and(|k| k != file.s3_key) {
        return Err(WsError::DoesNotExist);
    }
    if !still_pending(&file, WsError::S3FinalizeFailed)? {
        return Ok(());
    }
    // Completing with a subset would make a shorter object.
    let expected: Vec<i32> = (1..=file.total_parts as i32).collect();
    if parts.iter().map(|(n, _)| *n).ne(expected) {
        return Err(WsError::FileIncomplete);
    }
    let s3_upload_id = file.s3_upload_id.clone().ok_or(WsError::ServerError)?;
    if let Err(e) = up
        .store
        .complete_multipart(&file.s3_key, &s3_upload_id, &parts)
        .await
    {
        tracing::warn!(error = %e, upload_file = %file.id, "multipart completion failed");
        return Err(WsError::S3FinalizeFailed);
    }
    finish(up, upload, &file).await
}

/// Whether a file is still to be completed (false: already completed, nothing
/// more to do); a failed one is answered with `refused`.
fn still_pending(file: &UploadFileRow, refused: WsError) -> Result<bool, WsError> {
    match file.state {
        FileState::Pending => Ok(true),
        FileState::Failed => Err(refused),
        FileState::Completed | FileState::Processed => Ok(false),
    }
}

/// The file a `complete_multipart_upload` means. The page sends only `parts`;
/// `upload_id` (the session id) and `s3_key` are optional and pick one session
/// when several multipart ones are open.
async fn multipart_file(
    up: &Uploads,
    upload: &UploadRow,
    id: Option<&Value>,
    s3_key: Option<&str>,
) -> Result<UploadFileRow, WsError> {
    match id {
        Some(Value::String(id)) if *id != upload.id => find_file(up, upload, id, None).await,
        // The transaction's own id says no more than its absence.
        Some(Value::String(_)) | None => match s3_key {
            Some(key) => find_file(up, upload, &upload.id, Some(key)).await,
            None => the_open_multipart(up, upload).await,
        },
        Some(_) => Err(WsError::InvalidPayload),
    }
}

/// The one pending multipart session of `upload`; ambiguous when there are several.
async fn the_open_multipart(up: &Uploads, upload: &UploadRow) -> Result<UploadFileRow, WsError> {
    let files = up
        .db
        .upload_files(&upload.id)
        .await
        .map_err(server("listing upload files"))?;
    let mut open: Vec<_> = files
        .into_iter()
        .filter(|f| f.is_multipart && f.state == FileState::Pending)
        .collect();
    match open.len() {
        0 => Err(WsError::DoesNotExist),
        1 => Ok(open.remove(0)),
        // The client must say which with `upload_id`.
        _ => Err(WsError::InvalidPayload),
    }
}

/// Finds the file session a completion message names: by its session id, or,
/// when the client sent the transaction's upload id, by `s3_key`.
async fn find_file(
    up: &Uploads,
    upload: &UploadRow,
    id: &str,
    s3_key: Option<&str>,
) -> Result<UploadFileRow, WsError> {
    let lookup = server("looking up an upload file");
    let file = match up.db.upload_file_by_id(id).await.map_err(&lookup)? {
        Some(f) => Some(f),
        None if id == upload.id => up
            .db
            .upload_files(&upload.id)
            .await
            .map_err(&lookup)?
            .into_iter()
            .find(|f| Some(f.s3_key.as_str()) == s3_key),
        None => None,
    };
    match file {
        Some(f) if f.upload_id == upload.id => Ok(f),
        _ => Err(WsError::DoesNotExist),
    }
}

/// Verifies the object, then queues its processing.
async fn finish(up: &Uploads, upload: &UploadRow, file: &UploadFileRow) -> Result<(), WsError> {
    match up.store.head(&file.s3_key).await {
        Ok(Some(meta)) if meta.size == file.file_size as u64 => {}
        Ok(_) => return Err(WsError::FileIncomplete),
        Err(e) => {
            tracing::error!(error = %e, "checking an uploaded object");
            return Err(WsError::ServerError);
        }
    }
    enqueue(up, upload, file).await
}

/// Records the completion, its job and the first `monitoring_update` in one
/// transaction, then wakes the local socket tails (which deliver the message)
/// and workers.
async fn enqueue(up: &Uploads, upload: &UploadRow, file: &UploadFileRow) -> Result<(), WsError> {
    let payload = JobPayload {
        upload_file_id: file.id.clone(),
        upload_id: upload.id.clone(),
    };
    let mut fields = Map::new();
    fields.insert("step_name".into(), json!(Step::UploadComplete.as_str()));
    fields.insert("upload_id".into(), json!(file.id));
    fields.insert("temp_upload_id".into(), json!(file.temp_upload_id));
    fields.insert("file_name".into(), json!(file.file_name));
    fields.insert("status".into(), json!("queued"));
    fields.insert("message".into(), json!("File received; processing queued"));
    let first = monitoring_update(fields, 1).to_string();
    let fresh = up
        .db
        .complete_upload_file(&file.id, &upload.id, &payload.new_job(MAX_ATTEMPTS), &first)
        .await
        .map_err(server("enqueueing processing"))?;
    if fresh {
        up.hub.notify(&upload.id);
        up.wake_workers();
    }
    tracing::info!(upload_id = %upload.id, upload_file = %file.id, "upload completed; processing queued");
    Ok(())
}
