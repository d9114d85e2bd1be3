//! `GET /healthz` (the process answers) and `GET /readyz` (its database and object
//! store answer too).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::state::AppState;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(ready))
}

async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (db, store) = tokio::join!(state.db.ping(), state.store.ping());
    let status = |r: bool| if r { "ok" } else { "unavailable" };
    let all = db.is_ok() && store.is_ok();
    if let Err(e) = &db {
        tracing::warn!(error = %e, "readiness: database");
    }
    if let Err(e) = &store {
        tracing::warn!(error = %e, "readiness: object store");
    }
    (
        if all {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(json!({
            "status": status(all),
            "database": status(db.is_ok()),
            "object_store": status(store.is_ok()),
        })),
    )
}
