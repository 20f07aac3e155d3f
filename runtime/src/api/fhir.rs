//! `/fhir/R4`: the records store over the FHIR R4 RESTful API (JSON only).
//! Errors are OperationOutcome resources; results are resources or Bundles,
//! all as `application/fhir+json`. Staff of a hospital (practitioner,
//! hospital admin, service) read and write that hospital's records.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::ApiError;
use super::principal_from_headers;
use crate::Runtime;
use crate::audit::rfc3339;
use crate::identity::Role;
use crate::records::validate::parse_body;
use crate::records::{
    Actor, ActorKind, BHYT_SYSTEM, CCCD_SYSTEM, Purpose, RecordError, ResourceType, SearchQuery,
    Stored,
};

/// The FHIR content type.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// The `/fhir/R4` routes.
pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/fhir/R4", axum::routing::post(transaction))
        .route("/fhir/R4/metadata", get(metadata))
        .route("/fhir/R4/{type}", get(search).post(create))
        .route("/fhir/R4/{type}/{id}", get(read).put(update))
        .route("/fhir/R4/{type}/{id}/_history", get(history))
        .route("/fhir/R4/{type}/{id}/_history/{vid}", get(vread))
}

/// An error as an OperationOutcome.
#[derive(Debug)]
pub struct FhirError {
    status: StatusCode,
    /// The FHIR issue type.
    code: &'static str,
    message: String,
    /// The message in Vietnamese when it is more exact than the issue code.
    message_vi: Option<String>,
    expression: Option<String>,
}

impl FhirError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            message_vi: None,
            expression: None,
        }
    }

    /// An OperationOutcome for a bare status and text, as the framework
    /// answers them (an unknown route, a wrong method, a body too large).
    pub fn from_status(status: StatusCode, message: String) -> Self {
        let code = match status {
            StatusCode::UNAUTHORIZED => "login",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::UNSUPPORTED_MEDIA_TYPE => "not-supported",
            StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "too-costly",
            StatusCode::TOO_MANY_REQUESTS => "throttled",
            StatusCode::UNPROCESSABLE_ENTITY => "processing",
            s if s.is_server_error() => "exception",
            _ => "invalid",
        };
        let message = if status.is_server_error() {
            "internal error".to_owned()
        } else if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "the request body exceeds the {} byte limit",
                super::DEFAULT_BODY_LIMIT
            )
        } else {
            message
        };
        Self::new(status, code, message)
    }
}

/// What an issue code means, in Vietnamese.
fn issue_vi(code: &str) -> &'static str {
    match code {
        "structure" => "Nội dung không phải JSON FHIR hợp lệ.",
        "required" => "Thiếu trường bắt buộc.",
        "not-supported" => "Không được hỗ trợ.",
        "not-found" => "Không tìm thấy.",
        "conflict" => "Xung đột: phiên bản hoặc trạng thái đã thay đổi.",
        "forbidden" => "Không có quyền truy cập.",
        "login" => "Cần đăng nhập: thiếu hoặc sai mã truy cập.",
        "too-costly" => "Nội dung gửi lên quá lớn.",
        "too-long" => "Nội dung quá dài.",
        "throttled" => "Quá nhiều yêu cầu; hãy thử lại sau.",
        "exception" => "Lỗi hệ thống.",
        _ => "Dữ liệu không hợp lệ.",
    }
}

impl From<RecordError> for FhirError {
    fn from(e: RecordError) -> Self {
        let message = e.to_string();
        match e {
            RecordError::InvalidJson(_) => Self::new(StatusCode::BAD_REQUEST, "structure", message),
            RecordError::UnknownType(_) => {
                Self::new(StatusCode::BAD_REQUEST, "not-supported", message)
            }
            RecordError::Invalid { path, .. } => {
                let code = if message.ends_with("is required") {
                    "required"
                } else {
                    "invalid"
                };
                let mut err = Self::new(StatusCode::BAD_REQUEST, code, message);
                err.expression = Some(path);
                err
            }
            RecordError::TooLong(e) => {
                let mut err = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "too-long", message);
                err.message_vi = Some(e.message_vi());
                err.expression = Some(e.field);
                err
            }
            RecordError::UnresolvedReference(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "not-found", message)
            }
            RecordError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not-found", message),
            RecordError::VersionConflict { .. } => {
                Self::new(StatusCode::PRECONDITION_FAILED, "conflict", message)
            }
            RecordError::Forbidden(_) => Self::new(StatusCode::FORBIDDEN, "forbidden", message),
            RecordError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            RecordError::BadSearch(_) => Self::new(StatusCode::BAD_REQUEST, "invalid", message),
            RecordError::Database(_) | RecordError::Audit(_) => {
                tracing::error!(detail = %message, "records error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "exception",
                    "internal error",
                )
            }
        }
    }
}

