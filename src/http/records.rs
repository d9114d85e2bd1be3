//! Object records: `POST /api/object-records/`, `GET /api/object-records/`,
//! `GET /api/object-records/{id}/`, `GET /api/object-records/{id}/history/`. A document field's value shows the stored file
//! with a short-lived presigned download URL.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::classes::path_id;
use super::json::{Fields, JsonObject, json_type_name};
use super::openapi::RecordRequest;
use super::pagination::Page;
use crate::db::record_events::RecordEventRow;
use crate::db::records::RecordRow;
use crate::domain::{ClassField, EventSource, FieldType, RecordEventType, User, iso_ms};
use crate::error::{ApiError, ApiResult};
use crate::http::extractor::AuthUser;
use crate::state::AppState;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/object-records/",
            post(create_record).get(list_records),
        )
        .route("/api/object-records/{id}/", get(get_record))
        .route("/api/object-records/{id}/history/", get(record_history))
}

/// Checks a REST-supplied value against the field's type.
fn check_value(field: &ClassField, value: &Value) -> Result<(), String> {
    if value.is_null() {
        return Ok(());
    }
    let ok = match field.field_type {
        FieldType::Integer | FieldType::User => value.as_i64().is_some(),
        FieldType::Decimal => {
            value.is_number() || value.as_str().is_some_and(|s| s.parse::<f64>().is_ok())
        }
        FieldType::Checkbox => value.is_boolean(),
        FieldType::MultiSelect => value
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string)),
        FieldType::Document => {
            return Err(
                "Documents are attached through uploads (POST /api/object-records/uploads/)."
                    .into(),
            );
        }
        _ => value.is_string(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Incorrect type for a {} field, received {}.",
            field.field_type.as_str(),
            json_type_name(value)
        ))
    }
}

/// Renders a record for the wire: `field_<alias>` keys, documents with a download URL.
pub async fn render_record(state: &AppState, row: &RecordRow) -> ApiResult<Value> {
    let mut out = Map::new();
    out.insert("id".into(), json!(row.id));
    out.insert("object_name".into(), json!(row.object_name));
    out.insert("object_class".into(), json!(row.object_class_id));
    out.insert("owner".into(), json!(row.owner_id));
    out.insert("created_at".into(), json!(iso_ms(row.created_at)));
    out.insert("modified_at".into(), json!(iso_ms(row.modified_at)));
    let ttl = state.settings.uploads.download_url_ttl;
    for (alias, value) in &row.field_values {
        let mut value = value.clone();
        if let Some(doc) = value.as_object_mut()
            && let Some(key) = doc
                .remove("key")
                .and_then(|k| k.as_str().map(str::to_string))
        {
            let name = doc.get("name").and_then(Value::as_str).map(str::to_string);
            let url = state
                .store
                .presign_get(&key, ttl, name.as_deref())
                .await
                .map_err(|e| {
                    ApiError::Internal(anyhow::Error::new(e).context("presigning download"))
                })?;
            doc.insert("url".into(), json!(url));
        }
        out.insert(format!("field_{alias}"), value);
    }
    Ok(Value::Object(out))
}

async fn may_read(state: &AppState, user: &User, row: &RecordRow) -> ApiResult<bool> {
    Ok(row.owner_id == user.id || state.db.may_create_in(user, row.object_class_id).await?)
}

#[utoipa::path(post, path = "/api/object-records/", tag = "records", request_body = RecordRequest, responses((status = 201, description = "The record", body = Object), (status = 400, description = "Invalid fields", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object)), security(("jwt" = [])))]
pub(super) async fn create_record(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut fields = Fields::new(&body);
    let name = fields.string("object_name", true, 255);
    let class_id = fields.pk("object_class");
    let mut class_fields = Vec::new();
    if let Some(id) = class_id {
        if state.db.class_by_id(id).await?.is_none() {
            fields.error(
                "object_class",
                format!("Invalid pk \"{id}\" - object does not exist."),
            );
        } else if !state.db.may_create_in(&user, id).await? {
            fields.error(
                "object_class",
                "You do not have permission to use this object class.",
            );
        } else {
            class_fields = state.db.list_fields(id).await?;
        }
    }
    let mut values = Map::new();
    for (key, value) in &body {
        let Some(alias) = key.strip_prefix("field_") else {
            continue;
        };
        match class_fields.iter().find(|f| f.alias == alias) {
            None if class_id.is_some() && !fields.has_error("object_class") => {
                fields.error(key, "No such field in the object class.")
            }
            None => {}
            Some(f) => match check_value(f, value) {
                Ok(()) => {
                    values.insert(alias.to_string(), value.clone());
                }
                Err(msg) => fields.error(key, msg),
            },
        }
    }
    fields.finish()?;
    let row = state
        .db
        .create_record(
            class_id.unwrap_or_default(),
            &name.unwrap_or_default(),
            user.id,
            &values,
            &EventSource::user(&user),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(render_record(&state, &row).await?),
    ))
}

