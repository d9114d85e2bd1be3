//! `intake serve` as a real process of its own (the built binary) on a data dir of
//! the test's: embedded SQLite and embedded S3, so that a kill -9 takes both down
//! with it, as it would in production.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `intake` on `data`, serving HTTP on `http` and the embedded S3 on `s3`, with none
/// of the test environment's `INTAKE_*` variables.
pub fn intake(data: &Path, http: u16, s3: u16) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_intake"));
    for (k, _) in std::env::vars() {
        if k.starts_with("INTAKE_") {
            c.env_remove(k);
        }
    }
    c.env("INTAKE_DATA_DIR", data)
        .env("INTAKE_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("INTAKE_S3_EMBEDDED_ADDR", format!("127.0.0.1:{s3}"))
        .env("INTAKE_LOG", "warn")
        .current_dir(data);
    c
}

/// Starts `intake serve` and waits until it is ready.
pub async fn serve(data: &Path, http: u16, s3: u16) -> tokio::process::Child {
    let mut cmd: tokio::process::Command = intake(data, http, s3).into();
    let child = cmd
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{http}/readyz")).await
            && r.status().is_success()
        {
            return child;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "intake serve is not ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a config admin with the admin CLI (before the server starts).
pub fn create_admin(data: &Path, http: u16, s3: u16, email: &str, password: &str) {
    let created = intake(data, http, s3)
        .args(["admin", "create-user", "--email", email])
        .args(["--password", password, "--account-type", "config_admin"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
}

/// Signs in as `email` on the server at `http` and creates a class with one document
/// field; their ids.
pub async fn class_with_document_field(http: u16, email: &str, password: &str) -> (i64, i64) {
    let base = format!("http://127.0.0.1:{http}");
    let rest = reqwest::Client::new();
    let token: Value = rest
        .post(format!("{base}/api/auth/token/"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let auth = format!("JWT {}", token["access"].as_str().unwrap());
    let post = |path: String, body: Value| {
        rest.post(format!("{base}{path}"))
            .header("Authorization", &auth)
            .json(&body)
            .send()
    };
    let class: Value = post("/api/object-classes/".into(), json!({ "name": "Crash" }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let class = class["id"].as_i64().unwrap();
    let field: Value = post(
        format!("/api/object-classes/{class}/fields/"),
        json!({ "label": "File", "alias": "file", "type": "document" }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    (class, field["id"].as_i64().unwrap())
}

/// `intake upload FILE` to the server at `server` as `email`, printing JSON.
pub fn upload_client(
    file: &Path,
    server: &str,
    (class, field): (i64, i64),
    state_dir: &Path,
    (email, password): (&str, &str),
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_intake"))
        .arg("upload")
        .arg(file)
        .args(["--server", server])
        .args(["--class", &class.to_string(), "--field", &field.to_string()])
        .arg("--json")
        .arg("--state-dir")
        .arg(state_dir)
        .env("INTAKE_EMAIL", email)
        .env("INTAKE_PASSWORD", password)
        .env_remove("INTAKE_TOKEN")
        .env_remove("INTAKE_CONFIG")
        .env("INTAKE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// A served data dir with a config admin and a class to upload into.
pub struct Served {
    /// Holds the data dir and whatever else the test writes beside it.
    pub dir: tempfile::TempDir,
    /// The data dir.
    pub data: std::path::PathBuf,
    /// The HTTP port.
    pub http: u16,
    /// The embedded S3 port.
    pub s3: u16,
    /// The running `intake serve`.
    pub server: tokio::process::Child,
    /// The class and its document field.
    pub target: (i64, i64),
}

impl Served {
    /// A fresh data dir, `email` made a config admin, the server started on it and a
    /// class with a document field created.
    pub async fn start(email: &str, password: &str) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let (http, s3) = (free_port(), free_port());
        create_admin(&data, http, s3, email, password);
        let server = serve(&data, http, s3).await;
        let target = class_with_document_field(http, email, password).await;
        Served {
            dir,
            data,
            http,
            s3,
            server,
            target,
        }
    }
}