impl From<ApiError> for FhirError {
    fn from(e: ApiError) -> Self {
        let response = e.into_response();
        let status = response.status();
        let code = match status {
            StatusCode::UNAUTHORIZED => "login",
            StatusCode::FORBIDDEN => "forbidden",
            _ => "exception",
        };
        let message = match status {
            StatusCode::UNAUTHORIZED => "a valid bearer token is required",
            StatusCode::FORBIDDEN => "forbidden",
            _ => "internal error",
        };
        Self::new(status, code, message)
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let vi = self
            .message_vi
            .unwrap_or_else(|| issue_vi(self.code).to_owned());
        // The Vietnamese rides on FHIR's standard translation extension.
        let mut issue = json!({
            "severity": "error",
            "code": self.code,
            "diagnostics": self.message,
            "_diagnostics": { "extension": [{
                "url": "http://hl7.org/fhir/StructureDefinition/translation",
                "extension": [
                    { "url": "lang", "valueCode": "vi" },
                    { "url": "content", "valueString": vi },
                ],
            }] },
        });
        if let Some(e) = self.expression {
            issue["expression"] = json!([e]);
        }
        let mut response = fhir_json(
            self.status,
            &json!({ "resourceType": "OperationOutcome", "issue": [issue] }),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn fhir_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        body.to_string(),
    )
        .into_response()
}

/// The caller as records staff of a hospital.
async fn staff(rt: &Runtime, headers: &HeaderMap) -> Result<Actor, FhirError> {
    let p = principal_from_headers(rt, headers).await?.ok_or_else(|| {
        FhirError::new(
            StatusCode::UNAUTHORIZED,
            "login",
            "a bearer token is required",
        )
    })?;
    let staff_role = [Role::Practitioner, Role::HospitalAdmin, Role::Service]
        .iter()
        .any(|r| p.has_role(*r));
    match (&p.hospital_id, staff_role) {
        (Some(h), true) => {
            let mut actor = Actor::staff(rt.identity.person(&p).into_string(), h.clone());
            // Service clients are integrations: their own hospital only.
            if !p.has_role(Role::Practitioner) && !p.has_role(Role::HospitalAdmin) {
                actor.kind = ActorKind::System;
            }
            actor.name = Some(p.name);
            actor.purpose = purpose_of_use(headers)?;
            Ok(actor)
        }
        _ => Err(FhirError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "health records are open to a hospital's practitioners, admins and services only (citizen access comes with consent)",
        )),
    }
}

/// The purpose of use a request declares in `X-Purpose-Of-Use` (a name
/// such as `treatment` or an HL7 code such as `TREAT`); treatment when absent.
fn purpose_of_use(headers: &HeaderMap) -> Result<Purpose, FhirError> {
    match headers.get("x-purpose-of-use") {
        None => Ok(Purpose::Treatment),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                FhirError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "X-Purpose-Of-Use must be treatment (TREAT), payment (HPAYMT) or public-health (PUBHLTH)",
                )
            }),
    }
}

fn resource_type(name: &str) -> Result<ResourceType, FhirError> {
    name.parse::<ResourceType>().map_err(FhirError::from)
}

/// The base URL of the FHIR endpoint: the deployment's public URL.
fn base(rt: &Runtime) -> String {
    format!("{}/fhir/R4", rt.identity.issuer().trim_end_matches('/'))
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{version}\""))
        .unwrap_or(HeaderValue::from_static("W/\"0\""))
}

/// A resource response with its ETag and Last-Modified.
fn resource_response(status: StatusCode, s: &Stored) -> Response {
    let mut r = fhir_json(status, &s.resource);
    r.headers_mut().insert(header::ETAG, etag(s.version_id));
    if let Ok(v) = HeaderValue::from_str(&http_date(s.last_updated)) {
        r.headers_mut().insert(header::LAST_MODIFIED, v);
    }
    r
}

