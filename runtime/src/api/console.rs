//! The web consoles (`admin-ui/console.*`, served under `/console/`), the
//! sandboxed frames in which they show a plugin's own pages, and the small
//! read APIs only the consoles need. See `docs/consoles.md` and
//! `docs/adr/0011-console-plugin-frames.md`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};

use super::extract::{Json, Path};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::Authenticated;
use super::governance::require_role;
use super::plugin_route::{Target, call_as, own_host, pinned_csp};
use crate::Runtime;
use crate::governance::registry::{PluginVersion, VersionState};
use crate::identity::{Principal, Role};
use crate::manifest::Manifest;

/// The public OAuth client the consoles log in with (PKCE, no secret).
pub const CLIENT_ID: &str = "vtelehealth-console";
/// Audience of plugin-frame tickets: never the API's, so a ticket is no
/// bearer token.
const FRAME_AUDIENCE: &str = "vtelehealth-plugin-frame";
/// How long a plugin frame's ticket lasts.
const FRAME_TTL_SECS: i64 = 600;
/// The sandbox every plugin frame response gets: scripts and forms run, but
/// in an opaque origin, so they cannot read the console's storage or token
/// (and [`pinned_csp`] keeps what they send on the frame's own prefix).
const FRAME_CSP: &str = "sandbox allow-scripts allow-forms allow-popups; frame-ancestors 'self'";
/// The console page's own policy: only its own scripts, styles and frames.
const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const CONSOLE_HTML: &str = include_str!("../../../admin-ui/console.html");
const CONSOLE_JS: &str = include_str!("../../../admin-ui/console.js");
const I18N_JS: &str = include_str!("../../../admin-ui/i18n.js");
const CONSOLE_CSS: &str = include_str!("../../../admin-ui/console.css");

/// The console pages, plugin frames and console read APIs.
pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(page))
        .route("/console/callback", get(page))
        .route("/console/console.js", get(|| async { script(CONSOLE_JS) }))
        .route("/console/i18n.js", get(|| async { script(I18N_JS) }))
        .route("/console/console.css", get(stylesheet))
        .route("/console/frame/{*rest}", any(frame))
        .route("/api/v1/console/plugin-frames", post(open_frame))
        .route("/api/v1/plugin-versions/{id}/changes", get(changes))
        .route(
            "/api/v1/hospitals/{hospital}/plugin-usage",
            get(hospital_usage),
        )
        .route("/api/v1/vendor/activations", get(vendor_activations))
        .route("/api/v1/me/payments", get(my_payments))
        .route("/api/v1/network", get(network))
        .route("/api/v1/me/plugin-pages", get(my_plugin_pages))
        .route("/api/v1/plugin-versions/{id}/pages", get(version_pages))
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONSOLE_CSP),
            // The callback URL carries an authorization code.
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        CONSOLE_HTML,
    )
}

