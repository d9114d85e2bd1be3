//! History events as they arrive: an Amazon EventBridge envelope whose `detail` is
//! the event, parsed once into a [`NewEvent`].
//!
//! ```json
//! {"version": "0", "id": "…", "detail-type": "…", "source": "…", "account": "…",
//!  "time": "…", "region": "…", "resources": [],
//!  "detail": {"event_id": "<uuid>", "event_time": "<RFC 3339>", "event_type_id": …,
//!             "record_id": …, "source_id": …, "source_type_id": …,
//!             "event_data": [ …, {"file_id": "<uuid>"}, … ]}}
//! ```
//!
//! An event references an uploaded file through an `event_data` item that is an
//! object with a `file_id` key (other keys of that item are kept and ignored); at
//! most one item may do so. The ids (`event_type_id`, `record_id`, `source_id`,
//! `source_type_id`) may be strings or integers; they are compared as text.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::HistoryError;

/// Longest accepted id value (as text).
pub const MAX_ID_CHARS: usize = 255;

/// A validated event.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// `detail.event_id`.
    pub event_id: Uuid,
    /// `detail.event_time` in epoch milliseconds.
    pub event_time_ms: i64,
    /// `detail.event_type_id` as text.
    pub event_type_id: String,
    /// `detail.record_id` as text.
    pub record_id: String,
    /// The file referenced from `detail.event_data`, if any.
    pub file_id: Option<Uuid>,
    /// `detail` as sent; what listings return.
    pub detail: Value,
    /// The envelope without `detail`.
    pub envelope: Value,
}

fn invalid(field: &str, message: &str) -> HistoryError {
    HistoryError::Invalid(format!("{field}: {message}"))
}

const ENVELOPE_STRINGS: &[&str] = &[
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
];

/// Checks an envelope and its `detail`.
pub fn parse_envelope(body: Value) -> Result<NewEvent, HistoryError> {
    let Value::Object(mut envelope) = body else {
        return Err(HistoryError::Invalid(
            "The body must be a JSON object (an EventBridge event).".into(),
        ));
    };
    for field in ENVELOPE_STRINGS {
        if envelope
            .get(*field)
            .is_some_and(|v| !v.is_string() && !v.is_null())
        {
            return Err(invalid(field, "Must be a string."));
        }
    }
    if let Some(resources) = envelope.get("resources").filter(|v| !v.is_null())
        && !resources
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
    {
        return Err(invalid("resources", "Must be a list of strings."));
    }
    let detail = match envelope.remove("detail") {
        None | Some(Value::Null) => return Err(invalid("detail", "This field is required.")),
        Some(Value::Object(detail)) => detail,
        Some(_) => return Err(invalid("detail", "Must be an object.")),
    };

    let event_id = match detail.get("event_id") {
        None | Some(Value::Null) => {
            return Err(invalid("detail.event_id", "This field is required."));
        }
        Some(v) => v
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| invalid("detail.event_id", "Must be a valid UUID."))?,
    };
    let event_time_ms = match detail.get("event_time") {
        None | Some(Value::Null) => {
            return Err(invalid("detail.event_time", "This field is required."));
        }
        Some(v) => v
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp_millis())
            .ok_or_else(|| {
                invalid(
                    "detail.event_time",
                    "Must be an ISO 8601 date-time with a time zone.",
                )
            })?,
    };
    let event_type_id = id_text(&detail, "event_type_id", true)?.unwrap_or_default();
    let record_id = id_text(&detail, "record_id", true)?.unwrap_or_default();
    id_text(&detail, "source_id", false)?;
    id_text(&detail, "source_type_id", false)?;
    let file_id = match detail.get("event_data") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => file_reference(items)?,
        Some(_) => return Err(invalid("detail.event_data", "Must be a list.")),
    };
    Ok(NewEvent {
        event_id,
        event_time_ms,
        event_type_id,
        record_id,
        file_id,
        detail: Value::Object(detail),
        envelope: Value::Object(envelope),
    })
}

/// An id field as text: a non-blank string or an integer, at most [`MAX_ID_CHARS`].
fn id_text(
    detail: &Map<String, Value>,
    field: &str,
    required: bool,
) -> Result<Option<String>, HistoryError> {
    let name = format!("detail.{field}");
    let text = match detail.get(field) {
        None | Some(Value::Null) if required => {
            return Err(invalid(&name, "This field is required."));
        }
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(invalid(&name, "This field may not be blank."));
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(_) => return Err(invalid(&name, "Must be a string or an integer.")),
    };
    if text.chars().count() > MAX_ID_CHARS {
        return Err(invalid(
            &name,
            &format!("Ensure this field has no more than {MAX_ID_CHARS} characters."),
        ));
    }
    Ok(Some(text))
}

