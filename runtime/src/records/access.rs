//! Who may read records of another hospital, and the log citizens read:
//! consents (granted and revoked by the citizen), consultations between two
//! hospitals about a patient, and the record access log.
//!
//! Patients are matched across hospitals by the citizen ID (CCCD) or the
//! social-insurance health ID of their Patient resources; a hospital-local
//! identifier (a medical record number) never links two hospitals' records.

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;

use super::scopes::Purpose;
use super::{BHYT_SYSTEM, CCCD_SYSTEM, RecordError};
use crate::audit::rfc3339;
use crate::db::{Database, WriteTx};

/// The citizen identifiers of a patient.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PatientKeys {
    pub national_id: Option<String>,
    pub health_id: Option<String>,
}

impl PatientKeys {
    pub fn is_empty(&self) -> bool {
        self.national_id.is_none() && self.health_id.is_none()
    }

    /// Whether the two name the same citizen: one identifier agrees and
    /// none contradicts (a record holding one person's citizen ID and
    /// another's health ID links neither).
    pub fn matches(&self, other: &PatientKeys) -> bool {
        let same = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
        let differ = |a: &Option<String>, b: &Option<String>| a.is_some() && b.is_some() && a != b;
        (same(&self.national_id, &other.national_id) || same(&self.health_id, &other.health_id))
            && !differ(&self.national_id, &other.national_id)
            && !differ(&self.health_id, &other.health_id)
    }
}

/// What let a reader see a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// The record belongs to the reader's hospital.
    OwnHospital,
    /// The citizen's consent, by id.
    Consent(String),
    /// An active consultation between the two hospitals, by id.
    Consultation(String),
}

impl Basis {
    pub fn as_text(&self) -> String {
        match self {
            Self::OwnHospital => "own-hospital".into(),
            Self::Consent(id) => format!("consent:{id}"),
            Self::Consultation(id) => format!("consultation:{id}"),
        }
    }
}

use crate::time::now_millis;

/// The citizen identifiers of `patient_ref` (`Patient/<id>`).
pub async fn patient_keys(db: &Database, patient_ref: &str) -> Result<PatientKeys, RecordError> {
    let Some(id) = patient_ref.strip_prefix("Patient/") else {
        return Ok(PatientKeys::default());
    };
    let rows = sqlx::query(
        "SELECT system, value FROM fhir_search_index WHERE resource_type = 'Patient' AND id = $1 \
         AND kind = 'identifier' AND (system = $2 OR system = $3)",
    )
    .bind(id)
    .bind(CCCD_SYSTEM)
    .bind(BHYT_SYSTEM)
    .fetch_all(&db.pool)
    .await?;
    let mut keys = PatientKeys::default();
    for row in rows {
        let system: String = row.try_get("system")?;
        let value: String = row.try_get("value")?;
        if system == CCCD_SYSTEM {
            keys.national_id = Some(value);
        } else {
            keys.health_id = Some(value);
        }
    }
    Ok(keys)
}

/// The citizen identifiers of several patients (`Patient/<id>` each), in
/// one query; patients without any are absent.
pub async fn patient_keys_of(
    db: &Database,
    patient_refs: &[&str],
) -> Result<std::collections::BTreeMap<String, PatientKeys>, RecordError> {
    let ids: Vec<&str> = patient_refs
        .iter()
        .filter_map(|r| r.strip_prefix("Patient/"))
        .collect();
    let mut out = std::collections::BTreeMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let list: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 3)).collect();
    let sql = format!(
        "SELECT id, system, value FROM fhir_search_index WHERE resource_type = 'Patient' \
         AND kind = 'identifier' AND (system = $1 OR system = $2) AND id IN ({})",
        list.join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(CCCD_SYSTEM)
        .bind(BHYT_SYSTEM);
    for id in &ids {
        q = q.bind(*id);
    }
    for row in q.fetch_all(&db.pool).await? {
        let id: String = row.try_get("id")?;
        let system: String = row.try_get("system")?;
        let value: String = row.try_get("value")?;
        let keys: &mut PatientKeys = out.entry(format!("Patient/{id}")).or_default();
        if system == CCCD_SYSTEM {
            keys.national_id = Some(value);
        } else {
            keys.health_id = Some(value);
        }
    }
    Ok(out)
}

