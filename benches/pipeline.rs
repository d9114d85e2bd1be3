//! Pipeline benchmark on the embedded defaults (SQLite, in-process S3, no clamd):
//! from `upload_complete` to the final `monitoring_update`, for
//! (a) a ZIP of 10,000 files of 1–4 KiB and (b) a ZIP of 1 GiB in 64 files.
//! Prints files/s, MB/s and the peak RSS of the process during processing (the
//! high-water mark is reset just before `upload_complete`), and the ratio to the I/O
//! floor measured right after on the same store: the archive read once and objects of
//! the same sizes written with the same concurrency, no processing. Dirty pages are
//! written out (`sync`) before each timed part.
//!
//! `-- refused` times the refusal of a 120,000-entry archive (over the default
//! limit of entries) from `upload_complete` to its `ERR_ARCHIVE_TOO_MANY_ENTRIES`.
//!
//! `cargo bench --bench pipeline` (both), or `-- small` / `-- large [GIB]` /
//! `-- refused`.
//! `BENCH_DB=postgres` runs it on a fresh PostgreSQL database instead of SQLite;
//! `BENCH_CLAMD_ADDR=tcp://127.0.0.1:3310` scans with that clamd;
//! `BENCH_SOCKET_NOTIFY=false` turns the `LISTEN/NOTIFY` wake-ups off;
//! `BENCH_SAVE_CONCURRENCY=N` sets `save_concurrency`.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use intake::app::Application;
use intake::config::Settings;
use intake::domain::AccountType;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use zip::write::SimpleFileOptions;

