//! Request bodies parsed once at the edge: a JSON object extractor with the
//! platform's error shapes, and `Fields`, a validator that collects DRF-style
//! field-to-list errors.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde_json::{Map, Value};

use crate::error::{ApiError, FieldErrors};

/// The largest request body, bytes: axum's default limit, which every body
/// extractor applies.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// A JSON object body. Malformed JSON is a 400 `{"detail": "JSON parse error - …"}`;
/// valid JSON that is not an object is a 400 `non_field_errors`.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(BODY_LIMIT)
            } else {
                ApiError::BadRequest(format!("Could not read the request body: {e}"))
            }
        })?;
        let value: Value = if bytes.is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("JSON parse error - {e}")))?
        };
        match value {
            Value::Object(map) => Ok(JsonObject(map)),
            other => Err(ApiError::field(
                "non_field_errors",
                format!(
                    "Invalid data. Expected a dictionary, but got {}.",
                    json_type_name(&other)
                ),
            )),
        }
    }
}

/// The Python type name DRF would report for a JSON value.
pub fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Collects validation errors over a JSON object, field by field.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    errors: FieldErrors,
}

impl<'a> Fields<'a> {
    /// Starts validating `map`.
    pub fn new(map: &'a Map<String, Value>) -> Fields<'a> {
        Fields {
            map,
            errors: FieldErrors::new(),
        }
    }

    /// Records an error on `field`.
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .entry(field.to_string())
            .or_default()
            .push(message.into());
    }

    /// Whether `field` already has an error.
    pub fn has_error(&self, field: &str) -> bool {
        self.errors.contains_key(field)
    }

    /// A required primary key: an integer (or a string of digits, as DRF accepts).
    pub fn pk(&mut self, field: &str) -> Option<i64> {
        match self.map.get(field) {
            None => self.error(field, "This field is required."),
            Some(Value::Null) => self.error(field, "This field may not be null."),
            Some(Value::Number(n)) if n.as_i64().is_some() => return n.as_i64(),
            Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                match s.parse() {
                    Ok(v) => return Some(v),
                    Err(_) => self.error(
                        field,
                        format!("Invalid pk \"{s}\" - object does not exist."),
                    ),
                }
            }
            Some(other) => self.error(
                field,
                format!(
                    "Incorrect type. Expected pk value, received {}.",
                    json_type_name(other)
                ),
            ),
        }
        None
    }

    /// A string: required or optional (absent or null gives `default`), not blank
    /// when required, at most `max` characters.
    pub fn string(&mut self, field: &str, required: bool, max: usize) -> Option<String> {
        let value = match self.map.get(field) {
            None if required => {
                self.error(field, "This field is required.");
                return None;
            }
            None => return Some(String::new()),
            Some(Value::Null) if required => {
                self.error(field, "This field may not be null.");
                return None;
            }
            Some(Value::Null) => return Some(String::new()),
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                self.error(field, "Not a valid string.");
                return None;
            }
        };
        if required && value.is_empty() {
            self.error(field, "This field may not be blank.");
            return None;
        }
        if value.chars().count() > max {
            self.error(
                field,
                format!("Ensure this field has no more than {max} characters."),
            );
            return None;
        }
        Some(value)
    }

    /// Ends validation: the errors, if any.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}
