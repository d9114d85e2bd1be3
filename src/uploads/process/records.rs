//! `creating_records`: one Object Record per saved file, in the upload's class,
//! the file in its document field; inserted in batches, and a retried job skips
//! the ones already there (records are unique per file session and entry).

use serde_json::{Map, json};

use super::super::failure::PipelineFailure;
use super::super::monitor::Monitor;
use super::save::Saved;
use crate::db::Db;
use crate::db::records::NewUploadRecord;
use crate::db::uploads::UploadFileRow;
use crate::domain::{EventSource, Step};

/// Records inserted per statement.
pub const RECORD_BATCH: usize = 500;

/// The step this stage reports under.
pub const STEP: Step = Step::CreatingRecords;

/// Where the records go: the upload's class, owner and document field.
pub struct Target {
    object_class_id: i64,
    owner_id: i64,
    field_alias: String,
}

impl Target {
    /// Loads the upload and its field; either may have been deleted meanwhile.
    pub async fn load(db: &Db, file: &UploadFileRow) -> Result<Target, PipelineFailure> {
        let upload = db
            .upload_by_id(&file.upload_id)
            .await?
            .ok_or(PipelineFailure::UploadGone)?;
        let field = db
            .field_by_id(upload.class_field_id)
            .await?
            .ok_or(PipelineFailure::FieldGone)?;
        Ok(Target {
            object_class_id: upload.object_class_id,
            owner_id: upload.creator_id,
            field_alias: field.alias,
        })
    }

    fn record(&self, s: &Saved) -> NewUploadRecord {
        let mut values = Map::new();
        values.insert(
            self.field_alias.clone(),
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
            entry_name: s.entry.name.clone(),
        }
    }
}

/// Creates the records of `saved`, reporting progress per batch.
pub async fn create(
    db: &Db,
    file: &UploadFileRow,
    target: &Target,
    saved: &[Saved],
    monitor: &mut Monitor<'_>,
) -> Result<(), PipelineFailure> {
    let total = saved.len() as u64;
    monitor.progress(STEP, 0, total).await?;
    let source = EventSource::upload(&file.upload_id, &file.id, &file.file_name);
    let mut done = 0u64;
    for chunk in saved.chunks(RECORD_BATCH) {
        let batch: Vec<NewUploadRecord> = chunk.iter().map(|s| target.record(s)).collect();
        db.insert_upload_records(
            target.object_class_id,
            target.owner_id,
            &file.id,
            &batch,
            &source,
        )
        .await?;
        done += chunk.len() as u64;
        monitor.progress(STEP, done, total).await?;
    }
    Ok(())
}
