//! Trusted external issuers (the real national e-ID, any OIDC provider):
//! their JWKS fetched, cached, and refreshed when a token names an unknown
//! `kid`, at most once per `min_refresh_secs` so a flood of bogus key ids
//! cannot hammer the issuer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use serde::{Deserialize, Serialize};

use super::{IdentityError, Role};

/// Configuration of one trusted issuer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// Exact `iss` of its tokens.
    pub issuer: String,
    /// The `aud` its tokens must carry for this platform.
    pub audience: String,
    /// Where its public keys are published.
    pub jwks_url: String,
    /// Claim holding the roles (a string or a list of strings).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// The issuer's role names mapped to platform roles; names not listed
    /// are taken as platform role names (`citizen`, `practitioner`, ...)
    /// and otherwise ignored.
    #[serde(default)]
    pub role_map: HashMap<String, Role>,
    /// Claim holding the hospital id.
    #[serde(default = "default_hospital_claim")]
    pub hospital_claim: String,
    /// Claim holding the display name.
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    /// Claim holding the citizen ID (CCCD).
    #[serde(default = "default_national_id_claim")]
    pub national_id_claim: String,
    /// Claim holding the health ID.
    #[serde(default = "default_health_id_claim")]
    pub health_id_claim: String,
    /// Least time between two JWKS fetches triggered by unknown key ids.
    #[serde(default = "default_min_refresh_secs")]
    pub min_refresh_secs: u64,
    /// Platform roles this issuer may assert (required: each issuer states
    /// what it may assert). A token naming any other platform role is
    /// refused and audited.
    pub allowed_roles: Vec<Role>,
    /// Hospitals whose staff (`practitioner`, `hospital-admin`) this issuer
    /// may assert: a hospital's own login server is bound to that hospital.
    /// A token naming any other hospital is refused and audited.
    #[serde(default)]
    pub hospitals: Vec<String>,
    /// Whether it may assert citizens' citizen IDs (CCCD) and health IDs
    /// (BHXH): only the national e-ID should. Their claims in a token of an
    /// issuer that may not are refused and audited.
    #[serde(default)]
    pub national_ids: bool,
    /// Require `typ: at+jwt` (RFC 9068) in its tokens' header. Off by
    /// default because many providers send `JWT`; other types are always
    /// refused.
    #[serde(default)]
    pub require_at_jwt: bool,
    /// Signing in through this issuer in a browser (the platform as its
    /// OpenID Connect relying party): absent, its tokens are only accepted
    /// as bearer tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<LoginConfig>,
}

/// Who signs in through an issuer's button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoginKind {
    /// Citizens (VNeID): linked or created by their CCCD.
    Citizen,
    /// A hospital's staff: linked to the account a hospital admin created,
    /// never created.
    Staff,
}

/// How the platform signs people in through a trusted issuer: authorization
/// code with PKCE, as a confidential client of that issuer.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// Absent: read from `{issuer}/.well-known/openid-configuration` at
    /// first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// Absent: discovered like `authorization_endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// The platform's client id at the issuer (the `aud` of its ID tokens).
    pub client_id: String,
    /// The client secret itself; prefer `client_secret_file` or
    /// `client_secret_env`. Exactly one of the three. Never serialized.
    #[serde(default, skip_serializing)]
    pub client_secret: Option<String>,
    /// A file holding the client secret (trailing whitespace ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<std::path::PathBuf>,
    /// An environment variable holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// Scopes asked for; must include `openid`.
    #[serde(default = "default_login_scope")]
    pub scope: String,
    pub kind: LoginKind,
    /// The button's text, Vietnamese and English.
    pub label_vi: String,
    pub label_en: String,
    /// Staff only: the claim holding a practitioner's licence number, a
    /// second way to find the account besides the CCCD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence_claim: Option<String>,
}

