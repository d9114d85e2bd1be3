//! The processing pipeline end to end over the socket: N files in, N records out,
//! with the page's message sequence; refusals leave nothing behind; jobs survive
//! dead workers and a clamd outage.

use intake::domain::AccountType;
use intake::uploads::worker::Worker;
use intake_archive::testkit;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::TestApp;
use crate::helpers::{clamd::clamd_addr, socket::Socket};

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn png() -> Vec<u8> {
    let mut v = vec![
        0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, b'I', b'H', b'D', b'R',
    ];
    v.extend_from_slice(&[0u8; 64]);
    v
}

/// Checks the message sequence of one file: queued, scan, extracting, saving
/// progress to completion, records progress to completion, success last; attempts
/// strictly increase; progress never goes backwards.
fn check_sequence(msgs: &[Value], n: u64, av: &str) {
    let steps: Vec<(String, String)> = msgs
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap().to_string(),
                m["message"]["step_name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        steps[0],
        ("monitoring_update".into(), "upload_complete".into()),
        "{msgs:#?}"
    );
    assert!(steps.contains(&("monitoring_update".into(), "antivirus_scan".into())));
    let pos = |t: &str, s: &str| {
        steps
            .iter()
            .position(|x| x.0 == t && x.1 == s)
            .unwrap_or_else(|| panic!("no {t}/{s} in {msgs:#?}"))
    };
    assert!(
        pos("monitoring_update", "antivirus_scan") < pos("monitoring_update", "extracting_file")
    );
    assert!(pos("monitoring_update", "extracting_file") < pos("progress_update", "saving_files"));
    assert!(pos("progress_update", "saving_files") < pos("progress_update", "creating_records"));
    let mut last_attempt = 0;
    let mut last_progress = std::collections::HashMap::new();
    for m in msgs {
        let msg = &m["message"];
        assert!(chrono::DateTime::parse_from_rfc3339(msg["timestamp"].as_str().unwrap()).is_ok());
        if m["type"] == "monitoring_update" {
            let a = msg["attempt"].as_u64().unwrap();
            assert!(a > last_attempt, "attempts must increase: {msgs:#?}");
            last_attempt = a;
        } else {
            let step = msg["step_name"].as_str().unwrap().to_string();
            let p = msg["progress_count"].as_u64().unwrap();
            assert_eq!(msg["total_count"], n);
            assert!(p >= *last_progress.get(&step).unwrap_or(&0));
            assert_eq!(msg["is_complete"], p == n);
            last_progress.insert(step, p);
        }
    }
    assert_eq!(last_progress.get("saving_files"), Some(&n));
    assert_eq!(last_progress.get("creating_records"), Some(&n));
    let last = &msgs.last().unwrap()["message"];
    assert_eq!(last["step_name"], "extracting_file");
    assert_eq!(last["status"], "success");
    assert_eq!(last["extracted_files"], n);
    assert_eq!(last["message"], format!("Done Extracted {n} files"));
    assert_eq!(last["av-status"], av);
}

/// One ZIP uploaded and completed over a socket by a configurator, in a class of
/// its own: the socket (past the `queued` message), the `presigned_url_ready`
/// message's `message`, and who and where.
struct Queued {
    sock: Socket,
    ready: Value,
    user_id: i64,
    token: String,
    class: i64,
}

async fn queued(app: &TestApp, zip: &[u8]) -> Queued {
    let (user_id, token) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&token).await;
    let upload = app.create_upload(&token, class, field).await;
    let mut sock = Socket::connect(app, &token, &upload).await;
    let ready = sock.upload(app, class, field, "batch.zip", zip).await["message"].clone();
    assert_eq!(sock.recv().await["message"]["status"], "queued");
    Queued {
        sock,
        ready,
        user_id,
        token,
        class,
    }
}

async fn records_of(app: &TestApp, token: &str, class: i64) -> Vec<Value> {
    let page: Value = app
        .get(
            &format!("/api/object-records/?object_class={class}&limit=1000"),
            Some(token),
        )
        .await
        .json()
        .await
        .unwrap();
    page["results"].as_array().unwrap().clone()
}

