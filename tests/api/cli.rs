//! `intake upload` against a real server: the client library for single and
//! multipart uploads (with a socket that drops mid-upload), and the built binary for
//! its output and exit status.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use intake::client::{self, ClientError, Credentials, Progress, StepUpdate, UploadOptions};
use intake::domain::AccountType;
use intake_archive::testkit;
use secrecy::SecretString;
use serde_json::Value;

use crate::helpers::TestApp;
use crate::helpers::proxy::Proxy;

pub(crate) const PASSWORD: &str = "correct horse battery";

/// A config admin with a known password, and a class with a document field.
pub(crate) async fn setup(app: &TestApp) -> (String, i64, i64) {
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    app.create_user(&email, PASSWORD, AccountType::ConfigAdmin)
        .await;
    let token = app.login(&email, PASSWORD).await;
    let (class, field) = app.class_with_document_field(&token).await;
    (email, class, field)
}

pub(crate) fn options(
    server: &str,
    email: &str,
    class: i64,
    field: i64,
    file: &Path,
) -> UploadOptions {
    UploadOptions::new(
        server.parse().unwrap(),
        Credentials::Password {
            email: email.into(),
            password: SecretString::from(PASSWORD),
        },
        class,
        field,
        file.to_path_buf(),
    )
}

pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Counts what the client reports; can run a hook when the first part is stored.
#[derive(Default)]
struct Recorder {
    bytes: AtomicI64,
    parts: Mutex<Vec<u32>>,
    steps: Mutex<Vec<StepUpdate>>,
    reconnects: Mutex<Vec<String>>,
    on_first_part: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Progress for Recorder {
    fn bytes(&self, delta: i64) {
        self.bytes.fetch_add(delta, Ordering::SeqCst);
    }
    fn part_done(&self, part: u32, _e_tag: &str) {
        self.parts.lock().unwrap().push(part);
        if let Some(hook) = self.on_first_part.lock().unwrap().take() {
            hook();
        }
    }
    fn reconnecting(&self, _attempt: u32, reason: &str) {
        self.reconnects.lock().unwrap().push(reason.to_string());
    }
    fn step(&self, update: &StepUpdate) {
        self.steps.lock().unwrap().push(update.clone());
    }
}

impl Recorder {
    /// The last count reported for a progress step.
    fn last_count(&self, step: &str) -> Option<(u64, u64)> {
        self.steps
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|u| u.step == step && u.counts.is_some())
            .and_then(|u| u.counts)
    }
}

pub(crate) async fn record_names(app: &TestApp, email: &str, ids: &[i64]) -> Vec<String> {
    let token = app.login(email, PASSWORD).await;
    let mut names = Vec::new();
    for id in ids {
        let r: Value = app
            .get(&format!("/api/object-records/{id}/"), Some(&token))
            .await
            .json()
            .await
            .unwrap();
        names.push(r["object_name"].as_str().unwrap().to_string());
    }
    names
}

