//! Workers: claim a due job, keep its heartbeat, run it, and settle it: done,
//! retried later with backoff and jitter (a dependency failed), or failed for good
//! (bad input, or out of attempts). Settling is one transaction guarded by the
//! job's ownership (`Db::settle_job`): job, file and upload states and the client's
//! message together. Any node runs workers; a job whose heartbeat goes stale is
//! taken over by another node's worker and settled as a counted, retried attempt
//! (`ERR_WORKER_LOST`), so a job that kills its process every time ends after
//! `max_attempts`. A node that shuts down hands its running jobs back at once.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Uploads;
use super::failure::PipelineFailure;
use super::job::JobPayload;
use super::monitor::Monitor;
use super::process;
use super::webhook::{self, WebhookPayload};
use crate::db::jobs::{Job, JobEnd, JobSettlement};
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
    /// Cancelled when the node shuts down: the running job is handed back.
    stop: CancellationToken,
}

/// How an attempt ended, before it is settled.
enum Outcome {
    /// The pipeline finished (or had finished before): settle as done.
    Done(Done),
    /// The pipeline stopped with a failure.
    Failed(PipelineFailure),
    /// This node is shutting down: hand the job back, uncounted.
    Stopped,
}

/// A finished job: its file (none: its file is gone) and the records it has.
struct Done {
    file: Option<UploadFileRow>,
    records: u64,
}

impl Worker {
    /// A worker with a unique id (shown in the jobs table as `locked_by`).
    pub fn new(up: Uploads) -> Worker {
        let id = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        Worker {
            up,
            id,
            stop: CancellationToken::new(),
        }
    }

    /// This worker's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs until `shutdown`: claims jobs, sleeps when there are none (woken by
    /// local enqueues, polling for other nodes'). On `shutdown` a running job is
    /// handed back at once. (Stale jobs are the node's [`Worker::watch`].)
    pub async fn run(mut self, shutdown: CancellationToken) {
        self.stop = shutdown.clone();
        let jobs = &self.up.settings.jobs;
        let poll = jobs.poll;
        while !shutdown.is_cancelled() {
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

    /// The node's watch over every worker's running jobs (one task per node, beside
    /// its workers): every [`check_interval`] until `shutdown`, quiet workers'
    /// clients are told and stale jobs taken over.
    pub async fn watch(self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(check_interval(self.up.settings.jobs.heartbeat));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => self.check_running().await,
                () = shutdown.cancelled() => break,
            }
        }
    }

