//! The Event History API's HTTP edge (`docs/PROTOCOL.md`, "Event History API"):
//!
//! - `POST /api/initialize-tenant`, `DELETE /api/delete-tenant`
//! - `GET /api/files/upload-url` (the seed page)
//! - `POST /api/event-bridge/create-event`
//! - `GET /api/history/events`, `GET /api/history/events/{event_id}/file`
//!
//! Every call needs `X-API-Key`, checked first by the extractors below, so a caller
//! without a valid key learns nothing about tenants; then `X-Client-Id` names the
//! tenant. Handlers parse their input into validated types and call
//! [`crate::history::History`]; errors are [`HistoryError`]s.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{MethodRouter, delete, get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::openapi::TenantRequest;
use super::pagination::Page;
use crate::db::history::{EventFilter, EventRow};
use crate::domain::iso_ms;
use crate::error::ApiError;
use crate::history::{DatabaseName, HistoryError, HistoryResult, Recorded, Tenant, events};
use crate::state::AppState;

/// The header carrying the service API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// The header naming the tenant.
pub const CLIENT_ID_HEADER: &str = "x-client-id";
/// Longest `client_label`.
const MAX_LABEL_CHARS: usize = 255;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/initialize-tenant", post(initialize_tenant))
        .route("/api/delete-tenant", delete(delete_tenant))
        .route("/api/files/upload-url", get_only(upload_url))
        .route("/api/event-bridge/create-event", post(create_event))
        .route("/api/history/events", get_only(list_events))
        .route("/api/history/events/{event_id}/file", get_only(event_file))
}

/// GET alone: axum would answer HEAD with the GET handler, but the seed page allows
/// no method other than GET.
fn get_only<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    get(handler).head(|| async { ApiError::MethodNotAllowed("HEAD".into()) })
}

/// A caller with a valid `X-API-Key`.
pub struct ServiceKey;

impl FromRequestParts<AppState> for ServiceKey {
    type Rejection = HistoryError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(API_KEY_HEADER)
            .and_then(|v| v.to_str().ok());
        state.history.authenticate(key).await?;
        Ok(ServiceKey)
    }
}

/// A caller with a valid key and the tenant its `X-Client-Id` names, whether or not
/// the tenant's database exists.
pub struct ClientTenant(pub Tenant);

impl FromRequestParts<AppState> for ClientTenant {
    type Rejection = HistoryError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        ServiceKey::from_request_parts(parts, state).await?;
        let client_id = match parts.headers.get(CLIENT_ID_HEADER) {
            None => None,
            // Not text: it cannot name a tenant.
            Some(v) => Some(v.to_str().map_err(|_| HistoryError::TenantDbUnavailable)?),
        };
        Ok(ClientTenant(state.history.tenant(client_id).await?))
    }
}

/// A caller with a valid key and a tenant whose database exists.
pub struct TenantDatabase(pub Tenant);

impl FromRequestParts<AppState> for TenantDatabase {
    type Rejection = HistoryError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ClientTenant(tenant) = ClientTenant::from_request_parts(parts, state).await?;
        Ok(TenantDatabase(tenant.with_database()?))
    }
}

/// A JSON body; the Event History API reports every problem as `{"detail": …}`.
fn json_body(body: &Bytes) -> HistoryResult<Value> {
    if body.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(body)
        .map_err(|e| HistoryError::Invalid(format!("JSON parse error - {e}")))
}

fn required_string(body: &Map<String, Value>, field: &str) -> HistoryResult<String> {
    match body.get(field) {
        None | Some(Value::Null) => Err(HistoryError::Invalid(format!(
            "{field}: This field is required."
        ))),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(HistoryError::Invalid(format!("{field}: Must be a string."))),
    }
}

