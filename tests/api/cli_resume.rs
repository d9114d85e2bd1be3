//! Resume across processes: a real `intake upload` process is killed (SIGKILL)
//! part-way through a multipart upload and run again; the rerun asks the server
//! which parts are stored, sends only the others (counted in bytes by a proxy in
//! front of the embedded S3) and completes the same upload. Ctrl-C says how to
//! resume, a changed file is refused, `--fresh` starts over, and the parts
//! endpoint answers from the store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use intake_archive::testkit;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cli::{PASSWORD, setup, write};
use crate::helpers::TestApp;

const MIB: u64 = 1024 * 1024;
/// The part size of the 200 MiB resume test (the client's default).
const PART: u64 = 16 * MIB;

/// A TCP forwarder to the embedded S3 that counts the bytes clients send through
/// it and slows them down (each connection to about 8 MiB/s), so that a test can
/// stop a client part-way.
struct CountingProxy {
    addr: SocketAddr,
    upstream: Arc<OnceLock<SocketAddr>>,
    sent: Arc<AtomicU64>,
    /// Connections whose client has not closed its side yet.
    open: Arc<AtomicU64>,
    /// Flips one bit of the byte at this offset of everything sent (once).
    corrupt_at: Arc<AtomicU64>,
}

impl CountingProxy {
    async fn start() -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Arc::new(OnceLock::<SocketAddr>::new());
        let sent = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicU64::new(0));
        let corrupt_at = Arc::new(AtomicU64::new(u64::MAX));
        let (up, count, opened, corrupt) = (
            upstream.clone(),
            sent.clone(),
            open.clone(),
            corrupt_at.clone(),
        );
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (up, count, opened, corrupt) =
                    (up.clone(), count.clone(), opened.clone(), corrupt.clone());
                opened.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let _closed = Closed(opened);
                    let Some(target) = up.get().copied() else {
                        return;
                    };
                    let Ok(out) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut in_r, mut in_w) = inbound.into_split();
                    let (mut out_r, mut out_w) = out.into_split();
                    let to_s3 = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match in_r.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let from = count.fetch_add(n as u64, Ordering::SeqCst);
                            let at = corrupt.load(Ordering::SeqCst);
                            if (from..from + n as u64).contains(&at)
                                && corrupt
                                    .compare_exchange(
                                        at,
                                        u64::MAX,
                                        Ordering::SeqCst,
                                        Ordering::SeqCst,
                                    )
                                    .is_ok()
                            {
                                buf[(at - from) as usize] ^= 0x10;
                            }
                            if out_w.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(8)).await;
                        }
                        let _ = out_w.shutdown().await;
                    };
                    let from_s3 = async move {
                        let _ = tokio::io::copy(&mut out_r, &mut in_w).await;
                    };
                    tokio::join!(to_s3, from_s3);
                });
            }
        });
        CountingProxy {
            addr,
            upstream,
            sent,
            open,
            corrupt_at,
        }
    }

    /// The bytes counted since the last call, once every client connection has
    /// been read to its end (a killed client's last bytes still sit in the
    /// proxy's socket buffer for a moment).
    async fn take(&self) -> u64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.open.load(Ordering::SeqCst) > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "connections stay open"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.sent.swap(0, Ordering::SeqCst)
    }
}

/// Counts a connection as closed when dropped.
struct Closed(Arc<AtomicU64>);

impl Drop for Closed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An app with 5 MiB parts whose presigned URLs point at a counting proxy.
async fn app_behind_proxy() -> (TestApp, CountingProxy) {
    let proxy = CountingProxy::start().await;
    let public = format!("http://{}", proxy.addr);
    let app = TestApp::spawn_with(|s| {
        s.uploads.multipart_threshold_bytes = 5 * MIB;
        s.uploads.multipart_chunk_bytes = Some(5 * MIB);
        s.s3.public_s3_url = Some(public);
    })
    .await;
    let s3: SocketAddr = app
        .s3_endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    proxy.upstream.set(s3).unwrap();
    (app, proxy)
}