    /// Looks at other workers' running jobs: announces the quiet ones, takes the
    /// stale ones over.
    async fn check_running(&self) {
        match self.notice_silent().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(jobs = n, "workers went quiet; their clients were told"),
            Err(e) => tracing::warn!(error = %e, "looking for quiet workers"),
        }
        match self.rescue().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(rescued = n, "took over jobs of dead workers"),
            Err(e) => tracing::warn!(error = %e, "rescuing stale jobs"),
        }
    }

    /// Tells the client of every job whose worker missed its heartbeat (older
    /// than [`silent_after`], not yet `job_stale`) that it is waiting: a
    /// `retrying` update with `ERR_WORKER_SILENT` and `retry_in_ms` until the
    /// takeover, again every heartbeat while the silence lasts, so that a killed
    /// node's client is not left without a word until the takeover. Not an
    /// attempt: the job's attempts are unchanged. Returns how many were told.
    pub async fn notice_silent(&self) -> Result<u64, sqlx::Error> {
        let jobs = &self.up.settings.jobs;
        let (heartbeat_ms, stale_ms) = (
            jobs.heartbeat.as_millis() as i64,
            jobs.stale.as_millis() as i64,
        );
        let silent_ms = silent_after(jobs.heartbeat).as_millis() as i64;
        // Again two looks before a heartbeat has passed: never a heartbeat between two.
        let renotice_ms = heartbeat_ms - 2 * check_interval(jobs.heartbeat).as_millis() as i64;
        let db = &self.up.db;
        let mut n = 0;
        for (job, heartbeat_at) in db.silent_jobs(silent_ms, stale_ms, renotice_ms).await? {
            let file = match self.file_of(&job).await {
                Ok(Some(file)) => file,
                Ok(None) | Err(_) => continue, // no file (a webhook): nobody to tell
            };
            let now = now_ms();
            let quiet_s = (now - heartbeat_at) / 1000;
            let takeover_in = (heartbeat_at + stale_ms - now).max(0);
            let fields = json!({
                "status": "retrying",
                "error_code": "ERR_WORKER_SILENT",
                "message": format!(
                    "The node processing this file has not answered for {quiet_s} s; another node takes it over in {} s if it stays silent",
                    (takeover_in as u64).div_ceil(1000)
                ),
                "retry_in_ms": takeover_in,
            });
            let mut monitor = Monitor::resume(db, &self.up.hub, &file).await?;
            let (change, render) = monitor.update(Step::UploadComplete, fields);
            let told = db
                .notice_silent_job(
                    job.id,
                    heartbeat_at,
                    now - renotice_ms,
                    (&file.id, &file.upload_id),
                    (change, render),
                )
                .await?;
            if told {
                monitor.sent(change);
                telemetry::silent_worker_notice();
                n += 1;
            }
        }
        Ok(n)
    }

    /// Takes over jobs whose heartbeat is stale and settles each as a failed,
    /// counted attempt: requeued with backoff (the client is told `retrying`,
    /// `ERR_WORKER_LOST`), or failed for good when it was the last attempt.
    /// Returns how many were taken over.
    pub async fn rescue(&self) -> Result<u64, sqlx::Error> {
        let stale_ms = self.up.settings.jobs.stale.as_millis() as i64;
        let mut n = 0;
        for id in self.up.db.stale_jobs(stale_ms).await? {
            let Some(job) = self.up.db.take_over_job(id, &self.id, stale_ms).await? else {
                continue; // another node's rescue got it first
            };
            tracing::warn!(
                job = job.id,
                attempt = job.attempts,
                "job of a dead worker taken over"
            );
            self.settle(&job, &Outcome::Failed(PipelineFailure::WorkerLost))
                .await?;
            n += 1;
        }
        if n > 0 {
            self.up.wake_workers();
        }
        Ok(n)
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
        let lost = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(
            self.up.clone(),
            job.id,
            self.id.clone(),
            lost.clone(),
        ));
        if job.kind == WebhookPayload::KIND {
            let result = webhook::run(&self.up, &self.id, &job).await;
            heartbeat.abort();
            return result;
        }
        let outcome = if job.attempts > job.max_attempts {
            // Queued with its budget spent (by an older version): fail it cleanly.
            Some(Outcome::Failed(PipelineFailure::OutOfAttempts {
                attempts: job.max_attempts,
                code: "ERR_PROCESSING_FAILED",
                last: job.last_error.clone().unwrap_or_default(),
            }))
        } else {
            tokio::select! {
                r = self.execute(&job) => Some(match r {
                    Ok(done) => Outcome::Done(done),
                    Err(e) => Outcome::Failed(e),
                }),
                () = lost.cancelled() => None,
                () = self.stop.cancelled() => Some(Outcome::Stopped),
            }
        };
        let result = match outcome {
            None => {
                tracing::warn!(job = job.id, "job lost to a rescue; stopped");
                Ok(())
            }
            Some(outcome) => self.settle_while_owned(&job, &outcome, &lost).await,
        };
        heartbeat.abort();
        result
    }

    /// Settles `job`, trying again while the database is down and the job is
    /// still ours (the heartbeat keeps running meanwhile): an outage costs its
    /// length, not a stale-job rescue on top.
    async fn settle_while_owned(
        &self,
        job: &Job,
        outcome: &Outcome,
        lost: &CancellationToken,
    ) -> Result<(), sqlx::Error> {
        let mut pause = Duration::from_millis(250);
        loop {
            match self.settle(job, outcome).await {
                Ok(()) => return Ok(()),
                Err(e) if lost.is_cancelled() || self.stop.is_cancelled() => return Err(e),
                Err(e) => {
                    tracing::warn!(job = job.id, error = %e, "settling a job failed; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = lost.cancelled() => return Err(e),
                    }
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
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

    async fn execute(&self, job: &Job) -> Result<Done, PipelineFailure> {
        let db = &self.up.db;
        let Some(file) = self.file_of(job).await? else {
            return Ok(Done {
                file: None,
                records: 0,
            });
        };
        if file.state == FileState::Processed {
            // An earlier attempt's work was done: settle it (and report it, if
            // that was not done either).
            let records = db.count_upload_records(&file.id).await? as u64;
            return Ok(Done {
                file: Some(file),
                records,
            });
        }
        let mut monitor = Monitor::resume(db, &self.up.hub, &file).await?;
        let records = process::run(&self.up, &file, &mut monitor).await?;
        Ok(Done {
            file: Some(file),
            records,
        })
    }

    /// Writes how an attempt ended (see [`Db::settle_job`]); a job that is no
    /// longer ours is left alone.
    async fn settle(&self, job: &Job, outcome: &Outcome) -> Result<(), sqlx::Error> {
        let settled = match outcome {
            Outcome::Done(done) => self.succeed(job, done).await?,
            Outcome::Stopped => self.hand_back(job).await?,
            Outcome::Failed(e) if e.is_transient() && job.attempts < job.max_attempts => {
                self.retry(job, e).await?
            }
            Outcome::Failed(e) if e.is_transient() => {
                let out = PipelineFailure::OutOfAttempts {
                    attempts: job.attempts,
                    code: e.code(),
                    last: e.message(),
                };
                self.fail(job, &out).await?
            }
            Outcome::Failed(e) => self.fail(job, e).await?,
        };
        if !settled {
            tracing::warn!(job = job.id, "job lost to a rescue before it was settled");
        }
        Ok(())
    }

    /// Settles a finished job: file processed, upload settled, success reported
    /// (unless an earlier attempt did), job succeeded.
    async fn succeed(&self, job: &Job, done: &Done) -> Result<bool, sqlx::Error> {
        let db = &self.up.db;
        let Some(file) = &done.file else {
            return db
                .settle_job(
                    job.id,
                    &self.id,
                    JobEnd::Succeeded,
                    None,
                    JobSettlement::none(),
                )
                .await;
        };
        let n = done.records;
        let mut monitor = Monitor::resume(db, &self.up.hub, file).await?;
        let update = (!monitor.success_reported()).then(|| {
            monitor.update(
                Step::ExtractingFile,
                json!({
                    "av-status": monitor.av_status().as_str(),
                    "extracted_files": n,
                    "message": format!("Done Extracted {n} files"),
                    "status": "success",
                }),
            )
        });
        let change = update.as_ref().map(|(c, _)| *c);
        let with = JobSettlement {
            file: Some((&file.id, &file.upload_id, Some(FileState::Processed))),
            update,
        };
        let settled = db
            .settle_job(job.id, &self.id, JobEnd::Succeeded, None, with)
            .await?;
        if settled {
            tracing::info!(job = job.id, records = n, "job done");
            telemetry::job_finished(job.kind.as_str(), "succeeded");
            if let Some(change) = change {
                monitor.sent(change);
            }
            self.after_settled(&file.upload_id).await;
        }
        Ok(settled)
    }

    /// Puts the job back with a backoff and tells the client.
    async fn retry(&self, job: &Job, error: &PipelineFailure) -> Result<bool, sqlx::Error> {
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
        let end = JobEnd::Requeue {
            run_at: now_ms() + delay as i64,
            refund: false,
        };
        let settled = self
            .settle_with(job, end, &message, None, Step::UploadComplete, fields)
            .await?;
        if settled {
            telemetry::job_finished(job.kind.as_str(), "retried");
        }
        Ok(settled)
    }

    /// Hands a job back to the queue, due now and with its attempt refunded, for
    /// another node to resume (this one is shutting down), and tells the client.
    async fn hand_back(&self, job: &Job) -> Result<bool, sqlx::Error> {
        tracing::info!(job = job.id, "shutting down; job handed back");
        let fields = json!({
            "status": "retrying",
            "error_code": "ERR_NODE_SHUTDOWN",
            "message": "The node processing this file is shutting down; another node resumes it",
            "retry_in_ms": 0,
        });
        let end = JobEnd::Requeue {
            run_at: now_ms(),
            refund: true,
        };
        let why = "handed back by a node shutting down";
        self.settle_with(job, end, why, None, Step::UploadComplete, fields)
            .await
    }

    /// Fails the job for good: file failed, upload settled, the error reported.
    async fn fail(&self, job: &Job, error: &PipelineFailure) -> Result<bool, sqlx::Error> {
        let (code, message) = (error.code(), error.message());
        tracing::warn!(job = job.id, code, %message, "job failed for good");
        let mut fields = error.extra();
        fields.insert("status".into(), json!("error"));
        fields.insert("error_code".into(), json!(code));
        fields.insert("message".into(), json!(message));
        let why = format!("{code}: {message}");
        let state = Some(FileState::Failed);
        let settled = self
            .settle_with(
                job,
                JobEnd::Failed,
                &why,
                state,
                error.step(),
                Value::Object(fields),
            )
            .await?;
        if settled {
            telemetry::job_finished(job.kind.as_str(), "failed");
            if let Ok(Some(file)) = self.file_of(job).await {
                self.after_settled(&file.upload_id).await;
            }
        }
        Ok(settled)
    }

    /// Queues the upload's webhooks once the settlement finished it (idempotent:
    /// a rescued job that settles again queues nothing new).
    async fn after_settled(&self, upload_id: &str) {
        match self.up.db.upload_by_id(upload_id).await {
            Ok(Some(upload)) => {
                let finished = upload.state.is_finished().then_some(upload.state);
                webhook::on_settled(&self.up, upload_id, finished).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, upload_id, "reading the settled upload for its webhooks")
            }
        }
    }

    /// Settles `job` with `end`, the file moved to `state` (if any), and a
    /// monitoring update of `step` with `fields` for its client.
    async fn settle_with(
        &self,
        job: &Job,
        end: JobEnd,
        why: &str,
        state: Option<FileState>,
        step: Step,
        fields: Value,
    ) -> Result<bool, sqlx::Error> {
        let db = &self.up.db;
        let file = match self.file_of(job).await {
            Ok(file) => file,
            Err(PipelineFailure::Database(e)) => return Err(sqlx::Error::Protocol(e)),
            Err(_) => None, // a malformed job: nothing but the job to settle
        };
        let Some(file) = file else {
            return db
                .settle_job(job.id, &self.id, end, Some(why), JobSettlement::none())
                .await;
        };
        let mut monitor = Monitor::resume(db, &self.up.hub, &file).await?;
        let (change, render) = monitor.update(step, fields);
        let with = JobSettlement {
            file: Some((&file.id, &file.upload_id, state)),
            update: Some((change, render)),
        };
        let settled = db
            .settle_job(job.id, &self.id, end, Some(why), with)
            .await?;
        if settled {
            monitor.sent(change);
        }
        Ok(settled)
    }
}

/// How often a running job writes its heartbeat: three times per
/// `job_heartbeat`, so that a missed write is noticed well within one.
pub fn beat_interval(heartbeat: Duration) -> Duration {
    heartbeat / 3
}

/// How often a node looks at the running jobs (quiet ones announced, stale ones
/// taken over): a sixth of the heartbeat, at least 100 ms.
pub fn check_interval(heartbeat: Duration) -> Duration {
    (heartbeat / 6).max(Duration::from_millis(100))
}

/// A running job whose heartbeat is older than this has a quiet worker: two thirds
/// of `job_heartbeat` (two writes missed). With a look every sixth, its client hears
/// within `job_heartbeat` of the worker's death, then every heartbeat until the
/// takeover: never a silence longer than `job_heartbeat`.
pub fn silent_after(heartbeat: Duration) -> Duration {
    heartbeat * 2 / 3
}

async fn heartbeat(up: Uploads, job_id: i64, worker: String, lost: CancellationToken) {
    let every = beat_interval(up.settings.jobs.heartbeat);
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
