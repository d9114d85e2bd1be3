//! The Event History API's error table: every answer it gives besides success, in
//! one enum. Its bodies are always `{"detail": "<text>"}` (the seed page's form);
//! the texts of the seed page's rows are reproduced exactly. Anything else (database
//! or object store failures) is the shared [`ApiError`], which hides and logs 500s.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;

/// An error answered by an Event History API endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// 401: `X-API-Key` missing, malformed, unknown or revoked (seed rows "Wrong API
    /// key" and "Missing authorization header"). Checked before anything else.
    #[error("Unauthorized API Key.")]
    UnauthorizedApiKey,
    /// 400: no (or an empty) `X-Client-Id` header (seed row "Client ID header is missing").
    #[error("Unauthorized Client.")]
    UnauthorizedClient,
    /// 400: `X-Client-Id` names no tenant (seed row "Client from header does not match
    /// any tenant").
    #[error("Failed to connect to tenant db.")]
    TenantDbUnavailable,
    /// 400: the tenant exists but its database does not (seed row "Tenant not found");
    /// carries the database name.
    #[error("'{0}' tenant not found in database.")]
    TenantNotFound(String),
    /// 400: `initialize-tenant` with a database name that a tenant has already.
    #[error("Client already exist.")]
    ClientAlreadyExists,
    /// 400: `initialize-tenant` with the database name of a deleted tenant whose
    /// files are still to be purged.
    #[error("'{0}' is still being deleted; try again later.")]
    DatabaseBeingDeleted(String),
    /// 400: a malformed request (body, field or query parameter); the text says what.
    #[error("{0}")]
    Invalid(String),
    /// 400: an event references a file that is not stored under its tenant's prefix
    /// (never uploaded, or another tenant's).
    #[error("File '{0}' not found.")]
    FileNotFound(String),
    /// 400: an event id recorded before with a different `detail`.
    #[error("Event '{0}' already exists with different content.")]
    EventConflict(String),
    /// 404: no event with this id in the caller's tenant.
    #[error("Event not found.")]
    EventNotFound,
    /// 404: the event exists but references no file (or its file is gone).
    #[error("Event has no file.")]
    EventHasNoFile,
    /// The shared errors: 405 for wrong methods, 500 for failures.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl HistoryError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            HistoryError::UnauthorizedApiKey => StatusCode::UNAUTHORIZED,
            HistoryError::UnauthorizedClient
            | HistoryError::TenantDbUnavailable
            | HistoryError::TenantNotFound(_)
            | HistoryError::ClientAlreadyExists
            | HistoryError::DatabaseBeingDeleted(_)
            | HistoryError::Invalid(_)
            | HistoryError::FileNotFound(_)
            | HistoryError::EventConflict(_) => StatusCode::BAD_REQUEST,
            HistoryError::EventNotFound | HistoryError::EventHasNoFile => StatusCode::NOT_FOUND,
            HistoryError::Api(e) => e.status(),
        }
    }

    /// A 500 with `context` for the log.
    pub fn internal(context: &'static str, e: impl Into<anyhow::Error>) -> HistoryError {
        HistoryError::Api(ApiError::Internal(e.into().context(context)))
    }
}

impl From<sqlx::Error> for HistoryError {
    fn from(e: sqlx::Error) -> Self {
        HistoryError::Api(e.into())
    }
}

impl From<crate::store::StoreError> for HistoryError {
    fn from(e: crate::store::StoreError) -> Self {
        HistoryError::Api(ApiError::Internal(
            anyhow::Error::new(e).context("object store"),
        ))
    }
}

impl IntoResponse for HistoryError {
    fn into_response(self) -> Response {
        match self {
            HistoryError::Api(e) => e.into_response(),
            other => (other.status(), Json(json!({ "detail": other.to_string() }))).into_response(),
        }
    }
}

/// Result of an Event History API handler.
pub type HistoryResult<T> = Result<T, HistoryError>;
