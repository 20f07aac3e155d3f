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
    /// Platform roles this issuer may assert; any other role in its tokens
    /// is dropped. The default (citizen, practitioner) keeps an external
    /// login from ever making someone a reviewer, operator or admin unless
    /// the operator says so here.
    #[serde(default = "default_allowed_roles")]
    pub allowed_roles: Vec<Role>,
}

fn default_allowed_roles() -> Vec<Role> {
    vec![Role::Citizen, Role::Practitioner]
}

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
            allowed_roles: default_allowed_roles(),
        }
    }

    /// Platform roles named by the token's roles claim.
    pub fn map_roles(&self, claims: &serde_json::Value) -> Vec<Role> {
        let names: Vec<&str> = match claims.get(&self.roles_claim) {
            Some(serde_json::Value::String(s)) => s.split_whitespace().collect(),
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => Vec::new(),
        };
        let mut roles: Vec<Role> = names
            .into_iter()
            .filter_map(|n| self.role_map.get(n).copied().or_else(|| n.parse().ok()))
            .filter(|r| self.allowed_roles.contains(r))
            .collect();
        roles.sort();
        roles.dedup();
        roles
    }
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

    #[test]
    fn an_external_issuer_cannot_assert_roles_it_is_not_allowed() {
        let mut issuer = TrustedIssuer::new(
            "https://vneid.example",
            "vtelehealth",
            "https://vneid.example/jwks",
        );
        let claims =
            serde_json::json!({ "roles": ["citizen", "operator", "reviewer", "hospital-admin"] });
        assert_eq!(issuer.map_roles(&claims), vec![Role::Citizen]);
        issuer.allowed_roles.push(Role::HospitalAdmin);
        assert_eq!(
            issuer.map_roles(&claims),
            vec![Role::Citizen, Role::HospitalAdmin]
        );
    }
}
