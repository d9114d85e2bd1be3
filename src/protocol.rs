//! The upload WebSocket's wire contract (`shared/seeds/000_42432367509e1fbe.txt`):
//! server message shapes, the parsing of client messages and the error table, in one
//! place. Every error code, detail text (typographic quotes included) and close code
//! lives here.
//!
//! This file imports nothing of the crate (only serde, serde_json, chrono and
//! thiserror): `fuzz/` compiles it on its own to fuzz the client-message parser
//! without building the service (`tests/architecture.rs` keeps it so).

use serde::Serialize;
use serde_json::{Map, Value, json};

/// The client message types the socket accepts, in the order of the page.
pub const CLIENT_TYPES: [&str; 3] = [
    "request_presigned_url",
    "upload_complete",
    "complete_multipart_upload",
];

/// The detail of `ERR_INVALID_PAYLOAD`, verbatim from the page.
pub const INVALID_PAYLOAD_DETAIL: &str = "Required fields: type, temp_upload_id, file_name, file_size, file_type, object_class, class_field";

/// Close code sent after every error row of the page.
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code for a message over the size limit (RFC 6455).
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for an idle connection (RFC 6455 "going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a refused connection beyond the per-user cap (RFC 6455 "policy violation").
pub const CLOSE_POLICY: u16 = 1008;

/// Every error the socket reports. The first fifteen are the page's table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// Any path under `/ws/` other than the upload socket.
    #[error("incorrect url")]
    IncorrectUrl,
    /// `upload_id` not a UUID, or the upload is used or expired; also a missing,
    /// unknown, used or expired ticket (`?uuid=`).
    #[error("invalid uuid")]
    InvalidUuid,
    /// The upload does not exist, is not the ticket user's, or a message names a
    /// file session, class or field that is not this upload's.
    #[error("does not exist")]
    DoesNotExist,
    /// `file_type` is not an accepted ZIP type.
    #[error("unsupported file type {file_type}")]
    UnsupportedFileType { file_type: String, allowed: String },
    /// Not JSON, or required fields missing or of the wrong type.
    #[error("invalid payload")]
    InvalidPayload,
    /// `file_size` over the limit.
    #[error("file too large")]
    FileTooLarge { limit_gb: u64 },
    /// `file_size` ≤ 0.
    #[error("file empty")]
    FileEmpty,
    /// `file_name`, `file_size` or `file_type` is null.
    #[error("null field {0}")]
    NullField(String),
    /// `file_name` or `file_type` is an empty string.
    #[error("empty field {0}")]
    EmptyField(String),
    /// Anything unexpected while initialising an upload.
    #[error("server error")]
    ServerError,
    /// S3 refused to create a presigned URL or multipart upload.
    #[error("presigned URL generation failed")]
    GenerationError,
    /// An unknown `type`.
    #[error("type {0} not allowed")]
    TypeNotAllowed(String),
    /// JSON that is not an object.
    #[error("not an object")]
    NotAnObject,
    /// CompleteMultipartUpload failed.
    #[error("multipart finalisation failed")]
    S3FinalizeFailed,
    /// Completion announced but the object is missing or of the wrong size.
    #[error("file incomplete")]
    FileIncomplete,
    /// More sockets than `INTAKE_MAX_SOCKETS_PER_USER` (not on the page; documented).
    #[error("too many connections")]
    TooManyConnections,
    /// The `checksums` extension of `request_presigned_url` is malformed (not on
    /// the page; documented): what is wrong.
    #[error("invalid checksums: {0}")]
    InvalidChecksums(String),
}

