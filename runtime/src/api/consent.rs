//! `/api/v1` routes of cross-hospital record access: a citizen's consents
//! and the log of who read their records, and consultations between two
//! hospitals about a patient.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use super::extract::{Json, Path, Query};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::Authenticated;
use crate::Runtime;
use crate::identity::{Principal, Role};
use crate::records::access::{
    AccessStore, Consent, ConsultationStep, PatientKeys, access_log_of, consultation_patient,
    consultation_reason,
};
use crate::records::{Actor, ActorKind, Purpose, RecordError, ResourceType, SearchQuery};
use crate::time::now_millis;

/// The routes.
pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route(
            "/api/v1/me/consents",
            post(grant_consent).get(list_consents),
        )
        .route("/api/v1/me/consents/{id}", delete(revoke_consent))
        .route("/api/v1/me/record-access", get(record_access))
        .route("/api/v1/me/records", get(my_records))
        .route(
            "/api/v1/consultations",
            post(request_consultation).get(list_consultations),
        )
        .route("/api/v1/consultations/{id}/accept", post(accept))
        .route("/api/v1/consultations/{id}/decline", post(decline))
        .route("/api/v1/consultations/{id}/end", post(end))
}

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::NotFound(m) => ApiError::NotFound(m),
            RecordError::Forbidden(m) => ApiError::Forbidden(m),
            RecordError::Conflict(m) => ApiError::Conflict(m),
            RecordError::TooLong(e) => ApiError::TooLong(e),
            RecordError::Database(_) | RecordError::Audit(_) => ApiError::Internal(e.to_string()),
            other => ApiError::Unprocessable(other.to_string()),
        }
    }
}

/// Whose consents: issuer and subject, since two issuers may reuse a subject.
fn citizen_key(p: &Principal) -> String {
    format!("{}#{}", p.issuer, p.subject)
}

fn access(rt: &Runtime) -> AccessStore {
    AccessStore::new(rt.db.clone())
}

