//! The body of a `process_upload_file` job, one file per step in the order the
//! client sees them: [`verify`] opens the archive as uploaded, in the store (it is
//! read there by ranges, never copied), [`extract`] validates its structure with
//! every safety check (before any scan: a refused archive costs milliseconds),
//! [`scan`] streams it to the antivirus, [`extract`] reports it, [`save`] extracts,
//! scans and stores each file (`saving_files`), and [`records`] creates one record
//! per file (`creating_records`). Every step is safe to run again: object keys are
//! deterministic and records are unique per (file, entry).

pub mod extract;
pub mod records;
pub mod save;
pub mod scan;
pub mod verify;

use super::Uploads;
use super::failure::PipelineFailure;
use super::monitor::Monitor;
use crate::db::uploads::UploadFileRow;
use crate::domain::{AvStatus, Step};
use crate::telemetry::timed;

/// The prefix under which a file session's extracted files are stored.
pub fn files_prefix(file: &UploadFileRow) -> String {
    format!("uploads/{}/{}/files/", file.upload_id, file.id)
}

/// Runs the job for `file`. Returns the number of records the file produced.
pub async fn run(
    up: &Uploads,
    file: &UploadFileRow,
    monitor: &mut Monitor<'_>,
) -> Result<u64, PipelineFailure> {
    let target = records::Target::load(&up.db, file).await?;
    let tmp_root = &up.settings.tmp_dir;
    std::fs::create_dir_all(tmp_root).map_err(PipelineFailure::io)?;
    let tmp = tempfile::TempDir::with_prefix_in("job-", tmp_root).map_err(PipelineFailure::io)?;

    monitor.monitoring(scan::STEP, scan::started(up)).await?;
    let object = timed("open", verify::open(up, file)).await?;
    // Structure first: a refused archive never ties up the scanner.
    let archive = timed("validate", extract::validate(up, &object)).await?;
    let av_status = timed(
        Step::AntivirusScan.as_str(),
        scan::archive(up, file, &object, monitor),
    )
    .await?;
    timed(
        Step::ExtractingFile.as_str(),
        extract::report(&archive, av_status, monitor),
    )
    .await?;
    let total = archive.entries().len() as u64;
    let saved = match timed(
        Step::SavingFiles.as_str(),
        save::all(up, file, &object, archive, tmp.path(), monitor),
    )
    .await
    {
        Ok(saved) => saved,
        Err(e) => {
            // Nothing of a refused archive stays in the store.
            if !e.is_transient() {
                let _ = up.store.delete_prefix(&files_prefix(file)).await;
            }
            return Err(e);
        }
    };
    if up.scanner.is_some() {
        // Every file passed its own scan.
        monitor.set_av_status(AvStatus::Clean).await?;
    }
    timed(
        Step::CreatingRecords.as_str(),
        records::create(&up.db, file, &target, &saved, monitor),
    )
    .await?;
    crate::telemetry::processed(file.file_size.max(0) as u64, total, saved.len() as u64);
    Ok(total)
}