/// Why `reader` may read `owner`'s records about the patient `keys` for
/// `purpose`, if anything lets it: a consent first, then a consultation
/// (consultations are for treatment only).
pub async fn cross_hospital_basis(
    db: &Database,
    reader: &str,
    owner: &str,
    keys: &PatientKeys,
    purpose: Purpose,
) -> Result<Option<Basis>, RecordError> {
    if keys.is_empty() {
        return Ok(None);
    }
    let now = now_millis();
    let rows = sqlx::query(
        "SELECT id, purposes, national_id, health_id FROM record_consents WHERE status = 'active' AND grantee_hospital = $1 \
         AND (source_hospital IS NULL OR source_hospital = $2) AND (expires_at IS NULL OR expires_at > $3) \
         AND ((national_id IS NOT NULL AND national_id = $4) OR (health_id IS NOT NULL AND health_id = $5)) \
         ORDER BY created_at",
    )
    .bind(reader)
    .bind(owner)
    .bind(now)
    .bind(keys.national_id.as_deref())
    .bind(keys.health_id.as_deref())
    .fetch_all(&db.pool)
    .await?;
    for row in rows {
        let purposes: String = row.try_get("purposes")?;
        let consented = PatientKeys {
            national_id: row.try_get("national_id")?,
            health_id: row.try_get("health_id")?,
        };
        if consented.matches(keys) && parse_purposes(&purposes).contains(&purpose) {
            return Ok(Some(Basis::Consent(row.try_get("id")?)));
        }
    }
    if purpose != Purpose::Treatment {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT id, patient_national_id, patient_health_id FROM consultations WHERE status = 'active' \
         AND ((requesting_hospital = $1 AND host_hospital = $2) OR (requesting_hospital = $2 AND host_hospital = $1)) \
         AND ((patient_national_id IS NOT NULL AND patient_national_id = $3) OR (patient_health_id IS NOT NULL AND patient_health_id = $4)) \
         ORDER BY created_at",
    )
    .bind(reader)
    .bind(owner)
    .bind(keys.national_id.as_deref())
    .bind(keys.health_id.as_deref())
    .fetch_all(&db.pool)
    .await?;
    for r in rows {
        let named = PatientKeys {
            national_id: r.try_get("patient_national_id")?,
            health_id: r.try_get("patient_health_id")?,
        };
        if named.matches(keys) {
            return Ok(Some(Basis::Consultation(r.try_get("id")?)));
        }
    }
    Ok(None)
}

/// Other hospitals whose records about the patient `keys` `reader` may
/// search for `purpose`; `None` means every hospital (a consent without a
/// source hospital).
pub async fn readable_hospitals(
    db: &Database,
    reader: &str,
    keys: &PatientKeys,
    purpose: Purpose,
) -> Result<Option<Vec<String>>, RecordError> {
    let mut out = Vec::new();
    if keys.is_empty() {
        return Ok(Some(out));
    }
    let rows = sqlx::query(
        "SELECT source_hospital, purposes FROM record_consents WHERE status = 'active' AND grantee_hospital = $1 \
         AND (expires_at IS NULL OR expires_at > $2) \
         AND ((national_id IS NOT NULL AND national_id = $3) OR (health_id IS NOT NULL AND health_id = $4))",
    )
    .bind(reader)
    .bind(now_millis())
    .bind(keys.national_id.as_deref())
    .bind(keys.health_id.as_deref())
    .fetch_all(&db.pool)
    .await?;
    for row in rows {
        let purposes: String = row.try_get("purposes")?;
        if !parse_purposes(&purposes).contains(&purpose) {
            continue;
        }
        match row.try_get::<Option<String>, _>("source_hospital")? {
            None => return Ok(None),
            Some(h) => out.push(h),
        }
    }
    if purpose == Purpose::Treatment {
        let rows = sqlx::query(
            "SELECT requesting_hospital, host_hospital FROM consultations WHERE status = 'active' \
             AND (requesting_hospital = $1 OR host_hospital = $1) \
             AND ((patient_national_id IS NOT NULL AND patient_national_id = $2) OR (patient_health_id IS NOT NULL AND patient_health_id = $3))",
        )
        .bind(reader)
        .bind(keys.national_id.as_deref())
        .bind(keys.health_id.as_deref())
        .fetch_all(&db.pool)
        .await?;
        for row in rows {
            let a: String = row.try_get("requesting_hospital")?;
            let b: String = row.try_get("host_hospital")?;
            out.push(if a == reader { b } else { a });
        }
    }
    out.sort();
    out.dedup();
    Ok(Some(out))
}

