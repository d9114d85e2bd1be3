//! The durable job table: claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL (a
//! single atomic `UPDATE … RETURNING` on SQLite, whose writers are serialized),
//! kept alive by heartbeats, rescued when a worker dies.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe};

use super::{Backend, Db, now_ms};
use crate::domain::{JobKind, JobState};

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
             RETURNING id, kind, payload, attempts, max_attempts"
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

    /// Puts a job back in the queue to run at `run_at` (a transient failure).
    pub async fn retry_job(
        &self,
        id: i64,
        worker: &str,
        run_at: i64,
        error: &str,
    ) -> Result<bool, sqlx::Error> {
        let query = sqlx::query(
            "UPDATE jobs SET state = 'queued', run_at = $1, last_error = $2, locked_by = NULL, updated_at = $3
             WHERE id = $4 AND locked_by = $5 AND state = 'running'",
        )
        .bind(run_at)
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

    /// Requeues running jobs whose heartbeat is older than `stale_ms`: their worker
    /// died. Returns how many were rescued.
    pub async fn rescue_stale_jobs(&self, stale_ms: i64) -> Result<u64, sqlx::Error> {
        let now = now_ms();
        Ok(sqlx::query(
            "UPDATE jobs SET state = 'queued', locked_by = NULL, run_at = $1, updated_at = $1,
                 last_error = 'worker stopped heartbeating; rescued'
             WHERE state = 'running' AND heartbeat_at < $2",
        )
        .bind(now)
        .bind(now - stale_ms)
        .execute(&self.pool)
        .await?
        .rows_affected())
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
