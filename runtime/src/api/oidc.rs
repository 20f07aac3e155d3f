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
use crate::identity::{CodeRequest, IdentityError, LoginKind, Role, TokenResponse};

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
pub(super) struct AuthorizeParams {
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
    /// The page's language: `vi` (default) or `en`; wins over `ui_locales`.
    #[serde(default)]
    lang: String,
    /// OIDC's preferred languages, space-separated.
    #[serde(default)]
    ui_locales: String,
}

/// The language of the provider's pages: one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lang {
    Vi,
    En,
}

impl Lang {
    fn code(self) -> &'static str {
        match self {
            Self::Vi => "vi",
            Self::En => "en",
        }
    }

    fn other(self) -> Self {
        match self {
            Self::Vi => Self::En,
            Self::En => Self::Vi,
        }
    }

    /// `vi` or `en` text.
    fn pick<'a>(self, vi: &'a str, en: &'a str) -> &'a str {
        match self {
            Self::Vi => vi,
            Self::En => en,
        }
    }
}

impl AuthorizeParams {
    /// `lang` if set, else the first of `ui_locales` this page speaks.
    pub(super) fn lang(&self) -> Lang {
        match self.lang.as_str() {
            "en" => return Lang::En,
            "vi" => return Lang::Vi,
            _ => {}
        }
        for tag in self.ui_locales.split_whitespace() {
            let primary = tag.split('-').next().unwrap_or_default();
            if primary.eq_ignore_ascii_case("en") {
                return Lang::En;
            }
            if primary.eq_ignore_ascii_case("vi") {
                return Lang::Vi;
            }
        }
        Lang::Vi
    }

    /// The authorization request as a query string (never the password),
    /// in language `lang`.
    pub(super) fn query(&self, lang: Lang) -> String {
        [
            ("response_type", &self.response_type),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("state", &self.state),
            ("scope", &self.scope),
            ("nonce", &self.nonce),
            ("code_challenge", &self.code_challenge),
            ("code_challenge_method", &self.code_challenge_method),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}&", crate::query::encode(v)))
        .collect::<String>()
            + "lang="
            + lang.code()
    }

    /// The console's `state`, handed back with the code.
    pub(super) fn state(&self) -> &str {
        &self.state
    }
}

/// An error page: never redirect to an unchecked URI.
fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>Không thể đăng nhập<br><small lang=\"en\">Cannot sign in</small></h1><p role=\"alert\">{}</p>",
        escape(message)
    );
    page(
        status,
        Lang::Vi,
        "Không thể đăng nhập / Cannot sign in",
        &body,
    )
}

/// A refusal page for a person: the reason in Vietnamese first, English
/// second, and a way back to the console.
pub(super) fn refusal_page(status: StatusCode, vi: &str, en: &str) -> Response {
    let body = format!(
        "<h1>Không thể đăng nhập<br><small lang=\"en\">Cannot sign in</small></h1>\
         <p role=\"alert\" class=\"alert\">{}</p><p lang=\"en\" class=\"alert en\">{}</p>\
         <p><a class=\"button\" href=\"/console/\">Quay lại trang đăng nhập</a> \
         <a lang=\"en\" href=\"/console/\">Back to sign-in</a></p>",
        escape(vi),
        escape(en)
    );
    page(
        status,
        Lang::Vi,
        "Không thể đăng nhập / Cannot sign in",
        &body,
    )
}