fn parse_purposes(text: &str) -> Vec<Purpose> {
    serde_json::from_str::<Vec<String>>(text)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// One read of a citizen's records, for the access log.
#[derive(Debug, Clone)]
pub struct AccessEntry {
    pub keys: PatientKeys,
    pub reader_subject: String,
    pub reader_name: Option<String>,
    pub reader_hospital: Option<String>,
    pub owner_hospital: String,
    pub plugin_id: Option<String>,
    pub interaction: String,
    pub targets: Vec<String>,
    pub purpose: Purpose,
    pub basis: Basis,
}

/// Append to the access log within `tx`.
pub async fn log_access(tx: &mut WriteTx, e: &AccessEntry) -> Result<(), RecordError> {
    sqlx::query(
        "INSERT INTO record_access_log (id, at, national_id, health_id, reader_subject, reader_name, reader_hospital, \
         owner_hospital, plugin_id, interaction, targets, purpose, basis) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(now_millis())
    .bind(e.keys.national_id.as_deref())
    .bind(e.keys.health_id.as_deref())
    .bind(&e.reader_subject)
    .bind(e.reader_name.as_deref())
    .bind(e.reader_hospital.as_deref())
    .bind(&e.owner_hospital)
    .bind(e.plugin_id.as_deref())
    .bind(&e.interaction)
    .bind(json!(e.targets).to_string())
    .bind(e.purpose.as_str())
    .bind(e.basis.as_text())
    .execute(&mut *tx.tx)
    .await?;
    Ok(())
}

/// The reads of the citizen `keys`' records by others, newest first.
pub async fn access_log_of(
    db: &Database,
    keys: &PatientKeys,
    limit: i64,
) -> Result<Vec<Value>, RecordError> {
    let rows = sqlx::query(
        "SELECT at, reader_subject, reader_name, reader_hospital, owner_hospital, plugin_id, interaction, targets, purpose, basis \
         FROM record_access_log WHERE (national_id IS NOT NULL AND national_id = $1) OR (health_id IS NOT NULL AND health_id = $2) \
         ORDER BY at DESC, id DESC LIMIT $3",
    )
    .bind(keys.national_id.as_deref())
    .bind(keys.health_id.as_deref())
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let targets: String = r.try_get("targets")?;
            let purpose: String = r.try_get("purpose")?;
            let purpose_words = purpose
                .parse::<Purpose>()
                .map(Purpose::describe)
                .unwrap_or("");
            Ok(json!({
                "at": rfc3339(r.try_get("at")?),
                "reader": r.try_get::<String, _>("reader_subject")?,
                "reader_name": r.try_get::<Option<String>, _>("reader_name")?,
                "reader_hospital": r.try_get::<Option<String>, _>("reader_hospital")?,
                "records_of_hospital": r.try_get::<String, _>("owner_hospital")?,
                "plugin": r.try_get::<Option<String>, _>("plugin_id")?,
                "interaction": r.try_get::<String, _>("interaction")?,
                "resources": serde_json::from_str::<Value>(&targets).unwrap_or(Value::Null),
                "purpose": purpose,
                "purpose_in_words": purpose_words,
                "basis": r.try_get::<String, _>("basis")?,
            }))
        })
        .collect()
}