impl WsError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            WsError::IncorrectUrl => "ERR_INCORRECT_URL",
            WsError::InvalidUuid => "ERR_INVALID_UUID",
            WsError::DoesNotExist => "ERR_DOES_NOT_EXIST",
            WsError::UnsupportedFileType { .. } => "ERR_UNSUPPORTED_FILE_TYPE",
            WsError::InvalidPayload => "ERR_INVALID_PAYLOAD",
            WsError::FileTooLarge { .. } => "ERR_FILE_TOO_LARGE",
            WsError::FileEmpty => "ERR_FILE_EMPTY",
            WsError::NullField(_) | WsError::EmptyField(_) => "ERR_NULL_FIELD",
            WsError::ServerError => "ERR_SERVER_ERROR",
            WsError::GenerationError => "ERR_GENERATION_ERROR",
            WsError::TypeNotAllowed(_) | WsError::NotAnObject => "ERR_INVALID_TYPE",
            WsError::S3FinalizeFailed => "ERR_S3_FINALIZE_FAILED",
            WsError::FileIncomplete => "ERR_FILE_INCOMPLETE",
            WsError::TooManyConnections => "ERR_TOO_MANY_CONNECTIONS",
            WsError::InvalidChecksums(_) => "ERR_INVALID_CHECKSUMS",
        }
    }

    /// The human-readable detail, exactly as the page writes it (a name echoed in
    /// it shortened: see [`fit_error_text`]).
    pub fn detail(&self) -> String {
        fit_error_text(&self.full_detail())
    }

    fn full_detail(&self) -> String {
        match self {
            WsError::IncorrectUrl => "Incorrect WebSocket URL.".into(),
            WsError::InvalidUuid => "A valid UUID is required.".into(),
            WsError::DoesNotExist => "Not found.".into(),
            WsError::UnsupportedFileType { file_type, allowed } => format!(
                "File extension \u{201c}{file_type}\u{201d} is not allowed. Allowed extensions are: {allowed}."
            ),
            WsError::InvalidPayload => INVALID_PAYLOAD_DETAIL.into(),
            WsError::FileTooLarge { limit_gb } => format!("Max file size is {limit_gb} GB."),
            WsError::FileEmpty => "File size must be larger than 0.".into(),
            WsError::NullField(f) => format!("Field \u{201c}{f}\u{201d} may not be null."),
            WsError::EmptyField(f) => format!("Field \u{201c}{f}\u{201d} may not be empty."),
            WsError::ServerError => {
                "Upload could not be initialized. Please try again later.".into()
            }
            WsError::GenerationError => "Failed to generate presigned URL".into(),
            WsError::TypeNotAllowed(t) => format!(
                "Type \u{201c}{t}\u{201d} is not allowed. Allowed types are: [{}].",
                CLIENT_TYPES.join(", ")
            ),
            WsError::NotAnObject => "Invalid message type. Expected a JSON object.".into(),
            WsError::S3FinalizeFailed => {
                "Could not finalize multipart upload. Please try again later.".into()
            }
            WsError::FileIncomplete => {
                "Upload has not yet completed or file is not available.".into()
            }
            WsError::TooManyConnections => "Too many open upload connections.".into(),
            WsError::InvalidChecksums(why) => format!("Invalid checksums: {why}."),
        }
    }

    /// The close code that follows the error message.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::TooManyConnections => CLOSE_POLICY,
            _ => CLOSE_NORMAL,
        }
    }

    /// The error message: `{"type": "error", "error_code": …, "detail": …}`.
    pub fn to_message(&self) -> Value {
        json!({ "type": "error", "error_code": self.code(), "detail": self.detail() })
    }
}

/// The longest error text (`detail`, a failure's `message`) sent to a client, bytes.
pub const MAX_ERROR_TEXT: usize = 1024;
/// The longest name kept whole inside an error text, bytes.
const MAX_QUOTED: usize = 160;