fn script(body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CONSOLE_CSS,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrameRequest {
    hospital: String,
    plugin: String,
}

/// A short-lived ticket to show a plugin's pages in a sandboxed frame, for
/// the people who may call that plugin at that hospital.
async fn open_frame(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Json(body): Json<FrameRequest>,
) -> Result<Json<Value>, ApiError> {
    let staff = p.hospital_id.as_deref() == Some(body.hospital.as_str())
        && (p.has_role(Role::Practitioner) || p.has_role(Role::HospitalAdmin));
    if rt.hospitals.get(&body.hospital).is_none() {
        return Err(ApiError::NotFound(format!(
            "unknown hospital `{}`",
            body.hospital
        )));
    }
    crate::directory::validate_id(&body.plugin)
        .map_err(|e| ApiError::BadRequest(format!("plugin: {e}")))?;
    // A reviewed network plugin (e.g. teleconsult at the upper hospital)
    // also serves other hospitals' practitioners, as its routes do.
    let network = p.has_role(Role::Practitioner)
        && p.hospital_id.is_some()
        && matches!(
            rt.governance.resolve(&body.hospital, &body.plugin).await,
            Ok(crate::governance::service::Resolution::Runnable(v)) if v.manifest.network
        );
    if !staff && !network && !p.has_role(Role::Citizen) {
        return Err(ApiError::Forbidden(
            "plugin pages open for their hospital's practitioners and admins, citizens, and for a network plugin every hospital's practitioners".into(),
        ));
    }
    // The ticket travels in the frame's URL, which the plugin's page can
    // read: the person's name and ID numbers go in sealed with the master
    // key, not in clear.
    let mut public = p.clone();
    let private = json!({ "name": public.name, "national_id": public.national_id, "health_id": public.health_id });
    public.name = String::new();
    public.national_id = None;
    public.health_id = None;
    let sealed = rt
        .governance
        .master()
        .seal(FRAME_AUDIENCE, private.to_string().as_bytes())
        .map_err(|e| ApiError::Internal(format!("sealing a frame ticket: {e}")))?;
    let ticket = rt.identity.issue_ticket(
        &public,
        FRAME_AUDIENCE,
        json!({
            "hospital": body.hospital, "plugin": body.plugin,
            "sealed": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed),
        }),
        FRAME_TTL_SECS,
    )?;
    Ok(Json(json!({
        "url": format!("/console/frame/{ticket}/"),
        "expires_in": FRAME_TTL_SECS,
    })))
}

/// The ticket's principal with the name and ID numbers sealed in it.
fn unseal(rt: &Runtime, mut p: Principal, extra: &Value) -> Result<Principal, String> {
    let sealed = extra["sealed"]
        .as_str()
        .ok_or("a frame ticket without its sealed part")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|e| e.to_string())?;
    let plain = rt
        .governance
        .master()
        .open(FRAME_AUDIENCE, &bytes)
        .map_err(|e| e.to_string())?;
    let private: Value = serde_json::from_slice(&plain).map_err(|e| e.to_string())?;
    p.name = private["name"].as_str().unwrap_or_default().to_owned();
    p.national_id = private["national_id"].as_str().map(str::to_owned);
    p.health_id = private["health_id"].as_str().map(str::to_owned);
    Ok(p)
}

/// The one (hospital, plugin) a frame ticket opens: both must be named.
fn binding(extra: &Value) -> Result<(String, String), String> {
    let id = |key: &str| {
        extra[key]
            .as_str()
            .filter(|v| crate::directory::validate_id(v).is_ok())
            .map(str::to_owned)
            .ok_or_else(|| format!("a frame ticket without its `{key}`"))
    };
    Ok((id("hospital")?, id("plugin")?))
}

/// Whether an `Origin` header names this server itself.
fn is_own_origin(origin: &str, host: Option<&str>) -> bool {
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    authority.is_some() && authority == host
}

