//! Check before sending: `intake upload` runs the server's validator on the archive
//! first and refuses what the server would refuse, with the server's code and text,
//! before an upload exists or a byte is sent; `--no-check` sends it anyway.

use std::sync::Arc;

use intake::client::{self, ClientError};
use intake_archive::testkit;
use serde_json::Value;

use crate::cli::{options, run_cli, setup, write};
use crate::helpers::TestApp;

/// Upload transactions, file sessions and objects under `uploads/`: what an
/// upload leaves on the server.
async fn footprint(app: &TestApp) -> (i64, i64, usize) {
    let db = &app.state.db;
    let uploads: i64 = sqlx::query_scalar("SELECT COUNT(*) AS n FROM uploads")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let files: i64 = sqlx::query_scalar("SELECT COUNT(*) AS n FROM upload_files")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    (uploads, files, app.s3.list("uploads/").await.unwrap().len())
}

#[tokio::test]
async fn unsafe_archives_are_refused_before_a_byte_is_sent_with_the_server_code() {
    let app = TestApp::spawn().await;
    let (email, class, field) = setup(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("traversal.zip", testkit::zip_traversal()),
        ("symlink.zip", testkit::zip_symlink()),
        ("dupes.zip", testkit::zip_duplicate_casefold()),
        ("encrypted.zip", testkit::zip_encrypted()),
    ];
    for (name, zip) in cases {
        let file = write(dir.path(), name, &zip);
        let err = client::upload(
            &options(&app.base, &email, class, field, &file),
            Arc::new(client::Silent),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ClientError::Refused { .. }), "{name}: {err}");
        assert_eq!(footprint(&app).await, (0, 0, 0), "{name}: nothing sent");

        // The same archive sent unchecked: the server's pipeline refuses it with
        // exactly that code and text.
        let mut opts = options(&app.base, &email, class, field, &file);
        opts.check = false;
        let server = client::upload(&opts, Arc::new(client::Silent))
            .await
            .unwrap_err();
        assert!(
            matches!(server, ClientError::Server { .. }),
            "{name}: {server}"
        );
        assert_eq!(
            (err.code(), err.detail()),
            (server.code(), server.detail()),
            "{name}"
        );
        sqlx::query("DELETE FROM uploads")
            .execute(&app.state.db.pool)
            .await
            .unwrap();
        app.state.store.delete_prefix("uploads/").await.unwrap();
    }

    // A good archive passes the check and uploads.
    let ok = write(dir.path(), "ok.zip", &testkit::zip_of(&[("a.txt", b"a")]));
    let done = client::upload(
        &options(&app.base, &email, class, field, &ok),
        Arc::new(client::Silent),
    )
    .await
    .expect("a safe archive goes up");
    assert_eq!(done.record_count, 1);
}

#[tokio::test]
async fn the_binary_refuses_before_sending_and_no_check_sends() {
    let app = TestApp::spawn().await;
    let (email, class, field) = setup(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "evil.zip", &testkit::zip_traversal());
    let args = crate::cli::upload_args(&app, &bad, class, field);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();

    let out = run_cli(&argv, &email).await;
    assert_eq!(out.status.code(), Some(1));
    let checked: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(checked["ok"], false);
    assert_eq!(checked["error_code"], "ERR_ARCHIVE_UNSAFE_PATH");
    assert_eq!(checked["refused_before_upload"], true);
    assert_eq!(footprint(&app).await, (0, 0, 0));

    let mut unchecked_args = argv.clone();
    unchecked_args.push("--no-check");
    let out = run_cli(&unchecked_args, &email).await;
    assert_eq!(out.status.code(), Some(1));
    let server: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(server["refused_before_upload"], false);
    assert_eq!(server["error_code"], checked["error_code"]);
    assert_eq!(server["detail"], checked["detail"]);
    let (uploads, files, _) = footprint(&app).await;
    assert_eq!((uploads, files), (1, 1), "--no-check sent it");

    // For people: the refusal and what to do about it.
    let human: Vec<&str> = argv.iter().copied().filter(|a| *a != "--json").collect();
    let out = run_cli(&human, &email).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: ERR_ARCHIVE_UNSAFE_PATH: "),
        "{stderr}"
    );
    assert!(stderr.contains("--no-check"), "{stderr}");
}