/// `text` made fit for a client: each quoted part (`"…"`, `“…”`: a name, a type)
/// longer than 160 bytes keeps its start and end around a `…`, and the whole is
/// at most [`MAX_ERROR_TEXT`] bytes. Names in archives may be 64 KiB long; an error
/// text that repeats one is unreadable and bloats every log it goes to.
pub fn fit_error_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_ERROR_TEXT));
    let mut rest = text;
    while let Some(at) = rest.find(['"', '\u{201c}']) {
        let open = rest[at..].chars().next().unwrap_or('"');
        let close = if open == '"' { '"' } else { '\u{201d}' };
        out.push_str(&rest[..at + open.len_utf8()]);
        let body = &rest[at + open.len_utf8()..];
        let Some(end) = closing_quote(body, close) else {
            rest = body;
            break;
        };
        out.push_str(&elide(&body[..end], MAX_QUOTED));
        out.push(close);
        rest = &body[end + close.len_utf8()..];
    }
    out.push_str(rest);
    elide_end(out, MAX_ERROR_TEXT)
}

/// Where `close` ends the quoted part `body` (a `\"` inside Rust's debug quoting
/// does not end it).
fn closing_quote(body: &str, close: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            '\\' if close == '"' => escaped = !escaped,
            c if c == close && !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

/// The largest char boundary of `s` at or below `i`.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `s` at most `max` bytes: its first two thirds and last third around `…`.
fn elide(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let keep = max - '…'.len_utf8();
    let head = floor_boundary(s, keep * 2 / 3);
    let mut tail = s.len() - (keep - head);
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}…{}", &s[..head], &s[tail..])
}

/// `s` cut to at most `max` bytes, ending in `…` when cut.
fn elide_end(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let end = floor_boundary(&s, max - '…'.len_utf8());
    format!("{}…", &s[..end])
}

/// A client message with a string `type`, not yet known to be one of [`CLIENT_TYPES`]
/// (an unknown type is refused after the upload is re-read, as the socket does).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientMessage {
    /// The `type` field.
    pub kind: String,
    /// The whole message, `type` included.
    pub fields: Map<String, Value>,
}

/// Parses one text frame: JSON, an object, with a string `type`.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, WsError> {
    let value: Value = serde_json::from_str(text).map_err(|_| WsError::InvalidPayload)?;
    let Value::Object(fields) = value else {
        return Err(WsError::NotAnObject);
    };
    let kind = match fields.get("type") {
        None | Some(Value::Null) => return Err(WsError::InvalidPayload),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(WsError::TypeNotAllowed(other.to_string())),
    };
    Ok(ClientMessage { kind, fields })
}

/// The most parts S3 accepts in one multipart upload.
pub const MAX_PARTS: u64 = 10_000;

