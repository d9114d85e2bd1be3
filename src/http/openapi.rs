//! The OpenAPI 3.1 document of the REST and Event History APIs, generated from the
//! handlers' `#[utoipa::path]` annotations, served at `GET /openapi.json`, and a
//! reference page at `GET /docs/` that renders it in the browser with a few lines
//! of plain script shipped in the binary (no CDN, no build step: the machines
//! this runs on may have no internet, and swagger-ui's crate downloads its assets
//! at build time). The upload WebSocket is described in `docs/PROTOCOL.md`.
//!
//! Request bodies are documented with the types below. The handlers read bodies
//! with `json::Fields`, not these types, so that validation errors keep the
//! platform's field-to-list shape; `tests/api/openapi.rs` checks that the document
//! names every route of the router.

use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::domain::FieldType;
use crate::state::AppState;

/// `POST /api/auth/token/`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct TokenRequest {
    /// The account's e-mail.
    #[schema(max_length = 254)]
    email: String,
    /// Its password.
    #[schema(max_length = 1024)]
    password: String,
}

/// `POST /api/auth/token/refresh/`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct RefreshRequest {
    /// A refresh token from `POST /api/auth/token/`.
    refresh: String,
}

/// `POST /api/object-classes/`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ClassRequest {
    /// Starts with a letter.
    #[schema(max_length = 100)]
    name: String,
    #[schema(max_length = 500)]
    description: Option<String>,
}

/// `POST /api/object-classes/{id}/fields/`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct FieldRequest {
    #[schema(max_length = 100)]
    label: String,
    /// Unique in the class; records carry the value as `field_<alias>`.
    #[schema(max_length = 100)]
    alias: String,
    #[serde(rename = "type")]
    field_type: FieldType,
}

/// `POST /api/object-classes/{id}/permissions/`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct GrantRequest {
    /// The user who may then create records in the class.
    user: i64,
}

/// `POST /api/object-records/`; field values travel as `field_<alias>` members.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct RecordRequest {
    #[schema(max_length = 255)]
    object_name: String,
    object_class: i64,
}

/// `POST /api/object-records/uploads/`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct UploadRequest {
    /// The class the records go into.
    object_class: i64,
    /// Its document field that holds each file.
    object_class_field: i64,
}

/// `POST /api/initialize-tenant`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct TenantRequest {
    /// The tenant's database name (letters, digits, `_`).
    database_name: String,
    #[schema(max_length = 255)]
    client_label: String,
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "intake",
        description = "Records platform intake: REST API (tokens, classes, fields, records, uploads), Event History API and operations endpoints. The upload WebSocket (`/ws/object-records/uploads/{id}/`) is described in docs/PROTOCOL.md.",
    ),
    paths(
        super::health::healthz,
        super::health::ready,
        super::health::metrics,
        super::auth::obtain_token,
        super::auth::refresh_token,
        super::auth::ws_ticket,
        super::auth::me,
        super::classes::create_class,
        super::classes::list_classes,
        super::classes::get_class,
        super::classes::create_field,
        super::classes::list_fields,
        super::classes::grant,
        super::records::create_record,
        super::records::list_records,
        super::records::get_record,
        super::records::record_history,
        super::uploads::create_upload,
        super::uploads::list_uploads,
        super::uploads::get_upload,
        super::uploads::file_parts,
        super::uploads::file_parts_checked,
        super::uploads::cancel_file,
        super::history::initialize_tenant,
        super::history::delete_tenant,
        super::history::upload_url,
        super::history::create_event,
        super::history::list_events,
        super::history::event_file,
        openapi_json,
        reference_page,
    ),
    components(schemas(
        TokenRequest,
        RefreshRequest,
        ClassRequest,
        FieldType,
        FieldRequest,
        GrantRequest,
        RecordRequest,
        UploadRequest,
        TenantRequest
    )),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Tokens (`Authorization: JWT <access>` or `Bearer <access>`) and socket tickets"),
        (name = "classes", description = "Object classes, their fields and grants"),
        (name = "records", description = "Object records and their history"),
        (name = "uploads", description = "Upload transactions (the socket does the rest)"),
        (name = "history", description = "Event History API (`X-API-Key`, `X-Client-Id`)"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// The security schemes the annotations name.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "jwt",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`JWT <access token>` (or `Bearer <access token>`)",
            ))),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The Event History service key",
            ))),
        );
        components.add_security_scheme(
            "client_id",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Client-Id",
                "The tenant's client id",
            ))),
        );
    }
}

/// The document as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/docs/", get(reference_page))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
async fn openapi_json() -> impl IntoResponse {
    Json(document())
}

/// A browsable reference rendered from `/openapi.json`, served offline.
#[utoipa::path(get, path = "/docs/", tag = "operations",
    responses((status = 200, description = "An HTML page", content_type = "text/html", body = String)))]
async fn reference_page() -> impl IntoResponse {
    Html(include_str!("openapi/reference.html"))
}
