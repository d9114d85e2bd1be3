//! A test client for the upload socket: connect with a fresh ticket, request URLs,
//! PUT the bytes like a browser would (plain HTTP), complete, collect messages.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::TestApp;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A connected upload socket.
pub struct Socket {
    ws: Ws,
}

impl Socket {
    /// Connects to `upload_id` with a fresh ticket; reads `connection_established`.
    pub async fn connect(app: &TestApp, token: &str, upload_id: &str) -> Socket {
        let ticket = app.ticket(token).await;
        let url = format!(
            "{}/ws/object-records/uploads/{upload_id}/?uuid={ticket}",
            app.ws_base()
        );
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("socket connects");
        let mut s = Socket { ws };
        let first = s.recv().await;
        assert_eq!(
            first,
            json!({ "type": "connection_established", "message": "WebSocket connected successfully" })
        );
        s
    }

    /// Sends a JSON message.
    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// The next JSON message (pings are skipped); panics after 60 s or on close.
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .expect("a message within 60 s")
                .expect("socket open")
                .expect("no socket error");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Close(c) => panic!("socket closed: {c:?}"),
                _ => continue,
            }
        }
    }

    /// Messages until the processing of one file ends (a `monitoring_update` whose
    /// status is success or error), that one included.
    pub async fn until_final(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let m = self.recv().await;
            let end = m["type"] == "monitoring_update"
                && (m["message"]["status"] == "success" || m["message"]["status"] == "error");
            out.push(m);
            if end {
                return out;
            }
        }
    }

    /// Requests URLs for `bytes`, PUTs them, and announces completion. Returns the
    /// `presigned_url_ready` message.
    pub async fn upload(
        &mut self,
        app: &TestApp,
        class: i64,
        field: i64,
        name: &str,
        bytes: &[u8],
    ) -> Value {
        self.send(json!({
            "type": "request_presigned_url",
            "temp_upload_id": format!("temp_{name}"),
            "file_name": name,
            "file_size": bytes.len(),
            "file_type": "application/zip",
            "object_class": class,
            "class_field": field,
        }))
        .await;
        let ready = self.recv().await;
        assert_eq!(ready["type"], "presigned_url_ready", "{ready}");
        let m = &ready["message"];
        if m["is_multipart"] == true {
            let chunk = m["chunk_size"].as_u64().unwrap() as usize;
            let mut parts = Vec::new();
            for p in m["part_urls"].as_array().unwrap() {
                let n = p["part"].as_u64().unwrap() as usize;
                let body = bytes[(n - 1) * chunk..(n * chunk).min(bytes.len())].to_vec();
                let r = app
                    .client
                    .put(p["url"].as_str().unwrap())
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                let etag = r.headers()["etag"].to_str().unwrap().to_string();
                parts.push(json!({ "part_number": n, "e_tag": etag }));
            }
            self.send(json!({ "type": "complete_multipart_upload", "upload_id": m["upload_id"], "parts": parts }))
                .await;
        } else {
            let r = app
                .client
                .put(m["presigned_url"].as_str().unwrap())
                .header("Content-Type", "application/zip")
                .body(bytes.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
            self.send(json!({ "type": "upload_complete", "upload_id": m["upload_id"], "s3_key": m["s3_key"] }))
                .await;
        }
        ready
    }
}

/// The clamd address for tests, if one answers; in CI a missing clamd is a failure.
pub async fn clamd_addr() -> Option<String> {
    let addr =
        std::env::var("INTAKE_TEST_CLAMD_ADDR").unwrap_or_else(|_| "tcp://127.0.0.1:3310".into());
    let scanner = intake::scan::ClamdScanner::from_addr(&addr).ok()?;
    use intake::scan::Scanner;
    match scanner.ping().await {
        Ok(()) => Some(addr),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("clamd must be reachable in CI at {addr} (run .ci/clamd.sh): {e}")
        }
        Err(e) => {
            eprintln!("skipping: clamd not reachable at {addr}: {e}");
            None
        }
    }
}
