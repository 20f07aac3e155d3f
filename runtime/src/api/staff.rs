//! A hospital's staff and service clients, invitations, and the
//! practitioner directory (docs/identity.md).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Authenticated;
use super::extract::{Json, Path, Query};
use super::{ApiError, ErrorShaped};
use crate::Runtime;
use crate::audit::AuditEvent;
use crate::identity::service_clients::DEFAULT_GRACE_SECS;
use crate::identity::specialties::{self, SPECIALTY_SYSTEM};
use crate::identity::staff::{
    Creation, Invitation, LineError, NewStaff, StaffError, StaffPatch, VendorSeat,
    check_staff_roles, parse_staff_csv,
};
use crate::identity::{PractitionerSearch, Principal, Role, fold};

pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/api/v1/specialties", get(list_specialties))
        .route("/api/v1/practitioners", get(directory))
        .route(
            "/api/v1/hospitals/{hospital}/staff",
            get(list_staff).post(create_staff),
        )
        .route(
            "/api/v1/hospitals/{hospital}/staff/import",
            post(import_staff),
        )
        .route(
            "/api/v1/hospitals/{hospital}/staff/{user}",
            patch(update_staff),
        )
        .route(
            "/api/v1/hospitals/{hospital}/staff/{user}/suspend",
            post(suspend),
        )
        .route(
            "/api/v1/hospitals/{hospital}/staff/{user}/reactivate",
            post(reactivate),
        )
        .route(
            "/api/v1/hospitals/{hospital}/staff/{user}/invitation",
            post(reissue),
        )
        .route(
            "/api/v1/hospitals/{hospital}/clients",
            get(list_clients).post(create_client),
        )
        .route(
            "/api/v1/hospitals/{hospital}/clients/{client}/rotate",
            post(rotate_client),
        )
        .route(
            "/api/v1/hospitals/{hospital}/clients/{client}/revoke",
            post(revoke_client),
        )
        .route(
            "/api/v1/vendors/{vendor}/users",
            get(list_vendor_users).post(create_vendor_user),
        )
        .route(
            "/invite/{token}",
            get(invitation_page).post(accept_invitation),
        )
}

// ----- errors -----

/// A refusal: an [`ApiError`], or an import's numbered lines in the same
/// shape with `error.lines`.
struct Fail(Response);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        self.0
    }
}

impl From<ApiError> for Fail {
    fn from(e: ApiError) -> Self {
        Self(e.into_response())
    }
}

impl From<StaffError> for ApiError {
    fn from(e: StaffError) -> Self {
        match e {
            StaffError::Invalid(m) => ApiError::Unprocessable(m),
            e @ StaffError::Lines(_) => ApiError::Unprocessable(e.to_string()),
            StaffError::Forbidden(m) => ApiError::Forbidden(m),
            StaffError::NotFound(m) => ApiError::NotFound(m),
            StaffError::Conflict(m) => ApiError::Conflict(m),
            StaffError::Gone(m) => ApiError::Gone(m),
            StaffError::Identity(e) => e.into(),
        }
    }
}

impl From<StaffError> for Fail {
    fn from(e: StaffError) -> Self {
        match e {
            StaffError::Lines(lines) => Self(lines_response(&lines)),
            e => ApiError::from(e).into(),
        }
    }
}

fn lines_response(lines: &[LineError]) -> Response {
    lines_response_as(StatusCode::UNPROCESSABLE_ENTITY, "invalid", lines)
}

/// [`lines_response`] with another status (a forbidden role: 403).
fn lines_response_as(status: StatusCode, code: &str, lines: &[LineError]) -> Response {
    let message = format!(
        "{} line(s) of the file are invalid; nothing was imported",
        lines.len()
    );
    let message_vi = format!(
        "{} dòng của tệp không hợp lệ; chưa có tài khoản nào được tạo.",
        lines.len()
    );
    let mut r = (
        status,
        axum::Json(json!({ "error": {
            "code": code, "message": message, "message_vi": message_vi, "lines": lines,
        }})),
    )
        .into_response();
    r.extensions_mut().insert(ErrorShaped);
    r
}

// ----- who may -----

/// How the caller may act on a hospital's staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// The hospital's own admin.
    Admin,
    /// A platform operator (the first hospital admin only).
    Operator,
}

