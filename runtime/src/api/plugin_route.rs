//! `/hospitals/{hospital}/plugins/{plugin}/{*path}`: a call into a plugin.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::{ApiError, RequestId};
use crate::Runtime;
use crate::audit::AuditEvent;
use crate::bindings::{Header, Request as PluginRequest};
use crate::governance::service::Resolution;
use crate::identity::{Principal, Role};
use crate::manifest::{Manifest, RouteMatch};
use crate::metrics::{CallLabels, PluginLabels};
use crate::plugins::{LoadedPlugin, PluginEntry};
use crate::sandbox::{CallBuilder, CallError};
use serde_json::json;

/// Headers never forwarded to a plugin: credentials stay with the host.
const WITHHELD_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];
/// Headers a plugin may not set: the host frames the response.
const HOST_HEADERS: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "x-request-id",
];

pub async fn call(State(rt): State<Arc<Runtime>>, req: Request) -> Response {
    let host = own_host(&req).map(str::to_owned);
    let prefix = plugin_prefix(req.uri().path());
    let mut response = match Target::parse(req.uri().path()) {
        Ok(target) => {
            // Bearer token present: it must be valid; absent: anonymous.
            match super::principal_from_headers(&rt, req.headers()).await {
                Ok(principal) => call_as(&rt, req, target, principal).await,
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
    .unwrap_or_else(IntoResponse::into_response);
    // A plugin's page opened directly on the platform's address runs in an
    // opaque origin, so its script can never read the consoles' session
    // (ADR 0011), and may send data only to its own plugin's routes.
    // Appended: a plugin's own policy applies on top, and it cannot remove
    // this one.
    let policy = format!(
        "{PLUGIN_CSP}; {}",
        pinned_csp(host.as_deref(), prefix.as_deref())
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.append(axum::http::header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("x-dns-prefetch-control"),
        HeaderValue::from_static("off"),
    );
    // Cookies set on the platform's host would outlive the sandbox.
    headers.remove(axum::http::header::SET_COOKIE);
    response
}

/// The sandbox every direct plugin response gets: scripts, forms and
/// pop-ups run, without the platform's origin.
pub const PLUGIN_CSP: &str = "sandbox allow-scripts allow-forms allow-popups";

/// Where a plugin page may load from and send to: only `prefix` (its own
/// plugin's routes) on this host, and nowhere without both. Inline scripts
/// and styles run (the page is the plugin's own); what the policy guards is
/// where data can go: fetch, beacons, images, fonts, media, forms, frames,
/// workers and `<base>` all stay on the prefix.
pub(super) fn pinned_csp(host: Option<&str>, prefix: Option<&str>) -> String {
    let src = match (host, prefix) {
        (Some(h), Some(p)) => format!("http://{h}{p} https://{h}{p}"),
        _ => "'none'".to_owned(),
    };
    format!(
        "default-src 'none'; script-src {src} 'unsafe-inline'; style-src {src} 'unsafe-inline'; \
         img-src {src} data: blob:; font-src {src} data:; media-src {src} blob:; connect-src {src}; \
         form-action {src}; frame-src 'none'; worker-src 'none'; object-src 'none'; \
         manifest-src 'none'; base-uri 'none'"
    )
}

/// This server's host (and port) as the client named it, when it is a
/// plain host name or address (it goes into a policy).
pub(super) fn own_host(req: &Request) -> Option<&str> {
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    let plain = (1..=255).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    plain.then_some(host)
}

/// `/hospitals/{h}/plugins/{p}/` of a plugin path, when both are plain ids.
fn plugin_prefix(raw_path: &str) -> Option<String> {
    let rest = raw_path.strip_prefix("/hospitals/")?;
    let mut segments = rest.splitn(4, '/');
    let (hospital, keyword, plugin) = (segments.next()?, segments.next()?, segments.next()?);
    (keyword == "plugins"
        && crate::directory::validate_id(hospital).is_ok()
        && crate::directory::validate_id(plugin).is_ok())
    .then(|| format!("/hospitals/{hospital}/plugins/{plugin}/"))
}

/// A call into `target` for `principal`, with every check of a plugin
/// route (the console's plugin frames pass the principal of their ticket).
pub(super) async fn call_as(
    rt: &Arc<Runtime>,
    req: Request,
    target: Target,
    principal: Option<Principal>,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let hospital = rt
        .hospitals
        .get(&target.hospital)
        .ok_or_else(|| ApiError::NotFound(format!("unknown hospital `{}`", target.hospital)))?;
    // A suspended facility serves nothing (docs/operations.md).
    if hospital.status == crate::directory::Status::Suspended {
        return Err(super::auth::facility_suspended(rt, &hospital.id));
    }
    // Development plugins (dev mode only) serve anyone, unless a reviewed
    // version of the same id is runnable there. Otherwise the caller must
    // belong to the hospital before learning anything about its modules,
    // even whether one is activated or suspended.
    let plugin = match rt.plugins.get(&target.plugin) {
        Some(entry) => match rt.governance.resolve(&hospital.id, &target.plugin).await {
            Ok(Resolution::Runnable(plugin)) => {
                let network_call = plugin.manifest.network
                    && principal
                        .as_ref()
                        .is_some_and(|p| p.has_role(Role::Practitioner) && p.hospital_id.is_some());
                if !network_call {
                    authorize_call(rt, principal.as_ref(), &hospital.id, &target.plugin).await?;
                }
                plugin
            }
            _ => dev_plugin(&entry, &target.plugin)?,
        },
        None => {
            let resolution = rt.governance.resolve(&hospital.id, &target.plugin).await;
            // A network plugin (reviewed as such) also serves other
            // hospitals' practitioners; everyone else must belong here first.
            let network_call = matches!(&resolution, Ok(Resolution::Runnable(p)) if p.manifest.network)
                && principal
                    .as_ref()
                    .is_some_and(|p| p.has_role(Role::Practitioner) && p.hospital_id.is_some());
            if !network_call {
                authorize_call(rt, principal.as_ref(), &hospital.id, &target.plugin).await?;
            }
            match resolution {
                Ok(Resolution::Runnable(plugin)) => plugin,
                Ok(Resolution::Suspended(reason)) => return Err(ApiError::Suspended(reason)),
                Ok(Resolution::NotActivated) => {
                    return Err(ApiError::NotFound(format!(
                        "plugin `{}` is not activated at hospital `{}`",
                        target.plugin, hospital.id
                    )));
                }
                Err(e) => return Err(ApiError::Internal(e.to_string())),
            }
        }
    };
    check_declared_route(
        &plugin.manifest,
        parts.method.as_str(),
        &target,
        principal.as_ref(),
    )?;
    let body = read_body(&parts.headers, body, rt.limits.max_request_bytes).await?;

    let request = PluginRequest {
        method: parts.method.as_str().to_owned(),
        path: target.path,
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: forwarded_headers(&parts.headers),
        body: body.to_vec(),
    };
    let hospital_id = hospital.id.clone();
    let ctx_hospital = hospital_id.clone();
    let call = CallBuilder::new(&plugin, hospital, rt.directory(), &rt.kv, &rt.limits)
        .principal(principal)
        .request_id(request_id)
        .video(Some(rt.video.clone()));
    let span = tracing::info_span!("plugin_call", plugin = %plugin.manifest.id, version = %plugin.manifest.version,
        hospital = %hospital_id, outcome = tracing::field::Empty);
    let started = call.started();

    // Wait for a free instance slot, but not past the call's deadline.
    let slot =
        tokio::time::timeout(rt.limits.deadline, rt.call_slots.clone().acquire_owned()).await;
    let result = match slot {
        Ok(Ok(_permit)) => call.http(request).instrument(span.clone()).await,
        _ => Err(CallError::Busy(rt.limits.max_concurrent_calls)),
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    span.record("outcome", outcome);
    // A 5xx answer from the plugin counts as an error too.
    let succeeded = matches!(&result, Ok(r) if r.status < 500);
    rt.metrics
        .record_call(&hospital_id, &plugin.manifest.id, succeeded);
    rt.metrics
        .plugin_calls
        .get_or_create(&CallLabels {
            plugin: plugin.manifest.id.clone(),
            hospital: hospital_id,
            outcome: outcome.to_owned(),
        })
        .inc();
    rt.metrics
        .plugin_call_seconds
        .get_or_create(&PluginLabels {
            plugin: plugin.manifest.id.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(response) => into_http(response),
        Err(e) => {
            tracing::warn!(plugin = %plugin.manifest.id, hospital = %ctx_hospital, code = e.code(),
                error = %e, "plugin call failed");
            Err(e.into())
        }
    }
}

/// A development plugin (loaded from a directory, unreviewed).
fn dev_plugin(entry: &PluginEntry, plugin: &str) -> Result<Arc<LoadedPlugin>, ApiError> {
    match entry {
        PluginEntry::Failed { reason } => Err(ApiError::Unavailable(format!(
            "plugin `{plugin}` is not available: {reason}"
        ))),
        PluginEntry::Ready(p) => Ok(p.clone()),
    }
}

/// Reviewed plugins serve authenticated callers of their hospital, and
/// citizens; any other hospital's staff is refused, and the refusal audited.
async fn authorize_call(
    rt: &Runtime,
    principal: Option<&Principal>,
    hospital: &str,
    plugin: &str,
) -> Result<(), ApiError> {
    let Some(p) = principal else {
        return Err(ApiError::Unauthorized(format!(
            "plugin `{plugin}` at `{hospital}` requires a bearer token"
        )));
    };
    if p.has_role(Role::Citizen) || p.hospital_id.as_deref() == Some(hospital) {
        return Ok(());
    }
    rt.governance
        .audit
        .append_refusal(AuditEvent {
            actor: rt.identity.person(p).into_string(),
            action: "access.denied".into(),
            target: format!("plugin:{plugin}"),
            hospital_id: Some(hospital.to_owned()),
            details: json!({ "caller_hospital": p.hospital_id, "reason": "cross-hospital plugin call" }),
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Err(ApiError::Forbidden(format!(
        "`{plugin}` at `{hospital}` serves that hospital's staff and citizens only"
    )))
}

/// The manifest's routes are the plugin's whole HTTP surface, as the
/// reviewer approved it: an undeclared route is 404 and a caller with none
/// of the route's roles 403, before the plugin runs.
fn check_declared_route(
    manifest: &Manifest,
    method: &str,
    target: &Target,
    principal: Option<&Principal>,
) -> Result<(), ApiError> {
    let plugin = &manifest.id;
    let path = cut(&target.path, 200);
    let route = match manifest.route_for(method, &target.path) {
        RouteMatch::Declared(route) => route,
        RouteMatch::MethodNotDeclared(methods) => {
            return Err(ApiError::NotFound(format!(
                "plugin `{plugin}` declares `{path}` for {} only, not {method}",
                methods.join(", ")
            )));
        }
        RouteMatch::NotDeclared => {
            return Err(ApiError::NotFound(format!(
                "plugin `{plugin}` declares no route `{path}`"
            )));
        }
    };
    if route.roles.is_empty() {
        return Ok(());
    }
    let Some(p) = principal else {
        return Err(ApiError::Unauthorized(format!(
            "`{}` of plugin `{plugin}` requires a bearer token",
            route.path
        )));
    };
    if p.roles
        .iter()
        .any(|r| route.roles.iter().any(|allowed| allowed == r.as_str()))
    {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "{method} `{}` of plugin `{plugin}` serves the roles {} only",
        route.path,
        route.roles.join(", ")
    )))
}

/// At most `max` bytes of `s`, on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The parts of a plugin URL.
#[derive(Debug, PartialEq)]
pub(super) struct Target {
    hospital: String,
    plugin: String,
    /// Path below the plugin's mount point, still percent-encoded.
    path: String,
}

impl Target {
    /// The target of a plugin path `hospital`/`plugin` with `path` (from
    /// `/`, still percent-encoded).
    pub(super) fn new(hospital: &str, plugin: &str, path: &str) -> Result<Self, ApiError> {
        percent_decode_utf8(path)?;
        Ok(Self {
            hospital: hospital.to_owned(),
            plugin: plugin.to_owned(),
            path: if path.starts_with('/') {
                path.to_owned()
            } else {
                format!("/{path}")
            },
        })
    }

    pub(super) fn parse(raw_path: &str) -> Result<Self, ApiError> {
        let rest = raw_path.strip_prefix("/hospitals/").unwrap_or(raw_path);
        let mut segments = rest.splitn(4, '/');
        let hospital = segments.next().unwrap_or_default();
        let keyword = segments.next().unwrap_or_default();
        let plugin = segments.next().unwrap_or_default();
        if hospital.is_empty() || keyword != "plugins" || plugin.is_empty() {
            return Err(ApiError::NotFound(
                "plugin routes are /hospitals/{hospital}/plugins/{plugin}/{path}".into(),
            ));
        }
        let path = format!("/{}", segments.next().unwrap_or_default());
        percent_decode_utf8(&path)?;
        Ok(Self {
            hospital: percent_decode_utf8(hospital)?,
            plugin: percent_decode_utf8(plugin)?,
            path,
        })
    }
}

/// Decode `%XX` escapes; the result must be UTF-8.
fn percent_decode_utf8(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    ApiError::BadRequest("malformed percent-escape in the path".into())
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::BadRequest("the path is not valid UTF-8".into()))
}

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::BadRequest(format!("could not read the request body: {e}"))
        }
    })
}

fn forwarded_headers(headers: &HeaderMap) -> Vec<Header> {
    headers
        .iter()
        .filter(|(name, _)| !WITHHELD_HEADERS.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            Some(Header {
                name: name.as_str().to_owned(),
                value: value.to_str().ok()?.to_owned(),
            })
        })
        .collect()
}

