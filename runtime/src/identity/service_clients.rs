//! A hospital's service clients (HIS, LIS, PACS, pharmacy) as its admin
//! manages them: created with a secret shown once, rotated with an overlap
//! during which both secrets work, revoked (docs/identity.md).

use serde::Serialize;
use sqlx::Row;

use super::staff::StaffError;
use super::{IdentityError, IdentityService, people};
use crate::time::now_secs;

/// What a service client is.
pub const CLIENT_KINDS: [&str; 5] = ["his", "lis", "pacs", "pharmacy", "other"];
/// Longest overlap of a rotation: 30 days.
pub const MAX_GRACE_SECS: i64 = 30 * 24 * 3600;
/// Default overlap of a rotation: one day.
pub const DEFAULT_GRACE_SECS: i64 = 24 * 3600;

/// A service client as listed (never its secret). Times in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceClient {
    pub client_id: String,
    pub name: String,
    pub kind: String,
    pub scope: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub rotated_at: Option<i64>,
    pub previous_secret_expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A secret, shown once.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedSecret {
    pub client_id: String,
    pub client_secret: String,
    /// Rotation: until when the previous secret still works (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<i64>,
}

fn invalid(m: impl Into<String>) -> StaffError {
    StaffError::Invalid(m.into())
}

/// Check a scope: space-separated words of a-z, 0-9, `:._-`; empty:
/// `service`.
pub fn check_scope(scope: &str) -> Result<String, StaffError> {
    let words: Vec<&str> = scope.split_whitespace().collect();
    if words.is_empty() {
        return Ok("service".into());
    }
    let ok = words.len() <= 20
        && words.iter().all(|w| {
            (1..=64).contains(&w.len())
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b":._-/".contains(&b))
        });
    if ok {
        Ok(words.join(" "))
    } else {
        Err(invalid(
            "scope is up to 20 space-separated words of a-z, 0-9, ':', '.', '_', '-', '/'",
        ))
    }
}

fn ms(t: Option<i64>) -> Option<i64> {
    t.map(|t| t * 1000)
}