/// `POST /api/initialize-tenant` `{database_name, client_label}` →
/// 201 `{client_id, client_secret, database_name}`.
#[utoipa::path(post, path = "/api/initialize-tenant", tag = "history", request_body = TenantRequest, responses((status = 201, description = "{client_id, client_secret, database_name}", body = Object), (status = 400, description = "Invalid body", body = Object), (status = 401, description = "Unauthorized API Key", body = Object)), security(("api_key" = [])))]
pub(super) async fn initialize_tenant(
    State(state): State<AppState>,
    _key: ServiceKey,
    body: Bytes,
) -> HistoryResult<(StatusCode, Json<Value>)> {
    let Value::Object(body) = json_body(&body)? else {
        return Err(HistoryError::Invalid(
            "The body must be a JSON object.".into(),
        ));
    };
    let database_name = DatabaseName::parse(&required_string(&body, "database_name")?)?;
    let label = required_string(&body, "client_label")?.trim().to_string();
    if label.is_empty() {
        return Err(HistoryError::Invalid(
            "client_label: This field may not be blank.".into(),
        ));
    }
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(HistoryError::Invalid(format!(
            "client_label: Ensure this field has no more than {MAX_LABEL_CHARS} characters."
        )));
    }
    let tenant = state.history.create_tenant(&database_name, &label).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "client_id": tenant.client_id,
            "client_secret": tenant.client_secret,
            "database_name": tenant.database_name,
        })),
    ))
}

/// `DELETE /api/delete-tenant` (`X-Client-Id`) → 200 `{"detail": "Tenant deleted."}`.
#[utoipa::path(delete, path = "/api/delete-tenant", tag = "history", responses((status = 200, description = "Tenant deleted", body = Object), (status = 401, description = "Unauthorized API Key", body = Object), (status = 404, description = "No such tenant", body = Object)), security(("api_key" = [], "client_id" = [])))]
pub(super) async fn delete_tenant(
    State(state): State<AppState>,
    ClientTenant(tenant): ClientTenant,
) -> HistoryResult<Json<Value>> {
    state.history.delete_tenant(&tenant).await?;
    Ok(Json(json!({ "detail": "Tenant deleted." })))
}

/// `GET /api/files/upload-url` → 200 `{upload_url, file_id}` (the seed page).
#[utoipa::path(get, path = "/api/files/upload-url", tag = "history", responses((status = 200, description = "{upload_url, file_id}", body = Object), (status = 401, description = "Unauthorized API Key", body = Object), (status = 404, description = "No such tenant", body = Object)), security(("api_key" = [], "client_id" = [])))]
pub(super) async fn upload_url(
    State(state): State<AppState>,
    TenantDatabase(tenant): TenantDatabase,
) -> HistoryResult<Json<Value>> {
    let (url, file_id) = state.history.upload_url(&tenant).await?;
    Ok(Json(
        json!({ "upload_url": url, "file_id": file_id.to_string() }),
    ))
}

/// `POST /api/event-bridge/create-event` (an EventBridge envelope) →
/// 201 `{"detail": "Event created."}`, or `"Event already recorded."` for a repeat.
#[utoipa::path(post, path = "/api/event-bridge/create-event", tag = "history", request_body(content = Object, description = "An EventBridge event whose detail carries event_id, record_id, event_type_id, event_time"), responses((status = 201, description = "Event created or already recorded", body = Object), (status = 400, description = "Invalid event", body = Object), (status = 401, description = "Unauthorized API Key", body = Object)), security(("api_key" = [], "client_id" = [])))]
pub(super) async fn create_event(
    State(state): State<AppState>,
    TenantDatabase(tenant): TenantDatabase,
    body: Bytes,
) -> HistoryResult<(StatusCode, Json<Value>)> {
    let event = events::parse_envelope(json_body(&body)?)?;
    let detail = match state.history.record_event(&tenant, &event).await? {
        Recorded::Created => "Event created.",
        Recorded::AlreadyRecorded => "Event already recorded.",
    };
    Ok((StatusCode::CREATED, Json(json!({ "detail": detail }))))
}

