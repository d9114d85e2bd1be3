//! One connected upload socket: reads client messages, answers them, and forwards
//! the upload's log (monitoring and progress) as it grows. Written against generic
//! `Sink`/`Stream` so that it does not care what carries the frames.

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{Map, Value, json};

use crate::db::uploads::{NewUploadFile, UploadFileRow, UploadRow};
use crate::domain::User;
use crate::http::AppState;
use crate::live::{self, current_state};
use crate::protocol::{
    CLIENT_TYPES, CLOSE_GOING_AWAY, CLOSE_TOO_BIG, PartUrl, PresignedUrlReady, WsError,
    monitoring_update,
};
use crate::store::StoreError;

/// The file types accepted as ZIP archives. Browsers on Windows report ZIPs as
/// `application/x-zip-compressed`; both mean the same bytes.
pub const ALLOWED_FILE_TYPES: [&str; 2] = ["application/zip", "application/x-zip-compressed"];

/// S3's limits on multipart uploads.
const MIN_PART: u64 = 5 * 1024 * 1024;
const MAX_PARTS: u64 = 10_000;
const DEFAULT_CHUNK: u64 = 16 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

/// How often the log is polled for messages written by other nodes.
const POLL: Duration = Duration::from_millis(500);

/// Chooses the chunk size: the configured one or 16 MiB, grown (in whole MiB) so
/// that there are at most 10,000 parts; never under 5 MiB.
pub fn chunk_size(file_size: u64, configured: Option<u64>) -> u64 {
    let base = configured.unwrap_or(DEFAULT_CHUNK).max(MIN_PART);
    let needed = file_size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    base.max(needed)
}

/// What a handled message asks the loop to do.
enum Outcome {
    Reply(Value),
    Nothing,
}

/// A connected socket.
pub struct Session {
    state: AppState,
    user: User,
    upload: UploadRow,
    last_log_id: i64,
}

impl Session {
    /// A session for `user` on `upload`.
    pub fn new(state: AppState, user: User, upload: UploadRow) -> Session {
        Session {
            state,
            user,
            upload,
            last_log_id: 0,
        }
    }