/// `/console/frame/{ticket}/{path}`: the plugin's `path`, called for the
/// ticket's principal, answered inside a CSP sandbox that lets the page
/// send data only to this frame's own prefix (its own plugin's routes).
async fn frame(State(rt): State<Arc<Runtime>>, req: Request) -> Response {
    let raw = req.uri().path().to_owned();
    let rest = raw.strip_prefix("/console/frame/").unwrap_or_default();
    let (ticket, path) = match rest.split_once('/') {
        Some((t, p)) => (t, format!("/{p}")),
        None => (rest, "/".to_owned()),
    };
    let host = own_host(&req).map(str::to_owned);
    // The frame's own page is a sandboxed document: its fetches and form
    // posts say `Origin: null`; navigations carry no origin.
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("<not text>").to_owned());
    let from_frame = origin.as_deref() == Some("null");
    let validated = match rt.identity.validate_ticket(ticket, FRAME_AUDIENCE).await {
        Ok((principal, extra)) => {
            binding(&extra).and_then(|b| unseal(&rt, principal, &extra).map(|p| (p, b)))
        }
        Err(e) => Err(e.to_string()),
    };
    let mut response = match validated {
        // Another site's page holding a leaked ticket cannot use it from
        // a browser: only the frame itself and the console's origin can.
        Ok(_) if origin
            .as_deref()
            .is_some_and(|o| o != "null" && !is_own_origin(o, host.as_deref())) =>
        {
            ApiError::Forbidden(
                "a plugin frame answers its own page and the console only, not other sites".into(),
            )
            .into_response()
        }
        // The page's own `fetch` with a JSON body asks first.
        Ok(_)
            if from_frame
                && req.method() == axum::http::Method::OPTIONS
                && req
                    .headers()
                    .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) =>
        {
            (
                StatusCode::NO_CONTENT,
                [
                    (
                        header::ACCESS_CONTROL_ALLOW_METHODS,
                        "GET, HEAD, POST, PUT, PATCH, DELETE",
                    ),
                    (header::ACCESS_CONTROL_ALLOW_HEADERS, "content-type"),
                    (header::ACCESS_CONTROL_MAX_AGE, "600"),
                ],
            )
                .into_response()
        }
        Ok((principal, (hospital, plugin))) => match Target::new(&hospital, &plugin, &path) {
            Ok(target) => call_as(&rt, req, target, Some(principal))
                .await
                .unwrap_or_else(IntoResponse::into_response),
            Err(e) => e.into_response(),
        },
        Err(_) => (
            StatusCode::UNAUTHORIZED,
            Html(
                "<!doctype html><html lang=\"vi\"><meta charset=\"utf-8\"><title>VTelehealth</title>\
                 <p>Phiên của trang này đã hết hạn. Hãy mở lại mô-đun từ bảng điều khiển.</p>\
                 <p lang=\"en\">This page's session has expired. Open the module again from the console.</p>",
            ),
        )
            .into_response(),
    };
    // The frame's own prefix, when the ticket is plain JWT text.
    let jwt_text = !ticket.is_empty()
        && ticket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let prefix = jwt_text.then(|| format!("/console/frame/{ticket}/"));
    let policy = format!(
        "{FRAME_CSP}; {}",
        pinned_csp(host.as_deref(), prefix.as_deref())
    );
    let headers = response.headers_mut();
    // Appended, not replaced: a plugin's own policy still applies on top.
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.append(header::CONTENT_SECURITY_POLICY, value);
    }
    if from_frame {
        // The page's own fetches may read their answers; no credentials
        // ride along (the ticket is in the path).
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("null"),
        );
    }
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        axum::http::HeaderName::from_static("x-dns-prefetch-control"),
        HeaderValue::from_static("off"),
    );
    // Cookies would outlive the sandbox on the console's own host.
    headers.remove(header::SET_COOKIE);
    response
}

/// Whether `p` may read version `v` (the rule of `GET /plugin-versions/{id}`).
fn can_read(p: &Principal, v: &PluginVersion) -> bool {
    p.has_role(Role::Reviewer)
        || p.has_role(Role::Operator)
        || (p.has_role(Role::VendorUser) && p.vendor_id.as_deref() == Some(v.vendor_id.as_str()))
        || ((p.has_role(Role::HospitalAdmin) || p.has_role(Role::Practitioner))
            && v.state == VersionState::Approved)
}

