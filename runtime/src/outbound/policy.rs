//! Destinations, their resolution at activation, and the checks on every
//! URL, resolved address and redirect. See `docs/outbound.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most destinations one manifest may declare.
pub const MAX_DESTINATIONS: usize = 32;
/// Longest destination pattern or placeholder value, in bytes.
const MAX_PATTERN_BYTES: usize = 512;
/// Longest placeholder name (`{config.<name>}`), in bytes.
const MAX_PLACEHOLDER_NAME: usize = 64;
/// Most redirects one outbound request follows.
pub const MAX_REDIRECTS: usize = 5;

/// The two schemes a destination may name. Plain `http` is accepted in a
/// manifest but refused at request time unless the operator allows the
/// origin for development ([`CheckOptions::plain_http_origins`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Https,
    Http,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Http => "http",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "https" => Some(Self::Https),
            "http" => Some(Self::Http),
            _ => None,
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Https => 443,
            Self::Http => 80,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Scheme, host and port, compared exactly. The host is lower-case, without
/// a trailing dot; an IPv6 address is in brackets, as in a URL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Origin {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// The origin of a parsed URL (`None` when it has no host or a scheme
    /// other than http(s)). A trailing dot of the host is dropped.
    fn of(url: &Url) -> Option<Self> {
        let scheme = Scheme::parse(url.scheme())?;
        let host = normal_host(url.host_str()?);
        let port = url.port().unwrap_or(scheme.default_port());
        Some(Self { scheme, host, port })
    }

    /// Parse an operator's origin such as `http://localhost:8080`: a
    /// scheme, a host and an optional port, nothing else.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
        let origin = Self::of(&url).ok_or_else(|| format!("`{text}` is not an http(s) origin"))?;
        if !url.username().is_empty()
            || url.password().is_some()
            || url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(format!(
                "`{text}` is not a plain origin (scheme://host[:port])"
            ));
        }
        Ok(origin)
    }

    /// The host as an address, when it is an address literal.
    pub fn ip(&self) -> Option<IpAddr> {
        host_ip(&self.host)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// A concrete destination: an origin and an optional path prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FixedDestination {
    pub origin: Origin,
    /// `/fhir` in `https://his.example.vn/fhir`: only that path and the
    /// paths below it (segment-wise: `/fhir2` is not below `/fhir`). Never
    /// ends with `/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
}

impl FixedDestination {
    /// Whether `path` (a parsed URL's normalised path) is the prefix or below it.
    /// An escaped `/` or `\` (`%2F`, `%5C`) is refused under a prefix: a
    /// server that decodes them before routing would read other segments.
    fn admits_path(&self, path: &str) -> bool {
        match &self.path_prefix {
            None => true,
            Some(prefix) => {
                let lower = path.to_ascii_lowercase();
                let escaped_separator = lower.contains("%2f") || lower.contains("%5c");
                !escaped_separator
                    && (path == prefix
                        || path
                            .strip_prefix(prefix.as_str())
                            .is_some_and(|rest| rest.starts_with('/')))
            }
        }
    }
}

impl fmt::Display for FixedDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(prefix) = &self.path_prefix {
            f.write_str(prefix)?;
        }
        Ok(())
    }
}

/// Where a manifest lets the plugin connect: one origin, or a placeholder
/// for the host part that each hospital fills in at activation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum DestinationPattern {
    Fixed(FixedDestination),
    /// `https://{config.<name>}`: the `<name>` key of the activation's
    /// configuration gives `host[:port][/path]`.
    Placeholder {
        scheme: Scheme,
        name: String,
    },
}

impl fmt::Display for DestinationPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(d) => d.fmt(f),
            Self::Placeholder { scheme, name } => write!(f, "{scheme}://{{config.{name}}}"),
        }
    }
}

/// One destination of a manifest, with what the plugin sends there and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination {
    pub pattern: DestinationPattern,
    /// Why the plugin connects there, in Vietnamese (shown to reviewers and
    /// hospital admins); required.
    pub purpose_vi: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose_en: Option<String>,
}

/// A destination as a manifest would write it (the manifest does not read
/// destinations yet; see `docs/outbound.md`):
///
/// ```toml
/// [[outbound]]
/// url = "https://{config.his_base_url}"
/// purpose = { vi = "Gửi kết luận hội chẩn về HIS của bệnh viện", en = "Send conclusions to the hospital's HIS" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    pub url: String,
    pub purpose: RawPurpose,
}

/// A destination's purpose: Vietnamese required, English optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPurpose {
    pub vi: String,
    #[serde(default)]
    pub en: Option<String>,
}

/// Why a manifest's destination was refused. Each message names the pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("destination `{pattern}`: {reason}")]
    Malformed { pattern: String, reason: String },
    #[error("destination `{pattern}`: name the scheme, e.g. `https://{pattern}`")]
    MissingScheme { pattern: String },
    #[error(
        "destination `{pattern}`: scheme `{scheme}` is not allowed; only https (and http for development)"
    )]
    UnsupportedScheme { pattern: String, scheme: String },
    #[error(
        "destination `{pattern}`: user names and passwords in a destination are not allowed; the host adds credentials from the activation's secrets"
    )]
    Userinfo { pattern: String },
    #[error("destination `{pattern}`: wildcards are not allowed; list each host")]
    Wildcard { pattern: String },
    #[error(
        "destination `{pattern}`: `{placeholder}` is not a placeholder; write `{{config.<name>}}` with a name of a-z, 0-9 and '_'"
    )]
    BadPlaceholder {
        pattern: String,
        placeholder: String,
    },
    #[error(
        "destination `{pattern}`: a placeholder must be the whole part after `https://` (host, port and path), e.g. `https://{{config.his_base_url}}`"
    )]
    PlaceholderPosition { pattern: String },
    #[error("destination `{pattern}`: write the host as `{canonical}`")]
    NotCanonical { pattern: String, canonical: String },
    #[error("destination `{pattern}`: the purpose in Vietnamese (`purpose.vi`) is empty")]
    MissingPurpose { pattern: String },
    #[error("destination `{pattern}` is declared twice")]
    Duplicate { pattern: String },
    #[error("{count} destinations declared; at most {MAX_DESTINATIONS}")]
    TooMany { count: usize },
}

