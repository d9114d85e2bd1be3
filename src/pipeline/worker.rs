//! Workers: claim a due job, keep its heartbeat, run it, and settle it: done,
//! retried later with backoff and jitter (a dependency failed), or failed for good
//! (bad input, or out of attempts). Any node runs workers; a job whose worker died
//! is rescued once its heartbeat is stale.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::monitor::Monitor;
use super::process::{self, JobError, JobPayload};
use crate::db::jobs::Job;
use crate::db::now_ms;
use crate::http::AppState;

/// The longest retry delay.
const MAX_BACKOFF_MS: u64 = 5 * 60 * 1000;

/// The delay before attempt `attempts + 1`: doubling from `base_ms`, capped, with
/// ±50% jitter so that jobs failed by one outage do not all come back at once.
pub fn backoff_ms(base_ms: u64, attempts: i64) -> u64 {
    let exp = base_ms.saturating_mul(1u64 << (attempts.clamp(1, 20) - 1) as u32);
    let capped = exp.min(MAX_BACKOFF_MS);
    let jitter: f64 = 0.5 + rand::random::<f64>();
    ((capped as f64) * jitter) as u64
}

/// One worker of this node.
pub struct Worker {
    state: AppState,
    id: String,
}

impl Worker {
    /// A worker with a unique id (shown in the jobs table as `locked_by`).
    pub fn new(state: AppState) -> Worker {
        let id = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        Worker { state, id }
    }

