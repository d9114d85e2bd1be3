//! Event History API tables: service API keys, tenants, their databases (the
//! per-tenant namespaces) and events. See `docs/PROTOCOL.md`, "Event History API".

use sqlx::AssertSqlSafe;

use super::{Db, is_unique_violation, now_ms};

/// A tenant as the API resolves it from `X-Client-Id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    /// The `X-Client-Id` value.
    pub client_id: String,
    /// The tenant's database name; the object key prefix of its files.
    pub database_name: String,
    /// Whether the tenant's database exists (and is not being dropped).
    pub database_exists: bool,
}

/// What creating a tenant did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateTenant {
    /// Created.
    Created,
    /// The database name belongs to another tenant.
    NameTaken,
    /// The database name belonged to a deleted tenant whose files are not purged yet.
    NameBeingPurged,
}

/// An event to record.
#[derive(Debug, Clone)]
pub struct NewEventRow<'a> {
    pub database_name: &'a str,
    pub event_id: &'a str,
    pub event_time: i64,
    pub event_type_id: &'a str,
    pub record_id: &'a str,
    pub file_id: Option<&'a str>,
    /// The envelope's `detail`, as JSON text.
    pub detail: &'a str,
    /// The envelope without `detail`, as JSON text.
    pub envelope: &'a str,
}

/// What inserting an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertEvent {
    /// The event is new.
    Inserted,
    /// An event with this id exists already; its stored `detail` JSON text.
    Exists(String),
    /// The tenant's database does not exist (any more).
    NoDatabase,
}

/// A stored event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub event_id: String,
    pub event_time: i64,
    pub file_id: Option<String>,
    /// The envelope's `detail`, as JSON text.
    pub detail: String,
    pub created_at: i64,
}

/// Filters of an event listing; `None` does not filter.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub record_id: Option<String>,
    pub event_type_id: Option<String>,
    /// Inclusive lower bound on `event_time`, epoch ms.
    pub after: Option<i64>,
    /// Inclusive upper bound on `event_time`, epoch ms.
    pub before: Option<i64>,
}

const EVENT_COLUMNS: &str = "event_id, event_time, file_id, detail, created_at";

/// A tenant joined with its database row, if any.
#[derive(sqlx::FromRow)]
struct TenantJoin {
    client_id: String,
    database_name: String,
    db_name: Option<String>,
    dropped_at: Option<i64>,
}

