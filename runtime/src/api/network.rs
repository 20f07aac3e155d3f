//! The network register: facilities (hospitals, health centres, commune
//! stations) and vendors, kept by the ministry (docs/operations.md).

use std::collections::HashSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Json, Path, Query, read_limited};
use super::governance::require_role;
use super::{ApiError, Authenticated};
use crate::Runtime;
use crate::directory::{Hospital, Status};
use crate::identity::{Principal, Role};
use crate::network::{FacilityQuery, FacilityRow, NetworkError, NewVendor, RowError};

/// An import of 13,000 facilities is about 2 MB; room for longer names.
pub const IMPORT_BODY_LIMIT: usize = 8 << 20;

pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route(
            "/api/v1/network/facilities",
            get(list_facilities).post(create_facility),
        )
        .route("/api/v1/network/facilities/import", post(import))
        .route(
            "/api/v1/network/facilities/{code}",
            get(get_facility).put(update_facility),
        )
        .route(
            "/api/v1/network/facilities/{code}/suspend",
            post(suspend_facility),
        )
        .route(
            "/api/v1/network/facilities/{code}/reactivate",
            post(reactivate_facility),
        )
        .route("/api/v1/network/summary", get(summary))
        .route(
            "/api/v1/network/vendors",
            get(list_vendors).post(register_vendor),
        )
        .route("/api/v1/network/vendors/{id}/suspend", post(suspend_vendor))
        .route(
            "/api/v1/network/vendors/{id}/reactivate",
            post(reactivate_vendor),
        )
}

impl From<NetworkError> for ApiError {
    fn from(e: NetworkError) -> Self {
        match e {
            NetworkError::Invalid(m) => ApiError::Unprocessable(m),
            NetworkError::NotFound(m) => ApiError::NotFound(m),
            NetworkError::Conflict(m) => ApiError::Conflict(m),
            NetworkError::BadRows(rows) => bad_rows(&rows),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// 422 with every bad row and its line in `error.details.errors`.
fn bad_rows(rows: &[RowError]) -> ApiError {
    let message = match rows {
        [one] if one.line == 0 => one.message.clone(),
        [one] => format!("line {}: {}; nothing was applied", one.line, one.message),
        _ => format!(
            "{} rows cannot be imported; nothing was applied",
            rows.len()
        ),
    };
    ApiError::UnprocessableDetails {
        message,
        details: json!({ "errors": rows }),
    }
}

fn operator(p: &Principal) -> Result<(), ApiError> {
    require_role(p, &[Role::Operator])
}

fn actor(rt: &Runtime, p: &Principal) -> String {
    rt.identity.person(p).into_string()
}

/// A facility as the API shows it: the register's fields and its parent's
/// name and code, so screens never show ids.
fn facility_json(rt: &Runtime, h: &Hospital) -> Value {
    let parent = h.parent_id.as_deref().and_then(|id| rt.hospitals.get(id));
    let mut v = serde_json::to_value(h).unwrap_or_else(|_| json!({}));
    v["parent_name"] = json!(parent.as_ref().map(|p| &p.name));
    v["parent_code"] = json!(parent.as_ref().and_then(|p| p.facility_code.as_ref()));
    v
}

async fn list_facilities(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Query(q): Query<FacilityQuery>,
) -> Result<Json<Value>, ApiError> {
    require_role(&p, &[Role::Operator, Role::Reviewer, Role::HospitalAdmin])?;
    let (page, total) = rt.network.facilities(&q)?;
    let facilities: Vec<_> = page.iter().map(|h| facility_json(&rt, h)).collect();
    Ok(Json(json!({ "facilities": facilities, "total": total })))
}

async fn get_facility(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(code): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_role(&p, &[Role::Operator, Role::Reviewer, Role::HospitalAdmin])?;
    let h = rt
        .network
        .facility_by_code(&code)
        .ok_or_else(|| ApiError::NotFound(format!("no facility with code `{code}`")))?;
    Ok(Json(json!({ "facility": facility_json(&rt, &h) })))
}

#[derive(Debug, Deserialize)]
struct ImportQuery {
    #[serde(default)]
    dry_run: bool,
}

/// The CSV of an import: a `text/csv` body (or `text/plain`), or JSON
/// `{"csv": "..."}` for clients that only send JSON.
async fn import(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Query(q): Query<ImportQuery>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    operator(&p)?;
    let (parts, body) = req.into_parts();
    let mime = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let bytes = read_limited(&parts.headers, body, IMPORT_BODY_LIMIT).await?;
    let text = match mime.as_str() {
        "text/csv" | "text/plain" | "" => crate::network::csv::decode_utf8(bytes.to_vec())
            .map_err(|e| ApiError::Unprocessable(e.to_string()))?,
        "application/json" => {
            #[derive(Deserialize)]
            struct Body {
                csv: String,
            }
            serde_json::from_slice::<Body>(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("expected {{\"csv\": \"...\"}}: {e}")))?
                .csv
        }
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "send the file as `Content-Type: text/csv`, not `{other}`"
            )));
        }
    };
    let report = rt
        .network
        .import_csv(&text, q.dry_run, &actor(&rt, &p), &mut |_, _| {})
        .await?;
    Ok(Json(serde_json::to_value(report).unwrap_or_default()))
}

