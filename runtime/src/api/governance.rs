//! `/api/v1` routes of plugin governance: vendor keys and submissions,
//! review decisions, activations and rollouts, the audit trail. Each route
//! checks the caller's role, and hospital admins act on their own hospital
//! only (a refused cross-hospital attempt is audited).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use super::extract::{Json, Path, Query, read_limited, require_json};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ApiError;
use super::Authenticated;
use crate::Runtime;
use crate::audit::{AuditEvent, AuditFilter};
use crate::capabilities::identity::CallContext;
use crate::governance::bundle::{Bundle, MAX_BUNDLE_BYTES};
use crate::governance::registry::{Decision, GovernanceError, VersionState};
use crate::governance::service::{
    ActivationRequest, RolloutTarget, SubmitError, grant_capabilities,
};
use crate::governance::signing;
use crate::identity::{Principal, Role};
use crate::manifest::Manifest;

/// The governance routes.
pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/api/v1/platform/keys", get(platform_keys))
        .route("/api/v1/vendor/keys", post(register_vendor_key))
        .route("/api/v1/plugin-versions", post(submit).get(list_versions))
        .route("/api/v1/plugin-versions/{id}", get(get_version))
        .route("/api/v1/plugin-versions/{id}/approve", post(approve))
        .route("/api/v1/plugin-versions/{id}/reject", post(reject))
        .route("/api/v1/plugin-versions/{id}/revoke", post(revoke))
        .route("/api/v1/plugin-versions/{id}/rollout", post(rollout))
        .route(
            "/api/v1/hospitals/{hospital}/activations",
            get(list_activations),
        )
        .route(
            "/api/v1/hospitals/{hospital}/activations/{plugin}",
            put(activate).delete(deactivate),
        )
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/audit/verify", get(audit_verify))
        .route(
            "/api/v1/audit/checkpoints",
            get(audit_checkpoints).post(audit_checkpoint_now),
        )
}

impl From<GovernanceError> for ApiError {
    fn from(e: GovernanceError) -> Self {
        match e {
            GovernanceError::NotFound(m) => ApiError::NotFound(m),
            GovernanceError::Conflict(m) => ApiError::Conflict(m),
            GovernanceError::Invalid(m) => ApiError::Unprocessable(m),
            GovernanceError::Forbidden(m) => ApiError::Forbidden(m),
            GovernanceError::TooLong(e) => ApiError::TooLong(e),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

pub(super) fn require_role(p: &Principal, roles: &[Role]) -> Result<(), ApiError> {
    if roles.iter().any(|r| p.has_role(*r)) {
        return Ok(());
    }
    let names: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
    Err(ApiError::Forbidden(format!(
        "this needs the role {}",
        names.join(" or ")
    )))
}

/// A hospital admin may act for their own hospital only; anything else is
/// refused and the attempt audited.
async fn require_hospital_admin(
    rt: &Runtime,
    p: &Principal,
    hospital: &str,
) -> Result<(), ApiError> {
    require_role(p, &[Role::HospitalAdmin])?;
    if p.hospital_id.as_deref() == Some(hospital) {
        return Ok(());
    }
    rt.governance
        .audit
        .append_refusal(AuditEvent {
            actor: rt.identity.person(p).into_string(),
            action: "access.denied".into(),
            target: format!("hospital:{hospital}"),
            hospital_id: Some(hospital.into()),
            details: json!({ "caller_hospital": p.hospital_id, "reason": "administering another hospital" }),
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Err(ApiError::Forbidden(format!(
        "hospital admins can manage their own hospital only, not `{hospital}`"
    )))
}

async fn platform_keys(State(rt): State<Arc<Runtime>>) -> Json<Value> {
    let signer = rt.governance.signer();
    Json(
        json!({ "keys": [{ "key_id": signer.key_id, "algorithm": "ed25519", "public_key": signer.public_key_base64() }] }),
    )
}

#[derive(Deserialize)]
struct NewKey {
    /// Base64 (or hex) of the raw 32-byte Ed25519 public key.
    public_key: String,
}

async fn register_vendor_key(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Json(body): Json<NewKey>,
) -> Result<Response, ApiError> {
    require_role(&p, &[Role::VendorUser])?;
    let vendor = p
        .vendor_id
        .clone()
        .ok_or_else(|| ApiError::Forbidden("the caller belongs to no vendor".into()))?;
    let public_key = signing::parse_public_key(&body.public_key)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let key_id = signing::key_id(&public_key);
    rt.governance
        .registry
        .add_vendor_key(
            rt.identity.person(&p).as_str(),
            &vendor,
            &key_id,
            &public_key,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "vendor": vendor, "key_id": key_id })),
    )
        .into_response())
}

/// A submission up to the bundle format's own limit, not the framework's
/// 2 MiB default; read only once the caller is known to be a vendor user.
async fn submit(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_role(&p, &[Role::VendorUser])?;
    let vendor = p
        .vendor_id
        .clone()
        .ok_or_else(|| ApiError::Forbidden("the caller belongs to no vendor".into()))?;
    require_json(&headers)?;
    let body = read_limited(&headers, body, MAX_BUNDLE_BYTES).await?;
    let bundle = match Bundle::from_json(&body) {
        Ok(b) => b,
        Err(e) => {
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(
                    json!({ "error": { "code": "invalid_bundle", "message": e.to_string(),
                    "message_vi": "Tệp gói (bundle) không đọc được." } }),
                ),
            )
                .into_response());
        }
    };
    match rt
        .governance
        .submit(rt.identity.person(&p).as_str(), &vendor, bundle)
        .await
    {
        Ok((version, checks)) => Ok((
            StatusCode::CREATED,
            Json(
                json!({ "id": version.id, "plugin": version.plugin_id, "version": version.version,
                "state": version.state, "checks": checks.checks }),
            ),
        )
            .into_response()),
        Err(SubmitError::Refused(report)) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": { "code": "checks_failed",
                "message": "the bundle failed its submission checks; nothing was stored",
                "message_vi": "Gói không qua được các bước kiểm tra khi nộp; không có gì được lưu." },
                "checks": report.checks })),
        )
            .into_response()),
        Err(SubmitError::Governance(e)) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct VersionQuery {
    state: Option<String>,
}