/// A citizen's consent letting a hospital read their records.
#[derive(Debug, Clone)]
pub struct Consent {
    pub id: String,
    pub citizen_subject: String,
    pub keys: PatientKeys,
    pub grantee_hospital: String,
    pub source_hospital: Option<String>,
    pub purposes: Vec<Purpose>,
    pub active: bool,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Consent {
    /// As a FHIR R4 Consent resource.
    pub fn to_fhir(&self) -> Value {
        let mut identifiers = Vec::new();
        if let Some(n) = &self.keys.national_id {
            identifiers.push(json!({ "system": CCCD_SYSTEM, "value": n }));
        }
        if let Some(h) = &self.keys.health_id {
            identifiers.push(json!({ "system": BHYT_SYSTEM, "value": h }));
        }
        let mut period = json!({ "start": rfc3339(self.created_at) });
        if let Some(end) = self.revoked_at.or(self.expires_at) {
            period["end"] = json!(rfc3339(end));
        }
        let mut provision = json!({
            "type": "permit",
            "period": period,
            "actor": [{
                "role": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP", "display": "information recipient" }] },
                "reference": { "identifier": { "system": "urn:vtelehealth:hospital", "value": self.grantee_hospital } }
            }],
            "action": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access" }] }],
            "purpose": self.purposes.iter().map(|p| json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": p.code(), "display": p.describe()
            })).collect::<Vec<_>>(),
        });
        if let Some(source) = &self.source_hospital {
            provision["data"] = json!([{
                "meaning": "related",
                "reference": { "identifier": { "system": "urn:vtelehealth:hospital", "value": source } }
            }]);
        }
        json!({
            "resourceType": "Consent",
            "id": self.id,
            "status": if self.active { "active" } else { "inactive" },
            "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
            "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent" }] }],
            "patient": { "identifier": identifiers.first().cloned().unwrap_or(Value::Null) },
            "dateTime": rfc3339(self.created_at),
            "performer": [{ "identifier": identifiers.first().cloned().unwrap_or(Value::Null) }],
            "policyRule": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN" }] },
            "provision": provision,
        })
    }
}

