//! `intake upload` telling the truth: a skipped antivirus step is shown as skipped,
//! a success stays a success when the follow-up request for its record ids fails,
//! and `--server host:port` (no scheme) is accepted.

use std::sync::Arc;

use intake::client::{self, Progress, StepUpdate};
use intake_archive::testkit;
use serde_json::Value;

use crate::cli::{options, run_cli, setup, upload_args, write};
use crate::helpers::TestApp;
use crate::helpers::proxy::Proxy;

#[tokio::test]
async fn a_skipped_scan_is_shown_as_skipped_not_done() {
    // Test apps run without clamd: the server reports av-status "skipped".
    let app = TestApp::spawn().await;
    let (email, class, field) = setup(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "a.zip", &testkit::zip_of(&[("a.txt", b"a")]));
    let mut args = upload_args(&app, &file, class, field);
    args.retain(|a| a != "--json");
    let out = run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>(), &email).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let scan_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("antivirus_scan"))
        .collect();
    assert_eq!(
        scan_lines,
        vec!["antivirus_scan: skipped: the server has no virus scanner"],
        "{stderr}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l == "antivirus: skipped: the server has no virus scanner"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_server_without_scheme_is_http() {
    let app = TestApp::spawn().await;
    let (email, class, field) = setup(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "a.zip", &testkit::zip_of(&[("a.txt", b"a")]));
    let mut args = upload_args(&app, &file, class, field);
    let server = args.iter().position(|a| a == "--server").unwrap() + 1;
    args[server] = app.base.trim_start_matches("http://").to_string();
    let out = run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>(), &email).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    // A scheme that is not http(s) is a usage error that says so.
    args[server] = "ftp://127.0.0.1:21".into();
    let out = run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>(), &email).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an http:// or https:// address"));
}

/// Takes the proxy down the moment the final success arrives, so that every
/// request after it fails.
struct DownOnSuccess(Arc<Proxy>);

impl Progress for DownOnSuccess {
    fn step(&self, update: &StepUpdate) {
        if update.status.as_deref() == Some("success") {
            self.0.go_down();
        }
    }
}

#[tokio::test]
async fn a_success_stays_a_success_when_the_follow_up_fails() {
    let app = TestApp::spawn().await;
    let (email, class, field) = setup(&app).await;
    let proxy =
        Arc::new(Proxy::start(app.base.trim_start_matches("http://").parse().unwrap()).await);
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "two.zip",
        &testkit::zip_of(&[("a.txt", b"a"), ("b.txt", b"b")]),
    );
    let server = format!("http://{}", proxy.addr);
    let mut opts = options(&server, &email, class, field, &file);
    opts.state_dir = None;
    let done = client::upload(&opts, Arc::new(DownOnSuccess(proxy.clone())))
        .await
        .expect("the upload succeeded");
    assert_eq!(done.record_count, 2);
    assert!(done.records.is_empty());
    assert!(
        done.message
            .starts_with("Done Extracted 2 files (record ids not fetched: "),
        "{}",
        done.message
    );
}
