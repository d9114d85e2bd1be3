//! One connected upload socket: reads client messages, answers them, and forwards
//! the upload's log (monitoring and progress) as it grows. Written against generic
//! `Sink`/`Stream` so that it does not care what carries the frames.

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, SinkExt, Stream, StreamExt};
use serde_json::Value;

use crate::db::uploads::UploadRow;
use crate::live::current_state;
use crate::protocol::{
    CLIENT_TYPES, CLOSE_GOING_AWAY, CLOSE_TOO_BIG, ClientMessage, WsError, parse_client_message,
};
use crate::uploads::{Uploads, complete, presign};

/// How long a closing socket waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What a handled message asks the loop to do.
enum Outcome {
    Reply(Value),
    Nothing,
}

/// A connected socket.
pub struct Session {
    up: Uploads,
    upload: UploadRow,
    idle: Duration,
    last_log_id: i64,
}

impl Session {
    /// A session on `upload` (its owner was checked by the handshake) that closes
    /// after `idle` without a frame from the client. It reads its log when the hub
    /// wakes it (this node's writes at once; other nodes' through the bus; a lost
    /// wake-up through the node's one fallback poll, [`crate::live::poll_log`]).
    pub fn new(up: Uploads, upload: UploadRow, idle: Duration) -> Session {
        Session {
            up,
            upload,
            idle,
            last_log_id: 0,
        }
    }

