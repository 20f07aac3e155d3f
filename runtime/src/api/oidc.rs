//! HTTP routes of the built-in OpenID Connect provider and `/api/v1/me`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use super::auth::{Authenticated, ClientAddr};
use crate::Runtime;
use crate::identity::{CodeRequest, IdentityError, Role, TokenResponse};

/// The provider's routes, to merge into the application.
pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oidc/jwks", get(jwks))
        .route(
            "/oidc/authorize",
            get(authorize_form).post(authorize_submit),
        )
        .route("/oidc/token", axum::routing::post(token))
        .route("/oidc/userinfo", get(userinfo))
        .route("/oidc/logout", axum::routing::post(logout))
        .route("/api/v1/me", get(me))
        .route(
            "/api/v1/identity/keys/rotate",
            axum::routing::post(rotate_keys),
        )
}

/// Start a signing-key rollover (operators): new tokens are signed with a
/// new key; the previous one stays in the JWKS until its tokens expire.
async fn rotate_keys(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !p.has_role(Role::Operator) {
        return Err(ApiError::Forbidden(
            "rotating signing keys needs the operator role".into(),
        ));
    }
    let kid = rt.identity.rotate_keys().await?;
    rt.governance
        .audit
        .append(crate::audit::AuditEvent {
            actor: rt.identity.person(&p).into_string(),
            action: "identity.key_rotated".into(),
            target: format!("signing-key:{kid}"),
            hospital_id: None,
            details: json!({}),
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(
        json!({ "active_kid": kid, "jwks": rt.identity.jwks() }),
    ))
}

async fn discovery(State(rt): State<Arc<Runtime>>) -> Json<serde_json::Value> {
    let iss = rt.identity.issuer();
    Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oidc/authorize"),
        "token_endpoint": format!("{iss}/oidc/token"),
        "userinfo_endpoint": format!("{iss}/oidc/userinfo"),
        "jwks_uri": format!("{iss}/oidc/jwks"),
        "end_session_endpoint": format!("{iss}/oidc/logout"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": ["openid", "profile"],
        "claims_supported": ["sub", "name", "roles", "hospital_id", "vendor_id", "national_id", "health_id"],
    }))
}

async fn jwks(State(rt): State<Arc<Runtime>>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(rt.identity.jwks()),
    )
}

async fn userinfo(Authenticated(p): Authenticated) -> Json<serde_json::Value> {
    Json(json!({
        "sub": p.subject, "name": p.name, "roles": p.roles,
        "hospital_id": p.hospital_id, "vendor_id": p.vendor_id,
        "national_id": p.national_id, "health_id": p.health_id,
    }))
}

/// The caller, and the person the platform keys them as (`person`: the
/// user id, or `issuer#subject` for a trusted external issuer's token).
async fn me(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
) -> Json<serde_json::Value> {
    Json(json!({ "person": rt.identity.person(&p), "principal": p }))
}

// ----- authorization code flow -----

#[derive(Debug, Deserialize, Default)]
struct AuthorizeParams {
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// An error page: never redirect to an unchecked URI.
fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"vi\"><meta charset=\"utf-8\"><title>VNeID (demo)</title>\
         <body><h1>Không thể đăng nhập / Cannot sign in</h1><p>{}</p></body></html>",
        escape(message)
    );
    (status, Html(body)).into_response()
}

async fn check_request(rt: &Runtime, p: &AuthorizeParams) -> Result<CodeRequest, Response> {
    let bad = |m: &str| error_page(StatusCode::BAD_REQUEST, m);
    let client = rt
        .identity
        .client(&p.client_id)
        .await
        .map_err(|e| error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?
        .ok_or_else(|| bad("unknown client_id"))?;
    if !client.redirect_uris.iter().any(|u| u == &p.redirect_uri) {
        return Err(bad("redirect_uri is not registered for this client"));
    }
    if p.response_type != "code" {
        return Err(bad("response_type must be `code`"));
    }
    if p.code_challenge_method != "S256" {
        return Err(bad("PKCE is required with code_challenge_method=S256"));
    }
    let challenge_ok = p.code_challenge.len() == 43
        && base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&p.code_challenge)
            .is_ok();
    if !challenge_ok {
        return Err(bad(
            "code_challenge must be a base64url SHA-256 (43 characters)",
        ));
    }
    if p.state.len() > 512 || p.nonce.len() > 512 || p.scope.len() > 512 {
        return Err(bad("state, nonce and scope are at most 512 characters"));
    }
    Ok(CodeRequest {
        client_id: p.client_id.clone(),
        redirect_uri: p.redirect_uri.clone(),
        code_challenge: p.code_challenge.clone(),
        scope: if p.scope.is_empty() {
            "openid".into()
        } else {
            p.scope.clone()
        },
        nonce: (!p.nonce.is_empty()).then(|| p.nonce.clone()),
    })
}

