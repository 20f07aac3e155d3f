//! TEST ONLY: a plugin whose routes misbehave on purpose, so the end-to-end tests can check
//! that the runtime contains each failure to the one call. Not a reference plugin.
//!
//! | route | behaviour |
//! | --- | --- |
//! | `GET /ok` | answers `{"ok":true}` at once |
//! | `/loop` | spins forever in guest code (the epoch deadline must stop it) |
//! | `/oom` | allocates and touches 1 MiB blocks until memory growth is refused |
//! | `/recurse` | recurses without bound until the stack overflows |
//! | `/panic` | panics with the message `hostile plugin panics on purpose` |
//! | `/big-response` | returns a 9 MiB body (above the 8 MiB response limit) |
//! | `/kv-flood` | writes 64 KiB values under new keys until kv refuses, then returns that error (507 for quota) |
//! | `/host-loop` | calls `kv::get` forever, so the time is spent inside host calls |
//! | `/headers?count=N&size=B&body=L` | answers 200 with `N` headers `x-h-{i}` of `B` bytes each and an `L`-byte body (the header limits must refuse too many, too large, or headers and body together over the response limit) |
//! | `/echo` | echoes the request body and its content type |
//! | `GET /whoami` | returns `identity::current()` as JSON (every field of the principal) |
//! | `GET /lookup?practitioner=ID&hospital=ID&role=R` | returns the `identity` look-ups of those ids and `has_role(R)` |
//! | `GET /search?q=Q&hospital=ID&specialty=S&limit=N` | `identity::search_practitioners` (`{practitioners}` or `{error: {code, message}}`) |
//! | `GET /hospitals?tier=T` | `identity::hospitals` |
use std::hint::black_box;

use vtelehealth_plugin_sdk::identity::{self, Hospital, Practitioner};
use vtelehealth_plugin_sdk::serde_json::Value;
use vtelehealth_plugin_sdk::{Error, Plugin, Request, Response, clock, export_plugin, json, kv};

/// The message `/panic` panics with.
pub const PANIC_MESSAGE: &str = "hostile plugin panics on purpose";

struct Hostile;

impl Plugin for Hostile {
    fn handle(req: Request) -> Result<Response, Error> {
        match req.segments().as_slice() {
            ["ok"] => Ok(Response::ok_json(&json!({ "ok": true }))),
            ["loop"] => spin(),
            ["oom"] => exhaust_memory(),
            ["recurse"] => Ok(Response::ok_json(&json!({ "depth": recurse(0) }))),
            ["panic"] => panic!("{PANIC_MESSAGE}"),
            ["big-response"] => Ok(Response::bytes(
                200,
                "application/octet-stream",
                vec![b'x'; 9 << 20],
            )),
            ["headers"] => Ok(many_headers(&req)),
            ["kv-flood"] => kv_flood(),
            ["host-loop"] => host_loop(),
            ["echo"] => {
                let content_type = req
                    .header("content-type")
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                Ok(Response::bytes(200, &content_type, req.body))
            }
            ["whoami"] => Ok(Response::ok_json(&whoami())),
            ["lookup"] => Ok(Response::ok_json(&lookup(&req))),
            ["search"] => Ok(Response::ok_json(&search(&req))),
            ["hospitals"] => {
                let tier = match req.query_param("tier").as_deref() {
                    Some("central") => Some(identity::Tier::Central),
                    Some("provincial") => Some(identity::Tier::Provincial),
                    Some("district") => Some(identity::Tier::District),
                    Some("commune") => Some(identity::Tier::Commune),
                    _ => None,
                };
                let all: Vec<Value> = identity::hospitals(tier)
                    .into_iter()
                    .map(hospital_json)
                    .collect();
                Ok(Response::ok_json(&json!({ "hospitals": all })))
            }
            _ => Err(Error::not_found(format!(
                "no route for {} {}",
                req.method(),
                req.path()
            ))),
        }
    }
}

/// An infinite loop the optimizer cannot remove: `black_box` is opaque to it.
fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter).wrapping_add(1);
    }
}

