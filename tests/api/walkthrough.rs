//! The README's curl walk-through, step by step: create a user with the admin
//! command, get a token, create a class with a document field, create an upload,
//! get a ticket.

use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::TestApp;

#[tokio::test]
async fn readme_walkthrough() {
    let app = TestApp::spawn().await;
    // `intake admin create-user` against the same database and data dir.
    let settings = app.state.settings.clone();
    // Awaited, not blocking: the app runs on this test's one thread, and the command
    // may wait for a write lock the app holds.
    let admin = async |extra: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_intake"))
            .args(["admin", "create-user", "--email", "admin@example.com"])
            .args(["--password", "s3cret-pass"])
            .args(extra)
            .env("INTAKE_DATA_DIR", &settings.server.data_dir)
            .envs(
                settings
                    .database
                    .url
                    .as_ref()
                    .map(|u| ("INTAKE_DATABASE_URL", u.expose_secret().to_string())),
            )
            .output()
            .await
            .unwrap()
    };
    let out = admin(&["--account-type", "super_admin"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["email"], "admin@example.com");
    assert!(created["id"].as_i64().is_some());

    let token = app.login("admin@example.com", "s3cret-pass").await;
    let class: Value = app
        .post(
            "/api/object-classes/",
            Some(&token),
            json!({ "name": "Contracts" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let class_id = class["id"].as_i64().unwrap();
    let field: Value = app
        .post(
            &format!("/api/object-classes/{class_id}/fields/"),
            Some(&token),
            json!({ "label": "Scan", "alias": "scan", "type": "document" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let upload: Value = app
        .post(
            "/api/object-records/uploads/",
            Some(&token),
            json!({ "object_class": class_id, "object_class_field": field["id"] }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(upload["upload_id"].as_str().is_some());
    let ticket = app.ticket(&token).await;
    assert!(uuid::Uuid::parse_str(&ticket).is_ok());

    // The same user again is refused with a clear message.
    let out = admin(&[]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

#[test]
fn bad_environment_values_stop_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_intake"))
        .arg("migrate")
        .env("INTAKE_DATA_DIR", dir.path())
        .env("INTAKE_HTTP_ADDR", "nowhere")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP_ADDR") || err.contains("http_addr"),
        "{err}"
    );
}
