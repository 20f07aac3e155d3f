//! Identity: the built-in OpenID Connect provider that plays the national
//! e-ID (VNeID) in the embedded default, the directory of people and
//! organisations, trusted external issuers, token validation, and the
//! [`Principal`] every API route and plugin call acts for.
//!
//! Tests and tools mint a token for a user with
//! [`IdentityService::create_user`] and [`IdentityService::token_for`].

/// `SELECT` of a user's columns followed by `$rest`.
macro_rules! user_query {
    ($rest:literal) => {
        sqlx::query(concat!(
            "SELECT id, username, display_name, role, hospital_id, vendor_id, national_id, \
             health_id, specialty, title, password_hash, status, roles, specialties, \
             licence_number, email, phone, vendor_admin, last_login_at FROM identity_users ",
            $rest
        ))
    };
}

mod accounts;
pub mod accounts_cli;
mod clients;
mod codes;
mod external;
mod keys;
pub mod login;
mod people;
mod person;
mod search;
pub mod service_clients;
pub mod specialties;
pub mod staff;
mod throttle;
pub mod token_cache;
mod tokens;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use external::{
    IssuerConfigError, LoginConfig, LoginKind, TrustedIssuer, check_trusted_issuers,
    parse_trusted_issuers,
};
pub use keys::SigningKey;
pub use people::{
    Client, DEFAULT_PASSWORD_ITERATIONS, DEMO_SERVICE_CLIENT, DEMO_VENDOR, DEMO_WEB_CLIENT,
    DemoAccount, NewUser, User, demo_accounts, validate_citizen_id, validate_health_id,
};
pub use person::PersonRef;
pub use search::{
    FacilityFilter, MAX_SEARCH_QUERY, MAX_SEARCH_RESULTS, PractitionerEntry, PractitionerSearch,
    fold,
};
pub use throttle::LoginLimits;

use crate::db::Database;
use crate::time::now_secs;
use external::IssuerKeys;
use keys::KeyStore;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: i64 = 30;
/// Lifetime of an authorization code, in seconds.
pub const CODE_TTL_SECS: i64 = 60;
/// Default audience of the platform's access tokens.
pub const DEFAULT_AUDIENCE: &str = "vtelehealth";
/// Default issuer of the built-in provider (the default listen address).
pub const DEFAULT_ISSUER: &str = "http://127.0.0.1:8080";

/// A platform role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Citizen,
    Practitioner,
    HospitalAdmin,
    VendorUser,
    Reviewer,
    Operator,
    /// A service account (client credentials) acting for a hospital.
    Service,
    /// A social-insurance assessor (giám định viên BHYT): belongs to no
    /// hospital and reads only the imaging shares made for them.
    Assessor,
    /// A hospital's pharmacist (dược sĩ): staff of one hospital.
    Pharmacist,
}

impl Role {
    pub const ALL: [Role; 9] = [
        Self::Citizen,
        Self::Practitioner,
        Self::HospitalAdmin,
        Self::VendorUser,
        Self::Reviewer,
        Self::Operator,
        Self::Service,
        Self::Assessor,
        Self::Pharmacist,
    ];

    /// The name used in tokens, the database and the WIT interface.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Citizen => "citizen",
            Self::Practitioner => "practitioner",
            Self::HospitalAdmin => "hospital-admin",
            Self::VendorUser => "vendor-user",
            Self::Reviewer => "reviewer",
            Self::Operator => "operator",
            Self::Service => "service",
            Self::Assessor => "assessor",
            Self::Pharmacist => "pharmacist",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, IdentityError> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| IdentityError::Invalid(format!("unknown role `{s}`")))
    }
}

/// Who is calling: a person or a service, authenticated by a token of the
/// built-in provider or of a trusted external issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Stable subject (`sub`).
    pub subject: String,
    /// Display name.
    pub name: String,
    pub roles: Vec<Role>,
    /// Practitioners, hospital admins and services: their hospital.
    pub hospital_id: Option<String>,
    /// Vendor users: their vendor.
    pub vendor_id: Option<String>,
    /// Citizens: citizen ID (CCCD).
    pub national_id: Option<String>,
    /// Citizens: social-insurance number used as the health ID.
    pub health_id: Option<String>,
    /// Who issued the token.
    pub issuer: String,
    /// The OAuth client the token was issued to, when known.
    pub client_id: Option<String>,
}