/// Record a change already committed. A failed append is logged, not
/// answered with 500: the change (and any secret or link it returns) stands
/// and must reach the caller.
async fn audit(
    rt: &Runtime,
    p: &Principal,
    action: &str,
    target: String,
    hospital: Option<&str>,
    details: Value,
) {
    let appended = rt
        .governance
        .audit
        .append(AuditEvent {
            actor: rt.identity.person(p).into_string(),
            action: action.into(),
            target: target.clone(),
            hospital_id: hospital.map(Into::into),
            details,
        })
        .await;
    if let Err(e) = appended {
        tracing::error!(error = %e, action, target, "cannot audit a committed change");
    }
}

/// Record a refusal and return it.
async fn refuse(
    rt: &Runtime,
    p: &Principal,
    target: String,
    hospital: Option<&str>,
    reason: &str,
    message: String,
) -> ApiError {
    let event = AuditEvent {
        actor: rt.identity.person(p).into_string(),
        action: "access.denied".into(),
        target,
        hospital_id: hospital.map(Into::into),
        details: json!({ "caller_hospital": p.hospital_id, "caller_vendor": p.vendor_id, "reason": reason }),
    };
    if let Err(e) = rt.governance.audit.append_refusal(event).await {
        return ApiError::Internal(e.to_string());
    }
    ApiError::Forbidden(message)
}

/// The hospital's admin, or (with `operator`) a platform operator; anyone
/// else is refused, a hospital admin of another hospital audited.
async fn hospital_caller(
    rt: &Runtime,
    p: &Principal,
    hospital: &str,
    operator: bool,
) -> Result<Caller, ApiError> {
    let caller = if p.has_role(Role::HospitalAdmin) && p.hospital_id.as_deref() == Some(hospital) {
        Caller::Admin
    } else if operator && p.has_role(Role::Operator) {
        Caller::Operator
    } else if p.has_role(Role::HospitalAdmin) {
        return Err(refuse(
            rt,
            p,
            format!("hospital:{hospital}"),
            Some(hospital),
            "managing another hospital's staff",
            format!("hospital admins manage their own hospital only, not `{hospital}`"),
        )
        .await);
    } else {
        return Err(ApiError::Forbidden(
            "managing a hospital's staff and service clients needs its hospital-admin role".into(),
        ));
    };
    if rt.hospitals.get(hospital).is_none() {
        return Err(ApiError::NotFound(format!("no hospital `{hospital}`")));
    }
    Ok(caller)
}

// ----- specialties and the directory -----

