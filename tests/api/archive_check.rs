//! `intake archive check`: the server's validator on the command line, no server.

use intake_archive::testkit;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn check(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(["archive", "check"])
        .args(args)
        .env("INTAKE_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[tokio::test]
async fn lists_accepted_files_and_refuses_with_the_servers_code_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.zip");
    let bad = dir.path().join("bad.zip");
    std::fs::write(
        &good,
        testkit::zip_of(&[("docs/a.txt", b"alpha"), ("b.bin", b"\x00\x01")]),
    )
    .unwrap();
    std::fs::write(&bad, testkit::zip_traversal()).unwrap();
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());

    // What the server's extraction step says about the bad one.
    let opened = intake_archive::SafeArchive::open(
        std::path::Path::new(bad),
        intake_archive::ExtractLimits::default(),
    );
    let Err(refusal) = opened else {
        panic!("the server refuses a traversal")
    };

    let (code, out) = check(&["--json", good, bad]);
    assert_eq!(code, 1, "{out}");
    let reports: Value = serde_json::from_str(&out).unwrap();
    let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
    assert_eq!(
        reports,
        json!([
            {"result": "accepted", "file": good, "entries": [
                {"name": "docs/a.txt", "size": 5, "sha256": sha(b"alpha")},
                {"name": "b.bin", "size": 2, "sha256": sha(b"\x00\x01")},
            ]},
            {"result": "refused", "file": bad, "error_code": "ERR_ARCHIVE_UNSAFE_PATH",
             "message": refusal.to_string()},
        ])
    );

    let (code, out) = check(&[good]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("{good}: accepted, 2 files\n")),
        "{out}"
    );
    assert!(out.contains(&sha(b"alpha")), "{out}");
    let (code, out) = check(&[bad]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        format!("{bad}: refused, ERR_ARCHIVE_UNSAFE_PATH: {refusal}\n")
    );
}