async fn authorize_form(
    State(rt): State<Arc<Runtime>>,
    Query(p): Query<AuthorizeParams>,
) -> Response {
    match check_request(&rt, &p).await {
        Ok(_) => login_page(StatusCode::OK, &p, None),
        Err(page) => page,
    }
}

async fn authorize_submit(
    State(rt): State<Arc<Runtime>>,
    ClientAddr(from): ClientAddr,
    Form(p): Form<AuthorizeParams>,
) -> Response {
    let req = match check_request(&rt, &p).await {
        Ok(req) => req,
        Err(page) => return page,
    };
    let user = match rt
        .identity
        .authenticate(&p.username, &p.password, from)
        .await
    {
        Ok(user) => user,
        Err(IdentityError::InvalidCredentials) => {
            return login_page(
                StatusCode::UNAUTHORIZED,
                &p,
                Some("Sai tên đăng nhập hoặc mật khẩu / Wrong username or password"),
            );
        }
        Err(IdentityError::Throttled { retry_after_secs }) => {
            let message = format!(
                "Quá nhiều lần đăng nhập sai, hãy thử lại sau {retry_after_secs} giây / \
                 Too many failed sign-in attempts, try again in {retry_after_secs} s"
            );
            let mut page = login_page(StatusCode::TOO_MANY_REQUESTS, &p, Some(&message));
            page.headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs.into());
            return page;
        }
        Err(IdentityError::Busy) => {
            let mut page = login_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &p,
                Some("Hệ thống đang bận, hãy thử lại / Sign-in is busy, try again"),
            );
            page.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return page;
        }
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let code = match rt.identity.create_code(&user.id, &req).await {
        Ok(code) => code,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let sep = if req.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    let mut location = format!(
        "{}{sep}code={}",
        req.redirect_uri,
        crate::query::encode(&code)
    );
    if !p.state.is_empty() {
        location.push_str(&format!("&state={}", crate::query::encode(&p.state)));
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
    )
        .into_response()
}