/// What changed since the previous version of the same plugin that the
/// caller may read: capabilities requested, manifest fields, component.
async fn changes(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let v = rt.governance.version(&id).await?;
    if !can_read(&p, &v) {
        return Err(ApiError::NotFound(format!("no plugin version `{id}`")));
    }
    let all = rt
        .governance
        .registry
        .list_versions(
            Some(&v.vendor_id),
            None,
            crate::governance::service::requested_strings,
        )
        .await?;
    let previous = all
        .iter()
        .filter(|o| o.plugin_id == v.plugin_id && o.id != v.id && can_read(&p, o))
        .filter(|o| (o.submitted_at, o.id.as_str()) < (v.submitted_at, v.id.as_str()))
        .max_by(|a, b| (a.submitted_at, &a.id).cmp(&(b.submitted_at, &b.id)));
    let Some(prev) = previous else {
        return Ok(Json(json!({ "version": v.version, "previous": null })));
    };
    let added: Vec<_> = v
        .requested
        .iter()
        .filter(|c| !prev.requested.contains(c))
        .collect();
    let removed: Vec<_> = prev
        .requested
        .iter()
        .filter(|c| !v.requested.contains(c))
        .collect();
    let fields = manifest_fields(&prev.manifest);
    let now = manifest_fields(&v.manifest);
    let mut changed = Vec::new();
    for key in [
        "kind",
        "name",
        "description",
        "routes",
        "pages",
        "events",
        "config",
        "network",
    ] {
        let (before, after) = (&fields[key], &now[key]);
        if before != after {
            changed.push(json!({ "field": key, "before": before, "after": after }));
        }
    }
    Ok(Json(json!({
        "version": v.version,
        "previous": { "id": prev.id, "version": prev.version, "state": prev.state },
        "capabilities_added": added,
        "capabilities_removed": removed,
        "manifest_changes": changed,
        "component_changed": prev.component_digest != v.component_digest,
    })))
}

/// The pages a version declares, with its module name: for the review
/// view, to whoever may read the version.
async fn version_pages(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let v = rt.governance.version(&id).await?;
    if !can_read(&p, &v) {
        return Err(ApiError::NotFound(format!("no plugin version `{id}`")));
    }
    let manifest = Manifest::parse_structure(&v.manifest).ok();
    Ok(Json(json!({
        "name": manifest.as_ref().and_then(|m| m.name.as_ref()),
        "pages": manifest.as_ref().map(|m| m.pages.as_slice()).unwrap_or_default(),
    })))
}

/// The modules active at the caller's hospital, by name, each with the
/// pages the caller's roles may see (possibly none): for practitioners
/// and hospital admins; anyone else has none.
async fn my_plugin_pages(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    let staff = p.has_role(Role::Practitioner) || p.has_role(Role::HospitalAdmin);
    let Some(hospital) = p.hospital_id.clone().filter(|_| staff) else {
        return Ok(Json(json!({ "hospital": null, "modules": [] })));
    };
    let roles: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
    let mut modules = Vec::new();
    for a in rt
        .governance
        .registry
        .activations(Some(&hospital), None)
        .await?
    {
        if a.state != "active" {
            continue;
        }
        let Ok(crate::governance::service::Resolution::Runnable(plugin)) =
            rt.governance.resolve(&hospital, &a.plugin_id).await
        else {
            continue;
        };
        let m = &plugin.manifest;
        let pages: Vec<_> = m
            .pages
            .iter()
            .filter(|page| page.roles.iter().any(|r| roles.contains(&r.as_str())))
            .map(|page| json!({ "path": page.path, "title": page.title }))
            .collect();
        // A manifest without a name: the module's id in both languages.
        let name = m
            .name
            .clone()
            .unwrap_or_else(|| crate::manifest::Description {
                vi: m.id.clone(),
                en: m.id.clone(),
            });
        modules.push(json!({
            "plugin": m.id, "version": m.version, "name": name,
            "description": m.description, "pages": pages,
            // Pages for other roles only: nothing to open, no path to type.
            "declares_pages": !m.pages.is_empty(),
        }));
    }
    Ok(Json(json!({
        "hospital": hospital,
        "hospital_name": rt.hospitals.get(&hospital).map(|h| h.name),
        "modules": modules,
    })))
}

fn manifest_fields(text: &str) -> Value {
    Manifest::parse_structure(text)
        .ok()
        .and_then(|m| serde_json::to_value(m).ok())
        .unwrap_or(Value::Null)
}