#[tokio::test]
async fn single_upload_makes_one_record_per_file() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&token).await;
    let alias = app
        .state
        .db
        .field_by_id(field)
        .await
        .unwrap()
        .unwrap()
        .alias;
    let upload = app.create_upload(&token, class, field).await;
    let pdf = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n".to_vec();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("report.pdf", pdf),
        ("images/logo.png", png()),
        ("notes/readme.txt", b"hello, records".to_vec()),
    ];
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    let zip = testkit::zip_of(&refs);

    let mut sock = Socket::connect(&app, &token, &upload).await;
    let ready = sock.upload(&app, class, field, "batch.zip", &zip).await;
    let msgs = sock.until_final().await;
    check_sequence(&msgs, 3, "skipped");
    let session = ready["message"]["upload_id"].as_str().unwrap();
    assert!(msgs.iter().all(|m| m["message"]["upload_id"] == session));

    let records = records_of(&app, &token, class).await;
    assert_eq!(records.len(), 3);
    for ((name, bytes), rec) in files.iter().zip(&records) {
        let base = name.rsplit('/').next().unwrap();
        assert_eq!(rec["object_name"], base);
        let doc = &rec[format!("field_{alias}")];
        assert_eq!(doc["name"], base);
        assert_eq!(doc["path"], *name);
        assert_eq!(doc["size"], bytes.len());
        assert_eq!(doc["sha256"], sha(bytes));
        let got = app
            .client
            .get(doc["url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got[..], &bytes[..]);
    }
    let types: Vec<&str> = records
        .iter()
        .map(|r| {
            r[format!("field_{alias}")]["content_type"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(types, vec!["application/pdf", "image/png", "text/plain"]);

    // The upload is used now: its id can no longer open a socket.
    let status = app.upload_detail(&token, &upload).await;
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["record_count"], 3);
    let ticket = app.ticket(&token).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "{}/ws/object-records/uploads/{upload}/?uuid={ticket}",
        app.ws_base()
    ))
    .await
    .unwrap();
    use futures::StreamExt;
    let m = ws.next().await.unwrap().unwrap();
    let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
    assert_eq!(v["error_code"], "ERR_INVALID_UUID");
}

#[tokio::test]
async fn multipart_upload_with_directories_and_nested_archives() {
    let app = TestApp::spawn_with(|s| {
        s.uploads.multipart_threshold_bytes = 5 * 1024 * 1024;
        s.uploads.multipart_chunk_bytes = Some(5 * 1024 * 1024);
    })
    .await;
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&token).await;
    let upload = app.create_upload(&token, class, field).await;
    // Incompressible content, stored: the archive is over 12 MiB, so 3 parts.
    let big: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let inner = testkit::zip_of(&[("inner.txt", b"nested")]);
    let zip = testkit::zip_stored(&[
        ("data/big.bin", &big),
        ("data/inner.zip", &inner),
        ("small.txt", b"x"),
    ]);
    let mut sock = Socket::connect(&app, &token, &upload).await;
    let ready = sock.upload(&app, class, field, "big.zip", &zip).await;
    assert_eq!(ready["message"]["is_multipart"], true);
    assert_eq!(ready["message"]["total_parts"], 3);
    let msgs = sock.until_final().await;
    check_sequence(&msgs, 3, "skipped");
    let records = records_of(&app, &token, class).await;
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["object_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["big.bin", "inner.zip", "small.txt"]);

    let dirs = testkit::zip_with_directory_and_nested();
    let upload = app.create_upload(&token, class, field).await;
    let mut sock = Socket::connect(&app, &token, &upload).await;
    sock.upload(&app, class, field, "dirs.zip", &dirs).await;
    let msgs = sock.until_final().await;
    check_sequence(&msgs, 2, "skipped");
}

/// Every refused archive: a final error naming the problem, zero records, and no
/// object written outside the upload's prefix (nothing extracted at all).
#[tokio::test]
async fn unsafe_archives_are_refused_with_nothing_created() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&token).await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ERR_ARCHIVE_UNSAFE_PATH", testkit::zip_traversal()),
        ("ERR_ARCHIVE_UNSAFE_PATH", testkit::zip_absolute()),
        ("ERR_ARCHIVE_UNSAFE_PATH", testkit::zip_backslash()),
        ("ERR_ARCHIVE_UNSAFE_PATH", testkit::zip_drive_letter()),
        ("ERR_ARCHIVE_SYMLINK", testkit::zip_symlink()),
        (
            "ERR_ARCHIVE_DUPLICATE_NAME",
            testkit::zip_duplicate_casefold(),
        ),
        (
            "ERR_ARCHIVE_DUPLICATE_NAME",
            testkit::zip_duplicate_unicode(),
        ),
        ("ERR_ARCHIVE_ENCRYPTED", testkit::zip_encrypted()),
        (
            "ERR_ARCHIVE_UNSUPPORTED_METHOD",
            testkit::zip_unsupported_method(),
        ),
        ("ERR_ARCHIVE_OVERLAP", testkit::zip_overlap()),
        (
            "ERR_ARCHIVE_HEADER_MISMATCH",
            testkit::zip_header_mismatch(),
        ),
        ("ERR_ARCHIVE_RATIO", testkit::zip_ratio_bomb()),
        ("ERR_ARCHIVE_CORRUPT_ENTRY", testkit::zip_lying_size()),
        (
            "ERR_ARCHIVE_INVALID",
            b"this is not a zip archive at all".to_vec(),
        ),
    ];
    for (code, zip) in cases {
        let upload = app.create_upload(&token, class, field).await;
        let mut sock = Socket::connect(&app, &token, &upload).await;
        sock.upload(&app, class, field, "bad.zip", &zip).await;
        let msgs = sock.until_final().await;
        let last = &msgs.last().unwrap()["message"];
        assert_eq!(last["status"], "error", "{code}: {msgs:#?}");
        assert_eq!(last["error_code"], code, "{msgs:#?}");
        assert!(!last["message"].as_str().unwrap().is_empty());
        let status = app.upload_detail(&token, &upload).await;
        assert_eq!(status["state"], "failed");
    }
    assert!(records_of(&app, &token, class).await.is_empty());
    let keys = app.s3.list("").await.unwrap();
    assert!(
        keys.iter()
            .all(|k| k.starts_with("uploads/") && k.ends_with(".zip") && !k.contains("/files/")),
        "{keys:?}"
    );

    // Over the configured limits: entries, one entry's size, the archive's size.
    let big: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    type Case = (&'static str, fn(&mut intake::config::Settings), Vec<u8>);
    let limited: Vec<Case> = vec![
        (
            "ERR_ARCHIVE_TOO_MANY_ENTRIES",
            |s| s.archive.max_archive_entries = 10,
            testkit::zip_too_many_entries(11),
        ),
        (
            "ERR_ARCHIVE_TOO_LARGE",
            |s| s.archive.max_entry_bytes = 2 * 1024 * 1024,
            testkit::zip_of(&[("big.bin", &big)]),
        ),
        (
            "ERR_ARCHIVE_TOO_LARGE",
            |s| s.archive.max_archive_bytes = 4 * 1024 * 1024,
            testkit::zip_of(&[("a.bin", &big), ("b.bin", &big)]),
        ),
    ];
    for (code, tweak, zip) in limited {
        let app = TestApp::spawn_with(tweak).await;
        let (_, token) = app.user(AccountType::ConfigAdmin).await;
        let (class, field) = app.class_with_document_field(&token).await;
        let upload = app.create_upload(&token, class, field).await;
        let mut sock = Socket::connect(&app, &token, &upload).await;
        sock.upload(&app, class, field, "limits.zip", &zip).await;
        let msgs = sock.until_final().await;
        assert_eq!(
            msgs.last().unwrap()["message"]["error_code"],
            code,
            "{msgs:#?}"
        );
        assert!(records_of(&app, &token, class).await.is_empty());
        let keys = app.s3.list("").await.unwrap();
        assert!(keys.iter().all(|k| !k.contains("/files/")), "{keys:?}");
    }
}

