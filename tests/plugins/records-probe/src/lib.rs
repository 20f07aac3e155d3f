//! TEST ONLY: calls the `records` capability as the request says, so the end-to-end tests can
//! check data scopes, purposes of use and tenancy. Not a reference plugin.
//!
//! Every route takes `?purpose=treatment|payment|public-health` (default treatment).
//!
//! | route | call |
//! | --- | --- |
//! | `POST /create` | `records::create(body)` |
//! | `GET /read/{type}/{id}` | `records::read` |
//! | `PUT /update?if-match=N` | `records::update(body)` |
//! | `GET /search/{type}?q=<url-encoded query>` | `records::search` |
//! | `POST /transaction?key=K` | `records::transaction(body, key)` |
use vtelehealth_plugin_sdk::records::{self, Purpose};
use vtelehealth_plugin_sdk::serde_json::{self, Value};
use vtelehealth_plugin_sdk::{Error, Plugin, Request, Response, export_plugin, json};

struct Probe;

fn purpose(req: &Request) -> Result<Purpose, Error> {
    match req.query_param("purpose").as_deref() {
        None | Some("treatment") => Ok(Purpose::Treatment),
        Some("payment") => Ok(Purpose::Payment),
        Some("public-health") => Ok(Purpose::PublicHealth),
        Some(other) => Err(Error::bad_request(format!("unknown purpose `{other}`"))),
    }
}

fn body(req: &Request) -> Result<Value, Error> {
    serde_json::from_slice(&req.body).map_err(|e| Error::bad_request(format!("body: {e}")))
}

impl Plugin for Probe {
    fn handle(req: Request) -> Result<Response, Error> {
        let purpose = purpose(&req)?;
        let segments: Vec<String> = req.segments().iter().map(|s| s.to_string()).collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (req.method(), segments.as_slice()) {
            ("POST", ["create"]) => Ok(Response::ok_json(&records::create(&body(&req)?, purpose)?)),
            ("GET", ["read", ty, id]) => Ok(Response::ok_json(&records::read(ty, id, purpose)?)),
            ("PUT", ["update"]) => {
                let if_match = req.query_param("if-match").and_then(|v| v.parse().ok());
                Ok(Response::ok_json(&records::update(
                    &body(&req)?,
                    if_match,
                    purpose,
                )?))
            }
            ("GET", ["search", ty]) => {
                let q = req.query_param("q").unwrap_or_default();
                let page = records::search(ty, &q, purpose)?;
                Ok(Response::ok_json(&json!({
                    "total": page.total,
                    "resources": page.resources,
                    "next_offset": page.next_offset,
                })))
            }
            ("POST", ["transaction"]) => {
                let key = req.query_param("key");
                Ok(Response::ok_json(&records::transaction(
                    &body(&req)?,
                    key.as_deref(),
                    purpose,
                )?))
            }
            // Never granted `records:consultation`: always refused.
            ("POST", ["consult"]) => {
                let c = records::request_consultation(
                    req.query_param("national_id").as_deref(),
                    None,
                    "probe",
                )?;
                Ok(Response::ok_json(&json!({ "id": c.id })))
            }
            _ => Err(Error::not_found(format!(
                "no route for {} {}",
                req.method(),
                req.path()
            ))),
        }
    }
}

export_plugin!(Probe);
