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
}
