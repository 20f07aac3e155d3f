//! The plugin manifest, `plugin.toml`: who made the plugin, what it is for and
//! what it asks of the platform. Documented in `docs/bundle-format.md`.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::capabilities::Capability;
use crate::directory::validate_id;

/// Largest manifest accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 64 << 10;

/// Why a manifest was refused. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is {size} bytes, over the {MAX_MANIFEST_BYTES} byte limit")]
    TooLarge { size: usize },
    #[error("{0}")]
    Syntax(String),
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("config: {0}")]
    Config(String),
}

fn field(field: &'static str, message: impl Into<String>) -> ManifestError {
    ManifestError::Field {
        field,
        message: message.into(),
    }
}

/// What a plugin is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    Workflow,
    Commerce,
    HisAdapter,
}

impl PluginKind {
    /// The manifest spelling, e.g. `his-adapter`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Workflow => "workflow",
            Self::Commerce => "commerce",
            Self::HisAdapter => "his-adapter",
        }
    }
}

/// Description in Vietnamese and English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    pub vi: String,
    pub en: String,
}

/// One capability a plugin asks for, with the scopes it asks for within it.
/// No scopes means the whole capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityRequest {
    #[serde(with = "capability_name")]
    pub capability: Capability,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

impl CapabilityRequest {
    /// What granting this request lets the plugin do, in plain words for reviewers.
    pub fn describe(&self) -> String {
        let mut text = format!("{}: {}", self.capability, self.capability.describe());
        if self.capability == Capability::Records {
            let words: Vec<String> = self
                .scopes
                .iter()
                .map(|s| match s.parse::<crate::records::scopes::ScopeEntry>() {
                    Ok(e) => format!("{} (`{s}`)", e.describe()),
                    Err(e) => e,
                })
                .collect();
            text.push_str(&format!(": {}", words.join("; ")));
        } else if self.capability == Capability::Identity {
            // Its only scope adds to the capability rather than narrowing it.
            if !self.scopes.is_empty() {
                text.push_str(&format!("; {}", crate::capabilities::NATIONAL_IDS_MEANING));
            }
        } else if !self.scopes.is_empty() {
            text.push_str(&format!(" (only: {})", self.scopes.join(", ")));
        }
        text
    }
}

impl CapabilityRequest {
    /// The grant strings of this request (`kv`, `records:…`). `identity`'s
    /// scope adds to it, so the bare name comes too: a reviewer can grant
    /// `identity` and withhold `identity:national-ids`.
    pub fn grant_strings(&self) -> Vec<String> {
        let scoped = self
            .scopes
            .iter()
            .map(|s| format!("{}:{s}", self.capability));
        if self.scopes.is_empty() || self.capability == Capability::Identity {
            std::iter::once(self.capability.name().to_owned())
                .chain(scoped)
                .collect()
        } else {
            scoped.collect()
        }
    }
}

impl fmt::Display for CapabilityRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.grant_strings().join(", "))
    }
}

