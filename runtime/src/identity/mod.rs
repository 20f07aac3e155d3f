//! Identity: the built-in OpenID Connect provider that plays the national
//! e-ID (VNeID) in the embedded default, the directory of people and
//! organisations, trusted external issuers, token validation, and the
//! [`Principal`] every API route and plugin call acts for.
//!
//! Tests and tools mint a token for a user with
//! [`IdentityService::create_user`] and [`IdentityService::token_for`].

mod external;
mod keys;
mod people;
mod person;
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
use sqlx::Row;

pub use external::{
    IssuerConfigError, TrustedIssuer, check_trusted_issuers, parse_trusted_issuers,
};
pub use keys::SigningKey;
pub use people::{
    Client, DEFAULT_PASSWORD_ITERATIONS, DEMO_SERVICE_CLIENT, DEMO_VENDOR, DEMO_WEB_CLIENT,
    DemoAccount, NewUser, User, demo_accounts, validate_citizen_id, validate_health_id,
};
pub use person::PersonRef;
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
}

impl Role {
    pub const ALL: [Role; 8] = [
        Self::Citizen,
        Self::Practitioner,
        Self::HospitalAdmin,
        Self::VendorUser,
        Self::Reviewer,
        Self::Operator,
        Self::Service,
        Self::Assessor,
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

/// `SELECT` of a user's columns followed by `$rest`.
macro_rules! user_query {
    ($rest:literal) => {
        sqlx::query(concat!(
            "SELECT id, username, display_name, role, hospital_id, vendor_id, national_id, \
             health_id, specialty, title, password_hash FROM identity_users ",
            $rest
        ))
    };
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
        let external = options
            .trusted_issuers
            .into_iter()
            .map(|t| (t.issuer.clone(), IssuerKeys::new(t)))
            .collect();
        Ok(Self {
            audit: crate::audit::AuditLog::new(db.clone()),
            hasher: throttle::HashPool::new(&options.login),
            trusted_proxies: options.login.trusted_proxies.clone(),
            throttle: throttle::Throttle::new(options.login),
            audited_overreach: std::sync::Mutex::default(),
            tokens: token_cache::TokenCache::default(),
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
        })
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

    // ----- directory -----

    /// Add a person to the directory.
    pub async fn create_user(&self, new: NewUser) -> Result<User, IdentityError> {
        new.validate()?;
        let hash = self.hash(&new.password).await?;
        let id = format!("u-{}", uuid::Uuid::now_v7().simple());
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO identity_users (id, username, display_name, role, hospital_id, vendor_id, \
             national_id, health_id, specialty, title, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&id)
        .bind(&new.username)
        .bind(&new.display_name)
        .bind(new.role.as_str())
        .bind(&new.hospital_id)
        .bind(&new.vendor_id)
        .bind(&new.national_id)
        .bind(&new.health_id)
        .bind(&new.specialty)
        .bind(&new.title)
        .bind(&hash)
        .bind(now_secs())
        .execute(&mut *tx.tx)
        .await;
        match inserted {
            Ok(_) => tx.commit().await?,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(IdentityError::Conflict(
                    "username, citizen ID or health ID already registered".into(),
                ));
            }
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                return Err(IdentityError::Invalid("unknown hospital or vendor".into()));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(User {
            id,
            username: new.username,
            display_name: new.display_name,
            role: new.role,
            hospital_id: new.hospital_id,
            vendor_id: new.vendor_id,
            national_id: new.national_id,
            health_id: new.health_id,
            specialty: new.specialty,
            title: new.title,
        })
    }

    /// The user with this subject.
    pub async fn user(&self, id: &str) -> Result<Option<User>, IdentityError> {
        let row = user_query!("WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.as_ref().map(User::from_row).transpose()
    }

    /// The user with this login name.
    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, IdentityError> {
        let row = user_query!("WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.db.pool)
            .await?;
        row.as_ref().map(User::from_row).transpose()
    }

    /// A practitioner by subject (what the WIT `practitioner` look-up reads).
    pub async fn practitioner(&self, id: &str) -> Result<Option<User>, IdentityError> {
        Ok(self
            .user(id)
            .await?
            .filter(|u| u.role == Role::Practitioner))
    }

    /// Check a username and password, from `from` (the client's address,
    /// when known). Throttled per account and per address: while either
    /// is held, refused without hashing.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
        from: Option<std::net::IpAddr>,
    ) -> Result<User, IdentityError> {
        let keys = login_keys(format!("user:{}", username.to_lowercase()), from);
        self.throttled(&keys)?;
        let row = user_query!("WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.db.pool)
            .await?;
        let password = password.to_owned();
        let ok = match &row {
            None => {
                // Spend the same work, so timing does not reveal usernames.
                let iterations = self.iterations;
                let _ = self
                    .hasher
                    .run(move || people::hash_password(&password, iterations))
                    .await?;
                false
            }
            Some(row) => {
                let hash: String = row.try_get("password_hash")?;
                self.hasher
                    .run(move || people::verify_password(&password, &hash))
                    .await?
            }
        };
        match row {
            Some(row) if ok => {
                self.throttle.succeeded(&keys[0]);
                User::from_row(&row)
            }
            _ => {
                self.login_failed(&keys, from).await;
                Err(IdentityError::InvalidCredentials)
            }
        }
    }

    /// The address a request came from: the peer, or, when the peer is a
    /// trusted proxy, the nearest address before it in `X-Forwarded-For`.
    pub fn client_address(
        &self,
        peer: Option<std::net::IpAddr>,
        forwarded_for: Option<&str>,
    ) -> Option<std::net::IpAddr> {
        let mut addr = peer?;
        if let Some(chain) = forwarded_for {
            for hop in chain.rsplit(',') {
                if !self.trusted_proxies.contains(&addr) {
                    break;
                }
                match hop.trim().parse() {
                    Ok(ip) => addr = ip,
                    Err(_) => break,
                }
            }
        }
        Some(addr)
    }

    /// Refuse while any of `keys` is held by a back-off.
    fn throttled(&self, keys: &[throttle::Key]) -> Result<(), IdentityError> {
        match self.throttle.wait(keys) {
            None => Ok(()),
            Some(wait) => Err(IdentityError::Throttled {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }),
        }
    }

    /// Count a failed login; audit each back-off it starts.
    async fn login_failed(&self, keys: &[throttle::Key], from: Option<std::net::IpAddr>) {
        for b in self.throttle.failed(keys) {
            let event = crate::audit::AuditEvent {
                actor: "anonymous".into(),
                action: "identity.login_throttled".into(),
                target: b.key.target(),
                hospital_id: None,
                details: json!({
                    "failures": b.failures,
                    "retry_after_secs": b.delay.as_secs(),
                    "from": from.map(|ip| ip.to_string()),
                }),
            };
            // Folded and bounded: many addresses cannot flood the trail.
            if let Err(e) = self.audit.append_refusal(event).await {
                tracing::error!(error = %e, "cannot audit a login back-off");
            }
            tracing::warn!(target = %b.key.target(), failures = b.failures, "login back-off");
        }
    }

    /// Hash a new password or secret on a hashing worker.
    async fn hash(&self, secret: &str) -> Result<String, IdentityError> {
        let (secret, iterations) = (secret.to_owned(), self.iterations);
        self.hasher
            .run(move || people::hash_password(&secret, iterations))
            .await?
    }

    /// Register a vendor (organisation).
    pub async fn create_vendor(&self, id: &str, name: &str) -> Result<(), IdentityError> {
        crate::directory::validate_id(id).map_err(|e| IdentityError::Invalid(e.to_string()))?;
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO vendors (id, name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name",
        )
        .bind(id)
        .bind(name)
        .bind(now_secs())
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Register (or update) a public browser client: code flow with PKCE.
    pub async fn register_public_client(
        &self,
        id: &str,
        name: &str,
        redirect_uris: &[&str],
    ) -> Result<(), IdentityError> {
        self.upsert_client(id, name, "public", None, redirect_uris, None)
            .await
    }

    /// Register (or update) a confidential service client acting for
    /// `hospital_id` (client credentials). The secret is stored hashed.
    pub async fn register_service_client(
        &self,
        id: &str,
        name: &str,
        hospital_id: &str,
        secret: &str,
    ) -> Result<(), IdentityError> {
        if secret.len() < 16 {
            return Err(IdentityError::Invalid(
                "client secrets are at least 16 bytes".into(),
            ));
        }
        let hash = self.hash(secret).await?;
        self.upsert_client(id, name, "confidential", Some(hash), &[], Some(hospital_id))
            .await
    }

    async fn upsert_client(
        &self,
        id: &str,
        name: &str,
        kind: &str,
        secret_hash: Option<String>,
        redirect_uris: &[&str],
        hospital_id: Option<&str>,
    ) -> Result<(), IdentityError> {
        crate::directory::validate_id(id).map_err(|e| IdentityError::Invalid(e.to_string()))?;
        if redirect_uris
            .iter()
            .any(|u| u.contains('\n') || u.is_empty())
        {
            return Err(IdentityError::Invalid("invalid redirect URI".into()));
        }
        let mut tx = self.db.begin_write().await?;
        let result = sqlx::query(
            "INSERT INTO identity_clients (id, name, kind, secret_hash, redirect_uris, hospital_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
             kind = excluded.kind, secret_hash = excluded.secret_hash, redirect_uris = excluded.redirect_uris, \
             hospital_id = excluded.hospital_id",
        )
        .bind(id)
        .bind(name)
        .bind(kind)
        .bind(secret_hash)
        .bind(redirect_uris.join("\n"))
        .bind(hospital_id)
        .bind(now_secs())
        .execute(&mut *tx.tx)
        .await;
        match result {
            Ok(_) => tx.commit().await?,
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                return Err(IdentityError::Invalid("unknown hospital".into()));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// A registered client.
    pub async fn client(&self, id: &str) -> Result<Option<Client>, IdentityError> {
        let row = sqlx::query(
            "SELECT id, name, kind, secret_hash, redirect_uris, hospital_id FROM identity_clients WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?;
        row.as_ref().map(Client::from_row).transpose()
    }

    /// A confidential client, if `secret` is its secret; throttled like
    /// [`Self::authenticate`].
    pub async fn authenticate_client(
        &self,
        id: &str,
        secret: &str,
        from: Option<std::net::IpAddr>,
    ) -> Result<Client, IdentityError> {
        let keys = login_keys(format!("client:{id}"), from);
        self.throttled(&keys)?;
        let client = self.client(id).await?;
        let stored = client
            .as_ref()
            .filter(|c| c.confidential)
            .and_then(|c| c.secret_hash.clone());
        let ok = match stored {
            Some(hash) => {
                let secret = secret.to_owned();
                self.hasher
                    .run(move || people::verify_password(&secret, &hash))
                    .await?
            }
            None => false,
        };
        match client {
            Some(c) if ok => {
                self.throttle.succeeded(&keys[0]);
                Ok(c)
            }
            _ => {
                self.login_failed(&keys, from).await;
                Err(IdentityError::InvalidCredentials)
            }
        }
    }

    /// The principal of a service client: a service of its hospital.
    pub fn service_principal(&self, client: &Client) -> Principal {
        Principal {
            subject: format!("client:{}", client.id),
            name: client.name.clone(),
            roles: vec![Role::Service],
            hospital_id: client.hospital_id.clone(),
            vendor_id: None,
            national_id: None,
            health_id: None,
            issuer: self.issuer.clone(),
            client_id: Some(client.id.clone()),
        }
    }

    // ----- authorization codes and refresh tokens -----

    /// Store a single-use code for `user_id`, bound to the request.
    pub async fn create_code(
        &self,
        user_id: &str,
        req: &CodeRequest,
    ) -> Result<String, IdentityError> {
        let code = people::random_token()?;
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO identity_codes (code_hash, client_id, redirect_uri, user_id, code_challenge, scope, nonce, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)",
        )
        .bind(sha256_hex(&code))
        .bind(&req.client_id)
        .bind(&req.redirect_uri)
        .bind(user_id)
        .bind(&req.code_challenge)
        .bind(&req.scope)
        .bind(&req.nonce)
        .bind(now_secs() + CODE_TTL_SECS)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(code)
    }

    /// Redeem a code (once): checks client, redirect URI, expiry and the
    /// PKCE verifier, then issues tokens.
    pub async fn redeem_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<TokenResponse, IdentityError> {
        let bad = |m: &str| IdentityError::Invalid(m.to_owned());
        let t = now_secs();
        let mut tx = self.db.begin_write().await?;
        let row = sqlx::query(
            "UPDATE identity_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL \
             RETURNING client_id, redirect_uri, user_id, code_challenge, scope, nonce, expires_at",
        )
        .bind(t)
        .bind(sha256_hex(code))
        .fetch_optional(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        let row = row.ok_or_else(|| bad("unknown or already used code"))?;
        let expires: i64 = row.try_get("expires_at")?;
        let bound_client: String = row.try_get("client_id")?;
        let bound_redirect: String = row.try_get("redirect_uri")?;
        let challenge: String = row.try_get("code_challenge")?;
        if expires < t {
            return Err(bad("the code has expired"));
        }
        if bound_client != client_id || bound_redirect != redirect_uri {
            return Err(bad("the code was issued to another client or redirect URI"));
        }
        if !pkce_matches(code_verifier, &challenge) {
            return Err(bad("code_verifier does not match the code challenge"));
        }
        let user_id: String = row.try_get("user_id")?;
        let scope: String = row.try_get("scope")?;
        let nonce: Option<String> = row.try_get("nonce")?;
        let user = self
            .user(&user_id)
            .await?
            .ok_or_else(|| bad("the user no longer exists"))?;
        let family = uuid::Uuid::now_v7().to_string();
        self.tokens_for_user(&user, client_id, &scope, nonce.as_deref(), &family)
            .await
    }

    async fn tokens_for_user(
        &self,
        user: &User,
        client_id: &str,
        scope: &str,
        nonce: Option<&str>,
        family: &str,
    ) -> Result<TokenResponse, IdentityError> {
        let principal = user.principal(&self.issuer);
        let access_token = self.issue_access_token(&principal, client_id, scope)?;
        let id_token = if scope.split(' ').any(|s| s == "openid") {
            let t = now_secs();
            let mut claims = json!({
                "iss": self.issuer, "sub": user.id, "aud": client_id, "azp": client_id,
                "iat": t, "exp": t + self.access_ttl, "auth_time": t,
                "name": user.display_name, "preferred_username": user.username,
            });
            if let Some(n) = nonce {
                claims["nonce"] = json!(n);
            }
            Some(self.sign(&claims, Some("JWT"))?)
        } else {
            None
        };
        let refresh = people::random_token()?;
        let t = now_secs();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO identity_refresh_tokens (token_hash, family_id, user_id, client_id, scope, expires_at, created_at, used_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)",
        )
        .bind(sha256_hex(&refresh))
        .bind(family)
        .bind(&user.id)
        .bind(client_id)
        .bind(scope)
        .bind(t + self.refresh_ttl)
        .bind(t)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: self.access_ttl,
            refresh_token: Some(refresh),
            id_token,
            scope: scope.to_owned(),
        })
    }

    /// Tokens for a service client (client credentials; no refresh token).
    pub fn tokens_for_client(
        &self,
        client: &Client,
        scope: &str,
    ) -> Result<TokenResponse, IdentityError> {
        let access_token =
            self.issue_access_token(&self.service_principal(client), &client.id, scope)?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: self.access_ttl,
            refresh_token: None,
            id_token: None,
            scope: scope.to_owned(),
        })
    }

    /// Exchange a refresh token for new tokens; the old one is spent. A
    /// spent token presented again revokes its whole family (theft).
    pub async fn refresh(
        &self,
        token: &str,
        client_id: &str,
    ) -> Result<TokenResponse, IdentityError> {
        let bad = |m: &str| IdentityError::Invalid(m.to_owned());
        let t = now_secs();
        let hash = sha256_hex(token);
        let mut tx = self.db.begin_write().await?;
        let row = sqlx::query(
            "UPDATE identity_refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL \
             AND revoked_at IS NULL AND expires_at > $1 AND client_id = $3 RETURNING family_id, user_id, scope",
        )
        .bind(t)
        .bind(&hash)
        .bind(client_id)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(row) = row else {
            // Reuse of a spent token: revoke the family.
            sqlx::query(
                "UPDATE identity_refresh_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND family_id IN \
                 (SELECT family_id FROM identity_refresh_tokens WHERE token_hash = $2 AND used_at IS NOT NULL)",
            )
            .bind(t)
            .bind(&hash)
            .execute(&mut *tx.tx)
            .await?;
            tx.commit().await?;
            return Err(bad("unknown, spent, revoked or expired refresh token"));
        };
        tx.commit().await?;
        let family: String = row.try_get("family_id")?;
        let user_id: String = row.try_get("user_id")?;
        let scope: String = row.try_get("scope")?;
        let user = self
            .user(&user_id)
            .await?
            .ok_or_else(|| bad("the user no longer exists"))?;
        self.tokens_for_user(&user, client_id, &scope, None, &family)
            .await
    }

    /// Revoke the session a refresh token belongs to (logout). True when
    /// the token was known.
    pub async fn revoke_refresh(&self, token: &str) -> Result<bool, IdentityError> {
        let mut tx = self.db.begin_write().await?;
        let done = sqlx::query(
            "UPDATE identity_refresh_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND family_id IN \
             (SELECT family_id FROM identity_refresh_tokens WHERE token_hash = $2)",
        )
        .bind(now_secs())
        .bind(sha256_hex(token))
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    // ----- demo -----

    /// Seed the demo vendor, accounts and clients (idempotent). The demo
    /// hospitals must exist.
    pub async fn seed_demo(&self) -> Result<(), IdentityError> {
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
            self.create_user(u).await?;
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

/// The throttling keys of a login: the account (clipped, so a huge name
/// costs no memory) and the address when known.
fn login_keys(account: String, from: Option<std::net::IpAddr>) -> Vec<throttle::Key> {
    let account = account.chars().take(160).collect();
    std::iter::once(throttle::Key::Account(account))
        .chain(from.map(throttle::Key::address))
        .collect()
}

/// Whether a JWT `typ` names an access token (RFC 9068 §2.1: `at+jwt`,
/// media type prefix optional, case-insensitive).
fn is_access_token_typ(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t == "at+jwt" || t == "application/at+jwt"
    })
}

/// PKCE S256: BASE64URL(SHA-256(verifier)) == challenge.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    use base64::Engine;
    let valid = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !valid {
        return false;
    }
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref());
    aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256() {
        // RFC 7636 appendix B.
        assert!(pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
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