    /// Runs until the client leaves, an error closes the socket, or it idles out.
    pub async fn run<S, R>(mut self, mut sink: S, mut stream: R)
    where
        S: Sink<Message> + Unpin,
        R: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        if send_json(&mut sink, &crate::protocol::connection_established())
            .await
            .is_err()
        {
            return;
        }
        // A reconnecting client first gets the current state of its upload.
        match self
            .state
            .db
            .messages_after(&self.upload.id, 0, 100_000)
            .await
        {
            Ok(log) => {
                self.last_log_id = log.last().map_or(0, |(id, _)| *id);
                for (_, msg) in current_state(log) {
                    if send_json(&mut sink, &msg).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the upload log"),
        }

        let idle = Duration::from_secs(self.state.settings.ws_idle_timeout_secs.max(1));
        let mut ping = tokio::time::interval((idle / 3).max(Duration::from_millis(100)));
        ping.tick().await;
        let mut poll = tokio::time::interval(POLL);
        let mut wake = self.state.hub.subscribe();
        let mut last_seen = Instant::now();

        loop {
            tokio::select! {
                frame = stream.next() => {
                    last_seen = Instant::now();
                    match frame {
                        None | Some(Ok(Message::Close(_))) => break,
                        Some(Ok(Message::Text(text))) => match self.handle(text.as_str()).await {
                            Ok(Outcome::Reply(v)) => {
                                if send_json(&mut sink, &v).await.is_err() { break; }
                            }
                            Ok(Outcome::Nothing) => {}
                            Err(err) => {
                                // Deliver what the log holds first, so the client
                                // sees everything up to the failure.
                                let _ = self.forward_log(&mut sink).await;
                                close_with_error(&mut sink, &err).await;
                                break;
                            }
                        },
                        Some(Ok(Message::Binary(_))) => {
                            close_with_error(&mut sink, &WsError::InvalidPayload).await;
                            break;
                        }
                        Some(Ok(_)) => {} // ping/pong: liveness only
                        Some(Err(e)) => {
                            if is_too_big(&e) {
                                let _ = sink.send(Message::Close(Some(CloseFrame {
                                    code: CLOSE_TOO_BIG,
                                    reason: "Message too big".into(),
                                }))).await;
                            }
                            break;
                        }
                    }
                }
                changed = wake.changed() => {
                    if changed.is_err() || self.forward_log(&mut sink).await.is_err() { break; }
                }
                _ = poll.tick() => {
                    if self.forward_log(&mut sink).await.is_err() { break; }
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() > idle {
                        let _ = sink.send(Message::Close(Some(CloseFrame {
                            code: CLOSE_GOING_AWAY,
                            reason: "Idle timeout".into(),
                        }))).await;
                        break;
                    }
                    if sink.send(Message::Ping(Default::default())).await.is_err() { break; }
                }
            }
        }
        let _ = sink.close().await;
        tracing::info!(upload_id = %self.upload.id, "upload socket closed");
    }

    /// Sends the log entries appended since the last one sent.
    async fn forward_log<S: Sink<Message> + Unpin>(&mut self, sink: &mut S) -> Result<(), ()> {
        let entries = match self
            .state
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
        let value: Value = serde_json::from_str(text).map_err(|_| WsError::InvalidPayload)?;
        let Value::Object(msg) = value else {
            return Err(WsError::NotAnObject);
        };
        let kind = match msg.get("type") {
            None | Some(Value::Null) => return Err(WsError::InvalidPayload),
            Some(Value::String(s)) => s.clone(),
            Some(other) => return Err(WsError::TypeNotAllowed(other.to_string())),
        };
        // The upload may have finished (or expired) since the handshake.
        self.upload = self
            .state
            .db
            .upload_by_id(&self.upload.id)
            .await
            .map_err(|_| WsError::ServerError)?
            .ok_or(WsError::DoesNotExist)?;
        if self.upload.is_used_or_expired(crate::db::now_ms()) {
            return Err(WsError::InvalidUuid);
        }
        match kind.as_str() {
            "request_presigned_url" => self.request_presigned_url(&msg).await,
            "upload_complete" => self.upload_complete(&msg).await,
            "complete_multipart_upload" => self.complete_multipart(&msg).await,
            other => {
                debug_assert!(!CLIENT_TYPES.contains(&other));
                Err(WsError::TypeNotAllowed(other.to_string()))
            }
        }
    }

    async fn request_presigned_url(
        &mut self,
        msg: &Map<String, Value>,
    ) -> Result<Outcome, WsError> {
        const REQUIRED: [&str; 7] = [
            "type",
            "temp_upload_id",
            "file_name",
            "file_size",
            "file_type",
            "object_class",
            "class_field",
        ];
        if REQUIRED.iter().any(|f| !msg.contains_key(*f)) {
            return Err(WsError::InvalidPayload);
        }
        for f in ["file_name", "file_size", "file_type"] {
            if msg[f].is_null() {
                return Err(WsError::NullField(f.into()));
            }
        }
        let temp_upload_id = match &msg["temp_upload_id"] {
            Value::String(s) if !s.is_empty() && s.len() <= 255 => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(WsError::InvalidPayload),
        };
        let file_name = msg["file_name"]
            .as_str()
            .ok_or(WsError::InvalidPayload)?
            .trim()
            .to_string();
        let file_type = msg["file_type"]
            .as_str()
            .ok_or(WsError::InvalidPayload)?
            .trim()
            .to_string();
        if file_name.is_empty() {
            return Err(WsError::EmptyField("file_name".into()));
        }
        if file_type.is_empty() {
            return Err(WsError::EmptyField("file_type".into()));
        }
        if file_name.chars().count() > 1024 {
            return Err(WsError::InvalidPayload);
        }
        let file_size = msg["file_size"].as_i64().ok_or(WsError::InvalidPayload)?;
        let class = pk(&msg["object_class"]).ok_or(WsError::InvalidPayload)?;
        let field = pk(&msg["class_field"]).ok_or(WsError::InvalidPayload)?;

        if !ALLOWED_FILE_TYPES.contains(&file_type.to_ascii_lowercase().as_str()) {
            return Err(WsError::UnsupportedFileType {
                file_type,
                allowed: ALLOWED_FILE_TYPES.join(", "),
            });
        }
        if file_size <= 0 {
            return Err(WsError::FileEmpty);
        }
        let settings = &self.state.settings;
        if file_size as u64 > settings.max_upload_bytes() {
            return Err(WsError::FileTooLarge {
                limit_gb: settings.max_upload_gb,
            });
        }
        if class != self.upload.object_class_id || field != self.upload.class_field_id {
            return Err(WsError::DoesNotExist);
        }

        let size = file_size as u64;
        let session_id = uuid::Uuid::new_v4().to_string();
        // The key is the server's: never derived from the client's file name.
        let s3_key = format!("uploads/{}/{}.zip", self.upload.id, session_id);
        let store = &self.state.store;
        let ttl = Duration::from_secs(settings.presign_ttl_secs);
        let generation = |e: StoreError| {
            tracing::error!(error = %e, "presigning an upload");
            WsError::GenerationError
        };
        let reply = if size >= settings.multipart_threshold_bytes {
            let chunk = chunk_size(size, settings.multipart_chunk_bytes);
            let total_parts = size.div_ceil(chunk);
            let s3_upload_id = store
                .create_multipart(&s3_key, &file_type)
                .await
                .map_err(generation)?;
            let mut part_urls = Vec::with_capacity(total_parts as usize);
            for part in 1..=total_parts {
                let len = chunk.min(size - (part - 1) * chunk);
                let url = store
                    .presign_part(&s3_key, &s3_upload_id, part as i32, len, ttl)
                    .await
                    .map_err(generation)?;
                part_urls.push(PartUrl {
                    url,
                    part: part as i32,
                });
            }
            PresignedUrlReady {
                upload_id: session_id.clone(),
                temp_upload_id,
                presigned_url: None,
                fields: Map::new(),
                s3_key,
                is_multipart: true,
                part_urls,
                s3_upload_id: Some(s3_upload_id),
                chunk_size: Some(chunk),
                total_parts,
            }
        } else {
            let url = store
                .presign_put(&s3_key, size, &file_type, ttl)
                .await
                .map_err(generation)?;
            PresignedUrlReady {
                upload_id: session_id.clone(),
                temp_upload_id,
                presigned_url: Some(url),
                fields: Map::new(),
                s3_key,
                is_multipart: false,
                part_urls: Vec::new(),
                s3_upload_id: None,
                chunk_size: None,
                total_parts: 1,
            }
        };
        self.state
            .db
            .create_upload_file(&NewUploadFile {
                id: &session_id,
                upload_id: &self.upload.id,
                temp_upload_id: &reply.temp_upload_id,
                file_name: &file_name,
                file_size,
                file_type: &file_type,
                s3_key: &reply.s3_key,
                s3_upload_id: reply.s3_upload_id.as_deref(),
                chunk_size: reply.chunk_size.map(|c| c as i64),
                total_parts: reply.total_parts as i64,
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "recording an upload file");
                WsError::ServerError
            })?;
        tracing::info!(upload_id = %self.upload.id, session = %session_id, size, multipart = reply.is_multipart, "presigned upload issued");
        Ok(Outcome::Reply(reply.to_message()))
    }