/// An RFC 3339 query parameter as epoch ms.
fn time_param(q: &HashMap<String, String>, name: &str) -> HistoryResult<Option<i64>> {
    match q.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(raw) => chrono::DateTime::parse_from_rfc3339(raw)
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|_| {
                HistoryError::Invalid(format!(
                    "{name}: Must be an ISO 8601 date-time with a time zone."
                ))
            }),
    }
}

fn render_event(row: &EventRow) -> Value {
    let detail: Map<String, Value> = serde_json::from_str(&row.detail).unwrap_or_default();
    let field = |name: &str| detail.get(name).cloned().unwrap_or(Value::Null);
    json!({
        "event_id": row.event_id,
        "event_time": field("event_time"),
        "event_type_id": field("event_type_id"),
        "record_id": field("record_id"),
        "source_id": field("source_id"),
        "source_type_id": field("source_type_id"),
        "event_data": detail.get("event_data").cloned().unwrap_or_else(|| json!([])),
        "file_id": row.file_id,
        "created_at": iso_ms(row.created_at),
    })
}

/// `GET /api/history/events?record_id=&event_type_id=&event_time_after=&event_time_before=&limit=&offset=`
/// → the page envelope, newest first.
#[utoipa::path(get, path = "/api/history/events", tag = "history", params(("record_id" = Option<String>, Query, description = "Only this record's events"), ("event_type_id" = Option<String>, Query, description = "Only this event type"), ("event_time_after" = Option<String>, Query, description = "RFC 3339 lower bound"), ("event_time_before" = Option<String>, Query, description = "RFC 3339 upper bound"), ("limit" = Option<i64>, Query, description = "Page size"), ("offset" = Option<i64>, Query, description = "Items to skip")), responses((status = 200, description = "A page of events", body = Object), (status = 400, description = "Invalid filter", body = Object), (status = 401, description = "Unauthorized API Key", body = Object)), security(("api_key" = [], "client_id" = [])))]
pub(super) async fn list_events(
    State(state): State<AppState>,
    TenantDatabase(tenant): TenantDatabase,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> HistoryResult<Json<Value>> {
    let page = Page::from_params(&q);
    let text = |name: &str| q.get(name).filter(|s| !s.is_empty()).cloned();
    let filter = EventFilter {
        record_id: text("record_id"),
        event_type_id: text("event_type_id"),
        after: time_param(&q, "event_time_after")?,
        before: time_param(&q, "event_time_before")?,
    };
    let (rows, total) = state
        .history
        .list_events(&tenant, &filter, page.limit, page.offset)
        .await?;
    // The filters, as given, go into the next/previous links.
    let mut extra = url::form_urlencoded::Serializer::new(String::new());
    for name in [
        "record_id",
        "event_type_id",
        "event_time_after",
        "event_time_before",
    ] {
        if let Some(v) = q.get(name).filter(|s| !s.is_empty()) {
            extra.append_pair(name, v);
        }
    }
    let results = rows.iter().map(render_event).collect();
    Ok(page.respond(
        &headers,
        "/api/history/events",
        &extra.finish(),
        total,
        results,
    ))
}

/// `GET /api/history/events/{event_id}/file` → 200 `{file_id, download_url}`.
#[utoipa::path(get, path = "/api/history/events/{event_id}/file", tag = "history", params(("event_id" = String, Path, description = "Event id")), responses((status = 200, description = "A download URL of the event's file", body = Object), (status = 401, description = "Unauthorized API Key", body = Object), (status = 404, description = "No such event or file", body = Object)), security(("api_key" = [], "client_id" = [])))]
pub(super) async fn event_file(
    State(state): State<AppState>,
    TenantDatabase(tenant): TenantDatabase,
    Path(event_id): Path<String>,
) -> HistoryResult<Json<Value>> {
    let event_id = uuid::Uuid::parse_str(&event_id).map_err(|_| HistoryError::EventNotFound)?;
    let (url, file_id) = state.history.event_file_url(&tenant, &event_id).await?;
    Ok(Json(json!({ "file_id": file_id, "download_url": url })))
}
