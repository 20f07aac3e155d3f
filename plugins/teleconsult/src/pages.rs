//! The doctors' pages (`ui/`): request, triage queue, one consultation, the network's open
//! sessions and the history, served as embedded assets next to the JSON routes, plus the two
//! small routes the pages need (`GET /context`, `POST /consultations/{id}/join-token`).
//!
//! A page's frame ticket is bound to one (hospital, plugin): a page served by one hospital's
//! copy calls that copy only. A page that needs another hospital's copy (the requester's page
//! at the upper hospital, another hospital's sessions) asks the console to open the same
//! page there (`tc.js`, `postMessage`), which fetches a ticket for that hospital's copy as it
//! does for a notification's link. See `docs/teleconsult.md`, "The pages".

use vtelehealth_plugin_sdk::identity;
use vtelehealth_plugin_sdk::video;
use vtelehealth_plugin_sdk::web::{Asset, PAGE_SCRIPT, PAGE_STYLE};
use vtelehealth_plugin_sdk::{Error, Request, Response, json};

use crate::{caller, load, rank};

const ASSETS: &[Asset] = &[
    Asset::js("/ui/vth.js", PAGE_SCRIPT),
    Asset::css("/ui/vth.css", PAGE_STYLE),
    Asset::js("/ui/tc.js", include_str!("../ui/tc.js")),
    Asset::css("/ui/tc.css", include_str!("../ui/tc.css")),
    Asset::html("/ui/request.html", include_str!("../ui/request.html")),
    Asset::js("/ui/request.js", include_str!("../ui/request.js")),
    Asset::html("/ui/queue.html", include_str!("../ui/queue.html")),
    Asset::js("/ui/queue.js", include_str!("../ui/queue.js")),
    Asset::html(
        "/ui/consultation.html",
        include_str!("../ui/consultation.html"),
    ),
    Asset::js("/ui/consultation.js", include_str!("../ui/consultation.js")),
    Asset::html("/ui/sessions.html", include_str!("../ui/sessions.html")),
    Asset::js("/ui/sessions.js", include_str!("../ui/sessions.js")),
    Asset::html("/ui/history.html", include_str!("../ui/history.html")),
    Asset::js("/ui/history.js", include_str!("../ui/history.js")),
];

/// The pages' requests, before the JSON routes; `None` for everything else.
pub(crate) fn route(req: &Request, segments: &[&str]) -> Option<Result<Response, Error>> {
    match (req.method(), segments) {
        ("GET" | "HEAD", ["ui", _]) => {
            let path = req.path();
            ASSETS
                .iter()
                .find(|a| a.path == path)
                .map(|a| Ok(a.response()))
        }
        // A notification's link (`/consultations/{id}`, `/consultations/{id}/page`) opened
        // by a browser shows the consultation's page; API clients still get JSON.
        ("GET", ["consultations", id]) if wants_html(req) => Some(Ok(to_page(id, "../"))),
        ("GET", ["consultations", id, "page"]) if wants_html(req) => {
            Some(Ok(to_page(id, "../../")))
        }
        ("GET", ["context"]) => Some(context()),
        ("POST", ["consultations", id, "join-token"]) => Some(join_token(id)),
        (_, ["context"]) | (_, ["consultations", _, "join-token"]) => Some(Err(
            Error::method_not_allowed("Phương thức không được phép (method not allowed)"),
        )),
        _ => None,
    }
}

/// A browser's navigation (its `Accept` names HTML first), not a script's JSON call.
fn wants_html(req: &Request) -> bool {
    req.header("accept")
        .is_some_and(|a| a.trim_start().starts_with("text/html"))
}

/// A tiny document that replaces itself with the consultation's page, keeping `lang`.
fn to_page(id: &str, up: &str) -> Response {
    let id: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(80)
        .collect();
    let html = format!(
        "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\"><title>Hội chẩn</title></head><body>\
         <p><a id=\"go\" href=\"{up}ui/consultation.html?id={id}\">Mở trang hội chẩn (open the consultation)</a></p>\
         <script>(function(){{var l=new URLSearchParams(location.search).get('lang');\
         location.replace('{up}ui/consultation.html?id={id}'+(l?'&lang='+encodeURIComponent(l):''));}})();</script>\
         </body></html>"
    );
    Response::bytes(200, "text/html; charset=utf-8", html.into_bytes())
        .with_header("cache-control", "no-cache")
}

