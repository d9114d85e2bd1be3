//! The one place REST errors meet the wire. Every variant maps to a status and a
//! body shaped like the platform's (Django REST framework): `{"detail": "…"}` or a
//! field-to-list map for validation errors. 500s hide their cause and log it.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Field-to-messages validation errors, in field order.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// An error answered by a REST endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with a field-to-list body.
    #[error("validation failed: {0:?}")]
    Validation(FieldErrors),
    /// 400 with `{"detail": …}` (the Event History API's form, and malformed JSON).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401: no credentials on the request.
    #[error("not authenticated")]
    NotAuthenticated,
    /// 401: a token that is malformed, expired or of the wrong kind.
    #[error("invalid token")]
    InvalidToken,
    /// 401: wrong e-mail or password.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// 401 with a given detail (the Event History API's "Unauthorized API Key.").
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// 403.
    #[error("permission denied")]
    PermissionDenied,
    /// 404.
    #[error("not found")]
    NotFound,
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed(String),
    /// 413: the body is larger than the limit (bytes).
    #[error("request body too large")]
    PayloadTooLarge(usize),
    /// 500: the cause is logged, never sent.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A validation error on one field.
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        let mut map = FieldErrors::new();
        map.insert(field.to_string(), vec![message.into()]);
        ApiError::Validation(map)
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotAuthenticated
            | ApiError::InvalidToken
            | ApiError::InvalidCredentials
            | ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::PermissionDenied => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        crate::telemetry::db_error("api");
        ApiError::Internal(anyhow::Error::new(e).context("database"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Texts that may echo what the client sent are kept short (at most 1 KiB,
        // long quoted values elided), like the socket's.
        let fit = crate::protocol::fit_error_text;
        let body = match &self {
            ApiError::Validation(map) => {
                let fitted: FieldErrors = map
                    .iter()
                    .map(|(field, texts)| (field.clone(), texts.iter().map(|t| fit(t)).collect()))
                    .collect();
                json!(fitted)
            }
            ApiError::BadRequest(detail) => json!({ "detail": fit(detail) }),
            ApiError::NotAuthenticated => {
                json!({ "detail": "Authentication credentials were not provided." })
            }
            ApiError::InvalidToken => json!({
                "detail": "Given token not valid for any token type",
                "code": "token_not_valid"
            }),
            ApiError::InvalidCredentials => {
                json!({ "detail": "No active account found with the given credentials" })
            }
            ApiError::Unauthorized(detail) => json!({ "detail": fit(detail) }),
            ApiError::PermissionDenied => {
                json!({ "detail": "You do not have permission to perform this action." })
            }
            ApiError::NotFound => json!({ "detail": "Not found." }),
            ApiError::MethodNotAllowed(method) => {
                json!({ "detail": format!("Method \"{method}\" not allowed.") })
            }
            ApiError::PayloadTooLarge(limit) => {
                json!({ "detail": format!("Request body is larger than {limit} bytes.") })
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                json!({ "detail": "A server error occurred." })
            }
        };
        (status, Json(body)).into_response()
    }
}

/// Result of a REST handler.
pub type ApiResult<T> = Result<T, ApiError>;

/// Turns a unique-constraint violation into the caller's error; any other database
/// error stays a 500.
pub trait OnUniqueViolation<T> {
    /// `self`, with a unique violation replaced by `error()`.
    fn on_unique_violation(self, error: impl FnOnce() -> ApiError) -> ApiResult<T>;
}

impl<T> OnUniqueViolation<T> for Result<T, sqlx::Error> {
    fn on_unique_violation(self, error: impl FnOnce() -> ApiError) -> ApiResult<T> {
        self.map_err(|e| {
            if crate::db::is_unique_violation(&e) {
                error()
            } else {
                e.into()
            }
        })
    }
}
