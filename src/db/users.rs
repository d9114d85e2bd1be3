//! Users and one-time WebSocket tickets.

use super::{Db, IntBool, now_ms};
use crate::domain::{AccountType, User};

/// A user row with its password hash, for logging in.
#[derive(sqlx::FromRow)]
pub struct UserWithHash {
    /// The user.
    #[sqlx(flatten, try_from = "UserRow")]
    pub user: User,
    /// The argon2 PHC string.
    pub password_hash: String,
    /// Whether the account may log in.
    #[sqlx(try_from = "IntBool")]
    pub is_active: bool,
}

/// A user as `admin list-users` shows it.
#[derive(Debug, sqlx::FromRow, serde::Serialize)]
pub struct UserListing {
    /// The user's id.
    pub id: i64,
    /// The e-mail they log in with.
    pub email: String,
    /// What they may do.
    pub account_type: AccountType,
    /// Whether the account may log in.
    #[sqlx(try_from = "IntBool")]
    pub is_active: bool,
    /// When it was created, epoch milliseconds.
    pub created_at: i64,
}

/// What `delete_user` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Deletion {
    /// The row is gone.
    Deleted,
    /// The user created things, so the row stays, deactivated.
    Deactivated,
}

/// The `id, email, account_type` columns of a `users` row.
#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    email: String,
    account_type: AccountType,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            email: r.email,
            account_type: r.account_type,
        }
    }
}

impl Db {
    /// Inserts a user; a taken e-mail is a unique violation.
    pub async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        account_type: AccountType,
    ) -> Result<User, sqlx::Error> {
        let row: UserRow = sqlx::query_as(
            "INSERT INTO users (email, password_hash, account_type, is_active, created_at)
             VALUES ($1, $2, $3, 1, $4) RETURNING id, email, account_type",
        )
        .bind(email)
        .bind(password_hash)
        .bind(account_type.as_str())
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    /// Every user, by id (the admin CLI's `list-users`).
    pub async fn list_users(&self) -> Result<Vec<UserListing>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, email, account_type, is_active, created_at FROM users ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Replaces the password hash of the user with `email` (case-insensitive);
    /// whether there was one.
    pub async fn set_password_hash(
        &self,
        email: &str,
        password_hash: &str,
    ) -> Result<bool, sqlx::Error> {
        let done =
            sqlx::query("UPDATE users SET password_hash = $1 WHERE lower(email) = lower($2)")
                .bind(password_hash)
                .bind(email)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes the user with `email`; a user that created classes, uploads or
    /// records is kept for their history and deactivated instead (no log-in, its
    /// tokens stop working). `None`: no such user.
    pub async fn delete_user(&self, email: &str) -> Result<Option<(i64, Deletion)>, sqlx::Error> {
        let Some(found) = self.user_by_email(email).await? else {
            return Ok(None);
        };
        let id = found.user.id;
        let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await;
        match deleted {
            Ok(_) => Ok(Some((id, Deletion::Deleted))),
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                sqlx::query("UPDATE users SET is_active = 0 WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(Some((id, Deletion::Deactivated)))
            }
            Err(e) => Err(e),
        }
    }

    /// Looks a user up by e-mail (case-insensitive), with the password hash.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserWithHash>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, email, account_type, password_hash, is_active FROM users WHERE lower(email) = lower($1)",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await
    }

    /// Looks an active user up by id.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>, sqlx::Error> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, email, account_type FROM users WHERE id = $1 AND is_active = 1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(User::from))
    }

    /// Stores a one-time ticket by its hash.
    pub async fn create_ticket(
        &self,
        ticket_hash: &str,
        user_id: i64,
        ttl_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let now = now_ms();
        // Expired tickets are useless; sweep them while we are here.
        sqlx::query("DELETE FROM ws_tickets WHERE expires_at < $1")
            .bind(now - 3_600_000)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO ws_tickets (ticket_hash, user_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(ticket_hash)
        .bind(user_id)
        .bind(now + ttl_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Spends a ticket: returns its user when it exists, is unexpired and unused, and
    /// marks it used in the same statement, so two sockets can never share one.
    pub async fn consume_ticket(&self, ticket_hash: &str) -> Result<Option<User>, sqlx::Error> {
        let now = now_ms();
        let user_id: Option<i64> = sqlx::query_scalar(
            "UPDATE ws_tickets SET used_at = $1
             WHERE ticket_hash = $2 AND used_at IS NULL AND expires_at >= $1
             RETURNING user_id",
        )
        .bind(now)
        .bind(ticket_hash)
        .fetch_optional(&self.pool)
        .await?;
        match user_id {
            Some(id) => self.user_by_id(id).await,
            None => Ok(None),
        }
    }

    /// Grants `user_id` the right to create records in `class_id`.
    pub async fn grant_class(&self, class_id: i64, user_id: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO class_permissions (object_class_id, user_id) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(class_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether `user` may create records in `class_id`.
    pub async fn may_create_in(&self, user: &User, class_id: i64) -> Result<bool, sqlx::Error> {
        if user.account_type.creates_anywhere() {
            return Ok(true);
        }
        let row = sqlx::query(
            "SELECT 1 AS ok FROM class_permissions WHERE object_class_id = $1 AND user_id = $2",
        )
        .bind(class_id)
        .bind(user.id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }
}
