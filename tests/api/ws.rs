//! The upload WebSocket (`shared/seeds/000_42432367509e1fbe.txt`, issue 3) over a
//! real socket with tokio-tungstenite: one test per error row of the page (exact
//! code, exact detail, then close 1000), the single-PUT and multipart happy paths
//! with the bytes PUT by a plain HTTP client to the embedded S3, several files on
//! one connection, replay on reconnect, and the hardening rules of the issue.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::StreamExt;
use intake::config::Settings;
use intake::domain::{AccountType, UploadState};
use intake::store::ObjectStore;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::TestApp;
use crate::helpers::socket::{Socket, WAIT, parts_json, put, put_parts, socket_path};

const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------
// Client helpers
// ---------------------------------------------------------------------------

/// A running app with a configurator, a class with a document field and one open
/// upload of that user.
struct Fx {
    app: TestApp,
    token: String,
    class: i64,
    field: i64,
    upload: String,
}

async fn fixture() -> Fx {
    fixture_with(|_| {}).await
}

/// The socket's own behaviour is tested with the pipeline's workers off, so that
/// what follows a completion is only the socket's `queued` message (the pipeline's
/// messages are tested in `pipeline.rs`).
async fn fixture_with(tweak: impl FnOnce(&mut Settings)) -> Fx {
    let app = TestApp::spawn_with(|s| {
        s.jobs.run_workers = false;
        tweak(s);
    })
    .await;
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&token).await;
    let upload = app.create_upload(&token, class, field).await;
    Fx {
        app,
        token,
        class,
        field,
        upload,
    }
}

/// Multipart from 5 MiB on, in 5 MiB chunks: S3's minimum, so tests stay small.
fn small_multipart(s: &mut Settings) {
    s.uploads.multipart_threshold_bytes = 5 * MIB;
    s.uploads.multipart_chunk_bytes = Some(5 * MIB);
}

impl Fx {
    /// A socket on `upload` with a fresh ticket, before any message is read.
    async fn connect_to(&self, upload: &str) -> Socket {
        Socket::open_upload(&self.app, &self.token, upload).await
    }

    /// A socket on the fixture's upload, past `connection_established`.
    async fn open(&self) -> Socket {
        Socket::connect(&self.app, &self.token, &self.upload).await
    }

    /// A valid `request_presigned_url` for a ZIP of `size` bytes.
    fn presign(&self, temp: &str, size: i64) -> Value {
        json!({
            "type": "request_presigned_url",
            "temp_upload_id": temp,
            "file_name": "batch.zip",
            "file_size": size,
            "file_type": "application/zip",
            "object_class": self.class,
            "class_field": self.field,
        })
    }

    /// Opens a socket, sends `text`, and expects the error row then close 1000.
    async fn rejects(&self, text: &str, code: &str, detail: &str) {
        let mut ws = self.open().await;
        ws.send_text(text).await;
        ws.expect_error(code, detail).await;
    }

    /// [`Fx::rejects`] for the presign request with `field` set to `value`.
    async fn rejects_field(&self, field: &str, value: Value, code: &str, detail: &str) {
        self.rejects(&self.presign_with(field, Some(value)), code, detail)
            .await;
    }

    /// The presign request with `field` replaced (or removed when `value` is None).
    fn presign_with(&self, field: &str, value: Option<Value>) -> String {
        let mut msg = self.presign("temp_1", 1024);
        match value {
            Some(v) => msg[field] = v,
            None => {
                msg.as_object_mut().unwrap().remove(field);
            }
        }
        msg.to_string()
    }

    /// The state of the processing job of file session `session`.
    async fn job_state(&self, session: &str) -> String {
        let key = format!("process_upload_file:{session}");
        let job = self.app.state.db.job_status(&key).await.unwrap();
        job.expect("a job for the session").state.to_string()
    }

    /// Requests a URL for `size` bytes and returns the `message` of the answer.
    async fn request(&self, ws: &mut Socket, temp: &str, size: u64) -> Value {
        ws.send(&self.presign(temp, size as i64)).await;
        let ready = ws.recv().await;
        assert_eq!(ready["type"], "presigned_url_ready", "{ready}");
        ready["message"].clone()
    }
}

/// Deterministic, incompressible-looking bytes (a ZIP's first bytes, then noise).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let magic = b"PK\x03\x04";
    let n = magic.len().min(len);
    out[..n].copy_from_slice(&magic[..n]);
    out
}

/// The file session id and key of a `presigned_url_ready` message.
fn session_and_key(ready: &Value) -> (&str, &str) {
    (
        ready["upload_id"].as_str().unwrap(),
        ready["s3_key"].as_str().unwrap(),
    )
}

/// `upload_complete` naming `upload_id` (a file session's or the transaction's) and `key`.
fn upload_complete(upload_id: &str, key: &str) -> Value {
    json!({ "type": "upload_complete", "upload_id": upload_id, "s3_key": key })
}

/// PUTs `data` as a ZIP to the single-PUT URL of the `presigned_url_ready` message `ready`.
async fn put_zip(app: &TestApp, ready: &Value, data: Vec<u8>) -> reqwest::Response {
    put(
        app,
        ready["presigned_url"].as_str().unwrap(),
        data,
        Some("application/zip"),
    )
    .await
}

