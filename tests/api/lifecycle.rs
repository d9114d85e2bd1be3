//! A job's life at the edges of failure, in one process: settling is guarded by
//! ownership and writes job, file and upload together; a processed file whose job
//! died before settling is settled by the takeover; a job that kills its worker
//! every time ends after `max_attempts` with a clear error; a node that shuts down
//! hands its job back with the attempt refunded. (Several processes: tests/nodes.rs.)

use intake::db::jobs::{JobEnd, JobSettlement};
use intake::domain::{AccountType, FileState, UploadState};
use intake::uploads::worker::Worker;
use intake_archive::testkit;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::TestApp;
use crate::helpers::socket::Socket;

/// A test app without background workers (tests drive them), whose retries and
/// rescues are due at once.
async fn app() -> TestApp {
    TestApp::spawn_with(|s| {
        s.jobs.run_workers = false;
        s.jobs.retry_base = std::time::Duration::ZERO;
        s.jobs.stale = std::time::Duration::from_secs(10);
        s.uploads.sweep_interval = std::time::Duration::ZERO;
    })
    .await
}

/// One ZIP of `n` files uploaded and completed: (socket past `queued`, file session id,
/// upload id).
async fn queued(app: &TestApp, n: usize) -> (Socket, String, String) {
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&token).await;
    let upload = app.create_upload(&token, class, field).await;
    let mut sock = Socket::connect(app, &token, &upload).await;
    let names: Vec<String> = (0..n).map(|i| format!("f{i}.txt")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), n.as_bytes())).collect();
    let ready = sock
        .upload(app, class, field, "batch.zip", &testkit::zip_of(&files))
        .await;
    assert_eq!(sock.recv().await["message"]["status"], "queued");
    let session = ready["message"]["upload_id"].as_str().unwrap().to_string();
    (sock, session, upload)
}

/// Makes the running job look like its worker died `secs` ago.
async fn stop_heartbeat(app: &TestApp, job: i64) {
    sqlx::query("UPDATE jobs SET heartbeat_at = 0 WHERE id = $1")
        .bind(job)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
}

async fn job_row(app: &TestApp, session: &str) -> (String, i64, Option<String>) {
    sqlx::query_as("SELECT state, attempts, last_error FROM jobs WHERE dedupe_key = $1")
        .bind(format!("process_upload_file:{session}"))
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
}

fn attempts_increase(msgs: &[Value]) {
    let attempts: Vec<u64> = msgs
        .iter()
        .filter(|m| m["type"] == "monitoring_update")
        .map(|m| m["message"]["attempt"].as_u64().unwrap())
        .collect();
    assert!(attempts.windows(2).all(|w| w[0] < w[1]), "{attempts:?}");
}

/// A worker that lost its job cannot settle it: nothing of job, file or upload
/// changes and no message is written.
#[tokio::test]
async fn settling_is_guarded_by_ownership() {
    let app = app().await;
    let (_sock, session, upload) = queued(&app, 1).await;
    let db = &app.state.db;
    let job = db.claim_job("owner").await.unwrap().unwrap();
    let settled = db
        .settle_job(
            job.id,
            "someone-else",
            JobEnd::Succeeded,
            None,
            JobSettlement {
                file: Some((&session, &upload, Some(FileState::Processed))),
                update: None,
            },
        )
        .await
        .unwrap();
    assert!(!settled);
    let file = db.upload_file_by_id(&session).await.unwrap().unwrap();
    assert_eq!(file.state, FileState::Completed);
    let up = db.upload_by_id(&upload).await.unwrap().unwrap();
    assert_eq!(up.state, UploadState::Processing);
    assert_eq!(job_row(&app, &session).await.0, "running");
}

