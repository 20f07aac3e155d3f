//! Signing in through a trusted external issuer (VNeID, a hospital's own
//! identity provider): the platform as an OpenID Connect relying party.
//!
//! A sign-in starts from the built-in provider's authorization request (the
//! console's), is stored as a pending login (state, nonce, PKCE verifier,
//! that request) so any node can finish it, goes to the issuer with
//! authorization code + PKCE S256, and comes back to the callback, which
//! checks the state once, exchanges the code, verifies the ID token, applies
//! the issuer's assertion binding and links the person to a platform
//! account. The caller then continues the original request with the
//! platform's own code.

use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;

use super::external::{LoginConfig, LoginKind, Overreach, TrustedIssuer};
use super::{
    CodeRequest, IdentityError, IdentityService, NewUser, Role, User, decode, opt_str, people,
    sha256_hex, throttle, validate_citizen_id, validate_health_id,
};
use crate::time::now_secs;

/// How long a started sign-in may take to come back.
pub const PENDING_TTL_SECS: i64 = 600;
/// Path of the callback below the platform's issuer URL.
pub const CALLBACK_PATH: &str = "/oidc/external/callback";
/// Time allowed for each call to an issuer.
const ISSUER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from an issuer.
const MAX_ISSUER_BODY: usize = 1 << 20;

/// A sign-in button: what pages show.
#[derive(Debug, Clone, Serialize)]
pub struct LoginProvider {
    /// Its number in `/oidc/external/{index}/start`.
    pub index: usize,
    pub kind: LoginKind,
    pub label_vi: String,
    pub label_en: String,
}

/// One issuer people can sign in through, with its resolved secret.
pub(super) struct Provider {
    issuer: String,
    config: LoginConfig,
    secret: String,
    /// Endpoints, configured or discovered at first use.
    endpoints: tokio::sync::Mutex<Option<Endpoints>>,
}

#[derive(Clone)]
struct Endpoints {
    authorization: String,
    token: String,
}

/// The providers of the trusted issuers with a `login` section, in order.
pub(super) fn providers(list: &[TrustedIssuer]) -> Result<Vec<Provider>, IdentityError> {
    list.iter()
        .filter_map(|t| t.login.as_ref().map(|l| (t, l)))
        .map(|(t, l)| {
            let secret = l.secret().map_err(|m| {
                IdentityError::Invalid(format!("trusted issuer `{}`: {m}", t.issuer))
            })?;
            for (name, v) in [
                ("authorization_endpoint", &l.authorization_endpoint),
                ("token_endpoint", &l.token_endpoint),
            ] {
                if v.as_deref().is_some_and(|u| !super::external::is_login_url(u)) {
                    return Err(IdentityError::Invalid(format!(
                        "trusted issuer `{}`: `login.{name}` must be an https:// URL (http:// only for localhost)",
                        t.issuer
                    )));
                }
            }
            let endpoints = match (&l.authorization_endpoint, &l.token_endpoint) {
                (Some(a), Some(t)) => Some(Endpoints {
                    authorization: a.clone(),
                    token: t.clone(),
                }),
                _ => None,
            };
            Ok(Provider {
                issuer: t.issuer.clone(),
                config: l.clone(),
                secret,
                endpoints: tokio::sync::Mutex::new(endpoints),
            })
        })
        .collect()
}