/// Serde for a capability as its WIT interface name.
mod capability_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::capabilities::Capability;

    pub fn serialize<S: Serializer>(c: &Capability, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Capability, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Events the plugin wants delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Events {
    #[serde(default)]
    pub subscribe: Vec<String>,
}

/// An HTTP route the plugin serves. The host answers only declared routes
/// (404 otherwise) and only for callers with one of `roles` (403
/// otherwise), before the plugin runs; no roles: every caller the platform
/// admits to the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// A path template: literal segments and `{name}` segments, each of
    /// which matches one non-empty segment.
    pub path: String,
    pub methods: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Route {
    /// Whether the (raw, still percent-encoded) path segments `segments`
    /// fit this route's template. Segments are compared as the SDK's
    /// `Request::segments` splits them: empty ones are skipped, nothing is
    /// decoded, so the host and the plugin see the same route.
    pub fn matches(&self, segments: &[&str]) -> bool {
        let template = path_segments(&self.path);
        template.len() == segments.len()
            && template
                .iter()
                .zip(segments)
                .all(|(t, s)| is_parameter(t) || t == s)
    }
}

/// The non-empty `/`-separated segments of `path`.
pub fn path_segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

fn is_parameter(segment: &str) -> bool {
    segment
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .is_some_and(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// What the manifest says about one request.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch<'a> {
    /// A declared route serves this method and path.
    Declared(&'a Route),
    /// The path is declared, but not for this method.
    MethodNotDeclared(Vec<&'a str>),
    /// No declared route has this path.
    NotDeclared,
}

/// A page of the plugin's own, shown in the consoles' menus: an HTML
/// document the plugin serves at `path` (a declared `GET` route), listed
/// by its title to the people with one of `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page {
    /// A concrete path below the plugin's mount point, e.g. `/ui/counter.html`.
    pub path: String,
    /// The menu entry, in Vietnamese and English.
    pub title: Description,
    /// Who sees the page in their console's menu: `practitioner`,
    /// `hospital-admin` or `citizen`.
    pub roles: Vec<String>,
}

/// The roles a page may name: the people whose consoles show plugin pages.
pub const PAGE_ROLES: &[&str] = &["practitioner", "hospital-admin", "citizen"];
/// Most pages one manifest may declare.
pub const MAX_PAGES: usize = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPage {
    path: String,
    title: Option<Description>,
    #[serde(default)]
    roles: Vec<String>,
}

/// The plugin's configuration: a JSON Schema for a hospital's configuration
/// document and the defaults a national rollout activates it with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Value>,
}

/// A plugin's manifest (`plugin.toml`), parsed and checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub id: String,
    pub version: String,
    /// The vendor's id, as registered with the ministry.
    pub vendor: String,
    pub kind: PluginKind,
    pub description: Description,
    pub capabilities: Vec<CapabilityRequest>,
    pub events: Events,
    pub routes: Vec<Route>,
    pub config: ConfigSpec,
    /// Serves the practitioners of every hospital of the network, not only
    /// its own hospital's (a 1-N workflow such as a consultation); shown
    /// to reviewers, and the plugin must check who may do what.
    pub network: bool,
    /// The module's name in the consoles, when it declares one (otherwise
    /// its id is shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Description>,
    /// The plugin's own pages, listed in the consoles' menus.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<Page>,
}

/// The manifest as written, before its fields are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    id: String,
    version: String,
    vendor: String,
    kind: PluginKind,
    description: Description,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    events: Events,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    config: Option<RawConfig>,
    #[serde(default)]
    network: bool,
    #[serde(default)]
    name: Option<Description>,
    #[serde(default)]
    pages: Vec<RawPage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    schema: Option<toml::Value>,
    defaults: Option<toml::Value>,
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl Manifest {
    /// Parse and check a manifest, its configuration schema included.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let manifest = Self::parse_structure(text)?;
        manifest.check_config()?;
        Ok(manifest)
    }

    /// Parse and check every field except whether the configuration schema
    /// compiles (see [`Manifest::check_config`]), so submission checks can
    /// report the two apart.
    pub fn parse_structure(text: &str) -> Result<Self, ManifestError> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge { size: text.len() });
        }
        let raw: RawManifest =
            toml::from_str(text).map_err(|e| ManifestError::Syntax(e.message().to_owned()))?;
        validate_id(&raw.id).map_err(|e| field("id", e.to_string()))?;
        if !is_semver(&raw.version) {
            return Err(field(
                "version",
                format!(
                    "`{}` is not a semantic version (MAJOR.MINOR.PATCH)",
                    raw.version
                ),
            ));
        }
        validate_id(&raw.vendor).map_err(|e| {
            field(
                "vendor",
                format!("the vendor's registered id is expected: {e}"),
            )
        })?;
        if raw.description.vi.trim().is_empty() {
            return Err(field(
                "description.vi",
                "the Vietnamese description is empty",
            ));
        }
        if raw.description.en.trim().is_empty() {
            return Err(field("description.en", "the English description is empty"));
        }
        let capabilities = parse_capabilities(&raw.capabilities)?;
        for event in &raw.events.subscribe {
            if !is_event_name(event) {
                return Err(field(
                    "events.subscribe",
                    format!("`{event}` is not an event name (a-z, 0-9, '.', '-', '_')"),
                ));
            }
        }
        for route in &raw.routes {
            check_route(route)?;
        }
        if let Some(name) = &raw.name
            && (name.vi.trim().is_empty() || name.en.trim().is_empty())
        {
            return Err(field(
                "name",
                "the module's name needs both `vi` and `en`, not empty",
            ));
        }
        let pages = check_pages(raw.pages, &raw.routes)?;
        let config = match raw.config {
            None => ConfigSpec::default(),
            Some(c) => ConfigSpec {
                schema: c.schema.map(to_json).transpose()?,
                defaults: c.defaults.map(to_json).transpose()?,
            },
        };
        Ok(Self {
            id: raw.id,
            version: raw.version,
            vendor: raw.vendor,
            kind: raw.kind,
            description: raw.description,
            capabilities,
            events: raw.events,
            routes: raw.routes,
            network: raw.network,
            config,
            name: raw.name,
            pages,
        })
    }

    /// Check that the configuration schema compiles as a JSON Schema and
    /// that the defaults satisfy it.
    pub fn check_config(&self) -> Result<(), ManifestError> {
        let Some(schema) = &self.config.schema else {
            if self.config.defaults.is_some() {
                return Err(ManifestError::Config(
                    "defaults are given without a schema to check them".into(),
                ));
            }
            return Ok(());
        };
        let validator = compile_schema(schema).map_err(ManifestError::Config)?;
        if let Some(defaults) = &self.config.defaults
            && let Err(e) = validator.validate(defaults)
        {
            return Err(ManifestError::Config(format!(
                "defaults do not satisfy the schema: {e} (at `{}`)",
                e.instance_path()
            )));
        }
        Ok(())
    }

    /// The capabilities asked for, without their scopes.
    pub fn requested(&self) -> BTreeSet<Capability> {
        self.capabilities.iter().map(|r| r.capability).collect()
    }

    /// The declared route serving `method` on `path` (below the mount
    /// point, without the query), if any.
    pub fn route_for(&self, method: &str, path: &str) -> RouteMatch<'_> {
        let segments = path_segments(path);
        let mut methods = Vec::new();
        for route in self.routes.iter().filter(|r| r.matches(&segments)) {
            if route.methods.iter().any(|m| m == method) {
                return RouteMatch::Declared(route);
            }
            methods.extend(route.methods.iter().map(String::as_str));
        }
        if methods.is_empty() {
            RouteMatch::NotDeclared
        } else {
            RouteMatch::MethodNotDeclared(methods)
        }
    }

    /// One plain-words line per requested capability, for reviewers.
    pub fn describe_capabilities(&self) -> Vec<String> {
        self.capabilities
            .iter()
            .map(CapabilityRequest::describe)
            .collect()
    }
}

