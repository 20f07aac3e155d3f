//! Payment routes: the built-in sandbox gateway's pages, the VNPAY-style
//! return and IPN endpoints, and the daily reconciliation report.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};

use super::extract::{Json, Path, Query};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::ApiError;
use super::Authenticated;
use crate::Runtime;
use crate::identity::Role;
use crate::payment::gateway::{SandboxTickets, TicketError};
use crate::payment::{IntentState, PaymentError, PaymentIntent};
use crate::time::now_millis;

/// The payment routes.
pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/payments/sandbox/{id}", get(sandbox_page))
        .route("/payments/sandbox/{id}/{action}", post(sandbox_act))
        .route("/api/v1/payments/vnpay/ipn", get(vnpay_ipn))
        .route("/api/v1/payments/vnpay/return", get(vnpay_return))
        .route("/api/v1/payments/reconciliation", get(reconciliation))
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        let message = e.to_string();
        match e {
            PaymentError::Invalid(_) => ApiError::Unprocessable(message),
            PaymentError::NotFound(_) => ApiError::NotFound(message),
            PaymentError::Conflict(_)
            | PaymentError::IllegalTransition { .. }
            | PaymentError::ExceedsCaptured { .. } => ApiError::Conflict(message),
            PaymentError::Config(_) => ApiError::Unavailable(message),
            PaymentError::Ledger(_) | PaymentError::Database(_) | PaymentError::Audit(_) => {
                ApiError::Internal(message)
            }
        }
    }
}

use super::html::escape;

/// The sandbox gateway as an actor of the audit trail.
const SANDBOX: &str = "gateway:sandbox";

/// The sandbox exists only on development and demo nodes; elsewhere its
/// pages do not exist either.
fn sandbox_tickets(rt: &Runtime) -> Result<&SandboxTickets, ApiError> {
    rt.payments.sandbox().ok_or_else(|| {
        ApiError::NotFound(
            "the sandbox payment gateway is not offered by this server (development only: --demo or --payment-sandbox)"
                .into(),
        )
    })
}

/// The payer's session on the sandbox: the ticket of their checkout link,
/// bound to this intent and short-lived. Returns the payer's subject.
fn payer_of(rt: &Runtime, id: &str, ticket: Option<&str>) -> Result<String, ApiError> {
    let tickets = sandbox_tickets(rt)?;
    let ticket = ticket
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Unauthorized(TicketError::Missing.to_string()))?;
    tickets
        .check(ticket, id, now_millis())
        .map_err(|e| ApiError::Unauthorized(e.to_string()))
}

/// The `ticket` field of a query string or form body.
fn ticket_field(form: &[u8]) -> Option<String> {
    form_urlencoded::parse(form)
        .find(|(k, _)| k == "ticket")
        .map(|(_, v)| v.into_owned())
}

/// CSRF guard: a post must come from the sandbox page itself. Browsers send
/// `Origin` (and `Sec-Fetch-Site`) with every form post; another site's,
/// or an opaque (`null`) origin, is refused. Clients that send neither are
/// not browsers and still need the payer's ticket.
fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = || {
        ApiError::Forbidden(
            "cross-site request refused: sandbox payments are posted from the sandbox page only"
                .into(),
        )
    };
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.to_str(), Ok("same-origin" | "none"))
    {
        return Err(refused());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let same = match (origin.to_str().ok(), host) {
            (Some(o), Some(h)) => o == format!("http://{h}") || o == format!("https://{h}"),
            _ => false,
        };
        if !same {
            return Err(refused());
        }
    }
    Ok(())
}

/// Only sandbox intents have sandbox pages.
async fn sandbox_intent(rt: &Runtime, id: &str) -> Result<PaymentIntent, ApiError> {
    let intent = rt.payments.get(id).await?;
    if intent.gateway != "sandbox" {
        return Err(ApiError::NotFound(format!(
            "payment intent `{id}` is not paid through the sandbox"
        )));
    }
    Ok(intent)
}