async fn list_specialties() -> Json<Value> {
    Json(json!({ "system": SPECIALTY_SYSTEM, "specialties": specialties::all() }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryQuery {
    #[serde(default)]
    q: String,
    specialty: Option<String>,
    facility: Option<String>,
    tier: Option<String>,
    province: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

/// Who may search the directory: citizens and hospital staff, operators.
const DIRECTORY_ROLES: [Role; 5] = [
    Role::Citizen,
    Role::Practitioner,
    Role::HospitalAdmin,
    Role::Pharmacist,
    Role::Operator,
];

async fn directory(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Query(q): Query<DirectoryQuery>,
) -> Result<Json<Value>, ApiError> {
    if !DIRECTORY_ROLES.iter().any(|r| p.has_role(*r)) {
        return Err(ApiError::Forbidden(
            "the practitioner directory is for citizens, hospital staff and operators".into(),
        ));
    }
    let tier = match q.tier.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => Some(t.parse::<crate::directory::Tier>().map_err(|_| {
            ApiError::BadRequest(format!(
                "unknown tier `{t}`: central, provincial, district or commune"
            ))
        })?),
        None => None,
    };
    let province = q.province.as_deref().map(fold).filter(|p| !p.is_empty());
    let facility = q.facility.as_deref().filter(|f| !f.is_empty());
    let hospitals = rt.hospitals.list();
    // A province matches by its code or, tone marks aside, part of its
    // name: resolved here to the few stored names (one per province).
    let provinces = q
        .province
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|raw| {
            let folded = province.clone().unwrap_or_default();
            let mut names: Vec<String> = vec![raw.to_owned()];
            for h in &hospitals {
                if fold(&h.province).contains(&folded) && !names.contains(&h.province) {
                    names.push(h.province.clone());
                }
            }
            names
        });
    let facilities = crate::identity::FacilityFilter {
        facility: facility.map(str::to_owned),
        tier: tier.map(|t| t.as_str().to_owned()),
        provinces,
    };
    let limit = q
        .limit
        .unwrap_or(20)
        .min(crate::identity::MAX_SEARCH_RESULTS);
    let offset = q.offset.unwrap_or(0);
    let specialty = q
        .specialty
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let (specialty_code, specialty_text) = match specialty {
        Some(s) if specialties::get(s).is_some() => (Some(s.to_owned()), None),
        Some(s) => (None, Some(s.to_owned())),
        None => (None, None),
    };
    let found = rt
        .identity
        .search_practitioners(&PractitionerSearch {
            query: q.q,
            specialty: specialty_text,
            specialty_code,
            facilities: Some(facilities),
            limit,
            offset,
            ..PractitionerSearch::default()
        })
        .await?;
    let practitioners: Vec<Value> = found
        .into_iter()
        .map(|e| {
            let h = hospitals.iter().find(|h| h.id == e.hospital_id);
            json!({
                "id": e.id,
                "display_name": e.display_name,
                "title": e.title,
                "specialties": specialties::describe(&e.specialties),
                "hospital": {
                    "id": e.hospital_id,
                    "name": h.map(|h| h.name.clone()),
                    "tier": h.map(|h| h.tier),
                    "province": h.map(|h| h.province.clone()),
                },
            })
        })
        .collect();
    Ok(Json(
        json!({ "practitioners": practitioners, "limit": limit, "offset": offset }),
    ))
}

// ----- staff -----

async fn list_staff(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(hospital): Path<String>,
) -> Result<Json<Value>, ApiError> {
    hospital_caller(&rt, &p, &hospital, true).await?;
    let staff = rt.identity.list_staff(&hospital).await?;
    Ok(Json(json!({ "staff": staff })))
}

async fn create_staff(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(hospital): Path<String>,
    Json(new): Json<NewStaff>,
) -> Result<Response, Fail> {
    let caller = hospital_caller(&rt, &p, &hospital, true).await?;
    let target = format!("hospital:{hospital}");
    let mut creation = Creation::Audited;
    if caller == Caller::Operator {
        creation = Creation::FirstAdmin;
        let admin_only =
            !new.roles.is_empty() && new.roles.iter().all(|r| r.trim() == "hospital-admin");
        if !admin_only {
            return Err(refuse(&rt, &p, target, Some(&hospital), "operator granting staff roles",
                "an operator creates only a hospital's first admin (roles: [\"hospital-admin\"]); its admin adds the staff".into()).await.into());
        }
        if rt.identity.has_active_admin(&hospital).await? {
            return Err(refuse(
                &rt,
                &p,
                target,
                Some(&hospital),
                "hospital already has an admin",
                format!(
                    "`{hospital}` already has an active hospital admin, who adds further staff"
                ),
            )
            .await
            .into());
        }
    } else if let Err(StaffError::Forbidden(m)) = check_staff_roles(&new.roles) {
        return Err(refuse(
            &rt,
            &p,
            target,
            Some(&hospital),
            "granting a role a hospital admin may not grant",
            m,
        )
        .await
        .into());
    }
    let (user, invitation) = rt
        .identity
        .create_staff(
            &hospital,
            &new,
            &rt.identity.person(&p).into_string(),
            creation,
        )
        .await?;
    let member = rt.identity.staff_member(&hospital, &user.id).await?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "user": member, "invitation": invitation })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    #[serde(default)]
    dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    csv: String,
}