/// Compile a configuration schema, refusing what is not a JSON Schema for
/// an object document.
pub fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    if !schema.is_object() {
        return Err("schema must be a table (a JSON Schema object)".into());
    }
    jsonschema::meta::validate(schema)
        .map_err(|e| format!("schema is not a valid JSON Schema: {e}"))?;
    jsonschema::validator_for(schema).map_err(|e| format!("schema does not compile: {e}"))
}

/// `"kv"` or `"kv:scope"` entries, merged by capability.
fn parse_capabilities(entries: &[String]) -> Result<Vec<CapabilityRequest>, ManifestError> {
    let mut out: Vec<CapabilityRequest> = Vec::new();
    let mut bare_identity = false;
    for entry in entries {
        let (name, scope) = match entry.split_once(':') {
            Some((name, scope)) => (name, Some(scope)),
            None => (entry.as_str(), None),
        };
        let capability: Capability = name.parse().map_err(|e: String| field("capabilities", e))?;
        if let Some(scope) = scope
            && !is_scope(scope)
        {
            return Err(field(
                "capabilities",
                format!(
                    "`{entry}`: a scope is 1-128 printable characters without spaces or commas"
                ),
            ));
        }
        if capability == Capability::Identity {
            add_identity(&mut out, &mut bare_identity, entry, scope)?;
            continue;
        }
        let existing = out.iter_mut().find(|r| r.capability == capability);
        match (existing, scope) {
            (None, scope) => out.push(CapabilityRequest {
                capability,
                scopes: scope.map(str::to_owned).into_iter().collect(),
            }),
            // A bare name asks for everything; mixing it with scopes is ambiguous.
            (Some(_), None) => {
                return Err(field(
                    "capabilities",
                    format!("`{name}` is listed twice, or both with and without a scope"),
                ));
            }
            (Some(r), Some(scope)) => {
                if r.scopes.is_empty() {
                    return Err(field(
                        "capabilities",
                        format!("`{name}` is listed both with and without a scope"),
                    ));
                }
                if r.scopes.iter().any(|s| s == scope) {
                    return Err(field("capabilities", format!("`{entry}` is listed twice")));
                }
                r.scopes.push(scope.to_owned());
            }
        }
    }
    if let Some(r) = out.iter().find(|r| r.capability == Capability::Records) {
        crate::records::scopes::check_request(&r.scopes).map_err(|e| field("capabilities", e))?;
    }
    if !bare_identity && out.iter().any(|r| r.capability == Capability::Identity) {
        return Err(field(
            "capabilities",
            format!(
                "`{}` adds to `identity`: list `identity` too",
                crate::capabilities::NATIONAL_IDS_GRANT
            ),
        ));
    }
    Ok(out)
}