#[tokio::test]
async fn single_upload_reports_the_records_created() {
    let app = TestApp::spawn().await;
    let (email, class, field) = setup(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let zip = testkit::zip_of(&[
        ("a.txt", b"alpha"),
        ("docs/b.txt", b"beta"),
        ("c.txt", b"gamma"),
    ]);
    let file = write(dir.path(), "three.zip", &zip);
    let recorder = Arc::new(Recorder::default());
    let done = client::upload(
        &options(&app.base, &email, class, field, &file),
        recorder.clone(),
    )
    .await
    .expect("upload succeeds");

    assert_eq!(done.record_count, 3);
    assert_eq!(done.records.len(), 3);
    assert!(!done.multipart);
    assert_eq!(done.parts, 1);
    assert_eq!(done.file_name, "three.zip");
    assert_eq!(done.file_size, zip.len() as u64);
    assert_eq!(done.message, "Done Extracted 3 files");
    assert_eq!(done.av_status.as_deref(), Some("skipped"));
    assert_eq!(done.reconnects, 0);
    assert_eq!(
        record_names(&app, &email, &done.records).await,
        vec!["a.txt", "b.txt", "c.txt"]
    );
    assert_eq!(recorder.bytes.load(Ordering::SeqCst), zip.len() as i64);
    assert_eq!(*recorder.parts.lock().unwrap(), vec![1]);
    assert_eq!(recorder.last_count("saving_files"), Some((3, 3)));
    assert_eq!(recorder.last_count("creating_records"), Some((3, 3)));
    assert!(recorder.reconnects.lock().unwrap().is_empty());
}

/// Three 5 MiB parts; the socket (and every REST connection) is cut when the first
/// part is stored. The client reconnects with a fresh ticket, sends no part twice
/// and completes on the new socket.
#[tokio::test]
async fn multipart_upload_survives_a_dropped_socket() {
    let app = TestApp::spawn_with(|s| {
        s.uploads.multipart_threshold_bytes = 5 * 1024 * 1024;
        s.uploads.multipart_chunk_bytes = Some(5 * 1024 * 1024);
    })
    .await;
    let (email, class, field) = setup(&app).await;
    let upstream: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let proxy = Arc::new(Proxy::start(upstream).await);

    // Incompressible and stored: over 10 MiB, so three parts.
    let big: Vec<u8> = (0..11 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let zip = testkit::zip_stored(&[("big.bin", &big), ("small.txt", b"x")]);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "big.zip", &zip);

    let recorder = Arc::new(Recorder::default());
    let cutter = proxy.clone();
    *recorder.on_first_part.lock().unwrap() = Some(Box::new(move || cutter.cut()));
    let mut opts = options(
        &format!("http://{}", proxy.addr),
        &email,
        class,
        field,
        &file,
    );
    opts.parallel = 2;
    // The client hashes its parts, so it chooses their size.
    opts.part_size = Some(5 * 1024 * 1024);
    let done = client::upload(&opts, recorder.clone())
        .await
        .expect("upload succeeds");

    assert!(done.multipart);
    assert_eq!(done.parts, 3);
    assert!(done.reconnects >= 1, "{done:?}");
    assert!(!recorder.reconnects.lock().unwrap().is_empty());
    let mut parts = recorder.parts.lock().unwrap().clone();
    parts.sort();
    assert_eq!(parts, vec![1, 2, 3], "each part is sent once");
    assert_eq!(recorder.bytes.load(Ordering::SeqCst), zip.len() as i64);
    assert_eq!(done.record_count, 2);
    assert_eq!(
        record_names(&app, &email, &done.records).await,
        vec!["big.bin", "small.txt"]
    );
}

#[tokio::test]
async fn refusals_carry_the_server_code_and_text() {
    let app = TestApp::spawn().await;
    let (email, class, field) = setup(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "ok.zip", &testkit::zip_of(&[("a.txt", b"a")]));

    // A class that does not exist: the REST refusal.
    let err = client::upload(
        &options(&app.base, &email, 999_999, field, &file),
        Arc::new(client::Silent),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "ERR_HTTP_400", "{err}");
    assert!(err.detail().contains("object_class"), "{err}");

    // A wrong password.
    let mut opts = options(&app.base, &email, class, field, &file);
    opts.credentials = Credentials::Password {
        email: email.clone(),
        password: SecretString::from("wrong password"),
    };
    let err = client::upload(&opts, Arc::new(client::Silent))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "ERR_HTTP_401");
    assert_eq!(
        err.detail(),
        "No active account found with the given credentials"
    );

    // An empty file: the socket's refusal.
    let empty = write(dir.path(), "empty.zip", b"");
    let err = client::upload(
        &options(&app.base, &email, class, field, &empty),
        Arc::new(client::Silent),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::Server { code, detail }
            if code == "ERR_FILE_EMPTY" && detail == "File size must be larger than 0."),
        "{err}"
    );

    // A missing file never reaches the server.
    let err = client::upload(
        &options(
            &app.base,
            &email,
            class,
            field,
            &dir.path().join("nope.zip"),
        ),
        Arc::new(client::Silent),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "ERR_FILE");
}

