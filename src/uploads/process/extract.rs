//! Open the archive with every safety check on its directory (the validator in
//! the `intake-archive` crate, off the async executor; before the scan), report
//! how many files it holds (`extracting_file`, after the scan), and stream its entries, one blocking thread
//! inflating them into temp files as the savers ask for more.

use std::path::{Path, PathBuf};

use serde_json::json;
use tokio::sync::mpsc;

use super::super::Uploads;
use super::super::failure::PipelineFailure;
use super::super::monitor::Monitor;
use crate::config::ArchiveSettings;
use crate::domain::{AvStatus, Step};
use intake_archive::{EntryInfo, ExtractError, ExtractLimits, ExtractedFile, SafeArchive};

/// One inflated entry in a temp file.
pub type Extracted = (EntryInfo, ExtractedFile, PathBuf);

/// The validator's limits from the settings.
pub fn limits(settings: &ArchiveSettings) -> ExtractLimits {
    ExtractLimits {
        max_entries: settings.max_archive_entries,
        max_total_bytes: settings.max_archive_bytes,
        max_entry_bytes: settings.max_entry_bytes,
        max_ratio: settings.max_compression_ratio,
    }
}

/// Opens and validates the archive at `path`: every structural check (limits,
/// names, layout, encryption, ratios) on its directory and headers, before any
/// scan, so a refused archive costs milliseconds with or without clamd.
pub async fn validate(up: &Uploads, path: &Path) -> Result<SafeArchive, PipelineFailure> {
    let limits = limits(&up.settings.archive);
    let path = path.to_path_buf();
    Ok(tokio::task::spawn_blocking(move || SafeArchive::open(&path, limits)).await??)
}

/// Reports the validated archive's file count (`extracting_file`), after its scan.
pub async fn report(
    archive: &SafeArchive,
    av_status: AvStatus,
    monitor: &mut Monitor<'_>,
) -> Result<(), PipelineFailure> {
    let total = archive.entries().len() as u64;
    monitor
        .monitoring(
            Step::ExtractingFile,
            json!({
                "av-status": av_status.as_str(),
                "status": "in_progress",
                "extracted_files": 0,
                "total_files": total,
                "message": format!("Extracting {total} files"),
            }),
        )
        .await?;
    Ok(())
}

/// Inflates every entry into `tmp` on a blocking thread, at most `depth` ahead
/// of the consumer; stops at the first failure (which it sends).
pub fn stream(
    mut archive: SafeArchive,
    tmp: PathBuf,
    depth: usize,
) -> (
    mpsc::Receiver<Result<Extracted, ExtractError>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(depth.max(1));
    let entries = archive.entries().to_vec();
    let task = tokio::task::spawn_blocking(move || {
        for entry in entries {
            let dest = tmp.join(format!("entry-{}", entry.index));
            let result = archive.extract_to(&entry, &dest).map(|f| (entry, f, dest));
            let failed = result.is_err();
            if tx.blocking_send(result).is_err() || failed {
                break;
            }
        }
    });
    (rx, task)
}