impl IdentityService {
    /// The service clients of `hospital`, newest first.
    pub async fn list_hospital_clients(
        &self,
        hospital: &str,
    ) -> Result<Vec<ServiceClient>, StaffError> {
        let rows = sqlx::query(
            "SELECT id, name, system_kind, scope, created_at, last_used_at, rotated_at, \
             previous_secret_expires_at, revoked_at FROM identity_clients \
             WHERE hospital_id = $1 AND kind = 'confidential' ORDER BY created_at DESC, id",
        )
        .bind(hospital)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let kind: Option<String> = r.try_get("system_kind")?;
                let scope: Option<String> = r.try_get("scope")?;
                let created: i64 = r.try_get("created_at")?;
                Ok(ServiceClient {
                    client_id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    kind: kind.unwrap_or_else(|| "other".into()),
                    scope: scope.unwrap_or_else(|| "service".into()),
                    created_at: created * 1000,
                    last_used_at: ms(r.try_get("last_used_at")?),
                    rotated_at: ms(r.try_get("rotated_at")?),
                    previous_secret_expires_at: ms(r.try_get("previous_secret_expires_at")?),
                    revoked_at: ms(r.try_get("revoked_at")?),
                })
            })
            .collect()
    }

    /// One service client of `hospital` (404 for anyone else's).
    pub async fn hospital_client(
        &self,
        hospital: &str,
        id: &str,
    ) -> Result<ServiceClient, StaffError> {
        self.list_hospital_clients(hospital)
            .await?
            .into_iter()
            .find(|c| c.client_id == id)
            .ok_or_else(|| StaffError::NotFound(format!("no service client `{id}` here")))
    }

    /// Register a service client of `hospital`; its secret is returned once
    /// and stored hashed.
    pub async fn create_hospital_client(
        &self,
        hospital: &str,
        name: &str,
        kind: &str,
        scope: &str,
        created_by: &str,
    ) -> Result<IssuedSecret, StaffError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(invalid("name is required"));
        }
        crate::text_limits::check("name", name, crate::text_limits::NAME)
            .map_err(|e| invalid(e.to_string()))?;
        if !CLIENT_KINDS.contains(&kind) {
            return Err(invalid(format!(
                "kind must be one of {}",
                CLIENT_KINDS.join(", ")
            )));
        }
        let scope = check_scope(scope)?;
        let suffix = &uuid::Uuid::now_v7().simple().to_string()[20..];
        let mut id = format!("{kind}-{hospital}");
        id.truncate(64 - suffix.len() - 1);
        let id = format!("{}-{suffix}", id.trim_end_matches('-'));
        let secret = people::random_token()?;
        let hash = self.hash(&secret).await?;
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO identity_clients (id, name, kind, secret_hash, redirect_uris, hospital_id, \
             created_at, system_kind, scope, created_by) \
             VALUES ($1, $2, 'confidential', $3, '', $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(name)
        .bind(&hash)
        .bind(hospital)
        .bind(now_secs())
        .bind(kind)
        .bind(&scope)
        .bind(created_by)
        .execute(&mut *tx.tx)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                StaffError::NotFound(format!("no hospital `{hospital}`"))
            }
            e => e.into(),
        })?;
        // Recorded in the same transaction: the secret is shown exactly
        // when the entry exists, never lost to a failed append after commit.
        let event = crate::audit::AuditEvent {
            actor: created_by.into(),
            action: "identity.client_created".into(),
            target: format!("client:{id}"),
            hospital_id: Some(hospital.into()),
            details: serde_json::json!({ "name": name, "kind": kind, "scope": scope }),
        };
        crate::audit::AuditLog::append_in(&mut tx, event)
            .await
            .map_err(|e| StaffError::Identity(IdentityError::Internal(format!("audit: {e}"))))?;
        tx.commit().await?;
        Ok(IssuedSecret {
            client_id: id,
            client_secret: secret,
            previous_secret_expires_at: None,
        })
    }

    /// A new secret for a client of `hospital`; the old one keeps working
    /// for `grace_secs` (0 to [`MAX_GRACE_SECS`]).
    pub async fn rotate_hospital_client(
        &self,
        hospital: &str,
        id: &str,
        grace_secs: i64,
    ) -> Result<IssuedSecret, StaffError> {
        if !(0..=MAX_GRACE_SECS).contains(&grace_secs) {
            return Err(invalid(format!(
                "grace_secs must be 0 to {MAX_GRACE_SECS} (30 days)"
            )));
        }
        let current = self.hospital_client(hospital, id).await?;
        if current.revoked_at.is_some() {
            return Err(StaffError::Conflict(
                "this client is revoked; create a new one".into(),
            ));
        }
        let secret = people::random_token()?;
        let hash = self.hash(&secret).await?;
        let t = now_secs();
        let until = t + grace_secs;
        let mut tx = self.db.begin_write().await?;
        let done = sqlx::query(
            "UPDATE identity_clients SET previous_secret_hash = secret_hash, \
             previous_secret_expires_at = $1, secret_hash = $2, rotated_at = $3 \
             WHERE id = $4 AND hospital_id = $5 AND revoked_at IS NULL",
        )
        .bind(until)
        .bind(&hash)
        .bind(t)
        .bind(id)
        .bind(hospital)
        .execute(&mut *tx.tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StaffError::Conflict("the client changed meanwhile".into()));
        }
        tx.commit().await?;
        Ok(IssuedSecret {
            client_id: id.to_owned(),
            client_secret: secret,
            previous_secret_expires_at: Some(until * 1000),
        })
    }

    /// Revoke a client of `hospital`: no new tokens, and its tokens are
    /// refused. Revoking again changes nothing.
    pub async fn revoke_hospital_client(
        &self,
        hospital: &str,
        id: &str,
    ) -> Result<ServiceClient, StaffError> {
        self.hospital_client(hospital, id).await?;
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE identity_clients SET revoked_at = $1, previous_secret_hash = NULL, \
             previous_secret_expires_at = NULL WHERE id = $2 AND hospital_id = $3 AND revoked_at IS NULL",
        )
        .bind(now_secs())
        .bind(id)
        .bind(hospital)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        self.block_client(id);
        self.hospital_client(hospital, id).await
    }
}