fn parse_state(s: &str) -> Result<VersionState, ApiError> {
    match s {
        "submitted" => Ok(VersionState::Submitted),
        "approved" => Ok(VersionState::Approved),
        "rejected" => Ok(VersionState::Rejected),
        "revoked" => Ok(VersionState::Revoked),
        other => Err(ApiError::BadRequest(format!("unknown state `{other}`"))),
    }
}

/// Reviewers see every version; vendors their own; hospital staff the
/// approved catalogue.
async fn list_versions(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Query(q): Query<VersionQuery>,
) -> Result<Json<Value>, ApiError> {
    let mut state = q.state.as_deref().map(parse_state).transpose()?;
    let vendor = if p.has_role(Role::Reviewer) || p.has_role(Role::Operator) {
        None
    } else if p.has_role(Role::VendorUser) {
        Some(p.vendor_id.clone().unwrap_or_default())
    } else if p.has_role(Role::HospitalAdmin) || p.has_role(Role::Practitioner) {
        state = Some(VersionState::Approved);
        None
    } else {
        return Err(ApiError::Forbidden(
            "plugin versions are not visible to this role".into(),
        ));
    };
    let versions = rt
        .governance
        .registry
        .list_versions(
            vendor.as_deref(),
            state,
            crate::governance::service::requested_strings,
        )
        .await?;
    let versions: Vec<_> = versions.iter().map(version_view).collect();
    Ok(Json(json!({ "versions": versions })))
}

