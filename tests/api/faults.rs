//! Faults injected through the adapters' traits: a store that fails one PUT, a
//! scanner that times out or finds a threat in one file. The upload socket is
//! driven over channels (no network), and workers run with the fakes in place of
//! the real store and scanner, step by step.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::Message;
use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use intake::db::uploads::UploadFileRow;
use intake::domain::{AccountType, FileState};
use intake::scan::{OpenReader, ScanError, Scanner, Verdict};
use intake::store::{ObjectMeta, ObjectStore, StoreError};
use intake::uploads::Uploads;
use intake::uploads::worker::Worker;
use intake::ws::session::Session;
use intake_archive::testkit;
use serde_json::{Value, json};

use crate::helpers::TestApp;

type StoreResult<T> = Result<T, StoreError>;

/// The real store, except that the `fail_at`-th `put_file` (1-based) fails as a
/// transient error would; every other call goes through.
struct FailingStore {
    inner: Arc<dyn ObjectStore>,
    fail_at: usize,
    puts: AtomicUsize,
}

impl FailingStore {
    /// The `fail_at`-th put fails as a connection reset would.
    fn maybe_fail(&self, key: &str) -> StoreResult<()> {
        if self.puts.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(StoreError::Transient {
                op: "PutObject",
                target: key.to_string(),
                detail: "injected: connection reset".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for FailingStore {
    async fn presign_put(&self, k: &str, n: u64, t: &str, e: Duration) -> StoreResult<String> {
        self.inner.presign_put(k, n, t, e).await
    }
    async fn presign_put_any(&self, k: &str, e: Duration) -> StoreResult<String> {
        self.inner.presign_put_any(k, e).await
    }
    async fn create_multipart(&self, k: &str, t: &str) -> StoreResult<String> {
        self.inner.create_multipart(k, t).await
    }
    async fn presign_part(
        &self,
        k: &str,
        u: &str,
        p: i32,
        n: u64,
        e: Duration,
    ) -> StoreResult<String> {
        self.inner.presign_part(k, u, p, n, e).await
    }
    async fn complete_multipart(&self, k: &str, u: &str, p: &[(i32, String)]) -> StoreResult<()> {
        self.inner.complete_multipart(k, u, p).await
    }
    async fn list_parts(&self, k: &str, u: &str) -> StoreResult<Vec<(i32, String, u64)>> {
        self.inner.list_parts(k, u).await
    }
    async fn get_range(&self, k: &str, s: u64, n: u64, e: Option<&str>) -> StoreResult<Bytes> {
        self.inner.get_range(k, s, n, e).await
    }
    async fn abort_multipart(&self, k: &str, u: &str) -> StoreResult<()> {
        self.inner.abort_multipart(k, u).await
    }
    async fn head(&self, k: &str) -> StoreResult<Option<ObjectMeta>> {
        self.inner.head(k).await
    }
    async fn get_to_file(&self, k: &str, p: &Path) -> StoreResult<u64> {
        self.inner.get_to_file(k, p).await
    }
    async fn put_file(&self, k: &str, p: &Path, t: &str) -> StoreResult<()> {
        self.maybe_fail(k)?;
        self.inner.put_file(k, p, t).await
    }
    async fn put_bytes(&self, k: &str, b: Bytes, t: &str) -> StoreResult<()> {
        self.maybe_fail(k)?;
        self.inner.put_bytes(k, b, t).await
    }
    async fn copy(&self, s: &str, d: &str) -> StoreResult<()> {
        self.inner.copy(s, d).await
    }
    async fn delete(&self, k: &str) -> StoreResult<()> {
        self.inner.delete(k).await
    }
    async fn delete_prefix(&self, p: &str) -> StoreResult<u64> {
        self.inner.delete_prefix(p).await
    }
    async fn presign_get(&self, k: &str, e: Duration, n: Option<&str>) -> StoreResult<String> {
        self.inner.presign_get(k, e, n).await
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
}

/// A scanner that never answers in time, or that finds a threat in every file
/// whose bytes contain `marker` (and nothing else).
enum FakeScanner {
    TimesOut,
    FindsIn { marker: &'static [u8] },
}

#[async_trait]
impl Scanner for FakeScanner {
    async fn scan_file(&self, path: &Path) -> Result<Verdict, ScanError> {
        let bytes = tokio::fs::read(path).await.unwrap();
        self.scan_bytes(&path.display().to_string(), &bytes).await
    }
    async fn scan_bytes(&self, _name: &str, bytes: &[u8]) -> Result<Verdict, ScanError> {
        match self {
            FakeScanner::TimesOut => Err(ScanError::Timeout {
                stage: "scan",
                after: Duration::from_millis(1),
            }),
            FakeScanner::FindsIn { marker } => {
                // Only files, not the archive: a threat deflated inside it is
                // found when its entry is scanned.
                let is_zip = bytes.starts_with(b"PK\x03\x04");
                if !is_zip && bytes.windows(marker.len()).any(|w| w == *marker) {
                    Ok(Verdict::Infected {
                        signature: "Fake.Test.Threat".into(),
                    })
                } else {
                    Ok(Verdict::Clean)
                }
            }
        }
    }
    async fn scan_reader(
        &self,
        name: &str,
        _size: u64,
        open: OpenReader<'_>,
    ) -> Result<Verdict, ScanError> {
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut open(), &mut bytes)
            .await
            .unwrap();
        self.scan_bytes(name, &bytes).await
    }
    async fn ping(&self) -> Result<(), ScanError> {
        Ok(())
    }
}

/// An upload socket session driven over in-memory channels.
struct ChannelSocket {
    to_server: mpsc::UnboundedSender<Result<Message, axum::Error>>,
    from_server: mpsc::UnboundedReceiver<Message>,
}

impl ChannelSocket {
    /// Runs a session on `upload_id` (as the handshake would have found it).
    async fn open(app: &TestApp, upload_id: &str) -> ChannelSocket {
        let upload = app.state.db.upload_by_id(upload_id).await.unwrap().unwrap();
        let (to_server, server_in) = mpsc::unbounded();
        let (server_out, from_server) = mpsc::unbounded();
        let session = Session::new(app.state.uploads.clone(), upload, Duration::from_secs(60));
        tokio::spawn(session.run(server_out, server_in));
        ChannelSocket {
            to_server,
            from_server,
        }
    }

    async fn send(&mut self, v: Value) {
        let text = Message::Text(v.to_string().into());
        self.to_server.send(Ok(text)).await.unwrap();
    }

    /// The next frame the server sent (pings skipped).
    async fn next(&mut self) -> Message {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.from_server.next())
                .await
                .expect("a frame within 30 s")
                .expect("session still running");
            if !matches!(frame, Message::Ping(_)) {
                return frame;
            }
        }
    }

    async fn recv(&mut self) -> Value {
        match self.next().await {
            Message::Text(t) => serde_json::from_str(&t).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// A configurator's upload of `zip`, PUT and completed over a channel session;
/// returns the session id once `queued` arrived.
async fn queued_over_channels(app: &TestApp, zip: &[u8]) -> String {
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&token).await;
    let upload = app.create_upload(&token, class, field).await;
    let mut sock = ChannelSocket::open(app, &upload).await;
    assert_eq!(sock.recv().await["type"], "connection_established");
    sock.send(json!({
        "type": "request_presigned_url", "temp_upload_id": "t1", "file_name": "a.zip",
        "file_size": zip.len(), "file_type": "application/zip",
        "object_class": class, "class_field": field,
    }))
    .await;
    let ready = sock.recv().await;
    assert_eq!(ready["type"], "presigned_url_ready", "{ready}");
    let m = &ready["message"];
    let put = app
        .client
        .put(m["presigned_url"].as_str().unwrap())
        .header("Content-Type", "application/zip")
        .body(zip.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    sock.send(
        json!({ "type": "upload_complete", "upload_id": m["upload_id"], "s3_key": m["s3_key"] }),
    )
    .await;
    let queued = sock.recv().await;
    assert_eq!(queued["message"]["status"], "queued", "{queued}");
    assert_eq!(queued["message"]["attempt"], 1);
    m["upload_id"].as_str().unwrap().to_string()
}

/// The monitoring updates of `session` in the upload log, oldest first.
async fn updates_of(app: &TestApp, session: &str) -> Vec<Value> {
    let file = file_of(app, session).await;
    let log = app
        .state
        .db
        .messages_after(&file.upload_id, 0, 10_000)
        .await
        .unwrap();
    log.into_iter()
        .map(|(_, t)| serde_json::from_str::<Value>(&t).unwrap())
        .filter(|v| v["type"] == "monitoring_update" && v["message"]["upload_id"] == session)
        .map(|v| v["message"].clone())
        .collect()
}

/// Makes every queued job due now (no sleeping through backoffs).
async fn due_now(app: &TestApp) {
    sqlx::query("UPDATE jobs SET run_at = 0")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
}

async fn file_of(app: &TestApp, session: &str) -> UploadFileRow {
    let file = app.state.db.upload_file_by_id(session).await.unwrap();
    file.expect("the file session exists")
}

async fn saved_files(app: &TestApp, session: &str) -> usize {
    let file = file_of(app, session).await;
    let prefix = format!("uploads/{}/{}/files/", file.upload_id, file.id);
    let mut n = 0;
    for i in 0..10 {
        let key = format!("{prefix}{i:06}");
        if app.state.store.head(&key).await.unwrap().is_some() {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn a_session_over_channels_speaks_the_page_protocol() {
    let app = TestApp::spawn_with(|s| s.jobs.run_workers = false).await;
    let zip = testkit::zip_of(&[("a.txt", b"a")]);
    let session = queued_over_channels(&app, &zip).await;
    assert_eq!(file_of(&app, &session).await.state, FileState::Completed);

    // A bad message ends the session with the page's error and close 1000.
    let (_, token) = app.user(AccountType::Internal).await;
    let (_, admin) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&admin).await;
    let upload = app.create_upload(&token, class, field).await;
    let mut sock = ChannelSocket::open(&app, &upload).await;
    assert_eq!(sock.recv().await["type"], "connection_established");
    sock.to_server
        .send(Ok(Message::Text("not json".into())))
        .await
        .unwrap();
    assert_eq!(
        sock.recv().await,
        json!({"type": "error", "error_code": "ERR_INVALID_PAYLOAD",
               "detail": "Required fields: type, temp_upload_id, file_name, file_size, file_type, object_class, class_field"})
    );
    match sock.next().await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, 1000),
        other => panic!("expected close 1000, got {other:?}"),
    }
}

/// The third PUT of extracted files fails: the job is retried (the client is told
/// why), and the retry ends with exactly one record and one object per file.
#[tokio::test]
async fn a_failed_put_is_retried_and_ends_with_exactly_n_records() {
    let app = TestApp::spawn_with(|s| s.jobs.run_workers = false).await;
    let files: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("f{i}.txt"), format!("file {i}").into_bytes()))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let session = queued_over_channels(&app, &testkit::zip_of(&refs)).await;
    let faulty = Uploads {
        store: Arc::new(FailingStore {
            inner: app.state.store.clone(),
            fail_at: 3,
            puts: AtomicUsize::new(0),
        }),
        ..app.state.uploads.clone()
    };
    let worker = Worker::new(faulty);
    assert!(worker.run_once().await.unwrap());
    let retry = updates_of(&app, &session).await.pop().unwrap();
    assert_eq!(retry["status"], "retrying", "{retry}");
    assert_eq!(retry["error_code"], "ERR_STORAGE_UNAVAILABLE");
    assert_eq!(
        app.state.db.count_upload_records(&session).await.unwrap(),
        0
    );

    due_now(&app).await;
    assert!(worker.run_once().await.unwrap());
    let updates = updates_of(&app, &session).await;
    let last = updates.last().unwrap();
    assert_eq!(last["status"], "success", "{updates:#?}");
    assert_eq!(last["extracted_files"], 5);
    // Attempts keep counting up across the retry, from the stored progress.
    let attempts: Vec<u64> = updates
        .iter()
        .map(|u| u["attempt"].as_u64().unwrap())
        .collect();
    assert!(
        attempts.windows(2).all(|w| w[1] == w[0] + 1),
        "{attempts:?}"
    );
    assert_eq!(
        app.state.db.count_upload_records(&session).await.unwrap(),
        5
    );
    assert_eq!(saved_files(&app, &session).await, 5);
}

/// A scanner that keeps timing out: retried until the attempts run out, then
/// the upload fails with nothing left behind.
#[tokio::test]
async fn a_scanner_that_times_out_fails_the_upload_after_its_attempts() {
    let app = TestApp::spawn_with(|s| s.jobs.run_workers = false).await;
    let session = queued_over_channels(&app, &testkit::zip_of(&[("a.txt", b"a")])).await;
    let worker = Worker::new(Uploads {
        scanner: Some(Arc::new(FakeScanner::TimesOut)),
        ..app.state.uploads.clone()
    });
    for attempt in 1..=intake::uploads::MAX_ATTEMPTS {
        due_now(&app).await;
        assert!(worker.run_once().await.unwrap(), "attempt {attempt}");
        let last = updates_of(&app, &session).await.pop().unwrap();
        let expected = if attempt < intake::uploads::MAX_ATTEMPTS {
            "retrying"
        } else {
            "error"
        };
        assert_eq!(last["status"], expected, "attempt {attempt}: {last}");
    }
    let last = updates_of(&app, &session).await.pop().unwrap();
    assert_eq!(last["error_code"], "ERR_PROCESSING_FAILED");
    assert_eq!(last["step_name"], "upload_complete");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .starts_with("Processing failed after 8 attempts (ERR_SCANNER_UNAVAILABLE: antivirus: scanner timed out"),
        "{last}"
    );
    let file = file_of(&app, &session).await;
    assert_eq!(file.state, FileState::Failed);
    assert_eq!(
        app.state.db.count_upload_records(&session).await.unwrap(),
        0
    );
    assert!(!worker.run_once().await.unwrap(), "nothing left to run");
}

/// A threat in one member: the archive is quarantined, files already saved are
/// deleted, and the client learns which file it was.
#[tokio::test]
async fn a_threat_in_one_file_quarantines_the_upload() {
    let app = TestApp::spawn_with(|s| s.jobs.run_workers = false).await;
    let zip = testkit::zip_of(&[
        ("ok-1.txt", b"fine"),
        ("docs/bad.txt", b"xx THREAT xx"),
        ("ok-2.txt", b"fine too"),
    ]);
    let session = queued_over_channels(&app, &zip).await;
    let worker = Worker::new(Uploads {
        scanner: Some(Arc::new(FakeScanner::FindsIn { marker: b"THREAT" })),
        ..app.state.uploads.clone()
    });
    assert!(worker.run_once().await.unwrap());
    let last = updates_of(&app, &session).await.pop().unwrap();
    assert_eq!(last["status"], "error");
    assert_eq!(last["error_code"], "ERR_INFECTED");
    assert_eq!(last["av-status"], "infected");
    assert_eq!(last["file_name"], "docs/bad.txt");
    assert_eq!(last["signature"], "Fake.Test.Threat");
    assert_eq!(
        last["message"],
        "Threat \u{201c}Fake.Test.Threat\u{201d} found in \u{201c}docs/bad.txt\u{201d}. No records were created."
    );
    let file = file_of(&app, &session).await;
    assert!(app.state.store.head(&file.s3_key).await.unwrap().is_none());
    assert!(
        app.state
            .store
            .head(&format!("quarantine/{}", file.s3_key))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(saved_files(&app, &session).await, 0);
    assert_eq!(
        app.state.db.count_upload_records(&session).await.unwrap(),
        0
    );
    // The stored progress remembers the verdict.
    let progress = app.state.db.file_progress(&session).await.unwrap().unwrap();
    assert_eq!(progress.av_status, intake::domain::AvStatus::Infected);
    assert!(!progress.success_reported);
}