async fn import_staff(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(hospital): Path<String>,
    Query(q): Query<ImportQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Fail> {
    hospital_caller(&rt, &p, &hospital, false).await?;
    let body = body.map_err(ApiError::from)?;
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let text = match mime.as_str() {
        "text/csv" => String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::BadRequest("the file is not UTF-8 text".into()))?,
        // For clients that only send JSON: `{"csv": "…"}`.
        "application/json" => {
            serde_json::from_slice::<ImportBody>(&body)
                .map_err(|e| ApiError::Unprocessable(format!("expected {{\"csv\": \"…\"}}: {e}")))?
                .csv
        }
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "send the file as text/csv (or JSON {\"csv\": \"…\"})".into(),
            )
            .into());
        }
    };
    let rows = parse_staff_csv(&text)?;
    for (line, row) in &rows {
        if let Err(StaffError::Forbidden(m)) = check_staff_roles(&row.roles) {
            let err = refuse(
                &rt,
                &p,
                format!("hospital:{hospital}"),
                Some(&hospital),
                "granting a role a hospital admin may not grant",
                m.clone(),
            )
            .await;
            if matches!(err, ApiError::Internal(_)) {
                return Err(err.into());
            }
            return Err(Fail(lines_response_as(
                StatusCode::FORBIDDEN,
                "forbidden",
                &[LineError {
                    line: *line,
                    message: m,
                }],
            )));
        }
    }
    let by = rt.identity.person(&p).into_string();
    let made = rt
        .identity
        .import_staff(&hospital, &rows, &by, q.dry_run)
        .await?;
    if q.dry_run {
        let accounts: Vec<Value> = rows
            .iter()
            .zip(&made)
            .map(|((line, _), (u, _))| {
                json!({
                    "line": line, "username": u.username, "display_name": u.display_name,
                    "roles": u.roles, "specialties": specialties::describe(&u.specialties),
                })
            })
            .collect();
        return Ok(Json(json!({ "dry_run": true, "accounts": accounts })).into_response());
    }
    let mut created = Vec::new();
    // Each account's entry was written with it (import_staff).
    for (u, invitation) in made {
        let member = rt.identity.staff_member(&hospital, &u.id).await?;
        created.push(json!({ "user": member, "invitation": invitation }));
    }
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "dry_run": false, "created": created })),
    )
        .into_response())
}

async fn update_staff(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path((hospital, user)): Path<(String, String)>,
    Json(patch): Json<StaffPatch>,
) -> Result<Json<Value>, ApiError> {
    hospital_caller(&rt, &p, &hospital, false).await?;
    if let Some(roles) = &patch.roles {
        if let Err(StaffError::Forbidden(m)) = check_staff_roles(roles) {
            return Err(refuse(
                &rt,
                &p,
                format!("user:{user}"),
                Some(&hospital),
                "granting a role a hospital admin may not grant",
                m,
            )
            .await);
        }
        if user == p.subject && !roles.iter().any(|r| r.trim() == "hospital-admin") {
            return Err(ApiError::Conflict(
                "you cannot remove your own hospital-admin role".into(),
            ));
        }
    }
    let member = rt.identity.update_staff(&hospital, &user, &patch).await?;
    audit(
        &rt,
        &p,
        "identity.staff_updated",
        format!("user:{user}"),
        Some(&hospital),
        json!({ "roles": member.roles, "licence_changed": patch.licence_number.is_some(),
                "specialties": patch.specialties, "name_changed": patch.display_name.is_some() }),
    )
    .await;
    Ok(Json(json!({ "user": member })))
}

async fn set_status(
    rt: &Runtime,
    p: &Principal,
    hospital: &str,
    user: &str,
    suspended: bool,
) -> Result<Json<Value>, ApiError> {
    hospital_caller(rt, p, hospital, false).await?;
    if user == p.subject {
        return Err(ApiError::Conflict(
            "you cannot suspend or reactivate yourself".into(),
        ));
    }
    rt.identity.staff_user(hospital, user).await?;
    rt.identity.set_suspended(user, suspended).await?;
    let action = if suspended {
        "identity.staff_suspended"
    } else {
        "identity.staff_reactivated"
    };
    audit(
        rt,
        p,
        action,
        format!("user:{user}"),
        Some(hospital),
        json!({}),
    )
    .await;
    Ok(Json(
        json!({ "user": rt.identity.staff_member(hospital, user).await? }),
    ))
}