/// The `parts` of `complete_multipart_upload`: `[{part_number, e_tag}]`, sorted by
/// part number, without duplicates.
pub fn parse_parts(v: Option<&Value>) -> Option<Vec<(i32, String)>> {
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

/// `connection_established`.
pub fn connection_established() -> Value {
    json!({ "type": "connection_established", "message": "WebSocket connected successfully" })
}

/// One presigned part URL of a multipart upload.
#[derive(Debug, Clone, Serialize)]
pub struct PartUrl {
    pub url: String,
    pub part: i32,
}

/// The `message` of `presigned_url_ready`.
#[derive(Debug, Clone, Serialize)]
pub struct PresignedUrlReady {
    pub upload_id: String,
    pub temp_upload_id: String,
    pub presigned_url: Option<String>,
    pub fields: Map<String, Value>,
    pub s3_key: String,
    pub is_multipart: bool,
    pub part_urls: Vec<PartUrl>,
    pub s3_upload_id: Option<String>,
    pub chunk_size: Option<u64>,
    pub total_parts: u64,
    /// Extension: the algorithm of the client's `checksums` when the URLs are
    /// bound to them (send `x-amz-checksum-<algorithm>` with each PUT); absent
    /// otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<&'static str>,
}

impl PresignedUrlReady {
    /// The whole server message.
    pub fn to_message(&self) -> Value {
        json!({ "type": "presigned_url_ready", "message": self })
    }
}

/// The current time as the page's ISO 8601 timestamps (`…T06:18:51.325683+00:00`).
pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

/// A `progress_update` message.
pub fn progress_update(
    step_name: &str,
    upload_id: &str,
    is_complete: bool,
    total_count: u64,
    progress_count: u64,
) -> Value {
    json!({
        "type": "progress_update",
        "message": {
            "step_name": step_name,
            "upload_id": upload_id,
            "is_complete": is_complete,
            "total_count": total_count,
            "progress_count": progress_count,
            "timestamp": timestamp(),
        }
    })
}

/// A `monitoring_update` message from its fields (`attempt` and `timestamp` added).
pub fn monitoring_update(mut fields: Map<String, Value>, attempt: u64) -> Value {
    fields.insert("attempt".into(), json!(attempt));
    fields.insert("timestamp".into(), json!(timestamp()));
    json!({ "type": "monitoring_update", "message": fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_match_the_page() {
        assert_eq!(
            WsError::UnsupportedFileType {
                file_type: "text/plain".into(),
                allowed: "application/zip".into()
            }
            .detail(),
            "File extension “text/plain” is not allowed. Allowed extensions are: application/zip."
        );
        assert_eq!(
            WsError::NullField("file_name".into()).detail(),
            "Field “file_name” may not be null."
        );
        assert_eq!(
            WsError::EmptyField("file_type".into()).detail(),
            "Field “file_type” may not be empty."
        );
        assert_eq!(
            WsError::TypeNotAllowed("x".into()).detail(),
            "Type “x” is not allowed. Allowed types are: [request_presigned_url, upload_complete, complete_multipart_upload]."
        );
        assert_eq!(
            WsError::FileTooLarge { limit_gb: 5 }.detail(),
            "Max file size is 5 GB."
        );
    }

    #[test]
    fn error_texts_shorten_names_and_stay_under_1_kib() {
        let name = "n".repeat(10_000);
        let text = fit_error_text(&format!("entry {name:?} has an unsafe name: it has .."));
        assert!(text.len() <= 200, "{}", text.len());
        assert!(text.starts_with("entry \"nnn"), "{text}");
        assert!(
            text.ends_with("nnn\" has an unsafe name: it has .."),
            "{text}"
        );
        assert!(text.contains('…'));
        // Short names stay whole, escapes and all.
        let short = "entry \"a\\\"b\" is fine";
        assert_eq!(fit_error_text(short), short);
        // Many names, or none quoted: the whole is cut at 1 KiB on a char boundary.
        let many = "“é”".repeat(2_000);
        assert!(fit_error_text(&many).len() <= MAX_ERROR_TEXT);
        let plain = "é".repeat(3_000);
        let cut = fit_error_text(&plain);
        assert!(cut.len() <= MAX_ERROR_TEXT && cut.ends_with('…'));
        let long_type = WsError::UnsupportedFileType {
            file_type: "x".repeat(70_000),
            allowed: "application/zip".into(),
        };
        assert!(
            long_type.detail().len() <= 400,
            "{}",
            long_type.detail().len()
        );
    }

    #[test]
    fn client_messages_are_refused_in_the_socket_order() {
        assert_eq!(parse_client_message("{"), Err(WsError::InvalidPayload));
        assert_eq!(parse_client_message("[1]"), Err(WsError::NotAnObject));
        assert_eq!(parse_client_message("{}"), Err(WsError::InvalidPayload));
        assert_eq!(
            parse_client_message(r#"{"type": null}"#),
            Err(WsError::InvalidPayload)
        );
        assert_eq!(
            parse_client_message(r#"{"type": 5}"#),
            Err(WsError::TypeNotAllowed("5".into()))
        );
        let m = parse_client_message(r#"{"type": "nope", "x": 1}"#).unwrap();
        assert_eq!(m.kind, "nope");
        assert_eq!(m.fields["x"], json!(1));
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
