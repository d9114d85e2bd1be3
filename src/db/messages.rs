//! The messages streamed to an upload's sockets, kept with the upload so that a
//! client on any node can replay them and follow them live.

use super::{Db, now_ms};

impl Db {
    /// Appends a message (serialized JSON) to an upload's log; returns its id.
    pub async fn append_message(&self, upload_id: &str, message: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "INSERT INTO upload_messages (upload_id, message, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(upload_id)
        .bind(message)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
    }

    /// The messages of an upload with an id above `after`, oldest first, at most `limit`.
    pub async fn messages_after(
        &self,
        upload_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, message FROM upload_messages WHERE upload_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(upload_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// The uploads whose log has a message with an id above `after`, each with its
    /// highest such id (the fallback poll, [`crate::live::poll_log`]).
    pub async fn log_growth(&self, after: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT upload_id, MAX(id) FROM upload_messages WHERE id > $1 GROUP BY upload_id",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await
    }

    /// The highest message id so far (0 for none).
    pub async fn last_message_id(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM upload_messages")
            .fetch_one(&self.pool)
            .await
    }
}