/// Milliseconds since the epoch as an HTTP date (RFC 9110 IMF-fixdate).
fn http_date(millis: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // `rfc3339` gives `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    let iso = rfc3339(millis);
    let day = DAYS[millis.div_euclid(86_400_000).rem_euclid(7) as usize];
    let month = iso[5..7]
        .parse::<usize>()
        .map_or("Jan", |m| MONTHS[(m + 11) % 12]);
    format!(
        "{day}, {} {month} {} {} GMT",
        &iso[8..10],
        &iso[0..4],
        &iso[11..19]
    )
}

fn check_content_type(headers: &HeaderMap) -> Result<(), FhirError> {
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => Ok(()),
        Some(ct) => {
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if mime == "application/fhir+json" || mime == "application/json" {
                Ok(())
            } else {
                Err(FhirError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "not-supported",
                    format!("content type `{ct}` is not supported; send application/fhir+json"),
                ))
            }
        }
    }
}

/// `If-Match: W/"3"` (or `"3"`, or `3`) as a version number.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, FhirError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or("").trim();
    let bare = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    bare.parse::<i64>().map(Some).map_err(|_| {
        FhirError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("If-Match `{text}` is not a version ETag such as W/\"1\""),
        )
    })
}

async fn metadata(State(rt): State<Arc<Runtime>>) -> Response {
    let interactions = json!([
        { "code": "read" }, { "code": "vread" }, { "code": "update" },
        { "code": "history-instance" }, { "code": "create" }, { "code": "search-type" }
    ]);
    let search_params = json!([
        { "name": "_id", "type": "token" },
        { "name": "patient", "type": "reference" },
        { "name": "subject", "type": "reference" },
        { "name": "identifier", "type": "token" },
        { "name": "code", "type": "token" },
        { "name": "date", "type": "date" },
        { "name": "_lastUpdated", "type": "date" },
        { "name": "_count", "type": "number" },
        { "name": "_offset", "type": "number" }
    ]);
    let resources: Vec<Value> = ResourceType::ALL
        .iter()
        .map(|t| {
            json!({
                "type": t.as_str(),
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": false,
                "conditionalCreate": false,
                "conditionalUpdate": false,
                "searchParam": search_params,
            })
        })
        .collect();
    fhir_json(
        StatusCode::OK,
        &json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-11-24",
            "kind": "instance",
            "software": { "name": "VTelehealth runtime", "version": env!("CARGO_PKG_VERSION") },
            "implementation": { "description": "VTelehealth health records", "url": base(&rt) },
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json", "json"],
            "rest": [{
                "mode": "server",
                "interaction": [{ "code": "transaction" }],
                "documentation": format!(
                    "Records belong to the hospital that wrote them. Identifier systems: citizen ID {CCCD_SYSTEM} (12 digits), social-insurance health ID {BHYT_SYSTEM} (10 digits)."
                ),
                "security": {
                    "service": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "OAuth" }] }],
                    "description": "Bearer tokens of the platform's identity provider"
                },
                "resource": resources
            }]
        }),
    )
}

