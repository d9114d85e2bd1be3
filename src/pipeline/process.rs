//! The body of a `process_upload_file` job, in the order the client sees it:
//! download the archive, scan it, open it safely, extract and scan each file and
//! save it to the object store (`saving_files`), create one record per file
//! (`creating_records`), then report success. Every step is safe to run again:
//! object keys are deterministic and records are unique per (file, entry).

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use intake_archive::{EntryInfo, ExtractError, ExtractLimits, ExtractedFile, SafeArchive};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::monitor::Monitor;
use crate::db::records::NewUploadRecord;
use crate::db::uploads::UploadFileRow;
use crate::http::AppState;
use crate::scan::{ScanError, Verdict};
use crate::store::StoreError;

/// Records inserted per statement.
pub const RECORD_BATCH: usize = 500;

/// What a job carries.
#[derive(Debug, Deserialize)]
pub struct JobPayload {
    /// The file session to process.
    pub upload_file_id: String,
}

/// Why a job stopped early.
#[derive(Debug)]
pub enum JobError {
    /// Try again later: a dependency (S3, clamd, database, local disk) failed.
    Transient { code: &'static str, message: String },
    /// Give up: the input is bad (a virus, an unsafe archive) or gone.
    Final {
        step: &'static str,
        code: &'static str,
        message: String,
        extra: Map<String, Value>,
    },
}

impl JobError {
    fn final_(step: &'static str, code: &'static str, message: impl Into<String>) -> JobError {
        JobError::Final {
            step,
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::Transient {
            code: "ERR_DATABASE_UNAVAILABLE",
            message: format!("database: {e}"),
        }
    }
}

fn store_err(e: StoreError) -> JobError {
    if e.is_not_found() {
        JobError::final_(
            "antivirus_scan",
            "ERR_FILE_MISSING",
            "The uploaded file is no longer in the object store.",
        )
    } else {
        JobError::Transient {
            code: "ERR_STORAGE_UNAVAILABLE",
            message: format!("object store: {e}"),
        }
    }
}

fn scan_err(e: ScanError, step: &'static str, what: &str) -> JobError {
    match e {
        ScanError::SizeLimitExceeded => JobError::final_(
            step,
            "ERR_SCAN_TOO_LARGE",
            format!(
                "{what} is larger than the antivirus scanner accepts, so it cannot be verified."
            ),
        ),
        e => JobError::Transient {
            code: "ERR_SCANNER_UNAVAILABLE",
            message: format!("antivirus: {e}"),
        },
    }
}

fn extract_err(e: ExtractError) -> JobError {
    if e.is_final() {
        JobError::final_("extracting_file", e.code(), e.to_string())
    } else {
        JobError::Transient {
            code: "ERR_LOCAL_IO",
            message: e.to_string(),
        }
    }
}

/// One saved entry.
struct Saved {
    entry: EntryInfo,
    file: ExtractedFile,
    key: String,
}

/// Whether a verdict on the whole archive is only clamd giving up on its limits
/// (every file is then scanned on its own, which decides).
fn inconclusive(signature: &str) -> bool {
    signature.starts_with("Heuristics.Limits.Exceeded")
}

/// The prefix under which a file session's extracted files are stored.
pub fn files_prefix(file: &UploadFileRow) -> String {
    format!("uploads/{}/{}/files/", file.upload_id, file.id)
}

/// Runs the job for `file`. Returns the number of records the file produced.
pub async fn process(
    state: &AppState,
    file: &UploadFileRow,
    monitor: &mut Monitor<'_>,
) -> Result<u64, JobError> {
    let db = &state.db;
    let settings = &state.settings;
    let upload = db.upload_by_id(&file.upload_id).await?.ok_or_else(|| {
        JobError::final_(
            "upload_complete",
            "ERR_UPLOAD_GONE",
            "The upload no longer exists.",
        )
    })?;
    let field = db
        .field_by_id(upload.class_field_id)
        .await?
        .ok_or_else(|| {
            JobError::final_(
                "creating_records",
                "ERR_FIELD_GONE",
                "The document field no longer exists.",
            )
        })?;

    let tmp_root = settings.data_dir.join("tmp");
    std::fs::create_dir_all(&tmp_root).map_err(|e| JobError::Transient {
        code: "ERR_LOCAL_IO",
        message: e.to_string(),
    })?;
    let tmp =
        tempfile::TempDir::with_prefix_in("job-", &tmp_root).map_err(|e| JobError::Transient {
            code: "ERR_LOCAL_IO",
            message: e.to_string(),
        })?;
    let archive_path = tmp.path().join("archive.zip");

    // 1. Antivirus on the archive as uploaded.
    let scanner = state.scanner.clone();
    monitor
        .monitoring(
            "antivirus_scan",
            json!({
                "av-status": if scanner.is_some() { "scanning" } else { "skipped" },
                "status": "in_progress",
                "message": "Scanning the uploaded file",
            }),
        )
        .await?;
    if let Err(e) = state.store.get_to_file(&file.s3_key, &archive_path).await {
        // A retry after the quarantine was half done: the archive already moved.
        let quarantined = format!("quarantine/{}", file.s3_key);
        if e.is_not_found() && matches!(state.store.head(&quarantined).await, Ok(Some(_))) {
            let _ = state.store.delete_prefix(&files_prefix(file)).await;
            let mut extra = Map::new();
            extra.insert("av-status".into(), json!("infected"));
            return Err(JobError::Final {
                step: "antivirus_scan",
                code: "ERR_INFECTED",
                message: "The uploaded file was quarantined as infected. No records were created."
                    .into(),
                extra,
            });
        }
        return Err(store_err(e));
    }
    let mut av_status = "skipped";
    if let Some(scanner) = &scanner {
        let verdict = match scanner.scan_file(&archive_path).await {
            Ok(v) => Some(v),
            // Too big to stream whole: each file is scanned on its own below.
            Err(ScanError::SizeLimitExceeded) => None,
            Err(e) => return Err(scan_err(e, "antivirus_scan", "The archive")),
        };
        match verdict {
            Some(Verdict::Infected { signature }) if !inconclusive(&signature) => {
                return Err(infected(state, file, &signature, None).await);
            }
            Some(Verdict::Clean) => {
                av_status = "clean";
                monitor
                    .monitoring(
                        "antivirus_scan",
                        // Not "success": clients take that status as the end of processing.
                        json!({ "av-status": "clean", "status": "in_progress", "message": "No threats found in the archive" }),
                    )
                    .await?;
            }
            _ => {
                av_status = "scanning";
                monitor
                    .monitoring(
                        "antivirus_scan",
                        json!({
                            "av-status": "scanning",
                            "status": "in_progress",
                            "message": "The archive is too large to scan whole; scanning each file",
                        }),
                    )
                    .await?;
            }
        }
    }

    // 2. Open the archive: every safety check on its directory happens here.
    let limits = ExtractLimits {
        max_entries: settings.max_archive_entries,
        max_total_bytes: settings.max_archive_bytes,
        max_entry_bytes: settings.max_entry_bytes,
        max_ratio: settings.max_compression_ratio,
    };
    let path = archive_path.clone();
    let archive = tokio::task::spawn_blocking(move || SafeArchive::open(&path, limits))
        .await
        .map_err(|e| JobError::Transient {
            code: "ERR_INTERNAL",
            message: e.to_string(),
        })?
        .map_err(extract_err)?;
    let entries: Vec<EntryInfo> = archive.entries().to_vec();
    let total = entries.len() as u64;
    monitor
        .monitoring(
            "extracting_file",
            json!({
                "av-status": av_status,
                "status": "in_progress",
                "extracted_files": 0,
                "total_files": total,
                "message": format!("Extracting {total} files"),
            }),
        )
        .await?;

    // 3. Extract (one blocking thread, streaming), scan and save (concurrently).
    let saved = match save_all(
        state,
        file,
        archive,
        tmp.path().to_path_buf(),
        monitor,
        total,
    )
    .await
    {
        Ok(saved) => saved,
        Err(e) => {
            // Nothing of a refused archive stays in the store.
            if matches!(e, JobError::Final { .. }) {
                let _ = state.store.delete_prefix(&files_prefix(file)).await;
            }
            return Err(e);
        }
    };
    if scanner.is_some() {
        // Every file passed its own scan.
        monitor.set_av_status("clean");
    }

    // 4. Records, in batches; a retried job skips the ones already there.
    monitor.progress("creating_records", 0, total).await?;
    let mut done = 0u64;
    for chunk in saved.chunks(RECORD_BATCH) {
        let batch: Vec<NewUploadRecord> = chunk
            .iter()
            .map(|s| {
                let mut values = Map::new();
                values.insert(
                    field.alias.clone(),
                    json!({
                        "key": s.key,
                        "name": s.entry.base_name,
                        "path": s.entry.name,
                        "size": s.file.size,
                        "content_type": s.file.content_type,
                        "sha256": s.file.sha256,
                    }),
                );
                NewUploadRecord {
                    object_name: s.entry.base_name.chars().take(255).collect(),
                    field_values: values,
                    entry_index: s.entry.index as i64,
                }
            })
            .collect();
        db.insert_upload_records(upload.object_class_id, upload.creator_id, &file.id, &batch)
            .await?;
        done += chunk.len() as u64;
        monitor.progress("creating_records", done, total).await?;
    }
    Ok(total)
}

/// Extracts every entry on a blocking thread and, as they come, scans and saves
/// them with bounded concurrency. Memory stays bounded: entries go through temp
/// files, and at most a few are in flight.
async fn save_all(
    state: &AppState,
    file: &UploadFileRow,
    mut archive: SafeArchive,
    tmp: PathBuf,
    monitor: &mut Monitor<'_>,
    total: u64,
) -> Result<Vec<Saved>, JobError> {
    let concurrency = state.settings.save_concurrency as usize;
    let (tx, mut rx) =
        mpsc::channel::<Result<(EntryInfo, ExtractedFile, PathBuf), ExtractError>>(concurrency);
    let entries = archive.entries().to_vec();
    let extractor = tokio::task::spawn_blocking(move || {
        for entry in entries {
            let dest = tmp.join(format!("entry-{}", entry.index));
            let result = archive.extract_to(&entry, &dest).map(|f| (entry, f, dest));
            let failed = result.is_err();
            if tx.blocking_send(result).is_err() || failed {
                break;
            }
        }
    });
    let items = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let prefix = files_prefix(file);
    let scanner = state.scanner.clone();
    let mut saving = items
        .map(|item| {
            let prefix = prefix.clone();
            let scanner = scanner.clone();
            async move {
                let (entry, extracted, path) = item.map_err(extract_err)?;
                let result = save_one(state, scanner, &prefix, &entry, &extracted, &path).await;
                let _ = tokio::fs::remove_file(&path).await;
                result.map(|key| Saved {
                    entry,
                    file: extracted,
                    key,
                })
            }
        })
        .buffer_unordered(concurrency);
    let mut saved = Vec::with_capacity(total as usize);
    monitor.progress("saving_files", 0, total).await?;
    while let Some(result) = saving.next().await {
        match result {
            Ok(s) => {
                saved.push(s);
                monitor
                    .progress("saving_files", saved.len() as u64, total)
                    .await?;
            }
            Err(SaveError::Job(e)) => return Err(e),
            Err(SaveError::Infected { name, signature }) => {
                drop(saving);
                return Err(infected(state, file, &signature, Some(&name)).await);
            }
        }
    }
    drop(saving);
    let _ = extractor.await;
    if (saved.len() as u64) < total {
        return Err(JobError::Transient {
            code: "ERR_INTERNAL",
            message: "extraction stopped early".into(),
        });
    }
    saved.sort_by_key(|s| s.entry.index);
    Ok(saved)
}

enum SaveError {
    Job(JobError),
    Infected { name: String, signature: String },
}

impl From<JobError> for SaveError {
    fn from(e: JobError) -> Self {
        SaveError::Job(e)
    }
}

async fn save_one(
    state: &AppState,
    scanner: Option<Arc<dyn crate::scan::Scanner>>,
    prefix: &str,
    entry: &EntryInfo,
    extracted: &ExtractedFile,
    path: &std::path::Path,
) -> Result<String, SaveError> {
    if let Some(scanner) = scanner {
        match scanner.scan_file(path).await {
            Ok(Verdict::Clean) => {}
            Ok(Verdict::Infected { signature }) => {
                return Err(SaveError::Infected {
                    name: entry.name.clone(),
                    signature,
                });
            }
            Err(e) => {
                return Err(scan_err(
                    e,
                    "extracting_file",
                    &format!("File \u{201c}{}\u{201d}", entry.name),
                )
                .into());
            }
        }
    }
    let key = format!("{prefix}{:06}", entry.index);
    state
        .store
        .put_file(&key, path, &extracted.content_type)
        .await
        .map_err(|e| JobError::Transient {
            code: "ERR_STORAGE_UNAVAILABLE",
            message: format!("object store: {e}"),
        })?;
    Ok(key)
}

/// Quarantines an infected upload: the archive moves under `quarantine/`, any
/// file already saved from it is deleted. Returns the final error to report.
async fn infected(
    state: &AppState,
    file: &UploadFileRow,
    signature: &str,
    member: Option<&str>,
) -> JobError {
    let quarantine_key = format!("quarantine/{}", file.s3_key);
    let moved = async {
        state.store.copy(&file.s3_key, &quarantine_key).await?;
        state.store.delete(&file.s3_key).await?;
        state
            .store
            .delete_prefix(&files_prefix(file))
            .await
            .map(|_| ())
    }
    .await;
    if let Err(e) = moved {
        // Not final yet: the quarantine must happen, so try again later.
        return JobError::Transient {
            code: "ERR_STORAGE_UNAVAILABLE",
            message: format!("quarantining: {e}"),
        };
    }
    tracing::warn!(upload_file = %file.id, signature, member, "infected upload quarantined");
    let mut extra = Map::new();
    extra.insert("av-status".into(), json!("infected"));
    extra.insert("signature".into(), json!(signature));
    if let Some(m) = member {
        extra.insert("file_name".into(), json!(m));
    }
    JobError::Final {
        step: "antivirus_scan",
        code: "ERR_INFECTED",
        message: match member {
            Some(m) => format!(
                "Threat \u{201c}{signature}\u{201d} found in \u{201c}{m}\u{201d}. No records were created."
            ),
            None => format!(
                "Threat \u{201c}{signature}\u{201d} found in the uploaded file. No records were created."
            ),
        },
        extra,
    }
}