async fn suspend(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path((hospital, user)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_status(&rt, &p, &hospital, &user, true).await
}

async fn reactivate(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path((hospital, user)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_status(&rt, &p, &hospital, &user, false).await
}

async fn reissue(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path((hospital, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let caller = hospital_caller(&rt, &p, &hospital, true).await?;
    let target = rt.identity.staff_user(&hospital, &user).await?;
    // An operator re-issues only the links of the admins they invite, and
    // only until one of them takes charge of the hospital (bootstrap).
    if caller == Caller::Operator {
        if !target.has_role(Role::HospitalAdmin) {
            return Err(ApiError::Forbidden(
                "an operator re-issues invitations of hospital admins only".into(),
            ));
        }
        if rt.identity.has_admin_in_charge(&hospital).await? {
            return Err(ApiError::Forbidden(format!(
                "`{hospital}` has a hospital admin who has signed in; they re-issue its invitations, not an operator"
            )));
        }
    }
    let invitation: Invitation = rt
        .identity
        .reissue_invitation(&user, &rt.identity.person(&p).into_string())
        .await?;
    audit(
        &rt,
        &p,
        "identity.invitation_issued",
        format!("user:{user}"),
        Some(&hospital),
        json!({}),
    )
    .await;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "invitation": invitation })),
    )
        .into_response())
}

// ----- service clients -----

async fn list_clients(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(hospital): Path<String>,
) -> Result<Json<Value>, ApiError> {
    hospital_caller(&rt, &p, &hospital, false).await?;
    Ok(Json(
        json!({ "clients": rt.identity.list_hospital_clients(&hospital).await? }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClient {
    name: String,
    kind: String,
    #[serde(default)]
    scope: String,
}

async fn create_client(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(hospital): Path<String>,
    Json(body): Json<NewClient>,
) -> Result<Response, ApiError> {
    hospital_caller(&rt, &p, &hospital, false).await?;
    let issued = rt
        .identity
        .create_hospital_client(
            &hospital,
            &body.name,
            &body.kind,
            &body.scope,
            &rt.identity.person(&p).into_string(),
        )
        .await?;
    // Audited in the transaction that created it.
    let client = rt
        .identity
        .hospital_client(&hospital, &issued.client_id)
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "client_id": issued.client_id, "client_secret": issued.client_secret,
            "name": client.name, "kind": client.kind, "scope": client.scope,
        })),
    )
        .into_response())
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    grace_secs: Option<i64>,
}

async fn rotate_client(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path((hospital, client)): Path<(String, String)>,
    body: Option<Json<RotateBody>>,
) -> Result<Response, ApiError> {
    hospital_caller(&rt, &p, &hospital, false).await?;
    let grace = body
        .and_then(|Json(b)| b.grace_secs)
        .unwrap_or(DEFAULT_GRACE_SECS);
    let issued = rt
        .identity
        .rotate_hospital_client(&hospital, &client, grace)
        .await?;
    audit(
        &rt,
        &p,
        "identity.client_rotated",
        format!("client:{client}"),
        Some(&hospital),
        json!({ "grace_secs": grace }),
    )
    .await;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(issued)).into_response())
}

