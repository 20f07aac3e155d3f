//! The framework's extractors with their rejections as [`ApiError`], so a
//! malformed body or query gets the API's JSON error shape, not plain text.

use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::ApiError;

/// A JSON body (and a JSON answer): `axum::Json` whose rejection is an
/// [`ApiError`].
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query parameters whose rejection is an [`ApiError`].
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Path parameters whose rejection is an [`ApiError`].
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// A form body whose rejection is an [`ApiError`].
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Form), rejection(ApiError))]
pub struct Form<T>(pub T);

impl<T, S> axum::extract::OptionalFromRequest<S> for Json<T>
where
    axum::Json<T>:
        axum::extract::OptionalFromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(
        req: axum::extract::Request,
        state: &S,
    ) -> Result<Option<Self>, ApiError> {
        let json =
            <axum::Json<T> as axum::extract::OptionalFromRequest<S>>::from_request(req, state)
                .await?;
        Ok(json.map(|axum::Json(v)| Json(v)))
    }
}

/// Refuse a body sent as anything but JSON (none declared is taken as JSON),
/// for routes that read their body themselves.
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or_default())
        .is_none_or(|ct| {
            let mime = ct.split(';').next().unwrap_or("").trim();
            mime.eq_ignore_ascii_case("application/json")
        });
    if json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(
            "send the body as `Content-Type: application/json`".into(),
        ))
    }
}

/// Read a request body of at most `limit` bytes as it streams in: a
/// declared `Content-Length` over the limit is refused before anything is
/// read, and a chunked body is cut off as soon as it passes the limit.
pub async fn read_limited(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::BadRequest(format!("could not read the request body: {e}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::HeaderMap;

    #[tokio::test]
    async fn a_streamed_body_is_cut_off_past_the_limit() {
        let chunks = (0..8).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 512]));
        let body = Body::from_stream(futures::stream::iter(chunks));
        let err = read_limited(&HeaderMap::new(), body, 1024)
            .await
            .expect_err("over the limit");
        assert!(matches!(err, ApiError::PayloadTooLarge { limit: 1024 }));
        let body = Body::from(vec![b'y'; 1024]);
        let read = read_limited(&HeaderMap::new(), body, 1024)
            .await
            .expect("at the limit");
        assert_eq!(read.len(), 1024);
    }
}
