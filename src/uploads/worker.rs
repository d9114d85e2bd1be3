//! Workers: claim a due job, keep its heartbeat, run it, and settle it: done,
//! retried later with backoff and jitter (a dependency failed), or failed for good
//! (bad input, or out of attempts). Any node runs workers; a job whose worker died
//! is rescued once its heartbeat is stale.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Uploads;
use super::failure::PipelineFailure;
use super::job::JobPayload;
use super::monitor::Monitor;
use super::process;
use super::webhook::{self, WebhookPayload};
use crate::db::jobs::Job;
use crate::db::now_ms;
use crate::db::uploads::UploadFileRow;
use crate::domain::{FileState, Step};
use crate::telemetry;
use tracing::Instrument;

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
    up: Uploads,
    id: String,
}

impl Worker {
    /// A worker with a unique id (shown in the jobs table as `locked_by`).
    pub fn new(up: Uploads) -> Worker {
        let id = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        Worker { up, id }
    }

    /// This worker's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs until `shutdown`: claims jobs, sleeps when there are none (woken by
    /// local enqueues, polling for other nodes'), rescues stale jobs now and then.
    pub async fn run(self, shutdown: CancellationToken) {
        let jobs = &self.up.settings.jobs;
        let poll = jobs.poll;
        let rescue_every = (jobs.stale / 2).max(Duration::from_secs(1));
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
            let notified = self.up.workers.notified();
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
        let stale_ms = self.up.settings.jobs.stale.as_millis() as i64;
        self.up.db.rescue_stale_jobs(stale_ms).await
    }

    /// Claims and runs one due job. False when none was due.
    pub async fn run_once(&self) -> Result<bool, sqlx::Error> {
        let Some(job) = self.up.db.claim_job(&self.id).await? else {
            return Ok(false);
        };
        // Every line of the job carries its upload and file ids.
        let ids = JobPayload::parse(&job.payload).ok();
        let span = tracing::info_span!(
            "job",
            job = job.id,
            kind = %job.kind,
            upload_id = ids.as_ref().map_or("", |p| p.upload_id.as_str()),
            file_id = ids.as_ref().map_or("", |p| p.upload_file_id.as_str()),
        );
        self.run_claimed(job).instrument(span).await?;
        Ok(true)
    }

