//! Object classes, their fields and grants:
//! `POST|GET /api/object-classes/`, `GET /api/object-classes/{id}/`,
//! `POST|GET /api/object-classes/{id}/fields/`, `POST /api/object-classes/{id}/permissions/`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::json::{Fields, JsonObject};
use super::openapi::{ClassRequest, FieldRequest, GrantRequest};
use super::pagination::Page;
use crate::db::is_unique_violation;
use crate::domain::{FieldType, ObjectClass, User};
use crate::error::{ApiError, ApiResult, OnUniqueViolation};
use crate::http::extractor::AuthUser;
use crate::state::AppState;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/object-classes/", post(create_class).get(list_classes))
        .route("/api/object-classes/{id}/", get(get_class))
        .route(
            "/api/object-classes/{id}/fields/",
            post(create_field).get(list_fields),
        )
        .route("/api/object-classes/{id}/permissions/", post(grant))
}

/// Parses a path id; anything that is not a positive integer is simply not found.
pub fn path_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(ApiError::NotFound)
}

/// The class at `raw`, for a caller who may configure it (404 before 403).
async fn configurable_class(state: &AppState, user: &User, raw: &str) -> ApiResult<ObjectClass> {
    let class = existing_class(state, raw).await?;
    if !user.account_type.can_configure() {
        return Err(ApiError::PermissionDenied);
    }
    Ok(class)
}

async fn existing_class(state: &AppState, raw: &str) -> ApiResult<ObjectClass> {
    state
        .db
        .class_by_id(path_id(raw)?)
        .await?
        .ok_or(ApiError::NotFound)
}

#[utoipa::path(post, path = "/api/object-classes/", tag = "classes", request_body = ClassRequest, responses((status = 201, description = "The class", body = Object), (status = 400, description = "Invalid fields", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object), (status = 403, description = "Not a configurator", body = Object)), security(("jwt" = [])))]
pub(super) async fn create_class(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<ObjectClass>)> {
    if !user.account_type.can_configure() {
        return Err(ApiError::PermissionDenied);
    }
    let mut fields = Fields::new(&body);
    let name = fields.string("name", true, 100);
    let description = fields.string("description", false, 500);
    if let Some(n) = &name
        && !n.chars().next().is_some_and(|c| c.is_alphabetic())
    {
        fields.error("name", "Name must start with a letter.");
    }
    fields.finish()?;
    let (name, description) = (name.unwrap_or_default(), description.unwrap_or_default());
    let class = state
        .db
        .create_class(&name, &description, user.id)
        .await
        .on_unique_violation(|| {
            ApiError::field("name", "object class with this name already exists.")
        })?;
    Ok((StatusCode::CREATED, Json(class)))
}

#[utoipa::path(get, path = "/api/object-classes/", tag = "classes", params(("limit" = Option<i64>, Query, description = "Page size"), ("offset" = Option<i64>, Query, description = "Items to skip")), responses((status = 200, description = "A page of classes", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object)), security(("jwt" = [])))]
pub(super) async fn list_classes(
    State(state): State<AppState>,
    AuthUser(_): AuthUser,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let page = Page::from_params(&q);
    let (classes, total) = state.db.list_classes(page.limit, page.offset).await?;
    Ok(page.respond(&headers, "/api/object-classes/", "", total, classes))
}

#[utoipa::path(get, path = "/api/object-classes/{id}/", tag = "classes", params(("id" = i64, Path, description = "Class id")), responses((status = 200, description = "The class", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object), (status = 404, description = "No such class", body = Object)), security(("jwt" = [])))]
pub(super) async fn get_class(
    State(state): State<AppState>,
    AuthUser(_): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<ObjectClass>> {
    Ok(Json(existing_class(&state, &id).await?))
}

#[utoipa::path(post, path = "/api/object-classes/{id}/fields/", tag = "classes", params(("id" = i64, Path, description = "Class id")), request_body = FieldRequest, responses((status = 201, description = "The field", body = Object), (status = 400, description = "Invalid fields", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object), (status = 403, description = "Not a configurator", body = Object), (status = 404, description = "No such class", body = Object)), security(("jwt" = [])))]
pub(super) async fn create_field(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let class = configurable_class(&state, &user, &id).await?;
    let mut fields = Fields::new(&body);
    let label = fields.string("label", true, 100);
    let alias = fields.string("alias", true, 100);
    let type_name = fields.string("type", true, 50);
    if let Some(a) = &alias {
        let ok = a.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            fields.error(
                "alias",
                "Alias must start with a lowercase letter and contain only lowercase letters, digits and underscores.",
            );
        }
    }
    let field_type = type_name.as_deref().and_then(|t| {
        let parsed = FieldType::parse(t);
        if parsed.is_none() {
            fields.error("type", format!("\"{t}\" is not a valid choice."));
        }
        parsed
    });
    fields.finish()?;
    let (label, alias) = (label.unwrap_or_default(), alias.unwrap_or_default());
    let Some(field_type) = field_type else {
        return Err(ApiError::field("type", "This field is required."));
    };
    let created = state
        .db
        .create_field(class.id, &label, &alias, field_type)
        .await;
    if let Err(e) = &created
        && is_unique_violation(e)
    {
        // Which constraint: look, rather than parse backend-specific messages.
        let fields = state.db.list_fields(class.id).await?;
        return Err(if fields.iter().all(|f| f.label != label) {
            ApiError::field("alias", "A field with this alias already exists.")
        } else {
            ApiError::field(
                "label",
                "A field with this label already exists in the object class.",
            )
        });
    }
    Ok((StatusCode::CREATED, Json(json!(created?))))
}

#[utoipa::path(get, path = "/api/object-classes/{id}/fields/", tag = "classes", params(("id" = i64, Path, description = "Class id")), responses((status = 200, description = "The class's fields", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object), (status = 404, description = "No such class", body = Object)), security(("jwt" = [])))]
pub(super) async fn list_fields(
    State(state): State<AppState>,
    AuthUser(_): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let class = existing_class(&state, &id).await?;
    Ok(Json(json!(state.db.list_fields(class.id).await?)))
}

#[utoipa::path(post, path = "/api/object-classes/{id}/permissions/", tag = "classes", params(("id" = i64, Path, description = "Class id")), request_body = GrantRequest, responses((status = 201, description = "The grant", body = Object), (status = 400, description = "Invalid user", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object), (status = 403, description = "Not a configurator", body = Object), (status = 404, description = "No such class", body = Object)), security(("jwt" = [])))]
pub(super) async fn grant(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let class = configurable_class(&state, &user, &id).await?;
    let mut fields = Fields::new(&body);
    let grantee = fields.pk("user");
    fields.finish()?;
    let grantee = grantee.unwrap_or_default();
    if state.db.user_by_id(grantee).await?.is_none() {
        return Err(ApiError::field(
            "user",
            format!("Invalid pk \"{grantee}\" - object does not exist."),
        ));
    }
    state.db.grant_class(class.id, grantee).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "object_class": class.id, "user": grantee })),
    ))
}
