//! HIS adapter: a hospital information system pushes HL7 v2 messages (ADT, ORM/OML, ORU) to
//! `POST /messages`; they are stored as FHIR records in one transaction and answered with an
//! HL7 ACK. `POST /translate` shows the Bundle a message would be stored as, storing nothing.
//! The parsing and mapping live in the `hl7v2` crate; this crate is the HTTP and host glue.
//!
//! Every message received is written to a message log in kv (type, control id, ACK code,
//! number of resources, the issue: no patient data), the last [`LOG_KEEP`] kept;
//! `GET /log` reads it for the hospital's admins, and two pages under `/ui/` show it and
//! try `POST /translate` on a message.

use hl7v2::{AckCode, AckTarget, ErrorCode, Issue, MappingContext, Received};
use vtelehealth_plugin_sdk::records::{self, Purpose};
use vtelehealth_plugin_sdk::serde::{Deserialize, Serialize};
use vtelehealth_plugin_sdk::web::{Asset, PAGE_SCRIPT, PAGE_STYLE, Router};
use vtelehealth_plugin_sdk::{
    Error, Plugin, Request, Response, clock, export_plugin, identity, json, kv, log,
};

/// The pages (message log, translation tester) and their files, served under `/ui/`.
const ASSETS: &[Asset] = &[
    Asset::html("/ui/log.html", include_str!("../ui/log.html")),
    Asset::js("/ui/log.js", include_str!("../ui/log.js")),
    Asset::html("/ui/translate.html", include_str!("../ui/translate.html")),
    Asset::js("/ui/translate.js", include_str!("../ui/translate.js")),
    Asset::js("/ui/vth.js", PAGE_SCRIPT),
    Asset::css("/ui/vth.css", PAGE_STYLE),
];

/// How many log entries are kept (older ones are deleted as new ones come).
const LOG_KEEP: u64 = 500;
const LOG_SEQ: &str = "log/seq";
const LOG_PREFIX: &str = "log/entry/";

/// One received message in the log: what it was and how it was answered, no patient data.
#[derive(Debug, Serialize, Deserialize)]
#[serde(crate = "vtelehealth_plugin_sdk::serde")]
struct LogEntry {
    seq: u64,
    at_millis: u64,
    /// MSH-9 `code^event`, e.g. `ADT^A01` (empty when MSH could not be read).
    message_type: String,
    /// MSH-10.
    control_id: String,
    /// MSA-1: AA, AE or AR.
    ack_code: String,
    /// Resources stored (0 unless AA).
    resources: usize,
    /// Why it was not accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issue: Option<String>,
}

fn log_key(seq: u64) -> String {
    // Newest first in byte order.
    format!("{LOG_PREFIX}{:020}", u64::MAX - seq)
}

