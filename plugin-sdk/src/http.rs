use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::exports::vtelehealth::platform::http_handler;
use crate::bindings::vtelehealth::platform::types::Header;

/// An HTTP request to the plugin, as routed by the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Upper-case method, e.g. `"GET"`.
    pub method: String,
    /// Path below the plugin's mount point (`/hospitals/{hospital}/plugins/{plugin}`),
    /// starting with `/`.
    pub path: String,
    /// Raw query string without the `?`, possibly empty.
    pub query: String,
    /// Headers as `(name, value)`; the host sends names in lower case.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
}

impl Request {
    /// The upper-case method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path below the plugin's mount point, starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The non-empty path segments: `/visits/history/` gives `["visits", "history"]` and `/`
    /// gives `[]`. Made for routing with slice patterns:
    ///
    /// ```no_run
    /// # use vtelehealth_plugin_sdk::{Error, Request, Response};
    /// # fn route(req: Request) -> Result<Response, Error> {
    /// match (req.method(), req.segments().as_slice()) {
    ///     ("GET", []) => Ok(Response::ok_text("home")),
    ///     ("GET", ["patients", id]) => Ok(Response::ok_text(format!("patient {id}"))),
    ///     (_, ["patients", _]) => Err(Error::method_not_allowed("use GET")),
    ///     _ => Err(Error::not_found(req.path())),
    /// }
    /// # }
    /// ```
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }

    /// The first header named `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter named `name`, percent-decoded (`+` is a space).
    /// `Some("")` for `?flag` or `?flag=`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// All query parameters, percent-decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(n), percent_decode(v))
            })
            .collect()
    }

    /// The body parsed as JSON; a malformed body is a 400 [`Error::BadRequest`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::bad_request(format!("invalid JSON body: {e}")))
    }

    /// The body as UTF-8 text; invalid UTF-8 is a 400 [`Error::BadRequest`].
    pub fn text(&self) -> Result<&str, Error> {
        core::str::from_utf8(&self.body)
            .map_err(|e| Error::bad_request(format!("body is not UTF-8: {e}")))
    }
}

impl From<http_handler::Request> for Request {
    fn from(req: http_handler::Request) -> Self {
        Self {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: req.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            body: req.body,
        }
    }
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP response from the plugin. Bodies above the host's limit (8 MiB by default) are
/// refused by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers as `(name, value)`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `value` serialized as JSON, with `content-type: application/json`. A value that
    /// cannot be serialized gives a 500 error response instead.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::bytes(status, "application/json", body),
            Err(e) => {
                Error::internal(format!("cannot serialize the response: {e}")).into_response()
            }
        }
    }

    /// A 200 JSON response.
    pub fn ok_json<T: Serialize + ?Sized>(value: &T) -> Self {
        Self::json(200, value)
    }

    /// A text response with `content-type: text/plain; charset=utf-8`.
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self::bytes(
            status,
            "text/plain; charset=utf-8",
            text.into().into_bytes(),
        )
    }

    /// A 200 text response.
    pub fn ok_text(text: impl Into<String>) -> Self {
        Self::text(200, text)
    }

    /// A response with the given content type and body.
    pub fn bytes(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status)
            .with_header("content-type", content_type)
            .with_body(body)
    }

    /// A 204 No Content response.
    pub fn no_content() -> Self {
        Self::new(204)
    }

    /// Add a header (the name is lower-cased).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Replace the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Replace the status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
}

impl From<Response> for http_handler::Response {
    fn from(res: Response) -> Self {
        Self {
            status: res.status,
            headers: res
                .headers
                .into_iter()
                .map(|(name, value)| Header { name, value })
                .collect(),
            body: res.body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_decode() {
        let req = Request {
            query: "name=Nguy%E1%BB%85n+V%C4%83n&flag&x=%zz&a=1=2".into(),
            ..Request::default()
        };
        assert_eq!(req.query_param("name").as_deref(), Some("Nguyễn Văn"));
        assert_eq!(req.query_param("flag").as_deref(), Some(""));
        assert_eq!(req.query_param("x").as_deref(), Some("%zz"));
        assert_eq!(req.query_param("a").as_deref(), Some("1=2"));
        assert_eq!(req.query_param("missing"), None);
    }

    #[test]
    fn segments() {
        let mut req = Request {
            path: "/visits//history/".into(),
            ..Request::default()
        };
        assert_eq!(req.segments(), ["visits", "history"]);
        req.path = "/".into();
        assert!(req.segments().is_empty());
    }
}
