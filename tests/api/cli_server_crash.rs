//! Never lose the outcome, with a real crash: `intake serve` runs as its own
//! process and `intake upload` as another. A forwarder between them cuts the
//! client off the moment the server reports the file `queued` (so the client
//! cannot have read the final message), the server settles the upload, and is
//! then killed with SIGKILL and started again on the same address and data. The
//! client reconnects, is told the upload is used (`ERR_INVALID_UUID`), reads the
//! upload's detail over REST and prints the real outcome with exit status 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use intake_archive::testkit;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::process::{Served, serve, upload_client};

const EMAIL: &str = "crash@example.com";
const PASSWORD: &str = "correct horse battery";

/// A forwarder to the server that, once armed, drops every connection whose
/// server side sends a `queued` update, and refuses connections until let in.
struct Cutter {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
}

impl Cutter {
    async fn start(upstream: SocketAddr) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let is_down = down.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if is_down.load(Ordering::SeqCst) {
                    continue;
                }
                let is_down = is_down.clone();
                tokio::spawn(async move {
                    let Ok(out) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut in_r, mut in_w) = inbound.into_split();
                    let (mut out_r, mut out_w) = out.into_split();
                    let up = async move {
                        let _ = tokio::io::copy(&mut in_r, &mut out_w).await;
                    };
                    let back = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match out_r.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if is_down.load(Ordering::SeqCst) {
                                break;
                            }
                            // Server frames are not masked: the update is readable.
                            if buf[..n].windows(8).any(|w| w == b"\"queued\"") {
                                is_down.store(true, Ordering::SeqCst);
                                break;
                            }
                            if in_w.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    // Either side ending ends the connection.
                    tokio::select! { _ = up => {}, _ = back => {} }
                });
            }
        });
        Cutter { addr, down }
    }
}

#[tokio::test]
async fn a_server_killed_after_settling_still_gives_the_client_its_outcome() {
    let mut node = Served::start(EMAIL, PASSWORD).await;
    let (dir, data, http) = (node.dir.path(), node.data.clone(), node.http);

    let cutter = Cutter::start(format!("127.0.0.1:{http}").parse().unwrap()).await;
    let file = dir.join("batch.zip");
    std::fs::write(
        &file,
        testkit::zip_of(&[("a.txt", b"a"), ("b.txt", b"b"), ("c.txt", b"c")]),
    )
    .unwrap();
    let client = upload_client(
        &file,
        &format!("http://{}", cutter.addr),
        node.target,
        &dir.join("state"),
        (EMAIL, PASSWORD),
    );

    // The client is cut off at `queued`; the server goes on and settles.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cutter.down.load(Ordering::SeqCst) {
        assert!(tokio::time::Instant::now() < deadline, "never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let upload_id: String = {
        let db = data.join("intake.db");
        // The only upload, read from the server's own database.
        let pool = sqlx::sqlite::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let row: Option<(String, String)> = sqlx::query_as("SELECT id, state FROM uploads")
                .fetch_optional(&pool)
                .await
                .unwrap();
            if let Some((id, state)) = row
                && state == "succeeded"
            {
                pool.close().await;
                break id;
            }
            assert!(tokio::time::Instant::now() < deadline, "never settled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };

    // Crash, and come back on the same address and data.
    node.server.start_kill().unwrap();
    node.server.wait().await.unwrap();
    let _server = serve(&data, http, node.s3).await;
    cutter.down.store(false, Ordering::SeqCst);

    let out = client.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let done: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(out.status.code(), Some(0), "{done}\n{stderr}");
    assert_eq!(done["ok"], true);
    assert_eq!(done["upload_id"], upload_id.as_str());
    assert_eq!(done["record_count"], 3, "{done}");
    assert_eq!(done["records"].as_array().unwrap().len(), 3);
}