fn eicar() -> Vec<u8> {
    // Assembled at run time so that no source or binary holds the whole string.
    let mut s = String::from(r"X5O!P%@AP[4\PZX54(P^)7CC)7}$");
    s.push_str("EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    s.into_bytes()
}

#[tokio::test]
async fn infected_uploads_create_no_records_and_are_quarantined() {
    let Some(clamd) = clamd_addr().await else {
        return;
    };
    let app = TestApp::spawn_with(|s| s.scan.clamd_addr = Some(clamd)).await;
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&token).await;

    // A clean archive is scanned and passes.
    let upload = app.create_upload(&token, class, field).await;
    let mut sock = Socket::connect(&app, &token, &upload).await;
    sock.upload(
        &app,
        class,
        field,
        "ok.zip",
        &testkit::zip_of(&[("a.txt", b"fine")]),
    )
    .await;
    check_sequence(&sock.until_final().await, 1, "clean");

    // Incompressible padding: zeros would make the entry a 200:1 bomb, which the
    // structural checks (before the scan) refuse as ERR_ARCHIVE_RATIO.
    let mut x: u32 = 0x9E37_79B9;
    let mut padded: Vec<u8> = (0..3 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    padded.extend_from_slice(&eicar());
    let cases = vec![
        testkit::zip_of(&[("clean.txt", b"ok"), ("eicar.com", &eicar())]),
        testkit::zip_of(&[("clean.txt", b"ok"), ("padded.bin", &padded)]),
    ];
    for zip in cases {
        let upload = app.create_upload(&token, class, field).await;
        let mut sock = Socket::connect(&app, &token, &upload).await;
        let ready = sock.upload(&app, class, field, "bad.zip", &zip).await;
        let msgs = sock.until_final().await;
        let last = &msgs.last().unwrap()["message"];
        assert_eq!(last["status"], "error", "{msgs:#?}");
        assert_eq!(last["error_code"], "ERR_INFECTED");
        assert_eq!(last["av-status"], "infected");
        assert!(
            last["signature"]
                .as_str()
                .unwrap()
                .starts_with("Eicar-Test-Signature")
        );
        let key = ready["message"]["s3_key"].as_str().unwrap();
        assert!(
            app.state.store.head(key).await.unwrap().is_none(),
            "the upload is moved away"
        );
        assert!(
            app.state
                .store
                .head(&format!("quarantine/{key}"))
                .await
                .unwrap()
                .is_some()
        );
    }
    assert_eq!(records_of(&app, &token, class).await.len(), 1);
}

/// A worker dies mid-job (its heartbeat stops after some records were written);
/// the job is rescued and the next worker finishes it: exactly N records.
#[tokio::test]
async fn rescued_job_makes_exactly_n_records() {
    let app = TestApp::spawn_with(|s| {
        s.jobs.run_workers = false;
        s.jobs.stale = std::time::Duration::from_secs(11);
        s.jobs.heartbeat = std::time::Duration::from_secs(5);
        // The rescue's backoff (base × jitter) is then at most 1 ms.
        s.jobs.retry_base = std::time::Duration::ZERO;
    })
    .await;
    let names: Vec<String> = (0..7).map(|i| format!("f{i}.txt")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), n.as_bytes())).collect();
    let Queued {
        mut sock,
        ready,
        user_id,
        class,
        ..
    } = queued(&app, &testkit::zip_of(&files)).await;
    let session = ready["upload_id"].as_str().unwrap().to_string();

    // The "dead" worker claims the job and writes three of the records...
    let db = &app.state.db;
    let job = db
        .claim_job("dead-worker")
        .await
        .unwrap()
        .expect("the job is queued");
    let partial: Vec<_> = (0..3)
        .map(|i| intake::db::records::NewUploadRecord {
            object_name: names[i].clone(),
            field_values: serde_json::Map::new(),
            entry_index: i as i64,
            entry_name: names[i].clone(),
        })
        .collect();
    let file = db.upload_file_by_id(&session).await.unwrap().unwrap();
    let source = intake::domain::EventSource::upload(&file.upload_id, &session, &file.file_name);
    db.insert_upload_records(class, user_id, &session, &partial, &source)
        .await
        .unwrap();
    // ...then stops heartbeating.
    sqlx::query("UPDATE jobs SET heartbeat_at = 0 WHERE id = $1")
        .bind(job.id)
        .execute(&db.pool)
        .await
        .unwrap();

    let worker = Worker::new(app.state.uploads.clone());
    assert!(
        !worker.run_once().await.unwrap(),
        "a running job is not claimable"
    );
    assert_eq!(worker.rescue().await.unwrap(), 1);
    assert!(worker.run_once().await.unwrap());
    let msgs = sock.until_final().await;
    assert_eq!(msgs.last().unwrap()["message"]["status"], "success");
    assert_eq!(db.count_upload_records(&session).await.unwrap(), 7);
    // The dead worker cannot settle the job it lost.
    assert!(
        !db.finish_job(job.id, "dead-worker", false, Some("late"))
            .await
            .unwrap()
    );
    assert_eq!(
        db.job_status(&format!("process_upload_file:{session}"))
            .await
            .unwrap()
            .unwrap()
            .state
            .as_str(),
        "succeeded"
    );
}