/// A version with its capabilities in plain words, for reviewers.
pub(super) fn version_view(v: &crate::governance::registry::PluginVersion) -> Value {
    let manifest = Manifest::parse_structure(&v.manifest).ok();
    let describe = |grants: &[String]| -> Vec<Value> {
        grants
            .iter()
            .map(|g| {
                // Records scopes each get their own plain words.
                if let Some(scope) = g.strip_prefix("records:") {
                    let meaning = scope
                        .parse::<crate::records::scopes::ScopeEntry>()
                        .map_or_else(|e| e, |e| format!("health records: {}", e.describe()));
                    return json!({ "capability": g, "meaning": meaning });
                }
                if g == crate::capabilities::NATIONAL_IDS_GRANT {
                    return json!({ "capability": g, "meaning": crate::capabilities::NATIONAL_IDS_MEANING });
                }
                let cap = grant_capabilities(std::slice::from_ref(g)).into_iter().next();
                json!({ "capability": g, "meaning": cap.map(|c| c.describe()).unwrap_or("unknown capability") })
            })
            .collect()
    };
    json!({
        "id": v.id, "plugin": v.plugin_id, "version": v.version, "vendor": v.vendor_id, "state": v.state,
        "kind": manifest.as_ref().map(|m| m.kind.name()),
        "network": manifest.as_ref().map(|m| m.network),
        "network_meaning": manifest.as_ref().filter(|m| m.network).map(|_| "serves the practitioners of every hospital of the network where it is active, not only that hospital's"),
        "description": manifest.as_ref().map(|m| json!({ "vi": m.description.vi, "en": m.description.en })),
        "config": manifest.as_ref().map(|m| &m.config),
        // What the host enforces: each route's path, methods and roles.
        "routes": manifest.as_ref().map(|m| &m.routes),
        "requested": describe(&v.requested),
        "granted": v.granted.as_deref().map(describe),
        "component_sha256": v.component_digest, "checks": v.checks,
        "submitted_by": v.submitted_by, "submitted_at": v.submitted_at,
    })
}

async fn get_version(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let v = rt.governance.version(&id).await?;
    let visible = p.has_role(Role::Reviewer)
        || p.has_role(Role::Operator)
        || (p.has_role(Role::VendorUser) && p.vendor_id.as_deref() == Some(v.vendor_id.as_str()))
        || ((p.has_role(Role::HospitalAdmin) || p.has_role(Role::Practitioner))
            && v.state == VersionState::Approved);
    if !visible {
        return Err(ApiError::NotFound(format!("no plugin version `{id}`")));
    }
    let decisions = rt.governance.registry.decisions(&id).await?;
    let mut view = version_view(&v);
    view["manifest"] = json!(v.manifest);
    let mut decisions = json!(decisions);
    // Screens name reviewers by name, not by their user id.
    if let Some(list) = decisions.as_array_mut() {
        for d in list {
            let id = d["reviewer"].as_str().unwrap_or_default().to_owned();
            if let Ok(Some(user)) = rt.identity.user(&id).await {
                d["reviewer_name"] = json!(user.display_name);
            }
        }
    }
    view["decisions"] = decisions;
    Ok(Json(view))
}

#[derive(Deserialize)]
struct ApproveBody {
    /// Capabilities to grant; all those requested when absent.
    granted: Option<Vec<String>>,
    #[serde(default)]
    note: String,
}

#[derive(Deserialize)]
struct ReasonBody {
    reason: String,
}

async fn approve(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(id): Path<String>,
    Json(body): Json<ApproveBody>,
) -> Result<Json<Value>, ApiError> {
    require_role(&p, &[Role::Reviewer])?;
    let granted = match body.granted {
        Some(g) => g,
        None => rt.governance.version(&id).await?.requested,
    };
    let decision = rt
        .governance
        .decide(
            rt.identity.person(&p).as_str(),
            &id,
            Decision::Approve {
                granted,
                note: body.note,
            },
        )
        .await?;
    Ok(Json(json!(decision)))
}

async fn reject(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(id): Path<String>,
    Json(body): Json<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    decide_with_reason(
        &rt,
        &p,
        &id,
        Decision::Reject {
            reason: body.reason,
        },
    )
    .await
}

async fn revoke(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(id): Path<String>,
    Json(body): Json<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    decide_with_reason(
        &rt,
        &p,
        &id,
        Decision::Revoke {
            reason: body.reason,
        },
    )
    .await
}

async fn decide_with_reason(
    rt: &Runtime,
    p: &Principal,
    id: &str,
    decision: Decision,
) -> Result<Json<Value>, ApiError> {
    require_role(p, &[Role::Reviewer])?;
    let decided = rt
        .governance
        .decide(rt.identity.person(p).as_str(), id, decision)
        .await?;
    Ok(Json(json!(decided)))
}

async fn rollout(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(id): Path<String>,
    Json(target): Json<RolloutTarget>,
) -> Result<Json<Value>, ApiError> {
    require_role(&p, &[Role::Reviewer])?;
    let done = rt
        .governance
        .rollout(
            rt.identity.person(&p).as_str(),
            &id,
            &target,
            &rt.directory(),
            Some(p.clone()),
        )
        .await?;
    Ok(Json(json!({ "activated": done })))
}