impl Principal {
    /// Whether the principal has `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Why an identity operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("invalid token: unknown key id `{0}`")]
    UnknownKey(String),
    #[error("invalid token: issuer `{0}` is not trusted")]
    UntrustedIssuer(String),
    /// A trusted issuer's token asserted more than the issuer may.
    #[error("invalid token: the issuer `{issuer}` may not assert {what}")]
    Overreach { issuer: String, what: String },
    #[error(transparent)]
    IssuerConfig(#[from] IssuerConfigError),
    #[error("the token issuer cannot be reached: {0}")]
    IssuerUnavailable(String),
    #[error("wrong username or password")]
    InvalidCredentials,
    /// Too many failed attempts on the account or from the address.
    #[error("too many failed sign-in attempts: try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// Every hashing worker is busy and the queue is full.
    #[error("sign-in is busy: try again in a moment")]
    Busy,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("internal identity error: {0}")]
    Internal(String),
}

/// Configuration of the identity service.
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    /// `iss` of the built-in provider: its public base URL. `None`:
    /// [`DEFAULT_ISSUER`].
    pub issuer: Option<String>,
    /// `aud` of the platform's access tokens.
    pub audience: String,
    /// Lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_token_ttl: Duration,
    /// PBKDF2 iterations for new password hashes (at least 100,000 outside
    /// tests).
    pub password_iterations: u32,
    /// External issuers whose tokens are accepted.
    pub trusted_issuers: Vec<TrustedIssuer>,
    /// Throttling of failed logins and the hashing workers.
    pub login: LoginLimits,
}

impl Default for IdentityOptions {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: DEFAULT_AUDIENCE.into(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            password_iterations: DEFAULT_PASSWORD_ITERATIONS,
            trusted_issuers: Vec::new(),
            login: LoginLimits::default(),
        }
    }
}

/// Tokens returned by the token endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    pub scope: String,
}

/// A validated authorization request of the code flow.
#[derive(Debug, Clone)]
pub struct CodeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: String,
    pub nonce: Option<String>,
}

/// The identity service of one runtime node.
pub struct IdentityService {
    db: Database,
    issuer: String,
    audience: String,
    access_ttl: i64,
    refresh_ttl: i64,
    iterations: u32,
    keys: KeyStore,
    external: HashMap<String, IssuerKeys>,
    http: reqwest::Client,
    last_own_reload: std::sync::Mutex<Option<Instant>>,
    audit: crate::audit::AuditLog,
    hasher: throttle::HashPool,
    throttle: throttle::Throttle,
    trusted_proxies: Vec<std::net::IpAddr>,
    /// Hashes of over-asserting tokens already audited: a replayed token
    /// is refused every time but recorded once (per node, bounded).
    audited_overreach: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Verified access tokens, so a signature is checked once per node.
    tokens: token_cache::TokenCache,
    /// Trusted issuers people sign in through (their `login` sections).
    logins: Vec<login::Provider>,
    /// Set by [`Self::seed_demo`]: the login page lists the demo accounts.
    demo: std::sync::atomic::AtomicBool,
    /// Suspended accounts and revoked clients, and clients' last use.
    staff: staff::StaffState,
}

/// Hex SHA-256, how codes, refresh tokens are stored.
fn sha256_hex(s: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, s.as_bytes()).as_ref())
}

