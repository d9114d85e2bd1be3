//! A file's processing progress, kept in columns of `upload_files`: the `attempt`
//! of its last `monitoring_update`, its last `av-status`, and whether its success
//! was reported. A worker, a retry or a rescue on any node continues from these
//! instead of re-reading the upload's message log.

use sqlx::AnyConnection;

use super::{Db, IntBool, now_ms};
use crate::domain::AvStatus;

/// Where a file's reporting stands.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FileProgress {
    /// The `attempt` of the last monitoring update (0 before any).
    #[sqlx(rename = "monitor_attempt")]
    pub attempt: i64,
    /// The last `av-status` reported.
    pub av_status: AvStatus,
    /// Whether the final `status: success` went out.
    #[sqlx(try_from = "IntBool")]
    pub success_reported: bool,
}

/// Renders a monitoring update given its attempt number.
pub type RenderUpdate<'a> = Box<dyn FnOnce(i64) -> String + Send + 'a>;

/// What one monitoring update changes besides the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgressChange {
    /// A new `av-status`, when the update carries one.
    pub av_status: Option<AvStatus>,
    /// The update is the final success.
    pub success: bool,
}

impl Db {
    /// The progress of file session `file_id` (none: no such file).
    pub async fn file_progress(&self, file_id: &str) -> Result<Option<FileProgress>, sqlx::Error> {
        sqlx::query_as(
            "SELECT monitor_attempt, av_status, success_reported FROM upload_files WHERE id = $1",
        )
        .bind(file_id)
        .fetch_optional(&self.pool)
        .await
    }

    /// Appends a monitoring update of `file_id` to `upload_id`'s log with the
    /// file's next attempt number, in one transaction with the progress columns:
    /// `render` gets the attempt and returns the message. Two workers (a rescued
    /// job's old one and its new one) never reuse a number. Returns the log id.
    pub async fn append_file_update(
        &self,
        upload_id: &str,
        file_id: &str,
        change: ProgressChange,
        render: impl FnOnce(i64) -> String,
    ) -> Result<i64, sqlx::Error> {
        let mut tx = self.begin_write().await?;
        let id = append_file_update_on(&mut tx, upload_id, file_id, change, render).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Records an `av-status` that was not sent in a message (every file passed
    /// its own scan).
    pub async fn set_av_status(&self, file_id: &str, status: AvStatus) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE upload_files SET av_status = $1 WHERE id = $2")
            .bind(status.as_str())
            .bind(file_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// [`Db::append_file_update`] inside a transaction the caller commits (settling a
/// job writes its last message with the job's and the file's new states).
pub(super) async fn append_file_update_on(
    conn: &mut AnyConnection,
    upload_id: &str,
    file_id: &str,
    change: ProgressChange,
    render: impl FnOnce(i64) -> String,
) -> Result<i64, sqlx::Error> {
    let attempt: i64 = sqlx::query_scalar(
        "UPDATE upload_files SET monitor_attempt = monitor_attempt + 1,
             av_status = COALESCE($1, av_status),
             success_reported = CASE WHEN $2 = 1 THEN 1 ELSE success_reported END
         WHERE id = $3 RETURNING monitor_attempt",
    )
    .bind(change.av_status.map(AvStatus::as_str))
    .bind(i64::from(change.success))
    .bind(file_id)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query_scalar(
        "INSERT INTO upload_messages (upload_id, message, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(upload_id)
    .bind(render(attempt))
    .bind(now_ms())
    .fetch_one(&mut *conn)
    .await
}
