//! `GET /healthz` (the process answers), `GET /readyz` (its database, object store
//! and, when one is configured, clamd answer too: without clamd every upload
//! would sit retrying) and `GET /metrics` (Prometheus text, `crate::telemetry`).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use crate::error::ApiResult;
use crate::state::AppState;
use crate::telemetry::{self, Gauge};

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process answers", body = Object)))]
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database, the object store and (when configured) clamd answer.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Every dependency answers", body = Object),
        (status = 503, description = "A dependency does not answer; the body names it", body = Object)))]
pub(super) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let scanner = state.uploads.scanner.clone();
    let clamd = async move {
        match &scanner {
            Some(s) => Some(s.ping().await.map_err(|e| e.to_string())),
            None => None,
        }
    };
    let (db, store, clamd) = tokio::join!(state.db.ping(), state.store.ping(), clamd);
    let status = |r: bool| if r { "ok" } else { "unavailable" };
    if let Err(e) = &db {
        tracing::warn!(error = %e, "readiness: database");
    }
    if let Err(e) = &store {
        tracing::warn!(error = %e, "readiness: object store");
    }
    if let Some(Err(e)) = &clamd {
        tracing::warn!(error = %e, "readiness: clamd");
    }
    let clamd_ok = clamd.as_ref().is_none_or(Result::is_ok);
    let all = db.is_ok() && store.is_ok() && clamd_ok;
    let mut body = Map::new();
    body.insert("status".into(), json!(status(all)));
    body.insert("database".into(), json!(status(db.is_ok())));
    body.insert("object_store".into(), json!(status(store.is_ok())));
    if clamd.is_some() {
        body.insert("clamd".into(), json!(status(clamd_ok)));
    }
    let code = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(Value::Object(body)))
}

/// Prometheus metrics of this node, with the cluster's uploads and jobs by state.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)))]
pub(super) async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let mut gauges = Vec::new();
    for (s, n) in state.db.upload_state_counts().await? {
        gauges.push(Gauge {
            name: telemetry::UPLOADS,
            help: "Upload transactions by state.",
            labels: vec![("state", s)],
            value: n,
        });
    }
    for (kind, s, n) in state.db.job_state_counts().await? {
        gauges.push(Gauge {
            name: telemetry::JOBS,
            help: "Durable jobs by kind and state.",
            labels: vec![("kind", kind), ("state", s)],
            value: n,
        });
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        telemetry::render(&gauges),
    ))
}
