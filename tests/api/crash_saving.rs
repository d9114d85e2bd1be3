//! kill -9 in the middle of saving, on the embedded defaults: `intake serve` runs
//! as its own process on SQLite and the embedded S3, and is killed (SIGKILL) while
//! the extracted files are being written, once with a third of them stored and once
//! more after the restart, then started again on the same data. The upload ends
//! with exactly one record per entry; with the server stopped, the store is opened
//! on its data dir and every record's object is read back: its bytes are the
//! entry's and their SHA-256 is the record's, and the upload's files prefix holds
//! nothing else.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use intake::store::{EmbeddedS3, ObjectStore, S3Config, S3Store};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqlitePool;

use crate::helpers::process::{Served, serve, upload_client};

const EMAIL: &str = "kill@example.com";
const PASSWORD: &str = "correct horse battery";
/// Entries in the archive: enough that saving takes a while.
const FILES: usize = 3000;

/// The archive's entries: mostly small text (kept in memory while saved), every
/// 50th 200 KiB and every 500th 2 MiB of noise (through temp files, and stored as
/// files rather than packed).
fn entries() -> Vec<(String, Vec<u8>)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    (0..FILES)
        .map(|i| {
            let body = match i {
                i if i % 500 == 7 => noise(2 << 20),
                i if i % 50 == 3 => noise(200 << 10),
                i => noise(1024 + (i * 7919) % 3072)
                    .into_iter()
                    .map(|b| b"abcdefghij klmnop\n"[usize::from(b % 18)])
                    .collect(),
            };
            (format!("docs/f-{i:05}.txt"), body)
        })
        .collect()
}

fn write_zip(path: &Path, entries: &[(String, Vec<u8>)]) {
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, body) in entries {
        w.start_file(name.as_str(), opts).unwrap();
        w.write_all(body).unwrap();
    }
    w.finish().unwrap();
}

async fn read_only(db: &Path) -> SqlitePool {
    SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .unwrap()
}

/// Extracted files stored so far (the embedded store's own index).
async fn stored_files(objects: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE key LIKE 'uploads/%/files/%'")
        .fetch_one(objects)
        .await
        .unwrap_or(0)
}

/// Waits until at least `at_least` files are stored and saving is not over.
async fn wait_for_saving(data: &Path, at_least: i64) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let objects = loop {
        if data.join("s3/objects.db").exists() {
            break read_only(&data.join("s3/objects.db")).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    loop {
        let n = stored_files(&objects).await;
        if n >= at_least {
            objects.close().await;
            assert!(n < FILES as i64, "saving was over before the kill ({n})");
            return n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "saving never reached {at_least} files ({n})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_kill_while_saving_leaves_every_record_readable_with_its_sha256() {
    let Served {
        dir,
        data,
        http,
        s3,
        mut server,
        target,
    } = Served::start(EMAIL, PASSWORD).await;
    let entries = entries();
    let file = dir.path().join("batch.zip");
    write_zip(&file, &entries);
    let client = upload_client(
        &file,
        &format!("http://127.0.0.1:{http}"),
        target,
        &dir.path().join("state"),
        (EMAIL, PASSWORD),
    );

    // Killed with a third stored; restarted; killed again further on.
    let mut stored = wait_for_saving(&data, FILES as i64 / 3).await;
    for kill in 0..2 {
        server.start_kill().unwrap();
        server.wait().await.unwrap();
        eprintln!("kill -9 {} with {stored} files stored", kill + 1);
        server = serve(&data, http, s3).await;
        if kill == 0 {
            // The job starts over once its lease runs out; kill it again when it has
            // gone further than before (deterministic keys: the same objects again).
            stored = wait_for_saving(&data, stored + FILES as i64 / 6).await;
        }
    }

    let out = client.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let done: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(out.status.code(), Some(0), "{done}\n{stderr}");
    assert_eq!(done["record_count"], FILES, "{done}");

    // Stopped for good; the records and the objects as they are on disk.
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let db = read_only(&data.join("intake.db")).await;
    let records: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT upload_entry, upload_file_id, field_values FROM object_records ORDER BY upload_entry",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(records.len(), FILES, "exactly one record per entry");
    let (upload, session): (String, String) =
        sqlx::query_as("SELECT upload_id, id FROM upload_files")
            .fetch_one(&db)
            .await
            .unwrap();
    db.close().await;

    let store_dir = data.join("s3");
    let embedded = EmbeddedS3::start(store_dir.clone(), "127.0.0.1:0".parse().unwrap(), "k", "s")
        .await
        .unwrap();
    let store = S3Store::connect(&S3Config {
        endpoint: Some(embedded.endpoint()),
        region: "us-east-1".into(),
        bucket: "intake".into(),
        access_key_id: "k".into(),
        secret_access_key: "s".into(),
        force_path_style: true,
        public_url: None,
    })
    .await
    .unwrap();
    let by_name: HashMap<&str, &[u8]> = entries
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let copy = dir.path().join("object");
    for (index, file_id, values) in &records {
        assert_eq!(file_id, &session);
        let values: Value = serde_json::from_str(values).unwrap();
        let doc = &values["file"];
        let (key, path, sha) = (
            doc["key"].as_str().unwrap(),
            doc["path"].as_str().unwrap(),
            doc["sha256"].as_str().unwrap(),
        );
        assert_eq!(path, entries[*index as usize].0, "record {index}");
        let size = store
            .get_to_file(key, &copy)
            .await
            .unwrap_or_else(|e| panic!("record {index}'s object {key}: {e}"));
        let bytes = std::fs::read(&copy).unwrap();
        assert_eq!(size as usize, bytes.len());
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            sha,
            "record {index}: {key}"
        );
        assert!(
            bytes == by_name[path],
            "record {index}: {key} holds other bytes"
        );
    }
    let objects = read_only(&store_dir.join("objects.db")).await;
    let under: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE key LIKE ?")
        .bind(format!("uploads/{upload}/{session}/files/%"))
        .fetch_one(&objects)
        .await
        .unwrap();
    assert_eq!(under, FILES as i64, "nothing but the records' objects");
    objects.close().await;
    embedded.shutdown().await;
    let left = std::fs::read_dir(data.join("tmp"))
        .map(|d| d.flatten().count())
        .unwrap_or(0);
    assert_eq!(left, 0, "no temp dir left");
}
