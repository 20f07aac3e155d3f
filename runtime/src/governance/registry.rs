//! Plugin versions through their lifecycle: submitted, approved (with the
//! granted capabilities) or rejected, and revoked; and the hospitals'
//! activations of approved versions. Every change is audited in the same
//! transaction and bumps the governance epoch that all nodes watch.

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;

use super::audit::{AuditError, AuditEvent, AuditLog};
use crate::db::{Database, WriteTx};
use crate::secrets::PlatformSigner;
use crate::time::now_millis;

/// Why a governance operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum GovernanceError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    /// A note or reason over its maximum ([`crate::text_limits`]).
    #[error(transparent)]
    TooLong(#[from] crate::text_limits::TooLong),
    #[error("storage error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Lifecycle state of a plugin version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionState {
    Submitted,
    Approved,
    Rejected,
    Revoked,
}

impl VersionState {
    fn parse(s: &str) -> Result<Self, GovernanceError> {
        match s {
            "submitted" => Ok(Self::Submitted),
            "approved" => Ok(Self::Approved),
            "rejected" => Ok(Self::Rejected),
            "revoked" => Ok(Self::Revoked),
            other => Err(GovernanceError::Invalid(format!(
                "unknown version state `{other}`"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Revoked => "revoked",
        }
    }
}

/// A submitted plugin version, as reviewers and vendors see it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginVersion {
    pub id: String,
    pub plugin_id: String,
    pub version: String,
    pub vendor_id: String,
    pub manifest: String,
    pub component_digest: String,
    pub checks: Value,
    pub state: VersionState,
    /// Capabilities requested in the manifest (`interface` or `interface:scope`).
    pub requested: Vec<String>,
    /// Capabilities granted by the review, once approved.
    pub granted: Option<Vec<String>>,
    pub submitted_by: String,
    pub submitted_at: i64,
}

/// What a vendor submits once the bundle passed its checks.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub plugin_id: String,
    pub version: String,
    pub vendor_id: String,
    pub manifest: String,
    pub component: Vec<u8>,
    pub component_digest: String,
    pub signature: Value,
    pub checks: Value,
    pub requested: Vec<String>,
}

/// A review decision, signed by the platform.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewDecision {
    pub id: String,
    pub version_id: String,
    pub decision: String,
    pub reviewer: String,
    pub reason: String,
    pub granted: Option<Vec<String>>,
    pub decided_at: i64,
    pub platform_key_id: String,
    pub platform_signature: String,
}

/// A hospital's activation of a plugin version.
#[derive(Debug, Clone, Serialize)]
pub struct Activation {
    pub hospital_id: String,
    pub plugin_id: String,
    pub version_id: String,
    pub version: String,
    pub config: Value,
    pub has_secrets: bool,
    pub state: String,
    pub mandatory: bool,
    pub activated_by: String,
    pub activated_at: i64,
}

const VERSION_COLUMNS: &str = "id, plugin_id, version, vendor_id, manifest, component_digest, checks, state, granted, submitted_by, submitted_at";

fn version_from_row(
    row: &sqlx::any::AnyRow,
    requested: Vec<String>,
) -> Result<PluginVersion, GovernanceError> {
    let checks: String = row.try_get("checks")?;
    let granted: Option<String> = row.try_get("granted")?;
    let state: String = row.try_get("state")?;
    Ok(PluginVersion {
        id: row.try_get("id")?,
        plugin_id: row.try_get("plugin_id")?,
        version: row.try_get("version")?,
        vendor_id: row.try_get("vendor_id")?,
        manifest: row.try_get("manifest")?,
        component_digest: row.try_get("component_digest")?,
        checks: serde_json::from_str(&checks).unwrap_or(Value::Null),
        state: VersionState::parse(&state)?,
        requested,
        granted: granted.and_then(|g| serde_json::from_str(&g).ok()),
        submitted_by: row.try_get("submitted_by")?,
        submitted_at: row.try_get("submitted_at")?,
    })
}