async fn list_activations(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(hospital): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let own = p.hospital_id.as_deref() == Some(hospital.as_str());
    let allowed = p.has_role(Role::Reviewer)
        || p.has_role(Role::Operator)
        || (own && (p.has_role(Role::HospitalAdmin) || p.has_role(Role::Practitioner)));
    if !allowed {
        return Err(ApiError::Forbidden(format!(
            "the activations of `{hospital}` are not visible to this caller"
        )));
    }
    let activations = rt
        .governance
        .registry
        .activations(Some(&hospital), None)
        .await?;
    Ok(Json(json!({ "activations": activations })))
}

#[derive(Deserialize)]
struct ActivateBody {
    version_id: String,
    config: Option<Value>,
    /// Stored sealed; never returned by any API.
    secrets: Option<Map<String, Value>>,
}

async fn activate(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path((hospital, plugin)): Path<(String, String)>,
    Json(body): Json<ActivateBody>,
) -> Result<Json<Value>, ApiError> {
    require_hospital_admin(&rt, &p, &hospital).await?;
    let h = rt
        .hospitals
        .get(&hospital)
        .ok_or_else(|| ApiError::NotFound(format!("unknown hospital `{hospital}`")))?;
    let version = rt.governance.version(&body.version_id).await?;
    if version.plugin_id != plugin {
        return Err(ApiError::BadRequest(format!(
            "version `{}` is of plugin `{}`, not `{plugin}`",
            body.version_id, version.plugin_id
        )));
    }
    let ctx = CallContext {
        hospital: h,
        plugin_id: plugin.clone(),
        request_id: uuid::Uuid::now_v7().to_string(),
        principal: Some(p.clone()),
        started: std::time::Instant::now(),
        directory: rt.directory(),
        video: Some(rt.video.clone()),
    };
    let request = ActivationRequest {
        version_id: body.version_id,
        config: body.config,
        secrets: body.secrets,
        mandatory: false,
        via: "hospital".into(),
    };
    let activation = rt
        .governance
        .activate(rt.identity.person(&p).as_str(), ctx, request)
        .await?;
    Ok(Json(json!(activation)))
}

async fn deactivate(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path((hospital, plugin)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    require_hospital_admin(&rt, &p, &hospital).await?;
    rt.governance
        .deactivate(rt.identity.person(&p).as_str(), &hospital, &plugin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    hospital: Option<String>,
    target: Option<String>,
    limit: Option<i64>,
    /// `fhir` for a Bundle of AuditEvent resources.
    format: Option<String>,
}

async fn audit(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    require_role(&p, &[Role::Reviewer, Role::Operator])?;
    let entries = rt
        .governance
        .audit
        .list(&AuditFilter {
            action_prefix: q.action,
            actor: q.actor,
            hospital_id: q.hospital,
            target: q.target,
            limit: q.limit,
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if q.format.as_deref() == Some("fhir") {
        let entry: Vec<_> = entries
            .iter()
            .map(|e| json!({ "resource": e.to_fhir() }))
            .collect();
        return Ok(Json(
            json!({ "resourceType": "Bundle", "type": "collection", "total": entry.len(), "entry": entry }),
        ));
    }
    Ok(Json(json!({ "entries": entries })))
}

async fn audit_verify(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    require_role(&p, &[Role::Reviewer, Role::Operator])?;
    let report = rt
        .governance
        .verify_audit()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(json!(report)))
}

/// The signed checkpoints, in the export format, to store elsewhere.
async fn audit_checkpoints(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    require_role(&p, &[Role::Reviewer, Role::Operator])?;
    let export = rt
        .governance
        .export_checkpoints()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(export))
}

/// Sign a checkpoint of the chain's head now (on demand); refused with 409
/// when the entries since the last checkpoint do not verify.
async fn audit_checkpoint_now(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    require_role(&p, &[Role::Reviewer, Role::Operator])?;
    match rt.governance.checkpoint_audit().await {
        Ok(checkpoint) => Ok(Json(json!(checkpoint))),
        Err(e @ crate::audit::AuditError::Tampered(_)) => Err(ApiError::Conflict(e.to_string())),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}
