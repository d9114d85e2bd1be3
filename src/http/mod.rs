//! The HTTP edge: shared state, one router merged from each module's `router()`,
//! and JSON answers for unknown routes and wrong methods. `ui` is the upload page.

pub mod auth;
pub mod classes;
pub mod health;
pub mod json;
pub mod pagination;
pub mod records;
pub mod ui;
pub mod uploads;

use std::sync::Arc;

use axum::Router;
use axum::http::Method;
use tower_http::trace::TraceLayer;

use crate::auth::JwtKeys;
use crate::config::Settings;
use crate::db::Db;
use crate::error::ApiError;
use crate::live::{Hub, SocketLimiter};
use crate::scan::Scanner;
use crate::store::ObjectStore;
use tokio::sync::Notify;

/// Everything a handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The settings in force.
    pub settings: Arc<Settings>,
    /// The metadata database.
    pub db: Db,
    /// The object store (embedded or external S3).
    pub store: Arc<dyn ObjectStore>,
    /// JWT keys.
    pub jwt: Arc<JwtKeys>,
    /// The antivirus scanner; `None` when no clamd is configured (scans skipped).
    pub scanner: Option<Arc<dyn Scanner>>,
    /// Wakes local upload sockets when an upload's log grows.
    pub hub: Arc<Hub>,
    /// Per-user cap on open upload sockets (per node).
    pub sockets: Arc<SocketLimiter>,
    /// Wakes local pipeline workers when a job is enqueued.
    pub workers: Arc<Notify>,
}

impl AppState {
    /// Tells local workers a job is waiting (other nodes find it by polling).
    pub fn wake_workers(&self) {
        self.workers.notify_waiters();
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(auth::router())
        .merge(classes::router())
        .merge(records::router())
        .merge(uploads::router())
        .merge(ui::router())
        .merge(crate::ws::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|method: Method| async move {
            ApiError::MethodNotAllowed(method.to_string())
        })
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
