//! The upload WebSocket: `GET /ws/object-records/uploads/<upload_id>/?uuid=<ticket>`.
//! The handshake checks run before the upgrade (a failure of the database there is
//! an HTTP 500); a refused handshake is still upgraded so that the client reads the
//! page's error message and the close code. The session itself is in `session`.

pub mod session;

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::auth::ticket_hash;
use crate::db::now_ms;
use crate::db::uploads::UploadRow;
use crate::domain::User;
use crate::live::SocketSlot;
use crate::protocol::WsError;
use crate::state::AppState;

/// Largest accepted client message (close 1009 beyond it).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// What the transport reads before giving up. Larger than [`MAX_MESSAGE_BYTES`] so
/// that a message somewhat over the limit is read whole and answered with close
/// 1009 (checked in the session): a transport that stops mid-message leaves unread
/// bytes, and closing a TCP socket with unread bytes sends a reset that destroys
/// the close frame on its way.
pub const TRANSPORT_MAX_BYTES: usize = 1024 * 1024;

/// The transport's read buffer at the start, grown to fit a bigger frame. The
/// default (128 KiB, allocated when the socket opens) was most of an idle socket's
/// memory; client messages are a few hundred bytes (docs/PERFORMANCE.md). Writes
/// go out as they are sent (`write_buffer_size(0)`): every send is flushed anyway.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;

/// The routes of this module: everything under `/ws/`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ws", get(entry_root))
        .route("/ws/", get(entry_root))
        .route("/ws/{*path}", get(entry))
}

/// What the handshake decided.
enum Handshake {
    Accept {
        user: User,
        upload: UploadRow,
        slot: SocketSlot,
    },
    Refuse(WsError),
}

/// The `<upload_id>` of `object-records/uploads/<upload_id>/` (trailing slash optional).
fn parse_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("object-records/uploads/")?;
    let id = rest.strip_suffix('/').unwrap_or(rest);
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

async fn handshake(
    state: &AppState,
    path: &str,
    ticket: Option<&str>,
) -> Result<Handshake, sqlx::Error> {
    let Some(raw_id) = parse_path(path) else {
        return Ok(Handshake::Refuse(WsError::IncorrectUrl));
    };
    // The ticket first: a caller without one learns nothing about uploads.
    let user = match ticket.filter(|t| !t.is_empty()) {
        Some(t) => state.db.consume_ticket(&ticket_hash(t)).await?,
        None => None,
    };
    let Some(user) = user else {
        return Ok(Handshake::Refuse(WsError::InvalidUuid));
    };
    let Ok(upload_id) = uuid::Uuid::parse_str(raw_id) else {
        return Ok(Handshake::Refuse(WsError::InvalidUuid));
    };
    let upload = match state.db.upload_by_id(&upload_id.to_string()).await? {
        Some(u) if u.creator_id == user.id => u,
        _ => return Ok(Handshake::Refuse(WsError::DoesNotExist)),
    };
    if upload.is_used_or_expired(now_ms()) {
        return Ok(Handshake::Refuse(WsError::InvalidUuid));
    }
    let Some(slot) = state
        .sockets
        .acquire(user.id, state.settings.socket.max_sockets_per_user)
        .await?
    else {
        return Ok(Handshake::Refuse(WsError::TooManyConnections));
    };
    Ok(Handshake::Accept { user, upload, slot })
}

fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let allowed = &state.settings.socket.allowed_origins;
    match headers.get(axum::http::header::ORIGIN) {
        // Non-browser clients send no Origin; cross-site WebSocket hijacking is a
        // browser attack, and browsers always send it.
        None => true,
        Some(_) if allowed.is_empty() => true,
        Some(origin) => origin
            .to_str()
            .is_ok_and(|o| allowed.iter().any(|a| a == o || a == "*")),
    }
}

async fn entry_root(state: State<AppState>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    entry(
        state,
        Path(String::new()),
        Query(HashMap::new()),
        headers,
        ws,
    )
    .await
}

async fn entry(
    State(state): State<AppState>,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&state, &headers) {
        return (StatusCode::FORBIDDEN, "Origin not allowed").into_response();
    }
    let decision = match handshake(&state, &path, query.get("uuid").map(String::as_str)).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "upload socket handshake failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let ws = ws
        .max_message_size(TRANSPORT_MAX_BYTES)
        .max_frame_size(TRANSPORT_MAX_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0);
    match decision {
        Handshake::Refuse(err) => ws.on_upgrade(move |socket| refuse(socket, err)),
        Handshake::Accept { user, upload, slot } => ws.on_upgrade(move |socket| async move {
            tracing::info!(upload_id = %upload.id, user_id = user.id, "upload socket connected");
            let (sink, stream) = futures::StreamExt::split(socket);
            let idle = state
                .settings
                .socket
                .idle_timeout
                .max(Duration::from_secs(1));
            session::Session::new(state.uploads.clone(), upload, idle)
                .run(sink, stream)
                .await;
            drop(slot);
        }),
    }
}

/// Sends the error message and closes.
async fn refuse(mut socket: WebSocket, err: WsError) {
    let _ = socket
        .send(Message::Text(err.to_message().to_string().into()))
        .await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: err.close_code(),
            reason: "".into(),
        })))
        .await;
}

#[cfg(test)]
mod tests {
    use super::parse_path;

    #[test]
    fn paths() {
        assert_eq!(parse_path("object-records/uploads/abc/"), Some("abc"));
        assert_eq!(parse_path("object-records/uploads/abc"), Some("abc"));
        assert_eq!(parse_path("object-records/uploads/"), None);
        assert_eq!(parse_path("object-records/uploads/a/b/"), None);
        assert_eq!(parse_path("object-records/other/abc/"), None);
        assert_eq!(parse_path(""), None);
    }
}