/// Why an activation's configuration does not give a destination. Shown to
/// the hospital admin, so it names the configuration key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("configuration `{name}` is missing; destination `{pattern}` needs it")]
    Missing { name: String, pattern: String },
    #[error("configuration `{name}` must be a string (a host, optionally with port and path)")]
    NotAString { name: String },
    #[error(
        "configuration `{name}` = `{value}` is not a plain address of a server ({reason}); write e.g. `his.benhvien.vn` or `his.benhvien.vn:8443/fhir`"
    )]
    NotPlainOrigin {
        name: String,
        value: String,
        reason: String,
    },
}

/// A destination of one activation: a concrete origin and path prefix,
/// whether private addresses are allowed for it, and which manifest
/// destination it came from (for the audit trail and metrics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowedOrigin {
    pub destination: FixedDestination,
    /// The hospital allowed this destination to resolve to a private,
    /// loopback or link-local address (its own HIS on its network).
    pub allow_private: bool,
    /// The manifest's pattern, as [`DestinationPattern`]'s `Display` writes it.
    pub pattern: String,
}

/// The operator's settings for the checks.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Origins that may be reached over plain `http`, for development only
    /// (a local stand-in service). Still only when granted.
    pub plain_http_origins: BTreeSet<Origin>,
}

/// A URL that passed [`check_url`]. Connect with `url` as it is: it is the
/// parsed form the checks saw, so no second parser can read it differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: Url,
    pub origin: Origin,
    /// The destination of the activation that admitted the URL.
    pub allowed: AllowedOrigin,
    /// The host was an address literal (already checked).
    pub literal_ip: Option<IpAddr>,
}

impl Target {
    /// Whether the addresses the host resolved to may be connected to.
    pub fn check_addresses(&self, addrs: &[IpAddr]) -> Result<(), OutboundDenied> {
        check_addresses(addrs, self.allowed.allow_private)
    }
}

/// A redirect that passed [`check_redirect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub target: Target,
    /// The redirect leaves the origin: the host must not carry the previous
    /// destination's credentials to it.
    pub cross_origin: bool,
}

/// Why an outbound request was refused. Messages name the origin, never
/// the path or query (they may carry patients' data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundDenied {
    #[error("not a valid URL: {0}")]
    Malformed(String),
    #[error("scheme `{0}` is not allowed; only https")]
    UnsupportedScheme(String),
    #[error("user names and passwords in the URL are not allowed")]
    Userinfo,
    #[error("the URL has no host")]
    NoHost,
    #[error("{origin}: plain http is refused; use https")]
    PlainHttp { origin: String },
    #[error("{origin}: not a destination granted to this plugin at this hospital")]
    NotGranted { origin: String },
    #[error("address {address} is {range}: refused")]
    Address {
        address: IpAddr,
        range: &'static str,
    },
    #[error(
        "address {address} is {range}: refused unless the hospital allowed private addresses for this destination"
    )]
    PrivateAddress {
        address: IpAddr,
        range: &'static str,
    },
    #[error("the host resolved to no address")]
    NoAddress,
    #[error("redirect without a usable Location: {0}")]
    BadRedirect(String),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
}

// ---------------------------------------------------------------------------
// Manifest destinations

impl Destination {
    /// The configuration key a placeholder destination reads, so the
    /// manifest's checks can ask its configuration schema to declare it.
    pub fn config_key(&self) -> Option<&str> {
        match &self.pattern {
            DestinationPattern::Fixed(_) => None,
            DestinationPattern::Placeholder { name, .. } => Some(name),
        }
    }

    /// Check one destination of a manifest.
    pub fn parse(
        pattern: &str,
        purpose_vi: &str,
        purpose_en: Option<&str>,
    ) -> Result<Self, DestinationError> {
        let parsed = DestinationPattern::parse(pattern)?;
        if purpose_vi.trim().is_empty() {
            return Err(DestinationError::MissingPurpose {
                pattern: pattern.to_owned(),
            });
        }
        Ok(Self {
            pattern: parsed,
            purpose_vi: purpose_vi.trim().to_owned(),
            purpose_en: purpose_en
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        })
    }
}

/// Check a manifest's destinations: each one, their number, no duplicates.
pub fn parse_destinations(raw: &[RawDestination]) -> Result<Vec<Destination>, DestinationError> {
    if raw.len() > MAX_DESTINATIONS {
        return Err(DestinationError::TooMany { count: raw.len() });
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let d = Destination::parse(&r.url, &r.purpose.vi, r.purpose.en.as_deref())?;
        if !seen.insert(d.pattern.clone()) {
            return Err(DestinationError::Duplicate {
                pattern: d.pattern.to_string(),
            });
        }
        out.push(d);
    }
    Ok(out)
}