/// The page holds the payer's ticket: not cached, not sent to other sites
/// as a referrer, not framed by another page. (`no-referrer` would make
/// the browser post `Origin: null`, which the CSRF guard refuses.)
const SANDBOX_PAGE_HEADERS: [(header::HeaderName, &str); 3] = [
    (header::CACHE_CONTROL, "no-store"),
    (header::REFERRER_POLICY, "same-origin"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
];

async fn sandbox_page(
    State(rt): State<Arc<Runtime>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let ticket = query.as_deref().and_then(|q| ticket_field(q.as_bytes()));
    payer_of(&rt, &id, ticket.as_deref())?;
    let i = sandbox_intent(&rt, &id).await?;
    let id = escape(&i.id);
    let ticket = escape(ticket.as_deref().unwrap_or_default());
    let buttons = if i.state == IntentState::Pending {
        let form = |action: &str, label: &str| {
            format!(
                "<form method=\"post\" action=\"/payments/sandbox/{id}/{action}\">\
                 <input type=\"hidden\" name=\"ticket\" value=\"{ticket}\"><button>{label}</button></form>"
            )
        };
        [
            form("pay", "Thanh toán (pay)"),
            form("fail", "Thất bại (fail)"),
            form("cancel", "Hủy (cancel)"),
        ]
        .concat()
    } else {
        String::new()
    };
    let html = format!(
        "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\"><title>Sandbox payment</title></head><body>\
         <h1>Cổng thanh toán thử nghiệm (sandbox)</h1><p>No real money moves here.</p>\
         <dl><dt>Amount</dt><dd id=\"amount\">{} VND</dd><dt>Purpose</dt><dd>{}</dd><dt>State</dt><dd id=\"state\">{}</dd></dl>\
         {buttons}</body></html>",
        i.amount,
        escape(&i.purpose),
        i.state.as_str()
    );
    Ok((SANDBOX_PAGE_HEADERS, Html(html)).into_response())
}

async fn sandbox_act(
    State(rt): State<Arc<Runtime>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    sandbox_tickets(&rt)?;
    same_origin(&headers)?;
    payer_of(&rt, &id, ticket_field(&body).as_deref())?;
    let i = sandbox_intent(&rt, &id).await?;
    match action.as_str() {
        "pay" => {
            rt.payments
                .succeed(SANDBOX, &id, &format!("sandbox-{id}"))
                .await?
        }
        "fail" => {
            rt.payments
                .abandon(SANDBOX, &id, IntentState::Failed)
                .await?
        }
        "cancel" => {
            rt.payments
                .abandon(SANDBOX, &id, IntentState::Cancelled)
                .await?
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "no sandbox action `{other}` (pay, fail, cancel)"
            )));
        }
    };
    Ok(Redirect::to(&return_location(&i)).into_response())
}

/// Where the payer's browser goes back to: the plugin's return path.
fn return_location(i: &PaymentIntent) -> String {
    let path = i.return_path.as_deref().unwrap_or("/");
    let sep = if path.contains('?') { '&' } else { '?' };
    format!(
        "/hospitals/{}/plugins/{}{path}{sep}payment={}",
        i.hospital_id, i.plugin_id, i.id
    )
}

/// The gateway's server-to-server notice: verified, settled at most once,
/// answered in the protocol's codes (always HTTP 200, as it expects).
async fn vnpay_ipn(
    State(rt): State<Arc<Runtime>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Json<serde_json::Value> {
    Json(rt.payments.vnpay_ipn(&params).await.body())
}

/// The payer's browser coming back from the gateway: verified, then sent
/// to the plugin; otherwise a page saying so. It changes nothing: only the
/// IPN settles.
async fn vnpay_return(
    State(rt): State<Arc<Runtime>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    match rt.payments.vnpay_return(&params).await? {
        Some(intent) => Ok(Redirect::to(&return_location(&intent)).into_response()),
        None => Ok(Html(
            "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\"><title>Payment</title></head><body>\
             <h1>Không xác minh được kết quả thanh toán</h1>\
             <p>The gateway's answer is not validly signed for this payment; nothing was changed.</p></body></html>",
        )
        .into_response()),
    }
}

#[derive(Deserialize)]
struct ReportQuery {
    /// `hospital:{id}` or `vendor:{plugin}`.
    merchant: String,
    /// `YYYY-MM-DD` (UTC).
    day: String,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// Operators read every merchant's report; a hospital admin their hospital's.
async fn reconciliation(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let own_hospital = p
        .hospital_id
        .as_deref()
        .is_some_and(|h| q.merchant == format!("hospital:{h}"));
    if !(p.has_role(Role::Operator) || (p.has_role(Role::HospitalAdmin) && own_hospital)) {
        return Err(ApiError::Forbidden(
            "reconciliation reports are for operators and the merchant hospital's admins".into(),
        ));
    }
    if !(q.merchant.starts_with("hospital:") || q.merchant.starts_with("vendor:")) {
        return Err(ApiError::BadRequest(
            "merchant must be `hospital:{id}` or `vendor:{plugin}`".into(),
        ));
    }
    let report = rt
        .payments
        .reconciliation(&format!("merchant:{}", q.merchant), &q.day)
        .await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(report).into_response()),
        "csv" => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            report.to_csv(),
        )
            .into_response()),
        other => Err(ApiError::BadRequest(format!(
            "format `{other}` is not offered (json, csv)"
        ))),
    }
}