// The secret never reaches a log line through `{:?}`.
impl std::fmt::Debug for LoginConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginConfig")
            .field("authorization_endpoint", &self.authorization_endpoint)
            .field("token_endpoint", &self.token_endpoint)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "…"))
            .field("client_secret_file", &self.client_secret_file)
            .field("client_secret_env", &self.client_secret_env)
            .field("scope", &self.scope)
            .field("kind", &self.kind)
            .field("label_vi", &self.label_vi)
            .field("label_en", &self.label_en)
            .field("licence_claim", &self.licence_claim)
            .finish()
    }
}

fn default_login_scope() -> String {
    "openid profile".into()
}

impl LoginConfig {
    /// A login section with the default scope and the secret given inline.
    pub fn new(
        client_id: &str,
        secret: &str,
        kind: LoginKind,
        label_vi: &str,
        label_en: &str,
    ) -> Self {
        Self {
            authorization_endpoint: None,
            token_endpoint: None,
            client_id: client_id.into(),
            client_secret: Some(secret.into()),
            client_secret_file: None,
            client_secret_env: None,
            scope: default_login_scope(),
            kind,
            label_vi: label_vi.into(),
            label_en: label_en.into(),
            licence_claim: None,
        }
    }

    /// The client secret, from wherever the configuration says; a message
    /// naming the source (never the secret) when it cannot be read.
    pub fn secret(&self) -> Result<String, String> {
        let secret = match (
            &self.client_secret,
            &self.client_secret_file,
            &self.client_secret_env,
        ) {
            (Some(s), None, None) => s.clone(),
            (None, Some(path), None) => std::fs::read_to_string(path)
                .map_err(|e| format!("`login.client_secret_file` `{}`: {e}", path.display()))?
                .trim_end()
                .to_owned(),
            (None, None, Some(var)) => std::env::var(var)
                .map_err(|_| format!("`login.client_secret_env`: `{var}` is not set"))?,
            _ => {
                return Err(
                    "`login` needs exactly one of `client_secret`, `client_secret_file`, `client_secret_env`".into(),
                );
            }
        };
        if secret.is_empty() {
            return Err("`login`: the client secret is empty".into());
        }
        Ok(secret)
    }
}

/// Why a trusted-issuers configuration was refused at start.
#[derive(Debug, thiserror::Error)]
pub enum IssuerConfigError {
    #[error("the trusted issuers file is not a JSON list of issuers: {0}")]
    Parse(String),
    #[error("trusted issuer #{index} (`{issuer}`): {message}")]
    Invalid {
        index: usize,
        issuer: String,
        message: String,
    },
}

/// Roles tied to one hospital.
const STAFF_ROLES: [Role; 2] = [Role::Practitioner, Role::HospitalAdmin];
/// Roles that belong to no hospital and reach across the whole network.
const NETWORK_ROLES: [Role; 3] = [Role::Reviewer, Role::Operator, Role::Assessor];

/// Parse and check a trusted-issuers file (a JSON list).
pub fn parse_trusted_issuers(text: &str) -> Result<Vec<TrustedIssuer>, IssuerConfigError> {
    let list: Vec<TrustedIssuer> =
        serde_json::from_str(text).map_err(|e| IssuerConfigError::Parse(e.to_string()))?;
    check_trusted_issuers(&list)?;
    Ok(list)
}

/// Check every issuer and that no issuer is listed twice.
pub fn check_trusted_issuers(list: &[TrustedIssuer]) -> Result<(), IssuerConfigError> {
    for (index, issuer) in list.iter().enumerate() {
        issuer
            .check()
            .map_err(|message| IssuerConfigError::Invalid {
                index,
                issuer: issuer.issuer.clone(),
                message,
            })?;
        if list[..index].iter().any(|o| o.issuer == issuer.issuer) {
            return Err(IssuerConfigError::Invalid {
                index,
                issuer: issuer.issuer.clone(),
                message: "listed twice".into(),
            });
        }
    }
    Ok(())
}

/// What a token asserted beyond what its issuer may assert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overreach(pub String);

fn default_roles_claim() -> String {
    "roles".into()
}
fn default_hospital_claim() -> String {
    "hospital_id".into()
}
fn default_name_claim() -> String {
    "name".into()
}
fn default_national_id_claim() -> String {
    "national_id".into()
}
fn default_health_id_claim() -> String {
    "health_id".into()
}
fn default_min_refresh_secs() -> u64 {
    60
}