fn opt_str(v: &Value, claim: &str) -> Option<String> {
    v.get(claim)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl IdentityService {
    /// Open the service: load (or create) the signing keys.
    pub async fn new(db: Database, options: IdentityOptions) -> Result<Self, IdentityError> {
        // reqwest's rustls needs a process-wide provider; another part of
        // the runtime may have installed it already.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| IdentityError::Internal(format!("HTTP client: {e}")))?;
        check_trusted_issuers(&options.trusted_issuers)?;
        let own_issuer = options
            .issuer
            .unwrap_or_else(|| DEFAULT_ISSUER.to_owned())
            .trim_end_matches('/')
            .to_owned();
        if let Some(t) = options
            .trusted_issuers
            .iter()
            .find(|t| t.issuer.trim_end_matches('/') == own_issuer)
        {
            return Err(IdentityError::Invalid(format!(
                "trusted issuer `{}` is this platform's own issuer",
                t.issuer
            )));
        }
        let keys = KeyStore::load(db.clone(), now_secs()).await?;
        let logins = login::providers(&options.trusted_issuers)?;
        let external = options
            .trusted_issuers
            .into_iter()
            .map(|t| (t.issuer.clone(), IssuerKeys::new(t)))
            .collect();
        let service = Self {
            audit: crate::audit::AuditLog::new(db.clone()),
            hasher: throttle::HashPool::new(&options.login),
            trusted_proxies: options.login.trusted_proxies.clone(),
            throttle: throttle::Throttle::new(options.login),
            audited_overreach: std::sync::Mutex::default(),
            tokens: token_cache::TokenCache::default(),
            logins,
            demo: std::sync::atomic::AtomicBool::new(false),
            staff: staff::StaffState::default(),
            db,
            issuer: own_issuer,
            audience: options.audience,
            access_ttl: options.access_token_ttl.as_secs() as i64,
            refresh_ttl: options.refresh_token_ttl.as_secs() as i64,
            iterations: options.password_iterations,
            keys,
            external,
            http,
            last_own_reload: std::sync::Mutex::new(None),
        };
        service.fold_missing().await?;
        Ok(service)
    }

    /// `iss` of the built-in provider.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `aud` of the platform's access tokens.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The person `p` stands for, as every store and comparison keys
    /// people: the user id for this provider's users, `issuer#subject`
    /// for a trusted external issuer's.
    pub fn person(&self, p: &Principal) -> PersonRef {
        PersonRef::of(p, &self.issuer)
    }

    // ----- keys -----

    /// Add a new active signing key; the previous one stays in the JWKS
    /// until the tokens it signed have expired. Returns the new `kid`.
    pub async fn rotate_keys(&self) -> Result<String, IdentityError> {
        self.keys.rotate(now_secs()).await
    }

    /// The `kid` signing new tokens.
    pub fn active_kid(&self) -> Option<String> {
        self.keys.active().map(|k| k.kid)
    }

    /// The public keys that verify tokens now, as a JWK Set.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .published(now_secs(), self.overlap())
            .iter()
            .map(SigningKey::jwk)
            .collect();
        json!({ "keys": keys })
    }

    fn overlap(&self) -> i64 {
        self.access_ttl.max(CODE_TTL_SECS) + LEEWAY_SECS
    }

    async fn own_key(&self, kid: &str) -> Result<SigningKey, IdentityError> {
        let find = || {
            self.keys
                .published(now_secs(), self.overlap())
                .into_iter()
                .find(|k| k.kid == kid)
        };
        if let Some(k) = find() {
            return Ok(k);
        }
        // Another node may have rotated: re-read at most every 5 s.
        let reload = {
            let mut last = self
                .last_own_reload
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if reload {
            self.keys.reload().await?;
        }
        find().ok_or_else(|| IdentityError::UnknownKey(kid.to_owned()))
    }

    // ----- demo -----

    /// Seed the demo vendor, accounts and clients (idempotent). The demo
    /// hospitals must exist.
    pub async fn seed_demo(&self) -> Result<(), IdentityError> {
        self.demo.store(true, std::sync::atomic::Ordering::Relaxed);
        self.create_vendor(DEMO_VENDOR.0, DEMO_VENDOR.1).await?;
        for a in demo_accounts() {
            if self.user_by_username(a.username).await?.is_some() {
                continue;
            }
            let mut u = NewUser::new(a.username, a.display_name, a.role, a.password);
            u.hospital_id = a.hospital_id.map(Into::into);
            u.vendor_id = a.vendor_id.map(Into::into);
            u.national_id = a.national_id.map(Into::into);
            u.health_id = a.health_id.map(Into::into);
            u.specialty = a.specialty.map(Into::into);
            u.title = a.title.map(Into::into);
            let user = self.create_user(u).await?;
            // The demo vendor's user administers it (invites colleagues).
            if a.role == Role::VendorUser {
                self.set_vendor_admin(&user.id, true)
                    .await
                    .map_err(|e| IdentityError::Internal(e.to_string()))?;
            }
        }
        let callback = format!("{}/oidc/callback", self.issuer);
        self.register_public_client(DEMO_WEB_CLIENT, "VTelehealth web", &[&callback])
            .await?;
        if self.client(DEMO_SERVICE_CLIENT.0).await?.is_none() {
            let (id, secret, hospital) = DEMO_SERVICE_CLIENT;
            self.register_service_client(id, "HIS Bệnh viện Bạch Mai", hospital, secret)
                .await?;
        }
        Ok(())
    }
}

/// Verify a JWT's signature and standard claims: only `alg`, exact issuer
/// and audience, `exp`/`nbf` with [`LEEWAY_SECS`], `sub` present.
fn decode(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
    issuer: &str,
    audience: &str,
) -> Result<Value, IdentityError> {
    let mut v = Validation::new(alg);
    v.leeway = LEEWAY_SECS as u64;
    v.validate_nbf = true;
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, key, &v)
        .map(|d| d.claims)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            let why = match e.kind() {
                K::ExpiredSignature => "expired".to_owned(),
                K::ImmatureSignature => "not yet valid".to_owned(),
                K::InvalidIssuer => "wrong issuer".to_owned(),
                K::InvalidAudience => "wrong audience".to_owned(),
                K::InvalidSignature => "bad signature".to_owned(),
                K::InvalidAlgorithm => "algorithm not accepted".to_owned(),
                K::MissingRequiredClaim(c) => format!("missing claim `{c}`"),
                other => format!("{other:?}"),
            };
            IdentityError::InvalidToken(why)
        })
}