fn consent_from_row(r: &sqlx::any::AnyRow) -> Result<Consent, RecordError> {
    let status: String = r.try_get("status")?;
    let purposes: String = r.try_get("purposes")?;
    Ok(Consent {
        id: r.try_get("id")?,
        citizen_subject: r.try_get("citizen_subject")?,
        keys: PatientKeys {
            national_id: r.try_get("national_id")?,
            health_id: r.try_get("health_id")?,
        },
        grantee_hospital: r.try_get("grantee_hospital")?,
        source_hospital: r.try_get("source_hospital")?,
        purposes: parse_purposes(&purposes),
        active: status == "active",
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

const CONSENT_COLUMNS: &str = "id, citizen_subject, national_id, health_id, grantee_hospital, source_hospital, purposes, status, created_at, expires_at, revoked_at";

/// Consents and consultations.
#[derive(Clone)]
pub struct AccessStore {
    db: Database,
}

impl AccessStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Record a citizen's consent, audited in the same transaction.
    pub async fn grant_consent(&self, consent: &Consent) -> Result<(), RecordError> {
        let mut tx = self.db.begin_write().await?;
        let purposes: Vec<&str> = consent.purposes.iter().map(|p| p.as_str()).collect();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO record_consents ({CONSENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9, NULL)"
        )))
        .bind(&consent.id)
        .bind(&consent.citizen_subject)
        .bind(consent.keys.national_id.as_deref())
        .bind(consent.keys.health_id.as_deref())
        .bind(&consent.grantee_hospital)
        .bind(consent.source_hospital.as_deref())
        .bind(json!(purposes).to_string())
        .bind(consent.created_at)
        .bind(consent.expires_at)
        .execute(&mut *tx.tx)
        .await?;
        crate::audit::AuditLog::append_in(
            &mut tx,
            crate::audit::AuditEvent {
                actor: consent.citizen_subject.clone(),
                action: "records.consent_granted".into(),
                target: format!("Consent/{}", consent.id),
                hospital_id: Some(consent.grantee_hospital.clone()),
                details: json!({ "source_hospital": consent.source_hospital, "purposes": purposes, "expires_at": consent.expires_at.map(rfc3339) }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The citizen's consents, newest first.
    pub async fn consents_of(&self, citizen_subject: &str) -> Result<Vec<Consent>, RecordError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONSENT_COLUMNS} FROM record_consents WHERE citizen_subject = $1 ORDER BY created_at DESC, id DESC"
        )))
        .bind(citizen_subject)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(consent_from_row).collect()
    }

    /// Revoke one of the citizen's consents; the revoked consent comes back.
    pub async fn revoke_consent(
        &self,
        citizen_subject: &str,
        id: &str,
    ) -> Result<Consent, RecordError> {
        let mut tx = self.db.begin_write().await?;
        let now = now_millis();
        let changed = sqlx::query(
            "UPDATE record_consents SET status = 'inactive', revoked_at = $1 \
             WHERE id = $2 AND citizen_subject = $3 AND status = 'active'",
        )
        .bind(now)
        .bind(id)
        .bind(citizen_subject)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONSENT_COLUMNS} FROM record_consents WHERE id = $1 AND citizen_subject = $2"
        )))
        .bind(id)
        .bind(citizen_subject)
        .fetch_optional(&mut *tx.tx)
        .await?
        .ok_or_else(|| RecordError::NotFound(format!("Consent/{id}")))?;
        let consent = consent_from_row(&row)?;
        if changed > 0 {
            crate::audit::AuditLog::append_in(
                &mut tx,
                crate::audit::AuditEvent {
                    actor: citizen_subject.to_owned(),
                    action: "records.consent_revoked".into(),
                    target: format!("Consent/{id}"),
                    hospital_id: Some(consent.grantee_hospital.clone()),
                    details: json!({}),
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(consent)
    }
}

/// A consultation between a requesting and a host hospital about a patient.
#[derive(Debug, Clone, Serialize)]
pub struct Consultation {
    pub id: String,
    pub requesting_hospital: String,
    pub host_hospital: String,
    pub patient: PatientKeys,
    pub reason: String,
    pub status: String,
    pub requested_by: String,
    pub decided_by: Option<String>,
    pub created_at: String,
    pub accepted_at: Option<String>,
    pub ended_at: Option<String>,
}

const CONSULTATION_COLUMNS: &str = "id, requesting_hospital, host_hospital, patient_national_id, patient_health_id, reason, status, requested_by, decided_by, created_at, accepted_at, ended_at";

fn consultation_from_row(r: &sqlx::any::AnyRow) -> Result<Consultation, RecordError> {
    Ok(Consultation {
        id: r.try_get("id")?,
        requesting_hospital: r.try_get("requesting_hospital")?,
        host_hospital: r.try_get("host_hospital")?,
        patient: PatientKeys {
            national_id: r.try_get("patient_national_id")?,
            health_id: r.try_get("patient_health_id")?,
        },
        reason: r.try_get("reason")?,
        status: r.try_get("status")?,
        requested_by: r.try_get("requested_by")?,
        decided_by: r.try_get("decided_by")?,
        created_at: rfc3339(r.try_get("created_at")?),
        accepted_at: r.try_get::<Option<i64>, _>("accepted_at")?.map(rfc3339),
        ended_at: r.try_get::<Option<i64>, _>("ended_at")?.map(rfc3339),
    })
}

impl AccessStore {
    /// Open a consultation request, audited.
    pub async fn request_consultation(
        &self,
        requested_by: &str,
        requesting_hospital: &str,
        host_hospital: &str,
        patient: &PatientKeys,
        reason: &str,
    ) -> Result<Consultation, RecordError> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO consultations ({CONSULTATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, 'requested', $7, NULL, $8, NULL, NULL)"
        )))
        .bind(&id)
        .bind(requesting_hospital)
        .bind(host_hospital)
        .bind(patient.national_id.as_deref())
        .bind(patient.health_id.as_deref())
        .bind(reason)
        .bind(requested_by)
        .bind(now_millis())
        .execute(&mut *tx.tx)
        .await?;
        crate::audit::AuditLog::append_in(
            &mut tx,
            crate::audit::AuditEvent {
                actor: requested_by.to_owned(),
                action: "consultation.requested".into(),
                target: format!("consultation/{id}"),
                hospital_id: Some(requesting_hospital.to_owned()),
                details: json!({ "host_hospital": host_hospital }),
            },
        )
        .await?;
        tx.commit().await?;
        self.consultation(&id).await
    }

    pub async fn consultation(&self, id: &str) -> Result<Consultation, RecordError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONSULTATION_COLUMNS} FROM consultations WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| RecordError::NotFound(format!("consultation {id}")))?;
        consultation_from_row(&row)
    }

    /// Consultations involving `hospital`, newest first.
    pub async fn consultations_of(&self, hospital: &str) -> Result<Vec<Consultation>, RecordError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONSULTATION_COLUMNS} FROM consultations WHERE requesting_hospital = $1 OR host_hospital = $1 \
             ORDER BY created_at DESC, id DESC LIMIT 500"
        )))
        .bind(hospital)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(consultation_from_row).collect()
    }

    /// Move a consultation from one of `from` to `to`, audited; a
    /// consultation in another state is a conflict.
    pub async fn transition_consultation(
        &self,
        id: &str,
        actor: &str,
        actor_hospital: &str,
        from: &[&str],
        to: &str,
    ) -> Result<Consultation, RecordError> {
        let mut tx = self.db.begin_write().await?;
        let now = now_millis();
        let set = match to {
            "active" => "accepted_at = $1, decided_by = $2",
            "declined" => "ended_at = $1, decided_by = $2",
            _ => "ended_at = $1, decided_by = COALESCE(decided_by, $2)",
        };
        // Only the fixed state names ever reach the SQL text.
        let known = ["requested", "active", "declined", "ended"];
        if let Some(bad) = from.iter().chain([&to]).find(|s| !known.contains(s)) {
            return Err(RecordError::Conflict(format!(
                "unknown consultation state `{bad}`"
            )));
        }
        let states = from
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let changed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE consultations SET status = $3, {set} WHERE id = $4 AND status IN ({states})"
        )))
        .bind(now)
        .bind(actor)
        .bind(to)
        .bind(id)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if changed == 0 {
            drop(tx);
            let current = self.consultation(id).await?;
            return Err(RecordError::Conflict(format!(
                "consultation {id} is {}, so it cannot become {to}",
                current.status
            )));
        }
        crate::audit::AuditLog::append_in(
            &mut tx,
            crate::audit::AuditEvent {
                actor: actor.to_owned(),
                action: format!("consultation.{to}"),
                target: format!("consultation/{id}"),
                hospital_id: Some(actor_hospital.to_owned()),
                details: json!({}),
            },
        )
        .await?;
        tx.commit().await?;
        self.consultation(id).await
    }
}