async fn create(
    State(rt): State<Arc<Runtime>>,
    Path(ty): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FhirError> {
    let actor = staff(&rt, &headers).await?;
    let ty = resource_type(&ty)?;
    check_content_type(&headers)?;
    let (ty, resource) = parse_body(&body, Some(ty))?;
    let stored = rt.records.create(&actor, ty, resource).await?;
    let mut r = resource_response(StatusCode::CREATED, &stored);
    let location = format!("{}/{}/{}/_history/1", base(&rt), ty, stored.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// `POST /fhir/R4` with a `transaction` Bundle: all entries or none.
async fn transaction(
    State(rt): State<Arc<Runtime>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FhirError> {
    let actor = staff(&rt, &headers).await?;
    check_content_type(&headers)?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        FhirError::new(
            StatusCode::BAD_REQUEST,
            "structure",
            "the body is not UTF-8",
        )
    })?;
    let bundle: Value = serde_json::from_str(text).map_err(|e| {
        FhirError::new(
            StatusCode::BAD_REQUEST,
            "structure",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let entries = crate::records::transaction::parse(&bundle)?;
    let response = rt.records.transaction(&actor, entries, None).await?;
    Ok(fhir_json(StatusCode::OK, &response))
}

async fn read(
    State(rt): State<Arc<Runtime>>,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let actor = staff(&rt, &headers).await?;
    let ty = resource_type(&ty)?;
    let stored = rt.records.read(&actor, ty, &id).await?;
    Ok(resource_response(StatusCode::OK, &stored))
}

async fn vread(
    State(rt): State<Arc<Runtime>>,
    Path((ty, id, vid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let actor = staff(&rt, &headers).await?;
    let ty = resource_type(&ty)?;
    let version: i64 = vid.parse().map_err(|_| {
        FhirError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{ty}/{id}/_history/{vid} not found"),
        )
    })?;
    let stored = rt.records.vread(&actor, ty, &id, version).await?;
    Ok(resource_response(StatusCode::OK, &stored))
}

async fn update(
    State(rt): State<Arc<Runtime>>,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FhirError> {
    let actor = staff(&rt, &headers).await?;
    let ty = resource_type(&ty)?;
    check_content_type(&headers)?;
    let expected = if_match(&headers)?;
    let (ty, resource) = parse_body(&body, Some(ty))?;
    let stored = rt
        .records
        .update(&actor, ty, &id, resource, expected)
        .await?;
    Ok(resource_response(StatusCode::OK, &stored))
}

fn entry(base: &str, s: &Stored) -> Value {
    json!({
        "fullUrl": format!("{base}/{}/{}", s.resource_type, s.id),
        "resource": s.resource,
    })
}

async fn history(
    State(rt): State<Arc<Runtime>>,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let actor = staff(&rt, &headers).await?;
    let ty = resource_type(&ty)?;
    let versions = rt.records.history(&actor, ty, &id).await?;
    let base = base(&rt);
    let entries: Vec<Value> = versions
        .iter()
        .map(|s| {
            let mut e = entry(&base, s);
            let method = if s.version_id == 1 { "POST" } else { "PUT" };
            let url = if s.version_id == 1 {
                ty.to_string()
            } else {
                format!("{ty}/{id}")
            };
            e["request"] = json!({ "method": method, "url": url });
            e["response"] = json!({
                "status": if s.version_id == 1 { "201" } else { "200" },
                "etag": format!("W/\"{}\"", s.version_id),
                "lastModified": rfc3339(s.last_updated),
            });
            e
        })
        .collect();
    Ok(fhir_json(
        StatusCode::OK,
        &json!({
            "resourceType": "Bundle",
            "type": "history",
            "total": entries.len(),
            "link": [{ "relation": "self", "url": format!("{base}/{ty}/{id}/_history") }],
            "entry": entries,
        }),
    ))
}

use crate::query::encode;
pub use crate::query::pairs as query_pairs;

async fn search(
    State(rt): State<Arc<Runtime>>,
    Path(ty): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let actor = staff(&rt, &headers).await?;
    let ty = resource_type(&ty)?;
    let params = query_pairs(raw.as_deref().unwrap_or(""));
    let q = SearchQuery::parse(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let page = rt.records.search(&actor, ty, &q).await?;
    let base = base(&rt);
    let link = |offset: i64| {
        let mut parts: Vec<String> = params
            .iter()
            .filter(|(k, _)| k != "_offset" && k != "_count")
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        parts.push(format!("_count={}", q.count));
        parts.push(format!("_offset={offset}"));
        format!("{base}/{ty}?{}", parts.join("&"))
    };
    let mut links = vec![json!({ "relation": "self", "url": link(q.offset) })];
    if let Some(next) = page.next_offset {
        links.push(json!({ "relation": "next", "url": link(next) }));
    }
    if q.offset > 0 {
        links.push(json!({ "relation": "previous", "url": link((q.offset - q.count).max(0)) }));
    }
    let entries: Vec<Value> = page
        .entries
        .iter()
        .map(|s| {
            let mut e = entry(&base, s);
            e["search"] = json!({ "mode": "match" });
            e
        })
        .collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": page.total,
        "link": links,
    });
    // FHIR JSON never has an empty array: no matches means no `entry`.
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    Ok(fhir_json(StatusCode::OK, &bundle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_http_dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(1_795_530_998_838),
            "Tue, 24 Nov 2026 14:36:38 GMT"
        );
    }
}