/// `identity` and its one scope, `national-ids`, which adds the citizen's
/// national identifiers to it (so both are listed).
fn add_identity(
    out: &mut Vec<CapabilityRequest>,
    bare: &mut bool,
    entry: &str,
    scope: Option<&str>,
) -> Result<(), ManifestError> {
    use crate::capabilities::NATIONAL_IDS_SCOPE;
    if scope.is_some_and(|s| s != NATIONAL_IDS_SCOPE) {
        return Err(field(
            "capabilities",
            format!("`{entry}`: the only scope of `identity` is `{NATIONAL_IDS_SCOPE}`"),
        ));
    }
    let index = match out
        .iter()
        .position(|r| r.capability == Capability::Identity)
    {
        Some(i) => i,
        None => {
            out.push(CapabilityRequest {
                capability: Capability::Identity,
                scopes: Vec::new(),
            });
            out.len() - 1
        }
    };
    let request = &mut out[index];
    let twice = match scope {
        None => std::mem::replace(bare, true),
        Some(s) if request.scopes.iter().any(|x| x == s) => true,
        Some(s) => {
            request.scopes.push(s.to_owned());
            false
        }
    };
    if twice {
        return Err(field("capabilities", format!("`{entry}` is listed twice")));
    }
    Ok(())
}

fn is_scope(scope: &str) -> bool {
    (1..=128).contains(&scope.len()) && scope.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

fn is_event_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
}

fn check_route(route: &Route) -> Result<(), ManifestError> {
    if !route.path.starts_with('/') || route.path.chars().any(char::is_whitespace) {
        return Err(field(
            "routes.path",
            format!("`{}` must start with '/' and have no spaces", route.path),
        ));
    }
    if let Some(bad) = path_segments(&route.path)
        .into_iter()
        .find(|s| (s.contains('{') || s.contains('}')) && !is_parameter(s))
    {
        return Err(field(
            "routes.path",
            format!(
                "`{bad}` in `{}`: a parameter is a whole segment `{{name}}` (a-z, 0-9, '_')",
                route.path
            ),
        ));
    }
    if route.methods.is_empty() {
        return Err(field(
            "routes.methods",
            format!("route `{}` lists no method", route.path),
        ));
    }
    if let Some(m) = route
        .methods
        .iter()
        .find(|m| !METHODS.contains(&m.as_str()))
    {
        return Err(field(
            "routes.methods",
            format!("`{m}` is not one of {}", METHODS.join(", ")),
        ));
    }
    let known: Vec<&str> = crate::identity::Role::ALL
        .iter()
        .map(|r| r.as_str())
        .collect();
    if let Some(r) = route.roles.iter().find(|r| !known.contains(&r.as_str())) {
        return Err(field(
            "routes.roles",
            format!("`{r}` is not a role; roles are {}", known.join(", ")),
        ));
    }
    Ok(())
}