/// Why an external sign-in was refused. Each has a message for people in
/// Vietnamese ([`Self::message_vi`]) and English (`Display`).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("there is no such sign-in provider")]
    UnknownProvider,
    #[error("this sign-in is unknown, already finished or expired: start again")]
    BadState,
    #[error("the identity provider did not sign you in ({0})")]
    ProviderRefused(String),
    #[error("the identity provider cannot be reached: try again later")]
    ProviderUnavailable(String),
    #[error("the identity provider's answer is not valid ({0})")]
    InvalidIdToken(String),
    #[error("the identity provider may not assert {0}: the sign-in was refused and recorded")]
    Overreach(String),
    #[error("the identity provider gave no valid citizen ID (CCCD)")]
    NoCitizenId,
    #[error(
        "no staff account of this hospital matches your citizen ID or licence: ask your hospital's administrator to create it"
    )]
    UnknownStaff,
    #[error("this account is suspended")]
    Suspended,
    #[error("this identity cannot be linked to a platform account: {0}")]
    Conflict(String),
    #[error("too many failed sign-ins: try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl LoginError {
    /// The HTTP status of its page.
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownProvider => 404,
            Self::BadState
            | Self::ProviderRefused(_)
            | Self::InvalidIdToken(_)
            | Self::NoCitizenId => 400,
            Self::Overreach(_) | Self::UnknownStaff | Self::Suspended | Self::Conflict(_) => 403,
            Self::Throttled { .. } => 429,
            Self::ProviderUnavailable(_) => 502,
            Self::Identity(_) => 500,
        }
    }

    /// The message in Vietnamese.
    pub fn message_vi(&self) -> String {
        match self {
            Self::UnknownProvider => "Không có nhà cung cấp định danh này.".into(),
            Self::BadState => {
                "Phiên đăng nhập không hợp lệ, đã dùng hoặc đã hết hạn. Hãy đăng nhập lại từ đầu."
                    .into()
            }
            Self::ProviderRefused(why) => {
                format!("Nhà cung cấp định danh không cho đăng nhập ({why}).")
            }
            Self::ProviderUnavailable(_) => {
                "Không kết nối được nhà cung cấp định danh. Hãy thử lại sau.".into()
            }
            Self::InvalidIdToken(why) => {
                format!("Thông tin định danh nhận được không hợp lệ ({why}).")
            }
            Self::Overreach(what) => format!(
                "Nhà cung cấp định danh không được phép xác nhận {}. Lần đăng nhập này bị từ chối và đã được ghi nhật ký.",
                overreach_vi(what)
            ),
            Self::NoCitizenId => {
                "Nhà cung cấp định danh không gửi số căn cước công dân (CCCD) hợp lệ.".into()
            }
            Self::UnknownStaff => "Không tìm thấy tài khoản nhân viên y tế nào của bệnh viện khớp với số CCCD hoặc chứng chỉ hành nghề của bạn. Hãy đề nghị quản trị bệnh viện tạo tài khoản.".into(),
            Self::Suspended => "Tài khoản này đang bị tạm khóa.".into(),
            Self::Conflict(_) => {
                "Không liên kết được danh tính này với tài khoản trên nền tảng.".into()
            }
            Self::Throttled { retry_after_secs } => format!(
                "Quá nhiều lần đăng nhập không thành công, hãy thử lại sau {retry_after_secs} giây."
            ),
            Self::Identity(_) => "Lỗi hệ thống khi đăng nhập. Hãy thử lại.".into(),
        }
    }

    /// The message in English, without internal details.
    pub fn message_en(&self) -> String {
        match self {
            Self::Identity(_) => "A system error stopped the sign-in. Try again.".into(),
            other => other.to_string(),
        }
    }
}

/// A finished external sign-in: whom it signed in and the request to continue.
#[derive(Debug)]
pub struct Finished {
    pub user: User,
    pub request: CodeRequest,
    /// The console's `state`, to hand back with the platform's code.
    pub state: String,
}

/// Algorithms accepted for an issuer's ID tokens: asymmetric only.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn b64url_sha256(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(digest::digest(&digest::SHA256, s.as_bytes()).as_ref())
}

/// What `check_assertions` refused, in Vietnamese (its text is English).
fn overreach_vi(what: &str) -> String {
    const WORDS: [(&str, &str); 5] = [
        ("the role ", "vai trò "),
        ("the hospital ", "bệnh viện "),
        (
            "a staff role without a hospital",
            "vai trò nhân viên y tế mà không có bệnh viện",
        ),
        ("a vendor", "một nhà cung cấp phần mềm"),
        ("national IDs ", "số định danh công dân "),
    ];
    WORDS
        .iter()
        .find_map(|(en, vi)| what.strip_prefix(en).map(|rest| format!("{vi}{rest}")))
        .unwrap_or_else(|| what.to_owned())
}