/// Append to the message log; a failure is logged, never turned into a different ACK.
fn record(
    message_type: String,
    control_id: String,
    ack_code: &str,
    resources: usize,
    issue: Option<String>,
) {
    let cut = |s: String, n: usize| s.chars().take(n).collect::<String>();
    let result = (|| -> Result<(), Error> {
        let seq = kv::increment(LOG_SEQ, 1)?.max(0) as u64;
        let entry = LogEntry {
            seq,
            at_millis: clock::now_millis(),
            message_type: cut(message_type, 32),
            control_id: cut(control_id, 64),
            ack_code: ack_code.to_owned(),
            resources,
            issue: issue.map(|i| cut(i, 500)),
        };
        kv::set_json(&log_key(seq), &entry)?;
        if seq > LOG_KEEP {
            kv::delete(&log_key(seq - LOG_KEEP))?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        log::warn(&format!("the message log was not written: {}", e.message()));
    }
}

/// MSH-9 (code^event) and MSH-10 of a message that could not be parsed, best effort.
fn msh_fields(body: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(body);
    let Some(msh) = text
        .split(['\r', '\n'])
        .map(|l| l.trim_start_matches(['\u{b}', '\u{feff}']))
        .find(|l| l.starts_with("MSH"))
    else {
        return (String::new(), String::new());
    };
    let Some(sep) = msh.chars().nth(3) else {
        return (String::new(), String::new());
    };
    let fields: Vec<&str> = msh.split(sep).collect();
    let kind = fields
        .get(8)
        .map(|f| f.split('^').take(2).collect::<Vec<_>>().join("^"))
        .unwrap_or_default();
    (
        kind,
        fields.get(9).map(|f| (*f).to_owned()).unwrap_or_default(),
    )
}

/// `GET /log?limit=N`: the newest entries of the message log (default 50, at most 200).
fn message_log(req: &Request) -> Result<Response, Response> {
    authorize(&["hospital-admin"])?;
    let limit = match req.query_param("limit") {
        None => 50,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| Error::bad_request("limit must be 1 to 200").into_response())?,
    };
    let mut entries = Vec::new();
    for key in kv::list_keys_page(LOG_PREFIX, None, limit).map_err(Error::into_response)? {
        if let Some(entry) = kv::get_json::<LogEntry>(&key).map_err(Error::into_response)? {
            entries.push(entry);
        }
    }
    Ok(Response::ok_json(&json!({ "entries": entries })))
}

/// The content type of ACKs.
const ER7: &str = "x-application/hl7-v2+er7; charset=utf-8";
/// Request content types taken as ER7 (parameters such as charset are ignored: the body
/// must be UTF-8 whatever it says).
const ACCEPTED_TYPES: &[&str] = &[
    "x-application/hl7-v2+er7",
    "application/hl7-v2+er7",
    "application/hl7-v2",
    "text/plain",
];

struct HisHl7v2;

impl Plugin for HisHl7v2 {
    fn handle(req: Request) -> Result<Response, Error> {
        match (req.method(), req.segments().as_slice()) {
            ("POST", ["messages"]) => Ok(messages(&req).unwrap_or_else(|refusal| refusal)),
            ("POST", ["translate"]) => Ok(translate(&req).unwrap_or_else(|refusal| refusal)),
            (_, ["messages" | "translate"]) => Err(Error::method_not_allowed("use POST")),
            _ => Router::new()
                .assets(ASSETS)
                .get("/log", |req, _| {
                    Ok(message_log(req).unwrap_or_else(|refusal| refusal))
                })
                .handle(&req),
        }
    }
}

export_plugin!(HisHl7v2);

/// `POST /messages`: store the message's records, answer an ACK (HTTP 200 for AA, AE, AR).
fn messages(req: &Request) -> Result<Response, Response> {
    let hospital = authorize(&["service"])?;
    check_content_type(req)?;
    let ctx = MappingContext::new(hospital);
    let now = hl7v2::hl7_timestamp_vn(i64::try_from(clock::now_millis()).unwrap_or(i64::MAX));
    let (message, bundle) = match hl7v2::receive(&req.body, &ctx, &now) {
        Received::Mapped { message, bundle } => (message, bundle),
        Received::Refused { issue, ack } => {
            log::info(&format!("HL7 message refused: {issue}"));
            let (kind, control) = msh_fields(&req.body);
            record(
                kind,
                control,
                issue.ack_code.as_str(),
                0,
                Some(issue.text.clone()),
            );
            return Ok(ack_response(ack));
        }
    };
    let key = hl7v2::idempotency_key(&message);
    let target = AckTarget::from_message(&message);
    let issue = match records::transaction(&bundle, Some(&key), Purpose::Treatment) {
        Ok(_) => None,
        Err(e) => Some(store_issue(&e)),
    };
    let entries = bundle["entry"].as_array().map_or(0, Vec::len);
    let code = issue.as_ref().map_or(AckCode::Accept, |i| i.ack_code);
    log::info(&format!(
        "HL7 {}^{} {} (key {key}): {code}, {entries} resources{}",
        message.message_code(),
        message.trigger_event(),
        message.control_id(),
        issue
            .as_ref()
            .map(|i| format!(": {}", i.text))
            .unwrap_or_default()
    ));
    record(
        format!("{}^{}", message.message_code(), message.trigger_event()),
        message.control_id().into_owned(),
        code.as_str(),
        if issue.is_none() { entries } else { 0 },
        issue.as_ref().map(|i| i.text.clone()),
    );
    Ok(ack_response(hl7v2::ack(&target, issue.as_ref(), &now)))
}

/// `POST /translate`: the transaction Bundle a message maps to; nothing is stored.
/// A message that cannot be mapped is a 422 with the issue and the ACK it would get.
fn translate(req: &Request) -> Result<Response, Response> {
    let hospital = authorize(&["service", "hospital-admin"])?;
    check_content_type(req)?;
    let ctx = MappingContext::new(hospital);
    let now = hl7v2::hl7_timestamp_vn(i64::try_from(clock::now_millis()).unwrap_or(i64::MAX));
    match hl7v2::receive(&req.body, &ctx, &now) {
        Received::Mapped { bundle, .. } => Ok(Response::json(200, &bundle)),
        Received::Refused { issue, ack } => Ok(Response::json(
            422,
            &json!({
                "error": { "code": "hl7_not_mappable", "message": issue.text },
                "hl7": {
                    "ack_code": issue.ack_code.as_str(),
                    "error_code": issue.code.code(),
                    "error_location": issue.location.as_ref().map(ToString::to_string),
                    "ack": ack,
                },
            }),
        )),
    }
}

/// An HTTP refusal in the SDK's JSON error shape (for statuses `Error` has no variant for).
fn refusal(status: u16, code: &str, message: impl Into<String>) -> Response {
    Response::json(
        status,
        &json!({ "error": { "code": code, "message": message.into() } }),
    )
}

/// The caller must hold one of `roles` and belong to the hospital of the call; returns
/// that hospital's id.
fn authorize(roles: &[&str]) -> Result<String, Response> {
    let ctx = identity::current();
    let Some(principal) = ctx.principal.as_ref() else {
        return Err(refusal(401, "unauthorized", "a bearer token is required"));
    };
    if !roles.iter().any(|r| principal.has_role(r)) {
        return Err(
            Error::forbidden(format!("this route is for the roles {}", roles.join(", "))).into(),
        );
    }
    match &principal.hospital {
        Some(own) if own.id == ctx.hospital.id => Ok(ctx.hospital.id),
        _ => Err(Error::forbidden(format!(
            "only {}'s own systems may use this route",
            ctx.hospital.id
        ))
        .into()),
    }
}

/// 415 for bodies that say they are something else (JSON, XML...); no content type is
/// accepted, as many HIS engines send none.
fn check_content_type(req: &Request) -> Result<(), Response> {
    let Some(value) = req.header("content-type") else {
        return Ok(());
    };
    let media = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if ACCEPTED_TYPES.contains(&media.as_str()) {
        Ok(())
    } else {
        Err(refusal(
            415,
            "unsupported_media_type",
            format!(
                "content type {media} is not HL7 v2 ER7: send x-application/hl7-v2+er7 or text/plain"
            ),
        ))
    }
}

/// A refusal or failure of the record store as an ACK issue: transient failures are AR (the
/// HIS should resend later; the idempotency key makes that safe), refusals AE.
fn store_issue(e: &Error) -> Issue {
    let text = format!(
        "the health record store did not accept the records ({}): {}",
        e.code(),
        e.message()
    );
    match e {
        Error::Unavailable(_) | Error::Internal(_) | Error::Quota(_) => {
            Issue::reject(ErrorCode::ApplicationInternal, text)
        }
        _ => Issue::error(ErrorCode::ApplicationInternal, text),
    }
}

fn ack_response(ack: String) -> Response {
    Response::bytes(200, ER7, ack)
}
