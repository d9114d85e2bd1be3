//! Open the archive with every safety check on its directory (the validator in
//! the `intake-archive` crate, reading the object by ranges off the async executor;
//! before the scan), report
//! how many files it holds (`extracting_file`, after the scan), and stream its entries, one blocking thread
//! inflating them as the savers ask for more: small ones into memory, within the node's
//! byte budget (`memory_budget`), the others into temp files, at most
//! `save_concurrency` of those at once per job.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::super::Uploads;
use super::super::failure::PipelineFailure;
use super::super::monitor::Monitor;
use super::verify::read_failure;
use crate::config::ArchiveSettings;
use crate::domain::{AvStatus, Step};
use crate::store::RangedObject;
use intake_archive::{
    ArchiveSource, EntryInfo, ExtractError, ExtractLimits, ExtractedFile, SafeArchive,
};

/// Where an inflated entry's bytes are.
pub enum Body {
    /// A temp file, removed once the entry is saved; holds one of the job's temp
    /// file slots until dropped.
    File(PathBuf, OwnedSemaphorePermit),
    /// In memory, holding its room in the node's budget until dropped.
    Memory(Bytes, OwnedSemaphorePermit),
}

/// One inflated entry.
pub type Extracted = (EntryInfo, ExtractedFile, Body);

/// The validator's limits from the settings.
pub fn limits(settings: &ArchiveSettings) -> ExtractLimits {
    ExtractLimits {
        max_entries: settings.max_archive_entries,
        max_total_bytes: settings.max_archive_bytes,
        max_entry_bytes: settings.max_entry_bytes,
        max_ratio: settings.max_compression_ratio,
    }
}

/// Opens and validates the archive in the store: every structural check (limits,
/// names, layout, encryption, ratios) on its directory and headers, read by ranges,
/// before any scan, so a refused archive costs milliseconds with or without clamd.
pub async fn validate(
    up: &Uploads,
    object: &Arc<RangedObject>,
) -> Result<SafeArchive, PipelineFailure> {
    let limits = limits(&up.settings.archive);
    let source: Arc<dyn ArchiveSource> = Arc::clone(object) as Arc<dyn ArchiveSource>;
    tokio::task::spawn_blocking(move || SafeArchive::from_source(source, limits))
        .await?
        .map_err(|e| read_failure(object, e))
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

/// Where [`stream`] puts entries: small ones in memory, the rest in temp files.
pub struct Placement {
    /// Directory of the temp files.
    pub tmp: PathBuf,
    /// Entries declaring at most this many bytes go to memory (0: none, not even
    /// empty ones).
    pub memory_entry_max: u64,
    /// The node's room for entries in memory, in bytes.
    pub memory: Arc<Semaphore>,
    /// The job's temp file slots: entries in temp files not yet saved.
    pub files: Arc<Semaphore>,
}

/// Inflates every entry on a blocking thread, at most `depth` ahead of the
/// consumer, where `placement` says; stops at the first failure (which it sends).
pub fn stream(
    mut archive: SafeArchive,
    placement: Placement,
    depth: usize,
) -> (
    mpsc::Receiver<Result<Extracted, ExtractError>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(depth.max(1));
    let entries = archive.entries().to_vec();
    let runtime = tokio::runtime::Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        for entry in entries {
            let in_memory =
                placement.memory_entry_max > 0 && entry.declared_size <= placement.memory_entry_max;
            let result = if in_memory {
                // The declared size bounds what extraction writes (it refuses more).
                let room = u32::try_from(entry.declared_size).unwrap_or(u32::MAX);
                let Ok(permit) =
                    runtime.block_on(Arc::clone(&placement.memory).acquire_many_owned(room))
                else {
                    break;
                };
                let mut bytes = Vec::with_capacity(usize::try_from(room).unwrap_or(0));
                archive
                    .extract_into(&entry, &mut bytes)
                    .map(|f| (entry, f, Body::Memory(Bytes::from(bytes), permit)))
            } else {
                let Ok(slot) = runtime.block_on(Arc::clone(&placement.files).acquire_owned())
                else {
                    break;
                };
                let dest = placement.tmp.join(format!("entry-{}", entry.index));
                archive
                    .extract_to(&entry, &dest)
                    .map(|f| (entry, f, Body::File(dest, slot)))
            };
            let failed = result.is_err();
            if tx.blocking_send(result).is_err() || failed {
                break;
            }
        }
    });
    (rx, task)
}
