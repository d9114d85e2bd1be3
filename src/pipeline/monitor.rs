//! What the client sees of a job: `monitoring_update` and `progress_update`
//! messages, appended to the upload's log (and so delivered live and replayable).
//! Progress is throttled to a few messages a second per step; the last one of a
//! step is always sent.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::db::Db;
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
    attempt: u64,
    av_status: String,
    last_progress: HashMap<&'static str, Instant>,
}

impl<'a> Monitor<'a> {
    /// A monitor that continues the `attempt` count from the upload's log, so a
    /// retried or rescued job keeps counting up.
    pub async fn resume(
        db: &'a Db,
        hub: &'a Hub,
        upload_id: &str,
        session_id: &str,
        temp_upload_id: &str,
    ) -> Result<Monitor<'a>, sqlx::Error> {
        let log = db.messages_after(upload_id, 0, 1_000_000).await?;
        let mine: Vec<Value> = log
            .iter()
            .filter_map(|(_, text)| serde_json::from_str::<Value>(text).ok())
            .filter(|v| v["type"] == "monitoring_update" && v["message"]["upload_id"] == session_id)
            .collect();
        let attempt = mine
            .iter()
            .filter_map(|v| v["message"]["attempt"].as_u64())
            .max()
            .unwrap_or(0);
        let av_status = mine
            .iter()
            .rev()
            .find_map(|v| v["message"]["av-status"].as_str())
            .unwrap_or("skipped")
            .to_string();
        Ok(Monitor {
            db,
            hub,
            upload_id: upload_id.to_string(),
            session_id: session_id.to_string(),
            temp_upload_id: temp_upload_id.to_string(),
            attempt,
            av_status,
            last_progress: HashMap::new(),
        })
    }

    async fn publish(&self, message: &Value) -> Result<(), sqlx::Error> {
        live::publish(self.db, self.hub, &self.upload_id, message)
            .await
            .map(|_| ())
    }

    /// A `monitoring_update` for `step_name` with the given extra fields.
    pub async fn monitoring(&mut self, step_name: &str, fields: Value) -> Result<(), sqlx::Error> {
        self.attempt += 1;
        let mut map = Map::new();
        map.insert("step_name".into(), json!(step_name));
        map.insert("upload_id".into(), json!(self.session_id));
        map.insert("temp_upload_id".into(), json!(self.temp_upload_id));
        if let Value::Object(extra) = fields {
            map.extend(extra);
        }
        if let Some(av) = map.get("av-status").and_then(Value::as_str) {
            self.av_status = av.to_string();
        }
        self.publish(&monitoring_update(map, self.attempt)).await
    }

    /// The antivirus status last reported (`skipped` before any).
    pub fn av_status(&self) -> &str {
        &self.av_status
    }

    /// Records the antivirus status without a message (every file was scanned).
    pub fn set_av_status(&mut self, status: &str) {
        self.av_status = status.to_string();
    }

    /// A `progress_update`, unless one for this step went out too recently.
    /// `progress == total` always goes out (with `is_complete: true`).
    pub async fn progress(
        &mut self,
        step: &'static str,
        progress: u64,
        total: u64,
    ) -> Result<(), sqlx::Error> {
        let complete = progress >= total;
        let now = Instant::now();
        if !complete
            && let Some(last) = self.last_progress.get(step)
            && now.duration_since(*last) < PROGRESS_INTERVAL
        {
            return Ok(());
        }
        self.last_progress.insert(step, now);
        self.publish(&progress_update(
            step,
            &self.session_id,
            complete,
            total,
            progress,
        ))
        .await
    }
}
