//! `saving_files`: as entries come out of the archive, scan each on its own and
//! put it in the object store under a deterministic key, with bounded concurrency.
//! Memory stays bounded: entries go through temp files, a few at a time.

use std::path::Path;

use futures::StreamExt;

use super::super::Uploads;
use super::super::failure::PipelineFailure;
use super::super::monitor::Monitor;
use super::extract::{self, Extracted};
use super::{files_prefix, scan};
use crate::db::uploads::UploadFileRow;
use crate::domain::Step;
use intake_archive::{EntryInfo, ExtractedFile, SafeArchive};

/// The step this stage reports under.
pub const STEP: Step = Step::SavingFiles;

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
    archive: SafeArchive,
    tmp: &Path,
    monitor: &mut Monitor<'_>,
) -> Result<Vec<Saved>, PipelineFailure> {
    let concurrency = up.settings.jobs.save_concurrency as usize;
    let total = archive.entries().len() as u64;
    let (mut rx, extractor) = extract::stream(archive, tmp.to_path_buf(), concurrency);
    let items = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let prefix = files_prefix(file);
    let mut saving = items
        .map(|item| {
            let prefix = prefix.as_str();
            async move { one(up, prefix, item.map_err(PipelineFailure::from)?).await }
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
    let (entry, extracted, path) = item;
    let result = async {
        if let Some(signature) = scan::entry(up, &entry.name, &path).await? {
            return Ok(Outcome::Infected {
                name: entry.name.clone(),
                signature,
            });
        }
        let key = format!("{prefix}{:06}", entry.index);
        up.store
            .put_file(&key, &path, &extracted.content_type)
            .await
            .map_err(|e| PipelineFailure::Storage(e.to_string()))?;
        Ok(Outcome::Saved(Saved {
            entry: entry.clone(),
            file: extracted.clone(),
            key,
        }))
    }
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    result
}
