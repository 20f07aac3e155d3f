//! Axum extractors: the caller's [`Principal`] from `Authorization: Bearer`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::ApiError;
use crate::Runtime;
use crate::identity::{IdentityError, Principal};

/// An authenticated caller; rejects with 401 when the bearer token is
/// missing or invalid.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

/// The caller when a bearer token is present; `None` without one. An
/// invalid token is still rejected with 401.
#[derive(Debug, Clone)]
pub struct MaybeAuthenticated(pub Option<Principal>);

/// The bearer token of a request: `Ok(None)` without an `Authorization`
/// header, an error when it is not a bearer token.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::Unauthorized("expected `Authorization: Bearer <token>`".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "expected `Authorization: Bearer <token>`".into(),
        ));
    }
    Ok(Some(token.trim()))
}

/// The principal of a request's bearer token, if any.
pub async fn principal_from_headers(
    rt: &Runtime,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    match bearer_token(headers)? {
        None => Ok(None),
        Some(token) => {
            let p = rt.identity.validate(token).await?;
            refuse_suspended(rt, &p)?;
            Ok(Some(p))
        }
    }
}

/// Staff of a suspended facility and users of a suspended vendor are
/// refused everywhere (docs/operations.md, "The network register"); two
/// cache lookups, no query.
pub fn refuse_suspended(rt: &Runtime, p: &Principal) -> Result<(), ApiError> {
    if let Some(h) = p.hospital_id.as_deref()
        && rt.hospitals.is_suspended(h)
    {
        return Err(facility_suspended(rt, h));
    }
    if let Some(v) = p.vendor_id.as_deref()
        && rt.network.vendor_suspended(v)
    {
        return Err(ApiError::OrganisationSuspended {
            message: format!(
                "vendor `{v}` is suspended in the network register; contact the Ministry of Health"
            ),
            message_vi: format!(
                "Nhà cung cấp `{v}` đang bị đình chỉ trong sổ đăng ký mạng lưới; hãy liên hệ Bộ Y tế."
            ),
        });
    }
    Ok(())
}

/// The refusal for a suspended facility, naming it.
pub fn facility_suspended(rt: &Runtime, hospital: &str) -> ApiError {
    let name = rt
        .hospitals
        .get(hospital)
        .map_or_else(|| hospital.to_owned(), |h| h.name);
    ApiError::OrganisationSuspended {
        message: format!(
            "{name} is suspended in the network register: its services are unavailable; contact the Ministry of Health"
        ),
        message_vi: format!(
            "{name} đang bị đình chỉ trong sổ đăng ký mạng lưới: các dịch vụ của cơ sở tạm ngừng; hãy liên hệ Bộ Y tế."
        ),
    }
}

impl FromRequestParts<Arc<Runtime>> for MaybeAuthenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        rt: &Arc<Runtime>,
    ) -> Result<Self, Self::Rejection> {
        principal_from_headers(rt, &parts.headers)
            .await
            .map(MaybeAuthenticated)
    }
}

impl FromRequestParts<Arc<Runtime>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        rt: &Arc<Runtime>,
    ) -> Result<Self, Self::Rejection> {
        principal_from_headers(rt, &parts.headers)
            .await?
            .map(Authenticated)
            .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))
    }
}

/// The address a request came from ([`crate::identity::IdentityService::client_address`]):
/// `None` when the server was not started with connection info.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl FromRequestParts<Arc<Runtime>> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        rt: &Arc<Runtime>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        Ok(Self(rt.identity.client_address(peer, forwarded)))
    }
}

/// How the identity service's refusals reach HTTP clients.
impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::InvalidToken(_)
            | IdentityError::UnknownKey(_)
            | IdentityError::UntrustedIssuer(_)
            | IdentityError::Overreach { .. }
            | IdentityError::IssuerUnavailable(_)
            | IdentityError::InvalidCredentials => ApiError::Unauthorized(e.to_string()),
            IdentityError::Invalid(m) | IdentityError::Conflict(m) => ApiError::BadRequest(m),
            IdentityError::NotFound(m) => ApiError::NotFound(m),
            IdentityError::Database(e) => ApiError::Internal(e.to_string()),
            IdentityError::Internal(m) => ApiError::Internal(m),
            IdentityError::IssuerConfig(e) => ApiError::Internal(e.to_string()),
            IdentityError::Throttled { .. } | IdentityError::Busy => {
                ApiError::TooManyRequests(e.to_string())
            }
        }
    }
}