fn tier_name(t: identity::Tier) -> &'static str {
    t.as_str()
}

/// `GET /context`: the hospital this copy serves and the caller, by name, for the pages.
fn context() -> Result<Response, Error> {
    let p = caller()?;
    let here = identity::current().hospital;
    let mine = p.hospital.clone();
    let own = mine.as_ref().is_some_and(|h| h.id == here.id);
    Ok(Response::ok_json(&json!({
        "hospital": { "id": here.id, "name": here.name, "tier": tier_name(here.tier), "rank": rank(here.tier) },
        "me": {
            "id": p.subject,
            "name": p.name,
            "practitioner": p.has_role("practitioner"),
            "admin": p.has_role("hospital-admin"),
            "hospital": mine.as_ref().map(|h| json!({ "id": h.id, "name": h.name, "tier": tier_name(h.tier), "rank": rank(h.tier) })),
            "host_staff": own,
        },
    })))
}

/// `POST /consultations/{id}/join-token`: the caller's own join token for the room, for the
/// page's "Vào phòng" (the caller must be invited and not removed; the platform checks).
fn join_token(id: &str) -> Result<Response, Error> {
    let p = caller()?;
    let c = load(id)?;
    let room = c.room_id.clone().ok_or_else(|| {
        Error::conflict(format!(
            "Hội chẩn `{id}` chưa có phòng (the consultation has no room yet)"
        ))
    })?;
    if c.status != "accepted" {
        return Err(Error::conflict(format!(
            "Hội chẩn `{id}` không còn mở phòng (the room is not open: {})",
            c.status
        )));
    }
    let me = c
        .invitees
        .iter()
        .find(|i| i.practitioner == p.subject)
        .ok_or_else(|| {
            Error::forbidden("Bạn chưa được mời vào phòng này (you are not invited to this room)")
        })?;
    let t = video::issue_join_token(&room, &me.participant_id, Some(3600))?;
    // The room page reads `#token=`: a fragment never reaches a server's logs.
    Ok(Response::ok_json(&json!({
        "room_url": format!("/rooms/{room}#token={}", t.token),
        "role": me.role,
        "expires_at": t.expires_at,
    })))
}

/// The request's `consultants` (ids of the host's doctors the requester picked from the
/// directory by name, at most 10) added to the proposed ones, each checked; the accepting
/// doctor invites the proposed ones by default.
pub(crate) fn with_requested_consultants(
    b: &vtelehealth_plugin_sdk::serde_json::Value,
    mut proposed: Vec<vtelehealth_plugin_sdk::serde_json::Value>,
) -> Result<Vec<vtelehealth_plugin_sdk::serde_json::Value>, Error> {
    let Some(v) = b.get("consultants").filter(|v| !v.is_null()) else {
        return Ok(proposed);
    };
    let ids = v.as_array().filter(|a| a.len() <= 10).ok_or_else(|| {
        Error::bad_request(
            "`consultants`: danh sách tối đa 10 mã bác sĩ (a list of at most 10 practitioner ids)",
        )
    })?;
    let mut problems = Vec::new();
    for x in ids {
        let id = x.as_str().unwrap_or_default();
        match crate::practitioner_of_host(id) {
            Ok(person) => {
                if proposed
                    .iter()
                    .any(|o| o["practitioner"] == person.id.as_str())
                {
                    continue;
                }
                let tier = identity::hospital(&person.hospital).map(|h| tier_name(h.tier));
                let specialty = identity::practitioner(&person.id).and_then(|p| p.specialty);
                proposed.push(json!({
                    "practitioner": person.id, "name": person.name, "hospital": person.hospital,
                    "tier": tier, "specialty": specialty, "requested": true,
                }));
            }
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(proposed)
    } else {
        Err(Error::bad_request(format!(
            "`consultants`: {}",
            problems.join("; ")
        )))
    }
}