impl TrustedIssuer {
    /// An issuer with the default claim names.
    pub fn new(issuer: &str, audience: &str, jwks_url: &str) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: jwks_url.into(),
            roles_claim: default_roles_claim(),
            role_map: HashMap::new(),
            hospital_claim: default_hospital_claim(),
            name_claim: default_name_claim(),
            national_id_claim: default_national_id_claim(),
            health_id_claim: default_health_id_claim(),
            min_refresh_secs: default_min_refresh_secs(),
            allowed_roles: vec![Role::Citizen],
            hospitals: Vec::new(),
            national_ids: false,
            require_at_jwt: false,
            login: None,
        }
    }

    /// Check the configuration: a message naming the field when wrong.
    pub fn check(&self) -> Result<(), String> {
        let url = |name: &str, v: &str| {
            if is_http_url(v) {
                Ok(())
            } else {
                Err(format!("`{name}` must be an http(s) URL, got `{v}`"))
            }
        };
        url("issuer", &self.issuer)?;
        url("jwks_url", &self.jwks_url)?;
        if self.audience.trim().is_empty() {
            return Err("`audience` is empty".into());
        }
        for (name, claim) in [
            ("roles_claim", &self.roles_claim),
            ("hospital_claim", &self.hospital_claim),
            ("name_claim", &self.name_claim),
            ("national_id_claim", &self.national_id_claim),
            ("health_id_claim", &self.health_id_claim),
        ] {
            if claim.trim().is_empty() {
                return Err(format!("`{name}` is empty"));
            }
        }
        if self.min_refresh_secs > 86_400 {
            return Err("`min_refresh_secs` is at most 86400 (one day)".into());
        }
        if self.allowed_roles.is_empty() {
            return Err(
                "`allowed_roles` is empty: list the platform roles this issuer may assert".into(),
            );
        }
        for role in [Role::Service, Role::VendorUser] {
            if self.allowed_roles.contains(&role) {
                return Err(format!(
                    "`allowed_roles` names `{role}`: services and vendor users sign in with the platform's own provider only"
                ));
            }
        }
        if let Some((name, role)) = self
            .role_map
            .iter()
            .find(|(_, r)| !self.allowed_roles.contains(r))
        {
            return Err(format!(
                "`role_map` maps `{name}` to `{role}`, which is not in `allowed_roles`"
            ));
        }
        let staff = STAFF_ROLES.iter().any(|r| self.allowed_roles.contains(r));
        if staff && self.hospitals.is_empty() {
            return Err(
                "`allowed_roles` names a hospital staff role but `hospitals` is empty: bind the issuer to the hospitals whose staff it may assert".into(),
            );
        }
        if !staff && !self.hospitals.is_empty() {
            return Err(
                "`hospitals` is set but `allowed_roles` names no hospital staff role (practitioner, hospital-admin)".into(),
            );
        }
        for (i, h) in self.hospitals.iter().enumerate() {
            crate::directory::validate_id(h).map_err(|e| format!("`hospitals`: {e}"))?;
            if self.hospitals[..i].contains(h) {
                return Err(format!("`hospitals` lists `{h}` twice"));
            }
        }
        // A hospital's login server vouches for its staff, nothing wider.
        if !self.hospitals.is_empty() {
            if let Some(r) = NETWORK_ROLES
                .iter()
                .find(|r| self.allowed_roles.contains(r))
            {
                return Err(format!(
                    "an issuer bound to hospitals may not assert the network-wide role `{r}`"
                ));
            }
            if self.national_ids {
                return Err(
                    "an issuer bound to hospitals may not assert citizens' national IDs".into(),
                );
            }
        }
        if self.national_ids && !self.allowed_roles.contains(&Role::Citizen) {
            return Err(
                "`national_ids` is true but `allowed_roles` does not name `citizen`".into(),
            );
        }
        if let Some(login) = &self.login {
            self.check_login(login)?;
        }
        Ok(())
    }

    fn check_login(&self, login: &LoginConfig) -> Result<(), String> {
        // Codes, PKCE verifiers and the client secret travel to these:
        // https only, plain http for this machine's tests and proxies.
        let url = |name: &str, v: &Option<String>| match v {
            Some(v) if !is_login_url(v) => Err(format!(
                "`login.{name}` must be an https:// URL (http:// only for localhost), got `{v}`"
            )),
            _ => Ok(()),
        };
        url("authorization_endpoint", &login.authorization_endpoint)?;
        url("token_endpoint", &login.token_endpoint)?;
        if login.client_id.trim().is_empty() || login.client_id.len() > 256 {
            return Err("`login.client_id` must be 1-256 characters".into());
        }
        login.secret()?;
        if !login.scope.split(' ').any(|s| s == "openid") || login.scope.len() > 512 {
            return Err("`login.scope` must name `openid` (at most 512 characters)".into());
        }
        for (name, label) in [("label_vi", &login.label_vi), ("label_en", &login.label_en)] {
            let n = label.trim().chars().count();
            if n == 0 || n > 80 {
                return Err(format!("`login.{name}` must be 1-80 characters"));
            }
        }
        match login.kind {
            LoginKind::Citizen => {
                // Citizens are found by their CCCD, which only an issuer
                // trusted with national IDs may name.
                if !self.national_ids {
                    return Err(
                        "`login.kind` is `citizen` but `national_ids` is false: citizens are linked by their CCCD".into(),
                    );
                }
                if login.licence_claim.is_some() {
                    return Err("`login.licence_claim` is for `staff` logins only".into());
                }
            }
            LoginKind::Staff => {
                if self.hospitals.is_empty() {
                    return Err(
                        "`login.kind` is `staff` but the issuer is bound to no hospital (`hospitals`, with a staff role in `allowed_roles`)".into(),
                    );
                }
                if login
                    .licence_claim
                    .as_ref()
                    .is_some_and(|c| c.trim().is_empty())
                {
                    return Err("`login.licence_claim` is empty".into());
                }
            }
        }
        Ok(())
    }

    /// The platform roles of a verified token, or what it asserted beyond
    /// this issuer's trust: a platform role not allowed, a hospital it is
    /// not bound to (or a staff role naming none), a vendor, or national
    /// IDs it may not assert.
    pub fn check_assertions(&self, claims: &serde_json::Value) -> Result<Vec<Role>, Overreach> {
        let names: Vec<&str> = match claims.get(&self.roles_claim) {
            Some(serde_json::Value::String(s)) => s.split_whitespace().collect(),
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => Vec::new(),
        };
        let mut roles: Vec<Role> = names
            .into_iter()
            .filter_map(|n| self.role_map.get(n).copied().or_else(|| n.parse().ok()))
            .collect();
        roles.sort();
        roles.dedup();
        if let Some(r) = roles.iter().find(|r| !self.allowed_roles.contains(r)) {
            return Err(Overreach(format!("the role `{r}`")));
        }
        let present = |claim: &str| claims.get(claim).is_some_and(|v| !v.is_null());
        let staff = roles.iter().any(|r| STAFF_ROLES.contains(r));
        match claims.get(&self.hospital_claim) {
            Some(serde_json::Value::Null) | None if staff => {
                return Err(Overreach("a staff role without a hospital".into()));
            }
            Some(serde_json::Value::Null) | None => {}
            Some(v) => {
                let shown = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                if !staff
                    || !v
                        .as_str()
                        .is_some_and(|h| self.hospitals.iter().any(|b| b == h))
                {
                    return Err(Overreach(format!("the hospital `{}`", clip(&shown))));
                }
            }
        }
        if present("vendor_id") {
            return Err(Overreach("a vendor".into()));
        }
        let citizen = roles.contains(&Role::Citizen);
        for claim in [&self.national_id_claim, &self.health_id_claim] {
            if present(claim) && !(self.national_ids && citizen) {
                return Err(Overreach(format!("national IDs (`{claim}`)")));
            }
        }
        Ok(roles)
    }
}

