//! The durable job table: claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL (a
//! single atomic `UPDATE … RETURNING` on SQLite, whose writers are serialized),
//! kept alive by heartbeats, rescued when a worker dies.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe};

use super::progress::{ProgressChange, RenderUpdate, append_file_update_on};
use super::uploads::settle_upload_on;
use super::{Backend, Db, now_ms};
use crate::domain::{FileState, JobKind, JobState};

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// What it does.
    pub kind: JobKind,
    /// One job per key, however often it is enqueued.
    pub dedupe_key: String,
    /// Its serialized payload.
    pub payload: String,
    /// Tries before it fails for good.
    pub max_attempts: i64,
}

/// A claimed job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    pub payload: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
    pub max_attempts: i64,
    /// Why its last attempt ended (a rescue says its worker died).
    pub last_error: Option<String>,
}

/// How a job attempt ends; see [`Db::settle_job`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// Done for good (`succeeded`).
    Succeeded,
    /// Failed for good (`failed`).
    Failed,
    /// Back to the queue, due at `run_at`. `refund` gives the attempt back (the job
    /// was handed over by a node shutting down, not failed).
    Requeue { run_at: i64, refund: bool },
}

/// What settling a job writes besides the job row, in the same transaction.
pub struct JobSettlement<'a> {
    /// The job's file (session id, upload id) and its new state: with a state, the
    /// upload is settled too once no file of it is left unfinished.
    pub file: Option<(&'a str, &'a str, Option<FileState>)>,
    /// The message for the client (the file's next monitoring update).
    pub update: Option<(ProgressChange, RenderUpdate<'a>)>,
}

impl JobSettlement<'_> {
    /// Only the job row changes (the job has no file).
    pub fn none() -> Self {
        JobSettlement {
            file: None,
            update: None,
        }
    }
}

/// A running job with its heartbeat ([`Db::silent_jobs`]).
#[derive(sqlx::FromRow)]
struct SilentRow {
    #[sqlx(flatten)]
    job: Job,
    heartbeat_at: i64,
}

/// A job's state as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobStatus {
    pub state: JobState,
    pub attempts: i64,
    pub last_error: Option<String>,
}