async fn revoke_client(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path((hospital, client)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    hospital_caller(&rt, &p, &hospital, false).await?;
    let revoked = rt
        .identity
        .revoke_hospital_client(&hospital, &client)
        .await?;
    audit(
        &rt,
        &p,
        "identity.client_revoked",
        format!("client:{client}"),
        Some(&hospital),
        json!({}),
    )
    .await;
    Ok(Json(json!({ "client": revoked })))
}

// ----- vendors' users -----

/// Whether the caller is an admin of `vendor` (read from the directory:
/// the flag is not in tokens).
async fn is_vendor_admin(rt: &Runtime, p: &Principal, vendor: &str) -> Result<bool, ApiError> {
    if !p.has_role(Role::VendorUser)
        || p.vendor_id.as_deref() != Some(vendor)
        || p.issuer != rt.identity.issuer()
    {
        return Ok(false);
    }
    Ok(rt
        .identity
        .user(&p.subject)
        .await?
        .is_some_and(|u| u.vendor_admin && !u.suspended))
}

async fn vendor_refusal(rt: &Runtime, p: &Principal, vendor: &str) -> ApiError {
    if p.has_role(Role::VendorUser) && p.vendor_id.as_deref() != Some(vendor) {
        return refuse(
            rt,
            p,
            format!("vendor:{vendor}"),
            None,
            "managing another vendor's users",
            format!("vendor users manage their own vendor only, not `{vendor}`"),
        )
        .await;
    }
    ApiError::Forbidden(
        "managing a vendor's users needs to be its admin (or an operator for its first admin)"
            .into(),
    )
}

async fn list_vendor_users(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(vendor): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let own = p.has_role(Role::VendorUser) && p.vendor_id.as_deref() == Some(vendor.as_str());
    if !own && !p.has_role(Role::Operator) {
        return Err(vendor_refusal(&rt, &p, &vendor).await);
    }
    let name = rt
        .identity
        .vendor_name(&vendor)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no vendor `{vendor}`")))?;
    let users = rt.identity.list_vendor_users(&vendor).await?;
    Ok(Json(
        json!({ "vendor": { "id": vendor, "name": name }, "users": users }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewVendorUser {
    username: String,
    display_name: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    admin: bool,
}

async fn create_vendor_user(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(vendor): Path<String>,
    Json(body): Json<NewVendorUser>,
) -> Result<Response, ApiError> {
    let admin = is_vendor_admin(&rt, &p, &vendor).await?;
    if !admin {
        if !p.has_role(Role::Operator) {
            return Err(vendor_refusal(&rt, &p, &vendor).await);
        }
        if !body.admin || rt.identity.has_vendor_admin(&vendor).await? {
            return Err(ApiError::Forbidden(
                "an operator invites only a vendor's first admin (admin: true); the vendor's admin invites colleagues".into(),
            ));
        }
    }
    if rt.identity.vendor_name(&vendor).await?.is_none() {
        return Err(ApiError::NotFound(format!("no vendor `{vendor}`")));
    }
    let seat = match (admin, body.admin) {
        (_, false) => VendorSeat::Member,
        (true, true) => VendorSeat::Admin,
        // An operator (checked above): re-checked in the write.
        (false, true) => VendorSeat::FirstAdmin,
    };
    let (user, invitation) = rt
        .identity
        .create_vendor_user(
            &vendor,
            &body.username,
            &body.display_name,
            body.email.as_deref(),
            seat,
            &rt.identity.person(&p).into_string(),
        )
        .await?;
    let member = rt
        .identity
        .list_vendor_users(&vendor)
        .await?
        .into_iter()
        .find(|m| m.id == user.id);
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "user": member, "invitation": invitation })),
    )
        .into_response())
}

// ----- the invitation page -----

use super::html::escape;

/// A page in the built-in login page's look (api/oidc.rs).
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        r#"<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title></head>
<body style="font-family:sans-serif;max-width:28em;margin:3em auto">
{body}
</body></html>"#,
        title = escape(title),
    );
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(html),
    )
        .into_response()
}

fn error_page(e: StaffError) -> Response {
    let (status, vi, en) = match &e {
        StaffError::Gone(_) => (
            StatusCode::GONE,
            "Lời mời đã được dùng hoặc đã hết hạn. Hãy đề nghị quản trị viên gửi lời mời mới.",
            "This invitation has been used or has expired. Ask your administrator for a new one.",
        ),
        StaffError::NotFound(_) => (
            StatusCode::NOT_FOUND,
            "Không tìm thấy lời mời này. Hãy kiểm tra lại đường dẫn.",
            "This invitation does not exist. Check the link.",
        ),
        other => {
            tracing::error!(error = %other, "invitation page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Lỗi hệ thống; hãy thử lại sau.",
                "Internal error; try again later.",
            )
        }
    };
    page(
        status,
        "Lời mời / Invitation",
        &format!(
            "<h1>Không dùng được lời mời<br><small>Invitation not usable</small></h1>\n<p role=\"alert\">{vi}</p>\n<p>{en}</p>"
        ),
    )
}

/// Where the person of an invitation works, by name.
async fn place_of(rt: &Runtime, user: &crate::identity::User) -> String {
    if let Some(h) = user.hospital_id.as_deref() {
        return rt
            .hospitals
            .get(h)
            .map(|h| h.name)
            .unwrap_or_else(|| h.to_owned());
    }
    if let Some(v) = user.vendor_id.as_deref() {
        return rt
            .identity
            .vendor_name(v)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| v.to_owned());
    }
    "Vận hành nền tảng VTelehealth / VTelehealth platform operations".into()
}