/// Hospitals holding a Patient with one of `keys`' identifiers, by id.
pub async fn hospitals_with_patient(
    db: &Database,
    keys: &PatientKeys,
) -> Result<Vec<String>, RecordError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT DISTINCT r.hospital_id FROM fhir_search_index i          JOIN fhir_resources r ON r.resource_type = i.resource_type AND r.id = i.id          WHERE i.resource_type = 'Patient' AND i.kind = 'identifier'          AND ((i.system = $1 AND i.value = $2) OR (i.system = $3 AND i.value = $4))          ORDER BY r.hospital_id",
    )
    .bind(CCCD_SYSTEM)
    .bind(keys.national_id.as_deref())
    .bind(BHYT_SYSTEM)
    .bind(keys.health_id.as_deref())
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>("hospital_id").map_err(Into::into))
        .collect()
}

/// What to do with a consultation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsultationStep {
    /// The host hospital opens it: records flow both ways for treatment.
    Accept,
    /// The host hospital refuses it.
    Decline,
    /// Either hospital closes it.
    End,
}

/// The patient a consultation is about: a 12-digit citizen ID and/or a
/// 10-digit social-insurance number, at least one.
pub fn consultation_patient(
    national_id: Option<String>,
    health_id: Option<String>,
) -> Result<PatientKeys, RecordError> {
    let digits = |v: &str, n: usize| v.len() == n && v.bytes().all(|b| b.is_ascii_digit());
    if let Some(n) = &national_id
        && !digits(n, 12)
    {
        return Err(RecordError::Invalid {
            path: "patient.national_id".into(),
            message: format!("must be the 12-digit citizen ID ({CCCD_SYSTEM})"),
        });
    }
    if let Some(h) = &health_id
        && !digits(h, 10)
    {
        return Err(RecordError::Invalid {
            path: "patient.health_id".into(),
            message: format!("must be the 10-digit social-insurance number ({BHYT_SYSTEM})"),
        });
    }
    let keys = PatientKeys {
        national_id,
        health_id,
    };
    if keys.is_empty() {
        return Err(RecordError::Invalid {
            path: "patient".into(),
            message: "name the patient by national_id or health_id".into(),
        });
    }
    Ok(keys)
}