    async fn run_claimed(&self, job: Job) -> Result<(), sqlx::Error> {
        tracing::info!(attempt = job.attempts, "job claimed");
        if job.kind == WebhookPayload::KIND {
            return webhook::run(&self.up, &self.id, &job).await;
        }
        let lost = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(
            self.up.clone(),
            job.id,
            self.id.clone(),
            lost.clone(),
        ));
        let result = tokio::select! {
            r = self.execute(&job) => Some(r),
            () = lost.cancelled() => None,
        };
        heartbeat.abort();
        let kind = job.kind.as_str();
        match result {
            None => tracing::warn!(job = job.id, "job lost to a rescue; stopped"),
            Some(Ok(n)) => {
                self.up.db.finish_job(job.id, &self.id, true, None).await?;
                telemetry::job_finished(kind, "succeeded");
                tracing::info!(job = job.id, records = n, "job done");
            }
            Some(Err(e)) => self.settle_failure(&job, e).await?,
        }
        Ok(())
    }

    /// The file a job is about (none: the job is malformed or its file is gone).
    async fn file_of(&self, job: &Job) -> Result<Option<UploadFileRow>, PipelineFailure> {
        if job.kind != JobPayload::KIND {
            return Err(PipelineFailure::UnknownJob(job.kind.to_string()));
        }
        let payload =
            JobPayload::parse(&job.payload).map_err(|e| PipelineFailure::BadJob(e.to_string()))?;
        Ok(self
            .up
            .db
            .upload_file_by_id(&payload.upload_file_id)
            .await?)
    }

    async fn execute(&self, job: &Job) -> Result<u64, PipelineFailure> {
        let db = &self.up.db;
        let Some(file) = self.file_of(job).await? else {
            return Ok(0);
        };
        let mut monitor = Monitor::resume(db, &self.up.hub, &file).await?;
        if file.state == FileState::Processed {
            // A rescued job whose work was done: make sure the end was reported.
            let n = db.count_upload_records(&file.id).await? as u64;
            if !monitor.success_reported() {
                report_success(&mut monitor, n).await?;
            }
            // The settle may not have been followed by its webhooks.
            if let Some(upload) = db.upload_by_id(&file.upload_id).await? {
                let finished = upload.state.is_finished().then_some(upload.state);
                webhook::on_settled(&self.up, &file.upload_id, finished).await;
            }
            return Ok(n);
        }
        let n = process::run(&self.up, &file, &mut monitor).await?;
        db.set_upload_file_state(&file.id, FileState::Processed)
            .await?;
        let settled = db.settle_upload(&file.upload_id).await?;
        report_success(&mut monitor, n).await?;
        webhook::on_settled(&self.up, &file.upload_id, settled).await;
        Ok(n)
    }

    async fn settle_failure(&self, job: &Job, error: PipelineFailure) -> Result<(), sqlx::Error> {
        let error = match error {
            e if e.is_transient() && job.attempts < job.max_attempts => {
                return self.retry(job, &e).await;
            }
            e if e.is_transient() => PipelineFailure::OutOfAttempts {
                attempts: job.attempts,
                code: e.code(),
                last: e.message(),
            },
            e => e,
        };
        self.fail(job, &error).await
    }

    /// Puts the job back with a backoff and tells the client.
    async fn retry(&self, job: &Job, error: &PipelineFailure) -> Result<(), sqlx::Error> {
        let delay = backoff_ms(
            self.up.settings.jobs.retry_base.as_millis() as u64,
            job.attempts,
        );
        let (code, message) = (error.code(), error.message());
        tracing::warn!(job = job.id, attempt = job.attempts, code, %message, delay_ms = delay, "job failed; will retry");
        let fields = json!({
            "status": "retrying",
            "error_code": code,
            "message": format!("Temporarily unable to continue ({code}); retrying in {} s", delay.div_ceil(1000)),
            "retry_in_ms": delay,
        });
        self.report(job, Step::UploadComplete, fields).await;
        self.up
            .db
            .retry_job(job.id, &self.id, now_ms() + delay as i64, &message)
            .await?;
        telemetry::job_finished(job.kind.as_str(), "retried");
        Ok(())
    }

    /// Fails the job for good: file and upload settled first, then the message,
    /// so a client that acts on the message sees the upload settled.
    async fn fail(&self, job: &Job, error: &PipelineFailure) -> Result<(), sqlx::Error> {
        let db = &self.up.db;
        let (code, message) = (error.code(), error.message());
        tracing::warn!(job = job.id, code, %message, "job failed for good");
        let mut fields = error.extra();
        fields.insert("status".into(), json!("error"));
        fields.insert("error_code".into(), json!(code));
        fields.insert("message".into(), json!(message));
        if let Ok(Some(file)) = self.file_of(job).await {
            db.set_upload_file_state(&file.id, FileState::Failed)
                .await?;
            let settled = db.settle_upload(&file.upload_id).await?;
            webhook::on_settled(&self.up, &file.upload_id, settled).await;
        }
        db.finish_job(job.id, &self.id, false, Some(&format!("{code}: {message}")))
            .await?;
        telemetry::job_finished(job.kind.as_str(), "failed");
        self.report(job, error.step(), Value::Object(fields)).await;
        Ok(())
    }

    /// Publishes a monitoring update about `job`'s file; failures are logged only
    /// (the job's own state is what matters).
    async fn report(&self, job: &Job, step: Step, fields: Value) {
        let Ok(Some(file)) = self.file_of(job).await else {
            return;
        };
        let published = async {
            let mut monitor = Monitor::resume(&self.up.db, &self.up.hub, &file).await?;
            monitor.monitoring(step, fields).await
        };
        if let Err(e) = published.await {
            tracing::warn!(error = %e, "publishing a job update");
        }
    }
}

async fn heartbeat(up: Uploads, job_id: i64, worker: String, lost: CancellationToken) {
    let every = up.settings.jobs.heartbeat;
    loop {
        tokio::time::sleep(every).await;
        match up.db.heartbeat_job(job_id, &worker).await {
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
    let av_status = monitor.av_status().as_str();
    monitor
        .monitoring(
            Step::ExtractingFile,
            json!({
                "av-status": av_status,
                "extracted_files": n,
                "message": format!("Done Extracted {n} files"),
                "status": "success",
            }),
        )
        .await
}
