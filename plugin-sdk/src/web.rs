//! Plugin pages: static assets embedded in the component and JSON routes, side by side.
//!
//! A plugin page is an HTML document the plugin serves itself (the consoles show it in a
//! sandboxed frame, see the plugin guide's "Plugin pages"). Its HTML, CSS and JavaScript are
//! compiled into the component with `include_str!`/`include_bytes!`, described by
//! [`Asset`]s, and served by a [`Router`] next to the plugin's JSON routes:
//!
//! ```no_run
//! use vtelehealth_plugin_sdk::web::{Asset, Params, Router};
//! use vtelehealth_plugin_sdk::{Error, Plugin, Request, Response, json};
//!
//! const ASSETS: &[Asset] = &[
//!     Asset::html("/ui/notes.html", "<!doctype html><title>Ghi chú</title><script src=\"vth.js\"></script>"),
//!     Asset::js("/ui/vth.js", vtelehealth_plugin_sdk::web::PAGE_SCRIPT),
//! ];
//!
//! fn note(_req: &Request, params: &Params) -> Result<Response, Error> {
//!     Ok(Response::ok_json(&json!({ "id": params.get("id") })))
//! }
//!
//! struct Notes;
//! impl Plugin for Notes {
//!     fn handle(req: Request) -> Result<Response, Error> {
//!         Router::new()
//!             .assets(ASSETS)
//!             .get("/notes/{id}", note)
//!             .handle(&req)
//!     }
//! }
//! ```
//!
//! Every path served (assets included) must also be a declared route of the manifest: the
//! host answers 404 for anything else before the plugin runs. One template route
//! `path = "/ui/{file}"`, `methods = ["GET"]` covers all the assets under `/ui/`.

use crate::{Error, Request, Response};

/// The page helper script, to serve as one of the plugin's assets (conventionally
/// `/ui/vth.js`). It gives a page `vth.lang` (`"vi"` or `"en"`, from the frame URL's
/// `lang`), `vth.url(path)` (a path below the plugin's mount point, under the page's own
/// credential whether it runs in a console frame or on the plugin's own address),
/// `vth.json(method, path, body)` (a JSON call to the plugin's own routes; an error answer
/// throws an `Error` with the plugin's message), `vth.text(method, path, body, type)`, `vth.t(dict)`
/// (the string of the page's language) and `vth.when(ms)` (a time in Asia/Ho_Chi_Minh).
pub const PAGE_SCRIPT: &str = include_str!("page.js");

/// The consoles' look for a page (buttons, tables that stack on phones, messages), to serve
/// as one of the plugin's assets (conventionally `/ui/vth.css`).
pub const PAGE_STYLE: &str = include_str!("page.css");

/// A file embedded in the component and served at `path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// The path below the plugin's mount point, e.g. `/ui/counter.html`.
    pub path: &'static str,
    /// The `content-type` it is served with.
    pub content_type: &'static str,
    /// The bytes.
    pub body: &'static [u8],
}

impl Asset {
    /// An asset with an explicit content type.
    pub const fn new(path: &'static str, content_type: &'static str, body: &'static [u8]) -> Self {
        Self {
            path,
            content_type,
            body,
        }
    }

    /// An HTML document (`text/html; charset=utf-8`).
    pub const fn html(path: &'static str, body: &'static str) -> Self {
        Self::new(path, "text/html; charset=utf-8", body.as_bytes())
    }

    /// A stylesheet (`text/css; charset=utf-8`).
    pub const fn css(path: &'static str, body: &'static str) -> Self {
        Self::new(path, "text/css; charset=utf-8", body.as_bytes())
    }

    /// A script (`text/javascript; charset=utf-8`).
    pub const fn js(path: &'static str, body: &'static str) -> Self {
        Self::new(path, "text/javascript; charset=utf-8", body.as_bytes())
    }

