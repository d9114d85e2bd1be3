//! `intake admin …` user management, run as the built binary against a running
//! app's database and data dir: passwords from standard input (not the command
//! line), list, set-password, delete (or deactivate), and the data dir it prints.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Runs `intake admin args…` against `app`, writing `stdin` to it.
fn admin(app: &TestApp, args: &[&str], stdin: &str) -> Output {
    let settings = &app.state.settings;
    let mut child = Command::new(env!("CARGO_BIN_EXE_intake"))
        .arg("admin")
        .args(args)
        .env("INTAKE_DATA_DIR", &settings.server.data_dir)
        .envs(
            settings
                .database
                .url
                .as_ref()
                .map(|u| ("INTAKE_DATABASE_URL", u.expose_secret().to_string())),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether logging in with `password` works.
async fn can_log_in(app: &TestApp, email: &str, password: &str) -> bool {
    let r = app
        .post(
            "/api/auth/token/",
            None,
            json!({ "email": email, "password": password }),
        )
        .await;
    r.status() == 200
}

#[tokio::test]
async fn users_are_managed_with_passwords_from_stdin() {
    let app = TestApp::spawn().await;
    let email = "ops@example.com";

    // No --password: standard input is not a terminal, so one line is read from it.
    let out = admin(
        &app,
        &[
            "create-user",
            "--email",
            email,
            "--account-type",
            "super_admin",
        ],
        "first-password-1\n",
    );
    let created = json_of(&out);
    assert_eq!(created["email"], email);
    let data_dir = app.state.settings.server.data_dir.display().to_string();
    assert!(
        stderr(&out).contains(&format!("intake: data directory {data_dir}")),
        "{}",
        stderr(&out)
    );
    assert!(can_log_in(&app, email, "first-password-1").await);

    let listed = json_of(&admin(&app, &["list-users"], ""));
    let me = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == email)
        .unwrap();
    assert_eq!(me["id"], created["id"]);
    assert_eq!(me["account_type"], "super_admin");
    assert_eq!(me["is_active"], true);
    assert!(me["created_at"].as_i64().unwrap() > 0);

    // A new password replaces the old one.
    let out = admin(
        &app,
        &["set-password", "--email", email],
        "second-password-2\n",
    );
    assert_eq!(json_of(&out)["id"], created["id"]);
    assert!(!can_log_in(&app, email, "first-password-1").await);
    assert!(can_log_in(&app, email, "second-password-2").await);

    // Too short, or for nobody: refused, nothing changed.
    let out = admin(&app, &["set-password", "--email", email], "short\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error: the password must be at least 8 characters"),
        "{}",
        stderr(&out)
    );
    assert!(can_log_in(&app, email, "second-password-2").await);
    let out = admin(
        &app,
        &["set-password", "--email", "nobody@example.com"],
        "whatever-password\n",
    );
    assert!(stderr(&out).contains("error: no user with e-mail nobody@example.com"));

    // A user who created nothing is deleted outright.
    let deleted = json_of(&admin(&app, &["delete-user", "--email", email], ""));
    assert_eq!(
        deleted,
        json!({ "id": created["id"], "email": email, "result": "deleted" })
    );
    assert!(!can_log_in(&app, email, "second-password-2").await);
    let listed = json_of(&admin(&app, &["list-users"], ""));
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["email"] == email)
    );
}

#[tokio::test]
async fn a_user_who_created_something_is_deactivated_not_deleted() {
    let app = TestApp::spawn().await;
    let email = "maker@example.com";
    app.create_user(
        email,
        "maker-password",
        intake::domain::AccountType::ConfigAdmin,
    )
    .await;
    let token = app.login(email, "maker-password").await;
    app.class_with_document_field(&token).await;

    let out = json_of(&admin(&app, &["delete-user", "--email", email], ""));
    assert_eq!(out["result"], "deactivated");
    // No log-in, and the token already issued is refused.
    assert!(!can_log_in(&app, email, "maker-password").await);
    assert_eq!(
        app.get("/api/object-classes/", Some(&token)).await.status(),
        401
    );
    let listed = json_of(&admin(&app, &["list-users"], ""));
    let me = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == email)
        .unwrap();
    assert_eq!(me["is_active"], false);
}

#[tokio::test]
async fn an_admin_command_elsewhere_says_it_creates_a_new_data_dir() {
    let app = TestApp::spawn().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(["admin", "list-users"])
        .current_dir(elsewhere.path())
        .env_remove("INTAKE_DATA_DIR")
        .env_remove("INTAKE_DATABASE_URL")
        .output()
        .unwrap();
    drop(app);
    let expected = elsewhere.path().join("intake-data");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "intake: data directory {} (INTAKE_DATA_DIR) does not exist yet; creating it.",
            expected.display()
        )),
        "{err}"
    );
}

/// On a terminal (a pseudo-terminal from util-linux `script`) the password is asked
/// for twice; two different answers change nothing.
#[tokio::test]
async fn a_terminal_is_asked_for_the_password_twice() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    }
    let app = TestApp::spawn().await;
    let settings = &app.state.settings;
    let on_a_terminal = |args: &str, typed: &str| {
        let mut command = format!("{} admin {args}", env!("CARGO_BIN_EXE_intake"));
        if let Some(url) = &settings.database.url {
            command = format!("INTAKE_DATABASE_URL='{}' {command}", url.expose_secret());
        }
        let mut child = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("INTAKE_DATA_DIR", &settings.server.data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(typed.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let email = "tty@example.com";
    let out = on_a_terminal(
        &format!("create-user --email {email}"),
        "typed-password-1\ntyped-password-1\n",
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains(&format!("Password for {email}: ")),
        "{shown}"
    );
    assert!(shown.contains("Again: "), "{shown}");
    assert!(can_log_in(&app, email, "typed-password-1").await);

    let out = on_a_terminal(
        &format!("set-password --email {email}"),
        "typed-password-2\nanother-password\n",
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains("error: the two passwords differ; nothing was changed"),
        "{shown}"
    );
    assert!(can_log_in(&app, email, "typed-password-1").await);
}
