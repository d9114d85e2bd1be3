//! Start-up failures, as a person meets them: the built `intake` binary is run with a
//! broken setting, and each test checks the one line it prints (the setting and the
//! root cause), the exit code, and that it exits within 5 s (no pool or retry wait).
//! `RUST_BACKTRACE=1` is set for every run: a configuration error is a message, not
//! a crash, and must not print a backtrace.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one run printed and how it ended.
struct Run {
    code: Option<i32>,
    stderr: String,
    stdout: String,
    took: Duration,
}

impl Run {
    /// The line starting with `error:` (the log may print lines before it).
    fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("no error line in {:?}", self.stderr))
    }

    /// Checks a failed start: exit `code`, within 5 s, the error line, and no
    /// backtrace.
    fn failed_with(&self, code: i32, line: &str) {
        assert_eq!(self.code, Some(code), "{}", self.stderr);
        assert!(self.took < Duration::from_secs(5), "took {:?}", self.took);
        assert_eq!(self.error_line(), line, "{}", self.stderr);
        assert!(
            !self.stderr.to_lowercase().contains("backtrace"),
            "{}",
            self.stderr
        );
    }
}

/// Runs `intake args…` in `dir` with only `env` (plus PATH and RUST_BACKTRACE=1),
/// killing it after 20 s.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_BACKTRACE", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let (mut stderr, mut stdout) = (String::new(), String::new());
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    Run {
        code: status.code(),
        stderr,
        stdout,
        took,
    }
}

/// A local port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A data dir in a fresh temp dir, and the temp dir (the working directory).
fn workspace() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    (dir, data)
}

#[test]
fn an_unreachable_postgres_is_named_at_once() {
    let (dir, data) = workspace();
    let url = format!("postgres://postgres@127.0.0.1:{}/intake", closed_port());
    let run = run(
        dir.path(),
        &["serve"],
        &[("INTAKE_DATA_DIR", &data), ("INTAKE_DATABASE_URL", &url)],
    );
    run.failed_with(
        1,
        &format!(
            "error: INTAKE_DATABASE_URL=\"{url}\": cannot connect to the database: connection refused"
        ),
    );
}

#[test]
fn a_postgres_password_is_not_printed() {
    let (dir, data) = workspace();
    let port = closed_port();
    let url = format!("postgres://intake:hunter2-secret@127.0.0.1:{port}/intake");
    let run = run(
        dir.path(),
        &["migrate"],
        &[("INTAKE_DATA_DIR", &data), ("INTAKE_DATABASE_URL", &url)],
    );
    run.failed_with(
        1,
        &format!(
            "error: INTAKE_DATABASE_URL=\"postgres://intake:***@127.0.0.1:{port}/intake\": cannot connect to the database: connection refused"
        ),
    );
}

/// An external S3 at `endpoint` with made-up keys.
fn external_s3(data: &str, endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("INTAKE_DATA_DIR", data.to_string()),
        ("INTAKE_S3_ENDPOINT", endpoint.to_string()),
        ("INTAKE_S3_ACCESS_KEY_ID", "AKIAEXAMPLE".into()),
        ("INTAKE_S3_SECRET_ACCESS_KEY", "not-a-real-secret".into()),
        ("INTAKE_HTTP_ADDR", "127.0.0.1:0".into()),
    ]
}