impl Db {
    /// Claims the oldest due job for `worker`, if any.
    pub async fn claim_job(&self, worker: &str) -> Result<Option<Job>, sqlx::Error> {
        let now = now_ms();
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'running', locked_by = $1, heartbeat_at = $2,
                 attempts = attempts + 1, updated_at = $2
             WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND run_at <= $2
                         ORDER BY run_at, id LIMIT 1 {lock})
             RETURNING id, kind, payload, attempts, max_attempts, last_error"
        )))
        .bind(worker)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
    }

    /// Refreshes the heartbeat; false when the job is no longer this worker's
    /// (it was rescued and maybe claimed by another), so the worker must stop.
    pub async fn heartbeat_job(&self, id: i64, worker: &str) -> Result<bool, sqlx::Error> {
        let query = sqlx::query(
            "UPDATE jobs SET heartbeat_at = $1 WHERE id = $2 AND locked_by = $3 AND state = 'running'",
        )
        .bind(now_ms());
        self.update_owned_job(query, id, worker).await
    }

    /// Ends a job: `succeeded` or `failed` (final), guarded by ownership.
    pub async fn finish_job(
        &self,
        id: i64,
        worker: &str,
        succeeded: bool,
        error: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        let query = sqlx::query(
            "UPDATE jobs SET state = $1, last_error = $2, locked_by = NULL, updated_at = $3
             WHERE id = $4 AND locked_by = $5 AND state = 'running'",
        )
        .bind(if succeeded { "succeeded" } else { "failed" })
        .bind(error)
        .bind(now_ms());
        self.update_owned_job(query, id, worker).await
    }

    /// Runs `query`, an update of a running job ending in
    /// `WHERE id = $n AND locked_by = $n+1 AND state = 'running'`, with those two
    /// bound; true when it applied, false when the job is no longer `worker`'s.
    async fn update_owned_job(
        &self,
        query: Query<'_, Any, AnyArguments>,
        id: i64,
        worker: &str,
    ) -> Result<bool, sqlx::Error> {
        let n = query
            .bind(id)
            .bind(worker)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Ends an attempt of job `id` held by `worker`, in one transaction with what
    /// the attempt means for its file: the job's new state, the file's new state, the
    /// upload settled when that was its last unfinished file, and the client's
    /// message. Nothing is written unless the job is still `worker`'s (false then):
    /// a worker that lost its job to a rescue can never settle it, and a crash
    /// between these writes cannot leave a processed file in an unsettled upload.
    pub async fn settle_job(
        &self,
        id: i64,
        worker: &str,
        end: JobEnd,
        last_error: Option<&str>,
        with: JobSettlement<'_>,
    ) -> Result<bool, sqlx::Error> {
        let now = now_ms();
        let (state, run_at, refund) = match end {
            JobEnd::Succeeded => (JobState::Succeeded, None, false),
            JobEnd::Failed => (JobState::Failed, None, false),
            JobEnd::Requeue { run_at, refund } => (JobState::Queued, Some(run_at), refund),
        };
        let mut tx = self.begin_write().await?;
        let least = self.least();
        let owned = sqlx::query(AssertSqlSafe(format!(
            "UPDATE jobs SET state = $1, run_at = COALESCE($2, run_at), last_error = $3,
                 attempts = {least}(attempts - $4, max_attempts),
                 locked_by = NULL, updated_at = $5
             WHERE id = $6 AND locked_by = $7 AND state = 'running'"
        )))
        .bind(state.as_str())
        .bind(run_at)
        .bind(last_error)
        .bind(i64::from(refund))
        .bind(now)
        .bind(id)
        .bind(worker)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !owned {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some((file_id, upload_id, file_state)) = with.file {
            if let Some(file_state) = file_state {
                sqlx::query("UPDATE upload_files SET state = $1 WHERE id = $2")
                    .bind(file_state.as_str())
                    .bind(file_id)
                    .execute(&mut *tx)
                    .await?;
                settle_upload_on(&mut tx, upload_id).await?;
            }
            if let Some((change, render)) = with.update {
                append_file_update_on(&mut tx, upload_id, file_id, change, render).await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The smaller of two numbers in this backend's SQL.
    fn least(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "LEAST",
            Backend::Sqlite => "MIN",
        }
    }

    /// Running jobs whose heartbeat is older than `stale_ms`: their worker died.
    pub async fn stale_jobs(&self, stale_ms: i64) -> Result<Vec<i64>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state = 'running' AND heartbeat_at < $1 ORDER BY id",
        )
        .bind(now_ms() - stale_ms)
        .fetch_all(&self.pool)
        .await
    }

    /// Running jobs whose worker went quiet: heartbeat older than `silent_ms` but
    /// not yet `stale_ms` (those are taken over), and not announced within the
    /// last `renotice_ms` since that heartbeat. Each gets an `ERR_WORKER_SILENT`
    /// notice ([`Db::notice_silent_job`]).
    pub async fn silent_jobs(
        &self,
        silent_ms: i64,
        stale_ms: i64,
        renotice_ms: i64,
    ) -> Result<Vec<(Job, i64)>, sqlx::Error> {
        let now = now_ms();
        let rows: Vec<SilentRow> = sqlx::query_as(
            "SELECT id, kind, payload, attempts, max_attempts, last_error, heartbeat_at FROM jobs
             WHERE state = 'running' AND heartbeat_at < $1 AND heartbeat_at >= $2
               AND (silence_noticed_at IS NULL OR silence_noticed_at < heartbeat_at
                    OR silence_noticed_at < $3)
             ORDER BY id",
        )
        .bind(now - silent_ms)
        .bind(now - stale_ms)
        .bind(now - renotice_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.job, r.heartbeat_at)).collect())
    }

    /// Announces silent job `id` (its heartbeat still `heartbeat_at`, not
    /// announced since `renotice_before`) with its file's next monitoring update,
    /// in one transaction: of several nodes checking at once, one sends it. False
    /// when the job moved on (it heartbeated, settled or was taken over) or
    /// another node announced it.
    pub async fn notice_silent_job(
        &self,
        id: i64,
        heartbeat_at: i64,
        renotice_before: i64,
        file: (&str, &str),
        update: (ProgressChange, RenderUpdate<'_>),
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE jobs SET silence_noticed_at = $1
             WHERE id = $2 AND state = 'running' AND heartbeat_at = $3
               AND (silence_noticed_at IS NULL OR silence_noticed_at < heartbeat_at
                    OR silence_noticed_at < $4)",
        )
        .bind(now_ms())
        .bind(id)
        .bind(heartbeat_at)
        .bind(renotice_before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let (file_id, upload_id) = file;
        let (change, render) = update;
        append_file_update_on(&mut tx, upload_id, file_id, change, render).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Takes over stale job `id` for `worker` (a rescue), if it is still stale:
    /// of two nodes rescuing at once, one gets it. The rescuer then settles it like
    /// any attempt of its own (requeued, or failed when out of attempts).
    pub async fn take_over_job(
        &self,
        id: i64,
        worker: &str,
        stale_ms: i64,
    ) -> Result<Option<Job>, sqlx::Error> {
        let now = now_ms();
        sqlx::query_as(
            "UPDATE jobs SET locked_by = $1, heartbeat_at = $2, updated_at = $2
             WHERE id = $3 AND state = 'running' AND heartbeat_at < $4
             RETURNING id, kind, payload, attempts, max_attempts, last_error",
        )
        .bind(worker)
        .bind(now)
        .bind(id)
        .bind(now - stale_ms)
        .fetch_optional(&self.pool)
        .await
    }

    /// A job's state by its dedupe key.
    pub async fn job_status(&self, dedupe_key: &str) -> Result<Option<JobStatus>, sqlx::Error> {
        sqlx::query_as("SELECT state, attempts, last_error FROM jobs WHERE dedupe_key = $1")
            .bind(dedupe_key)
            .fetch_optional(&self.pool)
            .await
    }
}

impl Db {
    /// Queues `job` to run now, unless a job with its dedupe key exists.
    pub async fn enqueue_job(&self, job: &NewJob) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO jobs (kind, dedupe_key, payload, state, attempts, max_attempts, run_at, created_at, updated_at)
             VALUES ($1, $2, $3, 'queued', 0, $4, $5, $5, $5)
             ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(job.kind.as_str())
        .bind(&job.dedupe_key)
        .bind(&job.payload)
        .bind(job.max_attempts)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