/// An http(s) URL of at most 2048 characters without blanks.
fn is_http_url(v: &str) -> bool {
    (v.starts_with("https://") || v.starts_with("http://"))
        && v.len() <= 2048
        && !v.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Whether `v` may be an issuer's authorization or token endpoint: an
/// https URL, or http to a loopback host (127.0.0.0/8, ::1, localhost).
pub fn is_login_url(v: &str) -> bool {
    if !is_http_url(v) {
        return false;
    }
    let Some(rest) = v.strip_prefix("http://") else {
        return true;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Credentials before `@` would hide the real host.
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, _)) => h,
            None => return false,
        },
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// At most 64 characters of an untrusted value, for messages and audit.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Cached JWKS of one issuer.
pub(super) struct IssuerKeys {
    pub config: TrustedIssuer,
    state: tokio::sync::Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    keys: Vec<Jwk>,
    fetched_at: Option<Instant>,
}

impl IssuerKeys {
    pub fn new(config: TrustedIssuer) -> Self {
        Self {
            config,
            state: tokio::sync::Mutex::new(CacheState::default()),
        }
    }

    /// The key `kid`, fetching the JWKS when it is not cached and the last
    /// fetch is old enough. Concurrent misses wait for one fetch.
    pub async fn key(&self, client: &reqwest::Client, kid: &str) -> Result<Jwk, IdentityError> {
        let mut state = self.state.lock().await;
        if let Some(k) = find(&state.keys, kid) {
            return Ok(k);
        }
        let min = Duration::from_secs(self.config.min_refresh_secs);
        if state.fetched_at.is_some_and(|t| t.elapsed() < min) {
            return Err(IdentityError::UnknownKey(kid.to_owned()));
        }
        state.fetched_at = Some(Instant::now());
        match fetch(client, &self.config.jwks_url).await {
            Ok(keys) => state.keys = keys,
            Err(e) => {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "cannot fetch the issuer's JWKS");
                return Err(e);
            }
        }
        find(&state.keys, kid).ok_or_else(|| IdentityError::UnknownKey(kid.to_owned()))
    }
}

