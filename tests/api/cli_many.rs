//! Several archives in one `intake upload`: each its own upload, one after another,
//! then a summary table (or one JSON object with every result); exit 1 when any
//! failed.

use intake_archive::testkit;
use serde_json::Value;

use crate::cli::{run_cli, setup, write};
use crate::helpers::TestApp;

#[tokio::test]
async fn several_archives_get_a_result_each_and_a_summary() {
    let app = TestApp::spawn().await;
    let (email, class, field) = setup(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.zip", &testkit::zip_of(&[("1.txt", b"1")]));
    let b = write(
        dir.path(),
        "b.zip",
        &testkit::zip_of(&[("2.txt", b"2"), ("3.txt", b"3")]),
    );
    let bad = write(dir.path(), "evil.zip", &testkit::zip_traversal());
    let mut args: Vec<String> = [&a, &bad, &b]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    for extra in [
        "--server",
        &app.base,
        "--class",
        &class.to_string(),
        "--field",
        &field.to_string(),
    ] {
        args.push(extra.to_string());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut json_args = argv.clone();
    json_args.push("--json");
    let out = run_cli(&json_args, &email).await;
    assert_eq!(out.status.code(), Some(1), "one of them failed");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let uploads = v["uploads"].as_array().unwrap();
    assert_eq!(uploads.len(), 3);
    assert_eq!(uploads[0]["ok"], true);
    assert_eq!(uploads[0]["record_count"], 1);
    assert_eq!(uploads[0]["file"], a.display().to_string());
    assert_eq!(uploads[1]["ok"], false);
    assert_eq!(uploads[1]["error_code"], "ERR_ARCHIVE_UNSAFE_PATH");
    assert_eq!(uploads[1]["refused_before_upload"], true);
    assert_eq!(uploads[2]["ok"], true);
    assert_eq!(uploads[2]["record_count"], 2);
    assert_ne!(uploads[0]["upload_id"], uploads[2]["upload_id"]);
    let records: i64 = sqlx::query_scalar("SELECT COUNT(*) AS n FROM object_records")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(records, 3);

    // For people: a table on stdout, the failure's text on stderr.
    let out = run_cli(&argv, &email).await;
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("FILE") && lines[0].contains("RESULT"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(&a.display().to_string()) && lines[1].contains(" ok "),
        "{stdout}"
    );
    assert!(lines[2].contains("ERR_ARCHIVE_UNSAFE_PATH"), "{stdout}");
    assert!(lines[3].contains(" ok "), "{stdout}");
    assert_eq!(lines[4], "2 of 3 archives uploaded, 3 records created");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: error: ERR_ARCHIVE_UNSAFE_PATH: ",
            bad.display()
        )),
        "{stderr}"
    );

    // All good: exit 0.
    let mut good: Vec<&str> = argv.clone();
    good.retain(|a| !a.ends_with("evil.zip"));
    good.push("--json");
    let out = run_cli(&good, &email).await;
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["uploads"].as_array().unwrap().len(), 2);
}
