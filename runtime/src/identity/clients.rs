//! Vendors and OAuth clients: public clients of the web consoles and
//! hospitals' service clients with their hashed secrets.

use super::accounts::login_keys;
use super::{Client, IdentityError, IdentityService, Principal, Role, people};
use crate::time::now_secs;

impl IdentityService {
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
            "SELECT id, name, kind, secret_hash, redirect_uris, hospital_id, scope, revoked_at, \
             previous_secret_hash, previous_secret_expires_at FROM identity_clients WHERE id = $1",
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
        let usable = client.as_ref().filter(|c| c.confidential && !c.revoked);
        // The current secret, then (during a rotation's grace) the previous.
        let mut hashes: Vec<String> = usable
            .and_then(|c| c.secret_hash.clone())
            .into_iter()
            .collect();
        if let Some((hash, until)) = usable.and_then(|c| c.previous_secret.clone())
            && until > now_secs()
        {
            hashes.push(hash);
        }
        let ok = if hashes.is_empty() {
            false
        } else {
            let secret = secret.to_owned();
            self.hasher
                .run(move || hashes.iter().any(|h| people::verify_password(&secret, h)))
                .await?
        };
        match client {
            Some(c) if ok => {
                self.throttle.succeeded(&keys[0]);
                self.record_client_use(&c.id).await;
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
}