/// Runs the built `intake upload` with credentials in the environment.
/// `intake upload FILE --server … --class … --field … --json` for `app`.
pub(crate) fn upload_args(app: &TestApp, file: &Path, class: i64, field: i64) -> Vec<String> {
    vec![
        file.display().to_string(),
        "--server".into(),
        app.base.clone(),
        "--class".into(),
        class.to_string(),
        "--field".into(),
        field.to_string(),
        "--json".into(),
    ]
}

pub(crate) async fn run_cli(args: &[&str], email: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_intake"))
        .arg("upload")
        .args(args)
        .env("INTAKE_EMAIL", email)
        .env("INTAKE_PASSWORD", PASSWORD)
        .env_remove("INTAKE_TOKEN")
        .env_remove("INTAKE_CONFIG")
        .env("INTAKE_LOG", "warn")
        // Resume state stays out of the real home directory.
        .env(
            "XDG_STATE_HOME",
            std::env::temp_dir().join("intake-test-state"),
        )
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_binary_prints_records_and_fails_with_the_code() {
    let app = TestApp::spawn().await;
    let (email, class, field) = setup(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let (class, field) = (class.to_string(), field.to_string());
    let common = |file: &Path| -> Vec<String> {
        vec![
            file.display().to_string(),
            "--server".into(),
            app.base.clone(),
            "--class".into(),
            class.clone(),
            "--field".into(),
            field.clone(),
        ]
    };

    // Success, for people.
    let ok = write(
        dir.path(),
        "two.zip",
        &testkit::zip_of(&[("x.txt", b"x"), ("y.txt", b"y")]),
    );
    let args = common(&ok);
    let out = run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>(), &email).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("2 records created from two.zip (upload "),
        "{stdout}"
    );
    let ids_line = stdout.lines().find(|l| l.starts_with("records: ")).unwrap();
    assert_eq!(ids_line.split_whitespace().count(), 3, "{stdout}");

    // Success, for machines.
    let mut args = common(&ok);
    args.push("--json".into());
    let out = run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>(), &email).await;
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["record_count"], 2);
    assert_eq!(v["records"].as_array().unwrap().len(), 2);
    assert!(out.stderr.is_empty(), "--json prints no progress");

    // An unsafe archive: exit 1 with the pipeline's code and text.
    let bad = write(dir.path(), "evil.zip", &testkit::zip_traversal());
    let mut args = common(&bad);
    args.push("--json".into());
    let out = run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>(), &email).await;
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["error_code"], "ERR_ARCHIVE_UNSAFE_PATH");
    assert!(!v["detail"].as_str().unwrap().is_empty());

    let out = run_cli(
        &common(&bad).iter().map(String::as_str).collect::<Vec<_>>(),
        &email,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: ERR_ARCHIVE_UNSAFE_PATH: "),
        "{stderr}"
    );

    // No credentials at all: a usage error.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_intake"))
        .arg("upload")
        .args(common(&ok))
        .env_remove("INTAKE_EMAIL")
        .env_remove("INTAKE_PASSWORD")
        .env_remove("INTAKE_TOKEN")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn the_upload_page_is_served() {
    let app = TestApp::spawn().await;
    for (path, kind, needle) in [
        ("/", "text/html", "Sign in"),
        ("/ui/app.js", "text/javascript", "request_presigned_url"),
        ("/ui/app.css", "text/css", ".drop"),
    ] {
        let r = app.get(path, None).await;
        assert_eq!(r.status(), 200, "{path}");
        let headers = r.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        assert!(r.text().await.unwrap().contains(needle), "{path}");
    }
}
