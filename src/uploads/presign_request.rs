//! The fields of `request_presigned_url`, parsed and refused in the page's order
//! (`docs/PROTOCOL.md`): a well-formed request, not yet checked against the settings
//! and the upload (`presign::PresignRequest::check`).
//!
//! This file names of the crate only the files `fuzz/` compiles with it on its own
//! (`protocol.rs` for the errors, `checksums.rs` beside it), so that the parser is
//! fuzzed without building the service (`tests/architecture.rs` keeps it so).

use serde_json::{Map, Value};

use super::checksums::Checksums;
use crate::protocol::WsError;

/// The fields the page requires, in its order.
pub const REQUIRED: [&str; 7] = [
    "type",
    "temp_upload_id",
    "file_name",
    "file_size",
    "file_type",
    "object_class",
    "class_field",
];

/// The longest accepted `temp_upload_id` string, in bytes.
pub const MAX_TEMP_UPLOAD_ID_BYTES: usize = 255;
/// The longest accepted `file_name` (trimmed), in characters.
pub const MAX_FILE_NAME_CHARS: usize = 1024;

/// A well-formed `request_presigned_url`, not yet checked against the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignRequest {
    pub temp_upload_id: String,
    pub file_name: String,
    pub file_size: i64,
    pub file_type: String,
    pub object_class: i64,
    pub class_field: i64,
    /// The optional `checksums` extension (`uploads::checksums`).
    pub checksums: Option<Checksums>,
}

impl PresignRequest {
    /// Parses the message's fields, refusing in the page's order.
    pub fn parse(msg: &Map<String, Value>) -> Result<PresignRequest, WsError> {
        if REQUIRED.iter().any(|f| !msg.contains_key(*f)) {
            return Err(WsError::InvalidPayload);
        }
        for f in ["file_name", "file_size", "file_type"] {
            if msg[f].is_null() {
                return Err(WsError::NullField(f.into()));
            }
        }
        let temp_upload_id = match &msg["temp_upload_id"] {
            Value::String(s) if !s.is_empty() && s.len() <= MAX_TEMP_UPLOAD_ID_BYTES => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(WsError::InvalidPayload),
        };
        let text = |f: &str| {
            msg[f]
                .as_str()
                .map(|s| s.trim().to_string())
                .ok_or(WsError::InvalidPayload)
        };
        let file_name = text("file_name")?;
        let file_type = text("file_type")?;
        for (name, value) in [("file_name", &file_name), ("file_type", &file_type)] {
            if value.is_empty() {
                return Err(WsError::EmptyField(name.into()));
            }
        }
        if file_name.chars().count() > MAX_FILE_NAME_CHARS {
            return Err(WsError::InvalidPayload);
        }
        // An integer beyond i64 is still a size: too large, not malformed.
        let file_size = match &msg["file_size"] {
            Value::Number(n) if n.is_u64() && n.as_i64().is_none() => i64::MAX,
            v => v.as_i64().ok_or(WsError::InvalidPayload)?,
        };
        let checksums = match msg.get("checksums") {
            None | Some(Value::Null) => None,
            Some(v) if file_size > 0 => {
                Some(Checksums::parse(v, file_size as u64).map_err(WsError::InvalidChecksums)?)
            }
            // An empty file is refused as such by `check`.
            Some(_) => None,
        };
        Ok(PresignRequest {
            checksums,
            temp_upload_id,
            file_name,
            file_size,
            file_type,
            object_class: pk(&msg["object_class"]).ok_or(WsError::InvalidPayload)?,
            class_field: pk(&msg["class_field"]).ok_or(WsError::InvalidPayload)?,
        })
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