    /// Finds the file session a completion message names: by its session id, or,
    /// when the client sent the transaction's upload id, by `s3_key`.
    async fn find_file(&self, id: &str, s3_key: Option<&str>) -> Result<UploadFileRow, WsError> {
        let db = &self.state.db;
        let server = |e: sqlx::Error| {
            tracing::error!(error = %e, "looking up an upload file");
            WsError::ServerError
        };
        let file = match db.upload_file_by_id(id).await.map_err(server)? {
            Some(f) => Some(f),
            None if id == self.upload.id => {
                let files = db.upload_files(&self.upload.id).await.map_err(server)?;
                files
                    .into_iter()
                    .find(|f| Some(f.s3_key.as_str()) == s3_key)
            }
            None => None,
        };
        match file {
            Some(f) if f.upload_id == self.upload.id => Ok(f),
            _ => Err(WsError::DoesNotExist),
        }
    }

    async fn upload_complete(&mut self, msg: &Map<String, Value>) -> Result<Outcome, WsError> {
        let id = msg
            .get("upload_id")
            .and_then(Value::as_str)
            .ok_or(WsError::InvalidPayload)?;
        let s3_key = msg
            .get("s3_key")
            .and_then(Value::as_str)
            .ok_or(WsError::InvalidPayload)?;
        let file = self.find_file(id, Some(s3_key)).await?;
        if file.s3_key != s3_key {
            return Err(WsError::DoesNotExist);
        }
        match file.state.as_str() {
            "pending" => {}
            "failed" => return Err(WsError::FileIncomplete),
            _ => return Ok(Outcome::Nothing), // already completed: nothing more to do
        }
        self.verify_object(&file).await?;
        self.enqueue(&file).await?;
        Ok(Outcome::Nothing)
    }