fn find(keys: &[Jwk], kid: &str) -> Option<Jwk> {
    keys.iter()
        .find(|k| k.common.key_id.as_deref() == Some(kid))
        .cloned()
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<Jwk>, IdentityError> {
    let unavailable = |e: String| IdentityError::IssuerUnavailable(format!("{url}: {e}"));
    let resp = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(unavailable(format!("status {}", resp.status())));
    }
    let bytes = resp.bytes().await.map_err(|e| unavailable(e.to_string()))?;
    if bytes.len() > 1 << 20 {
        return Err(unavailable("JWKS larger than 1 MiB".into()));
    }
    // Keys this library cannot parse are skipped, not fatal.
    let raw: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| unavailable(e.to_string()))?;
    let keys = raw
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| unavailable("no `keys` array".into()))?
        .iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .collect::<Vec<_>>();
    Ok(keys)
}

#[cfg(test)]
mod allowed_roles_tests {
    use super::*;

    fn vneid() -> TrustedIssuer {
        TrustedIssuer::new(
            "https://vneid.example",
            "vtelehealth",
            "https://vneid.example/jwks",
        )
    }

    #[test]
    fn an_external_issuer_cannot_assert_roles_it_is_not_allowed() {
        let mut issuer = vneid();
        let claims =
            serde_json::json!({ "roles": ["citizen", "operator", "reviewer", "hospital-admin"] });
        // Claiming more than allowed refuses the token (it used to drop the extra roles).
        assert!(issuer.check_assertions(&claims).is_err());
        let citizen = serde_json::json!({ "roles": ["citizen", "offline_access"] });
        assert_eq!(issuer.check_assertions(&citizen), Ok(vec![Role::Citizen]));
        issuer.allowed_roles = vec![Role::Citizen, Role::HospitalAdmin];
        issuer.hospitals = vec!["bv-a".into()];
        let admin =
            serde_json::json!({ "roles": ["citizen", "hospital-admin"], "hospital_id": "bv-a" });
        assert_eq!(
            issuer.check_assertions(&admin),
            Ok(vec![Role::Citizen, Role::HospitalAdmin])
        );
    }