/// The crash window of the old two-write settle: the file was marked processed but
/// the job died before the upload was settled. The takeover settles the upload and
/// reports the success once.
#[tokio::test]
async fn already_processed_file_is_settled_by_the_takeover() {
    let app = app().await;
    let (mut sock, session, upload) = queued(&app, 2).await;
    let db = &app.state.db;
    let job = db.claim_job("dead-worker").await.unwrap().unwrap();
    db.set_upload_file_state(&session, FileState::Processed)
        .await
        .unwrap();
    stop_heartbeat(&app, job.id).await;

    let worker = Worker::new(app.state.uploads.clone());
    assert_eq!(worker.rescue().await.unwrap(), 1);
    let retrying = sock.recv().await;
    assert_eq!(retrying["message"]["status"], "retrying", "{retrying}");
    assert_eq!(retrying["message"]["error_code"], "ERR_WORKER_LOST");
    assert!(worker.run_once().await.unwrap());
    let last = sock.recv().await;
    assert_eq!(last["message"]["status"], "success", "{last}");
    let up = db.upload_by_id(&upload).await.unwrap().unwrap();
    assert_eq!(up.state, UploadState::Succeeded);
    let (state, attempts, _) = job_row(&app, &session).await;
    assert_eq!((state.as_str(), attempts), ("succeeded", 2));
}

/// Sets a running job's heartbeat to `ms_ago` milliseconds ago.
async fn heartbeat_ago(app: &TestApp, job: i64, ms_ago: i64) {
    sqlx::query("UPDATE jobs SET heartbeat_at = $1 WHERE id = $2")
        .bind(intake::db::now_ms() - ms_ago)
        .bind(job)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
}

/// A worker that misses its heartbeat is announced to its client before the
/// takeover: `retrying` with `ERR_WORKER_SILENT` and the time left until the
/// takeover, once per heartbeat of silence however many nodes look (two here), not
/// while the heartbeat is fresh, never counted as an attempt; the takeover follows.
#[tokio::test]
async fn a_silent_worker_is_announced_before_the_takeover() {
    let app = app().await; // heartbeat 3 s, stale 10 s: silent after 2 s
    let (mut sock, session, _upload) = queued(&app, 1).await;
    let db = &app.state.db;
    let job = db.claim_job("frozen-worker").await.unwrap().unwrap();
    let (a, b) = (
        Worker::new(app.state.uploads.clone()),
        Worker::new(app.state.uploads.clone()),
    );

    heartbeat_ago(&app, job.id, 1_500).await;
    assert_eq!(
        a.notice_silent().await.unwrap(),
        0,
        "a heartbeat 1.5 s old is fine"
    );

    heartbeat_ago(&app, job.id, 5_000).await;
    let (x, y) = tokio::join!(a.notice_silent(), b.notice_silent());
    assert_eq!(
        x.unwrap() + y.unwrap(),
        1,
        "one notice, whichever node sends it"
    );
    let notice = sock.recv().await;
    let m = &notice["message"];
    assert_eq!(m["status"], "retrying", "{notice}");
    assert_eq!(m["error_code"], "ERR_WORKER_SILENT");
    assert_eq!(m["step_name"], "upload_complete");
    let left = m["retry_in_ms"].as_i64().unwrap();
    assert!((4_000..=5_000).contains(&left), "takeover in ~5 s: {left}");
    let text = m["message"].as_str().unwrap();
    assert!(text.contains("has not answered for 5 s"), "{text}");
    // Not again within the same heartbeat of silence.
    assert_eq!(b.notice_silent().await.unwrap(), 0);
    // Once a heartbeat later, while the silence lasts.
    sqlx::query("UPDATE jobs SET silence_noticed_at = $1 WHERE id = $2")
        .bind(intake::db::now_ms() - 3_100)
        .bind(job.id)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(b.notice_silent().await.unwrap(), 1);
    let again = sock.recv().await;
    assert_eq!(again["message"]["error_code"], "ERR_WORKER_SILENT");
    assert!(again["message"]["attempt"].as_u64() > notice["message"]["attempt"].as_u64());
    // A worker that heartbeats again is no longer silent.
    heartbeat_ago(&app, job.id, 0).await;
    assert_eq!(a.notice_silent().await.unwrap(), 0);
    // A stale one is taken over, not announced.
    stop_heartbeat(&app, job.id).await;
    assert_eq!(a.notice_silent().await.unwrap(), 0);
    assert_eq!(a.rescue().await.unwrap(), 1);
    let lost = sock.recv().await;
    assert_eq!(lost["message"]["error_code"], "ERR_WORKER_LOST", "{lost}");
    let (state, attempts, _) = job_row(&app, &session).await;
    assert_eq!(
        (state.as_str(), attempts),
        ("queued", 1),
        "notices are not attempts"
    );
}