fn throttled(e: IdentityError) -> LoginError {
    match e {
        IdentityError::Throttled { retry_after_secs } => LoginError::Throttled { retry_after_secs },
        other => other.into(),
    }
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

impl IdentityService {
    /// The sign-in buttons of the trusted issuers, in configuration order.
    pub fn login_providers(&self) -> Vec<LoginProvider> {
        self.logins
            .iter()
            .enumerate()
            .map(|(index, p)| LoginProvider {
                index,
                kind: p.config.kind,
                label_vi: p.config.label_vi.clone(),
                label_en: p.config.label_en.clone(),
            })
            .collect()
    }

    /// Where the issuers send people back: the callback on this platform.
    pub fn login_callback_url(&self) -> String {
        format!("{}{CALLBACK_PATH}", self.issuer)
    }

    /// Start signing in through provider `index` for the (checked)
    /// authorization request `request` with its `state`: store the pending
    /// login and return the issuer's authorization URL to redirect to.
    pub async fn start_external_login(
        &self,
        index: usize,
        request: &CodeRequest,
        state: &str,
        ui_locales: Option<&str>,
        from: Option<std::net::IpAddr>,
    ) -> Result<String, LoginError> {
        // Each start stores a pending login: an address that starts many
        // without finishing them backs off before anything is written.
        let keys: Vec<throttle::Key> = from.map(throttle::Key::starts).into_iter().collect();
        self.throttled(&keys).map_err(throttled)?;
        self.login_failed(&keys, from).await;
        let p = self.logins.get(index).ok_or(LoginError::UnknownProvider)?;
        let endpoints = self.login_endpoints(p).await?;
        let our_state = people::random_token()?;
        let nonce = people::random_token()?;
        let verifier = people::random_token()?;
        let saved = json!({
            "client_id": request.client_id, "redirect_uri": request.redirect_uri,
            "code_challenge": request.code_challenge, "scope": request.scope,
            "nonce": request.nonce, "state": state,
        });
        let t = now_secs();
        let mut tx = self.db.begin_write().await.map_err(IdentityError::from)?;
        // Abandoned sign-ins go when new ones come: the table stays small.
        sqlx::query("DELETE FROM external_logins WHERE expires_at < $1")
            .bind(t - 3600)
            .execute(&mut *tx.tx)
            .await
            .map_err(IdentityError::from)?;
        sqlx::query(
            "INSERT INTO external_logins (state_hash, issuer, nonce, code_verifier, request, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(sha256_hex(&our_state))
        .bind(&p.issuer)
        .bind(&nonce)
        .bind(&verifier)
        .bind(saved.to_string())
        .bind(t + PENDING_TTL_SECS)
        .execute(&mut *tx.tx)
        .await
        .map_err(IdentityError::from)?;
        tx.commit().await.map_err(IdentityError::from)?;
        let enc = crate::query::encode;
        let sep = if endpoints.authorization.contains('?') {
            '&'
        } else {
            '?'
        };
        let mut url = format!(
            "{}{sep}response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&nonce={}\
             &code_challenge={}&code_challenge_method=S256",
            endpoints.authorization,
            enc(&p.config.client_id),
            enc(&self.login_callback_url()),
            enc(&p.config.scope),
            enc(&our_state),
            enc(&nonce),
            enc(&b64url_sha256(&verifier)),
        );
        if let Some(l) = ui_locales {
            url.push_str(&format!("&ui_locales={}", enc(l)));
        }
        Ok(url)
    }

    /// Finish a sign-in at the callback: `code` (or the issuer's `error`)
    /// and `state` as the issuer sent them, from address `from`.
    pub async fn finish_external_login(
        &self,
        code: Option<&str>,
        error: Option<&str>,
        state: &str,
        from: Option<std::net::IpAddr>,
    ) -> Result<Finished, LoginError> {
        // Callback floods (guessed states, forged tokens) back off per
        // address like failed passwords.
        let keys: Vec<throttle::Key> = from.map(throttle::Key::address).into_iter().collect();
        self.throttled(&keys).map_err(throttled)?;
        let result = self.finish(code, error, state).await;
        if matches!(
            result,
            Err(LoginError::BadState | LoginError::InvalidIdToken(_))
        ) {
            self.login_failed(&keys, from).await;
        }
        // A finished sign-in frees its address's starts (a clinic behind one
        // address signs many people in).
        if let (Ok(_), Some(ip)) = (&result, from) {
            self.throttle.succeeded(&throttle::Key::starts(ip));
        }
        result
    }

    async fn finish(
        &self,
        code: Option<&str>,
        error: Option<&str>,
        state: &str,
    ) -> Result<Finished, LoginError> {
        if state.is_empty() || state.len() > 512 {
            return Err(LoginError::BadState);
        }
        let t = now_secs();
        let mut tx = self.db.begin_write().await.map_err(IdentityError::from)?;
        let row = sqlx::query(
            "UPDATE external_logins SET used_at = $1 WHERE state_hash = $2 AND used_at IS NULL \
             RETURNING issuer, nonce, code_verifier, request, expires_at",
        )
        .bind(t)
        .bind(sha256_hex(state))
        .fetch_optional(&mut *tx.tx)
        .await
        .map_err(IdentityError::from)?;
        tx.commit().await.map_err(IdentityError::from)?;
        let row = row.ok_or(LoginError::BadState)?;
        let get = |c: &str| -> Result<String, LoginError> {
            row.try_get::<String, _>(c)
                .map_err(|e| IdentityError::from(e).into())
        };
        let expires: i64 = row.try_get("expires_at").map_err(IdentityError::from)?;
        if expires < t {
            return Err(LoginError::BadState);
        }
        let (issuer, nonce, verifier) = (get("issuer")?, get("nonce")?, get("code_verifier")?);
        let saved: Value = serde_json::from_str(&get("request")?)
            .map_err(|e| IdentityError::Internal(format!("stored login request: {e}")))?;
        let p = self
            .logins
            .iter()
            .find(|p| p.issuer == issuer)
            .ok_or(LoginError::UnknownProvider)?;
        if let Some(e) = error {
            return Err(LoginError::ProviderRefused(clip(e, 64)));
        }
        let code = code
            .filter(|c| !c.is_empty() && c.len() <= 2048)
            .ok_or_else(|| LoginError::ProviderRefused("no code".into()))?;
        let id_token = self.exchange_code(p, code, &verifier).await?;
        let claims = self.verify_id_token(p, &id_token, &nonce).await?;
        let user = self.link(p, &claims).await?;
        let s = |k: &str| saved[k].as_str().unwrap_or_default().to_owned();
        let request = CodeRequest {
            client_id: s("client_id"),
            redirect_uri: s("redirect_uri"),
            code_challenge: s("code_challenge"),
            scope: s("scope"),
            nonce: saved["nonce"].as_str().map(str::to_owned),
        };
        Ok(Finished {
            user,
            request,
            state: s("state"),
        })
    }

    /// The provider's endpoints: configured, or discovered once.
    async fn login_endpoints(&self, p: &Provider) -> Result<Endpoints, LoginError> {
        let mut cached = p.endpoints.lock().await;
        if let Some(e) = cached.as_ref() {
            return Ok(e.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            p.issuer.trim_end_matches('/')
        );
        let doc = self.fetch_json(self.http.get(&url)).await?;
        let unavailable = |m: &str| LoginError::ProviderUnavailable(format!("{url}: {m}"));
        if doc["issuer"].as_str() != Some(p.issuer.as_str()) {
            return Err(unavailable("its `issuer` is not the configured one"));
        }
        let endpoint = |configured: &Option<String>, key: &str| {
            configured
                .clone()
                .or_else(|| doc[key].as_str().map(str::to_owned))
                // Discovered endpoints are held to the configured ones' rule.
                .filter(|u| super::external::is_login_url(u))
                .ok_or_else(|| unavailable(&format!("no https `{key}`")))
        };
        let e = Endpoints {
            authorization: endpoint(&p.config.authorization_endpoint, "authorization_endpoint")?,
            token: endpoint(&p.config.token_endpoint, "token_endpoint")?,
        };
        *cached = Some(e.clone());
        Ok(e)
    }

    /// Send `req` and read a JSON object of at most [`MAX_ISSUER_BODY`];
    /// an OAuth error answer becomes [`LoginError::ProviderRefused`].
    async fn fetch_json(&self, req: reqwest::RequestBuilder) -> Result<Value, LoginError> {
        let unavailable = |m: String| LoginError::ProviderUnavailable(m);
        let resp = req
            .timeout(ISSUER_TIMEOUT)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| unavailable(e.to_string()))?;
        if bytes.len() > MAX_ISSUER_BODY {
            return Err(unavailable("answer larger than 1 MiB".into()));
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_client_error()
            && let Some(e) = body["error"].as_str()
        {
            return Err(LoginError::ProviderRefused(clip(e, 64)));
        }
        if !status.is_success() || !body.is_object() {
            return Err(unavailable(format!("status {status}")));
        }
        Ok(body)
    }

    /// Exchange the issuer's code for its ID token (client_secret_basic).
    async fn exchange_code(
        &self,
        p: &Provider,
        code: &str,
        verifier: &str,
    ) -> Result<String, LoginError> {
        let endpoints = self.login_endpoints(p).await?;
        let enc = crate::query::encode;
        let body = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
            enc(code),
            enc(&self.login_callback_url()),
            enc(verifier),
        );
        // RFC 6749 §2.3.1: id and secret form-encoded before Basic.
        let req = self
            .http
            .post(&endpoints.token)
            .basic_auth(enc(&p.config.client_id), Some(enc(&p.secret)))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        let tokens = self.fetch_json(req).await?;
        tokens["id_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| LoginError::InvalidIdToken("no ID token".into()))
    }

    /// Verify an issuer's ID token: signature by its JWKS, `iss`, `aud` =
    /// our client id, `exp`, and `nonce` equal to the stored one.
    async fn verify_id_token(
        &self,
        p: &Provider,
        token: &str,
        nonce: &str,
    ) -> Result<Value, LoginError> {
        let invalid = |m: &str| LoginError::InvalidIdToken(m.to_owned());
        if token.len() > 16 * 1024 {
            return Err(invalid("too long"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed"))?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(invalid("algorithm not accepted"));
        }
        // An ID token says `JWT` or nothing; access tokens, logout tokens
        // and the like are refused.
        if header
            .typ
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
        {
            return Err(invalid("not an ID token"));
        }
        let kid = header.kid.ok_or_else(|| invalid("no key id"))?;
        let keys = self
            .external
            .get(&p.issuer)
            .ok_or_else(|| IdentityError::Internal("login issuer without keys".into()))?;
        let jwk = keys.key(&self.http, &kid).await.map_err(|e| match e {
            IdentityError::IssuerUnavailable(m) => LoginError::ProviderUnavailable(m),
            _ => invalid("unknown signing key"),
        })?;
        if let Some(alg) = jwk.common.key_algorithm
            && alg.to_string() != format!("{:?}", header.alg)
        {
            return Err(invalid("key and token algorithms differ"));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| invalid("unusable key"))?;
        if key.family() != header.alg.family() {
            return Err(invalid("key and token algorithms differ"));
        }
        let claims = decode(token, &key, header.alg, &p.issuer, &p.config.client_id).map_err(
            |e| match e {
                IdentityError::InvalidToken(m) => LoginError::InvalidIdToken(m),
                other => other.into(),
            },
        )?;
        let got = claims["nonce"].as_str().unwrap_or_default();
        if aws_lc_rs::constant_time::verify_slices_are_equal(got.as_bytes(), nonce.as_bytes())
            .is_err()
        {
            return Err(invalid("wrong nonce"));
        }
        // Several audiences: the token must say it was issued to us.
        if claims["aud"].as_array().is_some_and(|a| a.len() > 1)
            && claims["azp"].as_str() != Some(p.config.client_id.as_str())
        {
            return Err(invalid("issued to another party"));
        }
        Ok(claims)
    }

    /// Apply the issuer's assertion binding to verified claims, then find
    /// (or, for citizens, create) and link the platform account.
    async fn link(&self, p: &Provider, claims: &Value) -> Result<User, LoginError> {
        let keys = self
            .external
            .get(&p.issuer)
            .ok_or_else(|| IdentityError::Internal("login issuer without keys".into()))?;
        let cfg = &keys.config;
        let subject = opt_str(claims, "sub")
            .filter(|s| s.len() <= 255)
            .ok_or_else(|| LoginError::InvalidIdToken("no usable `sub`".into()))?;
        let national_id = opt_str(claims, &cfg.national_id_claim);
        let mut checked = claims.clone();
        match p.config.kind {
            // The button signs in citizens: an issuer that names no role
            // names a citizen; any other role is still checked.
            LoginKind::Citizen => {
                if checked.get(&cfg.roles_claim).is_none_or(Value::is_null) {
                    checked[&cfg.roles_claim] = json!(["citizen"]);
                }
            }
            // A hospital's provider may name its staff member's CCCD (and
            // licence) only to find their account at its own hospitals;
            // it never becomes a citizen's identity.
            LoginKind::Staff => {
                if let Some(o) = checked.as_object_mut() {
                    o.remove(&cfg.national_id_claim);
                    o.remove(&cfg.health_id_claim);
                }
            }
        }
        let roles = match cfg.check_assertions(&checked) {
            Ok(roles) => roles,
            Err(Overreach(what)) => {
                self.audit_login_refused(&p.issuer, &subject, &what).await;
                return Err(LoginError::Overreach(what));
            }
        };
        let linked = sqlx::query(
            "SELECT user_id FROM external_identities WHERE issuer = $1 AND subject = $2",
        )
        .bind(&p.issuer)
        .bind(&subject)
        .fetch_optional(&self.db.pool)
        .await
        .map_err(IdentityError::from)?;
        let user = match linked {
            Some(row) => {
                let id: String = row.try_get("user_id").map_err(IdentityError::from)?;
                let user = self.user(&id).await?.ok_or_else(|| {
                    LoginError::Conflict("the linked account no longer exists".into())
                })?;
                self.check_account(p, cfg, &user, &roles, national_id.as_deref(), &subject)
                    .await?;
                if p.config.kind == LoginKind::Citizen {
                    self.store_health_id(&user, claims, &cfg.health_id_claim)
                        .await?;
                }
                sqlx::query(
                    "UPDATE external_identities SET last_login_at = $1 WHERE issuer = $2 AND subject = $3",
                )
                .bind(now_secs())
                .bind(&p.issuer)
                .bind(&subject)
                .execute(&self.db.pool)
                .await
                .map_err(IdentityError::from)?;
                user
            }
            None => {
                let user = match p.config.kind {
                    LoginKind::Citizen => {
                        self.citizen_account(claims, cfg, national_id.as_deref())
                            .await?
                    }
                    LoginKind::Staff => {
                        let licence = p
                            .config
                            .licence_claim
                            .as_deref()
                            .and_then(|c| opt_str(claims, c));
                        self.staff_account(cfg, national_id.as_deref(), licence.as_deref())
                            .await?
                    }
                };
                self.check_account(p, cfg, &user, &roles, national_id.as_deref(), &subject)
                    .await?;
                self.insert_link(&p.issuer, &subject, &user, p.config.kind)
                    .await?;
                user
            }
        };
        Ok(user)
    }

    /// Whether `user` may be signed in through this provider: active, and
    /// of the kind the provider signs in (a citizen with the asserted CCCD,
    /// or staff of a hospital the issuer is bound to with an allowed role).
    async fn check_account(
        &self,
        p: &Provider,
        cfg: &TrustedIssuer,
        user: &User,
        roles: &[Role],
        national_id: Option<&str>,
        subject: &str,
    ) -> Result<(), LoginError> {
        // Read from the row itself (0016's `status`), so a suspension made
        // on another node counts at once.
        let status = sqlx::query("SELECT status FROM identity_users WHERE id = $1")
            .bind(&user.id)
            .fetch_optional(&self.db.pool)
            .await
            .ok()
            .flatten()
            .and_then(|r| r.try_get::<String, _>("status").ok());
        if status.as_deref() == Some("suspended") {
            return Err(LoginError::Suspended);
        }
        match p.config.kind {
            LoginKind::Citizen => {
                if user.role != Role::Citizen {
                    return Err(LoginError::Conflict("not a citizen's account".into()));
                }
                if national_id.is_some_and(|n| user.national_id.as_deref() != Some(n)) {
                    return Err(LoginError::Conflict("another citizen ID".into()));
                }
            }
            LoginKind::Staff => {
                let bound = user
                    .hospital_id
                    .as_ref()
                    .is_some_and(|h| cfg.hospitals.contains(h));
                if !bound || !cfg.allowed_roles.contains(&user.role) {
                    return Err(LoginError::UnknownStaff);
                }
                // Platform tokens carry every role of the account: each must
                // be one the issuer may vouch for, not just the primary one.
                let held = user.roles.iter().chain(std::iter::once(&user.role));
                for role in held {
                    if !cfg.allowed_roles.contains(role) {
                        let what = format!("the role `{role}`");
                        self.audit_login_refused(&p.issuer, subject, &what).await;
                        return Err(LoginError::Overreach(what));
                    }
                    // The provider's own word on who this is must agree.
                    if !roles.is_empty() && !roles.contains(role) {
                        let what = format!("the provider does not say `{role}`");
                        self.audit_login_refused(&p.issuer, subject, &what).await;
                        return Err(LoginError::Conflict(what));
                    }
                }
            }
        }
        Ok(())
    }

    /// The citizen with this CCCD, created when new (with the BHXH number
    /// when given and free). Citizens created here sign in through the
    /// issuer only: their password is random and never shown.
    async fn citizen_account(
        &self,
        claims: &Value,
        cfg: &TrustedIssuer,
        national_id: Option<&str>,
    ) -> Result<User, LoginError> {
        let cccd = national_id
            .filter(|n| validate_citizen_id(n).is_ok())
            .ok_or(LoginError::NoCitizenId)?;
        let found = user_query!("WHERE national_id = $1")
            .bind(cccd)
            .fetch_optional(&self.db.pool)
            .await
            .map_err(IdentityError::from)?;
        if let Some(row) = found {
            let user = User::from_row(&row)?;
            self.store_health_id(&user, claims, &cfg.health_id_claim)
                .await?;
            return Ok(self.user(&user.id).await?.unwrap_or(user));
        }
        let name = opt_str(claims, &cfg.name_claim)
            .map(|n| clip(n.trim(), crate::text_limits::NAME))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| cccd.to_owned());
        let mut new = NewUser::new(cccd, &name, Role::Citizen, &people::random_token()?);
        new.national_id = Some(cccd.to_owned());
        new.health_id = self.free_health_id(claims, &cfg.health_id_claim).await?;
        match self.create_user(new).await {
            Ok(user) => {
                self.audit_linked("identity.citizen_created", &user).await;
                Ok(user)
            }
            Err(IdentityError::Conflict(m)) => Err(LoginError::Conflict(m)),
            Err(e) => Err(e.into()),
        }
    }

    /// A valid BHXH number in the claims that no account holds yet.
    async fn free_health_id(
        &self,
        claims: &Value,
        claim: &str,
    ) -> Result<Option<String>, LoginError> {
        let Some(h) = opt_str(claims, claim).filter(|h| validate_health_id(h).is_ok()) else {
            return Ok(None);
        };
        let taken = sqlx::query("SELECT id FROM identity_users WHERE health_id = $1")
            .bind(&h)
            .fetch_optional(&self.db.pool)
            .await
            .map_err(IdentityError::from)?;
        Ok(taken.is_none().then_some(h))
    }

    /// Store the BHXH number the issuer gives when the account has none.
    async fn store_health_id(
        &self,
        user: &User,
        claims: &Value,
        claim: &str,
    ) -> Result<(), LoginError> {
        if user.health_id.is_some() || user.role != Role::Citizen {
            return Ok(());
        }
        if let Some(h) = self.free_health_id(claims, claim).await? {
            sqlx::query(
                "UPDATE identity_users SET health_id = $1 WHERE id = $2 AND health_id IS NULL",
            )
            .bind(h)
            .bind(&user.id)
            .execute(&self.db.pool)
            .await
            .map_err(IdentityError::from)?;
        }
        Ok(())
    }

    /// The staff account a hospital admin created with this CCCD or
    /// licence number. Never created here.
    async fn staff_account(
        &self,
        cfg: &TrustedIssuer,
        cccd: Option<&str>,
        licence: Option<&str>,
    ) -> Result<User, LoginError> {
        let cccd = cccd.filter(|n| validate_citizen_id(n).is_ok());
        // Stored licences are upper case (`validate_licence`).
        let licence = licence
            .map(|l| l.trim().to_uppercase())
            .filter(|l| !l.is_empty() && l.len() <= 64);
        if cccd.is_none() && licence.is_none() {
            return Err(LoginError::UnknownStaff);
        }
        let rows = user_query!(
            "WHERE (staff_national_id = $1 OR licence_number = $2) \
             AND role IN ('practitioner', 'hospital-admin')"
        )
        .bind(cccd)
        .bind(licence)
        .fetch_all(&self.db.pool)
        .await
        .map_err(IdentityError::from)?;
        // Only the issuer's own hospitals' staff: another hospital's account
        // with the same licence is neither a match nor a conflict.
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let user = User::from_row(row)?;
            if user
                .hospital_id
                .as_ref()
                .is_some_and(|h| cfg.hospitals.contains(h))
            {
                found.push(user);
            }
        }
        // CCCD and licence naming two different people is no match.
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(LoginError::UnknownStaff),
            _ => Err(LoginError::Conflict(
                "the citizen ID and the licence name different accounts".into(),
            )),
        }
    }

    async fn insert_link(
        &self,
        issuer: &str,
        subject: &str,
        user: &User,
        kind: LoginKind,
    ) -> Result<(), LoginError> {
        let t = now_secs();
        let mut tx = self.db.begin_write().await.map_err(IdentityError::from)?;
        let inserted = sqlx::query(
            "INSERT INTO external_identities (issuer, subject, user_id, linked_at, last_login_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(issuer)
        .bind(subject)
        .bind(&user.id)
        .bind(t)
        .execute(&mut *tx.tx)
        .await;
        match inserted {
            Ok(_) => {
                // A staff member who signs in through their hospital needs no
                // password: the link spends their invitation.
                if kind == LoginKind::Staff {
                    self.spend_invitations_on_link(&mut tx, &user.id)
                        .await
                        .map_err(|e| match e {
                            super::staff::StaffError::Identity(e) => e,
                            other => IdentityError::Internal(other.to_string()),
                        })?;
                }
                tx.commit().await.map_err(IdentityError::from)?
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(LoginError::Conflict(
                    "the account is already linked to another identity of this provider".into(),
                ));
            }
            Err(e) => return Err(IdentityError::from(e).into()),
        }
        self.audit_linked("identity.external_linked", user).await;
        Ok(())
    }

    async fn audit_linked(&self, action: &str, user: &User) {
        let event = crate::audit::AuditEvent {
            actor: user.id.clone(),
            action: action.into(),
            target: user.id.clone(),
            hospital_id: user.hospital_id.clone(),
            details: json!({ "role": user.role }),
        };
        if let Err(e) = self.audit.append(event).await {
            tracing::error!(error = %e, action, "cannot audit an external sign-in");
        }
    }

    /// Record an issuer's over-asserting ID token, as bearer tokens are.
    async fn audit_login_refused(&self, issuer: &str, subject: &str, what: &str) {
        let event = crate::audit::AuditEvent {
            actor: format!("issuer:{issuer}"),
            action: "identity.login_refused".into(),
            target: format!("{issuer}#{}", clip(subject, 128)),
            hospital_id: None,
            details: json!({ "issuer": issuer, "subject": clip(subject, 128), "refused": what }),
        };
        // Folded and bounded like every refusal.
        if let Err(e) = self.audit.append_refusal(event).await {
            tracing::error!(error = %e, issuer, "cannot audit a refused external sign-in");
        }
        tracing::warn!(
            issuer,
            refused = what,
            "a trusted issuer's ID token asserted more than it may"
        );
    }

    /// Register (or update) a confidential client of the code flow: a
    /// relying party such as another platform signing people in here.
    pub async fn register_confidential_client(
        &self,
        id: &str,
        name: &str,
        secret: &str,
        redirect_uris: &[&str],
    ) -> Result<(), IdentityError> {
        crate::directory::validate_id(id).map_err(|e| IdentityError::Invalid(e.to_string()))?;
        if secret.len() < 16 {
            return Err(IdentityError::Invalid(
                "client secrets are at least 16 bytes".into(),
            ));
        }
        if redirect_uris
            .iter()
            .any(|u| u.contains('\n') || u.is_empty())
        {
            return Err(IdentityError::Invalid("invalid redirect URI".into()));
        }
        let hash = self.hash(secret).await?;
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO identity_clients (id, name, kind, secret_hash, redirect_uris, hospital_id, created_at) \
             VALUES ($1, $2, 'confidential', $3, $4, NULL, $5) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
             kind = excluded.kind, secret_hash = excluded.secret_hash, redirect_uris = excluded.redirect_uris, \
             hospital_id = NULL",
        )
        .bind(id)
        .bind(name)
        .bind(hash)
        .bind(redirect_uris.join("\n"))
        .bind(now_secs())
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// What the built-in provider's ID token says under the `profile`
    /// scope: roles and hospital; and, with `national_ids` (a registered
    /// relying party: another platform signing the person in), a citizen's
    /// CCCD and BHXH number, a staff member's own CCCD and licence number
    /// (link keys for their hospital).
    pub(super) async fn profile_claims(&self, user: &User, claims: &mut Value, national_ids: bool) {
        let p = user.principal(&self.issuer);
        claims["roles"] = json!(p.roles);
        if let Some(h) = &p.hospital_id {
            claims["hospital_id"] = json!(h);
        }
        if !national_ids {
            return;
        }
        for (claim, value) in [("national_id", &p.national_id), ("health_id", &p.health_id)] {
            if let Some(v) = value {
                claims[claim] = json!(v);
            }
        }
        if user.role == Role::Citizen {
            return;
        }
        let row = sqlx::query(
            "SELECT staff_national_id, licence_number FROM identity_users WHERE id = $1",
        )
        .bind(&user.id)
        .fetch_optional(&self.db.pool)
        .await;
        if let Ok(Some(row)) = row {
            for (column, claim) in [
                ("staff_national_id", "national_id"),
                ("licence_number", "licence_number"),
            ] {
                if let Ok(Some(v)) = row.try_get::<Option<String>, _>(column) {
                    claims[claim] = json!(v);
                }
            }
        }
    }

    /// Whether this node runs the demo (its demo accounts may be listed).
    pub fn demo_mode(&self) -> bool {
        self.demo.load(std::sync::atomic::Ordering::Relaxed)
    }
}