    #[test]
    fn hospitals_vendors_and_national_ids_are_checked() {
        let mut hospital = vneid();
        hospital.allowed_roles = vec![Role::Practitioner];
        hospital.hospitals = vec!["bv-a".into()];
        let doctor =
            |h: serde_json::Value| serde_json::json!({ "roles": "practitioner", "hospital_id": h });
        assert_eq!(
            hospital.check_assertions(&doctor(serde_json::json!("bv-a"))),
            Ok(vec![Role::Practitioner])
        );
        for bad in [
            doctor(serde_json::json!("bv-b")),
            doctor(serde_json::json!(["bv-a"])),
            doctor(serde_json::Value::Null),
            serde_json::json!({ "roles": "practitioner", "hospital_id": "bv-a", "vendor_id": "v" }),
            serde_json::json!({ "roles": "practitioner", "hospital_id": "bv-a", "national_id": "001090000001" }),
            serde_json::json!({ "hospital_id": "bv-a" }),
        ] {
            assert!(hospital.check_assertions(&bad).is_err(), "{bad}");
        }
        let mut national = vneid();
        let citizen = serde_json::json!({ "roles": "citizen", "national_id": "001090000001" });
        assert!(national.check_assertions(&citizen).is_err());
        national.national_ids = true;
        assert_eq!(national.check_assertions(&citizen), Ok(vec![Role::Citizen]));
    }

