//! What the sweeper reads and writes: a leased row that makes one node at a time
//! the sweeper (portable: an advisory lock would need one held connection per node
//! on PostgreSQL and does not exist on SQLite), the file sessions abandoned before
//! completion, and uploads that expired with nothing uploaded.

use sqlx::AssertSqlSafe;

use super::uploads::{UploadFileRow, settle_upload_on};
use super::{Db, now_ms};
use crate::domain::UploadState;

impl Db {
    /// Takes or renews lease `name` for `holder` until `ttl_ms` from now; false
    /// while another holder's lease is unexpired.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let now = now_ms();
        let n = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl_ms)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Gives lease `name` up if `holder` has it (a node shutting down).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Up to `limit` file sessions still `pending` (URLs issued, never completed)
    /// in uploads past their expiry, created before `created_before` (so that no
    /// URL issued for them is still valid).
    pub async fn abandoned_files(
        &self,
        now: i64,
        created_before: i64,
        limit: i64,
    ) -> Result<Vec<UploadFileRow>, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {} FROM upload_files f JOIN uploads u ON u.id = f.upload_id
             WHERE f.state = 'pending' AND u.expires_at < $1 AND f.created_at < $2
             ORDER BY f.created_at LIMIT $3",
            super::uploads::FILE_COLUMNS
                .split(',')
                .map(|c| format!("f.{}", c.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .bind(now)
        .bind(created_before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Forgets an abandoned file session (its objects are gone) and settles its
    /// upload in the same transaction: `expired` when no file is left, else as
    /// its other files decide. False when the session is no longer pending (it
    /// completed meanwhile).
    pub async fn drop_abandoned_file(
        &self,
        file_id: &str,
        upload_id: &str,
    ) -> Result<Option<Option<UploadState>>, sqlx::Error> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM upload_files WHERE id = $1 AND state = 'pending'")
            .bind(file_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM upload_files WHERE upload_id = $1")
                .bind(upload_id)
                .fetch_one(&mut *tx)
                .await?;
        let settled = if left == 0 {
            sqlx::query(
                "UPDATE uploads SET state = 'expired', finished_at = $1
                 WHERE id = $2 AND state IN ('open', 'processing')",
            )
            .bind(now_ms())
            .bind(upload_id)
            .execute(&mut *tx)
            .await?;
            Some(UploadState::Expired)
        } else {
            settle_upload_on(&mut tx, upload_id).await?
        };
        tx.commit().await?;
        Ok(Some(settled))
    }

    /// Marks `open` uploads past `expired_before` that never had a file session
    /// `expired`; returns their ids.
    pub async fn expire_empty_uploads(
        &self,
        expired_before: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "UPDATE uploads SET state = 'expired', finished_at = $1
             WHERE state = 'open' AND expires_at < $2
               AND NOT EXISTS (SELECT 1 FROM upload_files f WHERE f.upload_id = uploads.id)
             RETURNING id",
        )
        .bind(now_ms())
        .bind(expired_before)
        .fetch_all(&self.pool)
        .await
    }

    /// Deletes up to `limit` uploads that ended `expired` before `finished_before`
    /// and hold nothing (no file session, no job: the sweeper removed what they
    /// had), with their message logs; returns their ids.
    pub async fn purge_expired_uploads(
        &self,
        finished_before: i64,
        limit: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        let mut tx = self.begin_write().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM uploads u
             WHERE state = 'expired' AND finished_at < $1
               AND NOT EXISTS (SELECT 1 FROM upload_files f WHERE f.upload_id = u.id)
             ORDER BY finished_at LIMIT $2",
        )
        .bind(finished_before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            sqlx::query("DELETE FROM upload_messages WHERE upload_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM uploads WHERE id = $1 AND state = 'expired'")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(ids)
    }
}