/// A job whose process dies every time (claimed, then never heard of again) is
/// taken over, retried with its attempts counted, and fails cleanly at
/// `max_attempts` — never above — with an error that says so. The upload settles.
#[tokio::test]
async fn crash_looping_job_fails_at_max_attempts() {
    let app = app().await;
    let (mut sock, session, upload) = queued(&app, 1).await;
    let db = &app.state.db;
    let worker = Worker::new(app.state.uploads.clone());
    let max = intake::uploads::MAX_ATTEMPTS;
    for i in 1..=max {
        let job = db
            .claim_job(&format!("crashing-{i}"))
            .await
            .unwrap()
            .expect("requeued after each takeover");
        assert_eq!(job.attempts, i);
        stop_heartbeat(&app, job.id).await;
        assert_eq!(worker.rescue().await.unwrap(), 1);
    }
    assert!(db.claim_job("one-more").await.unwrap().is_none());
    let msgs = sock.until_final().await;
    attempts_increase(&msgs);
    let retries = msgs
        .iter()
        .filter(|m| m["message"]["status"] == "retrying")
        .count() as i64;
    assert_eq!(retries, max - 1, "{msgs:#?}");
    let last = &msgs.last().unwrap()["message"];
    assert_eq!(last["status"], "error");
    assert_eq!(last["error_code"], "ERR_PROCESSING_FAILED");
    let text = last["message"].as_str().unwrap();
    assert!(
        text.contains(&format!("after {max} attempts")) && text.contains("ERR_WORKER_LOST"),
        "{text}"
    );
    let (state, attempts, _) = job_row(&app, &session).await;
    assert_eq!((state.as_str(), attempts), ("failed", max));
    let up = db.upload_by_id(&upload).await.unwrap().unwrap();
    assert_eq!(up.state, UploadState::Failed);
    let file = db.upload_file_by_id(&session).await.unwrap().unwrap();
    assert_eq!(file.state, FileState::Failed);
}

/// A worker told to stop mid-job hands the job back at once: queued, due now, its
/// attempt refunded, and the client told; the next worker finishes it.
#[tokio::test]
async fn shutdown_hands_the_job_back() {
    // A scanner that never answers holds the job in its first step.
    let hold = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hold.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = hold.accept().await {
            conns.push(c);
        }
    });
    let app = TestApp::spawn_with(|s| {
        s.jobs.run_workers = false;
        s.scan.clamd_addr = Some(format!("tcp://{addr}"));
    })
    .await;
    let (mut sock, session, _upload) = queued(&app, 1).await;
    let stop = CancellationToken::new();
    let running = tokio::spawn(Worker::new(app.state.uploads.clone()).run(stop.clone()));
    // The job is running once the scan starts.
    let scanning = sock.recv().await;
    assert_eq!(scanning["message"]["step_name"], "antivirus_scan");
    stop.cancel();
    running.await.unwrap();
    let handed = sock.recv().await;
    assert_eq!(handed["message"]["status"], "retrying", "{handed}");
    assert_eq!(handed["message"]["error_code"], "ERR_NODE_SHUTDOWN");
    let (state, attempts, _) = job_row(&app, &session).await;
    assert_eq!((state.as_str(), attempts), ("queued", 0));
}

/// Requests URLs for a file of `size` bytes and PUTs the first `sent` bytes (the
/// first part of a multipart upload, or the whole object), never completing it:
/// the `presigned_url_ready` message.
async fn abandoned(app: &TestApp, sock: &mut Socket, class: i64, field: i64, size: usize) -> Value {
    sock.send(&serde_json::json!({
        "type": "request_presigned_url",
        "temp_upload_id": "temp_gone",
        "file_name": "gone.zip",
        "file_size": size,
        "file_type": "application/zip",
        "object_class": class,
        "class_field": field,
    }))
    .await;
    let ready = sock.recv().await;
    assert_eq!(ready["type"], "presigned_url_ready", "{ready}");
    let m = ready["message"].clone();
    let (url, len) = if m["is_multipart"] == true {
        let chunk = m["chunk_size"].as_u64().unwrap() as usize;
        (
            m["part_urls"][0]["url"].as_str().unwrap().to_string(),
            chunk,
        )
    } else {
        (m["presigned_url"].as_str().unwrap().to_string(), size)
    };
    let ct = (m["is_multipart"] != true).then_some("application/zip");
    let r = crate::helpers::socket::put(app, &url, vec![7u8; len], ct).await;
    assert_eq!(r.status(), 200);
    m
}

