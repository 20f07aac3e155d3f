//! HTTP routes: health, metrics, the JSON API and plugin routes.

mod consent;
pub mod console;
mod error;
pub mod fhir;
mod governance;
mod imaging_share;
mod notify;
mod payment;
mod plugin_route;
mod room_page;
mod video;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::json;
use tracing::Instrument;

pub use error::ApiError;

use crate::Runtime;
use crate::metrics::HttpLabels;

/// The request id of the current request (from `x-request-id` or new).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The runtime's HTTP application.
pub fn app(runtime: Arc<Runtime>) -> Router {
    app_with(runtime, Router::new())
}

/// The application with `extra` routes served behind the same middleware
/// (request ids, spans, metrics); the benchmarks put their native baseline
/// handler here so both sides pay the same per-request costs.
pub fn app_with(runtime: Arc<Runtime>, extra: Router<Arc<Runtime>>) -> Router {
    Router::new()
        .merge(extra)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/plugins", get(list_plugins))
        .route("/api/v1/hospitals", get(list_hospitals))
        .route("/hospitals/{*rest}", any(plugin_route::call))
        .merge(crate::identity::routes())
        .merge(governance::routes())
        .merge(fhir::routes())
        .merge(consent::routes())
        .merge(imaging_share::routes())
        .merge(video::routes())
        .merge(crate::video::ws::routes())
        .merge(room_page::routes())
        .merge(console::routes())
        .merge(payment::routes())
        .merge(notify::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            runtime.clone(),
            request_context,
        ))
        .with_state(runtime)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn metrics(State(rt): State<Arc<Runtime>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        rt.metrics.encode(),
    )
}

async fn list_plugins(State(rt): State<Arc<Runtime>>) -> impl IntoResponse {
    Json(json!({ "plugins": rt.plugins.statuses() }))
}

async fn list_hospitals(State(rt): State<Arc<Runtime>>) -> impl IntoResponse {
    Json(json!({ "hospitals": rt.hospitals.list() }))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// Give every request an id and a span, and count its response.
async fn request_context(State(rt): State<Arc<Runtime>>, mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    // A plugin frame's path carries its ticket: keep it out of the logs.
    let path = match req.uri().path() {
        p if p.starts_with("/console/frame/") => "/console/frame/…",
        p => p,
    };
    let span = tracing::info_span!("request", method = %req.method(), path = %path, request_id = %id,
        status = tracing::field::Empty, ms = tracing::field::Empty);
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    span.record("ms", started.elapsed().as_secs_f64() * 1e3);
    rt.metrics
        .http_responses
        .get_or_create(&HttpLabels { status })
        .inc();
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}
