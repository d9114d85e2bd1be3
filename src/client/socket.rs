//! The client side of the upload socket: connect with a ticket, send JSON, read the
//! server's messages. Reading also answers the server's pings, so the caller keeps
//! reading while it does other work (the part PUTs) to stay connected.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::ClientError;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Time allowed to open the socket and read its greeting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection that hears nothing at all (not even a ping) this long is taken as
/// dropped. The server pings every third of its idle timeout (2 minutes by default).
pub const SILENCE: Duration = Duration::from_secs(300);

/// What the socket said next.
#[derive(Debug)]
pub enum Event {
    /// A server message other than an error.
    Message(Value),
    /// `{"type": "error", …}`: the server closes after it.
    Error { code: String, detail: String },
    /// The connection ended without an error message.
    Dropped(String),
}

/// A connected upload socket.
pub struct Socket {
    ws: Ws,
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered with an error message (e.g. `ERR_INVALID_UUID`).
    Refused { code: String, detail: String },
    /// The server could not be reached or did not finish the handshake.
    Unreachable(String),
}

impl From<ConnectError> for ClientError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Refused { code, detail } => ClientError::Server { code, detail },
            ConnectError::Unreachable(d) => ClientError::Connection(d),
        }
    }
}

/// `ws[s]://host/ws/object-records/uploads/<upload_id>/?uuid=<ticket>` for `base`.
pub fn socket_url(base: &url::Url, upload_id: &str, ticket: &str) -> url::Url {
    let mut url = base.clone();
    let scheme = if base.scheme() == "https" {
        "wss"
    } else {
        "ws"
    };
    // http→ws and https→wss are always allowed by `set_scheme`.
    let _ = url.set_scheme(scheme);
    url.set_path(&format!("/ws/object-records/uploads/{upload_id}/"));
    url.set_query(None);
    url.query_pairs_mut().append_pair("uuid", ticket);
    url
}

impl Socket {
    /// Connects and reads `connection_established`.
    pub async fn connect(url: &url::Url) -> Result<Socket, ConnectError> {
        install_crypto_provider();
        let connect = tokio_tungstenite::connect_async(url.as_str());
        let (ws, _) = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(ConnectError::Unreachable(super::error_chain(&e))),
            Err(_) => {
                return Err(ConnectError::Unreachable(
                    "timed out opening the upload socket".into(),
                ));
            }
        };
        let mut socket = Socket { ws };
        match socket.next_within(CONNECT_TIMEOUT).await {
            Event::Message(v) if v["type"] == "connection_established" => Ok(socket),
            Event::Message(v) => Err(ConnectError::Unreachable(format!(
                "unexpected greeting from the upload socket: {v}"
            ))),
            Event::Error { code, detail } => Err(ConnectError::Refused { code, detail }),
            Event::Dropped(why) => Err(ConnectError::Unreachable(why)),
        }
    }

    /// Sends one JSON message; false when the connection is gone.
    pub async fn send(&mut self, v: &Value) -> bool {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .is_ok()
    }

    /// The next server message; `Dropped` after [`SILENCE`] without any frame.
    pub async fn next(&mut self) -> Event {
        self.next_within(SILENCE).await
    }

    async fn next_within(&mut self, silence: Duration) -> Event {
        loop {
            let frame = match tokio::time::timeout(silence, self.ws.next()).await {
                Err(_) => return Event::Dropped(format!("no word from the server in {silence:?}")),
                Ok(None) => return Event::Dropped("the connection closed".into()),
                Ok(Some(Err(e))) => return Event::Dropped(super::error_chain(&e)),
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                Message::Text(text) => {
                    let Ok(v) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    if v["type"] == "error" {
                        return Event::Error {
                            code: v["error_code"].as_str().unwrap_or("ERR_UNKNOWN").into(),
                            detail: v["detail"].as_str().unwrap_or_default().into(),
                        };
                    }
                    return Event::Message(v);
                }
                Message::Close(frame) => {
                    return Event::Dropped(match frame {
                        Some(f) => format!("closed by the server ({})", u16::from(f.code)),
                        None => "closed by the server".into(),
                    });
                }
                // Pings are answered by the library as it reads.
                _ => continue,
            }
        }
    }

    /// Closes politely (best effort).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

/// rustls needs one process-wide crypto provider for `wss://`; the dependency tree
/// enables more than one, so choose explicitly (once).
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_urls() {
        let base = url::Url::parse("https://records.example.com/anything?x=1").unwrap();
        assert_eq!(
            socket_url(&base, "abc", "t k").as_str(),
            "wss://records.example.com/ws/object-records/uploads/abc/?uuid=t+k"
        );
        let base = url::Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            socket_url(&base, "abc", "t").as_str(),
            "ws://127.0.0.1:8080/ws/object-records/uploads/abc/?uuid=t"
        );
    }
}