/// A client that connects again while the upload is processing gets the current
/// state, then the live updates.
#[tokio::test]
async fn reconnect_replays_then_follows() {
    let app = TestApp::spawn_with(|s| s.jobs.run_workers = false).await;
    let (_, token) = app.user(AccountType::Internal).await;
    let (_, admin) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&admin).await;
    let upload = app.create_upload(&token, class, field).await;
    let mut first = Socket::connect(&app, &token, &upload).await;
    first
        .upload(
            &app,
            class,
            field,
            "a.zip",
            &testkit::zip_of(&[("a.txt", b"a"), ("b.txt", b"b")]),
        )
        .await;
    let queued = first.recv().await;
    drop(first);

    let mut second = Socket::connect(&app, &token, &upload).await;
    assert_eq!(second.recv().await, queued, "the current state is replayed");
    assert!(
        Worker::new(app.state.uploads.clone())
            .run_once()
            .await
            .unwrap()
    );
    let msgs = second.until_final().await;
    assert_eq!(
        msgs.last().unwrap()["message"]["message"],
        "Done Extracted 2 files"
    );
    assert_eq!(
        msgs.iter()
            .rfind(|m| m["message"]["step_name"] == "creating_records")
            .unwrap()["message"]["is_complete"],
        json!(true)
    );
}

