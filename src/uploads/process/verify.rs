//! Open the archive as uploaded, where it is: one HEAD, then ranged reads of that
//! version only ([`RangedObject`]); nothing is copied to local disk. A retry that
//! finds it already moved to quarantine (an earlier attempt found a threat and
//! failed before reporting) reports the infection again instead of a missing file.

use std::sync::Arc;

use super::super::Uploads;
use super::super::failure::PipelineFailure;
use super::files_prefix;
use super::scan::quarantine_key;
use crate::db::uploads::UploadFileRow;
use crate::store::RangedObject;
use intake_archive::ExtractError;

/// `file`'s object, ready to be read by ranges.
pub async fn open(
    up: &Uploads,
    file: &UploadFileRow,
) -> Result<Arc<RangedObject>, PipelineFailure> {
    let opened = RangedObject::open(Arc::clone(&up.store), &file.s3_key)
        .await
        .map_err(PipelineFailure::from_store)?;
    if let Some(object) = opened {
        return Ok(Arc::new(object));
    }
    if matches!(up.store.head(&quarantine_key(file)).await, Ok(Some(_))) {
        let _ = up.store.delete_prefix(&files_prefix(file)).await;
        return Err(PipelineFailure::AlreadyQuarantined);
    }
    Err(PipelineFailure::FileMissing)
}

/// A failure reading `object`: the store's own when a read met one (the archive
/// reader reports it only as an I/O error), else the validator's.
pub fn read_failure(object: &RangedObject, e: ExtractError) -> PipelineFailure {
    match object.take_failure() {
        Some(store) => PipelineFailure::from_store(store),
        None => PipelineFailure::from_archive(e),
    }
}