/// Grow a list of 1 MiB blocks, each written through (so the pages are really touched),
/// until the allocator's memory growth is refused and the allocation-error handler aborts.
fn exhaust_memory() -> Result<Response, Error> {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for i in 0..4096u32 {
        let block = vec![(i % 251) as u8 + 1; 1 << 20];
        blocks.push(black_box(block));
    }
    // Only reached when the sandbox allows 4 GiB, which it must not.
    Ok(Response::ok_json(
        &json!({ "allocated_mib": black_box(blocks).len() }),
    ))
}

/// Read with a volatile load, so the optimizer cannot know the recursion never ends.
static RECURSION_LIMIT: u64 = u64::MAX;

/// Unbounded, non-tail recursion on the Wasm stack (the engine's stack limit must stop it):
/// the inner call's result is used after it returns (multiply, then xor: no accumulator
/// form the optimizer could turn into a loop), and the stop condition is a volatile load.
/// No locals live in linear memory, so the shadow stack is not what overflows.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    // SAFETY: a read of a plain `u64` static.
    let limit = unsafe { core::ptr::read_volatile(&RECURSION_LIMIT) };
    if depth >= limit {
        return depth;
    }
    recurse(depth + 1).wrapping_mul(31) ^ depth
}

/// Write 64 KiB values under fresh keys until kv refuses; return that refusal.
fn kv_flood() -> Result<Response, Error> {
    let value = vec![0xa5u8; 64 << 10];
    let run = clock::now_millis();
    let mut written: u64 = 0;
    loop {
        let key = format!("flood/{run}/{written:010}");
        kv::set(&key, &value)?;
        written += 1;
    }
}

/// `count` headers of `size` bytes and a `body`-byte body.
fn many_headers(req: &Request) -> Response {
    let n = |name: &str| {
        req.query_param(name)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    let value = "v".repeat(n("size"));
    let mut response = Response::bytes(200, "application/octet-stream", vec![b'x'; n("body")]);
    for i in 0..n("count") {
        response = response.with_header(&format!("x-h-{i}"), value.clone());
    }
    response
}

/// Call the host forever: the time goes to host calls, not guest code.
fn host_loop() -> ! {
    loop {
        let _ = black_box(kv::get(black_box("host-loop")));
    }
}

fn hospital_json(h: Hospital) -> Value {
    json!({ "id": h.id, "name": h.name, "tier": h.tier.as_str(), "province": h.province })
}

fn practitioner_json(p: Practitioner) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "hospital_id": p.hospital_id,
        "specialty": p.specialty,
        "title": p.title,
    })
}

/// Everything `identity::current()` tells the plugin.
fn whoami() -> Value {
    let ctx = identity::current();
    let principal = ctx.principal.map(|p| {
        json!({
            "subject": p.subject,
            "name": p.name,
            "roles": p.roles,
            "hospital": p.hospital.map(hospital_json),
            "national_id": p.national_id,
            "health_id": p.health_id,
        })
    });
    json!({
        "hospital": hospital_json(ctx.hospital),
        "plugin_id": ctx.plugin_id,
        "request_id": ctx.request_id,
        "principal": principal,
    })
}

/// The `identity` look-ups named by the query.
fn lookup(req: &Request) -> Value {
    let practitioner = req
        .query_param("practitioner")
        .map(|id| identity::practitioner(&id).map(practitioner_json));
    let hospital = req
        .query_param("hospital")
        .map(|id| identity::hospital(&id).map(hospital_json));
    let has_role = req.query_param("role").map(|r| identity::has_role(&r));
    json!({ "practitioner": practitioner, "hospital": hospital, "has_role": has_role })
}

/// `identity::search_practitioners` with the query's arguments; a refusal as `{error}` (200).
fn search(req: &Request) -> Value {
    let hospital = req.query_param("hospital");
    let specialty = req.query_param("specialty");
    let limit = req
        .query_param("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(20);
    match identity::search_practitioners(
        hospital.as_deref(),
        &req.query_param("q").unwrap_or_default(),
        specialty.as_deref(),
        limit,
    ) {
        Ok(found) => {
            let all: Vec<Value> = found.into_iter().map(practitioner_json).collect();
            json!({ "practitioners": all })
        }
        Err(e) => json!({ "error": { "status": e.status(), "message": e.message() } }),
    }
}

export_plugin!(Hostile);