/// Moves an upload and its file sessions past every TTL.
async fn expire(app: &TestApp, upload: &str) {
    let db = &app.state.db;
    sqlx::query("UPDATE uploads SET expires_at = 0 WHERE id = $1")
        .bind(upload)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE upload_files SET created_at = 0 WHERE upload_id = $1")
        .bind(upload)
        .execute(&db.pool)
        .await
        .unwrap();
}

/// An abandoned multipart upload (one part stored) and an abandoned single PUT
/// leave no object, part or file row after their TTL; the upload ends `expired`.
/// A sweeper on another node waits while the first holds the lease.
#[tokio::test]
async fn abandoned_uploads_are_swept() {
    let app = TestApp::spawn_with(|s| {
        s.jobs.run_workers = false;
        s.uploads.sweep_interval = std::time::Duration::ZERO;
        s.uploads.multipart_threshold_bytes = 6 * 1024 * 1024;
        s.uploads.multipart_chunk_bytes = Some(5 * 1024 * 1024);
    })
    .await;
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&token).await;
    let mut kept = Vec::new();
    for size in [12 * 1024 * 1024, 1024] {
        let upload = app.create_upload(&token, class, field).await;
        let mut sock = Socket::connect(&app, &token, &upload).await;
        let m = abandoned(&app, &mut sock, class, field, size).await;
        expire(&app, &upload).await;
        kept.push((upload, m));
    }
    let (multi, single) = (&kept[0].1, &kept[1].1);
    assert_eq!(multi["is_multipart"], true);
    let multi_key = multi["s3_key"].as_str().unwrap();
    let multi_id: String =
        sqlx::query_scalar("SELECT s3_upload_id FROM upload_files WHERE s3_key = $1")
            .bind(multi_key)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(
        app.state
            .store
            .list_parts(multi_key, &multi_id)
            .await
            .unwrap()
            .len(),
        1
    );
    let single_key = single["s3_key"].as_str().unwrap();
    assert!(app.state.store.head(single_key).await.unwrap().is_some());

    let leader = intake::uploads::sweeper::Sweeper::new(app.state.uploads.clone());
    let other = intake::uploads::sweeper::Sweeper::new(app.state.uploads.clone());
    let swept = leader
        .sweep_if_leader()
        .await
        .unwrap()
        .expect("the lease is free");
    assert_eq!(
        other.sweep_if_leader().await.unwrap(),
        None,
        "one sweeper at a time"
    );
    assert_eq!(
        (swept.files, swept.uploads_expired, swept.multipart_aborted),
        (2, 2, 1)
    );

    let gone = app.state.store.list_parts(multi_key, &multi_id).await;
    assert!(gone.is_err_and(|e| e.is_not_found()), "parts are gone");
    assert!(app.state.store.head(single_key).await.unwrap().is_none());
    for (upload, _) in &kept {
        assert!(
            app.s3
                .list(&format!("uploads/{upload}/"))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(app.state.db.upload_files(upload).await.unwrap().is_empty());
        let up = app.state.db.upload_by_id(upload).await.unwrap().unwrap();
        assert_eq!(up.state, UploadState::Expired);
    }
    // A second pass finds nothing more: the expired rows stay for
    // `expired_retention` (1 h by default).
    let again = leader.sweep_if_leader().await.unwrap().unwrap();
    assert_eq!(again, intake::uploads::sweeper::Swept::default());

    // Past the retention, no row of them is left: upload and message log deleted.
    for (upload, _) in &kept {
        // A log to delete (replies to the client's own requests are not logged).
        app.state.db.append_message(upload, "{}").await.unwrap();
        sqlx::query("UPDATE uploads SET finished_at = 1 WHERE id = $1")
            .bind(upload)
            .execute(&app.state.db.pool)
            .await
            .unwrap();
    }
    let purged = leader.sweep_if_leader().await.unwrap().unwrap();
    assert_eq!(purged.uploads_purged, 2, "{purged:?}");
    for (upload, _) in &kept {
        assert!(app.state.db.upload_by_id(upload).await.unwrap().is_none());
        let logged = app.state.db.messages_after(upload, 0, 100).await.unwrap();
        assert!(logged.is_empty(), "the message log is gone");
    }
    let last = leader.sweep_if_leader().await.unwrap().unwrap();
    assert_eq!(last, intake::uploads::sweeper::Swept::default());
}