impl DestinationPattern {
    /// Parse `https://host[:port][/path]` or `https://{config.<name>}`.
    pub fn parse(text: &str) -> Result<Self, DestinationError> {
        let malformed = |reason: &str| DestinationError::Malformed {
            pattern: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(malformed("empty"));
        }
        if text.len() > MAX_PATTERN_BYTES {
            return Err(malformed("too long"));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(malformed("contains spaces or control characters"));
        }
        if text.contains('*') {
            return Err(DestinationError::Wildcard {
                pattern: text.to_owned(),
            });
        }
        let Some((scheme_text, rest)) = text.split_once("://") else {
            return Err(DestinationError::MissingScheme {
                pattern: text.to_owned(),
            });
        };
        let Some(scheme) = Scheme::parse(&scheme_text.to_ascii_lowercase()) else {
            return Err(DestinationError::UnsupportedScheme {
                pattern: text.to_owned(),
                scheme: scheme_text.to_owned(),
            });
        };
        if rest.contains('{') || rest.contains('}') {
            return parse_placeholder(text, scheme, rest);
        }
        parse_fixed(scheme, rest)
            .map(Self::Fixed)
            .map_err(|e| match e {
                FixedError::Userinfo => DestinationError::Userinfo {
                    pattern: text.to_owned(),
                },
                FixedError::NotCanonical(canonical) => DestinationError::NotCanonical {
                    pattern: text.to_owned(),
                    canonical,
                },
                FixedError::Malformed(reason) => malformed(&reason),
            })
    }
}

fn parse_placeholder(
    text: &str,
    scheme: Scheme,
    rest: &str,
) -> Result<DestinationPattern, DestinationError> {
    let whole = rest.starts_with('{')
        && rest.ends_with('}')
        && rest.matches('{').count() == 1
        && rest.matches('}').count() == 1;
    if !whole {
        return Err(DestinationError::PlaceholderPosition {
            pattern: text.to_owned(),
        });
    }
    let inner = &rest[1..rest.len() - 1];
    match inner.strip_prefix("config.") {
        Some(name) if is_placeholder_name(name) => Ok(DestinationPattern::Placeholder {
            scheme,
            name: name.to_owned(),
        }),
        _ => Err(DestinationError::BadPlaceholder {
            pattern: text.to_owned(),
            placeholder: rest.to_owned(),
        }),
    }
}

fn is_placeholder_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PLACEHOLDER_NAME
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

enum FixedError {
    Userinfo,
    NotCanonical(String),
    Malformed(String),
}