/// A fast deterministic byte source (xorshift), so inputs are the same every run.
struct Bytes(u64);
impl Bytes {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let v = self.0.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn write_small_zip(path: &Path) -> Vec<u64> {
    let mut w = zip::ZipWriter::new(std::io::BufWriter::new(
        std::fs::File::create(path).unwrap(),
    ));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut src = Bytes(42);
    let mut sizes = Vec::new();
    for i in 0..10_000u64 {
        let size = 1024 + (i * 7919) % 3072;
        // Text-like content: compressible, like real small documents.
        let mut raw = vec![0u8; size as usize];
        src.fill(&mut raw);
        let text: Vec<u8> = raw
            .iter()
            .map(|b| b"abcdefghij klmnop\n"[(*b % 18) as usize])
            .collect();
        w.start_file(format!("batch/doc-{i:05}.txt"), opts).unwrap();
        w.write_all(&text).unwrap();
        sizes.push(size);
    }
    w.finish().unwrap();
    sizes
}

/// 120,000 empty entries: a small archive, refused by its count alone.
fn write_many_entries_zip(path: &Path) -> Vec<u64> {
    let mut w = zip::ZipWriter::new(std::io::BufWriter::new(
        std::fs::File::create(path).unwrap(),
    ));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..120_000u32 {
        w.start_file(format!("e/{i:06}"), opts).unwrap();
    }
    w.finish().unwrap();
    vec![0; 120_000]
}

fn write_large_zip(path: &Path, gib: u64) -> Vec<u64> {
    let mut w = zip::ZipWriter::new(std::io::BufWriter::new(
        std::fs::File::create(path).unwrap(),
    ));
    // Stored, like a batch of already-compressed scans and photos.
    let per_file = gib * 1024 * 1024 * 1024 / 64;
    // ZIP64 fields only where the sizes need them: a canonical archive has no others.
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(per_file >= u64::from(u32::MAX));
    let mut src = Bytes(7);
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..64 {
        w.start_file(format!("scans/scan-{i:02}.bin"), opts)
            .unwrap();
        let mut left = per_file;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            src.fill(&mut buf[..n]);
            w.write_all(&buf[..n]).unwrap();
            left -= n as u64;
        }
    }
    w.finish().unwrap();
    vec![per_file; 64]
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn reset_peak_rss() {
    // Linux: writing 5 to clear_refs resets VmHWM to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Runs one case; `refusal` is the error code it must end with instead of success.
async fn run_case(name: &str, make: impl FnOnce(&Path) -> Vec<u64>, refusal: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("input.zip");
    let sizes = make(&zip_path);
    let (files, bytes) = (sizes.len() as u64, sizes.iter().sum::<u64>());
    let zip_len = std::fs::metadata(&zip_path).unwrap().len();

    let mut settings = Settings::ephemeral(dir.path().join("data"));
    let pg = postgres_database().await;
    if let Some(url) = &pg {
        settings.database.url = Some(url.clone().into());
    }
    settings.socket.socket_notify = std::env::var("BENCH_SOCKET_NOTIFY").as_deref() != Ok("false");
    if let Some(n) = std::env::var("BENCH_SAVE_CONCURRENCY")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        settings.jobs.save_concurrency = n;
    }
    settings.scan.clamd_addr = std::env::var("BENCH_CLAMD_ADDR").ok();
    println!(
        "{name}: database {}, clamd {}, socket notices {}",
        if pg.is_some() { "PostgreSQL" } else { "SQLite" },
        settings.scan.clamd_addr.as_deref().unwrap_or("off"),
        if settings.socket.socket_notify {
            "on"
        } else {
            "off"
        }
    );
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    tokio::spawn(app.run_until(std::future::pending()));

    let http = reqwest::Client::new();
    let hash = intake::auth::hash_password("bench-password").unwrap();
    state
        .db
        .create_user("bench@example.com", &hash, AccountType::SuperAdmin)
        .await
        .unwrap();
    let post = |path: &str, token: Option<String>, body: Value| {
        let mut r = http.post(format!("{base}{path}")).json(&body);
        if let Some(t) = token {
            r = r.header("Authorization", format!("JWT {t}"));
        }
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let token = post(
        "/api/auth/token/",
        None,
        json!({"email": "bench@example.com", "password": "bench-password"}),
    )
    .await["access"]
        .as_str()
        .unwrap()
        .to_string();
    let class = post(
        "/api/object-classes/",
        Some(token.clone()),
        json!({"name": "Bench"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let field = post(
        &format!("/api/object-classes/{class}/fields/"),
        Some(token.clone()),
        json!({"label": "File", "alias": "file", "type": "document"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let upload = post(
        "/api/object-records/uploads/",
        Some(token.clone()),
        json!({"object_class": class, "object_class_field": field}),
    )
    .await["upload_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ticket: Value = http
        .get(format!("{base}/api/users/ws-auth/"))
        .header("Authorization", format!("JWT {token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!(
        "{}/ws/object-records/uploads/{upload}/?uuid={}",
        base.replacen("http", "ws", 1),
        ticket["uuid"].as_str().unwrap()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut next = async || loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => break serde_json::from_str::<Value>(&t).unwrap(),
            _ => continue,
        }
    };
    assert_eq!(next().await["type"], "connection_established");
    let request = json!({
        "type": "request_presigned_url", "temp_upload_id": "bench", "file_name": "input.zip",
        "file_size": zip_len, "file_type": "application/zip", "object_class": class, "class_field": field,
    });
    ws.send(Message::Text(request.to_string().into()))
        .await
        .unwrap();
    let ready = loop {
        if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
            break serde_json::from_str::<Value>(&t).unwrap();
        }
    };
    let m = &ready["message"];
    let upload_started = Instant::now();
    let complete = if m["is_multipart"] == true {
        let chunk = m["chunk_size"].as_u64().unwrap();
        let mut parts = Vec::new();
        for p in m["part_urls"].as_array().unwrap() {
            let n = p["part"].as_u64().unwrap();
            let start = (n - 1) * chunk;
            let len = chunk.min(zip_len - start);
            let mut f = tokio::fs::File::open(&zip_path).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            f.seek(std::io::SeekFrom::Start(start)).await.unwrap();
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f.take(len)));
            let r = http
                .put(p["url"].as_str().unwrap())
                .header("Content-Length", len)
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
            parts.push(json!({"part_number": n, "e_tag": r.headers()["etag"].to_str().unwrap()}));
        }
        json!({"type": "complete_multipart_upload", "upload_id": m["upload_id"], "parts": parts})
    } else {
        let f = tokio::fs::File::open(&zip_path).await.unwrap();
        let r = http
            .put(m["presigned_url"].as_str().unwrap())
            .header("Content-Type", "application/zip")
            .header("Content-Length", zip_len)
            .body(reqwest::Body::wrap_stream(
                tokio_util::io::ReaderStream::new(f),
            ))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        json!({"type": "upload_complete", "upload_id": m["upload_id"], "s3_key": m["s3_key"]})
    };
    let upload_secs = upload_started.elapsed().as_secs_f64();

    settle();
    reset_peak_rss();
    let started = Instant::now();
    ws.send(Message::Text(complete.to_string().into()))
        .await
        .unwrap();
    let mut messages = 0;
    let last = loop {
        let msg = tokio::time::timeout(Duration::from_secs(1800), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Text(t) = msg else { continue };
        messages += 1;
        let v: Value = serde_json::from_str(&t).unwrap();
        let status = &v["message"]["status"];
        if v["type"] == "monitoring_update" && (status == "success" || status == "error") {
            break v;
        }
    };
    let secs = started.elapsed().as_secs_f64();
    if let Some(code) = refusal {
        assert_eq!(last["message"]["status"], "error", "{last}");
        assert_eq!(last["message"]["error_code"], code, "{last}");
        println!(
            "{name}: {files} entries ({:.1} MB zip); upload_complete → {code} {secs:.3} s; {messages} messages",
            zip_len as f64 / 1e6
        );
        return;
    }
    assert_eq!(last["message"]["status"], "success", "{last}");
    assert_eq!(last["message"]["extracted_files"], files);
    let peak_rss = peak_rss_mib();
    let archive_key = m["s3_key"].as_str().unwrap();
    // As the pipeline: entries held in memory MEMORY_FANOUT times as many at once
    // as those through temp files.
    let jobs = &state.settings.jobs;
    let in_memory = sizes.iter().all(|&s| s <= jobs.memory_entry_max);
    let concurrency = jobs.save_concurrency.max(1) as usize
        * if in_memory {
            intake::uploads::process::save::MEMORY_FANOUT
        } else {
            1
        };
    settle();
    let floor = io_floor(&state, archive_key, &sizes, concurrency).await;
    println!(
        "{name}: {files} files, {:.1} MB inflated ({:.1} MB zip); upload {:.2} s; upload_complete → success {:.2} s: {:.0} files/s, {:.1} MB/s; {messages} messages; peak RSS {:.1} MiB; I/O floor {:.2} s, ratio {:.2}",
        bytes as f64 / 1e6,
        zip_len as f64 / 1e6,
        upload_secs,
        secs,
        files as f64 / secs,
        bytes as f64 / 1e6 / secs,
        peak_rss,
        floor,
        secs / floor,
    );
}

/// A fresh PostgreSQL database when `BENCH_DB=postgres` (at `BENCH_POSTGRES_URL`,
/// default `postgres://postgres@127.0.0.1:5432`), else `None` (SQLite).
async fn postgres_database() -> Option<String> {
    use sqlx::Connection;
    if std::env::var("BENCH_DB").as_deref() != Ok("postgres") {
        return None;
    }
    let base = std::env::var("BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("intake_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .expect("PostgreSQL at BENCH_POSTGRES_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    Some(format!("{base}/{name}"))
}

/// Writes every dirty page out (`sync`), so that neither timed part pays for the
/// write-back of the one before it (the upload, the pipeline's own objects).
fn settle() {
    let synced = std::process::Command::new("sync").status();
    assert!(synced.is_ok_and(|s| s.success()), "sync failed");
}

/// The I/O floor of a case, measured on the same store right after it: GET the
/// archive once (into nothing, as the pipeline reads it: by ranges, with the same
/// read-ahead) and PUT objects of the same sizes with the same concurrency, through
/// the store the pipeline writes to, with no processing. Seconds.
async fn io_floor(
    state: &intake::state::AppState,
    archive_key: &str,
    sizes: &[u64],
    concurrency: usize,
) -> f64 {
    let largest = sizes.iter().copied().max().unwrap_or(0) as usize;
    let body = bytes::Bytes::from(vec![0x5au8; largest]);
    let store = &state.store;
    let started = Instant::now();
    let archive = intake::store::RangedObject::open(std::sync::Arc::clone(store), archive_key)
        .await
        .unwrap()
        .expect("the archive");
    let read = tokio::io::copy(
        &mut std::sync::Arc::new(archive).reader(),
        &mut tokio::io::sink(),
    )
    .await
    .unwrap();
    assert!(read > 0);
    futures::stream::iter(sizes.iter().enumerate())
        .map(|(i, &size)| {
            let body = body.slice(..size as usize);
            async move {
                store
                    .put_bytes(&format!("floor/{i:06}"), body, "application/octet-stream")
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<()>>()
        .await;
    let secs = started.elapsed().as_secs_f64();
    store.delete_prefix("floor/").await.unwrap();
    secs
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let which = args.first().map(String::as_str).unwrap_or("all");
    let gib: u64 = args.get(1).and_then(|g| g.parse().ok()).unwrap_or(1);
    if which == "all" || which == "small" {
        run_case("(a) 10,000 files of 1-4 KiB", write_small_zip, None).await;
    }
    if which == "all" || which == "large" {
        run_case(
            &format!("(b) {gib} GiB in 64 files"),
            |p| write_large_zip(p, gib),
            None,
        )
        .await;
    }
    if which == "refused" {
        run_case(
            "120,000 empty entries",
            write_many_entries_zip,
            Some("ERR_ARCHIVE_TOO_MANY_ENTRIES"),
        )
        .await;
    }
}