fn run_with(dir: &Path, args: &[&str], env: &[(&'static str, String)]) -> Run {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run(dir, args, &env)
}

#[test]
fn an_unreachable_s3_endpoint_is_named_with_the_cause() {
    let (dir, data) = workspace();
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let run = run_with(dir.path(), &["serve"], &external_s3(&data, &endpoint));
    run.failed_with(
        1,
        &format!(
            "error: INTAKE_S3_ENDPOINT=\"{endpoint}\": cannot reach the object store: connection refused"
        ),
    );
}

#[test]
fn an_s3_host_that_does_not_resolve_is_a_dns_failure() {
    let (dir, data) = workspace();
    // `.invalid` never resolves (RFC 2606).
    let endpoint = "http://s3.intake-test.invalid";
    let run = run_with(dir.path(), &["serve"], &external_s3(&data, endpoint));
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.took < Duration::from_secs(5), "took {:?}", run.took);
    let prefix = format!(
        "error: INTAKE_S3_ENDPOINT=\"{endpoint}\": cannot reach the object store: DNS lookup failed: "
    );
    assert!(run.error_line().starts_with(&prefix), "{}", run.stderr);
}

/// A stand-in for an S3 region mismatch as AWS answers it: a HEAD gets a bare 400
/// (a HEAD answer has no body), any other request the XML error with the reason.
/// Also serves plain HTTP to a client that expects TLS.
async fn wrong_region_s3() -> std::net::SocketAddr {
    use axum::http::{Method, StatusCode};
    use axum::response::IntoResponse;
    let app = axum::Router::new().fallback(|method: Method| async move {
        if method == Method::HEAD {
            return StatusCode::BAD_REQUEST.into_response();
        }
        (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AuthorizationHeaderMalformed</Code>\
             <Message>The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'</Message>\
             <Region>eu-west-1</Region><RequestId>R1</RequestId></Error>",
        )
            .into_response()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_region_shows_the_servers_own_reason() {
    let addr = wrong_region_s3().await;
    let (dir, data) = workspace();
    let endpoint = format!("http://{addr}");
    let env = external_s3(&data, &endpoint);
    let run = tokio::task::spawn_blocking(move || run_with(dir.path(), &["serve"], &env))
        .await
        .unwrap();
    run.failed_with(
        1,
        "error: INTAKE_S3_REGION=\"us-east-1\": the object store refused the request: ListObjectsV2: \
         AuthorizationHeaderMalformed: The authorization header is malformed; the region 'us-east-1' \
         is wrong; expecting 'eu-west-1'",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_failure_is_named_as_such() {
    // https:// to a server that speaks plain HTTP: the TLS handshake fails.
    let addr = wrong_region_s3().await;
    let (dir, data) = workspace();
    let endpoint = format!("https://{addr}");
    let env = external_s3(&data, &endpoint);
    let run = tokio::task::spawn_blocking(move || run_with(dir.path(), &["serve"], &env))
        .await
        .unwrap();
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.took < Duration::from_secs(5), "took {:?}", run.took);
    let prefix =
        format!("error: INTAKE_S3_ENDPOINT=\"{endpoint}\": cannot reach the object store: TLS: ");
    assert!(run.error_line().starts_with(&prefix), "{}", run.stderr);
}

/// A directory this process cannot write in: read-only by mode, or, for root
/// (who ignores modes), one under /sys, which nobody may create files in.
fn unwritable_dir(base: &Path) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = base.join("read-only");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
    if std::fs::write(dir.join("probe"), b"").is_err() {
        return dir.display().to_string();
    }
    "/sys".to_string()
}

#[test]
fn an_unwritable_data_dir_is_not_a_database_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = unwritable_dir(dir.path());
    let run = run(dir.path(), &["serve"], &[("INTAKE_DATA_DIR", &data)]);
    run.failed_with(
        1,
        &format!(
            "error: INTAKE_DATA_DIR=\"{data}\": cannot write in the data directory: permission denied"
        ),
    );
}

#[test]
fn a_busy_http_port_is_named() {
    let (dir, data) = workspace();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let run = run(
        dir.path(),
        &["serve"],
        &[
            ("INTAKE_DATA_DIR", &data),
            ("INTAKE_HTTP_ADDR", &addr),
            ("INTAKE_S3_EMBEDDED_ADDR", "127.0.0.1:0"),
        ],
    );
    run.failed_with(
        1,
        &format!("error: INTAKE_HTTP_ADDR=\"{addr}\": cannot listen: address already in use"),
    );
}

#[test]
fn a_bad_value_is_one_line_and_exit_2_without_backtrace() {
    let (dir, data) = workspace();
    let run = run(
        dir.path(),
        &["serve"],
        &[
            ("INTAKE_DATA_DIR", &data),
            ("INTAKE_MAX_ARCHIVE_BYTES", "a lot"),
        ],
    );
    run.failed_with(
        2,
        "error: INTAKE_MAX_ARCHIVE_BYTES=\"a lot\" is not a size; write e.g. 100 MiB, 5 GB or a number of bytes",
    );
    // Nothing else: the whole output is that line.
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    // Nothing was created before the settings were known to be good.
    assert!(!Path::new(&data).exists());
}

#[test]
fn a_bad_config_file_key_suggests_the_right_one() {
    let (dir, data) = workspace();
    std::fs::write(
        dir.path().join("intake.toml"),
        "max_archive_byte = \"1 GiB\"\n",
    )
    .unwrap();
    let run = run(dir.path(), &["migrate"], &[("INTAKE_DATA_DIR", &data)]);
    run.failed_with(
        2,
        "error: config file intake.toml: \"max_archive_byte\" is not a setting; did you mean max_archive_bytes? (see docs/CONFIGURATION.md)",
    );
}

#[test]
fn a_typo_warns_units_are_read_and_json_logs_ignore_case() {
    let (dir, data) = workspace();
    let run = run(
        dir.path(),
        &["migrate"],
        &[
            ("INTAKE_DATA_DIR", &data),
            ("INTAKE_DATADIR", "/somewhere/else"),
            ("INTAKE_MAX_ARCHIVE_BYTES", "100 MiB"),
            ("INTAKE_PRESIGN_TTL", "15m"),
            ("INTAKE_JOB_POLL_MS", "500"),
            ("INTAKE_LOG_FORMAT", "JSON"),
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // Every log line is JSON; the warning names the setting meant.
    let warnings: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["level"] == "WARN")
        .collect();
    let messages: Vec<&str> = warnings
        .iter()
        .filter_map(|w| w["fields"]["message"].as_str())
        .collect();
    assert!(
        messages.contains(&"INTAKE_DATADIR is not a setting; did you mean INTAKE_DATA_DIR?"),
        "{}",
        run.stderr
    );
    assert!(
        messages.contains(&"INTAKE_JOB_POLL_MS is the old name of INTAKE_JOB_POLL; it still works"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("migrations applied"));
}

#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let (dir, data) = workspace();
    let run = run(
        dir.path(),
        &["migrate"],
        &[("INTAKE_DATA_DIR", &data), ("INTAKE_DATADIR", "x")],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("WARN"), "{}", run.stderr);
    assert!(!run.stderr.contains('\u{1b}'), "{:?}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn logs_to_a_terminal_are_coloured_unless_no_color() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    }
    let (dir, data) = workspace();
    let on_a_terminal = |extra: &[(&str, &str)]| {
        let command = format!("{} migrate", env!("CARGO_BIN_EXE_intake"));
        let out = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("INTAKE_DATA_DIR", &data)
            .env("INTAKE_DATADIR", "x")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = on_a_terminal(&[]);
    assert!(shown.contains("WARN"), "{shown}");
    assert!(shown.contains('\u{1b}'), "{shown:?}");
    let shown = on_a_terminal(&[("NO_COLOR", "1")]);
    assert!(shown.contains("WARN"), "{shown}");
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
}
