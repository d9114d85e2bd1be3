//! What operators and integrators read across many rows: uploads and jobs counted
//! by state (the `/metrics` gauges) and one user's uploads, a page at a time.

use sqlx::AssertSqlSafe;

use super::Db;
use crate::domain::UploadState;

/// One upload in a user's list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UploadSummary {
    pub id: String,
    pub object_class_id: i64,
    pub class_field_id: i64,
    pub state: UploadState,
    pub created_at: i64,
    pub expires_at: i64,
    pub finished_at: Option<i64>,
    pub file_count: i64,
    pub record_count: i64,
}

impl Db {
    /// Uploads by state: `(state, count)`.
    pub async fn upload_state_counts(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as("SELECT state, COUNT(*) AS n FROM uploads GROUP BY state ORDER BY state")
            .fetch_all(&self.pool)
            .await
    }

    /// Jobs by kind and state: `(kind, state, count)`.
    pub async fn job_state_counts(&self) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT kind, state, COUNT(*) AS n FROM jobs GROUP BY kind, state ORDER BY kind, state",
        )
        .fetch_all(&self.pool)
        .await
    }

    /// A page of `creator`'s uploads, newest first, optionally only those in
    /// `state`; and how many there are in all (with the filter).
    pub async fn list_uploads(
        &self,
        creator: i64,
        state: Option<UploadState>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<UploadSummary>, i64), sqlx::Error> {
        let filter = if state.is_some() {
            "AND u.state = $2"
        } else {
            "AND $2 = ''"
        };
        let state = state.map(|s| s.as_str()).unwrap_or_default();
        let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM uploads u WHERE u.creator_id = $1 {filter}"
        )))
        .bind(creator)
        .bind(state)
        .fetch_one(&self.pool)
        .await?;
        let rows = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT u.id, u.object_class_id, u.class_field_id, u.state, u.created_at,
                    u.expires_at, u.finished_at,
                    (SELECT COUNT(*) FROM upload_files f WHERE f.upload_id = u.id) AS file_count,
                    (SELECT COUNT(*) FROM object_records r JOIN upload_files f
                         ON f.id = r.upload_file_id WHERE f.upload_id = u.id) AS record_count
             FROM uploads u WHERE u.creator_id = $1 {filter}
             ORDER BY u.created_at DESC, u.id LIMIT $3 OFFSET $4"
        )))
        .bind(creator)
        .bind(state)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok((rows, total))
    }
}
