//! Object records.

use serde_json::{Map, Value};
use sqlx::AssertSqlSafe;

use super::record_events::{NewCreatedEvent, insert_created_events};
use super::{Db, JsonObject, now_ms};
use crate::domain::EventSource;

/// A stored record; `field_values` maps field aliases to values.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordRow {
    pub id: i64,
    pub object_class_id: i64,
    pub object_name: String,
    pub owner_id: i64,
    #[sqlx(try_from = "JsonObject")]
    pub field_values: Map<String, Value>,
    pub created_at: i64,
    pub modified_at: i64,
}

/// A record to insert from an upload: unique per (upload file, entry index).
#[derive(Debug, Clone)]
pub struct NewUploadRecord {
    pub object_name: String,
    pub field_values: Map<String, Value>,
    pub entry_index: i64,
    /// The entry's path in the archive, for the record's `record_created` event.
    pub entry_name: String,
}

/// The `event_data` of a record's `record_created` event.
fn created_event_data(object_name: &str, class_id: i64, owner_id: i64) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("object_name".into(), object_name.into());
    data.insert("object_class".into(), class_id.into());
    data.insert("owner".into(), owner_id.into());
    data
}

const RECORD_COLUMNS: &str =
    "id, object_class_id, object_name, owner_id, field_values, created_at, modified_at";

impl Db {
    /// Inserts one record and its `record_created` event from `source`, in one
    /// transaction.
    pub async fn create_record(
        &self,
        class_id: i64,
        object_name: &str,
        owner_id: i64,
        field_values: &Map<String, Value>,
        source: &EventSource,
    ) -> Result<RecordRow, sqlx::Error> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let row: RecordRow = sqlx::query_as(AssertSqlSafe(format!(
            "INSERT INTO object_records (object_class_id, object_name, owner_id, field_values, created_at, modified_at)
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING {RECORD_COLUMNS}"
        )))
        .bind(class_id)
        .bind(object_name)
        .bind(owner_id)
        .bind(Value::Object(field_values.clone()).to_string())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let event = NewCreatedEvent {
            record_id: row.id,
            extra_info: Map::new(),
            event_data: created_event_data(object_name, class_id, owner_id),
        };
        insert_created_events(&mut tx, source, &[event], now).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Inserts records made from the entries of one uploaded file, in one statement,
    /// and in the same transaction each new record's `record_created` event from
    /// `source` (the entry added to its `source_info`). Entries already inserted (a
    /// retried job) are skipped, never duplicated, and so are their events.
    /// Returns how many rows were new.
    pub async fn insert_upload_records(
        &self,
        class_id: i64,
        owner_id: i64,
        upload_file_id: &str,
        records: &[NewUploadRecord],
        source: &EventSource,
    ) -> Result<u64, sqlx::Error> {
        if records.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let mut sql = String::from(
            "INSERT INTO object_records (object_class_id, object_name, owner_id, field_values, upload_file_id, upload_entry, created_at, modified_at) VALUES ",
        );
        // Shared values first: $1 class, $2 owner, $3 upload file, $4 now.
        for (i, _) in records.iter().enumerate() {
            let base = 5 + i * 3;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "($1, ${}, $2, ${}, $3, ${}, $4, $4)",
                base,
                base + 1,
                base + 2
            ));
        }
        sql.push_str(" ON CONFLICT (upload_file_id, upload_entry) DO NOTHING");
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(class_id)
            .bind(owner_id)
            .bind(upload_file_id)
            .bind(now);
        for r in records {
            query = query
                .bind(r.object_name.clone())
                .bind(Value::Object(r.field_values.clone()).to_string())
                .bind(r.entry_index);
        }
        let mut tx = self.begin_write().await?;
        let inserted = query.execute(&mut *tx).await?.rows_affected();
        // The file's records without their event: the ones just inserted (and any
        // left without one by an older version); a record that has one is skipped.
        let missing: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT r.id, r.upload_entry, r.object_name FROM object_records r
             WHERE r.upload_file_id = $1 AND NOT EXISTS (SELECT 1 FROM record_events e
                 WHERE e.record_id = r.id AND e.event_type = 'record_created')
             ORDER BY r.upload_entry",
        )
        .bind(upload_file_id)
        .fetch_all(&mut *tx)
        .await?;
        let names: std::collections::HashMap<i64, &str> = records
            .iter()
            .map(|r| (r.entry_index, r.entry_name.as_str()))
            .collect();
        let events: Vec<NewCreatedEvent> = missing
            .into_iter()
            .map(|(record_id, entry, object_name)| {
                let mut extra = Map::new();
                extra.insert("entry_index".into(), entry.into());
                if let Some(name) = names.get(&entry) {
                    extra.insert("entry_name".into(), (*name).into());
                }
                NewCreatedEvent {
                    record_id,
                    extra_info: extra,
                    event_data: created_event_data(&object_name, class_id, owner_id),
                }
            })
            .collect();
        for chunk in events.chunks(500) {
            insert_created_events(&mut tx, source, chunk, now).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Counts the records made from one uploaded file.
    pub async fn count_upload_records(&self, upload_file_id: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) AS n FROM object_records WHERE upload_file_id = $1")
            .bind(upload_file_id)
            .fetch_one(&self.pool)
            .await
    }

    /// The ids of the records made from an upload's files, in entry order.
    pub async fn upload_record_ids(&self, upload_id: &str) -> Result<Vec<i64>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT r.id FROM object_records r JOIN upload_files f ON f.id = r.upload_file_id
             WHERE f.upload_id = $1 ORDER BY r.upload_file_id, r.upload_entry",
        )
        .bind(upload_id)
        .fetch_all(&self.pool)
        .await
    }

    /// One record by id.
    pub async fn record_by_id(&self, id: i64) -> Result<Option<RecordRow>, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {RECORD_COLUMNS} FROM object_records WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }

    /// A page of records (optionally of one class), by id, and the total count.
    pub async fn list_records(
        &self,
        class_id: Option<i64>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<RecordRow>, i64), sqlx::Error> {
        let (filter, total_sql) = match class_id {
            Some(_) => (
                "WHERE object_class_id = $3",
                "SELECT COUNT(*) AS n FROM object_records WHERE object_class_id = $1",
            ),
            None => ("", "SELECT COUNT(*) AS n FROM object_records"),
        };
        let mut q = sqlx::query_scalar::<_, i64>(total_sql);
        if let Some(c) = class_id {
            q = q.bind(c);
        }
        let total = q.fetch_one(&self.pool).await?;
        let mut q = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {RECORD_COLUMNS} FROM object_records {filter} ORDER BY id LIMIT $1 OFFSET $2"
        )))
        .bind(limit)
        .bind(offset);
        if let Some(c) = class_id {
            q = q.bind(c);
        }
        Ok((q.fetch_all(&self.pool).await?, total))
    }
}