    async fn complete_multipart(&mut self, msg: &Map<String, Value>) -> Result<Outcome, WsError> {
        let parts = parse_parts(msg.get("parts")).ok_or(WsError::InvalidPayload)?;
        let file = match msg.get("upload_id") {
            Some(Value::String(id)) => self.find_file(id, None).await?,
            Some(_) => return Err(WsError::InvalidPayload),
            None => {
                let files = self
                    .state
                    .db
                    .upload_files(&self.upload.id)
                    .await
                    .map_err(|_| WsError::ServerError)?;
                let mut open: Vec<_> = files
                    .into_iter()
                    .filter(|f| f.is_multipart && f.state == "pending")
                    .collect();
                match open.len() {
                    0 => return Err(WsError::DoesNotExist),
                    1 => open.remove(0),
                    // Ambiguous: the client must say which with `upload_id`.
                    _ => return Err(WsError::InvalidPayload),
                }
            }
        };
        if !file.is_multipart {
            return Err(WsError::DoesNotExist);
        }
        match file.state.as_str() {
            "pending" => {}
            "failed" => return Err(WsError::S3FinalizeFailed),
            _ => return Ok(Outcome::Nothing),
        }
        // Every part must be named once: completing with a subset would make a
        // shorter object.
        let expected: Vec<i32> = (1..=file.total_parts as i32).collect();
        let numbers: Vec<i32> = parts.iter().map(|(n, _)| *n).collect();
        if numbers != expected {
            return Err(WsError::FileIncomplete);
        }
        let s3_upload_id = file.s3_upload_id.clone().ok_or(WsError::ServerError)?;
        if let Err(e) = self
            .state
            .store
            .complete_multipart(&file.s3_key, &s3_upload_id, &parts)
            .await
        {
            tracing::warn!(error = %e, upload_file = %file.id, "multipart completion failed");
            return Err(WsError::S3FinalizeFailed);
        }
        self.verify_object(&file).await?;
        self.enqueue(&file).await?;
        Ok(Outcome::Nothing)
    }

    /// The object must exist with exactly the declared size.
    async fn verify_object(&self, file: &UploadFileRow) -> Result<(), WsError> {
        match self.state.store.head(&file.s3_key).await {
            Ok(Some(meta)) if meta.size == file.file_size as u64 => Ok(()),
            Ok(_) => Err(WsError::FileIncomplete),
            Err(e) => {
                tracing::error!(error = %e, "checking an uploaded object");
                Err(WsError::ServerError)
            }
        }
    }

