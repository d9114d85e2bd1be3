//! The one test client for the upload socket (tokio-tungstenite over a real
//! connection): connect with a fresh ticket, send and receive JSON, check the
//! page's error rows and close codes, and upload files like a browser would (the
//! bytes PUT by a plain HTTP client to the presigned URLs).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::TestApp;

/// Longest wait for the handshake or any one server message (generous: CI machines
/// are shared, and a message may wait for a scan).
pub const WAIT: Duration = Duration::from_secs(60);

/// The socket path of an upload.
pub fn socket_path(upload: &str) -> String {
    format!("/ws/object-records/uploads/{upload}/")
}

/// A connected upload socket.
pub struct Socket {
    /// The connection itself, for tests about frames (pings, binary, closing).
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Socket {
    /// Upgrades `path_and_query`; `Err(status)` when refused at the HTTP level.
    pub async fn try_open(
        app: &TestApp,
        path_and_query: &str,
        origin: Option<&str>,
    ) -> Result<Socket, u16> {
        let mut req = format!("{}{path_and_query}", app.ws_base())
            .into_client_request()
            .unwrap();
        if let Some(origin) = origin {
            req.headers_mut().insert("Origin", origin.parse().unwrap());
        }
        let result = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("handshake in time");
        match result {
            Ok((ws, resp)) => {
                assert_eq!(resp.status(), 101);
                Ok(Socket { ws })
            }
            Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("handshake failed: {e}"),
        }
    }

    /// Upgrades `path_and_query`, before any message is read.
    pub async fn open(app: &TestApp, path_and_query: &str) -> Socket {
        match Self::try_open(app, path_and_query, None).await {
            Ok(socket) => socket,
            Err(status) => panic!("handshake refused with HTTP {status}"),
        }
    }

    /// A socket on `upload` with a fresh ticket of `token`, before any message is read.
    pub async fn open_upload(app: &TestApp, token: &str, upload: &str) -> Socket {
        let ticket = app.ticket(token).await;
        Self::open(app, &format!("{}?uuid={ticket}", socket_path(upload))).await
    }

    /// A socket on `upload` with a fresh ticket of `token`, past the
    /// `connection_established` it must start with.
    pub async fn connect(app: &TestApp, token: &str, upload: &str) -> Socket {
        let mut socket = Self::open_upload(app, token, upload).await;
        socket.expect_established().await;
        socket
    }

    /// The next data or close frame; pings and pongs are liveness only. `None` once
    /// the connection is gone.
    pub async fn next_frame(&mut self) -> Option<Message> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
            {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => return Some(m),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next message, which must be JSON text.
    pub async fn recv(&mut self) -> Value {
        match self.next_frame().await {
            Some(Message::Text(t)) => serde_json::from_str(t.as_str()).expect("server sends JSON"),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Sends a JSON message.
    pub async fn send(&mut self, v: &Value) {
        self.send_text(&v.to_string()).await;
    }

    /// Sends a text frame, JSON or not.
    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(Message::text(text)).await;
    }

    /// Sends any frame.
    pub async fn send_frame(&mut self, frame: Message) {
        self.ws.send(frame).await.unwrap();
    }

    /// Starts the closing handshake from the client's side.
    pub async fn close(&mut self) {
        self.ws.close(None).await.unwrap();
    }

    /// The next frame is a Close with `code`, and nothing follows it.
    pub async fn expect_close(&mut self, code: u16) {
        match self.next_frame().await {
            Some(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), code, "close code")
            }
            other => panic!("expected a close frame with code {code}, got {other:?}"),
        }
        assert!(
            self.next_frame().await.is_none(),
            "nothing after the close frame"
        );
    }

    /// The page's error message, exactly, then close 1000.
    pub async fn expect_error(&mut self, code: &str, detail: &str) {
        assert_eq!(
            self.recv().await,
            json!({ "type": "error", "error_code": code, "detail": detail })
        );
        self.expect_close(1000).await;
    }

    /// The page's greeting, exactly.
    pub async fn expect_established(&mut self) {
        assert_eq!(
            self.recv().await,
            json!({ "type": "connection_established", "message": "WebSocket connected successfully" })
        );
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
        self.send(&json!({
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
            let tags = put_parts(app, m, bytes).await;
            self.send(&json!({ "type": "complete_multipart_upload", "upload_id": m["upload_id"], "parts": parts_json(&tags) }))
                .await;
        } else {
            let url = m["presigned_url"].as_str().unwrap();
            let r = put(app, url, bytes.to_vec(), Some("application/zip")).await;
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
            self.send(&json!({ "type": "upload_complete", "upload_id": m["upload_id"], "s3_key": m["s3_key"] }))
                .await;
        }
        ready
    }
}

/// A plain HTTP PUT to a presigned URL; `Content-Length` is the body's.
pub async fn put(
    app: &TestApp,
    url: &str,
    body: Vec<u8>,
    content_type: Option<&str>,
) -> reqwest::Response {
    let mut req = app.client.put(url).body(body);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    req.send().await.unwrap()
}

/// PUTs each chunk of `data` to its part URL of the `presigned_url_ready` message
/// `ready`; the `(part_number, e_tag)` list.
pub async fn put_parts(app: &TestApp, ready: &Value, data: &[u8]) -> Vec<(i64, String)> {
    let chunk = ready["chunk_size"].as_u64().unwrap() as usize;
    let mut tags = Vec::new();
    for (i, part) in ready["part_urls"].as_array().unwrap().iter().enumerate() {
        assert_eq!(part["part"], json!(i + 1));
        let slice = data[i * chunk..data.len().min((i + 1) * chunk)].to_vec();
        let r = put(app, part["url"].as_str().unwrap(), slice, None).await;
        assert_eq!(r.status(), 200, "part {}", i + 1);
        let tag = r.headers()["etag"].to_str().unwrap().to_string();
        tags.push(((i + 1) as i64, tag));
    }
    tags
}

/// The `parts` of a `complete_multipart_upload`.
pub fn parts_json(tags: &[(i64, String)]) -> Value {
    Value::Array(
        tags.iter()
            .map(|(n, t)| json!({ "part_number": n, "e_tag": t }))
            .collect(),
    )
}