/// Whether a JWT `typ` names an access token (RFC 9068 §2.1: `at+jwt`,
/// media type prefix optional, case-insensitive).
fn is_access_token_typ(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t == "at+jwt" || t == "application/at+jwt"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256() {
        // RFC 7636 appendix B.
        assert!(codes::pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!codes::pkce_matches(
            "short",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    #[tokio::test]
    async fn tickets_are_scoped_to_their_audience_and_are_no_access_tokens() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = Database::connect(&format!("sqlite://{}", dir.path().join("i.db").display()))
            .await
            .unwrap();
        let options = IdentityOptions {
            issuer: Some("http://issuer.test".into()),
            ..Default::default()
        };
        let id = IdentityService::new(db, options).await.unwrap();
        let p = Principal {
            subject: "u-1".into(),
            name: "BS An".into(),
            roles: vec![Role::Practitioner],
            hospital_id: Some("bv-a".into()),
            vendor_id: None,
            national_id: None,
            health_id: None,
            issuer: "http://issuer.test".into(),
            client_id: None,
        };
        let ticket = id
            .issue_ticket(&p, "frames", json!({ "plugin": "hello" }), 60)
            .unwrap();
        let (back, extra) = id.validate_ticket(&ticket, "frames").await.unwrap();
        assert_eq!((back, extra), (p.clone(), json!({ "plugin": "hello" })));
        // Another audience, the API itself, and a ticket with the API's audience: refused.
        assert!(id.validate_ticket(&ticket, "other").await.is_err());
        assert!(id.validate(&ticket).await.is_err());
        assert!(id.issue_ticket(&p, id.audience(), json!({}), 60).is_err());
        // An access token is no ticket, and an expired ticket is refused.
        let access = id.issue_access_token(&p, "web", "openid").unwrap();
        assert!(id.validate_ticket(&access, "frames").await.is_err());
        let expired = id
            .issue_ticket(&p, "frames", json!({}), -(LEEWAY_SECS + 5))
            .unwrap();
        assert!(id.validate_ticket(&expired, "frames").await.is_err());
    }

    #[tokio::test]
    async fn a_cached_token_is_refused_as_soon_as_the_full_check_would_refuse_it() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = Database::connect(&format!("sqlite://{}", dir.path().join("i.db").display()))
            .await
            .unwrap();
        let options = IdentityOptions {
            issuer: Some("http://issuer.test".into()),
            ..Default::default()
        };
        let id = IdentityService::new(db, options).await.unwrap();
        let claims = |exp: i64| {
            json!({
                "iss": "http://issuer.test", "sub": "u-1", "aud": id.audience(),
                "iat": now_secs(), "exp": exp, "roles": ["practitioner"], "hospital_id": "bv-a",
            })
        };

        // Verified once, then answered from the cache with the same principal.
        let token = id.sign_claims(&claims(now_secs() + 300)).unwrap();
        let first = id.validate(&token).await.unwrap();
        assert_eq!(id.token_cache_hits(), 0);
        assert_eq!(id.validate(&token).await.unwrap(), first);
        assert_eq!(id.token_cache_hits(), 1);

        // Expiry: valid for about one more second (exp + leeway), then
        // refused as expired although it is cached.
        let t0 = now_secs();
        let short = id.sign_claims(&claims(t0 - LEEWAY_SECS + 1)).unwrap();
        id.validate(&short).await.unwrap();
        while now_secs() < t0 + 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let err = id.validate(&short).await.unwrap_err();
        assert!(
            matches!(&err, IdentityError::InvalidToken(m) if m == "expired"),
            "{err}"
        );

        // The key is no longer published (retired beyond the overlap): the
        // cached token is refused on the next request, as uncached.
        sqlx::query("UPDATE identity_keys SET retired_at = 1")
            .execute(&id.db.pool)
            .await
            .unwrap();
        id.keys.reload().await.unwrap();
        let hits = id.token_cache_hits();
        let err = id.validate(&token).await.unwrap_err();
        assert!(matches!(err, IdentityError::UnknownKey(_)), "{err}");
        assert_eq!(id.token_cache_hits(), hits, "found, but not served");
        id.set_token_cache_capacity(0);
        assert!(id.validate(&token).await.is_err());
    }

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(serde_json::to_value(r).unwrap(), json!(r.as_str()));
        }
    }
}