/// A consultation's reason, trimmed: 1 to [`crate::text_limits::REASON`] characters.
pub fn consultation_reason(reason: &str) -> Result<&str, RecordError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(RecordError::Invalid {
            path: "reason".into(),
            message: "is required".into(),
        });
    }
    crate::text_limits::check("reason", reason, crate::text_limits::REASON)?;
    Ok(reason)
}

impl AccessStore {
    /// Take `step` on consultation `id` for a person of `actor_hospital`:
    /// accepting and declining are the host hospital's, ending is either
    /// hospital's. The API and the `records` capability share this rule.
    pub async fn move_consultation(
        &self,
        id: &str,
        actor: &str,
        actor_hospital: &str,
        step: ConsultationStep,
    ) -> Result<Consultation, RecordError> {
        let c = self.consultation(id).await?;
        self.move_loaded_consultation(&c, actor, actor_hospital, step)
            .await
    }

    /// [`Self::move_consultation`] of a consultation already read.
    pub async fn move_loaded_consultation(
        &self,
        c: &Consultation,
        actor: &str,
        actor_hospital: &str,
        step: ConsultationStep,
    ) -> Result<Consultation, RecordError> {
        let id = c.id.as_str();
        let (host_only, from, to): (bool, &[&str], &str) = match step {
            ConsultationStep::Accept => (true, &["requested"], "active"),
            ConsultationStep::Decline => (true, &["requested"], "declined"),
            ConsultationStep::End => (false, &["requested", "active"], "ended"),
        };
        let allowed = if host_only {
            c.host_hospital == actor_hospital
        } else {
            c.host_hospital == actor_hospital || c.requesting_hospital == actor_hospital
        };
        if !allowed {
            return Err(RecordError::Forbidden(format!(
                "consultation {id} is not {} your hospital",
                if host_only { "hosted by" } else { "between" }
            )));
        }
        self.transition_consultation(id, actor, actor_hospital, from, to)
            .await
    }
}

/// The id of the Patient `hospital` keeps under one of `keys`' identifiers
/// (the citizen ID first), if it has one.
pub async fn patient_at(
    db: &Database,
    hospital: &str,
    keys: &PatientKeys,
) -> Result<Option<String>, RecordError> {
    if keys.is_empty() {
        return Ok(None);
    }
    let id: Option<String> = sqlx::query_scalar(
        "SELECT r.id FROM fhir_search_index i \
         JOIN fhir_resources r ON r.resource_type = i.resource_type AND r.id = i.id \
         WHERE i.resource_type = 'Patient' AND i.kind = 'identifier' AND r.hospital_id = $1 \
         AND ((i.system = $2 AND i.value = $3) OR (i.system = $4 AND i.value = $5)) \
         ORDER BY CASE WHEN i.system = $2 THEN 0 ELSE 1 END, r.id LIMIT 1",
    )
    .bind(hospital)
    .bind(CCCD_SYSTEM)
    .bind(keys.national_id.as_deref())
    .bind(BHYT_SYSTEM)
    .bind(keys.health_id.as_deref())
    .fetch_optional(&db.pool)
    .await?;
    Ok(id)
}