/// Calls and errors of each plugin at a hospital, since this node started:
/// its admin, reviewers and operators.
async fn hospital_usage(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(hospital): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let own_admin =
        p.has_role(Role::HospitalAdmin) && p.hospital_id.as_deref() == Some(hospital.as_str());
    if !own_admin {
        require_role(&p, &[Role::Reviewer, Role::Operator]).map_err(|_| {
            ApiError::Forbidden(format!(
                "the usage of `{hospital}` is visible to its admin, reviewers and operators"
            ))
        })?;
    }
    Ok(Json(
        json!({ "usage": rt.metrics.usage(Some(&hospital)), "since": "node start" }),
    ))
}

/// Where the caller's vendor's plugins are active, with their usage since
/// this node started; hospitals' configurations are not shown.
async fn vendor_activations(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    require_role(&p, &[Role::VendorUser])?;
    let vendor = p
        .vendor_id
        .clone()
        .ok_or_else(|| ApiError::Forbidden("the caller belongs to no vendor".into()))?;
    let versions = rt
        .governance
        .registry
        .list_versions(
            Some(&vendor),
            None,
            crate::governance::service::requested_strings,
        )
        .await?;
    let usage = rt.metrics.usage(None);
    let mut out = Vec::new();
    for a in rt.governance.registry.activations(None, None).await? {
        if !versions.iter().any(|v| v.id == a.version_id) {
            continue;
        }
        let u = usage
            .iter()
            .find(|u| u.hospital == a.hospital_id && u.plugin == a.plugin_id);
        out.push(json!({
            "hospital": a.hospital_id,
            "hospital_name": rt.hospitals.get(&a.hospital_id).map(|h| h.name),
            "plugin": a.plugin_id, "version": a.version, "version_id": a.version_id,
            "state": a.state, "mandatory": a.mandatory, "activated_at": a.activated_at,
            "calls": u.map_or(0, |u| u.calls), "errors": u.map_or(0, |u| u.errors),
        }));
    }
    Ok(Json(json!({ "activations": out })))
}

/// A citizen's payments (intents whose payer is their subject), newest
/// first, with the module page of each order.
async fn my_payments(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    if !p.has_role(Role::Citizen) {
        return Err(ApiError::Forbidden(
            "only citizens read their own payments".into(),
        ));
    }
    let intents = rt
        .payments
        .of_payer(rt.identity.person(&p).as_str(), 200)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let payments: Vec<_> = intents
        .iter()
        .map(|i| {
            json!({
                "id": i.id, "hospital": i.hospital_id,
                "hospital_name": rt.hospitals.get(&i.hospital_id).map(|h| h.name),
                "plugin": i.plugin_id, "amount": i.amount, "currency": i.currency,
                "purpose": i.purpose, "state": i.state, "captured": i.captured,
                "refunded": i.refunded, "order_path": i.return_path, "created_at": i.created_at,
            })
        })
        .collect();
    Ok(Json(json!({ "payments": payments })))
}

/// The network at a glance, for reviewers and operators: every hospital
/// with its tier, province and active modules.
async fn network(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    require_role(&p, &[Role::Reviewer, Role::Operator])?;
    let activations = rt.governance.registry.activations(None, None).await?;
    let hospitals: Vec<_> = rt
        .hospitals
        .list()
        .into_iter()
        .map(|h| {
            let active: Vec<_> = activations
                .iter()
                .filter(|a| a.hospital_id == h.id && a.state == "active")
                .map(|a| json!({ "plugin": a.plugin_id, "version": a.version, "mandatory": a.mandatory }))
                .collect();
            json!({ "id": h.id, "name": h.name, "tier": h.tier, "province": h.province, "active": active })
        })
        .collect();
    Ok(Json(json!({ "hospitals": hospitals })))
}
