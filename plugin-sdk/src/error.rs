use core::fmt;

use crate::Response;
use crate::bindings::vtelehealth::platform::types;

/// An error a plugin returns from [`Plugin::handle`](crate::Plugin::handle).
///
/// Each variant maps to an HTTP status and renders as
/// `{"error":{"code":"<code>","message":"<message>"}}`:
///
/// | variant | status | code |
/// | --- | --- | --- |
/// | `BadRequest` | 400 | `bad_request` |
/// | `Forbidden` | 403 | `forbidden` |
/// | `NotFound` | 404 | `not_found` |
/// | `MethodNotAllowed` | 405 | `method_not_allowed` |
/// | `Conflict` | 409 | `conflict` |
/// | `Internal` | 500 | `internal` |
/// | `Unavailable` | 503 | `unavailable` |
/// | `Quota` | 507 | `quota_exceeded` |
///
/// Host refusals ([`types::Error`], returned by `kv` and other capability calls) convert with
/// `?`: `denied` → 403, `invalid` → 400, `not-found` → 404, `quota` → 507,
/// `unavailable` → 503.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// 400: the request is malformed.
    BadRequest(String),
    /// 403: the caller may not do this (or the host denied a capability call).
    Forbidden(String),
    /// 404: no such route or resource.
    NotFound(String),
    /// 405: the route exists but not with this method.
    MethodNotAllowed(String),
    /// 409: a conflicting change won (e.g. compare-and-swap retries exhausted).
    Conflict(String),
    /// 507 Insufficient Storage: a quota of this (hospital, plugin) pair would be exceeded.
    Quota(String),
    /// 503: a backing service failed; retrying later may succeed.
    Unavailable(String),
    /// 500: a bug or an unexpected state in the plugin.
    Internal(String),
}

impl Error {
    /// A 400 error.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }
    /// A 403 error.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }
    /// A 404 error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }
    /// A 405 error.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::MethodNotAllowed(message.into())
    }
    /// A 409 error.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }
    /// A 507 error.
    pub fn quota(message: impl Into<String>) -> Self {
        Self::Quota(message.into())
    }
    /// A 503 error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into())
    }
    /// A 500 error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::Conflict(_) => 409,
            Self::Internal(_) => 500,
            Self::Unavailable(_) => 503,
            Self::Quota(_) => 507,
        }
    }

    /// The machine-readable code in the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::Internal(_) => "internal",
            Self::Unavailable(_) => "unavailable",
            Self::Quota(_) => "quota_exceeded",
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        match self {
            Self::BadRequest(m)
            | Self::Forbidden(m)
            | Self::NotFound(m)
            | Self::MethodNotAllowed(m)
            | Self::Conflict(m)
            | Self::Internal(m)
            | Self::Unavailable(m)
            | Self::Quota(m) => m,
        }
    }

    /// The JSON error response: `{"error":{"code":...,"message":...}}` with [`Self::status`].
    pub fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code(), "message": self.message() }
        });
        Response::json(self.status(), &body)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code(), self.status(), self.message())
    }
}

impl std::error::Error for Error {}

impl From<types::Error> for Error {
    fn from(error: types::Error) -> Self {
        match error {
            types::Error::Denied(m) => Self::Forbidden(m),
            types::Error::Invalid(m) => Self::BadRequest(m),
            types::Error::NotFound(m) => Self::NotFound(m),
            types::Error::Quota(m) => Self::Quota(m),
            types::Error::Unavailable(m) => Self::Unavailable(m),
        }
    }
}

impl From<Error> for Response {
    fn from(error: Error) -> Self {
        error.into_response()
    }
}
