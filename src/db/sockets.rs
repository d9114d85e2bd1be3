//! One socket cap per cluster: how many upload sockets each node holds per user,
//! under a lease the node renews (`socket_leases`). A node counts its own rows
//! whatever their lease (it is alive: it is asking) and other nodes' rows while
//! their lease runs, so a killed node's sockets stop counting within a lease.

use super::{Backend, Db, now_ms};

impl Db {
    /// Takes one socket of `user_id` for `node` unless the user already holds
    /// `max` in the cluster; the lease of the row runs `lease_ms` from now. Per
    /// user, takers are serialized (the user's row locked on PostgreSQL; SQLite's
    /// writers are serialized anyway), so two nodes never both take the last one.
    pub async fn take_socket(
        &self,
        node: &str,
        user_id: i64,
        max: i64,
        lease_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        }
        let held: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(sockets), 0) AS BIGINT) FROM socket_leases
             WHERE user_id = $1 AND (expires_at > $2 OR node = $3)",
        )
        .bind(user_id)
        .bind(now)
        .bind(node)
        .fetch_one(&mut *tx)
        .await?;
        if held >= max {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO socket_leases (node, user_id, sockets, expires_at) VALUES ($1, $2, 1, $3)
             ON CONFLICT (node, user_id) DO UPDATE
             SET sockets = socket_leases.sockets + 1, expires_at = excluded.expires_at",
        )
        .bind(node)
        .bind(user_id)
        .bind(now + lease_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Gives one socket of `user_id` on `node` back.
    pub async fn release_socket(&self, node: &str, user_id: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE socket_leases SET sockets = sockets - 1
             WHERE node = $1 AND user_id = $2 AND sockets > 0",
        )
        .bind(node)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Renews `node`'s leases for `lease_ms`, forgets its rows of no socket, and
    /// removes any node's rows whose lease ran out over a minute ago.
    pub async fn renew_socket_leases(&self, node: &str, lease_ms: i64) -> Result<(), sqlx::Error> {
        let now = now_ms();
        sqlx::query("UPDATE socket_leases SET expires_at = $1 WHERE node = $2")
            .bind(now + lease_ms)
            .bind(node)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "DELETE FROM socket_leases WHERE (node = $1 AND sockets <= 0) OR expires_at < $2",
        )
        .bind(node)
        .bind(now - 60_000)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets every socket of `node` (it is shutting down).
    pub async fn release_node_sockets(&self, node: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM socket_leases WHERE node = $1")
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