    /// Records the completion and its job in one transaction, then tells the client.
    async fn enqueue(&self, file: &UploadFileRow) -> Result<(), WsError> {
        let payload = json!({ "upload_file_id": file.id, "upload_id": self.upload.id }).to_string();
        let fresh = self
            .state
            .db
            .complete_upload_file(
                &file.id,
                &self.upload.id,
                &payload,
                crate::pipeline::MAX_ATTEMPTS,
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "enqueueing processing");
                WsError::ServerError
            })?;
        if fresh {
            let mut fields = Map::new();
            fields.insert("step_name".into(), json!("upload_complete"));
            fields.insert("upload_id".into(), json!(file.id));
            fields.insert("temp_upload_id".into(), json!(file.temp_upload_id));
            fields.insert("file_name".into(), json!(file.file_name));
            fields.insert("status".into(), json!("queued"));
            fields.insert("message".into(), json!("File received; processing queued"));
            let msg = monitoring_update(fields, 1);
            live::publish(&self.state.db, &self.state.hub, &self.upload.id, &msg)
                .await
                .map_err(|_| WsError::ServerError)?;
            self.state.wake_workers();
        }
        tracing::info!(upload_id = %self.upload.id, upload_file = %file.id, user_id = self.user.id, "upload completed; processing queued");
        Ok(())
    }
}

/// A primary key: an integer or a string of digits.
fn pk(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

/// `[{part_number, e_tag}]`, sorted by part number, without duplicates.
fn parse_parts(v: Option<&Value>) -> Option<Vec<(i32, String)>> {
    let arr = v?.as_array()?;
    if arr.is_empty() || arr.len() > MAX_PARTS as usize {
        return None;
    }
    let mut parts = Vec::with_capacity(arr.len());
    for p in arr {
        let n = p.get("part_number")?.as_i64()?;
        let tag = p.get("e_tag")?.as_str()?;
        if !(1..=MAX_PARTS as i64).contains(&n) || tag.is_empty() {
            return None;
        }
        parts.push((n as i32, tag.to_string()));
    }
    parts.sort_by_key(|(n, _)| *n);
    if parts.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    Some(parts)
}

async fn send_json<S: Sink<Message> + Unpin>(sink: &mut S, v: &Value) -> Result<(), ()> {
    sink.send(Message::Text(v.to_string().into()))
        .await
        .map_err(|_| ())
}

async fn close_with_error<S: Sink<Message> + Unpin>(sink: &mut S, err: &WsError) {
    let _ = send_json(sink, &err.to_message()).await;
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: err.close_code(),
            reason: "".into(),
        })))
        .await;
}

/// Whether a read error is tungstenite's "message too long".
fn is_too_big(e: &axum::Error) -> bool {
    let text = format!("{e:?} {e}");
    text.contains("Capacity") || text.contains("too long") || text.contains("Space limit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(100 * MIB, None), 16 * MIB);
        assert_eq!(chunk_size(100 * MIB, Some(5 * MIB)), 5 * MIB);
        assert_eq!(chunk_size(100 * MIB, Some(MIB)), 5 * MIB);
        // 5 TB needs bigger chunks to stay within 10,000 parts.
        let big = 5_000_000_000_000;
        let c = chunk_size(big, None);
        assert!(big.div_ceil(c) <= MAX_PARTS);
        assert_eq!(c % MIB, 0);
    }

    #[test]
    fn parts_parse() {
        let v = json!([{"part_number": 2, "e_tag": "b"}, {"part_number": 1, "e_tag": "a"}]);
        assert_eq!(
            parse_parts(Some(&v)),
            Some(vec![(1, "a".into()), (2, "b".into())])
        );
        assert_eq!(parse_parts(Some(&json!([]))), None);
        assert_eq!(parse_parts(Some(&json!([{"part_number": 1}]))), None);
        assert_eq!(
            parse_parts(Some(&json!([{"part_number": 0, "e_tag": "a"}]))),
            None
        );
        assert_eq!(
            parse_parts(Some(
                &json!([{"part_number": 1, "e_tag": "a"}, {"part_number": 1, "e_tag": "b"}])
            )),
            None
        );
        assert_eq!(parse_parts(None), None);
    }
}