fn form_page(
    status: StatusCode,
    token: &str,
    name: &str,
    place: &str,
    username: &str,
    error: Option<&str>,
) -> Response {
    let error = error
        .map(|e| format!("<p role=\"alert\" style=\"color:#b00\">{}</p>", escape(e)))
        .unwrap_or_default();
    page(
        status,
        "Đặt mật khẩu / Set your password",
        &format!(
            r#"<h1>Đặt mật khẩu lần đầu<br><small>Set your first password</small></h1>
<p>Xin chào <strong id="invitee">{name}</strong> — <span id="place">{place}</span>.</p>
<p>Tên đăng nhập / Username: <strong>{username}</strong></p>
{error}
<form method="post" action="/invite/{token}">
<p><label>Mật khẩu mới (ít nhất 8 ký tự) / New password (at least 8 characters)<br><input name="password" type="password" autocomplete="new-password" minlength="8" required></label></p>
<p><label>Nhập lại mật khẩu / Repeat the password<br><input name="password_confirm" type="password" autocomplete="new-password" minlength="8" required></label></p>
<p><button type="submit">Đặt mật khẩu / Set password</button></p>
</form>"#,
            name = escape(name),
            place = escape(place),
            username = escape(username),
            token = escape(token),
        ),
    )
}

async fn invitation_page(
    State(rt): State<Arc<Runtime>>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    match rt.identity.invitation(&token).await {
        Ok(inv) => {
            let place = place_of(&rt, &inv.user).await;
            form_page(
                StatusCode::OK,
                &token,
                &inv.user.display_name,
                &place,
                &inv.user.username,
                None,
            )
        }
        Err(e) => error_page(e),
    }
}

#[derive(Debug, Deserialize)]
struct PasswordForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

async fn accept_invitation(
    State(rt): State<Arc<Runtime>>,
    axum::extract::Path(token): axum::extract::Path<String>,
    form: Result<axum::extract::Form<PasswordForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    // A person sent this form: a page, not JSON, whatever went wrong.
    let Ok(axum::extract::Form(form)) = form else {
        return page(
            StatusCode::BAD_REQUEST,
            "Lời mời / Invitation",
            "<h1>Không đọc được biểu mẫu<br><small>The form could not be read</small></h1>\n\
             <p role=\"alert\">Biểu mẫu gửi lên không hợp lệ. Hãy mở lại đường dẫn trong lời mời và nhập lại mật khẩu.</p>\n\
             <p>The form sent is not valid. Open the invitation link again and enter the password again.</p>",
        );
    };
    let inv = match rt.identity.invitation(&token).await {
        Ok(inv) => inv,
        Err(e) => return error_page(e),
    };
    let place = place_of(&rt, &inv.user).await;
    let again = |m: &str| {
        form_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &token,
            &inv.user.display_name,
            &place,
            &inv.user.username,
            Some(m),
        )
    };
    if form.password != form.password_confirm {
        return again("Hai mật khẩu không khớp / The two passwords differ");
    }
    if form.password.len() < 8 || form.password.len() > 1024 {
        return again("Mật khẩu phải dài 8-1024 byte / The password must be 8-1024 bytes");
    }
    let user = match rt.identity.accept_invitation(&token, &form.password).await {
        Ok(u) => u,
        Err(e) => return error_page(e),
    };
    let event = AuditEvent {
        actor: user.id.clone(),
        action: "identity.invitation_accepted".into(),
        target: format!("user:{}", user.id),
        hospital_id: user.hospital_id.clone(),
        details: json!({ "purpose": inv.purpose }),
    };
    if let Err(e) = rt.governance.audit.append(event).await {
        tracing::error!(error = %e, "cannot audit an accepted invitation");
    }
    page(
        StatusCode::OK,
        "Đã đặt mật khẩu / Password set",
        &format!(
            r#"<h1>Đã đặt mật khẩu<br><small>Your password is set</small></h1>
<p id="done">Bạn có thể đăng nhập với tên <strong>{}</strong>. / You can now sign in as <strong>{}</strong>.</p>
<p><a href="/console/">Đăng nhập / Sign in</a></p>"#,
            escape(&user.username),
            escape(&user.username)
        ),
    )
}
