//! What the client sees of a job: `monitoring_update` and `progress_update`
//! messages, appended to the upload's log (and so delivered live and replayable).
//! The attempt count and av-status continue from the file's progress columns, so a
//! retried or rescued job on any node keeps counting up. Progress is throttled to a
//! few messages a second per step; the last one of a step is always sent.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::db::Db;
use crate::db::progress::{FileProgress, ProgressChange, RenderUpdate};
use crate::db::uploads::UploadFileRow;
use crate::domain::{AvStatus, Step};
use crate::live::{self, Hub};
use crate::protocol::{monitoring_update, progress_update};

/// The smallest gap between two progress messages of one step.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// Publishes the messages of one uploaded file's processing.
pub struct Monitor<'a> {
    db: &'a Db,
    hub: &'a Hub,
    upload_id: String,
    session_id: String,
    temp_upload_id: String,
    av_status: AvStatus,
    success_reported: bool,
    last_progress: HashMap<Step, Instant>,
}

impl<'a> Monitor<'a> {
    /// A monitor for `file` that continues from its stored progress.
    pub async fn resume(
        db: &'a Db,
        hub: &'a Hub,
        file: &UploadFileRow,
    ) -> Result<Monitor<'a>, sqlx::Error> {
        let progress = db.file_progress(&file.id).await?.unwrap_or(FileProgress {
            attempt: 0,
            av_status: AvStatus::Skipped,
            success_reported: false,
        });
        Ok(Monitor {
            db,
            hub,
            upload_id: file.upload_id.clone(),
            session_id: file.id.clone(),
            temp_upload_id: file.temp_upload_id.clone(),
            av_status: progress.av_status,
            success_reported: progress.success_reported,
            last_progress: HashMap::new(),
        })
    }

    /// A `monitoring_update` for `step` with the given extra fields (an
    /// `av-status` among them is remembered).
    pub async fn monitoring(&mut self, step: Step, fields: Value) -> Result<(), sqlx::Error> {
        let (change, render) = self.update(step, fields);
        self.db
            .append_file_update(&self.upload_id, &self.session_id, change, render)
            .await?;
        self.sent(change);
        Ok(())
    }

    /// The parts of a `monitoring_update` for `step` that a caller writes in its
    /// own transaction (a job's last message, written as the job settles): what it
    /// changes in the file's progress, and the message given its attempt number.
    /// Call [`Monitor::sent`] once it is committed.
    pub fn update(&self, step: Step, fields: Value) -> (ProgressChange, RenderUpdate<'static>) {
        let mut map = Map::new();
        map.insert("step_name".into(), json!(step.as_str()));
        map.insert("upload_id".into(), json!(self.session_id));
        map.insert("temp_upload_id".into(), json!(self.temp_upload_id));
        if let Value::Object(extra) = fields {
            map.extend(extra);
        }
        let av_status = map
            .get("av-status")
            .and_then(Value::as_str)
            .and_then(AvStatus::parse);
        let success = map.get("status").and_then(Value::as_str) == Some("success");
        let change = ProgressChange { av_status, success };
        let render = move |attempt: i64| monitoring_update(map, attempt as u64).to_string();
        (change, Box::new(render))
    }

    /// An update made by [`Monitor::update`] was committed: wake the sockets.
    pub fn sent(&mut self, change: ProgressChange) {
        self.hub.notify(&self.upload_id);
        if let Some(av) = change.av_status {
            self.av_status = av;
        }
        self.success_reported |= change.success;
    }

    /// The antivirus status last reported (`skipped` before any).
    pub fn av_status(&self) -> AvStatus {
        self.av_status
    }

    /// Whether the file's final success was reported (by this or an earlier attempt).
    pub fn success_reported(&self) -> bool {
        self.success_reported
    }

    /// Records the antivirus status without a message (every file was scanned).
    pub async fn set_av_status(&mut self, status: AvStatus) -> Result<(), sqlx::Error> {
        self.db.set_av_status(&self.session_id, status).await?;
        self.av_status = status;
        Ok(())
    }

    /// A `progress_update`, unless one for this step went out too recently.
    /// `progress == total` always goes out (with `is_complete: true`).
    pub async fn progress(
        &mut self,
        step: Step,
        progress: u64,
        total: u64,
    ) -> Result<(), sqlx::Error> {
        let complete = progress >= total;
        let now = Instant::now();
        if !complete
            && let Some(last) = self.last_progress.get(&step)
            && now.duration_since(*last) < PROGRESS_INTERVAL
        {
            return Ok(());
        }
        self.last_progress.insert(step, now);
        let message = progress_update(step.as_str(), &self.session_id, complete, total, progress);
        live::publish(self.db, self.hub, &self.upload_id, &message)
            .await
            .map(|_| ())
    }
}
