//! The directory's people: creating and finding users, and signing in with
//! a password (throttled, hashed off the async workers).

use serde_json::json;
use sqlx::Row;

use super::{IdentityError, IdentityService, NewUser, Role, User, people, throttle};
use crate::time::now_secs;

impl IdentityService {
    /// Add a person to the directory.
    pub async fn create_user(&self, new: NewUser) -> Result<User, IdentityError> {
        new.validate()?;
        let hash = self.hash(&new.password).await?;
        let id = format!("u-{}", uuid::Uuid::now_v7().simple());
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO identity_users (id, username, display_name, role, hospital_id, vendor_id, \
             national_id, health_id, specialty, title, password_hash, created_at, name_folded, \
             specialty_folded, specialties) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
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
        .bind(super::search::fold(&new.display_name))
        .bind(
            new.specialty
                .as_deref()
                .map(|s| super::specialties::folded(&[s.to_owned()])),
        )
        .bind(one_code(&new.specialty).map(|s| format!(" {s} ")))
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
            specialty: new.specialty.clone(),
            title: new.title,
            roles: vec![new.role],
            suspended: false,
            specialties: one_code(&new.specialty).into_iter().collect(),
            licence_number: None,
            email: None,
            phone: None,
            vendor_admin: false,
            last_login_at: None,
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
            .filter(|u| u.has_role(Role::Practitioner)))
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
                let user = User::from_row(&row)?;
                // A suspended account is refused like a wrong password:
                // the form does not tell who exists.
                if user.suspended {
                    return Err(IdentityError::InvalidCredentials);
                }
                self.record_login(&user.id).await;
                Ok(user)
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
    pub(super) fn throttled(&self, keys: &[throttle::Key]) -> Result<(), IdentityError> {
        match self.throttle.wait(keys) {
            None => Ok(()),
            Some(wait) => Err(IdentityError::Throttled {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }),
        }
    }

    /// Count a failed login; audit each back-off it starts.
    pub(super) async fn login_failed(
        &self,
        keys: &[throttle::Key],
        from: Option<std::net::IpAddr>,
    ) {
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
    pub(super) async fn hash(&self, secret: &str) -> Result<String, IdentityError> {
        let (secret, iterations) = (secret.to_owned(), self.iterations);
        self.hasher
            .run(move || people::hash_password(&secret, iterations))
            .await?
    }
}

/// The throttling keys of a login: the account (clipped, so a huge name
/// costs no memory) and the address when known.
pub(super) fn login_keys(account: String, from: Option<std::net::IpAddr>) -> Vec<throttle::Key> {
    let account = account.chars().take(160).collect();
    std::iter::once(throttle::Key::Account(account))
        .chain(from.map(throttle::Key::address))
        .collect()
}

/// A single specialty given as one word (a code, as the demo's): kept in
/// the code list too; free text stays only in `specialty`.
fn one_code(specialty: &Option<String>) -> Option<String> {
    specialty
        .as_deref()
        .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
        .map(str::to_owned)
}
