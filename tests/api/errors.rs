//! Errors a client can act on, over real sockets: an oversize message gets its
//! close 1009 (not a TCP reset), names the validator refuses (bidi controls,
//! Windows device names) come back with the documented code, an error text stays
//! under 1 KiB whatever the name's length, and a full local disk has its own code.

use futures::StreamExt as _;
use intake::domain::AccountType;
use intake_archive::testkit;
use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::helpers::TestApp;
use crate::helpers::socket::{Socket, WAIT};

/// A socket on a fresh upload of a configurator with a class of its own.
async fn socket(app: &TestApp) -> (Socket, i64, i64) {
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&token).await;
    let upload = app.create_upload(&token, class, field).await;
    (Socket::connect(app, &token, &upload).await, class, field)
}

#[tokio::test]
async fn a_70_kib_message_gets_close_1009_and_a_clean_end() {
    let app = TestApp::spawn_with(|s| s.jobs.run_workers = false).await;
    let (mut sock, ..) = socket(&app).await;
    sock.send_text(&format!(
        "{{\"type\": \"request_presigned_url\", \"file_name\": \"{}\"}}",
        "n".repeat(70 * 1024)
    ))
    .await;
    // The close frame arrives with its code...
    let frame = loop {
        match tokio::time::timeout(WAIT, sock.ws.next()).await.unwrap() {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => break other,
        }
    };
    match frame {
        Some(Ok(Message::Close(Some(close)))) => {
            assert_eq!(u16::from(close.code), 1009);
            assert_eq!(close.reason.as_str(), "Message too big");
        }
        other => panic!("expected close 1009, got {other:?}"),
    }
    // ...and the connection then ends without a reset: the server read the whole
    // message and waited for our close reply.
    match tokio::time::timeout(WAIT, sock.ws.next()).await.unwrap() {
        None | Some(Err(tungstenite::Error::ConnectionClosed)) => {}
        other => panic!("expected a clean end, got {other:?}"),
    }
}

/// Uploads `zip` over a socket and returns the last `monitoring_update`'s message.
async fn final_message(app: &TestApp, zip: &[u8]) -> Value {
    let (mut sock, class, field) = socket(app).await;
    sock.upload(app, class, field, "batch.zip", zip).await;
    let msgs = sock.until_final().await;
    msgs.last().unwrap()["message"].clone()
}

#[tokio::test]
async fn names_tools_read_differently_are_refused_with_the_documented_code() {
    let app = TestApp::spawn().await;
    for name in [
        "invoice\u{202e}fdp.exe",
        "a\u{2066}b.txt",
        "CON",
        "aux.txt",
        "docs/LPT1.pdf",
        "com3",
    ] {
        let zip = testkit::zip_of(&[(name, b"data".as_slice())]);
        let last = final_message(&app, &zip).await;
        assert_eq!(last["status"], "error", "{name:?}: {last}");
        assert_eq!(
            last["error_code"], "ERR_ARCHIVE_NONCANONICAL_NAME",
            "{name:?}: {last}"
        );
        assert_eq!(last["step_name"], "extracting_file");
    }
}

#[tokio::test]
async fn an_error_text_never_exceeds_1_kib() {
    let app = TestApp::spawn().await;
    let long = format!("{}\u{202e}.txt", "n".repeat(10_000));
    let zip = testkit::zip_of(&[(long.as_str(), b"data".as_slice())]);
    let last = final_message(&app, &zip).await;
    // Refused for its length already.
    assert_eq!(last["error_code"], "ERR_ARCHIVE_UNSAFE_PATH");
    let text = last["message"].as_str().unwrap();
    assert!(text.len() <= 1024, "{} bytes", text.len());
    // The start and the end of the name, and the reason, are all still there.
    assert!(text.starts_with("entry \"nnnn"), "{text}");
    assert!(
        text.ends_with(".txt\" has an unsafe name: it is longer than 4096 bytes"),
        "{text}"
    );
    // Just under that length, refused for the bidi control: the same.
    let deep = format!("{}a\u{202e}.txt", "dir/".repeat(1_000));
    let zip = testkit::zip_of(&[(deep.as_str(), b"data".as_slice())]);
    let last = final_message(&app, &zip).await;
    let text = last["message"].as_str().unwrap();
    assert!(text.len() <= 1024, "{} bytes: {text}", text.len());
    assert_eq!(last["error_code"], "ERR_ARCHIVE_NONCANONICAL_NAME");
    assert!(text.starts_with("entry \"dir/dir/"), "{text}");
    assert!(
        text.ends_with("bidirectional text control character"),
        "{text}"
    );
}

/// A 64 KiB tmpfs mounted over a directory, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// Mounts one at `dir`; `None` where this process may not mount (not root).
    fn mount(dir: &std::path::Path) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_full_local_disk_has_its_own_code() {
    let mut disk = None;
    let app = TestApp::spawn_with(|s| {
        // The pipeline's scratch space, full after 64 KiB.
        disk = SmallDisk::mount(&s.server.data_dir.join("tmp"));
        s.jobs.retry_base = std::time::Duration::from_millis(10);
    })
    .await;
    let Some(_disk) = disk else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    // Over `memory_entry_max` (1 MiB), so it is inflated into a temp file there (the
    // archive itself is read in the store, never copied).
    let payload = vec![7u8; 2 * 1024 * 1024];
    let zip = testkit::zip_stored(&[("big.bin", payload.as_slice())]);
    let (mut sock, class, field) = socket(&app).await;
    sock.upload(&app, class, field, "batch.zip", &zip).await;
    // The first failure is reported while it is retried, with the disk's code.
    let retrying = loop {
        let m = sock.recv().await;
        let status = &m["message"]["status"];
        if status == "retrying" || status == "error" || status == "success" {
            break m["message"].clone();
        }
    };
    assert_eq!(retrying["status"], "retrying", "{retrying}");
    assert_eq!(retrying["error_code"], "ERR_LOCAL_DISK_FULL", "{retrying}");
}

#[tokio::test]
async fn a_rest_error_text_never_exceeds_1_kib() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    let long = "9".repeat(10_000);
    let r = app
        .post(
            "/api/object-records/uploads/",
            Some(&token),
            serde_json::json!({ "object_class": long, "object_class_field": 1 }),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    let text = body["object_class"][0].as_str().unwrap();
    assert!(text.len() <= 1024, "{} bytes", text.len());
    assert!(text.starts_with("Invalid pk \"999"), "{text}");
    assert!(text.ends_with("999\" - object does not exist."), "{text}");
}