    /// Any file, its content type from the path's extension ([`content_type_for`]), e.g.
    /// `Asset::file("/ui/logo.png", include_bytes!("../ui/logo.png"))`.
    pub const fn file(path: &'static str, body: &'static [u8]) -> Self {
        Self::new(path, content_type_for(path), body)
    }

    /// The asset as a 200 response: its content type, `cache-control: no-cache`.
    pub fn response(&self) -> Response {
        Response::bytes(200, self.content_type, self.body.to_vec())
            .with_header("cache-control", "no-cache")
    }
}

/// Extensions and their content types, for [`content_type_for`].
const TYPES: &[(&str, &str)] = &[
    (".html", "text/html; charset=utf-8"),
    (".htm", "text/html; charset=utf-8"),
    (".css", "text/css; charset=utf-8"),
    (".js", "text/javascript; charset=utf-8"),
    (".mjs", "text/javascript; charset=utf-8"),
    (".json", "application/json"),
    (".svg", "image/svg+xml"),
    (".png", "image/png"),
    (".jpg", "image/jpeg"),
    (".jpeg", "image/jpeg"),
    (".webp", "image/webp"),
    (".ico", "image/x-icon"),
    (".woff2", "font/woff2"),
    (".txt", "text/plain; charset=utf-8"),
];

/// The content type of a file by its extension (case-insensitive): html, css, js/mjs, json,
/// svg, png, jpg/jpeg, webp, ico, woff2, txt; anything else is `application/octet-stream`.
/// A `const fn`, so [`Asset::file`] works in a `const` table.
pub const fn content_type_for(path: &str) -> &'static str {
    let path = path.as_bytes();
    let mut i = 0;
    while i < TYPES.len() {
        let ext = TYPES[i].0.as_bytes();
        if path.len() > ext.len() {
            let start = path.len() - ext.len();
            let mut j = 0;
            while j < ext.len() && path[start + j].to_ascii_lowercase() == ext[j] {
                j += 1;
            }
            if j == ext.len() {
                return TYPES[i].1;
            }
        }
        i += 1;
    }
    "application/octet-stream"
}

/// The `{name}` segments of a matched route template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The raw (still percent-encoded) segment matched by `{name}`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Handler<'a> = Box<dyn Fn(&Request, &Params) -> Result<Response, Error> + 'a>;

/// Routes by method and path template, with the same templates as the manifest's
/// `[[routes]]` (literal segments and `{name}` segments matching one segment), plus
/// embedded [`Asset`]s answered to `GET` and `HEAD`. A path that matches but not for the
/// method is a 405, anything else a 404, in the SDK's JSON error shape.
#[derive(Default)]
pub struct Router<'a> {
    routes: Vec<(&'static str, &'static str, Handler<'a>)>,
    assets: &'static [Asset],
}

impl<'a> Router<'a> {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve these embedded files.
    pub fn assets(mut self, assets: &'static [Asset]) -> Self {
        self.assets = assets;
        self
    }

    /// A handler for `method` (upper case) on the path template `template`.
    pub fn route(
        mut self,
        method: &'static str,
        template: &'static str,
        handler: impl Fn(&Request, &Params) -> Result<Response, Error> + 'a,
    ) -> Self {
        self.routes.push((method, template, Box::new(handler)));
        self
    }

    /// `GET template`.
    pub fn get(
        self,
        template: &'static str,
        handler: impl Fn(&Request, &Params) -> Result<Response, Error> + 'a,
    ) -> Self {
        self.route("GET", template, handler)
    }

    /// `POST template`.
    pub fn post(
        self,
        template: &'static str,
        handler: impl Fn(&Request, &Params) -> Result<Response, Error> + 'a,
    ) -> Self {
        self.route("POST", template, handler)
    }

    /// `PUT template`.
    pub fn put(
        self,
        template: &'static str,
        handler: impl Fn(&Request, &Params) -> Result<Response, Error> + 'a,
    ) -> Self {
        self.route("PUT", template, handler)
    }

    /// `DELETE template`.
    pub fn delete(
        self,
        template: &'static str,
        handler: impl Fn(&Request, &Params) -> Result<Response, Error> + 'a,
    ) -> Self {
        self.route("DELETE", template, handler)
    }

