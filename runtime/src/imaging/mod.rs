//! Imaging shares for the social-insurance (BHYT) assessment (issue 4,
//! item 7): a hospital assembles a FHIR document Bundle of an ImagingStudy,
//! its DiagnosticReport and the Patient's health ID, signs it with its own
//! key and makes it readable to one assessor for one claim. A host feature,
//! not a plugin: the hospital's key never leaves the host, and the
//! cross-tenant read is policed and audited here (ADR 0007).

pub mod document;
pub mod signature;

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{AuditError, AuditEvent, AuditLog, rfc3339};
use crate::db::Database;
use crate::directory::Hospital;
use crate::identity::{PersonRef, Principal, Role};
use crate::records::{Actor, RecordError, RecordStore, ResourceType};
use crate::secrets::{DocumentKeys, SecretsError};

pub use signature::{VerifyError, verify};

/// Default and longest lifetime of a share, in days.
pub const DEFAULT_EXPIRY_DAYS: i64 = 30;
pub const MAX_EXPIRY_DAYS: i64 = 365;

const DAY_MS: i64 = 86_400_000;

/// Why an imaging share operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// The request or the records it names cannot make a document (422).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    /// Expired or revoked (410).
    #[error("{0}")]
    Gone(String),
    #[error(transparent)]
    Records(#[from] RecordError),
    #[error("imaging share storage error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("audit trail error: {0}")]
    Audit(#[from] AuditError),
    #[error("document signing key: {0}")]
    Secrets(#[from] SecretsError),
    #[error("stored imaging share is unreadable: {0}")]
    Corrupt(String),
}

/// A share to create.
#[derive(Debug, Clone)]
pub struct NewShare {
    /// The BHYT claim (hồ sơ giám định) number.
    pub claim_id: String,
    /// The assessor's subject.
    pub assessor: String,
    /// Ids of the DiagnosticReport and ImagingStudy in the hospital's records.
    pub diagnostic_report: String,
    pub imaging_study: String,
    pub dicomweb_base_url: Option<String>,
    pub expires_in_days: i64,
}

/// A stored share.
#[derive(Debug, Clone)]
pub struct Share {
    pub id: String,
    pub hospital_id: String,
    pub claim_id: String,
    pub assessor: String,
    pub patient_health_id: String,
    /// The signed document Bundle.
    pub document: Value,
    pub created_by: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// Whether a share can still be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareStatus {
    Active,
    Expired,
    Revoked,
}

/// What an assessor's list shows of a share.
#[derive(Debug, Clone, Serialize)]
pub struct ShareSummary {
    pub id: String,
    pub claim_id: String,
    pub hospital: String,
    pub created_at: String,
    pub expires_at: String,
    pub status: ShareStatus,
}

impl Share {
    fn from_row(row: &AnyRow) -> Result<Self, ShareError> {
        let text: String = row.try_get("document")?;
        Ok(Self {
            id: row.try_get("id")?,
            hospital_id: row.try_get("hospital_id")?,
            claim_id: row.try_get("claim_id")?,
            assessor: row.try_get("assessor")?,
            patient_health_id: row.try_get("patient_health_id")?,
            document: serde_json::from_str(&text)
                .map_err(|e| ShareError::Corrupt(e.to_string()))?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }

    /// The share's status at `now` (milliseconds since the epoch).
    pub fn status(&self, now: i64) -> ShareStatus {
        if self.revoked_at.is_some() {
            ShareStatus::Revoked
        } else if self.expires_at <= now {
            ShareStatus::Expired
        } else {
            ShareStatus::Active
        }
    }

    /// What an assessor's list shows of it at `now`.
    pub fn summary(&self, now: i64) -> ShareSummary {
        ShareSummary {
            id: self.id.clone(),
            claim_id: self.claim_id.clone(),
            hospital: self.hospital_id.clone(),
            created_at: rfc3339(self.created_at),
            expires_at: rfc3339(self.expires_at),
            status: self.status(now),
        }
    }
}

use crate::time::now_millis;

const COLUMNS: &str = "id, hospital_id, claim_id, assessor, patient_health_id, document, created_by, created_at, expires_at, revoked_at";

/// Whether `p` is staff (practitioner or hospital admin) of `hospital`.
pub fn is_staff_of(p: &Principal, hospital: &str) -> bool {
    (p.has_role(Role::Practitioner) || p.has_role(Role::HospitalAdmin))
        && p.hospital_id.as_deref() == Some(hospital)
}

/// The imaging shares of one database.
pub struct ImagingShares {
    db: Database,
    records: Arc<RecordStore>,
    keys: DocumentKeys,
}

impl ImagingShares {
    pub fn new(db: Database, records: Arc<RecordStore>, keys: DocumentKeys) -> Self {
        Self { db, records, keys }
    }

    /// The public key that verifies `hospital`'s documents, as a JWK.
    pub fn signing_key(&self, hospital: &str) -> Result<Value, ShareError> {
        Ok(self.keys.hospital(hospital)?.jwk())
    }

    /// Read `id` of `rt` from the actor's hospital's records; another
    /// hospital's record is refused (and audited) by the store.
    async fn record(
        &self,
        actor: &Actor,
        rt: ResourceType,
        id: &str,
        field: &str,
    ) -> Result<Value, ShareError> {
        match self.records.read(actor, rt, id).await {
            Ok(s) => Ok(s.resource),
            Err(RecordError::NotFound(_)) => Err(ShareError::Invalid(format!(
                "{field}: {rt}/{id} does not exist in this hospital's records"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Assemble, sign and store a share of `actor`'s hospital's records.
    /// `base` is the deployment's FHIR base URL.
    pub async fn create(
        &self,
        actor: &Actor,
        hospital: &Hospital,
        base: &str,
        new: NewShare,
    ) -> Result<Share, ShareError> {
        let claim = new.claim_id.trim();
        if claim.is_empty() || claim.len() > 64 || claim.chars().any(char::is_control) {
            return Err(ShareError::Invalid(
                "claim_id must be 1-64 characters without control characters".into(),
            ));
        }
        if !(1..=MAX_EXPIRY_DAYS).contains(&new.expires_in_days) {
            return Err(ShareError::Invalid(format!(
                "expires_in_days must be 1-{MAX_EXPIRY_DAYS}"
            )));
        }
        let report = self
            .record(
                actor,
                ResourceType::DiagnosticReport,
                &new.diagnostic_report,
                "diagnostic_report",
            )
            .await?;
        let study = self
            .record(
                actor,
                ResourceType::ImagingStudy,
                &new.imaging_study,
                "imaging_study",
            )
            .await?;
        let patient = document::patient_id(&study["subject"]).ok_or_else(|| {
            ShareError::Invalid(format!(
                "ImagingStudy/{} is not about a Patient",
                new.imaging_study
            ))
        })?;
        if let Some(report_patient) = document::patient_id(&report["subject"])
            && report_patient != patient
        {
            return Err(ShareError::Invalid(format!(
                "DiagnosticReport/{} is about Patient/{report_patient} but ImagingStudy/{} about Patient/{patient}",
                new.diagnostic_report, new.imaging_study
            )));
        }
        let patient = self
            .record(actor, ResourceType::Patient, &patient, "patient")
            .await?;
        let health_id = document::health_id(&patient)?;

        let id = uuid::Uuid::now_v7().to_string();
        let now = now_millis();
        let when = rfc3339(now);
        let mut doc = document::assemble(&document::Sources {
            share_id: &id,
            claim_id: claim,
            hospital,
            base,
            now: &when,
            patient: &patient,
            report: &report,
            study: &study,
            dicomweb_base_url: new.dicomweb_base_url.as_deref(),
        })?;
        let signer = self.keys.hospital(&hospital.id)?;
        signature::sign(
            &mut doc,
            &signer,
            json!({ "reference": format!("Organization/{}", hospital.id), "display": hospital.name }),
            &when,
        );
        let share = Share {
            id,
            hospital_id: hospital.id.clone(),
            claim_id: claim.to_owned(),
            assessor: new.assessor,
            patient_health_id: health_id,
            document: doc,
            created_by: actor.subject.clone(),
            created_at: now,
            expires_at: now.saturating_add(new.expires_in_days.saturating_mul(DAY_MS)),
            revoked_at: None,
        };
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO imaging_shares (id, hospital_id, claim_id, assessor, patient_health_id, document, \
             created_by, created_at, expires_at, revoked_at, revoked_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL)",
        )
        .bind(&share.id)
        .bind(&share.hospital_id)
        .bind(&share.claim_id)
        .bind(&share.assessor)
        .bind(&share.patient_health_id)
        .bind(share.document.to_string())
        .bind(&share.created_by)
        .bind(share.created_at)
        .bind(share.expires_at)
        .execute(&mut *tx.tx)
        .await?;
        AuditLog::append_in(
            &mut tx,
            AuditEvent {
                actor: actor.subject.clone(),
                action: "imaging_share.created".into(),
                target: format!("imaging-share:{}", share.id),
                hospital_id: Some(share.hospital_id.clone()),
                details: json!({
                    "claim_id": share.claim_id,
                    "assessor": share.assessor,
                    "diagnostic_report": format!("DiagnosticReport/{}", new.diagnostic_report),
                    "imaging_study": format!("ImagingStudy/{}", new.imaging_study),
                    "patient_health_id": share.patient_health_id,
                    "expires_at": rfc3339(share.expires_at),
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(share)
    }

    async fn find(&self, id: &str) -> Result<Share, ShareError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM imaging_shares WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| ShareError::NotFound(format!("no imaging share `{id}`")))?;
        Share::from_row(&row)
    }

    /// Record a refused access; the error to return.
    async fn deny(
        &self,
        p: &Principal,
        who: &PersonRef,
        share: &Share,
        interaction: &str,
    ) -> ShareError {
        let event = AuditEvent {
            actor: who.to_string(),
            action: "imaging_share.access_denied".into(),
            target: format!("imaging-share:{}", share.id),
            hospital_id: Some(share.hospital_id.clone()),
            details: json!({
                "interaction": interaction,
                "caller_roles": p.roles,
                "caller_hospital": p.hospital_id,
                "claim_id": share.claim_id,
                "reason": "the share was made for another assessor or hospital",
            }),
        };
        if let Err(e) = AuditLog::new(self.db.clone()).append_refusal(event).await {
            return e.into();
        }
        ShareError::Forbidden(
            "this imaging share was made for another assessor; it is readable by that assessor and the hospital's staff only".into(),
        )
    }

    /// The share, for the assessor it names (`who`, the person `p` stands
    /// for: a bare `sub` of another issuer is not that assessor) or the
    /// owning hospital's staff; every read and every refusal is audited.
    pub async fn read(
        &self,
        p: &Principal,
        who: &PersonRef,
        id: &str,
    ) -> Result<Share, ShareError> {
        let share = self.find(id).await?;
        let assessor = p.has_role(Role::Assessor) && *who == share.assessor;
        if !assessor && !is_staff_of(p, &share.hospital_id) {
            return Err(self.deny(p, who, &share, "read").await);
        }
        match share.status(now_millis()) {
            ShareStatus::Revoked => {
                return Err(ShareError::Gone(format!(
                    "imaging share `{id}` was revoked by the hospital"
                )));
            }
            ShareStatus::Expired => {
                return Err(ShareError::Gone(format!(
                    "imaging share `{id}` expired at {}",
                    rfc3339(share.expires_at)
                )));
            }
            ShareStatus::Active => {}
        }
        AuditLog::new(self.db.clone())
            .append(AuditEvent {
                actor: who.to_string(),
                action: "imaging_share.read".into(),
                target: format!("imaging-share:{}", share.id),
                hospital_id: Some(share.hospital_id.clone()),
                details: json!({
                    "claim_id": share.claim_id,
                    "as": if assessor { "assessor" } else { "hospital staff" },
                }),
            })
            .await?;
        Ok(share)
    }

    /// The shares made for `assessor`, newest first.
    pub async fn list_for_assessor(&self, assessor: &PersonRef) -> Result<Vec<Share>, ShareError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM imaging_shares WHERE assessor = $1 ORDER BY created_at DESC, id DESC LIMIT 500"
        )))
        .bind(assessor.as_str())
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(Share::from_row).collect()
    }

    /// Revoke a share of `hospital` (its staff only); revoking twice is a
    /// no-op. Another hospital's share is refused and audited.
    pub async fn revoke(
        &self,
        p: &Principal,
        who: &PersonRef,
        hospital: &str,
        id: &str,
    ) -> Result<Share, ShareError> {
        let mut share = self.find(id).await?;
        if share.hospital_id != hospital {
            return Err(ShareError::NotFound(format!(
                "no imaging share `{id}` at `{hospital}`"
            )));
        }
        if !is_staff_of(p, hospital) {
            return Err(self.deny(p, who, &share, "revoke").await);
        }
        if share.revoked_at.is_some() {
            return Ok(share);
        }
        let now = now_millis();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE imaging_shares SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(who.as_str())
        .bind(id)
        .execute(&mut *tx.tx)
        .await?;
        AuditLog::append_in(
            &mut tx,
            AuditEvent {
                actor: who.to_string(),
                action: "imaging_share.revoked".into(),
                target: format!("imaging-share:{id}"),
                hospital_id: Some(hospital.to_owned()),
                details: json!({ "claim_id": share.claim_id, "assessor": share.assessor }),
            },
        )
        .await?;
        tx.commit().await?;
        share.revoked_at = Some(now);
        Ok(share)
    }
}