/// Quarantined archives are deleted once older than `quarantine_ttl`, and kept
/// before.
#[tokio::test]
async fn quarantine_expires() {
    let kept = TestApp::spawn_with(|s| {
        s.jobs.run_workers = false;
        s.uploads.sweep_interval = std::time::Duration::ZERO;
    })
    .await;
    let key = "quarantine/uploads/u/f/infected.zip";
    kept.s3
        .put_bytes(key, bytes::Bytes::from_static(b"PK"), "application/zip")
        .await
        .unwrap();
    // Object times have a resolution of one second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let sweeper = intake::uploads::sweeper::Sweeper::new(kept.state.uploads.clone());
    let swept = sweeper.sweep_if_leader().await.unwrap().unwrap();
    assert_eq!(swept.objects_deleted, 0, "30 days are not over");
    assert!(kept.state.store.head(key).await.unwrap().is_some());

    let expiring = TestApp::spawn_with(|s| {
        s.jobs.run_workers = false;
        s.uploads.sweep_interval = std::time::Duration::ZERO;
        s.uploads.quarantine_ttl = std::time::Duration::from_millis(500);
    })
    .await;
    expiring
        .s3
        .put_bytes(key, bytes::Bytes::from_static(b"PK"), "application/zip")
        .await
        .unwrap();
    let live = "uploads/u/f/clean.zip";
    expiring
        .s3
        .put_bytes(live, bytes::Bytes::from_static(b"PK"), "application/zip")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let sweeper = intake::uploads::sweeper::Sweeper::new(expiring.state.uploads.clone());
    let swept = sweeper.sweep_if_leader().await.unwrap().unwrap();
    assert_eq!(swept.objects_deleted, 1, "{swept:?}");
    assert!(expiring.state.store.head(key).await.unwrap().is_none());
    assert!(
        expiring.state.store.head(live).await.unwrap().is_some(),
        "only quarantine expires"
    );
}

/// An upload still within its TTL is left alone, however old its session.
#[tokio::test]
async fn live_uploads_are_not_swept() {
    let app = app().await;
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&token).await;
    let upload = app.create_upload(&token, class, field).await;
    let mut sock = Socket::connect(&app, &token, &upload).await;
    let m = abandoned(&app, &mut sock, class, field, 1024).await;
    sqlx::query("UPDATE upload_files SET created_at = 0 WHERE upload_id = $1")
        .bind(&upload)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let sweeper = intake::uploads::sweeper::Sweeper::new(app.state.uploads.clone());
    let swept = sweeper.sweep_if_leader().await.unwrap().unwrap();
    assert_eq!(swept.files, 0);
    let key = m["s3_key"].as_str().unwrap();
    assert!(app.state.store.head(key).await.unwrap().is_some());
}

/// Job temp dirs left by a crash are removed (all at start-up; by age later).
#[test]
fn leftover_temp_dirs_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("job-abc");
    std::fs::create_dir_all(dir.join("entries")).unwrap();
    std::fs::write(dir.join("archive.zip"), b"x").unwrap();
    std::fs::write(tmp.path().join("other"), b"kept").unwrap();
    let remove = intake::uploads::sweeper::remove_tmp_dirs;
    assert_eq!(
        remove(tmp.path(), Some(std::time::Duration::from_secs(3600))),
        0
    );
    assert_eq!(remove(tmp.path(), None), 1);
    assert!(!dir.exists());
    assert!(tmp.path().join("other").exists());
}
