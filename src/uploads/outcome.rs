//! How a file's processing ended, for a client that missed the final message (its
//! socket died, or the node crashed right after settling): the code and text of a
//! final failure, read from the durable job (`last_error`, written as
//! `"<code>: <message>"` when the job fails for good, before the final message is
//! sent), else from the final `monitoring_update` in the upload's log.

use serde_json::Value;

use super::job::JobPayload;
use crate::db::Db;
use crate::db::uploads::UploadFileRow;
use crate::domain::{FileState, JobState};

/// A final failure as the final `monitoring_update` reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFailure {
    pub error_code: String,
    pub message: String,
}

/// Why `file` failed, if it did and the reason is known.
pub async fn failure(db: &Db, file: &UploadFileRow) -> Result<Option<FileFailure>, sqlx::Error> {
    if file.state != FileState::Failed {
        return Ok(None);
    }
    let key = JobPayload {
        upload_file_id: file.id.clone(),
        upload_id: file.upload_id.clone(),
    }
    .dedupe_key();
    if let Some(job) = db.job_status(&key).await?
        && job.state == JobState::Failed
        && let Some((code, message)) = job.last_error.as_deref().and_then(|e| e.split_once(": "))
        && code.starts_with("ERR_")
    {
        return Ok(Some(FileFailure {
            error_code: code.to_string(),
            message: message.to_string(),
        }));
    }
    // Refused before a job existed, or an older job: the log's final error.
    let mut after = 0;
    let mut found = None;
    loop {
        let page = db.messages_after(&file.upload_id, after, 500).await?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = *last;
        for (_, text) in &page {
            let Ok(v) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            let m = &v["message"];
            if v["type"] == "monitoring_update"
                && m["status"] == "error"
                && m["upload_id"] == file.id.as_str()
            {
                found = Some(FileFailure {
                    error_code: m["error_code"]
                        .as_str()
                        .unwrap_or("ERR_PROCESSING_FAILED")
                        .to_string(),
                    message: m["message"].as_str().unwrap_or_default().to_string(),
                });
            }
        }
    }
    Ok(found)
}

/// The last `monitoring_update` of each file of `upload_id` that ended its
/// processing (`status` `success` or `error`), exactly as the socket sent it, by
/// file session id: what a client that missed it would have read.
pub async fn final_messages(
    db: &Db,
    upload_id: &str,
) -> Result<std::collections::HashMap<String, Value>, sqlx::Error> {
    let mut found = std::collections::HashMap::new();
    let mut after = 0;
    loop {
        let page = db.messages_after(upload_id, after, 500).await?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = *last;
        for (_, text) in &page {
            let Ok(v) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            let m = &v["message"];
            if v["type"] == "monitoring_update"
                && (m["status"] == "success" || m["status"] == "error")
                && let Some(file) = m["upload_id"].as_str()
            {
                found.insert(file.to_string(), v.clone());
            }
        }
    }
    Ok(found)
}