    /// Answer `req`: an asset, the first route matching its method and path, or an error.
    pub fn handle(&self, req: &Request) -> Result<Response, Error> {
        let segments = req.segments();
        let method = req.method();
        if let Some(asset) = self
            .assets
            .iter()
            .find(|a| split(a.path) == segments.as_slice())
        {
            return match method {
                "GET" => Ok(asset.response()),
                "HEAD" => Ok(asset.response().with_body(Vec::new())),
                _ => Err(Error::method_not_allowed(format!(
                    "{method} is not allowed on {}: use GET",
                    req.path()
                ))),
            };
        }
        let mut allowed = Vec::new();
        for (m, template, handler) in &self.routes {
            if let Some(params) = matches(template, &segments) {
                if *m == method {
                    return handler(req, &params);
                }
                allowed.push(*m);
            }
        }
        if allowed.is_empty() {
            Err(Error::not_found(format!(
                "no route {method} {}",
                req.path()
            )))
        } else {
            Err(Error::method_not_allowed(format!(
                "{method} is not allowed on {}: use {}",
                req.path(),
                allowed.join(", ")
            )))
        }
    }
}

fn split(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// The parameters of `template` when `segments` fit it.
fn matches(template: &str, segments: &[&str]) -> Option<Params> {
    let template = split(template);
    if template.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (t, s) in template.iter().zip(segments) {
        match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            Some(name) => params.push((name.to_owned(), (*s).to_owned())),
            None if t == s => {}
            None => return None,
        }
    }
    Some(Params(params))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSETS: &[Asset] = &[
        Asset::html("/ui/page.html", "<p>Xin chào</p>"),
        Asset::css("/ui/page.css", "p{}"),
        Asset::file("/ui/logo.SVG", b"<svg/>"),
    ];

    fn req(method: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            ..Request::default()
        }
    }

    fn router() -> Router<'static> {
        Router::new()
            .assets(ASSETS)
            .get("/orders", |_, _| Ok(Response::ok_text("list")))
            .post("/orders/{id}/cancel", |_, p| {
                Ok(Response::ok_text(format!(
                    "cancel {}",
                    p.get("id").unwrap_or("")
                )))
            })
    }

    #[test]
    fn assets_and_routes_side_by_side() {
        let r = router();
        let page = r.handle(&req("GET", "/ui/page.html")).expect("page");
        assert_eq!(page.body, "<p>Xin chào</p>".as_bytes());
        assert!(
            page.headers
                .contains(&("content-type".into(), "text/html; charset=utf-8".into()))
        );
        let logo = r.handle(&req("GET", "/ui/logo.SVG")).expect("logo");
        assert!(
            logo.headers
                .contains(&("content-type".into(), "image/svg+xml".into()))
        );
        let head = r.handle(&req("HEAD", "/ui/page.css")).expect("head");
        assert!(head.body.is_empty() && head.status == 200);
        assert_eq!(
            r.handle(&req("GET", "/orders")).expect("list").body,
            b"list"
        );
        assert_eq!(
            r.handle(&req("POST", "//orders/dh-1/cancel/"))
                .expect("cancel")
                .body,
            b"cancel dh-1"
        );
        let err = |m, p| r.handle(&req(m, p)).expect_err(p).status();
        assert_eq!(err("POST", "/ui/page.html"), 405);
        assert_eq!(err("DELETE", "/orders"), 405);
        assert_eq!(err("GET", "/orders/dh-1"), 404);
        assert_eq!(err("GET", "/ui/other.html"), 404);
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(
            content_type_for("/ui/app.JS"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type_for("/ui/logo.svg"), "image/svg+xml");
        assert_eq!(content_type_for("/ui/noext"), "application/octet-stream");
        assert_eq!(content_type_for("/a.b/noext"), "application/octet-stream");
        assert_eq!(Asset::file("/x.png", b"").content_type, "image/png");
    }
}