    /// This worker's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs until `shutdown`: claims jobs, sleeps when there are none (woken by
    /// local enqueues, polling for other nodes'), rescues stale jobs now and then.
    pub async fn run(self, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.state.settings.job_poll_ms);
        let rescue_every = Duration::from_secs((self.state.settings.job_stale_secs / 2).max(1));
        let mut last_rescue = tokio::time::Instant::now() - rescue_every;
        while !shutdown.is_cancelled() {
            if last_rescue.elapsed() >= rescue_every {
                last_rescue = tokio::time::Instant::now();
                match self.rescue().await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(rescued = n, "rescued jobs of dead workers"),
                    Err(e) => tracing::warn!(error = %e, "rescuing stale jobs"),
                }
            }
            let notified = self.state.workers.notified();
            match self.run_once().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "claiming a job"),
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(poll) => {}
                () = shutdown.cancelled() => break,
            }
        }
    }

    /// Requeues jobs whose heartbeat is stale.
    pub async fn rescue(&self) -> Result<u64, sqlx::Error> {
        self.state
            .db
            .rescue_stale_jobs((self.state.settings.job_stale_secs * 1000) as i64)
            .await
    }

    /// Claims and runs one due job. False when none was due.
    pub async fn run_once(&self) -> Result<bool, sqlx::Error> {
        let Some(job) = self.state.db.claim_job(&self.id).await? else {
            return Ok(false);
        };
        tracing::info!(job = job.id, kind = %job.kind, attempt = job.attempts, "job claimed");
        let lost = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(
            self.state.clone(),
            job.id,
            self.id.clone(),
            lost.clone(),
        ));
        let result = tokio::select! {
            r = self.execute(&job) => Some(r),
            () = lost.cancelled() => None,
        };
        heartbeat.abort();
        match result {
            None => tracing::warn!(job = job.id, "job lost to a rescue; stopped"),
            Some(Ok(n)) => {
                self.state
                    .db
                    .finish_job(job.id, &self.id, true, None)
                    .await?;
                tracing::info!(job = job.id, records = n, "job done");
            }
            Some(Err(e)) => self.settle_failure(&job, e).await?,
        }
        Ok(true)
    }

    async fn execute(&self, job: &Job) -> Result<u64, JobError> {
        if job.kind != "process_upload_file" {
            return Err(JobError::Final {
                step: "upload_complete",
                code: "ERR_UNKNOWN_JOB",
                message: format!("unknown job kind {}", job.kind),
                extra: Default::default(),
            });
        }
        let payload: JobPayload =
            serde_json::from_str(&job.payload).map_err(|e| JobError::Final {
                step: "upload_complete",
                code: "ERR_BAD_JOB",
                message: e.to_string(),
                extra: Default::default(),
            })?;
        let db = &self.state.db;
        let Some(file) = db.upload_file_by_id(&payload.upload_file_id).await? else {
            return Ok(0);
        };
        let mut monitor = Monitor::resume(
            db,
            &self.state.hub,
            &file.upload_id,
            &file.id,
            &file.temp_upload_id,
        )
        .await?;
        if file.state == "processed" {
            // A rescued job whose work was done: make sure the end was reported.
            let n = db.count_upload_records(&file.id).await? as u64;
            if !success_reported(db, &file.upload_id, &file.id).await? {
                report_success(&mut monitor, n).await?;
            }
            return Ok(n);
        }
        let n = process::process(&self.state, &file, &mut monitor).await?;
        db.set_upload_file_state(&file.id, "processed").await?;
        db.settle_upload(&file.upload_id).await?;
        report_success(&mut monitor, n).await?;
        Ok(n)
    }

    async fn settle_failure(&self, job: &Job, error: JobError) -> Result<(), sqlx::Error> {
        let db = &self.state.db;
        let error = match error {
            JobError::Transient { code, message } if job.attempts < job.max_attempts => {
                let delay = backoff_ms(self.state.settings.job_retry_base_ms, job.attempts);
                tracing::warn!(job = job.id, attempt = job.attempts, code, %message, delay_ms = delay, "job failed; will retry");
                let fields = json!({
                    "status": "retrying",
                    "error_code": code,
                    "message": format!("Temporarily unable to continue ({code}); retrying in {} s", delay.div_ceil(1000)),
                    "retry_in_ms": delay,
                });
                self.report(job, "upload_complete", fields).await;
                db.retry_job(job.id, &self.id, now_ms() + delay as i64, &message)
                    .await?;
                return Ok(());
            }
            JobError::Transient { code, message } => JobError::Final {
                step: "upload_complete",
                code: "ERR_PROCESSING_FAILED",
                message: format!(
                    "Processing failed after {} attempts ({code}: {message}).",
                    job.attempts
                ),
                extra: Default::default(),
            },
            e => e,
        };
        let JobError::Final {
            step,
            code,
            message,
            extra,
        } = error
        else {
            unreachable!("transient errors are settled above")
        };
        tracing::warn!(job = job.id, code, %message, "job failed for good");
        let mut fields = extra.clone();
        fields.insert("status".into(), json!("error"));
        fields.insert("error_code".into(), json!(code));
        fields.insert("message".into(), json!(message));
        // State first, then the message: a client that acts on the message sees
        // the upload settled.
        if let Ok(payload) = serde_json::from_str::<JobPayload>(&job.payload)
            && let Some(file) = db.upload_file_by_id(&payload.upload_file_id).await?
        {
            db.set_upload_file_state(&file.id, "failed").await?;
            db.settle_upload(&file.upload_id).await?;
        }
        db.finish_job(job.id, &self.id, false, Some(&format!("{code}: {message}")))
            .await?;
        self.report(job, step, Value::Object(fields)).await;
        Ok(())
    }

    /// Publishes a monitoring update about `job`'s file; failures are logged only
    /// (the job's own state is what matters).
    async fn report(&self, job: &Job, step: &str, fields: Value) {
        let db = &self.state.db;
        let file = match serde_json::from_str::<JobPayload>(&job.payload) {
            Ok(p) => db.upload_file_by_id(&p.upload_file_id).await.ok().flatten(),
            Err(_) => None,
        };
        let Some(file) = file else { return };
        match Monitor::resume(
            db,
            &self.state.hub,
            &file.upload_id,
            &file.id,
            &file.temp_upload_id,
        )
        .await
        {
            Ok(mut m) => {
                if let Err(e) = m.monitoring(step, fields).await {
                    tracing::warn!(error = %e, "publishing a job update");
                }
            }
            Err(e) => tracing::warn!(error = %e, "publishing a job update"),
        }
    }
}

async fn heartbeat(state: AppState, job_id: i64, worker: String, lost: CancellationToken) {
    let every = Duration::from_secs(state.settings.job_heartbeat_secs);
    loop {
        tokio::time::sleep(every).await;
        match state.db.heartbeat_job(job_id, &worker).await {
            Ok(true) => {}
            Ok(false) => {
                lost.cancel();
                return;
            }
            // The database may come back before the job is considered stale.
            Err(e) => tracing::warn!(error = %e, job = job_id, "heartbeat failed"),
        }
    }
}

async fn report_success(monitor: &mut Monitor<'_>, n: u64) -> Result<(), sqlx::Error> {
    monitor
        .monitoring(
            "extracting_file",
            json!({
                "av-status": monitor.av_status().to_string(),
                "extracted_files": n,
                "message": format!("Done Extracted {n} files"),
                "status": "success",
            }),
        )
        .await
}

async fn success_reported(
    db: &crate::db::Db,
    upload_id: &str,
    session: &str,
) -> Result<bool, sqlx::Error> {
    let log = db.messages_after(upload_id, 0, 1_000_000).await?;
    Ok(log
        .iter()
        .filter_map(|(_, t)| serde_json::from_str::<Value>(t).ok())
        .any(|v| {
            v["type"] == "monitoring_update"
                && v["message"]["upload_id"] == session
                && v["message"]["status"] == "success"
        }))
}
