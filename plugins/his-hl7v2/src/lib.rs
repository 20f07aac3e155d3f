//! HIS adapter: a hospital information system pushes HL7 v2 messages (ADT, ORM/OML, ORU) to
//! `POST /messages`; they are stored as FHIR records in one transaction and answered with an
//! HL7 ACK. `POST /translate` shows the Bundle a message would be stored as, storing nothing.
//! The parsing and mapping live in the `hl7v2` crate; this crate is the HTTP and host glue.

use hl7v2::{AckCode, AckTarget, ErrorCode, Issue, MappingContext, Received};
use vtelehealth_plugin_sdk::records::{self, Purpose};
use vtelehealth_plugin_sdk::{
    Error, Plugin, Request, Response, clock, export_plugin, identity, json, log,
};

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
            _ => Err(Error::not_found(format!("no route {}", req.path()))),
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