fn login_page(status: StatusCode, p: &AuthorizeParams, error: Option<&str>) -> Response {
    let hidden = [
        ("response_type", &p.response_type),
        ("client_id", &p.client_id),
        ("redirect_uri", &p.redirect_uri),
        ("state", &p.state),
        ("scope", &p.scope),
        ("nonce", &p.nonce),
        ("code_challenge", &p.code_challenge),
        ("code_challenge_method", &p.code_challenge_method),
    ]
    .iter()
    .map(|(k, v)| {
        format!(
            "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
            escape(v)
        )
    })
    .collect::<String>();
    let error = error
        .map(|e| format!("<p role=\"alert\" style=\"color:#b00\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Đăng nhập VNeID (demo) / Sign in</title></head>
<body style="font-family:sans-serif;max-width:28em;margin:3em auto">
<h1>Đăng nhập bằng định danh điện tử<br><small>Sign in with your e-ID (demo provider)</small></h1>
{error}
<form method="post" action="/oidc/authorize">{hidden}
<p><label>Tên đăng nhập hoặc số CCCD / Username or citizen ID<br><input name="username" value="{username}" autocomplete="username" required></label></p>
<p><label>Mật khẩu / Password<br><input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button type="submit">Đăng nhập / Sign in</button></p>
</form></body></html>"#,
        username = escape(&p.username),
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

// ----- token endpoint -----

#[derive(Debug, Deserialize)]
struct TokenParams {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    code_verifier: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    refresh_token: String,
    #[serde(default)]
    scope: String,
}

/// An OAuth 2.0 error response (RFC 6749 §5.2).
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// `Retry-After` seconds, for throttled and busy answers.
    retry_after: Option<u64>,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        let status = if error == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        Self {
            status,
            error,
            description: description.into(),
            retry_after: None,
        }
    }
}

impl From<IdentityError> for OAuthError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Invalid(m) => Self::new("invalid_grant", m),
            IdentityError::InvalidCredentials => {
                Self::new("invalid_client", "client authentication failed")
            }
            e @ IdentityError::Throttled { retry_after_secs } => Self {
                status: StatusCode::TOO_MANY_REQUESTS,
                error: "temporarily_unavailable",
                description: e.to_string(),
                retry_after: Some(retry_after_secs),
            },
            e @ IdentityError::Busy => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                error: "temporarily_unavailable",
                description: e.to_string(),
                retry_after: Some(1),
            },
            other => {
                tracing::error!(error = %other, "token endpoint failure");
                Self {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    error: "server_error",
                    description: "internal error".into(),
                    retry_after: None,
                }
            }
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({ "error": self.error, "error_description": self.description })),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// Client id and secret from `Authorization: Basic` or the form.
fn client_credentials(
    headers: &HeaderMap,
    p: &TokenParams,
) -> Result<(String, Option<String>), OAuthError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let invalid = || OAuthError::new("invalid_client", "malformed Basic authorization");
        let value = value.to_str().map_err(|_| invalid())?;
        let encoded = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
            .ok_or_else(invalid)?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| invalid())?;
        let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
        let (id, secret) = decoded.split_once(':').ok_or_else(invalid)?;
        return Ok((crate::query::decode(id), Some(crate::query::decode(secret))));
    }
    if p.client_id.is_empty() {
        return Err(OAuthError::new("invalid_client", "client_id is required"));
    }
    let secret = (!p.client_secret.is_empty()).then(|| p.client_secret.clone());
    Ok((p.client_id.clone(), secret))
}

async fn token(
    State(rt): State<Arc<Runtime>>,
    ClientAddr(from): ClientAddr,
    headers: HeaderMap,
    form: Result<Form<TokenParams>, axum::extract::rejection::FormRejection>,
) -> Result<Response, OAuthError> {
    // A body the framework cannot read is still answered as RFC 6749 says.
    let Form(p) = form.map_err(|e| OAuthError::new("invalid_request", e.body_text()))?;
    let id = &rt.identity;
    let (client_id, secret) = client_credentials(&headers, &p)?;
    // A confidential client must authenticate; a public one must not
    // pretend to.
    let client = match &secret {
        Some(secret) => id.authenticate_client(&client_id, secret, from).await?,
        None => match id.client(&client_id).await? {
            Some(c) if !c.confidential => c,
            _ => {
                return Err(OAuthError::new(
                    "invalid_client",
                    "client authentication failed",
                ));
            }
        },
    };
    let tokens: TokenResponse = match p.grant_type.as_str() {
        "authorization_code" => {
            id.redeem_code(&p.code, &client.id, &p.redirect_uri, &p.code_verifier)
                .await?
        }
        "refresh_token" => id.refresh(&p.refresh_token, &client.id).await?,
        "client_credentials" => {
            if !client.confidential || client.hospital_id.is_none() {
                return Err(OAuthError::new(
                    "unauthorized_client",
                    "client credentials are for hospital service clients",
                ));
            }
            let scope = if p.scope.is_empty() {
                "service"
            } else {
                &p.scope
            };
            id.tokens_for_client(&client, scope)?
        }
        other => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!("grant_type `{other}` is not supported"),
            ));
        }
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(tokens)).into_response())
}

#[derive(Debug, Deserialize)]
struct LogoutParams {
    #[serde(default)]
    refresh_token: String,
}

async fn logout(
    State(rt): State<Arc<Runtime>>,
    Form(p): Form<LogoutParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if p.refresh_token.is_empty() {
        return Err(ApiError::BadRequest("refresh_token is required".into()));
    }
    let revoked = rt.identity.revoke_refresh(&p.refresh_token).await?;
    Ok(Json(json!({ "revoked": revoked })))
}

// ----- helpers -----

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