    /// Runs until the client leaves, an error closes the socket, or it idles out.
    pub async fn run<S, R>(mut self, mut sink: S, mut stream: R)
    where
        S: Sink<Message> + Unpin,
        R: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        if self.greet(&mut sink).await.is_ok() {
            self.serve(&mut sink, &mut stream).await;
        }
        let _ = sink.close().await;
        // Read until the client answers the close (or leaves): dropping the
        // connection while its bytes are unread would reset it, and the client
        // could lose the close frame and its code.
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(frame)) = stream.next().await {
                if matches!(frame, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
        tracing::info!(upload_id = %self.upload.id, "upload socket closed");
    }

    /// `connection_established`, then, for a reconnecting client, the current
    /// state of its upload.
    async fn greet<S: Sink<Message> + Unpin>(&mut self, sink: &mut S) -> Result<(), ()> {
        send_json(sink, &crate::protocol::connection_established()).await?;
        match self.up.db.messages_after(&self.upload.id, 0, 100_000).await {
            Ok(log) => {
                self.last_log_id = log.last().map_or(0, |(id, _)| *id);
                for (_, msg) in current_state(log) {
                    send_json(sink, &msg).await?;
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the upload log"),
        }
        Ok(())
    }

    /// The loop: client frames, log growth (woken by the hub for this node's and,
    /// through the bus, other nodes' writes), and pings that also find idle
    /// clients. An idle socket holds one timer and one watch receiver, and costs
    /// nothing between pings.
    async fn serve<S, R>(&mut self, sink: &mut S, stream: &mut R)
    where
        S: Sink<Message> + Unpin,
        R: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        let idle = self.idle;
        let mut ping = tokio::time::interval((idle / 3).max(Duration::from_millis(100)));
        ping.tick().await;
        let mut wake = self.up.hub.subscribe(&self.upload.id);
        let mut last_seen = Instant::now();
        loop {
            let go_on = tokio::select! {
                frame = stream.next() => {
                    last_seen = Instant::now();
                    self.on_frame(sink, frame).await.is_ok()
                }
                changed = wake.changed() => {
                    changed.is_ok() && self.forward_log(sink).await.is_ok()
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() > idle {
                        close(sink, CLOSE_GOING_AWAY, "Idle timeout").await;
                        false
                    } else {
                        sink.send(Message::Ping(Default::default())).await.is_ok()
                    }
                }
            };
            if !go_on {
                return;
            }
        }
    }

    /// Answers one client frame; `Err` ends the session.
    async fn on_frame<S: Sink<Message> + Unpin>(
        &mut self,
        sink: &mut S,
        frame: Option<Result<Message, axum::Error>>,
    ) -> Result<(), ()> {
        match frame {
            None | Some(Ok(Message::Close(_))) => Err(()),
            Some(Ok(Message::Text(text))) if text.len() > crate::ws::MAX_MESSAGE_BYTES => {
                close(sink, CLOSE_TOO_BIG, "Message too big").await;
                Err(())
            }
            // Boxed: the handlers' futures (database and store calls) would otherwise
            // be part of every idle socket's task (docs/PERFORMANCE.md).
            Some(Ok(Message::Text(text))) => match Box::pin(self.handle(text.as_str())).await {
                Ok(Outcome::Reply(v)) => send_json(sink, &v).await,
                Ok(Outcome::Nothing) => Ok(()),
                Err(err) => {
                    // Deliver what the log holds first, so the client sees
                    // everything up to the failure.
                    let _ = self.forward_log(sink).await;
                    close_with_error(sink, &err).await;
                    Err(())
                }
            },
            Some(Ok(Message::Binary(_))) => {
                close_with_error(sink, &WsError::InvalidPayload).await;
                Err(())
            }
            Some(Ok(_)) => Ok(()), // ping/pong: liveness only
            Some(Err(e)) => {
                if is_too_big(&e) {
                    close(sink, CLOSE_TOO_BIG, "Message too big").await;
                }
                Err(())
            }
        }
    }

    /// Sends the log entries appended since the last one sent.
    async fn forward_log<S: Sink<Message> + Unpin>(&mut self, sink: &mut S) -> Result<(), ()> {
        let entries = match self
            .up
            .db
            .messages_after(&self.upload.id, self.last_log_id, 500)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "reading the upload log");
                return Ok(());
            }
        };
        for (id, text) in entries {
            self.last_log_id = id;
            sink.send(Message::Text(text.into()))
                .await
                .map_err(|_| ())?;
        }
        Ok(())
    }

    /// Parses and dispatches one client message.
    async fn handle(&mut self, text: &str) -> Result<Outcome, WsError> {
        let ClientMessage { kind, fields: msg } = parse_client_message(text)?;
        // The upload may have finished (or expired) since the handshake.
        self.upload = self
            .up
            .db
            .upload_by_id(&self.upload.id)
            .await
            .map_err(|_| WsError::ServerError)?
            .ok_or(WsError::DoesNotExist)?;
        if self.upload.is_used_or_expired(crate::db::now_ms()) {
            return Err(WsError::InvalidUuid);
        }
        let (up, upload) = (&self.up, &self.upload);
        match kind.as_str() {
            "request_presigned_url" => presign::presign(up, upload, &msg)
                .await
                .map(|reply| Outcome::Reply(reply.to_message())),
            "upload_complete" => complete::upload_complete(up, upload, &msg)
                .await
                .map(|()| Outcome::Nothing),
            "complete_multipart_upload" => complete::complete_multipart(up, upload, &msg)
                .await
                .map(|()| Outcome::Nothing),
            other => {
                debug_assert!(!CLIENT_TYPES.contains(&other));
                Err(WsError::TypeNotAllowed(other.to_string()))
            }
        }
    }
}

async fn send_json<S: Sink<Message> + Unpin>(sink: &mut S, v: &Value) -> Result<(), ()> {
    sink.send(Message::Text(v.to_string().into()))
        .await
        .map_err(|_| ())
}

async fn close_with_error<S: Sink<Message> + Unpin>(sink: &mut S, err: &WsError) {
    let _ = send_json(sink, &err.to_message()).await;
    close(sink, err.close_code(), "").await;
}

async fn close<S: Sink<Message> + Unpin>(sink: &mut S, code: u16, reason: &'static str) {
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

/// Whether a read error is tungstenite's "message too long" (the message or one
/// frame over [`crate::ws::TRANSPORT_MAX_BYTES`]).
fn is_too_big(e: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error};
    std::error::Error::source(e)
        .and_then(|inner| inner.downcast_ref::<Error>())
        .is_some_and(|inner| matches!(inner, Error::Capacity(CapacityError::MessageTooLong { .. })))
}