/// Parse `host[:port][/path]` after `scheme://`, strictly: the written
/// host must be the one a URL parser reads (no percent-escapes, no
/// numeric IPv4 forms, no Unicode spelling of a name), so what a reviewer
/// reads is where the connection goes.
fn parse_fixed(scheme: Scheme, rest: &str) -> Result<FixedDestination, FixedError> {
    if rest.contains('\\') {
        return Err(FixedError::Malformed("contains a backslash".into()));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(FixedError::Userinfo);
    }
    if after.contains('?') || after.contains('#') {
        return Err(FixedError::Malformed(
            "a destination has no query or fragment".into(),
        ));
    }
    if authority.is_empty() {
        return Err(FixedError::Malformed("no host".into()));
    }
    let url = Url::parse(&format!("{scheme}://{rest}"))
        .map_err(|e| FixedError::Malformed(format!("not a URL: {e}")))?;
    let Some(origin) = Origin::of(&url) else {
        return Err(FixedError::Malformed("no host".into()));
    };
    // The host as written, without its port.
    let written_host = if authority.starts_with('[') {
        authority
            .find(']')
            .map_or(authority, |end| &authority[..=end])
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    if normal_host(&written_host.to_ascii_lowercase()) != origin.host {
        return Err(FixedError::NotCanonical(origin.host));
    }
    let written_path = after.trim_end_matches('/');
    let path = url.path().trim_end_matches('/');
    if written_path != path {
        return Err(FixedError::Malformed(format!(
            "write the path as `{path}` (no `.` or `..` segments, no escapes of plain characters)"
        )));
    }
    Ok(FixedDestination {
        origin,
        path_prefix: (!path.is_empty()).then(|| path.to_owned()),
    })
}

/// Lower-case, and without one trailing dot (`api.vendor.vn.` is the same
/// DNS name as `api.vendor.vn`).
fn normal_host(host: &str) -> String {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

fn host_ip(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

// ---------------------------------------------------------------------------
// Activation

/// The concrete destinations of one activation: fixed ones as they are,
/// placeholders filled from `config` (the activation's configuration
/// document). `allow_private` holds the patterns (as `Display` writes them)
/// the hospital allowed to reach private addresses.
pub fn resolve_destinations(
    destinations: &[Destination],
    config: &Value,
    allow_private: &BTreeSet<String>,
) -> Result<Vec<AllowedOrigin>, ResolveError> {
    let mut out: BTreeMap<FixedDestination, AllowedOrigin> = BTreeMap::new();
    for d in destinations {
        let pattern = d.pattern.to_string();
        let destination = match &d.pattern {
            DestinationPattern::Fixed(f) => f.clone(),
            DestinationPattern::Placeholder { scheme, name } => {
                let value = match config.get(name) {
                    None | Some(Value::Null) => {
                        return Err(ResolveError::Missing {
                            name: name.clone(),
                            pattern,
                        });
                    }
                    Some(Value::String(s)) => s,
                    Some(_) => return Err(ResolveError::NotAString { name: name.clone() }),
                };
                resolve_value(*scheme, value).map_err(|reason| ResolveError::NotPlainOrigin {
                    name: name.clone(),
                    value: value.clone(),
                    reason,
                })?
            }
        };
        let private = allow_private.contains(&pattern);
        // Two patterns giving the same destination: private addresses are
        // allowed when either allows them.
        out.entry(destination.clone())
            .and_modify(|a| a.allow_private |= private)
            .or_insert(AllowedOrigin {
                destination,
                allow_private: private,
                pattern,
            });
    }
    Ok(out.into_values().collect())
}

/// A placeholder's value: `host[:port][/path]`, or the same prefixed with
/// the pattern's own scheme. Only the characters of a host name, an
/// address literal, a port and plain path segments are accepted.
fn resolve_value(scheme: Scheme, value: &str) -> Result<FixedDestination, String> {
    if value.is_empty() {
        return Err("empty".into());
    }
    if value.len() > MAX_PATTERN_BYTES {
        return Err("too long".into());
    }
    let prefix = format!("{scheme}://");
    let rest = match value.get(..prefix.len()) {
        Some(p) if p.eq_ignore_ascii_case(&prefix) => &value[prefix.len()..],
        _ => value,
    };
    if rest.contains("://") {
        return Err(format!("only {scheme}:// may precede the host"));
    }
    if let Some(c) = rest.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~' | ':' | '/' | '[' | ']'))
    }) {
        return Err(format!("`{c}` is not allowed in it"));
    }
    parse_fixed(scheme, rest).map_err(|e| match e {
        FixedError::Userinfo => "a user name is not allowed".to_owned(),
        FixedError::NotCanonical(c) => format!("write the host as `{c}`"),
        FixedError::Malformed(reason) => reason,
    })
}

// ---------------------------------------------------------------------------
// Requests

/// Whether the plugin may request `url` under the activation's `allowed`
/// destinations. Checks, in order: it parses; http or https; no userinfo;
/// a host; an address literal is an allowed address; plain http only for
/// an origin the operator allows for development; an allowed destination
/// has the same scheme, host and port, and the path is within its prefix.
/// Names are resolved by the caller, who then calls
/// [`Target::check_addresses`] before connecting.
pub fn check_url(
    url: &str,
    allowed: &[AllowedOrigin],
    options: &CheckOptions,
) -> Result<Target, OutboundDenied> {
    let url = Url::parse(url).map_err(|e| OutboundDenied::Malformed(e.to_string()))?;
    check_parsed(url, allowed, options)
}

fn check_parsed(
    mut url: Url,
    allowed: &[AllowedOrigin],
    options: &CheckOptions,
) -> Result<Target, OutboundDenied> {
    if Scheme::parse(url.scheme()).is_none() {
        return Err(OutboundDenied::UnsupportedScheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OutboundDenied::Userinfo);
    }
    let origin = Origin::of(&url).ok_or(OutboundDenied::NoHost)?;
    // Connect to the name without its trailing dot: the name reviewed.
    if url.host_str() != Some(origin.host.as_str()) {
        url.set_host(Some(origin.host.as_str()))
            .map_err(|e| OutboundDenied::Malformed(e.to_string()))?;
    }
    url.set_fragment(None);
    let matched = allowed
        .iter()
        .find(|a| a.destination.origin == origin && a.destination.admits_path(url.path()));
    let literal_ip = origin.ip();
    if let Some(ip) = literal_ip {
        check_addresses(&[ip], matched.is_some_and(|a| a.allow_private))?;
    }
    if origin.scheme == Scheme::Http && !options.plain_http_origins.contains(&origin) {
        return Err(OutboundDenied::PlainHttp {
            origin: origin.to_string(),
        });
    }
    let Some(matched) = matched else {
        return Err(OutboundDenied::NotGranted {
            origin: origin.to_string(),
        });
    };
    Ok(Target {
        url,
        origin,
        allowed: matched.clone(),
        literal_ip,
    })
}

/// Whether to follow a redirect from `current` (the URL just requested) to
/// its `Location`, relative or absolute: the target passes [`check_url`]
/// like a first request. `followed` is the number of redirects already
/// followed for this request. The caller resolves the new host and calls
/// [`Target::check_addresses`] again, and drops the previous destination's
/// credentials when [`Redirect::cross_origin`].
pub fn check_redirect(
    current: &Url,
    location: &str,
    followed: usize,
    allowed: &[AllowedOrigin],
    options: &CheckOptions,
) -> Result<Redirect, OutboundDenied> {
    if followed >= MAX_REDIRECTS {
        return Err(OutboundDenied::TooManyRedirects);
    }
    if location.trim().is_empty() {
        return Err(OutboundDenied::BadRedirect("empty Location".into()));
    }
    let next = current
        .join(location)
        .map_err(|e| OutboundDenied::BadRedirect(e.to_string()))?;
    let target = check_parsed(next, allowed, options)?;
    let cross_origin = Origin::of(current).as_ref() != Some(&target.origin);
    Ok(Redirect {
        target,
        cross_origin,
    })
}

// ---------------------------------------------------------------------------
// Addresses

/// What an address is, for outbound connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// A public address: always allowed.
    Public,
    /// Loopback, private, link-local, shared (CGNAT) and the like: allowed
    /// only for a destination the hospital allowed private addresses for.
    NonPublic(&'static str),
    /// Never a server to connect to (unspecified, multicast, broadcast,
    /// documentation, reserved, the cloud metadata address): always refused.
    Never(&'static str),
}

/// Whether every address a host resolved to may be connected to. All must
/// pass, whichever the connection would pick; an empty list is refused.
pub fn check_addresses(addrs: &[IpAddr], allow_private: bool) -> Result<(), OutboundDenied> {
    if addrs.is_empty() {
        return Err(OutboundDenied::NoAddress);
    }
    for &address in addrs {
        match classify_address(address) {
            AddressClass::Public => {}
            AddressClass::NonPublic(_) if allow_private => {}
            AddressClass::NonPublic(range) => {
                return Err(OutboundDenied::PrivateAddress { address, range });
            }
            AddressClass::Never(range) => return Err(OutboundDenied::Address { address, range }),
        }
    }
    Ok(())
}

/// Classify one address; IPv6 forms that carry an IPv4 address (mapped,
/// NAT64, 6to4) are classified by that address.
pub fn classify_address(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(ip) & mask == u32::from_be_bytes(net) & mask
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass::{Never, NonPublic, Public};
    if ip.is_unspecified() {
        return Never("unspecified");
    }
    if in_v4(ip, [0, 0, 0, 0], 8) {
        return Never("\"this network\" (0.0.0.0/8)");
    }
    if ip.is_broadcast() {
        return Never("broadcast");
    }
    if ip.is_multicast() {
        return Never("multicast");
    }
    if in_v4(ip, [240, 0, 0, 0], 4) {
        return Never("reserved (240.0.0.0/4)");
    }
    if in_v4(ip, [192, 0, 2, 0], 24)
        || in_v4(ip, [198, 51, 100, 0], 24)
        || in_v4(ip, [203, 0, 113, 0], 24)
    {
        return Never("a documentation range");
    }
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        return Never("the cloud metadata address");
    }
    if in_v4(ip, [192, 0, 0, 0], 24) {
        return Never("IETF protocol assignments (192.0.0.0/24)");
    }
    if ip.is_loopback() {
        return NonPublic("loopback");
    }
    if in_v4(ip, [10, 0, 0, 0], 8)
        || in_v4(ip, [172, 16, 0, 0], 12)
        || in_v4(ip, [192, 168, 0, 0], 16)
    {
        return NonPublic("private (RFC 1918)");
    }
    if in_v4(ip, [169, 254, 0, 0], 16) {
        return NonPublic("link-local");
    }
    if in_v4(ip, [100, 64, 0, 0], 10) {
        return NonPublic("shared address space (CGNAT, 100.64.0.0/10)");
    }
    if in_v4(ip, [198, 18, 0, 0], 15) {
        return NonPublic("benchmarking (198.18.0.0/15)");
    }
    Public
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass::{Never, NonPublic, Public};
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if ip.is_unspecified() {
        return Never("unspecified");
    }
    if ip.is_loopback() {
        return NonPublic("loopback");
    }
    if s[..6] == [0; 6] {
        return Never("IPv4-compatible IPv6 (deprecated)");
    }
    if ip.is_multicast() {
        return Never("multicast");
    }
    // NAT64, well-known prefix 64:ff9b::/96: a gateway connects to the IPv4 inside.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return NonPublic("NAT64 local use (64:ff9b:1::/48)");
    }
    // 6to4, 2002::/16: the IPv4 address is in the next 32 bits.
    if s[0] == 0x2002 {
        return classify_v4(embedded_v4(s[1], s[2]));
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Never("Teredo (2001::/32)");
    }
    if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] & 0xf000 == 0) {
        return Never("a documentation range");
    }
    if s[..4] == [0x100, 0, 0, 0] {
        return Never("discard-only (100::/64)");
    }
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254) {
        return Never("the cloud metadata address");
    }
    if (s[0] & 0xfe00) == 0xfc00 {
        return NonPublic("private (unique local, fc00::/7)");
    }
    if (s[0] & 0xffc0) == 0xfe80 {
        return NonPublic("link-local");
    }
    if (s[0] & 0xffc0) == 0xfec0 {
        return NonPublic("site-local (deprecated, fec0::/10)");
    }
    if (s[0] & 0xe000) != 0x2000 {
        return Never("outside global unicast (2000::/3)");
    }
    Public
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixed(pattern: &str) -> Vec<AllowedOrigin> {
        let d = Destination::parse(pattern, "Gửi đơn thuốc", None).expect("pattern");
        resolve_destinations(&[d], &json!({}), &BTreeSet::new()).expect("resolve")
    }

    fn private(pattern: &str, config: Value) -> Vec<AllowedOrigin> {
        let d = Destination::parse(pattern, "HIS của bệnh viện", None).expect("pattern");
        let allow: BTreeSet<String> = [d.pattern.to_string()].into();
        resolve_destinations(&[d], &config, &allow).expect("resolve")
    }

    fn check(url: &str, allowed: &[AllowedOrigin]) -> Result<Target, OutboundDenied> {
        check_url(url, allowed, &CheckOptions::default())
    }

    fn parse_err(pattern: &str) -> DestinationError {
        DestinationPattern::parse(pattern).expect_err(pattern)
    }

    // --- manifest destinations -------------------------------------------

    #[test]
    fn fixed_origins_and_path_prefixes_parse() {
        let p = DestinationPattern::parse("https://api.vendor.vn").unwrap();
        assert_eq!(p.to_string(), "https://api.vendor.vn");
        let p = DestinationPattern::parse("https://api.vendor.vn:8443/v1/").unwrap();
        assert_eq!(p.to_string(), "https://api.vendor.vn:8443/v1");
        let DestinationPattern::Fixed(f) = p else {
            panic!("fixed")
        };
        assert_eq!(f.origin.port, 8443);
        assert_eq!(f.path_prefix.as_deref(), Some("/v1"));
        // The default port is the same origin; upper case and a trailing dot are normalised.
        assert_eq!(
            DestinationPattern::parse("HTTPS://API.Vendor.VN.:443").unwrap(),
            DestinationPattern::parse("https://api.vendor.vn").unwrap()
        );
        assert!(DestinationPattern::parse("http://localhost:8080").is_ok());
        assert!(DestinationPattern::parse("https://[2001:4860::1]:8443").is_ok());
    }

    #[test]
    fn placeholders_parse_only_as_the_whole_host_part() {
        assert_eq!(
            DestinationPattern::parse("https://{config.his_base_url}").unwrap(),
            DestinationPattern::Placeholder {
                scheme: Scheme::Https,
                name: "his_base_url".into()
            }
        );
        for p in [
            "https://{config.x}.vendor.vn",
            "https://api.vendor.vn/{config.path}",
            "https://{config.x}:8443",
            "https://{config.x}/fhir",
            "https://{config.a}{config.b}",
            "https://{{config.x}}",
            "https://x{config.y}",
        ] {
            assert!(
                matches!(parse_err(p), DestinationError::PlaceholderPosition { .. }),
                "{p}"
            );
        }
        for p in [
            "https://{env.API_KEY}",
            "https://{config.}",
            "https://{config.His}",
            "https://{config.a-b}",
            "https://{config.a.b}",
            "https://{}",
            "https://{secrets.token}",
        ] {
            assert!(
                matches!(parse_err(p), DestinationError::BadPlaceholder { .. }),
                "{p}: {:?}",
                parse_err(p)
            );
        }
    }

    #[test]
    fn malformed_patterns_are_refused_with_their_reason() {
        assert!(matches!(
            parse_err("https://user:pw@api.vendor.vn"),
            DestinationError::Userinfo { .. }
        ));
        assert!(matches!(
            parse_err("https://api.vendor.vn@evil.com"),
            DestinationError::Userinfo { .. }
        ));
        assert!(matches!(
            parse_err("https://*.vendor.vn"),
            DestinationError::Wildcard { .. }
        ));
        assert!(matches!(
            parse_err("https://api.vendor.vn/*"),
            DestinationError::Wildcard { .. }
        ));
        for scheme in ["ftp", "ws", "file", "smtp", "javascript"] {
            assert!(
                matches!(
                    parse_err(&format!("{scheme}://api.vendor.vn")),
                    DestinationError::UnsupportedScheme { .. }
                ),
                "{scheme}"
            );
        }
        assert!(matches!(
            parse_err("api.vendor.vn"),
            DestinationError::MissingScheme { .. }
        ));
        for p in [
            "",
            "https://",
            "https:///path",
            "https://api.vendor.vn/x?y=1",
            "https://api.vendor.vn#frag",
            "https://api vendor.vn",
            "https://api.vendor.vn\\evil.com",
            "https://api.vendor.vn/a/../b",
        ] {
            assert!(
                matches!(parse_err(p), DestinationError::Malformed { .. }),
                "{p}: {:?}",
                parse_err(p)
            );
        }
        // What a reviewer reads must be where the connection goes.
        for p in [
            "http://2130706433",
            "http://0x7f.1",
            "http://0177.0.0.1",
            "https://api%2evendor.vn",
            "https://[0:0::1]",
        ] {
            assert!(
                matches!(parse_err(p), DestinationError::NotCanonical { .. }),
                "{p}: {:?}",
                parse_err(p)
            );
        }
    }

    #[test]
    fn a_destination_needs_a_vietnamese_purpose_and_no_duplicates() {
        assert!(matches!(
            Destination::parse("https://api.vendor.vn", "  ", Some("Send")),
            Err(DestinationError::MissingPurpose { .. })
        ));
        let d = Destination::parse("https://api.vendor.vn", "Gửi đơn", Some(" ")).unwrap();
        assert_eq!(d.purpose_en, None);
        let raw = |url: &str| RawDestination {
            url: url.into(),
            purpose: RawPurpose {
                vi: "Gửi đơn".into(),
                en: None,
            },
        };
        assert!(matches!(
            parse_destinations(&[
                raw("https://api.vendor.vn"),
                raw("https://API.vendor.vn:443/")
            ]),
            Err(DestinationError::Duplicate { .. })
        ));
        let many: Vec<_> = (0..=MAX_DESTINATIONS)
            .map(|i| raw(&format!("https://h{i}.vendor.vn")))
            .collect();
        assert!(matches!(
            parse_destinations(&many),
            Err(DestinationError::TooMany { .. })
        ));
        // The manifest's TOML shape.
        #[derive(Deserialize)]
        struct M {
            outbound: Vec<RawDestination>,
        }
        let m: M = toml::from_str(
            "[[outbound]]\nurl = \"https://{config.his_base_url}\"\npurpose = { vi = \"Gửi kết luận về HIS\", en = \"HIS write-back\" }\n",
        )
        .unwrap();
        let parsed = parse_destinations(&m.outbound).unwrap();
        assert_eq!(parsed[0].purpose_en.as_deref(), Some("HIS write-back"));
        assert_eq!(parsed[0].config_key(), Some("his_base_url"));
        assert_eq!(d.config_key(), None);
    }

    // --- activation -------------------------------------------------------

    #[test]
    fn placeholders_resolve_from_the_activation_configuration() {
        let d = Destination::parse("https://{config.his_base_url}", "HIS", None).unwrap();
        for (value, expected) in [
            ("his.benhvien.vn", "https://his.benhvien.vn"),
            ("HIS.BenhVien.vn.", "https://his.benhvien.vn"),
            (
                "his.benhvien.vn:8443/fhir/",
                "https://his.benhvien.vn:8443/fhir",
            ),
            (
                "https://his.benhvien.vn/fhir",
                "https://his.benhvien.vn/fhir",
            ),
            ("10.0.0.5:8080", "https://10.0.0.5:8080"),
            ("[fd00::5]", "https://[fd00::5]"),
        ] {
            let allowed = resolve_destinations(
                std::slice::from_ref(&d),
                &json!({ "his_base_url": value }),
                &BTreeSet::new(),
            )
            .unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(allowed[0].destination.to_string(), expected, "{value}");
            assert_eq!(allowed[0].pattern, "https://{config.his_base_url}");
            assert!(!allowed[0].allow_private);
        }
    }

    #[test]
    fn placeholder_values_that_are_not_plain_origins_are_refused() {
        let d = Destination::parse("https://{config.his_base_url}", "HIS", None).unwrap();
        let resolve = |config: Value| {
            resolve_destinations(std::slice::from_ref(&d), &config, &BTreeSet::new())
        };
        assert!(matches!(
            resolve(json!({})),
            Err(ResolveError::Missing { .. })
        ));
        assert!(matches!(
            resolve(json!({ "his_base_url": null })),
            Err(ResolveError::Missing { .. })
        ));
        assert!(matches!(
            resolve(json!({ "his_base_url": 42 })),
            Err(ResolveError::NotAString { .. })
        ));
        for value in [
            // Injection: a path and a user name that would move the host.
            "evil.com/@good.vn",
            "good.vn@evil.com",
            "user:pw@his.benhvien.vn",
            "evil.com#.good.vn",
            "evil.com?.good.vn",
            "evil.com\\.good.vn",
            "evil.com%2f.good.vn",
            "his.benhvien.vn/../admin",
            "http://his.benhvien.vn",
            "ftp://his.benhvien.vn",
            "his.benhvien.vn/x https://evil.com",
            "*.benhvien.vn",
            "2130706433",
            "{config.other}",
            "",
            "bệnhviện.vn",
        ] {
            assert!(
                matches!(
                    resolve(json!({ "his_base_url": value })),
                    Err(ResolveError::NotPlainOrigin { .. })
                ),
                "{value}: {:?}",
                resolve(json!({ "his_base_url": value }))
            );
        }
    }

    #[test]
    fn private_addresses_are_allowed_only_for_the_destinations_named() {
        let his = Destination::parse("https://{config.his}", "HIS", None).unwrap();
        let vendor = Destination::parse("https://api.vendor.vn", "Nhà cung cấp", None).unwrap();
        let allow: BTreeSet<String> = ["https://{config.his}".to_owned()].into();
        let allowed =
            resolve_destinations(&[his, vendor], &json!({ "his": "10.1.2.3:8443" }), &allow)
                .unwrap();
        let his = check("https://10.1.2.3:8443/fhir/Patient", &allowed).unwrap();
        assert!(his.allowed.allow_private);
        assert_eq!(his.literal_ip, Some("10.1.2.3".parse().unwrap()));
        let vendor = check("https://api.vendor.vn/v1", &allowed).unwrap();
        assert!(!vendor.allowed.allow_private);
        // api.vendor.vn resolving to a private address is refused...
        assert!(matches!(
            vendor.check_addresses(&["10.1.2.3".parse().unwrap()]),
            Err(OutboundDenied::PrivateAddress { .. })
        ));
        // ...while the HIS destination may.
        assert!(his.check_addresses(&["10.1.2.3".parse().unwrap()]).is_ok());
    }

    // --- URLs ---------------------------------------------------------------

    #[test]
    fn a_granted_url_passes_and_keeps_its_parsed_form() {
        let allowed = fixed("https://api.vendor.vn");
        let t = check("https://api.vendor.vn/v1/orders?id=1#top", &allowed).unwrap();
        assert_eq!(t.url.as_str(), "https://api.vendor.vn/v1/orders?id=1");
        assert_eq!(t.origin.to_string(), "https://api.vendor.vn");
        assert_eq!(t.literal_ip, None);
        // Upper case, the default port and a trailing dot are the same origin.
        assert!(check("https://API.VENDOR.VN/x", &allowed).is_ok());
        assert!(check("https://api.vendor.vn:443/x", &allowed).is_ok());
        let t = check("https://api.vendor.vn./x", &allowed).unwrap();
        assert_eq!(t.url.host_str(), Some("api.vendor.vn"));
        // A backslash is a slash in an https URL: the host stays the vendor's.
        let t = check("https://api.vendor.vn\\@evil.com/", &allowed).unwrap();
        assert_eq!(t.url.host_str(), Some("api.vendor.vn"));
    }

    #[test]
    fn lookalike_hosts_ports_and_userinfo_are_refused() {
        let allowed = fixed("https://api.vendor.vn");
        for url in [
            "https://api.vendor.vn.evil.com/",
            "https://evil.com/api.vendor.vn",
            "https://api.vendor.vn:8443/",
            "https://vendor.vn/",
            "https://xapi.vendor.vn/",
            "https://api.vendor.vn%2eevil.com/",
        ] {
            assert!(
                matches!(check(url, &allowed), Err(OutboundDenied::NotGranted { .. })),
                "{url}: {:?}",
                check(url, &allowed)
            );
        }
        for url in [
            "https://api.vendor.vn@evil.com/",
            "https://user:pw@api.vendor.vn/",
            "https://:pw@api.vendor.vn/",
        ] {
            assert_eq!(check(url, &allowed), Err(OutboundDenied::Userinfo), "{url}");
        }
        // Only one trailing dot is the same name.
        assert!(check("https://api.vendor.vn../", &allowed).is_err());
        let on_port = fixed("https://api.vendor.vn:8443");
        assert!(check("https://api.vendor.vn:8443/", &on_port).is_ok());
        assert!(matches!(
            check("https://api.vendor.vn/", &on_port),
            Err(OutboundDenied::NotGranted { .. })
        ));
    }

    #[test]
    fn path_prefixes_match_whole_segments_after_normalisation() {
        let allowed = fixed("https://his.benhvien.vn/fhir");
        assert!(check("https://his.benhvien.vn/fhir", &allowed).is_ok());
        assert!(check("https://his.benhvien.vn/fhir/Patient/1", &allowed).is_ok());
        for url in [
            "https://his.benhvien.vn/",
            "https://his.benhvien.vn/fhir2",
            "https://his.benhvien.vn/fhir/../admin",
            "https://his.benhvien.vn/fhir/%2e%2e/admin",
            "https://his.benhvien.vn/FHIR/Patient",
            "https://his.benhvien.vn/fhir%2f..%2fadmin",
            "https://his.benhvien.vn/fhir/x%2F..%2F..%2Fadmin",
            "https://his.benhvien.vn/fhir/x%5c..%5c..%5cadmin",
        ] {
            assert!(
                matches!(check(url, &allowed), Err(OutboundDenied::NotGranted { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn https_only_except_the_operators_development_origins() {
        let allowed = fixed("http://stand-in.local:8080");
        assert!(matches!(
            check("http://stand-in.local:8080/x", &allowed),
            Err(OutboundDenied::PlainHttp { .. })
        ));
        let options = CheckOptions {
            plain_http_origins: [Origin::parse("http://stand-in.local:8080").unwrap()].into(),
        };
        assert!(check_url("http://stand-in.local:8080/x", &allowed, &options).is_ok());
        // The development list does not grant anything by itself.
        let options = CheckOptions {
            plain_http_origins: [Origin::parse("http://other.local").unwrap()].into(),
        };
        assert!(matches!(
            check_url("http://other.local/", &allowed, &options),
            Err(OutboundDenied::PlainHttp { .. } | OutboundDenied::NotGranted { .. })
        ));
        assert!(matches!(
            check_url("http://other.local/", &[], &options),
            Err(OutboundDenied::NotGranted { .. })
        ));
        // An https grant does not admit plain http to the same host.
        assert!(matches!(
            check("http://api.vendor.vn/", &fixed("https://api.vendor.vn")),
            Err(OutboundDenied::PlainHttp { .. })
        ));
        for url in [
            "ftp://api.vendor.vn/",
            "file:///etc/passwd",
            "data:text/plain,x",
        ] {
            assert!(
                matches!(check(url, &[]), Err(OutboundDenied::UnsupportedScheme(_))),
                "{url}"
            );
        }
        assert!(matches!(
            check("not a url", &[]),
            Err(OutboundDenied::Malformed(_))
        ));
        assert!(Origin::parse("http://localhost:8080/path").is_err());
        assert!(Origin::parse("http://u@localhost").is_err());
    }

    #[test]
    fn address_literals_in_urls_are_checked_as_addresses() {
        let allowed = fixed("https://api.vendor.vn");
        for url in [
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:7f00:1]/",
            "https://10.0.0.1/",
            "https://[fe80::1]/",
            "https://169.254.10.1/",
        ] {
            assert!(
                matches!(
                    check(url, &allowed),
                    Err(OutboundDenied::PrivateAddress { .. })
                ),
                "{url}: {:?}",
                check(url, &allowed)
            );
        }
        for url in [
            "http://0.0.0.0/",
            "http://0/",
            "https://[::]/",
            "https://255.255.255.255/",
            "https://224.0.0.1/",
            "https://169.254.169.254/latest/meta-data",
        ] {
            assert!(
                matches!(check(url, &allowed), Err(OutboundDenied::Address { .. })),
                "{url}: {:?}",
                check(url, &allowed)
            );
        }
        // A public literal is only refused for not being granted.
        assert!(matches!(
            check("https://8.8.8.8/", &allowed),
            Err(OutboundDenied::NotGranted { .. })
        ));
        // The normalised form is what the check and the connection see.
        let loopback = private("https://{config.his}", json!({ "his": "127.0.0.1:9000" }));
        let options = CheckOptions::default();
        let t = check_url("https://2130706433:9000/x", &loopback, &options).unwrap();
        assert_eq!(t.url.host_str(), Some("127.0.0.1"));
    }

    // --- addresses --------------------------------------------------------

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_refused_unless_allowed() {
        for a in [
            "127.0.0.1",
            "127.255.0.9",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "198.18.0.1",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:192.168.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
        ] {
            assert!(
                matches!(
                    check_addresses(&[ip(a)], false),
                    Err(OutboundDenied::PrivateAddress { .. })
                ),
                "{a}: {:?}",
                classify_address(ip(a))
            );
            assert_eq!(check_addresses(&[ip(a)], true), Ok(()), "{a}");
        }
    }

    #[test]
    fn addresses_that_are_never_servers_are_always_refused() {
        for a in [
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "192.0.0.170",
            "169.254.169.254",
            "::",
            "::ffff:0.0.0.0",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "2001:0:4136:e378::1",
            "100::1",
            "fd00:ec2::254",
            "4000::1",
        ] {
            assert!(
                matches!(
                    check_addresses(&[ip(a)], true),
                    Err(OutboundDenied::Address { .. })
                ),
                "{a}: {:?}",
                classify_address(ip(a))
            );
        }
    }

    #[test]
    fn public_addresses_pass_and_every_resolved_address_must() {
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "169.253.0.1",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(classify_address(ip(a)), AddressClass::Public, "{a}");
        }
        assert_eq!(check_addresses(&[ip("8.8.8.8")], false), Ok(()));
        // DNS rebinding: one private answer among public ones is enough to refuse.
        assert!(matches!(
            check_addresses(&[ip("8.8.8.8"), ip("127.0.0.1")], false),
            Err(OutboundDenied::PrivateAddress { .. })
        ));
        assert_eq!(check_addresses(&[], true), Err(OutboundDenied::NoAddress));
    }

    // --- redirects ----------------------------------------------------------

    #[test]
    fn redirects_are_checked_like_first_requests() {
        let allowed = [
            fixed("https://api.vendor.vn").remove(0),
            fixed("https://files.vendor.vn").remove(0),
        ];
        let options = CheckOptions::default();
        let from = Url::parse("https://api.vendor.vn/v1/a").unwrap();
        let r = check_redirect(&from, "/v1/b", 0, &allowed, &options).unwrap();
        assert_eq!(r.target.url.as_str(), "https://api.vendor.vn/v1/b");
        assert!(!r.cross_origin);
        let r = check_redirect(&from, "https://files.vendor.vn/x", 1, &allowed, &options).unwrap();
        assert!(r.cross_origin);
        for location in [
            "https://evil.com/",
            "//evil.com/x",
            "http://api.vendor.vn/v1/b",
            "https://127.0.0.1/",
            "https://[::ffff:169.254.169.254]/",
            "http://2130706433/",
            "https://user@api.vendor.vn/",
        ] {
            assert!(
                check_redirect(&from, location, 0, &allowed, &options).is_err(),
                "{location}"
            );
        }
        assert_eq!(
            check_redirect(&from, "/v1/b", MAX_REDIRECTS, &allowed, &options),
            Err(OutboundDenied::TooManyRedirects)
        );
        assert!(matches!(
            check_redirect(&from, "", 0, &allowed, &options),
            Err(OutboundDenied::BadRedirect(_))
        ));
    }

    #[test]
    fn denials_name_the_origin_not_the_path_or_query() {
        let err = check("https://evil.com/Patient?name=Nguyen", &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("https://evil.com"), "{text}");
        assert!(
            !text.contains("Nguyen") && !text.contains("Patient"),
            "{text}"
        );
    }
}