async fn create_facility(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Json(row): Json<FacilityRow>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    operator(&p)?;
    if rt
        .network
        .facility_by_code(row.facility_code.trim())
        .is_some()
    {
        return Err(ApiError::Conflict(format!(
            "facility {} is already registered; change it with PUT",
            row.facility_code.trim()
        )));
    }
    let code = row.facility_code.trim().to_owned();
    rt.network
        .import_rows(vec![(0, row)], false, &actor(&rt, &p), &mut |_, _| {})
        .await?;
    let h = rt
        .network
        .facility_by_code(&code)
        .ok_or_else(|| ApiError::Internal(format!("facility {code} not found after creation")))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "facility": facility_json(&rt, &h) })),
    ))
}

async fn update_facility(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(code): Path<String>,
    Json(mut row): Json<FacilityRow>,
) -> Result<Json<Value>, ApiError> {
    operator(&p)?;
    if rt.network.facility_by_code(&code).is_none() {
        return Err(ApiError::NotFound(format!(
            "no facility with code `{code}`"
        )));
    }
    if row.facility_code.trim().is_empty() {
        row.facility_code = code.clone();
    } else if row.facility_code.trim() != code {
        return Err(ApiError::Unprocessable(
            "facility_code in the body differs from the one in the path; codes do not change"
                .into(),
        ));
    }
    let report = rt
        .network
        .import_rows(vec![(0, row)], false, &actor(&rt, &p), &mut |_, _| {})
        .await?;
    let h = rt
        .network
        .facility_by_code(&code)
        .ok_or_else(|| ApiError::NotFound(format!("no facility with code `{code}`")))?;
    let action = if report.updated > 0 {
        "updated"
    } else {
        "unchanged"
    };
    Ok(Json(
        json!({ "facility": facility_json(&rt, &h), "action": action }),
    ))
}

#[derive(Debug, Default, Deserialize)]
struct Reason {
    #[serde(default)]
    reason: Option<String>,
}

fn reason(body: Option<Json<Reason>>, required: bool) -> Result<Option<String>, ApiError> {
    let reason = body
        .and_then(|Json(r)| r.reason)
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if let Some(r) = &reason {
        crate::text_limits::check("reason", r, crate::text_limits::TITLE)?;
    }
    if required && reason.is_none() {
        return Err(ApiError::Unprocessable(
            "a reason is required to suspend".into(),
        ));
    }
    Ok(reason)
}

async fn set_facility_status(
    rt: &Runtime,
    p: &Principal,
    code: &str,
    status: Status,
    reason: Option<String>,
) -> Result<Json<Value>, ApiError> {
    let h = rt
        .network
        .set_facility_status(code, status, &actor(rt, p), reason.as_deref())
        .await?;
    Ok(Json(json!({ "facility": facility_json(rt, &h) })))
}

async fn suspend_facility(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(code): Path<String>,
    body: Option<Json<Reason>>,
) -> Result<Json<Value>, ApiError> {
    operator(&p)?;
    let reason = reason(body, true)?;
    set_facility_status(&rt, &p, &code, Status::Suspended, reason).await
}

async fn reactivate_facility(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(code): Path<String>,
    body: Option<Json<Reason>>,
) -> Result<Json<Value>, ApiError> {
    operator(&p)?;
    let reason = reason(body, false)?;
    set_facility_status(&rt, &p, &code, Status::Active, reason).await
}

/// Registered, active and connected facilities per tier and province.
/// Connected: active, with at least one active module activation.
async fn summary(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    require_role(&p, &[Role::Reviewer, Role::Operator])?;
    let connected: HashSet<String> = rt
        .governance
        .registry
        .activations(None, None)
        .await?
        .into_iter()
        .filter(|a| a.state == "active")
        .map(|a| a.hospital_id)
        .collect();
    Ok(Json(
        serde_json::to_value(rt.network.summary(&connected)).unwrap_or_default(),
    ))
}

async fn list_vendors(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    require_role(&p, &[Role::Reviewer, Role::Operator])?;
    Ok(Json(json!({ "vendors": rt.network.vendors().await? })))
}

async fn register_vendor(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Json(v): Json<NewVendor>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    operator(&p)?;
    let (vendor, created) = rt.network.register_vendor(&v, &actor(&rt, &p)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "vendor": vendor, "created": created })),
    ))
}

async fn suspend_vendor(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(id): Path<String>,
    body: Option<Json<Reason>>,
) -> Result<Json<Value>, ApiError> {
    operator(&p)?;
    let reason = reason(body, true)?;
    let v = rt
        .network
        .set_vendor_status(&id, Status::Suspended, &actor(&rt, &p), reason.as_deref())
        .await?;
    Ok(Json(json!({ "vendor": v })))
}

async fn reactivate_vendor(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(id): Path<String>,
    body: Option<Json<Reason>>,
) -> Result<Json<Value>, ApiError> {
    operator(&p)?;
    let reason = reason(body, false)?;
    let v = rt
        .network
        .set_vendor_status(&id, Status::Active, &actor(&rt, &p), reason.as_deref())
        .await?;
    Ok(Json(json!({ "vendor": v })))
}
