//! Visit counter: counts visits per hospital in the plugin's kv store.
//!
//! - `POST /visits` records a visit and returns the new count. The count is an atomic
//!   [`kv::increment`], so concurrent visits are never lost.
//! - `GET /visits` returns the count.
//! - `GET /visits/history?limit=N` returns the most recent visits, newest first (default 20,
//!   at most 100).
//!
//! - `GET /ui/counter.html` is its page (the count, a button that records a visit, the recent
//!   visits), with its script and style under `/ui/`, all embedded in the component.
//!
//! The kv store belongs to one (hospital, plugin) pair, so every hospital has its own count.
use serde::{Deserialize, Serialize};
use vtelehealth_plugin_sdk::web::{Asset, PAGE_SCRIPT, PAGE_STYLE, Router};
use vtelehealth_plugin_sdk::{
    Error, Plugin, Request, Response, clock, export_plugin, identity, json, kv, log,
};

/// The page and its files, served under `/ui/` (the manifest's route `/ui/{file}`).
const ASSETS: &[Asset] = &[
    Asset::html("/ui/counter.html", include_str!("../ui/counter.html")),
    Asset::js("/ui/counter.js", include_str!("../ui/counter.js")),
    Asset::js("/ui/vth.js", PAGE_SCRIPT),
    Asset::css("/ui/vth.css", PAGE_STYLE),
];

const COUNT_KEY: &str = "visits/count";
const HISTORY_PREFIX: &str = "visits/history/";
const DEFAULT_HISTORY: u32 = 20;
const MAX_HISTORY: u32 = 100;

#[derive(Serialize, Deserialize)]
struct Visit {
    /// The visit's number.
    number: u64,
    /// When it was recorded, in milliseconds since the Unix epoch.
    at_millis: u64,
}

struct VisitCounter;

impl Plugin for VisitCounter {
    fn handle(req: Request) -> Result<Response, Error> {
        Router::new()
            .assets(ASSETS)
            .post("/visits", |_, _| record_visit())
            .get("/visits", |_, _| {
                let hospital = identity::current().hospital.id;
                Ok(Response::ok_json(&counter(&hospital, total()?)))
            })
            .get("/visits/history", |req, _| history(req))
            .handle(&req)
    }
}

fn record_visit() -> Result<Response, Error> {
    let ctx = identity::current();
    let number = kv::increment(COUNT_KEY, 1)?.max(0) as u64;
    let at_millis = clock::now_millis();
    // Newest first in byte order: the key holds the time counted down from u64::MAX.
    let key = format!("{HISTORY_PREFIX}{:020}-{number:020}", u64::MAX - at_millis);
    kv::set_json(&key, &Visit { number, at_millis })?;
    log::info!("visit {number} recorded");
    Ok(Response::ok_json(&counter(&ctx.hospital.id, number)))
}

fn history(req: &Request) -> Result<Response, Error> {
    let limit = match req.query_param("limit") {
        None => DEFAULT_HISTORY,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_HISTORY).contains(n))
            .ok_or_else(|| Error::bad_request(format!("limit must be 1 to {MAX_HISTORY}")))?,
    };
    let mut visits = Vec::new();
    for key in kv::list_keys_page(HISTORY_PREFIX, None, limit)? {
        if let Some(visit) = kv::get_json::<Visit>(&key)? {
            visits.push(visit);
        }
    }
    Ok(Response::ok_json(&json!({ "visits": visits })))
}

/// The count: `kv::increment` stores decimal text, which reads back as a JSON number.
fn total() -> Result<u64, Error> {
    Ok(kv::get_json::<u64>(COUNT_KEY)?.unwrap_or(0))
}

fn counter(hospital: &str, count: u64) -> vtelehealth_plugin_sdk::serde_json::Value {
    json!({ "hospital": hospital, "visits": count })
}

export_plugin!(VisitCounter);