/// The caller as a citizen with at least one citizen identifier.
fn citizen(p: &Principal) -> Result<PatientKeys, ApiError> {
    if !p.has_role(Role::Citizen) {
        return Err(ApiError::Forbidden(
            "only citizens manage consents and read their own access log".into(),
        ));
    }
    let keys = PatientKeys {
        national_id: p.national_id.clone(),
        health_id: p.health_id.clone(),
    };
    if keys.is_empty() {
        return Err(ApiError::Forbidden(
            "your account carries neither a citizen ID nor a health ID, so no record can be matched to you".into(),
        ));
    }
    Ok(keys)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentBody {
    /// The hospital whose staff may read.
    grantee_hospital: String,
    /// Only this hospital's records; all hospitals' when absent.
    source_hospital: Option<String>,
    /// Purposes of use; treatment when absent.
    purposes: Option<Vec<String>>,
    /// How long the consent lasts; for good when absent.
    expires_in_days: Option<u32>,
}

async fn grant_consent(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Json(body): Json<ConsentBody>,
) -> Result<Response, ApiError> {
    let keys = citizen(&p)?;
    for h in std::iter::once(&body.grantee_hospital).chain(body.source_hospital.as_ref()) {
        if rt.hospitals.get(h).is_none() {
            return Err(ApiError::Unprocessable(format!("unknown hospital `{h}`")));
        }
    }
    if body.source_hospital.as_ref() == Some(&body.grantee_hospital) {
        return Err(ApiError::Unprocessable(
            "a hospital already reads its own records; name another source hospital".into(),
        ));
    }
    let mut purposes = Vec::new();
    for name in body.purposes.unwrap_or_else(|| vec!["treatment".into()]) {
        let p: Purpose = name.parse().map_err(ApiError::Unprocessable)?;
        if !purposes.contains(&p) {
            purposes.push(p);
        }
    }
    if purposes.is_empty() {
        return Err(ApiError::Unprocessable(
            "name at least one purpose of use".into(),
        ));
    }
    let now = now_millis();
    let expires_at = match body.expires_in_days {
        Some(0) => {
            return Err(ApiError::Unprocessable(
                "expires_in_days must be at least 1".into(),
            ));
        }
        Some(d) if d > 3650 => {
            return Err(ApiError::Unprocessable(
                "expires_in_days is at most 3650 (ten years)".into(),
            ));
        }
        Some(d) => Some(now + i64::from(d) * 86_400_000),
        None => None,
    };
    let consent = Consent {
        id: uuid::Uuid::now_v7().to_string(),
        citizen_subject: citizen_key(&p),
        keys,
        grantee_hospital: body.grantee_hospital,
        source_hospital: body.source_hospital,
        purposes,
        active: true,
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    access(&rt).grant_consent(&consent).await?;
    Ok((StatusCode::CREATED, Json(consent.to_fhir())).into_response())
}

async fn list_consents(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    citizen(&p)?;
    let consents = access(&rt).consents_of(&citizen_key(&p)).await?;
    Ok(Json(json!({
        "consents": consents.iter().map(Consent::to_fhir).collect::<Vec<_>>()
    })))
}

async fn revoke_consent(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    citizen(&p)?;
    let consent = access(&rt).revoke_consent(&citizen_key(&p), &id).await?;
    Ok(Json(consent.to_fhir()))
}

#[derive(Deserialize)]
struct AccessQuery {
    limit: Option<i64>,
}

/// Resource types a citizen's own record shows, in this order.
const MY_RECORD_TYPES: [ResourceType; 9] = [
    ResourceType::Patient,
    ResourceType::Encounter,
    ResourceType::Observation,
    ResourceType::DiagnosticReport,
    ResourceType::ImagingStudy,
    ResourceType::MedicationRequest,
    ResourceType::ServiceRequest,
    ResourceType::Appointment,
    ResourceType::Communication,
];
/// Most hospitals and resources per type one answer carries.
const MY_RECORDS_HOSPITALS: usize = 50;
const MY_RECORDS_PER_TYPE: &str = "50";

/// `GET /api/v1/me/records`: the citizen's personal health record, read
/// at every hospital holding a Patient with their citizen ID or health ID,
/// with the same rules as a plugin's `patient/` scope (only records about
/// them). Each hospital's reads are in the access log as the citizen's own.
async fn my_records(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    let keys = citizen(&p)?;
    let hospitals = crate::records::access::hospitals_with_patient(&rt.db, &keys).await?;
    let query = SearchQuery::parse([("_count", MY_RECORDS_PER_TYPE)])?;
    let mut out = Vec::new();
    for h in hospitals.iter().take(MY_RECORDS_HOSPITALS) {
        let actor = Actor {
            subject: rt.identity.person(&p).into_string(),
            name: Some(p.name.clone()),
            hospital_id: h.clone(),
            kind: ActorKind::Citizen(keys.clone()),
            purpose: Purpose::Treatment,
            plugin: None,
        };
        let mut resources = Vec::new();
        let mut more = false;
        let mut failed = None;
        for ty in MY_RECORD_TYPES {
            match rt.records.search(&actor, ty, &query).await {
                Ok(page) => {
                    more |= page.next_offset.is_some();
                    resources.extend(page.entries.into_iter().map(|s| s.resource));
                }
                // One hospital's trouble does not hide the others' records.
                Err(e) => {
                    tracing::warn!(hospital = %h, error = %e, "reading a citizen's own records");
                    failed = Some(format!("{ty} records could not be read now"));
                    break;
                }
            }
        }
        out.push(json!({
            "hospital": h,
            "hospital_name": rt.hospitals.get(h).map(|x| x.name),
            "resources": resources,
            "truncated": more,
            "error": failed,
        }));
    }
    Ok(Json(json!({
        "hospitals": out,
        "truncated": hospitals.len() > MY_RECORDS_HOSPITALS,
    })))
}

async fn record_access(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Query(q): Query<AccessQuery>,
) -> Result<Json<Value>, ApiError> {
    let keys = citizen(&p)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let mut entries = access_log_of(&rt.db, &keys, limit).await?;
    // Name the hospitals, so the citizen reads who, not an id.
    for e in &mut entries {
        for field in ["reader_hospital", "records_of_hospital"] {
            if let Some(name) = e[field]
                .as_str()
                .and_then(|h| rt.hospitals.get(h))
                .map(|h| h.name)
            {
                e[format!("{field}_name")] = json!(name);
            }
        }
    }
    Ok(Json(json!({ "entries": entries })))
}

/// The caller as a practitioner or admin of a hospital.
fn staff(p: &Principal) -> Result<String, ApiError> {
    match &p.hospital_id {
        Some(h) if p.has_role(Role::Practitioner) || p.has_role(Role::HospitalAdmin) => {
            Ok(h.clone())
        }
        _ => Err(ApiError::Forbidden(
            "consultations are for the practitioners and admins of hospitals".into(),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatientBody {
    national_id: Option<String>,
    health_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsultationBody {
    host_hospital: String,
    patient: PatientBody,
    reason: String,
}

async fn request_consultation(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Json(body): Json<ConsultationBody>,
) -> Result<Response, ApiError> {
    let own = staff(&p)?;
    if !p.has_role(Role::Practitioner) {
        return Err(ApiError::Forbidden(
            "a practitioner requests a consultation".into(),
        ));
    }
    if rt.hospitals.get(&body.host_hospital).is_none() {
        return Err(ApiError::Unprocessable(format!(
            "unknown hospital `{}`",
            body.host_hospital
        )));
    }
    if body.host_hospital == own {
        return Err(ApiError::Unprocessable(
            "a consultation is between two hospitals".into(),
        ));
    }
    let patient = consultation_patient(body.patient.national_id, body.patient.health_id)?;
    let reason = consultation_reason(&body.reason)?;
    let c = access(&rt)
        .request_consultation(
            rt.identity.person(&p).as_str(),
            &own,
            &body.host_hospital,
            &patient,
            reason,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!(c))).into_response())
}

async fn list_consultations(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    let own = staff(&p)?;
    let list = access(&rt).consultations_of(&own).await?;
    Ok(Json(json!({ "consultations": list })))
}

/// Take `step` on a consultation for the caller's hospital.
async fn transition(
    rt: &Runtime,
    p: &Principal,
    id: &str,
    step: ConsultationStep,
) -> Result<Json<Value>, ApiError> {
    let own = staff(p)?;
    let c = access(rt)
        .move_consultation(id, rt.identity.person(p).as_str(), &own, step)
        .await?;
    Ok(Json(json!(c)))
}

async fn accept(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    transition(&rt, &p, &id, ConsultationStep::Accept).await
}

async fn decline(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    transition(&rt, &p, &id, ConsultationStep::Decline).await
}

async fn end(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    transition(&rt, &p, &id, ConsultationStep::End).await
}
