//! Signing in through an external OpenID Connect provider (VNeID, a
//! hospital's own identity provider): the platform as relying party. The
//! logic is in `identity::login`; these routes only carry it over HTTP and
//! answer every refusal with a readable page.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::auth::ClientAddr;
use super::oidc::{AuthorizeParams, check_request, redirect_with_code, refusal_page};
use crate::Runtime;
use crate::identity::login::LoginError;

pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/oidc/sign-in-options", get(options))
        .route("/oidc/external/{n}/start", get(start))
        .route("/oidc/external/callback", get(callback))
}

/// What a sign-in screen offers: the external providers' buttons, and the
/// demo accounts in a demo run only.
async fn options(State(rt): State<Arc<Runtime>>) -> Response {
    let demo = rt.identity.demo_mode().then(|| {
        crate::identity::demo_accounts()
            .iter()
            .map(|a| json!({ "username": a.username, "password": a.password, "name": a.display_name, "role": a.role }))
            .collect::<Vec<_>>()
    });
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "providers": rt.identity.login_providers(), "demo_accounts": demo })),
    )
        .into_response()
}

fn refusal(e: &LoginError) -> Response {
    // People see a plain reason; operators get the detail.
    match e {
        LoginError::Identity(inner) => tracing::error!(error = %inner, "external sign-in failed"),
        LoginError::ProviderUnavailable(why) => {
            tracing::warn!(error = %why, "identity provider unreachable")
        }
        _ => {}
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut page = refusal_page(status, &e.message_vi(), &e.message_en());
    if let LoginError::Throttled { retry_after_secs } = e {
        page.headers_mut()
            .insert(header::RETRY_AFTER, (*retry_after_secs).into());
    }
    page
}

/// Start signing in through provider `n` for the authorization request in
/// the query (the same parameters as `/oidc/authorize`).
async fn start(
    State(rt): State<Arc<Runtime>>,
    ClientAddr(from): ClientAddr,
    Path(n): Path<String>,
    Query(p): Query<AuthorizeParams>,
) -> Response {
    let req = match check_request(&rt, &p).await {
        Ok(req) => req,
        Err(page) => return page,
    };
    let Ok(n) = n.parse::<usize>() else {
        return refusal(&LoginError::UnknownProvider);
    };
    let locales = match p.lang() {
        super::oidc::Lang::Vi => "vi",
        super::oidc::Lang::En => "en",
    };
    match rt
        .identity
        .start_external_login(n, &req, p.state(), Some(locales), from)
        .await
    {
        Ok(url) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, url),
                (header::CACHE_CONTROL, "no-store".into()),
            ],
        )
            .into_response(),
        Err(e) => refusal(&e),
    }
}

#[derive(Debug, Deserialize)]
struct CallbackParams {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: Option<String>,
}

/// The provider sends the person back here: finish the sign-in, then
/// continue the console's request with the platform's own code.
async fn callback(
    State(rt): State<Arc<Runtime>>,
    ClientAddr(from): ClientAddr,
    query: Result<Query<CallbackParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // A mangled query is a bad sign-in, answered with a page too.
    let Ok(Query(p)) = query else {
        return refusal(&LoginError::BadState);
    };
    let finished = match rt
        .identity
        .finish_external_login(p.code.as_deref(), p.error.as_deref(), &p.state, from)
        .await
    {
        Ok(f) => f,
        Err(e) => return refusal(&e),
    };
    match rt
        .identity
        .create_code(&finished.user.id, &finished.request)
        .await
    {
        Ok(code) => redirect_with_code(&finished.request, &code, &finished.state),
        Err(e) => refusal(&LoginError::Identity(e)),
    }
}
