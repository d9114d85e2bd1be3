//! What every request leaves behind: one access log line (at the default level)
//! and the HTTP metrics, labelled by the router's matched route (`/api/…/{id}/`),
//! never the raw path, so that ids do not explode the label set. Neither records
//! the query string: the upload socket's carries the one-time ticket.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

use crate::telemetry;

/// The middleware (`axum::middleware::from_fn(observe)`).
pub async fn observe(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let path = req.uri().path().to_string();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let response = next.run(req).await;
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    telemetry::http_request(method.as_str(), &route, status, elapsed);
    tracing::info!(
        target: "intake::access",
        %method,
        %path,
        %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        %peer,
        "request"
    );
    response
}