impl Db {
    /// Stores a service API key by its id and keyed hash.
    pub async fn create_api_key(
        &self,
        id: &str,
        label: &str,
        key_hash: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO history_api_keys (id, label, key_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(label)
            .bind(key_hash)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The stored hash of an unrevoked API key.
    pub async fn api_key_hash(&self, id: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar::<_, String>(
            "SELECT key_hash FROM history_api_keys WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }

    /// Revokes every unrevoked key labelled `label`; how many.
    pub async fn revoke_api_keys(&self, label: &str) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "UPDATE history_api_keys SET revoked_at = $1 WHERE label = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(label)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Creates a tenant and its database in one transaction.
    pub async fn create_tenant(
        &self,
        client_id: &str,
        client_label: &str,
        client_secret_hash: &str,
        database_name: &str,
    ) -> Result<CreateTenant, sqlx::Error> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let dropped: Option<Option<i64>> =
            sqlx::query_scalar("SELECT dropped_at FROM history_databases WHERE name = $1")
                .bind(database_name)
                .fetch_optional(&mut *tx)
                .await?;
        match dropped {
            Some(Some(_)) => return Ok(CreateTenant::NameBeingPurged),
            Some(None) => return Ok(CreateTenant::NameTaken),
            None => {}
        }
        let inserted = async {
            sqlx::query("INSERT INTO history_databases (name, created_at) VALUES ($1, $2)")
                .bind(database_name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO history_tenants (client_id, client_label, client_secret_hash, database_name, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(client_id)
            .bind(client_label)
            .bind(client_secret_hash)
            .bind(database_name)
            .bind(now)
            .execute(&mut *tx)
            .await
        }
        .await;
        match inserted {
            Ok(_) => {}
            // A concurrent creation of the same name, or a tenant row left pointing at
            // a database that was dropped and purged.
            Err(e) if is_unique_violation(&e) => return Ok(CreateTenant::NameTaken),
            Err(e) => return Err(e),
        }
        tx.commit().await?;
        Ok(CreateTenant::Created)
    }

    /// Resolves `X-Client-Id`.
    pub async fn tenant_by_client_id(
        &self,
        client_id: &str,
    ) -> Result<Option<TenantRow>, sqlx::Error> {
        let row: Option<TenantJoin> = sqlx::query_as(
            "SELECT t.client_id, t.database_name, d.name AS db_name, d.dropped_at
             FROM history_tenants t LEFT JOIN history_databases d ON d.name = t.database_name
             WHERE t.client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|t| TenantRow {
            client_id: t.client_id,
            database_name: t.database_name,
            database_exists: t.db_name.is_some() && t.dropped_at.is_none(),
        }))
    }

    /// Deletes a tenant and its events, and marks its database dropped with its files
    /// to be purged at `purge_after` (epoch ms). Returns the database name, or `None`
    /// when there is no such tenant.
    pub async fn delete_tenant(
        &self,
        client_id: &str,
        purge_after: i64,
    ) -> Result<Option<String>, sqlx::Error> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let Some(name) = sqlx::query_scalar::<_, String>(
            "DELETE FROM history_tenants WHERE client_id = $1 RETURNING database_name",
        )
        .bind(client_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM history_events WHERE database_name = $1")
            .bind(&name)
            .execute(&mut *tx)
            .await?;
        // Upsert: a tenant whose database row went missing may still have files.
        sqlx::query(
            "INSERT INTO history_databases (name, created_at, dropped_at, purge_after) VALUES ($1, $2, $2, $3)
             ON CONFLICT (name) DO UPDATE SET dropped_at = excluded.dropped_at, purge_after = excluded.purge_after",
        )
        .bind(&name)
        .bind(now)
        .bind(purge_after)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(name))
    }

    /// Dropped databases whose files are due for purging at `now` (epoch ms).
    pub async fn due_purges(&self, now: i64) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT name FROM history_databases WHERE dropped_at IS NOT NULL AND purge_after <= $1 ORDER BY name",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
    }

    /// Forgets a dropped database once its files are purged; its name is free again.
    pub async fn finish_purge(&self, name: &str, now: i64) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM history_databases WHERE name = $1 AND dropped_at IS NOT NULL AND purge_after <= $2")
            .bind(name)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records an event unless one with its id exists in its database already. The
    /// database is checked in the same statement, so an event never lands in a
    /// database dropped before it.
    pub async fn insert_event(&self, e: &NewEventRow<'_>) -> Result<InsertEvent, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO history_events
                 (database_name, event_id, event_time, event_type_id, record_id, file_id, detail, envelope, created_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
             WHERE EXISTS (SELECT 1 FROM history_databases WHERE name = $1 AND dropped_at IS NULL)
             ON CONFLICT (database_name, event_id) DO NOTHING",
        )
        .bind(e.database_name)
        .bind(e.event_id)
        .bind(e.event_time)
        .bind(e.event_type_id)
        .bind(e.record_id)
        .bind(e.file_id)
        .bind(e.detail)
        .bind(e.envelope)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted > 0 {
            return Ok(InsertEvent::Inserted);
        }
        Ok(match self.event(e.database_name, e.event_id).await? {
            Some(existing) => InsertEvent::Exists(existing.detail),
            None => InsertEvent::NoDatabase,
        })
    }

    /// One event of a database.
    pub async fn event(
        &self,
        database_name: &str,
        event_id: &str,
    ) -> Result<Option<EventRow>, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM history_events WHERE database_name = $1 AND event_id = $2"
        )))
        .bind(database_name)
        .bind(event_id)
        .fetch_optional(&self.pool)
        .await
    }

    /// A page of a database's events, newest first, and the number matching `filter`.
    pub async fn list_events(
        &self,
        database_name: &str,
        filter: &EventFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<EventRow>, i64), sqlx::Error> {
        // Placeholders: $1 database, then one per filter in this order.
        let mut clauses = vec!["database_name = $1".to_string()];
        let mut n = 1;
        let mut next = |column_op: &str| {
            n += 1;
            clauses.push(format!("{column_op} ${n}"));
        };
        if filter.record_id.is_some() {
            next("record_id =");
        }
        if filter.event_type_id.is_some() {
            next("event_type_id =");
        }
        if filter.after.is_some() {
            next("event_time >=");
        }
        if filter.before.is_some() {
            next("event_time <=");
        }
        let filters = n;
        let where_sql = clauses.join(" AND ");

        macro_rules! bind_filters {
            ($q:expr) => {{
                let mut q = $q.bind(database_name);
                if let Some(v) = &filter.record_id {
                    q = q.bind(v.as_str());
                }
                if let Some(v) = &filter.event_type_id {
                    q = q.bind(v.as_str());
                }
                if let Some(v) = filter.after {
                    q = q.bind(v);
                }
                if let Some(v) = filter.before {
                    q = q.bind(v);
                }
                q
            }};
        }

        let count_sql = format!("SELECT COUNT(*) AS n FROM history_events WHERE {where_sql}");
        let total: i64 = bind_filters!(sqlx::query_scalar::<_, i64>(AssertSqlSafe(count_sql)))
            .fetch_one(&self.pool)
            .await?;
        let page_sql = format!(
            "SELECT {EVENT_COLUMNS} FROM history_events WHERE {where_sql}
             ORDER BY event_time DESC, event_id DESC LIMIT ${} OFFSET ${}",
            filters + 1,
            filters + 2
        );
        let rows = bind_filters!(sqlx::query_as::<_, EventRow>(AssertSqlSafe(page_sql)))
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        Ok((rows, total))
    }
}