/// The provider's pages: one styled card (the consoles' colours), no
/// script, never cached.
fn page(status: StatusCode, lang: Lang, title: &str, body: &str) -> Response {
    let html = format!(
        r#"<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;color:#1b1f24;background:#f6f8fa;line-height:1.45}}
header{{background:#0b5cad;color:#fff;padding:.6rem 1rem;display:flex;justify-content:space-between;align-items:center;flex-wrap:wrap;gap:.5rem}}
header strong{{font-size:1.15rem}} header a{{color:#fff}}
main{{max-width:30rem;margin:1.5rem auto;padding:0 1rem}}
.card{{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:1.25rem}}
h1{{font-size:1.3rem;margin:0 0 .75rem}} h1 small{{font-size:.85rem;color:#57606a;font-weight:normal}}
label{{display:block;font-weight:600;margin:.7rem 0 .2rem}}
input{{font:inherit;padding:.5rem;border:1px solid #57606a;border-radius:4px;width:100%;box-sizing:border-box}}
button,.button{{font:inherit;display:block;width:100%;box-sizing:border-box;text-align:center;padding:.6rem .9rem;margin:.9rem 0 0;border-radius:6px;border:1px solid #0b5cad;background:#0b5cad;color:#fff;cursor:pointer;text-decoration:none;min-height:2.6rem}}
.button.alt{{background:#fff;color:#0b5cad}}
.or{{display:flex;align-items:center;gap:.6rem;color:#57606a;margin:1.1rem 0 .2rem}} .or::before,.or::after{{content:"";flex:1;border-top:1px solid #d0d7de}}
.alert{{color:#b42318;border:1px solid #b42318;border-radius:6px;padding:.6rem .8rem}} .alert.en{{color:#57606a;border-color:#d0d7de}}
.hint{{color:#57606a;font-size:.9rem}}
table{{border-collapse:collapse;width:100%;font-size:.9rem}} td,th{{text-align:left;padding:.25rem .4rem;border-bottom:1px solid #d0d7de}}
details{{margin-top:1.2rem}} summary{{cursor:pointer;font-weight:600}}
:focus-visible{{outline:3px solid #f0a500;outline-offset:2px}}
</style></head>
<body><header><strong>VTelehealth</strong></header>
<main><div class="card">{body}</div></main></body></html>"#,
        lang = lang.code(),
        title = escape(title),
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// Continue an authorization request with the platform's `code`: back to
/// the client's (checked) redirect URI with its `state`.
pub(super) fn redirect_with_code(req: &CodeRequest, code: &str, state: &str) -> Response {
    let sep = if req.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    let mut location = format!(
        "{}{sep}code={}",
        req.redirect_uri,
        crate::query::encode(code)
    );
    if !state.is_empty() {
        location.push_str(&format!("&state={}", crate::query::encode(state)));
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

pub(super) async fn check_request(
    rt: &Runtime,
    p: &AuthorizeParams,
) -> Result<CodeRequest, Response> {
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
        Ok(_) => login_page(&rt, StatusCode::OK, &p, None),
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
                &rt,
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
            let mut page = login_page(&rt, StatusCode::TOO_MANY_REQUESTS, &p, Some(&message));
            page.headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs.into());
            return page;
        }
        Err(IdentityError::Busy) => {
            let mut page = login_page(
                &rt,
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
    redirect_with_code(&req, &code, &p.state)
}

fn login_page(
    rt: &Runtime,
    status: StatusCode,
    p: &AuthorizeParams,
    error: Option<&str>,
) -> Response {
    let lang = p.lang();
    let t = |vi, en| lang.pick(vi, en);
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
    .collect::<String>()
        + &format!(
            "<input type=\"hidden\" name=\"lang\" value=\"{}\">",
            lang.code()
        );
    let error = error
        .map(|e| format!("<p role=\"alert\" class=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let query = p.query(lang);
    let providers = rt.identity.login_providers();
    let several = |kind: LoginKind| providers.iter().filter(|x| x.kind == kind).count() > 1;
    let buttons = providers
        .iter()
        .map(|x| {
            let label = t(&x.label_vi, &x.label_en);
            let text = match x.kind {
                LoginKind::Citizen if several(LoginKind::Citizen) => {
                    format!("{} {label}", t("Đăng nhập bằng", "Sign in with"))
                }
                LoginKind::Citizen => t("Đăng nhập bằng VNeID", "Sign in with VNeID").to_owned(),
                LoginKind::Staff if several(LoginKind::Staff) => format!(
                    "{}: {label}",
                    t("Đăng nhập bằng tài khoản bệnh viện", "Sign in with your hospital account")
                ),
                LoginKind::Staff => t(
                    "Đăng nhập bằng tài khoản bệnh viện",
                    "Sign in with your hospital account",
                )
                .to_owned(),
            };
            let kind = match x.kind {
                LoginKind::Citizen => "citizen",
                LoginKind::Staff => "staff",
            };
            format!(
                "<a class=\"button alt\" data-kind=\"{kind}\" title=\"{}\" href=\"/oidc/external/{}/start?{}\">{}</a>",
                escape(label),
                x.index,
                escape(&query),
                escape(&text)
            )
        })
        .collect::<String>();
    let buttons = if buttons.is_empty() {
        String::new()
    } else {
        format!("<div class=\"or\">{}</div>{buttons}", t("hoặc", "or"))
    };
    let demo = if rt.identity.demo_mode() {
        let rows = crate::identity::demo_accounts()
            .iter()
            .map(|a| {
                format!(
                    "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                    escape(a.display_name),
                    escape(a.username),
                    escape(a.password)
                )
            })
            .collect::<String>();
        format!(
            "<details id=\"demo-accounts\"><summary>{}</summary><p class=\"hint\">{}</p>\
             <table><tr><th>{}</th><th>{}</th><th>{}</th></tr>{rows}</table></details>",
            t("Tài khoản dùng thử", "Demo accounts"),
            t(
                "Chỉ có ở bản chạy thử (--demo).",
                "Only in a demo run (--demo)."
            ),
            t("Tên", "Name"),
            t("Tên đăng nhập", "Username"),
            t("Mật khẩu", "Password"),
        )
    } else {
        String::new()
    };
    let other = lang.other();
    let body = format!(
        r#"<p style="text-align:right;margin:0"><a id="lang-switch" lang="{other_code}" href="/oidc/authorize?{switch}">{other_name}</a></p>
<h1>{heading}</h1>
{error}
<form method="post" action="/oidc/authorize">{hidden}
<label for="username">{user_label}</label><input id="username" name="username" value="{username}" autocomplete="username" required>
<label for="password">{password_label}</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">{submit}</button>
</form>{buttons}{demo}"#,
        other_code = other.code(),
        switch = escape(&p.query(other)),
        other_name = lang.pick("English", "Tiếng Việt"),
        heading = t("Đăng nhập VTelehealth", "Sign in to VTelehealth"),
        user_label = t(
            "Tên đăng nhập hoặc số CCCD",
            "Username or citizen ID (CCCD)"
        ),
        password_label = t("Mật khẩu", "Password"),
        submit = t("Đăng nhập", "Sign in"),
        username = escape(&p.username),
    );
    page(status, lang, t("Đăng nhập", "Sign in"), &body)
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

use super::html::escape;
