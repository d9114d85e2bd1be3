//! Never lose the outcome: the server becomes unreachable right after the client
//! announced completion (as when a node crashes), the upload is processed and
//! settled while the client is away, and its reconnect is refused with
//! `ERR_INVALID_UUID` (the upload is used). The client then reads the upload's
//! detail over REST and reports the real outcome: the records, or the pipeline's own
//! failure code and text.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use intake::client::{self, ClientError, Progress, StepUpdate};
use intake::uploads::worker::Worker;
use intake_archive::testkit;

use crate::cli::{PASSWORD, options, setup, write};
use crate::helpers::TestApp;
use crate::helpers::proxy::Proxy;

/// Takes the server down when the file is queued (the client has announced
/// completion and is waiting for processing), and counts reconnect attempts.
struct DownWhenQueued {
    outage: Arc<Proxy>,
    reconnects: AtomicUsize,
    seen: Mutex<Vec<String>>,
}

impl Progress for DownWhenQueued {
    fn step(&self, update: &StepUpdate) {
        self.seen
            .lock()
            .unwrap()
            .push(format!("{} {:?}", update.step, update.status));
        if update.status.as_deref() == Some("queued") {
            self.outage.go_down();
        }
    }
    fn reconnecting(&self, _attempt: u32, _reason: &str) {
        self.reconnects.fetch_add(1, Ordering::SeqCst);
    }
}

/// Runs an upload of `zip` through an outage that starts once it is queued; the
/// job runs (and settles the upload) while the client is away.
async fn upload_through_outage(
    zip: &[u8],
    check: bool,
) -> (TestApp, Result<client::Outcome, ClientError>) {
    let app = TestApp::spawn_with(|s| s.jobs.run_workers = false).await;
    let (email, class, field) = setup(&app).await;
    let upstream: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let outage = Arc::new(Proxy::start(upstream).await);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "batch.zip", zip);
    let mut opts = options(
        &format!("http://{}", outage.addr),
        &email,
        class,
        field,
        &file,
    );
    opts.check = check;
    let progress = Arc::new(DownWhenQueued {
        outage: outage.clone(),
        reconnects: AtomicUsize::new(0),
        seen: Mutex::new(Vec::new()),
    });
    let run = tokio::spawn({
        let progress = progress.clone();
        async move { client::upload(&opts, progress).await }
    });

    // Wait until the client has lost the server, then settle the upload.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while progress.reconnects.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            progress.seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let worker = Worker::new(app.state.uploads.clone());
    assert!(worker.run_once().await.unwrap(), "the job ran");
    let upload: String = sqlx::query_scalar("SELECT id FROM uploads")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    let row = app.state.db.upload_by_id(&upload).await.unwrap().unwrap();
    assert!(row.state.is_finished(), "settled while the client is away");
    outage.come_back();
    let result = run.await.unwrap();
    (app, result)
}

#[tokio::test]
async fn a_client_that_missed_the_final_message_reports_the_records() {
    let zip = testkit::zip_of(&[("a.txt", b"a"), ("b.txt", b"b")]);
    let (app, result) = upload_through_outage(&zip, true).await;
    let done = result.expect("the real outcome: success");
    assert_eq!(done.record_count, 2);
    assert_eq!(done.message, "Done Extracted 2 files");
    assert_eq!(
        done.records,
        app.state
            .db
            .upload_record_ids(&done.upload_id)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_client_that_missed_the_final_message_reports_the_pipeline_failure() {
    // Sent unchecked, so that the server's pipeline is what refuses it.
    let (app, result) = upload_through_outage(&testkit::zip_traversal(), false).await;
    let err = result.unwrap_err();
    let path = std::env::temp_dir().join(format!("t-{}.zip", uuid::Uuid::new_v4()));
    std::fs::write(&path, testkit::zip_traversal()).unwrap();
    let expected = intake_archive::SafeArchive::open(&path, Default::default())
        .err()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(matches!(err, ClientError::Server { .. }), "{err}");
    assert_eq!(err.code(), "ERR_ARCHIVE_UNSAFE_PATH", "{err}");
    assert_eq!(err.detail(), expected.to_string());

    // The upload's detail carries it for any client.
    let upload: String = sqlx::query_scalar("SELECT id FROM uploads")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    let (_, token) = (0, {
        let email: String =
            sqlx::query_scalar("SELECT u.email FROM users u JOIN uploads x ON x.creator_id = u.id")
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        app.login(&email, PASSWORD).await
    });
    let detail = app.upload_detail(&token, &upload).await;
    assert_eq!(detail["state"], "failed");
    assert_eq!(detail["files"][0]["error_code"], "ERR_ARCHIVE_UNSAFE_PATH");
    assert_eq!(detail["files"][0]["error_message"], expected.to_string());
}
