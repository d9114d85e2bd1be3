//! `POST /api/object-records/uploads/` creates an upload transaction (its id is the
//! `<upload_id>` of the upload WebSocket); `GET /api/object-records/uploads/` lists
//! the caller's own, a page at a time (`?state=` filters);
//! `GET /api/object-records/uploads/{id}/` reports its state, each file's result
//! with its final socket message, and the records it created;
//! `GET /api/object-records/uploads/{id}/files/{file_id}/parts/` (an extension) tells
//! a restarted client which parts of a file session are stored, with fresh URLs for
//! the rest (`uploads::resume`), and
//! `DELETE /api/object-records/uploads/{id}/files/{file_id}/` cancels a pending one.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::json::{Fields, JsonObject};
use super::openapi::UploadRequest;
use super::pagination::Page;
use crate::domain::{FieldType, UploadState, iso_ms};
use crate::error::{ApiError, ApiResult};
use crate::http::extractor::AuthUser;
use crate::state::AppState;
use crate::uploads::outcome;
use crate::uploads::resume::{self, CancelError, FileParts, ResumeError};

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/object-records/uploads/",
            post(create_upload).get(list_uploads),
        )
        .route("/api/object-records/uploads/{id}/", get(get_upload))
        .route(
            "/api/object-records/uploads/{id}/files/{file_id}/parts/",
            get(file_parts).post(file_parts_checked),
        )
        .route(
            "/api/object-records/uploads/{id}/files/{file_id}/",
            delete(cancel_file),
        )
}

#[utoipa::path(delete, path = "/api/object-records/uploads/{id}/files/{file_id}/", tag = "uploads", params(("id" = String, Path, description = "Upload id"), ("file_id" = String, Path, description = "File session id")), responses((status = 204, description = "Cancelled"), (status = 400, description = "Not pending", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object), (status = 404, description = "No such file session", body = Object)), security(("jwt" = [])))]
pub(super) async fn cancel_file(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((id, file_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (Ok(id), Ok(file_id)) = (uuid::Uuid::parse_str(&id), uuid::Uuid::parse_str(&file_id))
    else {
        return Err(ApiError::NotFound);
    };
    match resume::cancel(
        &state.uploads,
        user.id,
        &id.to_string(),
        &file_id.to_string(),
    )
    .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(CancelError::NotFound) => Err(ApiError::NotFound),
        Err(e @ CancelError::NotPending) => Err(ApiError::BadRequest(e.to_string())),
        Err(e @ CancelError::Unavailable(_)) => Err(ApiError::Internal(
            anyhow::Error::new(e).context("cancelling a file session"),
        )),
    }
}

#[utoipa::path(get, path = "/api/object-records/uploads/{id}/files/{file_id}/parts/", tag = "uploads", params(("id" = String, Path, description = "Upload id"), ("file_id" = String, Path, description = "File session id")), responses((status = 200, description = "Stored parts and fresh URLs for the rest", body = Object), (status = 400, description = "The file session can no longer be resumed", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object), (status = 404, description = "No such file session", body = Object)), security(("jwt" = [])))]
pub(super) async fn file_parts(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((id, file_id)): Path<(String, String)>,
) -> ApiResult<Json<FileParts>> {
    parts_of(&state, user.id, &id, &file_id, None).await
}

/// The same, with `{"checksums": …}` to bind the fresh URLs to the client's
/// checksums (`uploads::checksums`).
#[utoipa::path(post, path = "/api/object-records/uploads/{id}/files/{file_id}/parts/", tag = "uploads", params(("id" = String, Path, description = "Upload id"), ("file_id" = String, Path, description = "File session id")), request_body(content = Object, description = "`{\"checksums\": {\"algorithm\": \"crc32c\"|\"sha256\", \"part_size\": …, \"parts\": […], \"object\": …}}` (see docs/PROTOCOL.md, checksums extension)"), responses((status = 200, description = "Stored parts and fresh URLs for the rest, bound to the given checksums", body = Object), (status = 400, description = "Malformed checksums, or the file session can no longer be resumed", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object), (status = 404, description = "No such file session", body = Object)), security(("jwt" = [])))]
pub(super) async fn file_parts_checked(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((id, file_id)): Path<(String, String)>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<FileParts>> {
    let checksums = body.get("checksums").filter(|v| !v.is_null());
    parts_of(&state, user.id, &id, &file_id, checksums).await
}

async fn parts_of(
    state: &AppState,
    user_id: i64,
    id: &str,
    file_id: &str,
    checksums: Option<&Value>,
) -> ApiResult<Json<FileParts>> {
    let (Ok(id), Ok(file_id)) = (uuid::Uuid::parse_str(id), uuid::Uuid::parse_str(file_id)) else {
        return Err(ApiError::NotFound);
    };
    match resume::file_parts(
        &state.uploads,
        user_id,
        &id.to_string(),
        &file_id.to_string(),
        checksums,
    )
    .await
    {
        Ok(parts) => Ok(Json(parts)),
        Err(ResumeError::NotFound) => Err(ApiError::NotFound),
        Err(e @ (ResumeError::Gone | ResumeError::BadChecksums(_))) => {
            Err(ApiError::BadRequest(e.to_string()))
        }
        Err(e @ ResumeError::Unavailable(_)) => Err(ApiError::Internal(
            anyhow::Error::new(e).context("listing stored parts"),
        )),
    }
}

#[utoipa::path(post, path = "/api/object-records/uploads/", tag = "uploads", request_body = UploadRequest, responses((status = 201, description = "{upload_id}", body = Object), (status = 400, description = "Invalid fields", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object)), security(("jwt" = [])))]
pub(super) async fn create_upload(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut fields = Fields::new(&body);
    let class_id = fields.pk("object_class");
    let field_id = fields.pk("object_class_field");
    let class = match class_id {
        Some(id) => {
            let class = state.db.class_by_id(id).await?;
            match &class {
                None => fields.error(
                    "object_class",
                    format!("Invalid pk \"{id}\" - object does not exist."),
                ),
                Some(c) if !state.db.may_create_in(&user, c.id).await? => fields.error(
                    "object_class",
                    "You do not have permission to use this object class.",
                ),
                Some(_) => {}
            }
            class
        }
        None => None,
    };
    if let Some(id) = field_id {
        match state.db.field_by_id(id).await? {
            None => fields.error(
                "object_class_field",
                format!("Invalid pk \"{id}\" - object does not exist."),
            ),
            Some(f) => {
                if class.as_ref().is_some_and(|c| c.id != f.object_class) {
                    fields.error(
                        "object_class_field",
                        "The field does not belong to the object class.",
                    );
                } else if f.field_type != FieldType::Document {
                    fields.error("object_class_field", "The field must be of type document.");
                }
            }
        }
    }
    fields.finish()?;
    let (class_id, field_id) = (class_id.unwrap_or_default(), field_id.unwrap_or_default());
    let upload_id = uuid::Uuid::new_v4().to_string();
    state
        .db
        .create_upload(
            &upload_id,
            user.id,
            class_id,
            field_id,
            state.settings.uploads.upload_ttl.as_millis() as i64,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "upload_id": upload_id }))))
}

