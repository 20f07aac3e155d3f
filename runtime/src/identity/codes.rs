//! Authorization codes (PKCE) and refresh tokens: the OAuth exchanges after
//! a sign-in.

use aws_lc_rs::digest;
use serde_json::json;
use sqlx::Row;

use super::{
    CODE_TTL_SECS, Client, CodeRequest, IdentityError, IdentityService, TokenResponse, User,
    people, sha256_hex,
};
use crate::time::now_secs;

impl IdentityService {
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
            .filter(|u| !u.suspended)
            .ok_or_else(|| bad("the user no longer exists or is suspended"))?;
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
            if scope.split(' ').any(|s| s == "profile") {
                // National IDs only to a registered relying party (confidential,
                // no hospital: not a service client), never to a public
                // client such as a console, whose tokens sit in a browser.
                let relying_party = self
                    .client(client_id)
                    .await?
                    .is_some_and(|c| c.confidential && c.hospital_id.is_none());
                self.profile_claims(user, &mut claims, relying_party).await;
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
        // A client registered with a scope gets no more than it (and the
        // defaults every service token may name).
        if let Some(allowed) = &client.scope
            && let Some(w) = scope.split_whitespace().find(|w| {
                !matches!(*w, "service" | "openid") && !allowed.split_whitespace().any(|a| a == *w)
            })
        {
            return Err(IdentityError::Invalid(format!(
                "scope `{w}` is not granted to this client"
            )));
        }
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
            .filter(|u| !u.suspended)
            .ok_or_else(|| bad("the user no longer exists or is suspended"))?;
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
}

/// PKCE S256: BASE64URL(SHA-256(verifier)) == challenge.
pub(super) fn pkce_matches(verifier: &str, challenge: &str) -> bool {
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
