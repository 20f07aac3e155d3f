//! Access tokens and tickets: signing, and checking a bearer token of the
//! built-in provider or of a trusted external issuer (with the verified-token
//! cache in front of the full check).

use super::*;

impl IdentityService {
    /// Sign an access token for `principal`.
    pub fn issue_access_token(
        &self,
        principal: &Principal,
        client_id: &str,
        scope: &str,
    ) -> Result<String, IdentityError> {
        let t = now_secs();
        let mut claims = json!({
            "iss": self.issuer, "sub": principal.subject, "aud": self.audience,
            "iat": t, "nbf": t, "exp": t + self.access_ttl,
            "jti": uuid::Uuid::new_v4().to_string(),
            "client_id": client_id, "scope": scope,
            "name": principal.name, "roles": principal.roles,
        });
        for (claim, value) in [
            ("hospital_id", &principal.hospital_id),
            ("vendor_id", &principal.vendor_id),
            ("national_id", &principal.national_id),
            ("health_id", &principal.health_id),
        ] {
            if let Some(v) = value {
                claims[claim] = json!(v);
            }
        }
        self.sign(&claims, Some("at+jwt"))
    }

    pub(super) fn sign(&self, claims: &Value, typ: Option<&str>) -> Result<String, IdentityError> {
        let key = self
            .keys
            .active()
            .ok_or_else(|| IdentityError::Internal("no active signing key".into()))?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        header.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key.encoding())
            .map_err(|e| IdentityError::Internal(format!("signing: {e}")))
    }

    /// Sign arbitrary claims with the active key (ES256, `kid` set,
    /// `typ: at+jwt`). For tools and tests only: whatever is signed here is
    /// trusted.
    pub fn sign_claims(&self, claims: &Value) -> Result<String, IdentityError> {
        self.sign(claims, Some("at+jwt"))
    }

    /// Like [`Self::sign_claims`] with another header `typ` (tests of the
    /// token-type check).
    pub fn sign_claims_typed(
        &self,
        claims: &Value,
        typ: Option<&str>,
    ) -> Result<String, IdentityError> {
        self.sign(claims, typ)
    }

    /// An access token for a directory user (tests and tools).
    pub fn token_for(&self, user: &User) -> Result<String, IdentityError> {
        self.issue_access_token(
            &user.principal(&self.issuer),
            "vtelehealth-internal",
            "openid",
        )
    }

    /// Check a bearer token of the built-in provider or of a trusted
    /// external issuer and return who it stands for.
    pub async fn validate(&self, token: &str) -> Result<Principal, IdentityError> {
        if token.len() > 16 * 1024 {
            return Err(IdentityError::InvalidToken("too long".into()));
        }
        let hash = token_cache::token_hash(token);
        if let Some((principal, key)) = self.tokens.get(&hash, now_secs()) {
            if self.still_published(&key).await {
                self.refuse_blocked(&principal).await?;
                self.tokens.count_hit();
                return Ok(principal);
            }
            self.tokens.remove(&hash);
        }
        let (principal, claims, key) = self.verify(token).await?;
        self.refuse_blocked(&principal).await?;
        if let Some(exp) = claims.get("exp").and_then(Value::as_i64) {
            let nbf = claims.get("nbf").and_then(Value::as_i64);
            self.tokens
                .insert(hash, principal.clone(), exp, nbf, key, now_secs());
        }
        Ok(principal)
    }

    /// Refuse the tokens of a suspended account or a revoked client of
    /// this issuer, cached or not (see [`Self::is_blocked`]).
    async fn refuse_blocked(&self, principal: &Principal) -> Result<(), IdentityError> {
        if principal.issuer == self.issuer && self.is_blocked(&principal.subject).await? {
            return Err(IdentityError::InvalidToken(
                "the account is suspended or the client revoked".into(),
            ));
        }
        Ok(())
    }

    /// Whether the key that verified a cached token would still be found
    /// by the full check, looked up the same way.
    async fn still_published(&self, key: &token_cache::VerifiedBy) -> bool {
        match key {
            token_cache::VerifiedBy::Own(kid) => {
                self.keys.is_published(kid, now_secs(), self.overlap())
                    || self.own_key(kid).await.is_ok()
            }
            token_cache::VerifiedBy::External { issuer, kid } => match self.external.get(issuer) {
                Some(ext) => ext.key(&self.http, kid).await.is_ok(),
                None => false,
            },
        }
    }

    /// Tune the verified-token cache (0 turns it off; benchmarks compare).
    pub fn set_token_cache_capacity(&self, capacity: usize) {
        self.tokens.set_capacity(capacity);
    }

    /// Requests whose token was answered from the cache since start.
    pub fn token_cache_hits(&self) -> u64 {
        self.tokens.hits()
    }

    /// The full check of [`Self::validate`]: the principal, the verified
    /// claims and the key that verified them.
    async fn verify(
        &self,
        token: &str,
    ) -> Result<(Principal, Value, token_cache::VerifiedBy), IdentityError> {
        let invalid = |m: String| IdentityError::InvalidToken(m);
        // Fails for `alg: none` and any algorithm the library does not know.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(format!("malformed header: {e}")))?;
        let kid = header
            .kid
            .clone()
            .ok_or_else(|| invalid("no `kid` in the header".into()))?;
        let unverified: Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|e| invalid(format!("malformed claims: {e}")))?;
        let iss = opt_str(&unverified, "iss").ok_or_else(|| invalid("no `iss`".into()))?;
        if iss == self.issuer {
            // Only ES256: never HMAC (algorithm confusion) nor anything else.
            if header.alg != Algorithm::ES256 {
                return Err(invalid(format!(
                    "algorithm {:?} is not accepted",
                    header.alg
                )));
            }
            // RFC 9068: our access tokens say so; ID tokens and tickets,
            // signed by the same key, are never taken for one.
            if !is_access_token_typ(header.typ.as_deref()) {
                return Err(invalid(
                    "not an access token (`typ` must be `at+jwt`)".into(),
                ));
            }
            let key = self.own_key(&kid).await?;
            let claims = decode(
                token,
                key.decoding(),
                Algorithm::ES256,
                &self.issuer,
                &self.audience,
            )?;
            let roles = match claims.get("roles") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|r| r.as_str().and_then(|r| r.parse().ok()))
                    .collect(),
                _ => Vec::new(),
            };
            let principal = self.principal_from(
                &claims,
                roles,
                "name",
                "hospital_id",
                "national_id",
                "health_id",
            );
            return Ok((principal, claims, token_cache::VerifiedBy::Own(kid)));
        }
        let Some(ext) = self.external.get(&iss) else {
            return Err(IdentityError::UntrustedIssuer(iss));
        };
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
        let typ_ok = match header.typ.as_deref() {
            typ if ext.config.require_at_jwt => is_access_token_typ(typ),
            // Many providers send `JWT` or nothing; any other type names a
            // token that is not an access token (logout, ticket, ...).
            None => true,
            Some(t) => t.eq_ignore_ascii_case("JWT") || is_access_token_typ(Some(t)),
        };
        if !typ_ok {
            return Err(invalid(format!(
                "not an access token (`typ` {:?})",
                header.typ.as_deref().unwrap_or("")
            )));
        }
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let jwk = ext.key(&self.http, &kid).await?;
        if let Some(alg) = jwk.common.key_algorithm
            && alg.to_string() != format!("{:?}", header.alg)
        {
            return Err(invalid(
                "the key's algorithm does not match the token's".into(),
            ));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| invalid(format!("unusable key: {e}")))?;
        if key.family() != header.alg.family() {
            return Err(invalid(
                "the key's algorithm does not match the token's".into(),
            ));
        }
        let cfg = &ext.config;
        let claims = decode(token, &key, header.alg, &cfg.issuer, &cfg.audience)?;
        let roles = match cfg.check_assertions(&claims) {
            Ok(roles) => roles,
            Err(external::Overreach(what)) => {
                self.audit_overreach(token, &cfg.issuer, &claims, &what)
                    .await;
                return Err(IdentityError::Overreach {
                    issuer: cfg.issuer.clone(),
                    what,
                });
            }
        };
        let principal = self.principal_from(
            &claims,
            roles,
            &cfg.name_claim,
            &cfg.hospital_claim,
            &cfg.national_id_claim,
            &cfg.health_id_claim,
        );
        let key = token_cache::VerifiedBy::External { issuer: iss, kid };
        Ok((principal, claims, key))
    }

    /// Record a trusted issuer's over-asserting token, once per token.
    async fn audit_overreach(&self, token: &str, issuer: &str, claims: &Value, what: &str) {
        let first = {
            let mut seen = self
                .audited_overreach
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if seen.len() >= 4096 {
                seen.clear();
            }
            seen.insert(sha256_hex(token))
        };
        if !first {
            return;
        }
        let clip = |v: Option<&Value>| -> Value {
            match v {
                Some(Value::String(s)) => json!(s.chars().take(128).collect::<String>()),
                Some(v) => json!(v.to_string().chars().take(128).collect::<String>()),
                None => Value::Null,
            }
        };
        let subject = clip(claims.get("sub"));
        // The issuer vouched for the claims, so it is the caller; the person
        // is named as `PersonRef` does (never a local user's bare id).
        let event = crate::audit::AuditEvent {
            actor: format!("issuer:{issuer}"),
            action: "identity.token_refused".into(),
            target: format!("{issuer}#{}", subject.as_str().unwrap_or_default()),
            hospital_id: None,
            details: json!({
                "issuer": issuer, "subject": subject, "refused": what,
                "jti": clip(claims.get("jti")),
            }),
        };
        // Folded and bounded like every refusal: minting tokens cannot flood the trail.
        if let Err(e) = self.audit.append_refusal(event).await {
            tracing::error!(error = %e, issuer, "cannot audit a refused external token");
        }
        tracing::warn!(
            issuer,
            refused = what,
            "a trusted issuer's token asserted more than it may"
        );
    }

    fn principal_from(
        &self,
        claims: &Value,
        roles: Vec<Role>,
        name: &str,
        hospital: &str,
        national_id: &str,
        health_id: &str,
    ) -> Principal {
        let subject = opt_str(claims, "sub").unwrap_or_default();
        let citizen = roles.contains(&Role::Citizen);
        Principal {
            // An issuer's name claim is shown on pages and given to plugins:
            // cut to the platform's name limit rather than refuse the login.
            name: opt_str(claims, name)
                .unwrap_or_else(|| subject.clone())
                .chars()
                .take(crate::text_limits::NAME)
                .collect(),
            subject,
            hospital_id: opt_str(claims, hospital),
            vendor_id: opt_str(claims, "vendor_id"),
            national_id: opt_str(claims, national_id)
                .filter(|id| citizen && validate_citizen_id(id).is_ok()),
            health_id: opt_str(claims, health_id)
                .filter(|id| citizen && validate_health_id(id).is_ok()),
            issuer: opt_str(claims, "iss").unwrap_or_default(),
            client_id: opt_str(claims, "client_id").or_else(|| opt_str(claims, "azp")),
            roles,
        }
    }

    /// Sign a ticket carrying `principal` for `audience`, valid `ttl_secs`.
    /// Its audience is never the API's, so it is not a bearer token: only
    /// [`Self::validate_ticket`] with the same audience accepts it.
    pub fn issue_ticket(
        &self,
        principal: &Principal,
        audience: &str,
        extra: Value,
        ttl_secs: i64,
    ) -> Result<String, IdentityError> {
        if audience == self.audience {
            return Err(IdentityError::Invalid(
                "a ticket cannot have the API's audience".into(),
            ));
        }
        let t = now_secs();
        let claims = json!({
            "iss": self.issuer, "sub": self.person(principal), "aud": audience,
            "iat": t, "nbf": t, "exp": t + ttl_secs,
            "jti": uuid::Uuid::new_v4().to_string(),
            "principal": principal, "extra": extra,
        });
        self.sign(&claims, Some("vth-ticket+jwt"))
    }

    /// Check a ticket of [`Self::issue_ticket`] for `audience`: its principal
    /// and its `extra` claims.
    pub async fn validate_ticket(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<(Principal, Value), IdentityError> {
        let invalid = |m: String| IdentityError::InvalidToken(m);
        if token.len() > 16 * 1024 {
            return Err(invalid("too long".into()));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(format!("malformed header: {e}")))?;
        if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some("vth-ticket+jwt") {
            return Err(invalid("not a ticket".into()));
        }
        let kid = header
            .kid
            .ok_or_else(|| invalid("no `kid` in the header".into()))?;
        let key = self.own_key(&kid).await?;
        let mut claims = decode(
            token,
            key.decoding(),
            Algorithm::ES256,
            &self.issuer,
            audience,
        )?;
        let principal: Principal = serde_json::from_value(claims["principal"].take())
            .map_err(|e| invalid(format!("malformed principal: {e}")))?;
        Ok((principal, claims["extra"].take()))
    }
}