/// The caller's uploads, newest first; `state` filters.
#[utoipa::path(get, path = "/api/object-records/uploads/", tag = "uploads",
    params(
        ("limit" = Option<i64>, Query, description = "Page size (default 50, at most 1000)"),
        ("offset" = Option<i64>, Query, description = "Items to skip"),
        ("state" = Option<String>, Query, description = "Only uploads in this state: open, processing, succeeded, failed"),
    ),
    responses(
        (status = 200, description = "A page of uploads: {limit, offset, total_count, next, previous, results}", body = Object),
        (status = 400, description = "Unknown state", body = Object),
        (status = 401, description = "Not authenticated", body = Object)),
    security(("jwt" = [])))]
async fn list_uploads(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let page = Page::from_params(&q);
    let filter = match q.get("state").filter(|s| !s.is_empty()) {
        Some(raw) => Some(UploadState::parse(raw).ok_or_else(|| {
            ApiError::field(
                "state",
                format!("Select a valid choice. {raw} is not one of the available choices."),
            )
        })?),
        None => None,
    };
    let (rows, total) = state
        .db
        .list_uploads(user.id, filter, page.limit, page.offset)
        .await?;
    let results: Vec<Value> = rows
        .iter()
        .map(|u| {
            json!({
                "upload_id": u.id,
                "state": u.state,
                "object_class": u.object_class_id,
                "object_class_field": u.class_field_id,
                "created_at": iso_ms(u.created_at),
                "expires_at": iso_ms(u.expires_at),
                "finished_at": u.finished_at.map(iso_ms),
                "file_count": u.file_count,
                "record_count": u.record_count,
            })
        })
        .collect();
    let extra = filter
        .map(|s| format!("state={}", s.as_str()))
        .unwrap_or_default();
    Ok(page.respond(
        &headers,
        "/api/object-records/uploads/",
        &extra,
        total,
        results,
    ))
}

/// One of the caller's uploads: state, each file's result and final message, records.
#[utoipa::path(get, path = "/api/object-records/uploads/{id}/", tag = "uploads",
    params(("id" = String, Path, description = "The upload id (a UUID)")),
    responses(
        (status = 200, description = "The upload", body = Object),
        (status = 401, description = "Not authenticated", body = Object),
        (status = 404, description = "No such upload of the caller", body = Object)),
    security(("jwt" = [])))]
async fn get_upload(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let upload = match uuid::Uuid::parse_str(&id) {
        Ok(u) => state.db.upload_by_id(&u.to_string()).await?,
        Err(_) => None,
    }
    .filter(|u| u.creator_id == user.id)
    .ok_or(ApiError::NotFound)?;
    let files = state.db.upload_files(&upload.id).await?;
    let mut failures = Vec::with_capacity(files.len());
    for f in &files {
        failures.push(outcome::failure(&state.db, f).await?);
    }
    let records = state.db.upload_record_ids(&upload.id).await?;
    let finals = outcome::final_messages(&state.db, &upload.id).await?;
    Ok(Json(json!({
        "upload_id": upload.id,
        "state": upload.state.as_str(),
        "created_at": iso_ms(upload.created_at),
        "expires_at": iso_ms(upload.expires_at),
        "object_class": upload.object_class_id,
        "object_class_field": upload.class_field_id,
        "files": files.iter().zip(&failures).map(|(f, failure)| json!({
            "upload_id": f.id,
            "temp_upload_id": f.temp_upload_id,
            "file_name": f.file_name,
            "file_size": f.file_size,
            "s3_key": f.s3_key,
            "is_multipart": f.is_multipart,
            "state": f.state,
            "error_code": failure.as_ref().map(|x| &x.error_code),
            "error_message": failure.as_ref().map(|x| &x.message),
            "final_message": finals.get(&f.id),
        })).collect::<Vec<_>>(),
        "record_count": records.len(),
        "records": records,
    })))
}
