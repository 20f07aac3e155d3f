//! The API's one error type: a status and a JSON body naming what went wrong.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::sandbox::CallError;

/// An error returned by any API route.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// No valid credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    #[error("request body exceeds the {limit} byte limit")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Suspended(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    /// Existed but is no longer available: expired or revoked (410).
    #[error("{0}")]
    Gone(String),
    /// A per-person limit was reached (429).
    #[error("{0}")]
    TooManyRequests(String),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "plugin_unavailable"),
            Self::Suspended(_) => (StatusCode::FORBIDDEN, "plugin_suspended"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Self::Gone(_) => (StatusCode::GONE, "gone"),
            Self::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            Self::Call(e) => {
                let status = match e {
                    CallError::Deadline { .. } => StatusCode::GATEWAY_TIMEOUT,
                    CallError::Denied(_) => StatusCode::FORBIDDEN,
                    CallError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::BAD_GATEWAY,
                };
                (status, e.code())
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let mut error = json!({ "code": code, "message": self.to_string() });
        // Name the limit a plugin hit, so operators and vendors see which.
        if let Self::Call(call) = &self {
            let limit = match call {
                CallError::Deadline { limit_ms } => Some(json!({ "deadline_ms": limit_ms })),
                CallError::Memory { limit_bytes } => Some(json!({ "memory_bytes": limit_bytes })),
                CallError::Table { limit } => Some(json!({ "table_elements": limit })),
                CallError::ResponseTooLarge { limit, .. } => {
                    Some(json!({ "response_bytes": limit }))
                }
                CallError::Busy(n) => Some(json!({ "concurrent_calls": n })),
                _ => None,
            };
            if let Some(limit) = limit {
                error["limit"] = limit;
            }
        }
        if let Self::PayloadTooLarge { limit } = &self {
            error["limit"] = json!({ "request_bytes": limit });
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