/// Checks the first `monitoring_update` of a completed file session.
fn assert_queued(update: &Value, session: &str, temp: &str) {
    assert_eq!(update["type"], "monitoring_update", "{update}");
    let m = &update["message"];
    assert_eq!(m["step_name"], "upload_complete");
    assert_eq!(m["status"], "queued");
    assert_eq!(m["attempt"], 1);
    assert_eq!(m["upload_id"], session);
    assert_eq!(m["temp_upload_id"], temp);
    let ts = m["timestamp"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(ts)
        .unwrap_or_else(|e| panic!("ISO 8601 timestamp {ts}: {e}"));
}

async fn set_upload_expiry(app: &TestApp, upload: &str, expires_at: i64) {
    sqlx::query("UPDATE uploads SET expires_at = $1 WHERE id = $2")
        .bind(expires_at)
        .bind(upload)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
}

async fn execute(app: &TestApp, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&app.state.db.pool)
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------
// The handshake and the error table
// ---------------------------------------------------------------------------

#[tokio::test]
async fn connection_established_is_the_page_message() {
    let fx = fixture().await;
    let mut ws = fx.connect_to(&fx.upload).await;
    match ws.next_frame().await {
        Some(Message::Text(t)) => assert_eq!(
            serde_json::from_str::<Value>(t.as_str()).unwrap(),
            json!({ "type": "connection_established", "message": "WebSocket connected successfully" })
        ),
        other => panic!("expected connection_established, got {other:?}"),
    }
    // The client ends the session normally.
    ws.close().await;
    while ws.next_frame().await.is_some() {}
}

#[tokio::test]
async fn err_incorrect_url() {
    let fx = fixture().await;
    let ticket = fx.app.ticket(&fx.token).await;
    let id = &fx.upload;
    for path in [
        "/ws".to_string(),
        "/ws/".to_string(),
        "/ws/nope/".to_string(),
        "/ws/object-records/uploads/".to_string(),
        "/ws/object-records/uploads".to_string(),
        format!("/ws/object-records/{id}/"),
        format!("/ws/object-records/uploads/{id}/extra/"),
        format!("/ws/object-records/downloads/{id}/"),
    ] {
        let mut ws = Socket::open(&fx.app, &format!("{path}?uuid={ticket}")).await;
        ws.expect_error("ERR_INCORRECT_URL", "Incorrect WebSocket URL.")
            .await;
    }
    // The path is checked before the ticket is spent.
    let mut ws = Socket::open(&fx.app, &format!("{}?uuid={ticket}", socket_path(id))).await;
    ws.expect_established().await;
}

#[tokio::test]
async fn err_invalid_uuid_for_bad_used_or_expired_upload_ids() {
    let fx = fixture().await;
    for bad in [
        "not-a-uuid",
        "1234",
        "3c2b9b89-2f2a-497c-aa0a-1be5a8fd93c",
        "3c2b9b89-2f2a-497c-aa0a-1be5a8fd93c8x",
    ] {
        let mut ws = fx.connect_to(bad).await;
        ws.expect_error("ERR_INVALID_UUID", "A valid UUID is required.")
            .await;
    }

    // Finished uploads (succeeded or failed) are used.
    for state in [UploadState::Succeeded, UploadState::Failed] {
        let upload = fx.app.create_upload(&fx.token, fx.class, fx.field).await;
        fx.app.state.db.finish_upload(&upload, state).await.unwrap();
        let mut ws = fx.connect_to(&upload).await;
        ws.expect_error("ERR_INVALID_UUID", "A valid UUID is required.")
            .await;
    }

    // An open upload past its expiry.
    let upload = fx.app.create_upload(&fx.token, fx.class, fx.field).await;
    set_upload_expiry(&fx.app, &upload, intake::db::now_ms() - 1).await;
    let mut ws = fx.connect_to(&upload).await;
    ws.expect_error("ERR_INVALID_UUID", "A valid UUID is required.")
        .await;

    // An upload that finishes while its socket is open: the next message is refused.
    let mut ws = fx.open().await;
    fx.app
        .state
        .db
        .finish_upload(&fx.upload, UploadState::Succeeded)
        .await
        .unwrap();
    ws.send(&fx.presign("temp_1", 1024)).await;
    ws.expect_error("ERR_INVALID_UUID", "A valid UUID is required.")
        .await;
}

#[tokio::test]
async fn err_invalid_uuid_for_upload_expired_by_configuration() {
    let fx = fixture_with(|s| s.uploads.upload_ttl = Duration::ZERO).await;
    // Created with a lifetime of 0 s: expired once its creation millisecond is past.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut ws = fx.connect_to(&fx.upload).await;
    ws.expect_error("ERR_INVALID_UUID", "A valid UUID is required.")
        .await;
}

#[tokio::test]
async fn err_invalid_uuid_for_missing_unknown_used_or_expired_tickets() {
    let fx = fixture().await;
    let path = socket_path(&fx.upload);
    let unknown = uuid::Uuid::new_v4();
    for query in [
        String::new(),
        "?uuid=".into(),
        "?ticket=x".into(),
        format!("?uuid={unknown}"),
    ] {
        let mut ws = Socket::open(&fx.app, &format!("{path}{query}")).await;
        ws.expect_error("ERR_INVALID_UUID", "A valid UUID is required.")
            .await;
    }
    // Without a valid ticket nothing is said about the upload, even a missing one.
    let mut ws = Socket::open(&fx.app, &socket_path(&uuid::Uuid::new_v4().to_string())).await;
    ws.expect_error("ERR_INVALID_UUID", "A valid UUID is required.")
        .await;

    // A ticket is spent by its first socket, even one that was later closed.
    let ticket = fx.app.ticket(&fx.token).await;
    let mut first = Socket::open(&fx.app, &format!("{path}?uuid={ticket}")).await;
    first.expect_established().await;
    let mut again = Socket::open(&fx.app, &format!("{path}?uuid={ticket}")).await;
    again
        .expect_error("ERR_INVALID_UUID", "A valid UUID is required.")
        .await;
    first.close().await;
    let mut again = Socket::open(&fx.app, &format!("{path}?uuid={ticket}")).await;
    again
        .expect_error("ERR_INVALID_UUID", "A valid UUID is required.")
        .await;

    // An expired ticket.
    let ticket = fx.app.ticket(&fx.token).await;
    sqlx::query("UPDATE ws_tickets SET expires_at = $1 WHERE ticket_hash = $2")
        .bind(intake::db::now_ms() - 1)
        .bind(intake::auth::ticket_hash(&ticket))
        .execute(&fx.app.state.db.pool)
        .await
        .unwrap();
    let mut ws = Socket::open(&fx.app, &format!("{path}?uuid={ticket}")).await;
    ws.expect_error("ERR_INVALID_UUID", "A valid UUID is required.")
        .await;
}

#[tokio::test]
async fn reused_ticket_is_refused() {
    let fx = fixture().await;
    let ticket = fx.app.ticket(&fx.token).await;
    let url = format!("{}?uuid={ticket}", socket_path(&fx.upload));
    let mut ws = Socket::open(&fx.app, &url).await;
    ws.expect_established().await;
    let mut reused = Socket::open(&fx.app, &url).await;
    reused
        .expect_error("ERR_INVALID_UUID", "A valid UUID is required.")
        .await;
    // The first socket is unaffected.
    let ready = fx.request(&mut ws, "temp_1", 10).await;
    assert_eq!(ready["temp_upload_id"], "temp_1");
}

#[tokio::test]
async fn err_does_not_exist() {
    let fx = fixture().await;
    const NOT_FOUND: &str = "Not found.";

    // A well-formed upload id that does not exist.
    let mut ws = fx.connect_to(&uuid::Uuid::new_v4().to_string()).await;
    ws.expect_error("ERR_DOES_NOT_EXIST", NOT_FOUND).await;

    // Another user's upload.
    let (_, other) = fx.app.user(AccountType::ConfigAdmin).await;
    let theirs = fx.app.create_upload(&other, fx.class, fx.field).await;
    let mut ws = fx.connect_to(&theirs).await;
    ws.expect_error("ERR_DOES_NOT_EXIST", NOT_FOUND).await;

    // object_class / class_field that are not the upload's.
    let (class2, field2) = fx.app.class_with_document_field(&fx.token).await;
    for (field, value) in [
        ("object_class", json!(class2)),
        ("class_field", json!(field2)),
        ("object_class", json!(987_654)),
        ("class_field", json!(987_654)),
    ] {
        fx.rejects_field(field, value, "ERR_DOES_NOT_EXIST", NOT_FOUND)
            .await;
    }
    // Primary keys may come as strings of digits, as REST forms send them.
    let mut ws = fx.open().await;
    let mut msg = fx.presign("temp_s", 10);
    msg["object_class"] = json!(fx.class.to_string());
    msg["class_field"] = json!(fx.field.to_string());
    ws.send(&msg).await;
    assert_eq!(ws.recv().await["type"], "presigned_url_ready");

    // upload_complete naming a session that does not exist...
    let unknown = uuid::Uuid::new_v4().to_string();
    let key = format!("uploads/{}/{unknown}.zip", fx.upload);
    fx.rejects(
        &upload_complete(&unknown, &key).to_string(),
        "ERR_DOES_NOT_EXIST",
        NOT_FOUND,
    )
    .await;
    fx.rejects(
        &upload_complete("nope", "nope").to_string(),
        "ERR_DOES_NOT_EXIST",
        NOT_FOUND,
    )
    .await;
    // ... or the transaction id with an s3_key that is none of its files'...
    fx.rejects(
        &upload_complete(&fx.upload, &key).to_string(),
        "ERR_DOES_NOT_EXIST",
        NOT_FOUND,
    )
    .await;
    // ... or a real session with another s3_key...
    let mut ws = fx.open().await;
    let ready = fx.request(&mut ws, "temp_2", 10).await;
    let session = ready["upload_id"].as_str().unwrap();
    ws.send(&upload_complete(session, "uploads/elsewhere.zip"))
        .await;
    ws.expect_error("ERR_DOES_NOT_EXIST", NOT_FOUND).await;
    // ... or another upload's session (same user).
    let upload2 = fx.app.create_upload(&fx.token, fx.class, fx.field).await;
    let mut ws = fx.connect_to(&upload2).await;
    ws.expect_established().await;
    ws.send(&upload_complete(session, ready["s3_key"].as_str().unwrap()))
        .await;
    ws.expect_error("ERR_DOES_NOT_EXIST", NOT_FOUND).await;

    // complete_multipart_upload with no multipart session open, or naming a
    // single-PUT session.
    let parts = json!([{ "part_number": 1, "e_tag": "\"x\"" }]);
    fx.rejects(
        &json!({ "type": "complete_multipart_upload", "parts": parts }).to_string(),
        "ERR_DOES_NOT_EXIST",
        NOT_FOUND,
    )
    .await;
    fx.rejects(
        &json!({ "type": "complete_multipart_upload", "upload_id": session, "parts": parts })
            .to_string(),
        "ERR_DOES_NOT_EXIST",
        NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn err_unsupported_file_type() {
    let fx = fixture().await;
    let allowed = "Allowed extensions are: application/zip, application/x-zip-compressed.";
    for file_type in [
        "text/plain",
        "application/pdf",
        "application/zip; charset=binary",
        "zip",
    ] {
        fx.rejects_field(
            "file_type",
            json!(file_type),
            "ERR_UNSUPPORTED_FILE_TYPE",
            &format!("File extension \u{201c}{file_type}\u{201d} is not allowed. {allowed}"),
        )
        .await;
    }
    // The exact text.
    fx.rejects_field("file_type", json!("text/plain"), "ERR_UNSUPPORTED_FILE_TYPE", "File extension “text/plain” is not allowed. Allowed extensions are: application/zip, application/x-zip-compressed.")
    .await;
    // Both ZIP types are accepted, whatever their case.
    let mut ws = fx.open().await;
    for (i, t) in [
        "application/zip",
        "application/x-zip-compressed",
        "Application/ZIP",
    ]
    .iter()
    .enumerate()
    {
        let mut msg = fx.presign(&format!("temp_{i}"), 10);
        msg["file_type"] = json!(t);
        ws.send(&msg).await;
        assert_eq!(ws.recv().await["type"], "presigned_url_ready", "{t}");
    }
}

#[tokio::test]
async fn err_invalid_payload() {
    let fx = fixture().await;
    let detail = "Required fields: type, temp_upload_id, file_name, file_size, file_type, object_class, class_field";
    let mut cases: Vec<String> = vec![
        // Not JSON.
        "not json".into(),
        "{".into(),
        "".into(),
        "   ".into(),
        "{\"type\": \"request_presigned_url\",}".into(),
        // No type at all, or a null one.
        "{}".into(),
        json!({ "type": null, "file_name": "a.zip" }).to_string(),
    ];
    // Each other required field missing (no type at all is `{}` above).
    for field in [
        "temp_upload_id",
        "file_name",
        "file_size",
        "file_type",
        "object_class",
        "class_field",
    ] {
        cases.push(fx.presign_with(field, None));
    }
    // Fields of the wrong type.
    for (field, value) in [
        ("file_size", json!("1024")),
        ("file_size", json!(10.5)),
        ("file_size", json!(true)),
        ("file_name", json!(5)),
        ("file_name", json!(["a.zip"])),
        ("file_type", json!(true)),
        ("temp_upload_id", json!({})),
        ("temp_upload_id", json!(null)),
        ("temp_upload_id", json!("")),
        ("object_class", json!("abc")),
        ("object_class", json!(null)),
        ("class_field", json!([1])),
    ] {
        cases.push(fx.presign_with(field, Some(value)));
    }
    // Completion messages without their fields.
    cases.extend([
        json!({ "type": "upload_complete" }).to_string(),
        json!({ "type": "upload_complete", "upload_id": fx.upload }).to_string(),
        json!({ "type": "upload_complete", "s3_key": "k" }).to_string(),
        json!({ "type": "upload_complete", "upload_id": 5, "s3_key": "k" }).to_string(),
        json!({ "type": "complete_multipart_upload" }).to_string(),
        json!({ "type": "complete_multipart_upload", "parts": "1" }).to_string(),
        json!({ "type": "complete_multipart_upload", "parts": [] }).to_string(),
        json!({ "type": "complete_multipart_upload", "parts": [{ "part_number": 1 }] }).to_string(),
        json!({ "type": "complete_multipart_upload", "parts": [{ "part_number": "1", "e_tag": "x" }] }).to_string(),
        json!({ "type": "complete_multipart_upload", "parts": [{ "part_number": 0, "e_tag": "x" }] }).to_string(),
        json!({ "type": "complete_multipart_upload", "parts": [{ "part_number": 1, "e_tag": "x" }, { "part_number": 1, "e_tag": "y" }] }).to_string(),
    ]);
    for text in &cases {
        fx.rejects(text, "ERR_INVALID_PAYLOAD", detail).await;
    }
    // A binary frame is not a JSON message either.
    let mut ws = fx.open().await;
    ws.send_frame(Message::binary(
        fx.presign("temp_b", 10).to_string().into_bytes(),
    ))
    .await;
    ws.expect_error("ERR_INVALID_PAYLOAD", detail).await;
}

#[tokio::test]
async fn err_file_too_large_with_the_default_limit() {
    let fx = fixture().await;
    for size in [json!(5_000_000_001_i64), json!(u64::MAX), json!(i64::MAX)] {
        fx.rejects_field(
            "file_size",
            size,
            "ERR_FILE_TOO_LARGE",
            "Max file size is 5 GB.",
        )
        .await;
    }
    // Exactly the limit is allowed (multipart, 16 MiB chunks).
    let mut ws = fx.open().await;
    let ready = fx.request(&mut ws, "temp_max", 5_000_000_000).await;
    assert_eq!(ready["is_multipart"], true);
    assert_eq!(ready["chunk_size"], 16 * MIB);
    assert_eq!(ready["total_parts"], 5_000_000_000_u64.div_ceil(16 * MIB));
    assert_eq!(
        ready["part_urls"].as_array().unwrap().len() as u64,
        5_000_000_000_u64.div_ceil(16 * MIB)
    );
}

#[tokio::test]
async fn err_file_too_large_with_a_configured_limit() {
    let fx = fixture_with(|s| s.uploads.max_upload_bytes = 1_000_000_000).await;
    fx.rejects_field(
        "file_size",
        json!(1_000_000_001_i64),
        "ERR_FILE_TOO_LARGE",
        "Max file size is 1 GB.",
    )
    .await;
}

#[tokio::test]
async fn err_file_empty() {
    let fx = fixture().await;
    for size in [
        json!(0),
        json!(-1),
        json!(-5_000_000_000_i64),
        json!(i64::MIN),
    ] {
        fx.rejects_field(
            "file_size",
            size,
            "ERR_FILE_EMPTY",
            "File size must be larger than 0.",
        )
        .await;
    }
}

#[tokio::test]
async fn err_null_field() {
    let fx = fixture().await;
    for field in ["file_name", "file_size", "file_type"] {
        fx.rejects_field(
            field,
            Value::Null,
            "ERR_NULL_FIELD",
            &format!("Field \u{201c}{field}\u{201d} may not be null."),
        )
        .await;
    }
    for (field, value) in [("file_name", ""), ("file_type", ""), ("file_name", "   ")] {
        fx.rejects_field(
            field,
            json!(value),
            "ERR_NULL_FIELD",
            &format!("Field \u{201c}{field}\u{201d} may not be empty."),
        )
        .await;
    }
    // The page's own wording, once verbatim.
    fx.rejects_field(
        "file_name",
        Value::Null,
        "ERR_NULL_FIELD",
        "Field “file_name” may not be null.",
    )
    .await;
}

#[tokio::test]
async fn err_invalid_type() {
    let fx = fixture().await;
    let allowed =
        "Allowed types are: [request_presigned_url, upload_complete, complete_multipart_upload].";
    for (sent, shown) in [
        (json!("x"), "x"),
        (json!(""), ""),
        (json!("REQUEST_PRESIGNED_URL"), "REQUEST_PRESIGNED_URL"),
        (json!("presigned_url_ready"), "presigned_url_ready"),
        (json!(5), "5"),
    ] {
        fx.rejects(
            &json!({ "type": sent }).to_string(),
            "ERR_INVALID_TYPE",
            &format!("Type \u{201c}{shown}\u{201d} is not allowed. {allowed}"),
        )
        .await;
    }
    fx.rejects(
        &json!({ "type": "x" }).to_string(),
        "ERR_INVALID_TYPE",
        "Type “x” is not allowed. Allowed types are: [request_presigned_url, upload_complete, complete_multipart_upload].",
    )
    .await;
    for text in [
        "[]",
        "[1, 2]",
        "\"request_presigned_url\"",
        "42",
        "null",
        "true",
    ] {
        fx.rejects(
            text,
            "ERR_INVALID_TYPE",
            "Invalid message type. Expected a JSON object.",
        )
        .await;
    }
}

#[tokio::test]
async fn err_generation_error_when_s3_fails_while_presigning() {
    if crate::helpers::external_s3().is_some() {
        // Needs the embedded store: it is broken through its index.
        return;
    }
    let fx = fixture_with(small_multipart).await;
    // Take the embedded store's bucket away behind its back: CreateMultipartUpload
    // now fails with NoSuchBucket.
    let index = fx.app.dir.path().join("s3").join("objects.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", index.display()))
        .await
        .unwrap();
    sqlx::query("DELETE FROM buckets")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    fx.rejects_field(
        "file_size",
        json!(6 * MIB),
        "ERR_GENERATION_ERROR",
        "Failed to generate presigned URL",
    )
    .await;
    // Nothing was recorded for the refused file.
    assert!(
        fx.app
            .state
            .db
            .upload_files(&fx.upload)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn err_server_error_when_the_database_fails() {
    let fx = fixture().await;
    let mut ws = fx.open().await;
    execute(&fx.app, "DROP TABLE upload_files").await;
    ws.send(&fx.presign("temp_1", 1024)).await;
    ws.expect_error(
        "ERR_SERVER_ERROR",
        "Upload could not be initialized. Please try again later.",
    )
    .await;
}

#[tokio::test]
async fn handshake_failure_is_http_500() {
    let fx = fixture().await;
    let ticket = fx.app.ticket(&fx.token).await;
    execute(&fx.app, "DROP TABLE ws_tickets").await;
    let status = Socket::try_open(
        &fx.app,
        &format!("{}?uuid={ticket}", socket_path(&fx.upload)),
        None,
    )
    .await;
    assert_eq!(status.err(), Some(500));
}

#[tokio::test]
async fn err_s3_finalize_failed_then_a_retry_succeeds() {
    let fx = fixture_with(small_multipart).await;
    let data = bytes((12 * MIB + 7) as usize, 3);
    let mut ws = fx.open().await;
    let ready = fx.request(&mut ws, "temp_mp", data.len() as u64).await;
    assert_eq!(ready["total_parts"], 3);
    let tags = put_parts(&fx.app, &ready, &data).await;
    let mut wrong = tags.clone();
    wrong[1].1 = "\"00000000000000000000000000000000\"".into();
    ws.send(&json!({ "type": "complete_multipart_upload", "parts": parts_json(&wrong) }))
        .await;
    ws.expect_error(
        "ERR_S3_FINALIZE_FAILED",
        "Could not finalize multipart upload. Please try again later.",
    )
    .await;
    let key = ready["s3_key"].as_str().unwrap();
    assert_eq!(fx.app.state.store.head(key).await.unwrap(), None);

    // The multipart upload survives a refused completion: the right ETags complete it.
    let mut ws = fx.open().await;
    ws.send(&json!({ "type": "complete_multipart_upload", "parts": parts_json(&tags) }))
        .await;
    assert_queued(
        &ws.recv().await,
        ready["upload_id"].as_str().unwrap(),
        "temp_mp",
    );
    assert_eq!(fx.app.s3.get_bytes(key).await.unwrap().as_ref(), &data[..]);
}

#[tokio::test]
async fn err_file_incomplete() {
    let fx = fixture_with(small_multipart).await;
    let detail = "Upload has not yet completed or file is not available.";

    // upload_complete before the PUT.
    let mut ws = fx.open().await;
    let ready = fx.request(&mut ws, "temp_early", 100).await;
    let (session, key) = session_and_key(&ready);
    ws.send(&upload_complete(session, key)).await;
    ws.expect_error("ERR_FILE_INCOMPLETE", detail).await;
    // The same file, once PUT, completes on a new socket.
    let r = put_zip(&fx.app, &ready, bytes(100, 1)).await;
    assert_eq!(r.status(), 200);
    let mut ws = fx.open().await;
    ws.send(&upload_complete(session, key)).await;
    let queued = ws.recv().await;
    assert_queued(&queued, session, "temp_early");

    // An object of another size than declared (presigned URLs bind the length, so
    // it is written server-side).
    let ready = fx.request(&mut ws, "temp_size", 100).await;
    let (session, key) = session_and_key(&ready);
    fx.app
        .s3
        .put_bytes(key, bytes(99, 2).into(), "application/zip")
        .await
        .unwrap();
    ws.send(&upload_complete(session, key)).await;
    ws.expect_error("ERR_FILE_INCOMPLETE", detail).await;

    // A presigned URL refuses a body of another length than declared. (Each new
    // socket first replays the upload's state: the queued file above.)
    let mut ws = fx.open().await;
    assert_eq!(ws.recv().await, queued);
    let ready = fx.request(&mut ws, "temp_len", 100).await;
    let r = put_zip(&fx.app, &ready, bytes(99, 1)).await;
    assert_eq!(r.status(), 403);

    // A multipart completion naming fewer parts than total_parts.
    let data = bytes((12 * MIB + 7) as usize, 4);
    let ready = fx.request(&mut ws, "temp_mp", data.len() as u64).await;
    assert_eq!(ready["total_parts"], 3);
    let tags = put_parts(&fx.app, &ready, &data).await;
    ws.send(&json!({ "type": "complete_multipart_upload", "parts": parts_json(&tags[..2]) }))
        .await;
    ws.expect_error("ERR_FILE_INCOMPLETE", detail).await;
    // ... or announcing a multipart file with upload_complete before completing it.
    let mut ws = fx.open().await;
    assert_eq!(ws.recv().await, queued);
    let (session, key) = session_and_key(&ready);
    ws.send(&upload_complete(session, key)).await;
    ws.expect_error("ERR_FILE_INCOMPLETE", detail).await;
}

// ---------------------------------------------------------------------------
// Happy paths
// ---------------------------------------------------------------------------

#[tokio::test]
async fn single_put_upload_end_to_end() {
    let fx = fixture().await;
    let mut ws = fx.open().await;
    let data = bytes(64 * 1024 + 17, 1);
    let temp = "temp_1749545666136_csyydasgl";
    ws.send(&fx.presign(temp, data.len() as i64)).await;
    let ready = ws.recv().await;
    assert_eq!(ready["type"], "presigned_url_ready");
    assert_eq!(ready.as_object().unwrap().len(), 2);
    let m = &ready["message"];
    let mut keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "chunk_size",
            "fields",
            "is_multipart",
            "part_urls",
            "presigned_url",
            "s3_key",
            "s3_upload_id",
            "temp_upload_id",
            "total_parts",
            "upload_id"
        ]
    );
    let session = m["upload_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(session).unwrap().get_version_num(), 4);
    assert_ne!(session, fx.upload);
    assert_eq!(m["temp_upload_id"], temp);
    let url = m["presigned_url"].as_str().unwrap();
    assert!(url.starts_with(&fx.app.s3_endpoint), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert_eq!(m["fields"], json!({}));
    let key = m["s3_key"].as_str().unwrap();
    assert_eq!(key, format!("uploads/{}/{session}.zip", fx.upload));
    assert_eq!(m["is_multipart"], false);
    assert_eq!(m["part_urls"], json!([]));
    assert_eq!(m["s3_upload_id"], Value::Null);
    assert_eq!(m["chunk_size"], Value::Null);
    assert_eq!(m["total_parts"], 1);

    // The URL binds the content type.
    let r = put(&fx.app, url, data.clone(), Some("text/plain")).await;
    assert_eq!(r.status(), 403);
    let r = put(&fx.app, url, data.clone(), Some("application/zip")).await;
    assert_eq!(r.status(), 200);

    ws.send(&upload_complete(session, key)).await;
    let update = ws.recv().await;
    assert_queued(&update, session, temp);

    let store = &fx.app.s3;
    let meta = store.head(key).await.unwrap().unwrap();
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(meta.content_type.as_deref(), Some("application/zip"));
    assert_eq!(store.get_bytes(key).await.unwrap().as_ref(), &data[..]);
    // The job is recorded and the upload is processing.
    assert_eq!(fx.job_state(session).await, "queued");
    let upload = fx.app.state.db.upload_by_id(&fx.upload).await.unwrap();
    assert_eq!(upload.unwrap().state, UploadState::Processing);
    ws.close().await;
}

#[tokio::test]
async fn multipart_upload_end_to_end() {
    let fx = fixture_with(small_multipart).await;
    let mut ws = fx.open().await;

    // Just under the threshold: a single PUT.
    let below = fx.request(&mut ws, "temp_small", 5 * MIB - 1).await;
    assert_eq!(below["is_multipart"], false);

    let data = bytes((15 * MIB) as usize, 7);
    let temp = "temp_multi";
    let m = fx.request(&mut ws, temp, data.len() as u64).await;
    let session = m["upload_id"].as_str().unwrap();
    let key = m["s3_key"].as_str().unwrap();
    assert_eq!(key, format!("uploads/{}/{session}.zip", fx.upload));
    assert_eq!(m["temp_upload_id"], temp);
    assert_eq!(m["presigned_url"], Value::Null);
    assert_eq!(m["fields"], json!({}));
    assert_eq!(m["is_multipart"], true);
    assert!(!m["s3_upload_id"].as_str().unwrap().is_empty());
    assert_eq!(m["chunk_size"], 5 * MIB);
    assert_eq!(m["total_parts"], 3);
    let part_urls = m["part_urls"].as_array().unwrap();
    assert_eq!(part_urls.len(), 3);
    for (i, p) in part_urls.iter().enumerate() {
        assert_eq!(p.as_object().unwrap().len(), 2, "{p}");
        assert_eq!(p["part"], i + 1);
        assert!(p["url"].as_str().unwrap().starts_with(&fx.app.s3_endpoint));
    }

    let tags = put_parts(&fx.app, &m, &data).await;
    // As the page: no upload_id; the one open multipart session is meant.
    ws.send(&json!({ "type": "complete_multipart_upload", "parts": parts_json(&tags) }))
        .await;
    assert_queued(&ws.recv().await, session, temp);

    let store = &fx.app.s3;
    let meta = store.head(key).await.unwrap().unwrap();
    assert_eq!(meta.size, 15 * MIB);
    assert_eq!(store.get_bytes(key).await.unwrap().as_ref(), &data[..]);
    assert_eq!(fx.job_state(session).await, "queued");
}

#[tokio::test]
async fn multipart_completion_with_two_open_sessions_needs_upload_id() {
    let fx = fixture_with(small_multipart).await;
    let mut ws = fx.open().await;
    let (a, b) = (bytes((5 * MIB) as usize, 1), bytes((6 * MIB) as usize, 2));
    let ready_a = fx.request(&mut ws, "temp_a", a.len() as u64).await;
    let ready_b = fx.request(&mut ws, "temp_b", b.len() as u64).await;
    assert_eq!(
        (
            ready_a["total_parts"].as_u64(),
            ready_b["total_parts"].as_u64()
        ),
        (Some(1), Some(2))
    );
    let tags_a = put_parts(&fx.app, &ready_a, &a).await;
    let tags_b = put_parts(&fx.app, &ready_b, &b).await;

    // Ambiguous without upload_id.
    ws.send(&json!({ "type": "complete_multipart_upload", "parts": parts_json(&tags_b) }))
        .await;
    ws.expect_error("ERR_INVALID_PAYLOAD",
        "Required fields: type, temp_upload_id, file_name, file_size, file_type, object_class, class_field",
    )
    .await;

    // With the session id, both complete; then the last one needs no id.
    let mut ws = fx.open().await;
    let id_b = ready_b["upload_id"].as_str().unwrap();
    ws.send(&json!({ "type": "complete_multipart_upload", "upload_id": id_b, "parts": parts_json(&tags_b) }))
        .await;
    assert_queued(&ws.recv().await, id_b, "temp_b");
    let ready_c = fx.request(&mut ws, "temp_c", 5 * MIB).await;
    // Two open again (a and c): the transaction id plus s3_key names one.
    let s3_key_a = ready_a["s3_key"].as_str().unwrap();
    ws.send(&json!({ "type": "complete_multipart_upload", "upload_id": fx.upload, "s3_key": s3_key_a, "parts": parts_json(&tags_a) }),
    )
    .await;
    assert_queued(
        &ws.recv().await,
        ready_a["upload_id"].as_str().unwrap(),
        "temp_a",
    );
    // Only c is left: no id needed; a mismatched s3_key is refused.
    let tags_c = put_parts(&fx.app, &ready_c, &a).await;
    ws.send(&json!({ "type": "complete_multipart_upload", "upload_id": ready_c["upload_id"], "s3_key": s3_key_a, "parts": parts_json(&tags_c) }),
    )
    .await;
    ws.expect_error("ERR_DOES_NOT_EXIST", "Not found.").await;
    let mut ws = fx.open().await;
    for _ in 0..2 {
        assert_eq!(ws.recv().await["type"], "monitoring_update"); // replayed: a and b
    }
    ws.send(&json!({ "type": "complete_multipart_upload", "parts": parts_json(&tags_c) }))
        .await;
    assert_queued(
        &ws.recv().await,
        ready_c["upload_id"].as_str().unwrap(),
        "temp_c",
    );
    assert_eq!(
        fx.app
            .s3
            .get_bytes(ready_b["s3_key"].as_str().unwrap())
            .await
            .unwrap()
            .as_ref(),
        &b[..]
    );
}

#[tokio::test]
async fn two_files_in_flight_on_one_connection() {
    let fx = fixture().await;
    let mut ws = fx.open().await;
    let files = [
        ("temp_a", bytes(1000, 1), "application/zip"),
        ("temp_b", bytes(2000, 2), "application/x-zip-compressed"),
    ];
    // Both requests go out before either answer is read.
    for (temp, data, file_type) in &files {
        let mut msg = fx.presign(temp, data.len() as i64);
        msg["file_type"] = json!(file_type);
        ws.send(&msg).await;
    }
    let mut ready = std::collections::HashMap::new();
    for _ in 0..2 {
        let v = ws.recv().await;
        assert_eq!(v["type"], "presigned_url_ready");
        ready.insert(
            v["message"]["temp_upload_id"].as_str().unwrap().to_string(),
            v["message"].clone(),
        );
    }
    assert_ne!(ready["temp_a"]["upload_id"], ready["temp_b"]["upload_id"]);
    assert_ne!(ready["temp_a"]["s3_key"], ready["temp_b"]["s3_key"]);

    // PUT in the other order, then announce both before reading.
    for (temp, data, file_type) in files.iter().rev() {
        let r = put(
            &fx.app,
            ready[*temp]["presigned_url"].as_str().unwrap(),
            data.clone(),
            Some(*file_type),
        )
        .await;
        assert_eq!(r.status(), 200, "{temp}");
    }
    for (temp, _, _) in files.iter().rev() {
        let m = &ready[*temp];
        ws.send(&json!({ "type": "upload_complete", "upload_id": m["upload_id"], "s3_key": m["s3_key"] })).await;
    }
    let mut done = std::collections::HashMap::new();
    for _ in 0..2 {
        let v = ws.recv().await;
        done.insert(
            v["message"]["temp_upload_id"].as_str().unwrap().to_string(),
            v,
        );
    }
    for (temp, data, _) in &files {
        let m = &ready[*temp];
        assert_queued(&done[*temp], m["upload_id"].as_str().unwrap(), temp);
        let stored = fx
            .app
            .s3
            .get_bytes(m["s3_key"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(stored.as_ref(), &data[..]);
    }
}

#[tokio::test]
async fn upload_complete_by_transaction_id_and_duplicates_are_no_ops() {
    let fx = fixture().await;
    let mut ws = fx.open().await;
    let ready = fx.request(&mut ws, "temp_t", 300).await;
    let (session, key) = session_and_key(&ready);
    let r = put_zip(&fx.app, &ready, bytes(300, 5)).await;
    assert_eq!(r.status(), 200);
    // The transaction's id plus the s3_key names the file too.
    ws.send(&upload_complete(&fx.upload, key)).await;
    assert_queued(&ws.recv().await, session, "temp_t");
    // A repeated completion is answered by nothing; the next answer is the next request's.
    ws.send(&upload_complete(session, key)).await;
    ws.send(&upload_complete(&fx.upload, key)).await;
    let next = fx.request(&mut ws, "temp_next", 10).await;
    assert_eq!(next["temp_upload_id"], "temp_next");
    assert_eq!(
        fx.app
            .state
            .db
            .messages_after(&fx.upload, 0, 100)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn reconnect_replays_the_current_state() {
    let fx = fixture().await;
    let mut ws = fx.open().await;
    let ready = fx.request(&mut ws, "temp_r", 500).await;
    let (session, key) = session_and_key(&ready);
    let r = put_zip(&fx.app, &ready, bytes(500, 9)).await;
    assert_eq!(r.status(), 200);
    ws.send(&upload_complete(session, key)).await;
    let update = ws.recv().await;
    assert_queued(&update, session, "temp_r");
    ws.close().await;

    // A new socket with a fresh ticket to the (now processing) upload.
    let mut ws = fx.open().await;
    assert_eq!(ws.recv().await, update);
    // And it is a working socket.
    let next = fx.request(&mut ws, "temp_after", 10).await;
    assert_eq!(next["temp_upload_id"], "temp_after");

    // Past its lifetime, a processing upload can still be followed, but takes no
    // new file.
    set_upload_expiry(&fx.app, &fx.upload, intake::db::now_ms() - 1).await;
    let mut ws = fx.open().await;
    assert_eq!(ws.recv().await, update);
    ws.send(&fx.presign("temp_late", 10)).await;
    ws.expect_error("ERR_INVALID_UUID", "A valid UUID is required.")
        .await;
}

// ---------------------------------------------------------------------------
// Hardening
// ---------------------------------------------------------------------------

#[tokio::test]
async fn messages_over_64_kib_close_with_1009() {
    let fx = fixture().await;
    // 64 KiB is still read (and refused as not JSON)...
    fx.rejects(
        &"a".repeat(64 * 1024),
        "ERR_INVALID_PAYLOAD",
        "Required fields: type, temp_upload_id, file_name, file_size, file_type, object_class, class_field",
    )
    .await;
    // ... one byte more closes with 1009, without an error message.
    let mut ws = fx.open().await;
    ws.send_text(&"a".repeat(64 * 1024 + 1)).await;
    ws.expect_close(1009).await;
    // A valid message padded past the limit too.
    let mut ws = fx.open().await;
    let mut msg = fx.presign("temp_1", 10);
    msg["file_name"] = json!(format!("{}.zip", "n".repeat(70 * 1024)));
    ws.send(&msg).await;
    ws.expect_close(1009).await;
}

#[tokio::test]
async fn origin_must_be_allowed() {
    let fx =
        fixture_with(|s| s.socket.allowed_origins = vec!["https://app.example.com".into()]).await;
    let ticket = fx.app.ticket(&fx.token).await;
    let url = format!("{}?uuid={ticket}", socket_path(&fx.upload));
    for origin in [
        "https://evil.example.com",
        "https://app.example.com.evil.com",
        "null",
        "http://app.example.com",
    ] {
        assert_eq!(
            Socket::try_open(&fx.app, &url, Some(origin)).await.err(),
            Some(403),
            "{origin}"
        );
    }
    // A refused origin does not spend the ticket; an allowed one connects.
    let mut ws = Socket::try_open(&fx.app, &url, Some("https://app.example.com"))
        .await
        .unwrap();
    ws.expect_established().await;
    // Non-browser clients send no Origin.
    let ticket = fx.app.ticket(&fx.token).await;
    let mut ws = Socket::try_open(
        &fx.app,
        &format!("{}?uuid={ticket}", socket_path(&fx.upload)),
        None,
    )
    .await
    .unwrap();
    ws.expect_established().await;
}

#[tokio::test]
async fn sockets_per_user_are_capped() {
    let fx = fixture_with(|s| s.socket.max_sockets_per_user = 2).await;
    let first = fx.open().await;
    let _second = fx.open().await;
    let mut third = fx.connect_to(&fx.upload).await;
    assert_eq!(
        third.recv().await,
        json!({ "type": "error", "error_code": "ERR_TOO_MANY_CONNECTIONS", "detail": "Too many open upload connections." })
    );
    third.expect_close(1008).await;

    // Another user is not affected.
    let (_, other) = fx.app.user(AccountType::ConfigAdmin).await;
    let theirs = fx.app.create_upload(&other, fx.class, fx.field).await;
    let ticket = fx.app.ticket(&other).await;
    let mut ws = Socket::open(&fx.app, &format!("{}?uuid={ticket}", socket_path(&theirs))).await;
    ws.expect_established().await;

    // Closing a socket frees its slot (released as the server ends the session,
    // just after the close handshake; checked with a bounded retry).
    let mut first = first;
    first.close().await;
    while first.next_frame().await.is_some() {}
    let deadline = Instant::now() + WAIT;
    loop {
        let mut ws = fx.connect_to(&fx.upload).await;
        let v = ws.recv().await;
        if v["type"] == "connection_established" {
            break;
        }
        assert_eq!(v["error_code"], "ERR_TOO_MANY_CONNECTIONS");
        assert!(Instant::now() < deadline, "slot never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `MakeWriter` collecting everything logged on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_ticket_is_never_logged() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // A second, silent dispatcher: with a single one, tracing-core computes a
    // callsite's interest from the default of whichever thread hits it first, and
    // another test's thread (no subscriber) would switch our callsites off for good.
    let _silent = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    // #[tokio::test] runs the app's tasks on this thread, so a thread default sees them.
    let _guard = tracing::subscriber::set_default(subscriber);

    let fx = fixture().await;
    let ticket = fx.app.ticket(&fx.token).await;
    let mut ws = Socket::open(
        &fx.app,
        &format!("{}?uuid={ticket}", socket_path(&fx.upload)),
    )
    .await;
    ws.expect_established().await;
    let _ = fx.request(&mut ws, "temp_1", 10).await;
    ws.close().await;
    while ws.next_frame().await.is_some() {}
    // A refused handshake logs its request too.
    let ticket2 = fx.app.ticket(&fx.token).await;
    let mut ws = Socket::open(&fx.app, &format!("/ws/nope/?uuid={ticket2}")).await;
    ws.expect_error("ERR_INCORRECT_URL", "Incorrect WebSocket URL.")
        .await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    // Requests are logged (method and path)...
    assert!(
        text.contains(&socket_path(&fx.upload)),
        "request logging is kept:\n{text}"
    );
    assert!(text.contains("/ws/nope/"), "{text}");
    // ... but never the ticket, nor its query.
    for t in [&ticket, &ticket2] {
        assert!(!text.contains(t.as_str()), "ticket logged:\n{text}");
    }
    assert!(!text.contains("uuid="), "query logged:\n{text}");
}

/// A TCP stream that, once muted, swallows everything the client writes: a peer
/// that reads but never answers pings (tungstenite would answer them itself).
struct Deaf {
    inner: TcpStream,
    muted: Arc<AtomicBool>,
}

impl AsyncRead for Deaf {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Deaf {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.muted.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_idle_timeout() {
    let fx = fixture_with(|s| s.socket.idle_timeout = Duration::from_secs(1)).await;
    let ticket = fx.app.ticket(&fx.token).await;
    let url = format!(
        "{}{}?uuid={ticket}",
        fx.app.ws_base(),
        socket_path(&fx.upload)
    );
    let tcp = TcpStream::connect(fx.app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let muted = Arc::new(AtomicBool::new(false));
    let (mut ws, _) = tokio_tungstenite::client_async(
        url,
        Deaf {
            inner: tcp,
            muted: muted.clone(),
        },
    )
    .await
    .unwrap();
    let first = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(first.to_text().unwrap()).unwrap()["type"],
        "connection_established"
    );
    muted.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let mut pings = 0;
    let close = loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Close(frame))) => break frame,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    assert!(pings >= 1, "the server pinged before giving up");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_client_answering_pings_stays_connected() {
    let fx = fixture_with(|s| s.socket.idle_timeout = Duration::from_secs(1)).await;
    let mut ws = fx.open().await;
    // Three idle timeouts of silence from our side except for the automatic pongs.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut pings = 0;
    loop {
        match tokio::time::timeout_at(until, ws.ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 3, "pings: {pings}");
    let ready = fx.request(&mut ws, "temp_alive", 10).await;
    assert_eq!(ready["temp_upload_id"], "temp_alive");
}

/// A message that reaches the log without a wake-up (written by another node whose
/// notice was lost) is delivered by the node's one fallback poll, not by a poll of
/// each socket; and an idle socket's upload sees nothing else.
#[tokio::test]
async fn a_message_without_a_wake_up_arrives_through_the_node_poll() {
    let app = TestApp::spawn_with(|s| s.socket.socket_poll = Duration::from_millis(200)).await;
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&token).await;
    let upload = app.create_upload(&token, class, field).await;
    let other = app.create_upload(&token, class, field).await;
    let mut ws = Socket::connect(&app, &token, &upload).await;
    let mut idle = Socket::connect(&app, &token, &other).await;
    // Let the poll take its first reading of the log.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let message =
        json!({ "type": "monitoring_update", "message": { "status": "written elsewhere" } });
    app.state
        .db
        .append_message(&upload, &message.to_string())
        .await
        .unwrap();
    assert_eq!(ws.recv().await, message);
    // The other upload's socket got nothing.
    let nothing = tokio::time::timeout(Duration::from_millis(600), idle.next_frame()).await;
    assert!(nothing.is_err(), "{nothing:?}");
}