/// clamd goes away during a job: the job waits and retries, and finishes once
/// clamd is back. The outage is a proxy in front of the real clamd being closed.
#[tokio::test]
async fn clamd_outage_is_retried_until_it_returns() {
    let Some(clamd) = clamd_addr().await else {
        return;
    };
    let upstream = clamd.trim_start_matches("tcp://").to_string();
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = proxy.local_addr().unwrap().port();
    drop(proxy); // down: connections are refused
    let app = TestApp::spawn_with(|s| {
        s.jobs.run_workers = false;
        s.scan.clamd_addr = Some(format!("tcp://127.0.0.1:{port}"));
        s.jobs.retry_base = std::time::Duration::from_millis(50);
    })
    .await;
    let Queued {
        mut sock, ready, ..
    } = queued(&app, &testkit::zip_of(&[("c.txt", b"c")])).await;
    let session = ready["upload_id"].as_str().unwrap().to_string();

    let worker = Worker::new(app.state.uploads.clone());
    assert!(worker.run_once().await.unwrap());
    let retry = loop {
        let m = sock.recv().await;
        if m["message"]["status"] == "retrying" {
            break m;
        }
    };
    assert_eq!(retry["message"]["error_code"], "ERR_SCANNER_UNAVAILABLE");
    let status = app
        .state
        .db
        .job_status(&format!("process_upload_file:{session}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.state.as_str(), "queued");
    assert_eq!(
        app.state.db.count_upload_records(&session).await.unwrap(),
        0
    );

    // clamd is back: a forwarding proxy on the same port.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    // Due now, rather than after the backoff: no sleeping in tests.
    sqlx::query("UPDATE jobs SET run_at = 0")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    assert!(worker.run_once().await.unwrap());
    let msgs = sock.until_final().await;
    assert_eq!(
        msgs.last().unwrap()["message"]["status"],
        "success",
        "{msgs:#?}"
    );
    assert_eq!(msgs.last().unwrap()["message"]["av-status"], "clean");
    assert_eq!(
        app.state.db.count_upload_records(&session).await.unwrap(),
        1
    );
}

/// A job retried after its quarantine was half done (the archive already moved)
/// still ends as infected, not as a missing file.
#[tokio::test]
async fn retry_after_quarantine_stays_infected() {
    let app = TestApp::spawn_with(|s| s.jobs.run_workers = false).await;
    let Queued {
        mut sock,
        ready,
        token,
        class,
        ..
    } = queued(&app, &testkit::zip_of(&[("q.txt", b"q")])).await;
    let key = ready["s3_key"].as_str().unwrap();
    app.state
        .store
        .copy(key, &format!("quarantine/{key}"))
        .await
        .unwrap();
    app.state.store.delete(key).await.unwrap();
    assert!(
        Worker::new(app.state.uploads.clone())
            .run_once()
            .await
            .unwrap()
    );
    let msgs = sock.until_final().await;
    let last = &msgs.last().unwrap()["message"];
    assert_eq!(last["error_code"], "ERR_INFECTED", "{msgs:#?}");
    assert_eq!(last["av-status"], "infected");
    assert!(records_of(&app, &token, class).await.is_empty());
}

/// Structure before the scan: an archive over the entry limit is refused with
/// `ERR_ARCHIVE_TOO_MANY_ENTRIES` without clamd ever being asked to scan it (the
/// clamd here never answers, so a scan would hold the job), and nothing is saved.
#[tokio::test]
async fn a_refused_archive_is_never_scanned() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::AsyncReadExt;

    let hold = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hold.local_addr().unwrap();
    let asked = Arc::new(AtomicBool::new(false));
    let seen = asked.clone();
    let _held = tokio::spawn(async move {
        while let Ok((mut c, _)) = hold.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                while let Ok(n) = c.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(8).any(|w| w == b"INSTREAM") {
                        seen.store(true, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let app = TestApp::spawn_with(|s| {
        s.scan.clamd_addr = Some(format!("tcp://{addr}"));
        s.archive.max_archive_entries = 10;
    })
    .await;
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&token).await;
    let names: Vec<String> = (0..11).map(|i| format!("f{i}.txt")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
    let upload = app.create_upload(&token, class, field).await;
    let mut sock = Socket::connect(&app, &token, &upload).await;
    let ready = sock
        .upload(&app, class, field, "many.zip", &testkit::zip_of(&files))
        .await;
    let msgs = sock.until_final().await;
    let last = &msgs.last().unwrap()["message"];
    assert_eq!(last["status"], "error", "{msgs:#?}");
    assert_eq!(
        last["error_code"], "ERR_ARCHIVE_TOO_MANY_ENTRIES",
        "{msgs:#?}"
    );
    assert!(!asked.load(Ordering::SeqCst), "clamd was asked to scan");
    let session = ready["message"]["upload_id"].as_str().unwrap();
    let upload_row = app.state.db.upload_by_id(&upload).await.unwrap().unwrap();
    let prefix = format!("uploads/{}/{session}/files/", upload_row.id);
    assert!(app.s3.list(&prefix).await.unwrap().is_empty());
}

/// Where entries are inflated (a temp file each, memory under a byte budget that
/// holds only a few of them at once, or both by size) changes nothing the user sees:
/// the same records, the same bytes at their URLs, the same messages.
#[tokio::test]
async fn entries_in_memory_or_in_files_give_the_same_records() {
    // 40 entries of 1–9 KiB and two of 3 MiB (over the default 1 MiB).
    let mut files: Vec<(String, Vec<u8>)> = (0..40u32)
        .map(|i| {
            let n = 1024 + (i as usize * 211) % 8192;
            let bytes = (0..n).map(|j| (j as u32 * 31 + i) as u8).collect();
            (format!("docs/f{i:02}.bin"), bytes)
        })
        .collect();
    for i in 0..2u32 {
        let big = (0..3 << 20).map(|j: u32| (j.wrapping_mul(2_654_435_761) >> (8 + i)) as u8);
        files.push((format!("big/b{i}.bin"), big.collect()));
    }
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let zip = testkit::zip_of(&refs);
    // (memory_entry_max, memory_budget): files only; memory with room for two 9 KiB
    // entries at a time (the extractor waits for the savers); the defaults.
    for (entry_max, budget) in [(0, 1 << 20), (16 << 10, 20 << 10), (1 << 20, 32 << 20)] {
        let app = TestApp::spawn_with(|s| {
            s.jobs.memory_entry_max = entry_max;
            s.jobs.memory_budget = budget;
        })
        .await;
        let mut q = queued(&app, &zip).await;
        let msgs = q.sock.until_final().await;
        let last = msgs.last().unwrap();
        assert_eq!(last["message"]["status"], "success", "{entry_max}: {last}");
        assert_eq!(last["message"]["extracted_files"], files.len());
        let records = records_of(&app, &q.token, q.class).await;
        assert_eq!(records.len(), files.len(), "{entry_max}");
        for ((name, bytes), rec) in files.iter().zip(&records) {
            let doc = rec
                .as_object()
                .unwrap()
                .iter()
                .find_map(|(k, v)| k.starts_with("field_").then_some(v))
                .unwrap();
            assert_eq!(doc["path"], *name);
            assert_eq!(doc["sha256"], sha(bytes), "{entry_max}: {name}");
            let got = app
                .client
                .get(doc["url"].as_str().unwrap())
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(&got[..], &bytes[..], "{entry_max}: {name}");
        }
        // Every byte of the budget is back once the job is done.
        assert_eq!(
            app.state.uploads.memory.available_permits(),
            budget as usize,
            "{entry_max}"
        );
    }
}
