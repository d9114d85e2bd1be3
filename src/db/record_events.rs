//! Record history: the events of object records (`record_events`). Each record has
//! exactly one `record_created` event, written in the transaction that inserts the
//! record; a partial unique index keeps a retried insert from writing a second.

use serde_json::{Map, Value};
use sqlx::{AnyConnection, AssertSqlSafe};

use super::{Db, JsonObject};
use crate::domain::{EventSource, EventSourceType, RecordEventType};

/// One stored event of a record.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordEventRow {
    pub event_id: String,
    pub record_id: i64,
    pub event_type: RecordEventType,
    pub source_type: EventSourceType,
    pub source_name: String,
    pub source_id: String,
    #[sqlx(try_from = "JsonObject")]
    pub source_info: Map<String, Value>,
    #[sqlx(try_from = "JsonObject")]
    pub event_data: Map<String, Value>,
    pub created_at: i64,
}

/// A `record_created` event to write: the record, what to add to the source's
/// `source_info` for it (e.g. the archive entry) and its `event_data`.
#[derive(Debug, Clone)]
pub struct NewCreatedEvent {
    pub record_id: i64,
    pub extra_info: Map<String, Value>,
    pub event_data: Map<String, Value>,
}

/// Writes `record_created` events from `source` on `conn` (inside the caller's
/// transaction), in one statement; a record that already has one keeps it.
pub(super) async fn insert_created_events(
    conn: &mut AnyConnection,
    source: &EventSource,
    events: &[NewCreatedEvent],
    now: i64,
) -> Result<u64, sqlx::Error> {
    if events.is_empty() {
        return Ok(0);
    }
    let mut sql = String::from(
        "INSERT INTO record_events (event_type, source_type, source_name, source_id, created_at, event_id, record_id, source_info, event_data) VALUES ",
    );
    // Shared values first: $1 type, $2 source type, $3 source name, $4 source id, $5 now.
    for i in 0..events.len() {
        let base = 6 + i * 4;
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!(
            "($1, $2, $3, $4, $5, ${}, ${}, ${}, ${})",
            base,
            base + 1,
            base + 2,
            base + 3
        ));
    }
    sql.push_str(" ON CONFLICT DO NOTHING");
    let mut query = sqlx::query(AssertSqlSafe(sql))
        .bind(RecordEventType::RecordCreated.as_str())
        .bind(source.source_type.as_str())
        .bind(source.source_name.clone())
        .bind(source.source_id.clone())
        .bind(now);
    for e in events {
        let mut info = source.source_info.clone();
        info.extend(e.extra_info.clone());
        query = query
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(e.record_id)
            .bind(Value::Object(info).to_string())
            .bind(Value::Object(e.event_data.clone()).to_string());
    }
    Ok(query.execute(conn).await?.rows_affected())
}

const EVENT_COLUMNS: &str = "event_id, record_id, event_type, source_type, source_name, source_id, source_info, event_data, created_at";

impl Db {
    /// A page of one record's events, oldest first, optionally of one type; with
    /// the count of all its events and of those matching the filter.
    pub async fn record_events(
        &self,
        record_id: i64,
        event_type: Option<RecordEventType>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<RecordEventRow>, i64, i64), sqlx::Error> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) AS n FROM record_events WHERE record_id = $1")
                .bind(record_id)
                .fetch_one(&self.pool)
                .await?;
        let filter = if event_type.is_some() {
            "AND event_type = $4"
        } else {
            ""
        };
        let filtered = match event_type {
            Some(t) => sqlx::query_scalar(
                "SELECT COUNT(*) AS n FROM record_events WHERE record_id = $1 AND event_type = $2",
            )
            .bind(record_id)
            .bind(t.as_str())
            .fetch_one(&self.pool)
            .await?,
            None => total,
        };
        let mut q = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM record_events WHERE record_id = $1 {filter}
             ORDER BY id LIMIT $2 OFFSET $3"
        )))
        .bind(record_id)
        .bind(limit)
        .bind(offset);
        if let Some(t) = event_type {
            q = q.bind(t.as_str());
        }
        Ok((q.fetch_all(&self.pool).await?, total, filtered))
    }
}