/// Check the declared pages: each has a title in both languages, a
/// concrete path that a declared `GET` route serves to the page's roles,
/// and roles whose consoles show pages.
fn check_pages(raw: Vec<RawPage>, routes: &[Route]) -> Result<Vec<Page>, ManifestError> {
    if raw.len() > MAX_PAGES {
        return Err(field(
            "pages",
            format!("{} pages declared; at most {MAX_PAGES}", raw.len()),
        ));
    }
    let mut pages: Vec<Page> = Vec::with_capacity(raw.len());
    for page in raw {
        let path = page.path;
        let plain = path.starts_with('/')
            && (1..=200).contains(&path.len())
            && path.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~')
            })
            && !path_segments(&path).iter().any(|s| *s == "." || *s == "..");
        if !plain {
            return Err(field(
                "pages.path",
                format!(
                    "`{path}`: a page's path starts with '/' and has only a-z, A-Z, 0-9, '/', '-', '_', '.' and '~' \
                     (no parameter, query, '..' or spaces; at most 200 characters)"
                ),
            ));
        }
        let title = page.title.ok_or_else(|| {
            field(
                "pages.title",
                format!("page `{path}` has no title: add `title = {{ vi = \"…\", en = \"…\" }}`"),
            )
        })?;
        if title.vi.trim().is_empty() || title.en.trim().is_empty() {
            return Err(field(
                "pages.title",
                format!("page `{path}`: the title needs both `vi` and `en`, not empty"),
            ));
        }
        if page.roles.is_empty() {
            return Err(field(
                "pages.roles",
                format!(
                    "page `{path}` lists no role; name who sees it: {}",
                    PAGE_ROLES.join(", ")
                ),
            ));
        }
        let known: Vec<&str> = crate::identity::Role::ALL
            .iter()
            .map(|r| r.as_str())
            .collect();
        if let Some(r) = page.roles.iter().find(|r| !known.contains(&r.as_str())) {
            return Err(field(
                "pages.roles",
                format!(
                    "`{r}` on page `{path}` is not a role; pages are shown to {}",
                    PAGE_ROLES.join(", ")
                ),
            ));
        }
        if let Some(r) = page
            .roles
            .iter()
            .find(|r| !PAGE_ROLES.contains(&r.as_str()))
        {
            return Err(field(
                "pages.roles",
                format!(
                    "`{r}` on page `{path}`: pages are shown to {} only",
                    PAGE_ROLES.join(", ")
                ),
            ));
        }
        let segments = path_segments(&path);
        let Some(route) = routes
            .iter()
            .find(|r| r.matches(&segments) && r.methods.iter().any(|m| m == "GET"))
        else {
            return Err(field(
                "pages.path",
                format!(
                    "page `{path}` is served by no declared GET route: add a `[[routes]]` whose path matches it \
                     (e.g. `/ui/{{file}}`) with methods = [\"GET\"]"
                ),
            ));
        };
        if !route.roles.is_empty()
            && let Some(r) = page.roles.iter().find(|r| !route.roles.contains(r))
        {
            return Err(field(
                "pages.roles",
                format!(
                    "page `{path}` is listed to `{r}`, but its route `{}` serves {} only",
                    route.path,
                    route.roles.join(", ")
                ),
            ));
        }
        if pages.iter().any(|p| p.path == path) {
            return Err(field(
                "pages.path",
                format!("page `{path}` is declared twice"),
            ));
        }
        pages.push(Page {
            path,
            title,
            roles: page.roles,
        });
    }
    Ok(pages)
}

fn to_json(value: toml::Value) -> Result<Value, ManifestError> {
    // TOML dates have no JSON equivalent; a configuration schema never needs one.
    fn has_datetime(v: &toml::Value) -> bool {
        match v {
            toml::Value::Datetime(_) => true,
            toml::Value::Array(a) => a.iter().any(has_datetime),
            toml::Value::Table(t) => t.values().any(has_datetime),
            _ => false,
        }
    }
    if has_datetime(&value) {
        return Err(ManifestError::Config(
            "TOML dates are not allowed in the configuration; write them as strings".into(),
        ));
    }
    serde_json::to_value(value).map_err(|e| ManifestError::Config(e.to_string()))
}