/// A stored (incompressible) archive of `mib` MiB and one small file.
fn big_archive(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let big: Vec<u8> = (0..(mib * MIB) as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    write(
        dir,
        name,
        &testkit::zip_stored(&[("big.bin", &big), ("small.txt", b"x")]),
    )
}

struct Cli {
    args: Vec<String>,
    email: String,
}

impl Cli {
    fn command(&self, extra: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_intake"));
        c.arg("upload")
            .args(&self.args)
            .args(extra)
            .env("INTAKE_EMAIL", &self.email)
            .env("INTAKE_PASSWORD", PASSWORD)
            .env_remove("INTAKE_TOKEN")
            .env_remove("INTAKE_CONFIG")
            .env_remove("INTAKE_STATE_DIR")
            .env("INTAKE_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs to the end; (exit code, stdout as JSON, stderr).
    async fn run(&self, extra: &[&str]) -> (Option<i32>, Value, String) {
        let out = self.command(extra).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code(), v, stderr)
    }

    /// Starts it and, once the proxy has seen `bytes`, sends `signal` (`KILL` or
    /// `INT`); its output.
    async fn stop_at(
        &self,
        proxy: &CountingProxy,
        bytes: u64,
        signal: &str,
    ) -> std::process::Output {
        let child = self.command(&[]).spawn().unwrap();
        let pid = child.id().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while proxy.sent.load(Ordering::SeqCst) < bytes {
            assert!(tokio::time::Instant::now() < deadline, "no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "the client was still running");
        child.wait_with_output().await.unwrap()
    }
}

/// The one state file under `dir`.
fn state_file(dir: &Path) -> Option<(PathBuf, Value)> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir.join("uploads"))
        .ok()?
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert!(files.len() <= 1, "{files:?}");
    let path = files.into_iter().next()?;
    let v = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    Some((path, v))
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
}

async fn cli_for(app: &TestApp, file: &Path, state: &Path) -> Cli {
    cli_with_parts(app, file, state, 5).await
}

async fn cli_with_parts(app: &TestApp, file: &Path, state: &Path, part_mib: u64) -> Cli {
    let (email, class, field) = setup(app).await;
    Cli {
        args: [
            crate::cli::upload_args(app, file, class, field),
            vec![
                "--parallel".into(),
                "2".into(),
                "--part-size".into(),
                part_mib.to_string(),
                "--state-dir".into(),
                state.display().to_string(),
            ],
        ]
        .concat(),
        email,
    }
}

/// The case: 200 MiB in 16 MiB parts, SIGKILL at 60 %.
#[tokio::test]
async fn a_killed_upload_resumes_sending_only_the_missing_parts() {
    let (app, proxy) = app_behind_proxy().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = big_archive(dir.path(), "big.zip", 200);
    let size = std::fs::metadata(&file).unwrap().len();
    let total_parts = size.div_ceil(PART);
    let cli = cli_with_parts(&app, &file, &state, PART / MIB).await;

    // SIGKILL at 60 % of the bytes: no chance to clean up or say anything.
    let out = cli.stop_at(&proxy, size * 6 / 10, "KILL").await;
    assert_eq!(out.status.code(), None, "killed by a signal");
    let first_run = proxy.take().await;
    let (_, saved) = state_file(&state).expect("the state file survives the kill");
    let upload_id = saved["upload_id"].as_str().unwrap().to_string();
    let session = saved["session_id"].as_str().unwrap().to_string();
    assert_eq!(saved["total_parts"], total_parts);
    assert_eq!(saved["chunk_size"], PART);
    assert_eq!(saved["file"]["size"], size);

    // What the store holds now, asked the way the client asks.
    let token = app.login(&cli.email, PASSWORD).await;
    let parts_path = format!("/api/object-records/uploads/{upload_id}/files/{session}/parts/");
    let listed: Value = app
        .get(&parts_path, Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["state"], "pending");
    let stored_at_kill = listed["parts"].as_array().unwrap().len() as u64;
    assert!(
        stored_at_kill >= 1 && stored_at_kill < total_parts,
        "killed part-way: {listed}"
    );
    assert_eq!(
        listed["part_urls"].as_array().unwrap().len() as u64,
        total_parts - stored_at_kill,
        "a fresh URL for each missing part"
    );

    // The same command again.
    let (code, done, stderr) = cli.run(&[]).await;
    assert_eq!(code, Some(0), "{done}\n{stderr}");
    let rerun = proxy.take().await;
    assert_eq!(done["ok"], true);
    assert_eq!(done["upload_id"], upload_id.as_str(), "the same upload");
    assert_eq!(
        done["session_id"],
        session.as_str(),
        "the same file session"
    );
    assert_eq!(done["resumed"], true);
    let reused = done["reused_parts"].as_u64().unwrap();
    assert!(reused >= stored_at_kill, "{done}");
    assert_eq!(done["sent_parts"].as_u64().unwrap(), total_parts - reused);
    // Only the missing parts' bytes went out again (plus request headers).
    let reused_bytes = reused * PART;
    let missing = size - reused_bytes;
    assert!(
        rerun >= missing && rerun < missing + 256 * 1024,
        "rerun sent {rerun} bytes for {missing} missing (first run {first_run})"
    );
    // At most the two parts in flight at the kill were lost (and sent again).
    assert!(
        first_run + rerun < size + 2 * PART + MIB,
        "first run {first_run} + rerun {rerun} for {size}"
    );
    assert_eq!(done["record_count"], 2);
    assert_eq!(
        app.state
            .db
            .upload_record_ids(&upload_id)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM uploads").await, 1);
    assert_eq!(
        count(&app, "SELECT COUNT(*) AS n FROM upload_files").await,
        1
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) AS n FROM object_records").await,
        2
    );
    assert!(
        state_file(&state).is_none(),
        "the state goes when the upload ends"
    );

    // The session is completed now: the endpoint says so, with nothing to send.
    let after: Value = app
        .get(&parts_path, Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(after["state"], "pending");
    assert_eq!(after["parts"], serde_json::json!([]));
    assert_eq!(after["part_urls"], serde_json::json!([]));
}

#[tokio::test]
async fn ctrl_c_says_how_to_resume_a_changed_file_is_refused_and_fresh_starts_over() {
    let (app, proxy) = app_behind_proxy().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = big_archive(dir.path(), "big.zip", 20);
    let size = std::fs::metadata(&file).unwrap().len();
    let cli = cli_for(&app, &file, &state).await;

    let out = cli.stop_at(&proxy, size * 7 / 10, "INT").await;
    assert_eq!(out.status.code(), Some(130));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error_code"], "ERR_INTERRUPTED");
    let (path, saved) = state_file(&state).unwrap();
    assert_eq!(v["state_file"], path.display().to_string());
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("Run the same command again to resume"),
        "{v}"
    );
    let old_upload = saved["upload_id"].as_str().unwrap().to_string();

    // The archive changes (same size, one byte in the middle of an entry).
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let (code, v, _) = cli.run(&[]).await;
    assert_eq!(code, Some(1));
    assert_eq!(v["error_code"], "ERR_FILE_CHANGED");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains(&old_upload) && detail.contains("--fresh"),
        "{detail}"
    );
    assert!(state_file(&state).is_some(), "a refusal keeps the state");

    // --fresh forgets it and uploads anew (the changed bytes are a bad CRC, so
    // send a good archive of the same name).
    let old_session = saved["session_id"].as_str().unwrap();
    let old_file = app
        .state
        .db
        .upload_file_by_id(old_session)
        .await
        .unwrap()
        .unwrap();
    let old_s3 = old_file.s3_upload_id.clone().unwrap();
    assert!(
        !app.s3
            .list_parts(&old_file.s3_key, &old_s3)
            .await
            .unwrap()
            .is_empty(),
        "the interrupted upload left parts"
    );
    std::fs::write(&file, testkit::zip_of(&[("a.txt", b"a")])).unwrap();
    let (code, v, stderr) = cli.run(&["--fresh"]).await;
    assert_eq!(code, Some(0), "{v}\n{stderr}");
    assert!(
        app.s3.list_parts(&old_file.s3_key, &old_s3).await.is_err(),
        "--fresh aborted the old multipart upload: no part left"
    );
    let old_now = app
        .state
        .db
        .upload_file_by_id(old_session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old_now.state, intake::domain::FileState::Failed);
    assert_eq!(v["resumed"], false);
    assert_ne!(v["upload_id"], old_upload.as_str());
    assert_eq!(v["record_count"], 1);
    assert!(state_file(&state).is_none());
}

#[tokio::test]
async fn the_parts_endpoint_is_the_creators_only() {
    let (app, _proxy) = app_behind_proxy().await;
    let (email, class, field) = setup(&app).await;
    let token = app.login(&email, PASSWORD).await;
    let upload = app.create_upload(&token, class, field).await;
    let (_, stranger) = app.user(intake::domain::AccountType::ConfigAdmin).await;
    let session = uuid::Uuid::new_v4();
    for (who, path) in [
        (
            &token,
            format!("/api/object-records/uploads/{upload}/files/{session}/parts/"),
        ),
        (
            &token,
            format!("/api/object-records/uploads/{upload}/files/nope/parts/"),
        ),
        (
            &stranger,
            format!("/api/object-records/uploads/{upload}/files/{session}/parts/"),
        ),
    ] {
        let r = app.get(&path, Some(who)).await;
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = app
        .get(
            &format!("/api/object-records/uploads/{upload}/files/{session}/parts/"),
            None,
        )
        .await;
    assert_eq!(r.status(), 401);
}

/// A single-PUT session: a fresh URL until the object exists, then part 1 with
/// its ETag; the session then completes as usual.
#[tokio::test]
async fn the_parts_endpoint_answers_a_single_put_session_from_the_store() {
    use crate::helpers::socket::{Socket, put};
    let app = TestApp::spawn().await;
    let (email, class, field) = setup(&app).await;
    let token = app.login(&email, PASSWORD).await;
    let upload = app.create_upload(&token, class, field).await;
    let zip = testkit::zip_of(&[("a.txt", b"a")]);
    let mut sock = Socket::connect(&app, &token, &upload).await;
    sock.send(&serde_json::json!({
        "type": "request_presigned_url",
        "temp_upload_id": "temp_1",
        "file_name": "one.zip",
        "file_size": zip.len(),
        "file_type": "application/zip",
        "object_class": class,
        "class_field": field,
    }))
    .await;
    let ready = sock.recv().await["message"].clone();
    let session = ready["upload_id"].as_str().unwrap();
    let path = format!("/api/object-records/uploads/{upload}/files/{session}/parts/");

    let before: Value = app.get(&path, Some(&token)).await.json().await.unwrap();
    assert_eq!(before["state"], "pending");
    assert_eq!(before["is_multipart"], false);
    assert_eq!(before["parts"], serde_json::json!([]));
    let url = before["presigned_url"].as_str().expect("a fresh URL");
    let r = put(&app, url, zip.clone(), Some("application/zip")).await;
    assert_eq!(r.status(), 200);
    let e_tag = r.headers()["etag"].to_str().unwrap().to_string();

    let after: Value = app.get(&path, Some(&token)).await.json().await.unwrap();
    assert_eq!(
        after["parts"],
        serde_json::json!([{ "part_number": 1, "e_tag": e_tag, "size": zip.len() }])
    );
    assert!(after["presigned_url"].is_null());
    sock.send(&serde_json::json!({ "type": "upload_complete", "upload_id": session, "s3_key": ready["s3_key"] }))
        .await;
    let msgs = sock.until_final().await;
    assert_eq!(msgs.last().unwrap()["message"]["status"], "success");
}

/// Cancelling a pending multipart session aborts it in the store (no part left),
/// fails the session and settles the upload; it is the creator's only, and only
/// while pending.
#[tokio::test]
async fn cancelling_a_session_leaves_no_part_in_the_store() {
    use crate::helpers::socket::{Socket, put};
    let (app, _proxy) = app_behind_proxy().await;
    let (email, class, field) = setup(&app).await;
    let token = app.login(&email, PASSWORD).await;
    let upload = app.create_upload(&token, class, field).await;
    let size = 12 * MIB;
    let mut sock = Socket::connect(&app, &token, &upload).await;
    sock.send(&serde_json::json!({
        "type": "request_presigned_url",
        "temp_upload_id": "temp_1",
        "file_name": "big.zip",
        "file_size": size,
        "file_type": "application/zip",
        "object_class": class,
        "class_field": field,
    }))
    .await;
    let ready = sock.recv().await["message"].clone();
    let session = ready["upload_id"].as_str().unwrap().to_string();
    let key = ready["s3_key"].as_str().unwrap().to_string();
    let s3_upload_id = ready["s3_upload_id"].as_str().unwrap().to_string();
    // One part goes up (through the proxy its URL names).
    let url = ready["part_urls"][0]["url"].as_str().unwrap();
    let r = put(&app, url, vec![7u8; (5 * MIB) as usize], None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.s3.list_parts(&key, &s3_upload_id).await.unwrap().len(),
        1
    );

    let path = format!("/api/object-records/uploads/{upload}/files/{session}/");
    let (_, stranger) = app.user(intake::domain::AccountType::ConfigAdmin).await;
    let delete = |who: String| {
        let req = app
            .client
            .delete(format!("{}{path}", app.base))
            .header("Authorization", format!("JWT {who}"));
        async move { req.send().await.unwrap() }
    };
    assert_eq!(delete(stranger).await.status(), 404);
    assert_eq!(delete(token.clone()).await.status(), 204);

    assert!(
        app.s3.list_parts(&key, &s3_upload_id).await.is_err(),
        "the multipart upload is aborted: no parts"
    );
    let detail = app.upload_detail(&token, &upload).await;
    assert_eq!(detail["state"], "failed");
    assert_eq!(detail["files"][0]["state"], "failed");
    let again = delete(token.clone()).await;
    assert_eq!(again.status(), 400);
    assert_eq!(
        again.json::<Value>().await.unwrap()["detail"],
        "The file is no longer being uploaded; it cannot be cancelled."
    );
}

/// A process killed after it announced completion (the archive is processed
/// while nobody watches): the rerun sends nothing, finds the upload settled and
/// reports its records, on the same upload.
#[tokio::test]
async fn a_rerun_after_completion_sends_nothing_and_reports_the_records() {
    use crate::helpers::socket::Socket;
    use intake::client::state::{FileIdentity, ResumeState, StateFile};
    use intake::client::{self, UploadOptions};
    let app = TestApp::spawn().await;
    let (email, class, field) = setup(&app).await;
    let token = app.login(&email, PASSWORD).await;
    let dir = tempfile::tempdir().unwrap();
    let zip = testkit::zip_of(&[("a.txt", b"a"), ("b.txt", b"b")]);
    let file = write(dir.path(), "done.zip", &zip);

    // What the killed process did: everything up to completion, through the socket.
    let upload = app.create_upload(&token, class, field).await;
    let mut sock = Socket::connect(&app, &token, &upload).await;
    let ready = sock.upload(&app, class, field, "done.zip", &zip).await;
    sock.until_final().await;
    let session = ready["message"]["upload_id"].as_str().unwrap().to_string();

    // ...and the state file it left.
    let mut opts: UploadOptions = crate::cli::options(&app.base, &email, class, field, &file);
    let state_dir = dir.path().join("state");
    opts.state_dir = Some(state_dir.clone());
    let state = StateFile::new(&state_dir, opts.server.as_str(), class, field, &file);
    state
        .save(&ResumeState {
            version: 1,
            server: opts.server.to_string(),
            class,
            field,
            file: FileIdentity::of(&file).unwrap(),
            upload_id: upload.clone(),
            session_id: Some(session.clone()),
            multipart: false,
            chunk_size: None,
            total_parts: 1,
            parts: [(1, "\"etag\"".to_string())].into_iter().collect(),
        })
        .unwrap();

    let done = client::upload(&opts, Arc::new(client::Silent))
        .await
        .expect("the real outcome");
    assert_eq!(done.upload_id, upload);
    assert_eq!(done.session_id, session);
    assert!(done.resumed);
    assert_eq!(done.sent_parts, 0);
    assert_eq!(done.record_count, 2);
    assert_eq!(
        done.records,
        app.state.db.upload_record_ids(&upload).await.unwrap()
    );
    assert!(
        state.load().unwrap().is_none(),
        "the state goes with the upload"
    );
}

/// Integrity bound into the URL: one bit of a part flips on its way to the store
/// (after the client hashed it). The store refuses that PUT (its URL is signed
/// with the part's CRC32C), the client sends the part again, and the archive is
/// processed whole. Without checksums the same flip is stored, and the pipeline
/// finds the archive corrupt: the refusal is what saved it.
#[tokio::test]
async fn a_part_altered_after_hashing_is_refused_and_sent_again() {
    let (app, proxy) = app_behind_proxy().await;
    let dir = tempfile::tempdir().unwrap();
    let file = big_archive(dir.path(), "big.zip", 12);
    let size = std::fs::metadata(&file).unwrap().len();
    let cli = cli_for(&app, &file, &dir.path().join("state")).await;

    proxy.corrupt_at.store(MIB, Ordering::SeqCst);
    let (code, done, stderr) = cli.run(&[]).await;
    assert_eq!(code, Some(0), "{done}\n{stderr}");
    assert_eq!(
        proxy.corrupt_at.load(Ordering::SeqCst),
        u64::MAX,
        "a bit was flipped"
    );
    assert_eq!(done["refused_parts"], 1, "{done}");
    assert_eq!(done["record_count"], 2);
    let sent = proxy.take().await;
    assert!(
        sent >= size + 5 * MIB && sent < size + 5 * MIB + 256 * 1024,
        "one part sent twice: {sent} for {size}"
    );

    // The control: no checksums, the same flip, and the archive arrives corrupt.
    proxy.corrupt_at.store(MIB, Ordering::SeqCst);
    let (code, failed, _) = cli.run(&["--no-checksums", "--fresh"]).await;
    assert_eq!(code, Some(1), "{failed}");
    assert_eq!(failed["ok"], false);
    assert_ne!(failed["error_code"], "ERR_S3_REJECTED", "{failed}");
}

/// The `checksums` extension on the socket: a malformed one is refused with what is
/// wrong, a good one binds the URLs (`checksum_algorithm`, the client's part size),
/// and a message without it is answered as the seed says (no such field).
#[tokio::test]
async fn the_checksums_field_binds_urls_and_is_checked() {
    use crate::helpers::socket::Socket;
    use base64::Engine as _;
    let app = TestApp::spawn_with(|s| s.uploads.multipart_threshold_bytes = 5 * MIB).await;
    let (email, class, field) = setup(&app).await;
    let token = app.login(&email, PASSWORD).await;
    let size = 12 * MIB;
    let crc = base64::engine::general_purpose::STANDARD.encode(0u32.to_be_bytes());
    let request = |checksums: Option<Value>| {
        let mut m = serde_json::json!({
            "type": "request_presigned_url", "temp_upload_id": "temp_1", "file_name": "a.zip",
            "file_size": size, "file_type": "application/zip",
            "object_class": class, "class_field": field,
        });
        if let Some(c) = checksums {
            m["checksums"] = c;
        }
        m
    };

    let upload = app.create_upload(&token, class, field).await;
    let mut sock = Socket::connect(&app, &token, &upload).await;
    sock.send(&request(Some(serde_json::json!({
        "algorithm": "crc32c", "part_size": 6 * MIB, "parts": [crc], "object": crc,
    }))))
    .await;
    sock.expect_error(
        "ERR_INVALID_CHECKSUMS",
        &format!(
            "Invalid checksums: checksums.parts has 1 entries; a file of {size} bytes in parts of {} has 2.",
            6 * MIB
        ),
    )
    .await;

    let mut sock = Socket::connect(&app, &token, &upload).await;
    sock.send(&request(Some(serde_json::json!({
        "algorithm": "crc32c", "part_size": 6 * MIB, "parts": [crc, crc], "object": crc,
    }))))
    .await;
    let bound = sock.recv().await["message"].clone();
    assert_eq!(bound["checksum_algorithm"], "crc32c");
    assert_eq!(bound["chunk_size"], 6 * MIB, "the client's part size");
    let url = bound["part_urls"][0]["url"].as_str().unwrap();
    assert!(url.contains("x-amz-checksum-crc32c"), "{url}");

    sock.send(&request(None)).await;
    let plain = sock.recv().await["message"].clone();
    assert!(plain.get("checksum_algorithm").is_none(), "{plain}");
    assert!(
        !plain["part_urls"][0]["url"]
            .as_str()
            .unwrap()
            .contains("checksum")
    );
}
