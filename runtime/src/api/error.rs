//! The API's one error type: a status and a JSON body naming what went
//! wrong, `{"error":{"code","message","message_vi"}}`, in English and
//! Vietnamese. The framework's own rejections (malformed JSON, a wrong
//! content type, bad query parameters) become one of these too.

use axum::Json;
use axum::extract::rejection::{
    BytesRejection, FormRejection, JsonRejection, PathRejection, QueryRejection,
};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::sandbox::CallError;
use crate::text_limits::TooLong;

/// axum's default request body limit, which every JSON route keeps.
pub const DEFAULT_BODY_LIMIT: usize = 2 << 20;

/// Marks a response that is already in the API's error shape.
#[derive(Debug, Clone, Copy)]
pub struct ErrorShaped;

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
    /// The caller's facility or vendor is suspended in the network
    /// register (403), with the exact message in both languages.
    #[error("{message}")]
    OrganisationSuspended { message: String, message_vi: String },
    /// Invalid input with what is wrong where (422), e.g. an import's
    /// rows with their line numbers in `error.details`.
    #[error("{message}")]
    UnprocessableDetails {
        message: String,
        details: serde_json::Value,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    /// A free-text field over its documented maximum (422).
    #[error(transparent)]
    TooLong(#[from] TooLong),
    /// The body's content type is not one the route reads (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The route exists, but not with this method (405).
    #[error("{0}")]
    MethodNotAllowed(String),
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
            Self::OrganisationSuspended { .. } => (StatusCode::FORBIDDEN, "organisation_suspended"),
            Self::UnprocessableDetails { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Self::TooLong(_) => (StatusCode::UNPROCESSABLE_ENTITY, "too_long"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
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

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    /// The machine-readable code of this error (`error.code`).
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    /// The message in Vietnamese: the exact refusal where it is known,
    /// otherwise what the code means (the English message has the detail).
    pub fn message_vi(&self) -> String {
        let text = match self {
            Self::TooLong(e) => return e.message_vi(),
            Self::OrganisationSuspended { message_vi, .. } => return message_vi.clone(),
            Self::PayloadTooLarge { limit } => {
                return format!("Nội dung gửi lên vượt quá giới hạn {limit} byte.");
            }
            Self::NotFound(_) => "Không tìm thấy địa chỉ hoặc đối tượng được yêu cầu.",
            Self::BadRequest(_) => "Yêu cầu không hợp lệ.",
            Self::Unauthorized(_) => "Cần đăng nhập: thiếu hoặc sai mã truy cập.",
            Self::Forbidden(_) => "Bạn không có quyền thực hiện thao tác này.",
            Self::Unavailable(_) => "Mô-đun tạm thời không sẵn sàng.",
            Self::Suspended(_) => "Mô-đun đã bị đình chỉ.",
            Self::Conflict(_) => "Không thực hiện được vì trạng thái đã thay đổi.",
            Self::Unprocessable(_) | Self::UnprocessableDetails { .. } => "Dữ liệu không hợp lệ.",
            Self::Gone(_) => "Đã hết hạn hoặc đã bị thu hồi.",
            Self::TooManyRequests(_) => "Quá nhiều yêu cầu; hãy thử lại sau.",
            Self::UnsupportedMediaType(_) => "Kiểu nội dung (Content-Type) không được hỗ trợ.",
            Self::MethodNotAllowed(_) => "Địa chỉ này không nhận phương thức HTTP này.",
            Self::Call(CallError::Deadline { .. }) => "Mô-đun xử lý quá thời gian cho phép.",
            Self::Call(CallError::Denied(_)) => "Mô-đun không được cấp quyền dùng chức năng này.",
            Self::Call(CallError::Busy(_)) => "Hệ thống đang bận; hãy thử lại sau.",
            Self::Call(_) => "Mô-đun gặp lỗi khi xử lý yêu cầu.",
            Self::Internal(_) => "Lỗi hệ thống.",
        };
        text.to_owned()
    }

    /// An error for a bare status and text, as the framework answers them.
    pub fn from_status(status: StatusCode, message: String) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::BadRequest(message),
            StatusCode::UNAUTHORIZED => Self::Unauthorized(message),
            StatusCode::FORBIDDEN => Self::Forbidden(message),
            StatusCode::NOT_FOUND => Self::NotFound(message),
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed(message),
            StatusCode::CONFLICT => Self::Conflict(message),
            StatusCode::GONE => Self::Gone(message),
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge {
                limit: DEFAULT_BODY_LIMIT,
            },
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(message),
            StatusCode::UNPROCESSABLE_ENTITY => Self::Unprocessable(message),
            StatusCode::TOO_MANY_REQUESTS => Self::TooManyRequests(message),
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(message),
            s if s.is_client_error() => Self::BadRequest(message),
            _ => Self::Internal(message),
        }
    }
}

/// A rejection of the framework's extractors, as an API error.
fn rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge {
            limit: DEFAULT_BODY_LIMIT,
        };
    }
    ApiError::from_status(status, text)
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        rejection(e.status(), e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        rejection(e.status(), e.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        rejection(e.status(), e.body_text())
    }
}

impl From<FormRejection> for ApiError {
    fn from(e: FormRejection) -> Self {
        rejection(e.status(), e.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        rejection(e.status(), e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let mut error = json!({
            "code": code,
            "message": self.to_string(),
            "message_vi": self.message_vi(),
        });
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
                CallError::TooManyHeaders { limit, .. } => {
                    Some(json!({ "response_headers": limit }))
                }
                CallError::HeaderTooLarge { limit, .. } => {
                    Some(json!({ "response_header_bytes": limit }))
                }
                _ => None,
            };
            if let Some(limit) = limit {
                error["limit"] = limit;
            }
        }
        if let Self::UnprocessableDetails { details, .. } = &self {
            error["details"] = details.clone();
        }
        if let Self::PayloadTooLarge { limit } = &self {
            error["limit"] = json!({ "request_bytes": limit });
        }
        if let Self::TooLong(e) = &self {
            error["field"] = json!(e.field);
            error["limit"] = json!({ "characters": e.max });
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        response.extensions_mut().insert(ErrorShaped);
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
