//! HTTP routes: health, metrics, the JSON API and plugin routes.

pub mod auth;
mod consent;
pub mod console;
mod error;
pub mod extract;
pub mod fhir;
mod governance;
mod html;
mod imaging_share;
mod network;
mod notify;
mod oidc;
mod oidc_login;
mod payment;
mod plugin_route;
mod room_page;
mod staff;
mod video;
pub mod video_dev;
mod video_ws;

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

pub use auth::{
    Authenticated, ClientAddr, MaybeAuthenticated, bearer_token, principal_from_headers,
};
pub use error::{ApiError, DEFAULT_BODY_LIMIT, ErrorShaped};

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
        .merge(oidc::routes())
        .merge(governance::routes())
        .merge(fhir::routes())
        .merge(consent::routes())
        .merge(imaging_share::routes())
        .merge(video::routes())
        .merge(video_ws::routes())
        .merge(room_page::routes())
        .merge(console::routes())
        .merge(payment::routes())
        .merge(notify::routes())
        .merge(network::routes())
        .merge(staff::routes())
        .merge(oidc_login::routes())
        .fallback(not_found)
        .layer(middleware::from_fn(uniform_errors))
        .layer(middleware::from_fn(frame_ancestors))
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

/// Largest error body [`uniform_errors`] reads to rewrite it.
const MAX_ERROR_BODY: usize = 1 << 20;

/// The last resort behind every route: an error answer that is not yet in
/// the API's shape (the framework's plain-text rejections, an empty 405)
/// becomes `{"error":{...}}`, or an OperationOutcome under `/fhir/`.
/// Left alone: a plugin's own answers, HTML pages meant for a person's
/// browser (already bilingual), and OAuth's own `{"error":"…"}` (RFC 6749).
async fn uniform_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let status = response.status();
    let fhir = path == "/fhir" || path.starts_with("/fhir/");
    if !(status.is_client_error() || status.is_server_error())
        || (!fhir && response.extensions().get::<ErrorShaped>().is_some())
        || path.starts_with("/hospitals/")
        || path.starts_with("/console/frame/")
    {
        return response;
    }
    let mime = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match mime.as_str() {
        "text/html" | "application/fhir+json" => return response,
        "application/json" | "text/plain" | "" => {}
        _ if !fhir => return response,
        _ => {}
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let json: Option<serde_json::Value> = (mime == "application/json")
        .then(|| serde_json::from_slice(&bytes).ok())
        .flatten();
    let message = match &json {
        Some(v) => v["error"]["message"].as_str().map(str::to_owned),
        None => Some(String::from_utf8_lossy(&bytes).trim().to_owned()),
    }
    .filter(|m| !m.is_empty())
    .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let mut rebuilt = match json {
        // Already `{"error":{"code","message"}}`: add the Vietnamese.
        Some(mut v) if !fhir && v["error"]["code"].is_string() => {
            if !v["error"]["message_vi"].is_string() {
                v["error"]["message_vi"] =
                    json!(ApiError::from_status(status, message).message_vi());
            }
            (status, Json(v)).into_response()
        }
        // Some other JSON (OAuth's errors): not ours to reshape.
        Some(v) if !fhir => (status, Json(v)).into_response(),
        _ if fhir => fhir::FhirError::from_status(status, message).into_response(),
        _ => ApiError::from_status(status, message).into_response(),
    };
    *rebuilt.status_mut() = status;
    // Keep what the original said besides its body: Allow, Retry-After…
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE
            && name != header::CONTENT_LENGTH
            && !rebuilt.headers().contains_key(name)
        {
            rebuilt.headers_mut().append(name.clone(), value.clone());
        }
    }
    rebuilt
}

/// The path as logged: paths that carry a secret keep it out of the logs.
fn logged_path(path: &str) -> &str {
    match path {
        // A plugin frame's path carries its ticket.
        p if p.starts_with("/console/frame/") => "/console/frame/…",
        // An invitation's path is its one-time token.
        p if p.starts_with("/invite/") => "/invite/…",
        p => p,
    }
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
    let path = logged_path(req.uri().path());
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

/// The policy every page gets unless it already forbids framing: no site
/// may frame it (clickjacking of the login form, rooms, payment pages).
const NO_FRAMING: &str = "frame-ancestors 'none'";

/// Forbid framing of every page the platform serves. Appended as another
/// policy, never replacing one a route or plugin set: browsers enforce
/// each, so a plugin cannot loosen it. The console's plugin frames
/// (`/console/frame/`) are framed by the console itself and carry
/// `frame-ancestors 'self'` from their route.
async fn frame_ancestors(req: Request, next: Next) -> Response {
    let console_frame = req.uri().path().starts_with("/console/frame/");
    let mut response = next.run(req).await;
    if console_frame {
        return response;
    }
    let headers = response.headers_mut();
    // Pages: HTML, XHTML, SVG, or anything a browser might sniff as one.
    let page = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| {
            let t = t.trim_start().to_ascii_lowercase();
            [
                "text/html",
                "application/xhtml+xml",
                "image/svg+xml",
                "text/xml",
                "application/xml",
            ]
            .iter()
            .any(|p| t.starts_with(p))
        });
    let forbidden = headers
        .get_all(header::CONTENT_SECURITY_POLICY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(';')
                .any(|d| d.split_whitespace().collect::<Vec<_>>() == ["frame-ancestors", "'none'"])
        });
    if page && !forbidden {
        headers.append(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(NO_FRAMING),
        );
    }
    if page && !headers.contains_key(header::X_FRAME_OPTIONS) {
        // For browsers without CSP level 2.
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::logged_path;

    #[test]
    fn secrets_in_paths_stay_out_of_the_logs() {
        assert_eq!(logged_path("/invite/abc123secret"), "/invite/…");
        assert_eq!(logged_path("/console/frame/ticket/x"), "/console/frame/…");
        assert_eq!(logged_path("/api/v1/me"), "/api/v1/me");
    }
}