/// The kinds of resource a consultant's conclusion may be delivered as.
pub const CONCLUSION_TYPES: [crate::records::ResourceType; 2] = [
    crate::records::ResourceType::DiagnosticReport,
    crate::records::ResourceType::Communication,
];

impl AccessStore {
    /// Deliver the conclusion of consultation `c`, written by `by` (a
    /// practitioner of the host hospital), into the requesting hospital's
    /// records: about that hospital's own Patient record of the
    /// consultation's patient, in one transaction with the audit entry and
    /// the citizen's access log. Only while the consultation is active,
    /// so it happens before the records stop flowing.
    pub async fn deliver_conclusion(
        &self,
        c: &Consultation,
        by: &crate::records::Actor,
        rt: crate::records::ResourceType,
        mut resource: serde_json::Map<String, Value>,
    ) -> Result<crate::records::Stored, RecordError> {
        if by.hospital_id != c.host_hospital {
            return Err(RecordError::Forbidden(format!(
                "only a practitioner of the host hospital `{}` delivers the conclusion of consultation {}",
                c.host_hospital, c.id
            )));
        }
        if c.status != "active" {
            return Err(RecordError::Conflict(format!(
                "consultation {} is {}; a conclusion is delivered while it is active",
                c.id, c.status
            )));
        }
        if !CONCLUSION_TYPES.contains(&rt) {
            return Err(RecordError::Invalid {
                path: "resourceType".into(),
                message: format!(
                    "a conclusion is delivered as a DiagnosticReport or a Communication, not a {rt}"
                ),
            });
        }
        let Some(patient) = patient_at(&self.db, &c.requesting_hospital, &c.patient).await? else {
            return Err(RecordError::Conflict(format!(
                "the requesting hospital `{}` keeps no Patient record with the consultation's identifiers",
                c.requesting_hospital
            )));
        };
        let reference = format!("Patient/{patient}");
        resource.remove("id");
        resource.remove("meta");
        resource.insert("subject".into(), json!({ "reference": reference }));
        // Stored as the requesting hospital's record, written by the platform
        // for the consultation: the consultant is named in the audit entry
        // and in the citizen's access log.
        let writer = crate::records::Actor {
            subject: by.subject.clone(),
            name: by.name.clone(),
            hospital_id: c.requesting_hospital.clone(),
            kind: crate::records::ActorKind::System,
            purpose: Purpose::Treatment,
            plugin: by.plugin.clone(),
        };
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.db.begin_write().await?;
        let written =
            super::store::insert_in(&mut tx, &writer, rt, &id, resource, now_millis()).await?;
        super::store::resolve(&mut tx, &c.requesting_hospital, &written.refs).await?;
        let target = format!("{rt}/{id}");
        crate::audit::AuditLog::append_in(
            &mut tx,
            crate::audit::AuditEvent {
                actor: by.subject.clone(),
                action: "consultation.conclusion_delivered".into(),
                target: format!("consultation/{}", c.id),
                hospital_id: Some(c.requesting_hospital.clone()),
                details: json!({
                    "host_hospital": c.host_hospital,
                    "resource": target,
                    "plugin": by.plugin,
                }),
            },
        )
        .await?;
        log_access(
            &mut tx,
            &AccessEntry {
                keys: c.patient.clone(),
                reader_subject: by.subject.clone(),
                reader_name: by.name.clone(),
                reader_hospital: Some(c.host_hospital.clone()),
                owner_hospital: c.requesting_hospital.clone(),
                plugin_id: by.plugin.clone(),
                interaction: "create".into(),
                targets: vec![target],
                purpose: Purpose::Treatment,
                basis: Basis::Consultation(c.id.clone()),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(written.stored)
    }
}