/// The `file_id` of the one `event_data` item that has one.
fn file_reference(items: &[Value]) -> Result<Option<Uuid>, HistoryError> {
    let mut found = None;
    for item in items {
        let Some(raw) = item.as_object().and_then(|o| o.get("file_id")) else {
            continue;
        };
        let id = raw
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| invalid("detail.event_data", "file_id must be a valid UUID."))?;
        if found.replace(id).is_some() {
            return Err(invalid(
                "detail.event_data",
                "An event may reference at most one file.",
            ));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn envelope(detail: Value) -> Value {
        json!({
            "version": "0", "id": "e-1", "detail-type": "RecordEvent", "source": "catalyst",
            "account": "123", "time": "2024-05-01T10:00:00Z", "region": "eu-west-2",
            "resources": [], "detail": detail,
        })
    }

    fn detail() -> Value {
        json!({
            "event_id": "0b8e4f7e-2d4c-4f5a-9a57-6f1f2a0c1d11",
            "event_time": "2024-05-01T10:00:00.250+02:00",
            "event_type_id": 7, "record_id": "R-1", "source_id": null, "source_type_id": "user",
            "event_data": [{"field": "status", "new_value": "done"}, {"file_id": "5d9c1c0e-8c8e-4f43-9a1e-0a9bb2b1e7a1", "name": "a.pdf"}],
        })
    }

    #[test]
    fn parses_a_full_envelope() {
        let e = parse_envelope(envelope(detail())).unwrap();
        assert_eq!(
            e.event_id.to_string(),
            "0b8e4f7e-2d4c-4f5a-9a57-6f1f2a0c1d11"
        );
        assert_eq!(e.event_time_ms, 1_714_550_400_250);
        assert_eq!(e.event_type_id, "7");
        assert_eq!(e.record_id, "R-1");
        assert_eq!(
            e.file_id.unwrap().to_string(),
            "5d9c1c0e-8c8e-4f43-9a1e-0a9bb2b1e7a1"
        );
        assert_eq!(e.detail, detail());
        assert!(e.envelope.get("detail").is_none());
    }

    #[test]
    fn refuses_bad_fields_with_their_name() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!([]),
                "The body must be a JSON object (an EventBridge event).",
            ),
            (json!({}), "detail: This field is required."),
            (json!({"detail": 1}), "detail: Must be an object."),
            (
                json!({"source": 1, "detail": {}}),
                "source: Must be a string.",
            ),
            (
                envelope(json!({})),
                "detail.event_id: This field is required.",
            ),
            (
                envelope(json!({"event_id": "x"})),
                "detail.event_id: Must be a valid UUID.",
            ),
        ];
        for (body, message) in cases {
            assert_eq!(parse_envelope(body).unwrap_err().to_string(), message);
        }
        let with = |key: &str, value: Value| {
            let mut d = detail();
            d[key] = value;
            parse_envelope(envelope(d)).unwrap_err().to_string()
        };
        assert_eq!(
            with("event_time", json!("yesterday")),
            "detail.event_time: Must be an ISO 8601 date-time with a time zone."
        );
        assert_eq!(
            with("event_time", json!("2024-05-01T10:00:00")),
            "detail.event_time: Must be an ISO 8601 date-time with a time zone."
        );
        assert_eq!(
            with("record_id", json!(" ")),
            "detail.record_id: This field may not be blank."
        );
        assert_eq!(
            with("event_type_id", json!(1.5)),
            "detail.event_type_id: Must be a string or an integer."
        );
        assert_eq!(
            with("event_type_id", Value::Null),
            "detail.event_type_id: This field is required."
        );
        assert_eq!(
            with("event_data", json!({})),
            "detail.event_data: Must be a list."
        );
        assert_eq!(
            with("event_data", json!([{"file_id": 3}])),
            "detail.event_data: file_id must be a valid UUID."
        );
        let two = json!([{"file_id": "5d9c1c0e-8c8e-4f43-9a1e-0a9bb2b1e7a1"}, {"file_id": "5d9c1c0e-8c8e-4f43-9a1e-0a9bb2b1e7a2"}]);
        assert_eq!(
            with("event_data", two),
            "detail.event_data: An event may reference at most one file."
        );
    }

    #[test]
    fn event_data_is_optional() {
        let mut d = detail();
        d.as_object_mut().unwrap().remove("event_data");
        assert_eq!(parse_envelope(envelope(d)).unwrap().file_id, None);
    }
}