#[utoipa::path(get, path = "/api/object-records/", tag = "records", params(("object_class" = Option<i64>, Query, description = "Only records of this class (required for external accounts)"), ("limit" = Option<i64>, Query, description = "Page size"), ("offset" = Option<i64>, Query, description = "Items to skip")), responses((status = 200, description = "A page of records", body = Object), (status = 400, description = "Invalid filter", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object), (status = 403, description = "No access to the class", body = Object)), security(("jwt" = [])))]
pub(super) async fn list_records(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let page = Page::from_params(&q);
    let class_id = match q.get("object_class").filter(|s| !s.is_empty()) {
        Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
            ApiError::field(
                "object_class",
                "Select a valid choice. That choice is not one of the available choices.",
            )
        })?),
        None => None,
    };
    // Users who may not create in a class see only their own records: filter the
    // page after the fact would break counts, so such users must name a class they
    // were granted, or see nothing beyond their own rows.
    if let Some(c) = class_id {
        if !state.db.may_create_in(&user, c).await? {
            return Err(ApiError::PermissionDenied);
        }
    } else if !user.account_type.creates_anywhere() {
        return Err(ApiError::field(
            "object_class",
            "This filter is required for your account type.",
        ));
    }
    let (rows, total) = state
        .db
        .list_records(class_id, page.limit, page.offset)
        .await?;
    let mut results = Vec::with_capacity(rows.len());
    for row in &rows {
        results.push(render_record(&state, row).await?);
    }
    let extra = class_id
        .map(|c| format!("object_class={c}"))
        .unwrap_or_default();
    Ok(page.respond(&headers, "/api/object-records/", &extra, total, results))
}

#[utoipa::path(get, path = "/api/object-records/{id}/", tag = "records", params(("id" = i64, Path, description = "Record id")), responses((status = 200, description = "The record", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object), (status = 404, description = "No such record", body = Object)), security(("jwt" = [])))]
pub(super) async fn get_record(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let row = state
        .db
        .record_by_id(path_id(&id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    if !may_read(&state, &user, &row).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Json(render_record(&state, &row).await?))
}

/// One event as the platform's record history shows it.
fn render_event(e: &RecordEventRow) -> Value {
    json!({
        "event_id": e.event_id,
        "event_datetime": iso_ms(e.created_at),
        "event_type": e.event_type,
        "source_type": e.source_type,
        "source_name": e.source_name,
        "source_id": e.source_id,
        "source_info": e.source_info,
        "event_data": e.event_data,
    })
}

/// The record's events, oldest first; readable by whoever may read the record
/// (anyone else gets the same 404 as for the record itself).
#[utoipa::path(get, path = "/api/object-records/{id}/history/", tag = "records", params(("id" = i64, Path, description = "Record id"), ("limit" = Option<i64>, Query, description = "Page size"), ("offset" = Option<i64>, Query, description = "Items to skip")), responses((status = 200, description = "A page of the record's events", body = Object), (status = 400, description = "Invalid filter", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object), (status = 404, description = "No such record", body = Object)), security(("jwt" = [])))]
pub(super) async fn record_history(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let page = Page::from_params(&q);
    let id = path_id(&id)?;
    let row = state.db.record_by_id(id).await?.ok_or(ApiError::NotFound)?;
    if !may_read(&state, &user, &row).await? {
        return Err(ApiError::NotFound);
    }
    let event_type = match q.get("event_type").filter(|s| !s.is_empty()) {
        Some(raw) => Some(RecordEventType::parse(raw).ok_or_else(|| {
            ApiError::field(
                "event_type",
                format!("Select a valid choice. {raw} is not one of the available choices."),
            )
        })?),
        None => None,
    };
    let (rows, total, filtered) = state
        .db
        .record_events(id, event_type, page.limit, page.offset)
        .await?;
    let results: Vec<Value> = rows.iter().map(render_event).collect();
    let extra = event_type
        .map(|t| format!("event_type={t}"))
        .unwrap_or_default();
    Ok(page.respond_filtered(
        &headers,
        &format!("/api/object-records/{id}/history/"),
        &extra,
        total,
        filtered,
        results,
    ))
}
