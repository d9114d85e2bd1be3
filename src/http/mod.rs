//! The HTTP edge: one router merged from each module's `router()` (and the upload
//! socket's, `crate::ws`), and JSON answers for unknown routes and wrong methods.
//! `extractor` authenticates callers; `ui` is the upload page.

pub mod auth;
pub mod classes;
pub mod extractor;
pub mod health;
pub mod history;
pub mod json;
pub mod observe;
pub mod openapi;
pub mod pagination;
pub mod records;
pub mod ui;
pub mod uploads;

use axum::Router;
use axum::http::Method;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// Which routes a process serves (`intake serve --only …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Routes {
    /// Everything.
    #[default]
    All,
    /// The records and upload API (REST and WebSocket), without the Event History API.
    Api,
    /// Only the Event History API.
    History,
}

impl Routes {
    /// Whether the Event History API is served.
    pub fn serves_history(self) -> bool {
        matches!(self, Routes::All | Routes::History)
    }

    /// Whether the records and upload API is served.
    pub fn serves_api(self) -> bool {
        matches!(self, Routes::All | Routes::Api)
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    router_for(state, Routes::All)
}

/// The HTTP application serving `routes` (health checks are always served).
pub fn router_for(state: AppState, routes: Routes) -> Router {
    let mut app = Router::new()
        .merge(health::router())
        .merge(openapi::router());
    if routes.serves_api() {
        app = app
            .merge(auth::router())
            .merge(classes::router())
            .merge(records::router())
            .merge(uploads::router())
            .merge(ui::router())
            .merge(crate::ws::router());
    }
    if routes.serves_history() {
        app = app.merge(history::router());
    }
    // tower-http answers every OPTIONS as a preflight, so the layer is there only
    // when origins are listed: without it OPTIONS stays the API's 405.
    let origins = &state.settings.server.cors_allowed_origins;
    let cors = tower::util::option_layer((!origins.is_empty()).then(|| cors(origins)));
    app.fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|method: Method| async move {
            ApiError::MethodNotAllowed(method.to_string())
        })
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(cors)
        .layer(axum::middleware::from_fn(observe::observe))
        .with_state(state)
}

/// CORS for the listed origins (`cors_allowed_origins`; `*` allows any). Credentials travel in `Authorization`, not cookies, so
/// `allow_credentials` stays off.
fn cors(origins: &[String]) -> CorsLayer {
    use axum::http::{HeaderValue, header};
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-api-key"),
        ])
        .max_age(std::time::Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        return layer.allow_origin(AllowOrigin::any());
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
        .collect();
    layer.allow_origin(AllowOrigin::list(list))
}

/// The span of one request: method and path only. The default span records the
/// whole URI, and the upload socket's query carries the one-time ticket
/// (`?uuid=…`), which must never reach the logs.
fn request_span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        version = ?req.version(),
    )
}
