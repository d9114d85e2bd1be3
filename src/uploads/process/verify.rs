//! Fetch the archive as uploaded to local scratch space. A retry that finds it
//! already moved to quarantine (an earlier attempt found a threat and failed
//! before reporting) reports the infection again instead of a missing file.

use std::path::Path;

use super::super::Uploads;
use super::super::failure::PipelineFailure;
use super::files_prefix;
use super::scan::quarantine_key;
use crate::db::uploads::UploadFileRow;

/// Downloads `file`'s object to `dest`.
pub async fn fetch(up: &Uploads, file: &UploadFileRow, dest: &Path) -> Result<(), PipelineFailure> {
    let Err(e) = up.store.get_to_file(&file.s3_key, dest).await else {
        return Ok(());
    };
    if e.is_not_found() && matches!(up.store.head(&quarantine_key(file)).await, Ok(Some(_))) {
        let _ = up.store.delete_prefix(&files_prefix(file)).await;
        return Err(PipelineFailure::AlreadyQuarantined);
    }
    Err(PipelineFailure::from_store(e))
}
