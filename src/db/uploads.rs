//! Upload transactions (one per `upload_id`) and the files uploaded in them.

use sqlx::{AnyConnection, AssertSqlSafe};

use super::jobs::NewJob;
use super::{Db, IntBool, now_ms};
use crate::domain::{FileState, UploadState};

/// An upload transaction.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UploadRow {
    pub id: String,
    pub creator_id: i64,
    pub object_class_id: i64,
    pub class_field_id: i64,
    pub state: UploadState,
    pub created_at: i64,
    pub expires_at: i64,
}

impl UploadRow {
    /// Finished, or past its expiry while still open: the id can no longer be used.
    pub fn is_used_or_expired(&self, now: i64) -> bool {
        self.state.is_finished() || (self.state == UploadState::Open && now > self.expires_at)
    }
}

/// One file of an upload: the target of one `presigned_url_ready`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UploadFileRow {
    pub id: String,
    pub upload_id: String,
    pub temp_upload_id: String,
    pub file_name: String,
    pub file_size: i64,
    pub file_type: String,
    pub s3_key: String,
    #[sqlx(try_from = "IntBool")]
    pub is_multipart: bool,
    pub s3_upload_id: Option<String>,
    pub chunk_size: Option<i64>,
    pub total_parts: i64,
    pub state: FileState,
}

/// A new file session to record.
#[derive(Debug, Clone)]
pub struct NewUploadFile<'a> {
    pub id: &'a str,
    pub upload_id: &'a str,
    pub temp_upload_id: &'a str,
    pub file_name: &'a str,
    pub file_size: i64,
    pub file_type: &'a str,
    pub s3_key: &'a str,
    pub s3_upload_id: Option<&'a str>,
    pub chunk_size: Option<i64>,
    pub total_parts: i64,
}

pub(super) const FILE_COLUMNS: &str =
    "id, upload_id, temp_upload_id, file_name, file_size, file_type, s3_key,
     is_multipart, s3_upload_id, chunk_size, total_parts, state";

impl Db {
    /// Creates an open upload transaction.
    pub async fn create_upload(
        &self,
        id: &str,
        creator_id: i64,
        class_id: i64,
        field_id: i64,
        ttl_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO uploads (id, creator_id, object_class_id, class_field_id, state, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(creator_id)
        .bind(class_id)
        .bind(field_id)
        .bind(UploadState::Open.as_str())
        .bind(now)
        .bind(now + ttl_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One upload transaction.
    pub async fn upload_by_id(&self, id: &str) -> Result<Option<UploadRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, creator_id, object_class_id, class_field_id, state, created_at, expires_at
             FROM uploads WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }

    /// Moves an upload to a finished state (only from open or processing).
    pub async fn finish_upload(&self, id: &str, state: UploadState) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE uploads SET state = $1, finished_at = $2
             WHERE id = $3 AND state IN ('open', 'processing')",
        )
        .bind(state.as_str())
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a file session of an upload.
    pub async fn create_upload_file(&self, f: &NewUploadFile<'_>) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO upload_files (id, upload_id, temp_upload_id, file_name, file_size, file_type, s3_key,
                 is_multipart, s3_upload_id, chunk_size, total_parts, state, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12)",
        )
        .bind(f.id)
        .bind(f.upload_id)
        .bind(f.temp_upload_id)
        .bind(f.file_name)
        .bind(f.file_size)
        .bind(f.file_type)
        .bind(f.s3_key)
        .bind(i64::from(f.s3_upload_id.is_some()))
        .bind(f.s3_upload_id)
        .bind(f.chunk_size)
        .bind(f.total_parts)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One file session.
    pub async fn upload_file_by_id(&self, id: &str) -> Result<Option<UploadFileRow>, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {FILE_COLUMNS} FROM upload_files WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }

    /// The file sessions of an upload, oldest first.
    pub async fn upload_files(&self, upload_id: &str) -> Result<Vec<UploadFileRow>, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {FILE_COLUMNS} FROM upload_files WHERE upload_id = $1 ORDER BY created_at, id"
        )))
        .bind(upload_id)
        .fetch_all(&self.pool)
        .await
    }

    /// Marks a file session as uploaded, enqueues its processing job and appends
    /// `first_message` (the `queued` monitoring update) to the upload's log, all in
    /// one transaction: a completed file is never without its job, and a client
    /// that reconnects always finds the message (a separate append could fail after
    /// the commit, and the repeated completion that follows is a no-op). Returns
    /// false when the file was already completed (a repeated `upload_complete`).
    pub async fn complete_upload_file(
        &self,
        file_id: &str,
        upload_id: &str,
        job: &NewJob,
        first_message: &str,
    ) -> Result<bool, sqlx::Error> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE upload_files SET state = 'completed', completed_at = $1, monitor_attempt = 1
             WHERE id = $2 AND state = 'pending'",
        )
        .bind(now)
        .bind(file_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("UPDATE uploads SET state = 'processing' WHERE id = $1 AND state = 'open'")
            .bind(upload_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO jobs (kind, dedupe_key, payload, state, attempts, max_attempts, run_at, created_at, updated_at)
             VALUES ($1, $2, $3, 'queued', 0, $4, $5, $5, $5)
             ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(job.kind.as_str())
        .bind(&job.dedupe_key)
        .bind(&job.payload)
        .bind(job.max_attempts)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO upload_messages (upload_id, message, created_at) VALUES ($1, $2, $3)",
        )
        .bind(upload_id)
        .bind(first_message)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Marks a file session as failed (e.g. finalisation refused by S3).
    pub async fn fail_upload_file(&self, file_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE upload_files SET state = 'failed' WHERE id = $1 AND state = 'pending'")
            .bind(file_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sets a file session's state (`processed`, `failed`, …).
    pub async fn set_upload_file_state(
        &self,
        file_id: &str,
        state: FileState,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE upload_files SET state = $1 WHERE id = $2")
            .bind(state.as_str())
            .bind(file_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Db {
    /// Finishes an upload once none of its files is pending or being processed:
    /// succeeded when at least one file was processed, failed otherwise. Returns
    /// the state it settled in, if it did.
    pub async fn settle_upload(&self, upload_id: &str) -> Result<Option<UploadState>, sqlx::Error> {
        let mut tx = self.begin_write().await?;
        let settled = settle_upload_on(&mut tx, upload_id).await?;
        tx.commit().await?;
        Ok(settled)
    }
}

/// [`Db::settle_upload`] inside a transaction the caller commits.
pub(super) async fn settle_upload_on(
    conn: &mut AnyConnection,
    upload_id: &str,
) -> Result<Option<UploadState>, sqlx::Error> {
    let counts: Vec<(FileState, i64)> = sqlx::query_as(
        "SELECT state, COUNT(*) AS n FROM upload_files WHERE upload_id = $1 GROUP BY state",
    )
    .bind(upload_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut unfinished = 0;
    let mut processed = 0;
    for (state, n) in counts {
        match state {
            FileState::Pending | FileState::Completed => unfinished += n,
            FileState::Processed => processed += n,
            FileState::Failed => {}
        }
    }
    if unfinished > 0 {
        return Ok(None);
    }
    let state = if processed > 0 {
        UploadState::Succeeded
    } else {
        UploadState::Failed
    };
    sqlx::query(
        "UPDATE uploads SET state = $1, finished_at = $2
         WHERE id = $3 AND state IN ('open', 'processing')",
    )
    .bind(state.as_str())
    .bind(now_ms())
    .bind(upload_id)
    .execute(&mut *conn)
    .await?;
    Ok(Some(state))
}
