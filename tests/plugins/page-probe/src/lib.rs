//! TEST ONLY: a vendor's screens, served by the plugin's HTTP handler, for
//! the consoles' plugin frames (ADR 0011). Not a reference plugin.
//!
//! | route | page |
//! | --- | --- |
//! | `GET /` | greets the caller; a relative link, a form, and a script that reports whether it can reach the console's storage or DOM |
//! | `POST /notes` | stores the form's `note` for the hospital (kv) and shows it with who saved it |
//! | `GET /notes` | the stored note |
use vtelehealth_plugin_sdk::{Error, Plugin, Request, Response, export_plugin, identity, kv};

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
            _ => Err(Error::not_found(format!("no page {}", req.path()))),
        }
    }
}

export_plugin!(Pages);
