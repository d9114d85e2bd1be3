//! Upgrading a database that holds data: the typed-states migration (0003) keeps
//! every row (nothing cascades away while SQLite rebuilds its tables), fills the
//! progress columns from the rows' states, and from then on refuses unknown states.

use std::borrow::Cow;

use intake::db::Db;
use intake::db::now_ms;
use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;

use crate::helpers::{test_backend, test_settings};

/// The database as the previous release left it: migrations before 0003 applied.
async fn database_before_typed_states(db: &Db) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(test_backend());
    let mut old = Migrator::new(dir).await.unwrap();
    let before: Vec<_> = old
        .migrations
        .iter()
        .filter(|m| m.version < 3)
        .cloned()
        .collect();
    assert_eq!(before.len(), 2);
    old.migrations = Cow::Owned(before);
    old.run(&db.pool).await.unwrap();
}

async fn exec(db: &Db, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn typed_states_migration_keeps_data_and_then_refuses_unknown_states() {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path()).await;
    let url = settings.effective_database_url();
    let db = Db::connect(url.expose_secret(), 2).await.unwrap();
    database_before_typed_states(&db).await;
    let now = now_ms();
    for sql in [
        format!(
            "INSERT INTO users (email, password_hash, account_type, created_at) VALUES ('a@x', 'h', 'internal', {now})"
        ),
        format!(
            "INSERT INTO object_classes (name, identifier, created_at, created_by, modified_at, modified_by) VALUES ('C', 'c', {now}, 1, {now}, 1)"
        ),
        format!(
            "INSERT INTO class_fields (object_class_id, label, alias, field_type, created_at) VALUES (1, 'Doc', 'doc', 'document', {now})"
        ),
        format!(
            "INSERT INTO uploads (id, creator_id, object_class_id, class_field_id, state, created_at, expires_at) VALUES ('u1', 1, 1, 1, 'processing', {now}, {now})"
        ),
    ] {
        exec(&db, &sql).await;
    }
    for (id, state) in [
        ("f-pending", "pending"),
        ("f-completed", "completed"),
        ("f-processed", "processed"),
        ("f-failed", "failed"),
    ] {
        exec(&db, &format!(
            "INSERT INTO upload_files (id, upload_id, temp_upload_id, file_name, file_size, file_type, s3_key, is_multipart, total_parts, state, created_at)
             VALUES ('{id}', 'u1', 't', 'a.zip', 1, 'application/zip', 'k/{id}', 0, 1, '{state}', {now})"
        )).await;
    }
    exec(&db, &format!(
        "INSERT INTO jobs (kind, dedupe_key, payload, state, attempts, max_attempts, run_at, created_at, updated_at)
         VALUES ('process_upload_file', 'process_upload_file:f-completed', '{{}}', 'queued', 0, 8, {now}, {now}, {now})"
    )).await;
    exec(&db, &format!("INSERT INTO upload_messages (upload_id, message, created_at) VALUES ('u1', '{{}}', {now})")).await;

    db.migrate().await.unwrap();

    // Nothing was lost: no cascade while tables were rebuilt.
    assert_eq!(count(&db, "SELECT COUNT(*) FROM upload_files").await, 4);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM upload_messages").await, 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM uploads").await, 1);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM jobs WHERE state = 'queued'").await,
        1
    );
    // Progress as the rows' states imply: a completed file already sent `queued` (1).
    for (id, attempt, reported) in [
        ("f-pending", 0, false),
        ("f-completed", 1, false),
        ("f-processed", 1, true),
    ] {
        let p = db.file_progress(id).await.unwrap().unwrap();
        assert_eq!((p.attempt, p.success_reported), (attempt, reported), "{id}");
        assert_eq!(p.av_status, intake::domain::AvStatus::Skipped);
    }
    let file = db.upload_file_by_id("f-completed").await.unwrap().unwrap();
    assert_eq!(file.state, intake::domain::FileState::Completed);

    // Unknown states are refused by the database itself.
    for sql in [
        "UPDATE upload_files SET state = 'done' WHERE id = 'f-pending'",
        "UPDATE uploads SET state = 'finished' WHERE id = 'u1'",
        "UPDATE jobs SET state = 'paused'",
        "UPDATE jobs SET kind = 'other'",
        "UPDATE upload_files SET av_status = 'maybe' WHERE id = 'f-pending'",
    ] {
        let refused = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&db.pool)
            .await;
        assert!(refused.is_err(), "{sql} was accepted");
    }
    // Known ones still go through.
    exec(
        &db,
        "UPDATE uploads SET state = 'succeeded' WHERE id = 'u1'",
    )
    .await;
}
