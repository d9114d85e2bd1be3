//! `saving_files`: as entries come out of the archive, scan each on its own and
//! put it in the object store under a deterministic key, with bounded concurrency.
//! Memory stays bounded: a few entries at a time, small ones in memory within the
//! node's byte budget, the others through temp files.

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;

use super::super::Uploads;
use super::super::failure::PipelineFailure;
use super::super::monitor::Monitor;
use super::extract::{self, Body, Extracted};
use super::verify::read_failure;
use super::{files_prefix, scan};
use crate::db::uploads::UploadFileRow;
use crate::domain::Step;
use crate::store::RangedObject;
use intake_archive::{EntryInfo, ExtractedFile, SafeArchive};

/// The step this stage reports under.
pub const STEP: Step = Step::SavingFiles;

/// Entries in flight per job, as a multiple of `save_concurrency` (which alone bounds
/// the ones in temp files). Measured on the embedded store with 10,000 small entries:
/// 8 in flight, 1.5–1.8 s; 16, 0.9 s; 32, 0.9 s and a third more peak RSS
/// (docs/PERFORMANCE.md).
pub const MEMORY_FANOUT: usize = 2;

/// One saved entry.
pub struct Saved {
    /// The archive entry.
    pub entry: EntryInfo,
    /// What was extracted.
    pub file: ExtractedFile,
    /// Its object key.
    pub key: String,
}

/// How one entry ended.
enum Outcome {
    Saved(Saved),
    Infected { name: String, signature: String },
}

/// Extracts, scans and saves every entry; returns them in archive order.
pub async fn all(
    up: &Uploads,
    file: &UploadFileRow,
    object: &RangedObject,
    archive: SafeArchive,
    tmp: &Path,
    monitor: &mut Monitor<'_>,
) -> Result<Vec<Saved>, PipelineFailure> {
    let files = (up.settings.jobs.save_concurrency as usize).max(1);
    let concurrency = files * MEMORY_FANOUT;
    let total = archive.entries().len() as u64;
    let placement = extract::Placement {
        tmp: tmp.to_path_buf(),
        memory_entry_max: up.settings.jobs.memory_entry_max,
        memory: Arc::clone(&up.memory),
        files: Arc::new(tokio::sync::Semaphore::new(files)),
    };
    let (mut rx, extractor) = extract::stream(archive, placement, concurrency);
    let items = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let prefix = files_prefix(file);
    let mut saving = items
        .map(|item| {
            let prefix = prefix.as_str();
            async move {
                let item = item.map_err(|e| read_failure(object, e))?;
                one(up, prefix, item).await
            }
        })
        .buffer_unordered(concurrency);
    let mut saved = Vec::with_capacity(total as usize);
    monitor.progress(STEP, 0, total).await?;
    while let Some(outcome) = saving.next().await {
        match outcome? {
            Outcome::Saved(s) => {
                saved.push(s);
                monitor.progress(STEP, saved.len() as u64, total).await?;
            }
            Outcome::Infected { name, signature } => {
                drop(saving);
                return Err(scan::quarantine(up, file, &signature, Some(&name)).await);
            }
        }
    }
    drop(saving);
    let _ = extractor.await;
    if (saved.len() as u64) < total {
        return Err(PipelineFailure::Internal("extraction stopped early".into()));
    }
    saved.sort_by_key(|s| s.entry.index);
    Ok(saved)
}

/// Scans and saves one extracted entry; its temp file is removed either way.
async fn one(up: &Uploads, prefix: &str, item: Extracted) -> Result<Outcome, PipelineFailure> {
    let (entry, extracted, body) = item;
    let result = async {
        if let Some(signature) = scan::entry(up, &entry.name, &body).await? {
            return Ok(Outcome::Infected {
                name: entry.name.clone(),
                signature,
            });
        }
        let key = format!("{prefix}{:06}", entry.index);
        let put = match &body {
            Body::File(path, _) => up.store.put_file(&key, path, &extracted.content_type),
            Body::Memory(bytes, _) => {
                up.store
                    .put_bytes(&key, bytes.clone(), &extracted.content_type)
            }
        };
        put.await
            .map_err(|e| PipelineFailure::Storage(e.to_string()))?;
        Ok(Outcome::Saved(Saved {
            entry: entry.clone(),
            file: extracted.clone(),
            key,
        }))
    }
    .await;
    if let Body::File(path, _) = &body {
        let _ = tokio::fs::remove_file(path).await;
    }
    result
}