/// `MAJOR.MINOR.PATCH` with optional `-pre` and `+build` parts, numbers
/// without leading zeros.
pub fn is_semver(version: &str) -> bool {
    let version = match version.split_once('+') {
        Some((_, "")) => return false,
        Some((v, _)) => v,
        None => version,
    };
    let core = match version.split_once('-') {
        Some((_, "")) => return false,
        Some((core, _)) => core,
        None => version,
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#"
id = "visit-counter"
version = "1.2.0"
vendor = "acme"
kind = "workflow"
"#;
    const DESCRIPTION: &str = r#"
[description]
vi = "Đếm lượt khám."
en = "Counts visits."
"#;

    fn parse(middle: &str, tail: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(&format!("{HEAD}{middle}\n{DESCRIPTION}\n{tail}"))
    }

    #[test]
    fn parses_a_minimal_manifest_with_the_plain_list() {
        let m = parse(r#"capabilities = ["log", "kv"]"#, "").expect("valid");
        assert_eq!(m.id, "visit-counter");
        assert_eq!(m.kind, PluginKind::Workflow);
        assert_eq!(m.requested(), [Capability::Log, Capability::Kv].into());
        assert!(m.capabilities.iter().all(|r| r.scopes.is_empty()));
        assert!(m.routes.is_empty() && m.events.subscribe.is_empty());
        assert_eq!(m.config, ConfigSpec::default());
    }

    #[test]
    fn national_ids_are_a_grant_of_their_own_within_identity() {
        let m = parse(
            r#"capabilities = ["log", "identity:national-ids", "identity"]"#,
            "",
        )
        .expect("valid");
        assert_eq!(
            m.requested(),
            [Capability::Log, Capability::Identity].into()
        );
        let identity = &m.capabilities[1];
        assert_eq!(
            identity.grant_strings(),
            ["identity", "identity:national-ids"]
        );
        assert!(identity.describe().contains("citizen ID (CCCD)"));
        let plain = parse(r#"capabilities = ["identity"]"#, "").expect("valid");
        assert_eq!(plain.capabilities[0].grant_strings(), ["identity"]);
        assert!(!plain.capabilities[0].describe().contains("CCCD"));
    }

    #[test]
    fn parses_every_section() {
        let m = parse(
            r#"capabilities = ["log", "kv:visits", "kv:settings", "identity"]
events = { subscribe = ["visit.created"] }"#,
            r#"
[[routes]]
path = "/visits"
methods = ["GET", "POST"]
roles = ["practitioner"]

[config.schema]
type = "object"
required = ["greeting"]
properties = { greeting = { type = "string", minLength = 1 }, limit = { type = "integer" } }

[config.defaults]
greeting = "Xin chào"
"#,
        )
        .expect("valid");
        let kv = &m.capabilities[1];
        assert_eq!(kv.capability, Capability::Kv);
        assert_eq!(kv.scopes, ["visits", "settings"]);
        assert_eq!(kv.to_string(), "kv:visits, kv:settings");
        assert!(kv.describe().contains("only: visits, settings"));
        assert_eq!(m.events.subscribe, ["visit.created"]);
        assert_eq!(m.routes[0].roles, ["practitioner"]);
        assert_eq!(
            m.config.defaults,
            Some(serde_json::json!({"greeting": "Xin chào"}))
        );
        assert_eq!(m.describe_capabilities().len(), 3);
    }

    #[test]
    fn refuses_bad_manifests() {
        let cases: &[(&str, &str, &str)] = &[
            (r#"capabilities = ["teleport"]"#, "", "unknown capability"),
            (
                r#"capabilities = ["records:patient/Observation.rs"]"#,
                "",
                "purposes of use",
            ),
            (
                r#"capabilities = ["records:purpose=treatment", "records:user/Observation.rsx"]"#,
                "",
                "letters of `cruds`",
            ),
            (
                r#"capabilities = ["records"]"#,
                "",
                "must name its data scopes",
            ),
            (r#"capabilities = ["kv", "kv"]"#, "", "listed twice"),
            (r#"capabilities = ["kv", "kv:a"]"#, "", "with and without"),
            (r#"capabilities = ["kv:a b"]"#, "", "scope"),
            (
                r#"capabilities = ["identity:national-ids"]"#,
                "",
                "list `identity` too",
            ),
            (
                r#"capabilities = ["identity", "identity:everything"]"#,
                "",
                "the only scope of `identity`",
            ),
            (
                r#"capabilities = ["identity", "identity"]"#,
                "",
                "listed twice",
            ),
            (
                r#"events = { subscribe = ["Bad Event"] }"#,
                "",
                "event name",
            ),
            (
                r#"routes = [{ path = "visits", methods = ["GET"] }]"#,
                "",
                "start with '/'",
            ),
            (
                r#"routes = [{ path = "/v", methods = ["FETCH"] }]"#,
                "",
                "FETCH",
            ),
            (
                r#"routes = [{ path = "/v", methods = [] }]"#,
                "",
                "no method",
            ),
            (r#"colour = "blue""#, "", "unknown field"),
            (
                "",
                "[config]\nschema = { type = 12 }",
                "not a valid JSON Schema",
            ),
            ("", "[config]\nschema = \"object\"", "must be a table"),
            (
                "",
                "[config]\nschema = { type = \"object\", properties = { n = { type = \"integer\" } } }\ndefaults = { n = \"x\" }",
                "defaults do not satisfy",
            ),
            ("", "[config]\ndefaults = { n = 1 }", "without a schema"),
        ];
        for (middle, tail, expected) in cases {
            let err = parse(middle, tail).expect_err(middle).to_string();
            assert!(err.contains(expected), "{middle} {tail}: {err}");
        }
    }

    #[test]
    fn refuses_bad_header_fields() {
        let ok = format!("{HEAD}{DESCRIPTION}");
        assert!(Manifest::parse(&ok).is_ok());
        for (from, to, expected) in [
            ("\"1.2.0\"", "\"1.2\"", "version"),
            ("\"acme\"", "\"ACME Corp\"", "vendor"),
            ("\"workflow\"", "\"game\"", "unknown variant"),
            ("\"visit-counter\"", "\"Visit Counter\"", "id"),
            ("\"Counts visits.\"", "\"  \"", "description.en"),
            ("\"Đếm lượt khám.\"", "\"\"", "description.vi"),
        ] {
            let err = Manifest::parse(&ok.replacen(from, to, 1))
                .expect_err(to)
                .to_string();
            assert!(err.contains(expected), "{to}: {err}");
        }
        let err = Manifest::parse(&format!("{ok}#{}", "x".repeat(MAX_MANIFEST_BYTES)))
            .expect_err("too large");
        assert!(matches!(err, ManifestError::TooLarge { .. }));
    }

    #[test]
    fn routes_match_their_templates_segment_by_segment() {
        let m = parse(
            "",
            r#"
[[routes]]
path = "/orders"
methods = ["GET", "POST"]

[[routes]]
path = "/orders/{id}/cancel"
methods = ["POST"]
roles = ["citizen"]

[[routes]]
path = "/"
methods = ["GET"]
"#,
        )
        .expect("valid");
        let declared = |method, path| matches!(m.route_for(method, path), RouteMatch::Declared(_));
        assert!(declared("GET", "/"));
        assert!(declared("GET", "/orders"));
        assert!(declared("POST", "/orders/"));
        assert!(declared("POST", "/orders/o-1/cancel"));
        assert!(declared("POST", "//orders//o%2F1/cancel"));
        assert_eq!(m.route_for("GET", "/settle"), RouteMatch::NotDeclared);
        assert_eq!(
            m.route_for("POST", "/orders/cancel"),
            RouteMatch::NotDeclared
        );
        assert_eq!(
            m.route_for("POST", "/orders/a/b/cancel"),
            RouteMatch::NotDeclared
        );
        assert_eq!(m.route_for("GET", "/%6Frders"), RouteMatch::NotDeclared);
        assert_eq!(
            m.route_for("DELETE", "/orders"),
            RouteMatch::MethodNotDeclared(vec!["GET", "POST"])
        );
        let cancel = match m.route_for("POST", "/orders/x/cancel") {
            RouteMatch::Declared(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(cancel.roles, ["citizen"]);
        for (path, roles, expected) in [
            ("/orders/{id", "[]", "a parameter"),
            ("/orders/{}", "[]", "a parameter"),
            ("/orders/x{id}", "[]", "a parameter"),
            ("/orders", r#"["doctor"]"#, "is not a role"),
        ] {
            let err = parse(
                "",
                &format!("[[routes]]\npath = \"{path}\"\nmethods = [\"GET\"]\nroles = {roles}\n"),
            )
            .expect_err(path)
            .to_string();
            assert!(err.contains(expected), "{path}: {err}");
        }
    }

    const PAGE_ROUTES: &str = r#"
[[routes]]
path = "/ui/{file}"
methods = ["GET"]
roles = ["practitioner", "hospital-admin"]

[[routes]]
path = "/visits"
methods = ["GET", "POST"]
"#;

    #[test]
    fn pages_parse_with_titles_paths_and_roles() {
        let m = parse(
            "",
            &format!(
                r#"{PAGE_ROUTES}
[name]
vi = "Đếm lượt khám"
en = "Visit counter"

[[pages]]
path = "/ui/counter.html"
roles = ["practitioner", "hospital-admin"]
title = {{ vi = "Bộ đếm", en = "Counter" }}

[[pages]]
path = "/visits"
roles = ["citizen"]
[pages.title]
vi = "Lượt khám"
en = "Visits"
"#
            ),
        )
        .expect("valid");
        assert_eq!(m.pages.len(), 2);
        assert_eq!(m.pages[0].path, "/ui/counter.html");
        assert_eq!(m.pages[0].title.vi, "Bộ đếm");
        assert_eq!(m.pages[0].roles, ["practitioner", "hospital-admin"]);
        assert_eq!(m.pages[1].title.en, "Visits");
        assert_eq!(
            m.name.as_ref().map(|n| n.en.as_str()),
            Some("Visit counter")
        );
        // Shown in the review's JSON; absent when none are declared.
        let json = serde_json::to_value(&m).expect("json");
        assert_eq!(json["pages"][0]["title"]["vi"], "Bộ đếm");
        let plain = parse("", "").expect("valid");
        assert!(plain.pages.is_empty() && plain.name.is_none());
        assert!(
            serde_json::to_value(&plain)
                .expect("json")
                .get("pages")
                .is_none()
        );
    }

    #[test]
    fn bad_pages_are_refused_with_a_clear_message() {
        let page = |body: &str| format!("{PAGE_ROUTES}\n[[pages]]\n{body}\n");
        let title = r#"title = { vi = "Trang", en = "Page" }"#;
        let cases = [
            (
                page(
                    r#"path = "/ui/a.html"
roles = ["practitioner"]"#,
                ),
                "pages.title: page `/ui/a.html` has no title",
            ),
            (
                page(
                    "path = \"/ui/a.html\"\nroles = [\"practitioner\"]\ntitle = { vi = \"Trang\", en = \" \" }",
                ),
                "needs both `vi` and `en`",
            ),
            (
                page(&format!(
                    "path = \"ui/a.html\"\nroles = [\"practitioner\"]\n{title}"
                )),
                "pages.path: `ui/a.html`",
            ),
            (
                page(&format!(
                    "path = \"/ui/{{file}}\"\nroles = [\"practitioner\"]\n{title}"
                )),
                "no parameter",
            ),
            (
                page(&format!(
                    "path = \"/ui/../x\"\nroles = [\"practitioner\"]\n{title}"
                )),
                "no parameter, query, '..'",
            ),
            (
                page(&format!(
                    "path = \"/ui/a.html?x=1\"\nroles = [\"practitioner\"]\n{title}"
                )),
                "pages.path",
            ),
            (
                page(&format!(
                    "path = \"/ui/a.html\"\nroles = [\"doctor\"]\n{title}"
                )),
                "pages.roles: `doctor` on page `/ui/a.html` is not a role",
            ),
            (
                page(&format!(
                    "path = \"/ui/a.html\"\nroles = [\"service\"]\n{title}"
                )),
                "pages are shown to practitioner, hospital-admin, citizen only",
            ),
            (
                page(&format!("path = \"/ui/a.html\"\nroles = []\n{title}")),
                "lists no role",
            ),
            (
                page(&format!(
                    "path = \"/ui/a.html\"\nroles = [\"citizen\"]\n{title}"
                )),
                "its route `/ui/{file}` serves practitioner, hospital-admin only",
            ),
            (
                page(&format!(
                    "path = \"/nowhere\"\nroles = [\"practitioner\"]\n{title}"
                )),
                "served by no declared GET route",
            ),
            (
                format!(
                    "{}\n[[pages]]\npath = \"/visits\"\nroles = [\"citizen\"]\n{title}\n",
                    page(&format!(
                        "path = \"/visits\"\nroles = [\"citizen\"]\n{title}"
                    ))
                ),
                "declared twice",
            ),
            (
                page(&format!(
                    "path = \"/ui/a.html\"\nroles = [\"practitioner\"]\n{title}\ncolour = \"red\""
                )),
                "unknown field",
            ),
            (
                format!(
                    "[name]\nvi = \"Tên\"\nen = \"\"\n{}",
                    page(&format!(
                        "path = \"/visits\"\nroles = [\"citizen\"]\n{title}"
                    ))
                ),
                "name: the module's name",
            ),
        ];
        for (tail, expected) in cases {
            let err = parse("", &tail).expect_err(&tail).to_string();
            assert!(err.contains(expected), "{tail}\n=> {err}");
        }
    }

    #[test]
    fn semver() {
        for ok in ["0.1.0", "1.2.3-beta.1", "10.0.0+build.5", "1.0.0-rc.1+x"] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in ["1.0", "1.0.0.0", "01.0.0", "1.0.0-", "1.0.0+", "v1.0.0", ""] {
            assert!(!is_semver(bad), "{bad}");
        }
    }

    #[test]
    fn the_reference_manifests_parse() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
        for id in [
            "hello",
            "visit-counter",
            "his-hl7v2",
            "epharmacy",
            "teleconsult",
        ] {
            let text = std::fs::read_to_string(root.join(id).join("plugin.toml")).expect("read");
            let m = Manifest::parse(&text).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(m.id, id);
        }
    }
}