/// The governance tables of one database.
#[derive(Clone)]
pub struct Registry {
    db: Database,
}

/// Bump the epoch that tells every node to drop its resolved plugins.
async fn bump_epoch(tx: &mut WriteTx) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE governance_epoch SET epoch = epoch + 1 WHERE id = 1")
        .execute(&mut *tx.tx)
        .await?;
    Ok(())
}

impl Registry {
    /// The registry stored in `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The database this registry lives in.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The current governance epoch.
    pub async fn epoch(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar::<_, i64>("SELECT epoch FROM governance_epoch WHERE id = 1")
            .fetch_one(&self.db.pool)
            .await
    }

    /// Register a vendor's public signing key.
    pub async fn add_vendor_key(
        &self,
        actor: &str,
        vendor_id: &str,
        key_id: &str,
        public_key: &[u8],
    ) -> Result<(), GovernanceError> {
        let mut tx = self.db.begin_write().await?;
        let result = sqlx::query(
            "INSERT INTO vendor_keys (key_id, vendor_id, public_key, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(key_id)
        .bind(vendor_id)
        .bind(public_key)
        .bind(now_millis())
        .execute(&mut *tx.tx)
        .await;
        if let Err(e) = result {
            return Err(
                match e.as_database_error().map(|d| d.is_unique_violation()) {
                    Some(true) => {
                        GovernanceError::Conflict(format!("key `{key_id}` is already registered"))
                    }
                    _ => e.into(),
                },
            );
        }
        AuditLog::append_in(
            &mut tx,
            AuditEvent {
                actor: actor.into(),
                action: "vendor.key_registered".into(),
                target: format!("vendor:{vendor_id}"),
                hospital_id: None,
                details: json!({ "key_id": key_id }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The vendor's unrevoked keys as (key id, raw public key).
    pub async fn vendor_keys(
        &self,
        vendor_id: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, GovernanceError> {
        let rows = sqlx::query("SELECT key_id, public_key FROM vendor_keys WHERE vendor_id = $1 AND revoked_at IS NULL")
            .bind(vendor_id)
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("key_id")?, r.try_get("public_key")?)))
            .collect()
    }

    /// Store a submission that passed its checks.
    pub async fn submit(
        &self,
        actor: &str,
        new: NewVersion,
    ) -> Result<PluginVersion, GovernanceError> {
        let id = uuid::Uuid::now_v7().to_string();
        let at = now_millis();
        let mut tx = self.db.begin_write().await?;
        let exists = sqlx::query_scalar::<_, String>(
            "SELECT id FROM plugin_versions WHERE plugin_id = $1 AND version = $2",
        )
        .bind(&new.plugin_id)
        .bind(&new.version)
        .fetch_optional(&mut *tx.tx)
        .await?;
        if exists.is_some() {
            return Err(GovernanceError::Conflict(format!(
                "{} {} was already submitted; bump the version",
                new.plugin_id, new.version
            )));
        }
        let owner = sqlx::query_scalar::<_, String>(
            "SELECT vendor_id FROM plugin_versions WHERE plugin_id = $1 LIMIT 1",
        )
        .bind(&new.plugin_id)
        .fetch_optional(&mut *tx.tx)
        .await?;
        if let Some(owner) = owner.filter(|o| *o != new.vendor_id) {
            return Err(GovernanceError::Forbidden(format!(
                "plugin id `{}` belongs to vendor `{owner}`",
                new.plugin_id
            )));
        }
        sqlx::query(
            "INSERT INTO plugin_versions (id, plugin_id, version, vendor_id, manifest, component, component_digest, \
             signature, checks, state, granted, submitted_by, submitted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'submitted', NULL, $10, $11)",
        )
        .bind(&id)
        .bind(&new.plugin_id)
        .bind(&new.version)
        .bind(&new.vendor_id)
        .bind(&new.manifest)
        .bind(&new.component)
        .bind(&new.component_digest)
        .bind(new.signature.to_string())
        .bind(new.checks.to_string())
        .bind(actor)
        .bind(at)
        .execute(&mut *tx.tx)
        .await?;
        AuditLog::append_in(
            &mut tx,
            AuditEvent {
                actor: actor.into(),
                action: "plugin.submitted".into(),
                target: format!("plugin-version:{id}"),
                hospital_id: None,
                details: json!({ "plugin": new.plugin_id, "version": new.version, "digest": new.component_digest }),
            },
        )
        .await?;
        bump_epoch(&mut tx).await?;
        tx.commit().await?;
        self.version(&id, new.requested).await
    }

    async fn version(
        &self,
        id: &str,
        requested: Vec<String>,
    ) -> Result<PluginVersion, GovernanceError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM plugin_versions WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| GovernanceError::NotFound(format!("no plugin version `{id}`")))?;
        version_from_row(&row, requested)
    }

    /// A version by id; `requested` is filled by `parse_requested`.
    pub async fn get_version(
        &self,
        id: &str,
        parse_requested: impl Fn(&str) -> Vec<String>,
    ) -> Result<PluginVersion, GovernanceError> {
        let mut v = self.version(id, vec![]).await?;
        v.requested = parse_requested(&v.manifest);
        Ok(v)
    }

    /// Versions, optionally only one vendor's or in one state, newest first.
    pub async fn list_versions(
        &self,
        vendor_id: Option<&str>,
        state: Option<VersionState>,
        parse_requested: impl Fn(&str) -> Vec<String>,
    ) -> Result<Vec<PluginVersion>, GovernanceError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM plugin_versions WHERE ($1 = '' OR vendor_id = $1) \
             AND ($2 = '' OR state = $2) ORDER BY submitted_at DESC, id DESC"
        )))
        .bind(vendor_id.unwrap_or(""))
        .bind(state.map_or("", VersionState::as_str))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let mut v = version_from_row(r, vec![])?;
                v.requested = parse_requested(&v.manifest);
                Ok(v)
            })
            .collect()
    }

    /// The component bytes of a version.
    pub async fn component(&self, version_id: &str) -> Result<Vec<u8>, GovernanceError> {
        sqlx::query_scalar::<_, Vec<u8>>("SELECT component FROM plugin_versions WHERE id = $1")
            .bind(version_id)
            .fetch_optional(&self.db.pool)
            .await?
            .ok_or_else(|| GovernanceError::NotFound(format!("no plugin version `{version_id}`")))
    }

    /// Record a signed review decision and move the version to its new state.
    pub async fn decide(
        &self,
        signer: &PlatformSigner,
        reviewer: &str,
        version: &PluginVersion,
        decision: Decision,
    ) -> Result<ReviewDecision, GovernanceError> {
        let (from, to, name) = match &decision {
            Decision::Approve { .. } => {
                (VersionState::Submitted, VersionState::Approved, "approve")
            }
            Decision::Reject { .. } => (VersionState::Submitted, VersionState::Rejected, "reject"),
            Decision::Revoke { .. } => (VersionState::Approved, VersionState::Revoked, "revoke"),
        };
        let (reason, granted) = match &decision {
            Decision::Approve { granted, note } => {
                if let Some(extra) = granted.iter().find(|g| !version.requested.contains(g)) {
                    return Err(GovernanceError::Invalid(format!(
                        "cannot grant `{extra}`: the plugin did not request it (requested: {})",
                        version.requested.join(", ")
                    )));
                }
                (note.clone(), Some(granted.clone()))
            }
            Decision::Reject { reason } | Decision::Revoke { reason } => {
                if reason.trim().is_empty() {
                    return Err(GovernanceError::Invalid(format!(
                        "a reason is required to {name}"
                    )));
                }
                (reason.clone(), None)
            }
        };
        let decided_at = now_millis();
        let id = uuid::Uuid::now_v7().to_string();
        // What the platform signs: the decision bound to the exact component.
        let signed = json!({
            "decision_id": id, "version_id": version.id, "plugin": version.plugin_id, "version": version.version,
            "component_sha256": version.component_digest, "decision": name, "granted": granted,
            "reviewer": reviewer, "reason": reason, "decided_at": decided_at,
        })
        .to_string();
        let signature = signer.sign(signed.as_bytes());

        let mut tx = self.db.begin_write().await?;
        let moved = sqlx::query("UPDATE plugin_versions SET state = $1, granted = COALESCE($2, granted) WHERE id = $3 AND state = $4")
            .bind(to.as_str())
            .bind(granted.as_ref().map(|g| json!(g).to_string()))
            .bind(&version.id)
            .bind(from.as_str())
            .execute(&mut *tx.tx)
            .await?;
        if moved.rows_affected() != 1 {
            return Err(GovernanceError::Conflict(format!(
                "cannot {name} {} {}: it is not {}",
                version.plugin_id,
                version.version,
                from.as_str()
            )));
        }
        sqlx::query(
            "INSERT INTO review_decisions (id, version_id, decision, reviewer, reason, granted, decided_at, \
             platform_key_id, platform_signature) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(&version.id)
        .bind(name)
        .bind(reviewer)
        .bind(&reason)
        .bind(granted.as_ref().map(|g| json!(g).to_string()))
        .bind(decided_at)
        .bind(&signer.key_id)
        .bind(&signature)
        .execute(&mut *tx.tx)
        .await?;
        if to == VersionState::Revoked {
            sqlx::query("UPDATE activations SET state = 'suspended' WHERE version_id = $1")
                .bind(&version.id)
                .execute(&mut *tx.tx)
                .await?;
        }
        AuditLog::append_in(
            &mut tx,
            AuditEvent {
                actor: reviewer.into(),
                action: format!("plugin.{}", to.as_str()),
                target: format!("plugin-version:{}", version.id),
                hospital_id: None,
                details: json!({ "plugin": version.plugin_id, "version": version.version, "reason": reason,
                    "granted": granted, "decision_id": id, "platform_signature": signature }),
            },
        )
        .await?;
        bump_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(ReviewDecision {
            id,
            version_id: version.id.clone(),
            decision: name.into(),
            reviewer: reviewer.into(),
            reason,
            granted,
            decided_at,
            platform_key_id: signer.key_id.clone(),
            platform_signature: signature,
        })
    }

    /// Every decision on a version, oldest first.
    pub async fn decisions(
        &self,
        version_id: &str,
    ) -> Result<Vec<ReviewDecision>, GovernanceError> {
        let rows = sqlx::query(
            "SELECT id, version_id, decision, reviewer, reason, granted, decided_at, platform_key_id, platform_signature \
             FROM review_decisions WHERE version_id = $1 ORDER BY decided_at, id",
        )
        .bind(version_id)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let granted: Option<String> = r.try_get("granted")?;
                Ok(ReviewDecision {
                    id: r.try_get("id")?,
                    version_id: r.try_get("version_id")?,
                    decision: r.try_get("decision")?,
                    reviewer: r.try_get("reviewer")?,
                    reason: r.try_get("reason")?,
                    granted: granted.and_then(|g| serde_json::from_str(&g).ok()),
                    decided_at: r.try_get("decided_at")?,
                    platform_key_id: r.try_get("platform_key_id")?,
                    platform_signature: r.try_get("platform_signature")?,
                })
            })
            .collect()
    }

    /// Activate (or move to) `version` at `hospital` with a validated config
    /// and sealed secrets. Replaces an existing activation of the plugin
    /// (an upgrade), keeping it mandatory if it was.
    pub async fn activate(
        &self,
        actor: &str,
        change: ActivationChange<'_>,
    ) -> Result<Activation, GovernanceError> {
        let version = change.version;
        if version.state != VersionState::Approved {
            return Err(GovernanceError::Conflict(format!(
                "{} {} is {}, only approved versions can be activated",
                version.plugin_id,
                version.version,
                version.state.as_str()
            )));
        }
        let at = now_millis();
        let mut tx = self.db.begin_write().await?;
        let previous = sqlx::query(
            "SELECT a.version_id, a.mandatory, v.version FROM activations a JOIN plugin_versions v ON v.id = a.version_id \
             WHERE a.hospital_id = $1 AND a.plugin_id = $2",
        )
        .bind(change.hospital_id)
        .bind(&version.plugin_id)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let (previous_version, was_mandatory) = match &previous {
            Some(r) => (
                Some(r.try_get::<String, _>("version")?),
                r.try_get::<i64, _>("mandatory")? != 0,
            ),
            None => (None, false),
        };
        let mandatory = change.mandatory || was_mandatory;
        sqlx::query(
            "INSERT INTO activations (hospital_id, plugin_id, version_id, config, secrets, state, mandatory, activated_by, activated_at) \
             VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8) \
             ON CONFLICT (hospital_id, plugin_id) DO UPDATE SET version_id = excluded.version_id, config = excluded.config, \
             secrets = COALESCE(excluded.secrets, activations.secrets), state = 'active', mandatory = excluded.mandatory, \
             activated_by = excluded.activated_by, activated_at = excluded.activated_at",
        )
        .bind(change.hospital_id)
        .bind(&version.plugin_id)
        .bind(&version.id)
        .bind(change.config.to_string())
        .bind(change.sealed_secrets)
        .bind(i64::from(mandatory))
        .bind(actor)
        .bind(at)
        .execute(&mut *tx.tx)
        .await?;
        let action = if previous_version.is_some() {
            "activation.upgraded"
        } else {
            "activation.created"
        };
        AuditLog::append_in(
            &mut tx,
            AuditEvent {
                actor: actor.into(),
                action: action.into(),
                target: format!("plugin:{}", version.plugin_id),
                hospital_id: Some(change.hospital_id.into()),
                details: json!({ "version": version.version, "version_id": version.id, "previous_version": previous_version,
                    "mandatory": mandatory, "via": change.via }),
            },
        )
        .await?;
        bump_epoch(&mut tx).await?;
        tx.commit().await?;
        self.activation(change.hospital_id, &version.plugin_id)
            .await?
            .ok_or_else(|| GovernanceError::NotFound("activation vanished".into()))
    }

    /// Deactivate a plugin at a hospital; a mandatory module cannot be.
    pub async fn deactivate(
        &self,
        actor: &str,
        hospital_id: &str,
        plugin_id: &str,
    ) -> Result<(), GovernanceError> {
        let mut tx = self.db.begin_write().await?;
        let mandatory = sqlx::query_scalar::<_, i64>(
            "SELECT mandatory FROM activations WHERE hospital_id = $1 AND plugin_id = $2",
        )
        .bind(hospital_id)
        .bind(plugin_id)
        .fetch_optional(&mut *tx.tx)
        .await?
        .ok_or_else(|| {
            GovernanceError::NotFound(format!("`{plugin_id}` is not activated at `{hospital_id}`"))
        })?;
        if mandatory != 0 {
            return Err(GovernanceError::Forbidden(format!(
                "`{plugin_id}` is mandatory for `{hospital_id}` by ministry rollout and cannot be deactivated"
            )));
        }
        sqlx::query("DELETE FROM activations WHERE hospital_id = $1 AND plugin_id = $2")
            .bind(hospital_id)
            .bind(plugin_id)
            .execute(&mut *tx.tx)
            .await?;
        AuditLog::append_in(
            &mut tx,
            AuditEvent {
                actor: actor.into(),
                action: "activation.removed".into(),
                target: format!("plugin:{plugin_id}"),
                hospital_id: Some(hospital_id.into()),
                details: json!({}),
            },
        )
        .await?;
        bump_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The activation of `plugin_id` at `hospital_id`, if any.
    pub async fn activation(
        &self,
        hospital_id: &str,
        plugin_id: &str,
    ) -> Result<Option<Activation>, GovernanceError> {
        let rows = self.activations(Some(hospital_id), Some(plugin_id)).await?;
        Ok(rows.into_iter().next())
    }

    /// Activations, optionally of one hospital and/or one plugin.
    pub async fn activations(
        &self,
        hospital_id: Option<&str>,
        plugin_id: Option<&str>,
    ) -> Result<Vec<Activation>, GovernanceError> {
        let rows = sqlx::query(
            "SELECT a.hospital_id, a.plugin_id, a.version_id, v.version, a.config, a.secrets, a.state, a.mandatory, \
             a.activated_by, a.activated_at FROM activations a JOIN plugin_versions v ON v.id = a.version_id \
             WHERE ($1 = '' OR a.hospital_id = $1) AND ($2 = '' OR a.plugin_id = $2) ORDER BY a.hospital_id, a.plugin_id",
        )
        .bind(hospital_id.unwrap_or(""))
        .bind(plugin_id.unwrap_or(""))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let config: String = r.try_get("config")?;
                let secrets: Option<Vec<u8>> = r.try_get("secrets")?;
                Ok(Activation {
                    hospital_id: r.try_get("hospital_id")?,
                    plugin_id: r.try_get("plugin_id")?,
                    version_id: r.try_get("version_id")?,
                    version: r.try_get("version")?,
                    config: serde_json::from_str(&config).unwrap_or(Value::Null),
                    has_secrets: secrets.is_some(),
                    state: r.try_get("state")?,
                    mandatory: r.try_get::<i64, _>("mandatory")? != 0,
                    activated_by: r.try_get("activated_by")?,
                    activated_at: r.try_get("activated_at")?,
                })
            })
            .collect()
    }

    /// The sealed secrets of an activation.
    pub async fn sealed_secrets(
        &self,
        hospital_id: &str,
        plugin_id: &str,
    ) -> Result<Option<Vec<u8>>, GovernanceError> {
        Ok(sqlx::query_scalar::<_, Option<Vec<u8>>>(
            "SELECT secrets FROM activations WHERE hospital_id = $1 AND plugin_id = $2",
        )
        .bind(hospital_id)
        .bind(plugin_id)
        .fetch_optional(&self.db.pool)
        .await?
        .flatten())
    }

    /// The version a hospital may run for a plugin right now: its active
    /// activation of an approved version.
    pub async fn runnable(
        &self,
        hospital_id: &str,
        plugin_id: &str,
    ) -> Result<Option<(String, Vec<String>)>, GovernanceError> {
        let row = sqlx::query(
            "SELECT v.id, v.granted FROM activations a JOIN plugin_versions v ON v.id = a.version_id \
             WHERE a.hospital_id = $1 AND a.plugin_id = $2 AND a.state = 'active' AND v.state = 'approved'",
        )
        .bind(hospital_id)
        .bind(plugin_id)
        .fetch_optional(&self.db.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let granted: Option<String> = r.try_get("granted")?;
                let granted = granted
                    .and_then(|g| serde_json::from_str(&g).ok())
                    .unwrap_or_default();
                Ok(Some((r.try_get("id")?, granted)))
            }
        }
    }
}

/// A review decision to record.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Approve, granting these capabilities (a subset of those requested).
    Approve {
        granted: Vec<String>,
        note: String,
    },
    Reject {
        reason: String,
    },
    Revoke {
        reason: String,
    },
}

impl Decision {
    /// Refuse a note or reason over its documented maximum.
    pub fn check_text(&self) -> Result<(), crate::text_limits::TooLong> {
        use crate::text_limits::{NOTE, REASON, check};
        match self {
            Self::Approve { note, .. } => check("note", note, NOTE),
            Self::Reject { reason } | Self::Revoke { reason } => check("reason", reason, REASON),
        }
    }
}

/// An activation (or upgrade) to record.
pub struct ActivationChange<'a> {
    pub hospital_id: &'a str,
    pub version: &'a PluginVersion,
    /// Validated configuration.
    pub config: &'a Value,
    /// Secrets sealed with the master key; `None` keeps existing ones.
    pub sealed_secrets: Option<Vec<u8>>,
    pub mandatory: bool,
    /// `hospital` or `rollout:<id>`, for the audit trail.
    pub via: &'a str,
}