    #[test]
    fn configurations_are_checked_at_start() {
        let ok = vneid();
        assert_eq!(ok.check(), Ok(()));
        type Change = Box<dyn Fn(&mut TrustedIssuer)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|i| i.issuer = "vneid".into()),
                "`issuer` must be an http(s) URL",
            ),
            (Box::new(|i| i.audience = " ".into()), "`audience` is empty"),
            (
                Box::new(|i| i.allowed_roles.clear()),
                "`allowed_roles` is empty",
            ),
            (
                Box::new(|i| i.allowed_roles.push(Role::Service)),
                "services and vendor users",
            ),
            (
                Box::new(|i| i.allowed_roles.push(Role::Practitioner)),
                "`hospitals` is empty",
            ),
            (
                Box::new(|i| i.hospitals.push("bv-a".into())),
                "names no hospital staff role",
            ),
            (
                Box::new(|i| {
                    i.allowed_roles = vec![Role::Practitioner, Role::Operator];
                    i.hospitals = vec!["bv-a".into()];
                }),
                "network-wide role `operator`",
            ),
            (
                Box::new(|i| {
                    i.allowed_roles = vec![Role::Practitioner];
                    i.hospitals = vec!["BV A".into()];
                }),
                "`hospitals`: invalid hospital",
            ),
            (
                Box::new(|i| {
                    i.allowed_roles = vec![Role::Practitioner];
                    i.national_ids = true;
                    i.hospitals = vec!["bv-a".into()];
                }),
                "may not assert citizens' national IDs",
            ),
            (
                Box::new(|i| {
                    i.role_map.insert("Admin".into(), Role::Operator);
                }),
                "not in `allowed_roles`",
            ),
        ];
        for (change, expected) in cases {
            let mut issuer = vneid();
            change(&mut issuer);
            let err = issuer.check().expect_err(expected);
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
        let twice = parse_trusted_issuers(
            r#"[{"issuer":"https://a.example","audience":"x","jwks_url":"https://a.example/jwks","allowed_roles":["citizen"]},
                {"issuer":"https://a.example","audience":"y","jwks_url":"https://a.example/jwks","allowed_roles":["citizen"]}]"#,
        );
        assert!(
            twice
                .unwrap_err()
                .to_string()
                .contains("#1 (`https://a.example`): listed twice")
        );
        let missing = parse_trusted_issuers(
            r#"[{"issuer":"https://a.example","audience":"x","jwks_url":"https://a.example/jwks"}]"#,
        );
        assert!(missing.unwrap_err().to_string().contains("allowed_roles"));
    }

    #[test]
    fn login_endpoints_are_https_except_on_this_machine() {
        for ok in [
            "https://idp.example/authorize",
            "http://127.0.0.1:8080/token",
            "http://127.1.2.3/token",
            "http://localhost:9000/authorize",
            "http://[::1]:9000/token",
        ] {
            assert!(is_login_url(ok), "{ok}");
        }
        for bad in [
            "http://idp.example/token",
            "http://10.0.0.1/token",
            "http://127.0.0.1.evil.example/token",
            "http://localhost@evil.example/token",
            "http://[::2]/token",
            "ftp://localhost/token",
        ] {
            assert!(!is_login_url(bad), "{bad}");
        }
    }

    #[test]
    fn login_sections_are_checked_at_start_and_keep_their_secret() {
        let mut citizen = vneid();
        citizen.national_ids = true;
        citizen.login = Some(LoginConfig::new(
            "vtelehealth",
            "s3cret-value",
            LoginKind::Citizen,
            "VNeID",
            "VNeID",
        ));
        assert_eq!(citizen.check(), Ok(()));
        assert!(!format!("{citizen:?}").contains("s3cret-value"));
        assert!(
            !serde_json::to_string(&citizen)
                .unwrap()
                .contains("s3cret-value")
        );
        type Change = Box<dyn Fn(&mut TrustedIssuer)>;
        let login = |f: fn(&mut LoginConfig)| -> Change {
            Box::new(move |i: &mut TrustedIssuer| f(i.login.as_mut().unwrap()))
        };
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|i| i.national_ids = false),
                "`national_ids` is false",
            ),
            (login(|l| l.client_secret = None), "exactly one of"),
            (
                login(|l| l.client_secret_env = Some("VTH_SURELY_UNSET_VAR".into())),
                "exactly one of",
            ),
            (
                login(|l| {
                    l.client_secret = None;
                    l.client_secret_env = Some("VTH_SURELY_UNSET_VAR".into());
                }),
                "`VTH_SURELY_UNSET_VAR` is not set",
            ),
            (login(|l| l.scope = "profile".into()), "must name `openid`"),
            (login(|l| l.label_vi = " ".into()), "`login.label_vi`"),
            (
                login(|l| l.token_endpoint = Some("ftp://x".into())),
                "`login.token_endpoint` must be an https:// URL",
            ),
            (
                login(|l| l.token_endpoint = Some("http://idp.example/token".into())),
                "`login.token_endpoint` must be an https:// URL",
            ),
            (
                login(|l| l.authorization_endpoint = Some("http://idp.example/authorize".into())),
                "`login.authorization_endpoint` must be an https:// URL",
            ),
            (
                login(|l| l.licence_claim = Some("licence".into())),
                "for `staff` logins only",
            ),
            (login(|l| l.kind = LoginKind::Staff), "bound to no hospital"),
        ];
        for (change, expected) in cases {
            let mut issuer = citizen.clone();
            change(&mut issuer);
            let err = issuer.check().expect_err(expected);
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
        let parsed = parse_trusted_issuers(
            r#"[{"issuer":"https://bv-a.example","audience":"x","jwks_url":"https://bv-a.example/jwks",
                 "allowed_roles":["practitioner"],"hospitals":["bv-a"],
                 "login":{"client_id":"vth","client_secret":"abc","kind":"staff",
                          "label_vi":"Bệnh viện A","label_en":"Hospital A","licence_claim":"licence"}}]"#,
        )
        .unwrap();
        let l = parsed[0].login.as_ref().unwrap();
        assert_eq!(
            (l.scope.as_str(), l.kind),
            ("openid profile", LoginKind::Staff)
        );
        let unknown = parse_trusted_issuers(
            r#"[{"issuer":"https://a.example","audience":"x","jwks_url":"https://a.example/jwks",
                 "allowed_roles":["citizen"],"login":{"client_id":"v","client_secret":"s","kind":"citizen","label_vi":"a","label_en":"b","secret":"x"}}]"#,
        );
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("unknown field `secret`")
        );
    }
}