fn into_http(response: crate::bindings::Response) -> Result<Response, ApiError> {
    let invalid =
        |what: String| ApiError::Call(CallError::Trap(format!("the plugin returned {what}")));
    let status = StatusCode::from_u16(response.status)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .ok_or_else(|| invalid(format!("an invalid HTTP status {}", response.status)))?;
    let mut http = Response::new(Body::from(response.body));
    *http.status_mut() = status;
    for Header { name, value } in response.headers {
        let lower = name.to_ascii_lowercase();
        if HOST_HEADERS.contains(&lower.as_str()) {
            continue;
        }
        let name = HeaderName::from_bytes(lower.as_bytes())
            .map_err(|_| invalid(format!("an invalid header name `{name}`")))?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| invalid(format!("an invalid value for header `{name}`")))?;
        http.headers_mut().append(name, value);
    }
    Ok(http)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plugin_targets() {
        let t = Target::parse("/hospitals/bach-mai/plugins/hello/a/b%20c").unwrap();
        assert_eq!(
            (t.hospital.as_str(), t.plugin.as_str(), t.path.as_str()),
            ("bach-mai", "hello", "/a/b%20c")
        );
        let t = Target::parse("/hospitals/bach-mai/plugins/hello").unwrap();
        assert_eq!(t.path, "/");
        assert!(matches!(
            Target::parse("/hospitals/x/other/hello"),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            Target::parse("/hospitals/x/plugins/h/%FF%FE"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            Target::parse("/hospitals/x/plugins/h/%G1"),
            Err(ApiError::BadRequest(_))
        ));
    }
}
