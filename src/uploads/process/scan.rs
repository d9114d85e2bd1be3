//! Antivirus: the archive as uploaded first (`antivirus_scan`), then each extracted
//! file on its own (called by `save`). Only clamd's exact `OK` is clean. An infected
//! upload is quarantined: the archive moves under `quarantine/` and every file
//! already saved from it is deleted.

use std::sync::Arc;

use serde_json::{Value, json};

use super::super::Uploads;
use super::super::failure::PipelineFailure;
use super::super::monitor::Monitor;
use super::extract::Body;
use super::files_prefix;
use crate::db::uploads::UploadFileRow;
use crate::domain::{AvStatus, Step};
use crate::scan::{ScanError, Verdict};
use crate::store::RangedObject;

/// The step this stage reports under.
pub const STEP: Step = Step::AntivirusScan;

/// Where an infected archive is moved.
pub fn quarantine_key(file: &UploadFileRow) -> String {
    format!("quarantine/{}", file.s3_key)
}

/// The fields of the first `antivirus_scan` update.
pub fn started(up: &Uploads) -> Value {
    let status = match up.scanner {
        Some(_) => AvStatus::Scanning,
        None => AvStatus::Skipped,
    };
    json!({
        "av-status": status.as_str(),
        "status": "in_progress",
        "message": "Scanning the uploaded file",
    })
}

/// Whether a verdict on the whole archive is only clamd giving up on its limits
/// (every file is then scanned on its own, which decides).
fn inconclusive(signature: &str) -> bool {
    signature.starts_with("Heuristics.Limits.Exceeded")
}

/// Scans the archive, streamed from the store into clamd; returns the av-status it
/// leaves.
pub async fn archive(
    up: &Uploads,
    file: &UploadFileRow,
    object: &Arc<RangedObject>,
    monitor: &mut Monitor<'_>,
) -> Result<AvStatus, PipelineFailure> {
    let Some(scanner) = &up.scanner else {
        return Ok(AvStatus::Skipped);
    };
    let open = || object.reader();
    let scanned = scanner.scan_reader(object.key(), object.len(), &open).await;
    if let Some(store) = object.take_failure() {
        // Reading the archive failed, not clamd.
        return Err(PipelineFailure::from_store(store));
    }
    let verdict = match scanned {
        Ok(v) => Some(v),
        // Too big to stream whole: each file is scanned on its own.
        Err(ScanError::SizeLimitExceeded) => None,
        Err(e) => return Err(PipelineFailure::from_scan(e, STEP, "The archive")),
    };
    let (status, message) = match verdict {
        Some(Verdict::Infected { signature }) if !inconclusive(&signature) => {
            return Err(quarantine(up, file, &signature, None).await);
        }
        // Not "success": clients take that status as the end of processing.
        Some(Verdict::Clean) => (AvStatus::Clean, "No threats found in the archive"),
        _ => (
            AvStatus::Scanning,
            "The archive is too large to scan whole; scanning each file",
        ),
    };
    let fields =
        json!({ "av-status": status.as_str(), "status": "in_progress", "message": message });
    monitor.monitoring(STEP, fields).await?;
    Ok(status)
}

/// Scans one extracted entry; `Ok(Some(signature))` when it is infected.
pub async fn entry(
    up: &Uploads,
    name: &str,
    body: &Body,
) -> Result<Option<String>, PipelineFailure> {
    let Some(scanner) = &up.scanner else {
        return Ok(None);
    };
    let verdict = match body {
        Body::File(path, _) => scanner.scan_file(path).await,
        Body::Memory(bytes, _) => scanner.scan_bytes(name, bytes).await,
    };
    match verdict {
        Ok(Verdict::Clean) => Ok(None),
        Ok(Verdict::Infected { signature }) => Ok(Some(signature)),
        Err(e) => Err(PipelineFailure::from_scan(
            e,
            Step::ExtractingFile,
            format!("File \u{201c}{name}\u{201d}"),
        )),
    }
}

/// Quarantines an infected upload; returns the failure to report (a transient
/// one when the store refused, since the quarantine must happen).
pub async fn quarantine(
    up: &Uploads,
    file: &UploadFileRow,
    signature: &str,
    member: Option<&str>,
) -> PipelineFailure {
    let moved = async {
        up.store.copy(&file.s3_key, &quarantine_key(file)).await?;
        up.store.delete(&file.s3_key).await?;
        up.store
            .delete_prefix(&files_prefix(file))
            .await
            .map(|_| ())
    }
    .await;
    if let Err(e) = moved {
        return PipelineFailure::Storage(format!("quarantining: {e}"));
    }
    tracing::warn!(upload_file = %file.id, signature, member, "infected upload quarantined");
    PipelineFailure::Infected {
        signature: signature.to_string(),
        member: member.map(str::to_string),
    }
}
