//! `/api/v1` routes of imaging shares for the BHYT assessment: a hospital's
//! staff share a signed imaging document with one assessor, the assessor
//! reads it, anyone verifies it with the hospital's published key.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;

use super::extract::{Json, Path, require_json};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::Authenticated;
use super::fhir::FHIR_JSON;
use crate::Runtime;
use crate::audit::AuditEvent;
use crate::identity::{Principal, Role};
use crate::imaging::{DEFAULT_EXPIRY_DAYS, NewShare, ShareError, is_staff_of};
use crate::records::{Actor, RecordError};
use crate::time::now_millis;

/// The imaging share routes.
pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/api/v1/hospitals/{hospital}/signing-key", get(signing_key))
        .route("/api/v1/hospitals/{hospital}/imaging-shares", post(create))
        .route(
            "/api/v1/hospitals/{hospital}/imaging-shares/{id}",
            delete(revoke),
        )
        .route("/api/v1/imaging-shares", get(list))
        .route("/api/v1/imaging-shares/{id}", get(read))
}

impl From<ShareError> for ApiError {
    fn from(e: ShareError) -> Self {
        match e {
            ShareError::Invalid(m) => ApiError::Unprocessable(m),
            ShareError::NotFound(m) => ApiError::NotFound(m),
            ShareError::Forbidden(m) => ApiError::Forbidden(m),
            ShareError::Gone(m) => ApiError::Gone(m),
            ShareError::Records(RecordError::Forbidden(m)) => ApiError::Forbidden(m),
            ShareError::Records(RecordError::NotFound(m)) => {
                ApiError::Unprocessable(format!("{m} in this hospital's records"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The caller as staff of `hospital`; anyone else is refused, and a
/// person of another hospital or role is audited.
async fn staff_of(rt: &Runtime, p: &Principal, hospital: &str) -> Result<Actor, ApiError> {
    if is_staff_of(p, hospital) {
        // Assembling a claim's document is a read for payment.
        let mut actor = Actor::staff(rt.identity.person(p).into_string(), hospital);
        actor.name = Some(p.name.clone());
        actor.purpose = crate::records::Purpose::Payment;
        return Ok(actor);
    }
    rt.governance
        .audit
        .append_refusal(AuditEvent {
            actor: rt.identity.person(p).into_string(),
            action: "imaging_share.access_denied".into(),
            target: format!("hospital:{hospital}"),
            hospital_id: Some(hospital.to_owned()),
            details: json!({ "caller_hospital": p.hospital_id, "caller_roles": p.roles,
                "reason": "imaging shares are managed by the hospital's practitioners and admins" }),
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Err(ApiError::Forbidden(format!(
        "imaging shares of `{hospital}` are made and revoked by its practitioners and hospital admins only"
    )))
}

fn share_url(rt: &Runtime, id: &str) -> String {
    format!(
        "{}/api/v1/imaging-shares/{id}",
        rt.identity.issuer().trim_end_matches('/')
    )
}

/// `GET /api/v1/hospitals/{hospital}/signing-key`: public, so anyone can
/// verify the hospital's documents.
async fn signing_key(
    State(rt): State<Arc<Runtime>>,
    Path(hospital): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if rt.hospitals.get(&hospital).is_none() {
        return Err(ApiError::NotFound(format!("no hospital `{hospital}`")));
    }
    Ok(Json(rt.imaging.signing_key(&hospital)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    claim_id: String,
    /// The assessor's subject (or username).
    assessor: String,
    diagnostic_report: String,
    imaging_study: String,
    dicomweb_base_url: Option<String>,
    expires_in_days: Option<i64>,
}

async fn create(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(hospital): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = staff_of(&rt, &p, &hospital).await?;
    require_json(&headers)?;
    let body: CreateBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))?;
    let h = rt
        .hospitals
        .get(&hospital)
        .ok_or_else(|| ApiError::NotFound(format!("no hospital `{hospital}`")))?;
    // Shares go to the social-insurance assessors of the directory only, so a
    // typo shares nothing; a hospital's own staff holding the assessor role
    // (granted by its admin) belong to a hospital and are not BHXH's.
    let assessor = match rt.identity.user(&body.assessor).await? {
        Some(u) => Some(u),
        None => rt.identity.user_by_username(&body.assessor).await?,
    }
    .filter(|u| u.role == Role::Assessor && u.hospital_id.is_none())
    .ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "assessor: `{}` is not a social-insurance assessor of the directory",
            body.assessor
        ))
    })?;
    let base = format!("{}/fhir/R4", rt.identity.issuer().trim_end_matches('/'));
    let share = rt
        .imaging
        .create(
            &actor,
            &h,
            &base,
            NewShare {
                claim_id: body.claim_id,
                assessor: crate::identity::PersonRef::of_user(&assessor).into_string(),
                diagnostic_report: body.diagnostic_report,
                imaging_study: body.imaging_study,
                dicomweb_base_url: body.dicomweb_base_url,
                expires_in_days: body.expires_in_days.unwrap_or(DEFAULT_EXPIRY_DAYS),
            },
        )
        .await?;
    let url = share_url(&rt, &share.id);
    let mut response = (
        StatusCode::CREATED,
        Json(json!({
            "id": share.id,
            "url": url,
            "claim_id": share.claim_id,
            "assessor": share.assessor,
            "expires_at": crate::audit::rfc3339(share.expires_at),
            "document": share.document,
        })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// `GET /api/v1/imaging-shares/{id}`: the signed document Bundle.
async fn read(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let share = rt.imaging.read(&p, &rt.identity.person(&p), &id).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        share.document.to_string(),
    )
        .into_response())
}

/// `GET /api/v1/imaging-shares`: an assessor's own shares.
async fn list(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    if !p.has_role(Role::Assessor) {
        return Err(ApiError::Forbidden(
            "the list of imaging shares is an assessor's own; hospitals see theirs in the audit trail".into(),
        ));
    }
    let now = now_millis();
    let shares: Vec<Value> = rt
        .imaging
        .list_for_assessor(&rt.identity.person(&p))
        .await?
        .iter()
        .map(|s| {
            let mut v = json!(s.summary(now));
            v["url"] = json!(share_url(&rt, &s.id));
            v
        })
        .collect();
    Ok(Json(json!({ "shares": shares })))
}

/// `DELETE /api/v1/hospitals/{hospital}/imaging-shares/{id}`: revoke.
async fn revoke(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path((hospital, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    staff_of(&rt, &p, &hospital).await?;
    let share = rt
        .imaging
        .revoke(&p, &rt.identity.person(&p), &hospital, &id)
        .await?;
    let now = now_millis();
    Ok(Json(json!(share.summary(now))))
}
