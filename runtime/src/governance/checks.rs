//! Submission checks: what the runtime verifies of a bundle before a
//! reviewer sees it. The report is stored with the submitted version and
//! shown to reviewers as it is.

use std::fmt;

use serde::{Deserialize, Serialize};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};

use super::bundle::{Bundle, FORMAT};
use super::manifest::{MAX_MANIFEST_BYTES, Manifest};
use super::signing::{self, VendorKey};
use crate::bindings::PluginPre;
use crate::capabilities::{
    ImportKind, PACKAGE, PACKAGE_VERSION, resolve_import, version_compatible,
};
use crate::engine::PluginEngine;
use crate::plugins::MAX_COMPONENT_BYTES;
use crate::sandbox::StoreState;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Stable name, e.g. `signature`.
    pub name: String,
    pub passed: bool,
    /// Set when the check could not run because an earlier one failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// What was found, in words for the vendor and the reviewer.
    pub detail: String,
}

/// Every check of one submission, in the order they ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// True when every check passed (none failed or was skipped).
    pub passed: bool,
    pub checks: Vec<Check>,
}

impl CheckReport {
    /// The check named `name`.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The checks that failed (skipped ones excluded).
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed && !c.skipped)
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            let mark = match (c.passed, c.skipped) {
                (true, _) => "ok  ",
                (false, true) => "skip",
                (false, false) => "FAIL",
            };
            writeln!(f, "  [{mark}] {:<13} {}", c.name, c.detail)?;
        }
        let failed = self.failures().count();
        if self.passed {
            write!(f, "all {} checks passed", self.checks.len())
        } else {
            write!(f, "{failed} of {} checks failed", self.checks.len())
        }
    }
}

/// The check names, in order.
pub const CHECKS: &[&str] = &[
    "format",
    "size",
    "manifest",
    "signature",
    "component",
    "wit-version",
    "imports",
    "exports",
    "config-schema",
];

/// Collects checks; a check whose prerequisite failed is recorded as skipped.
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn record(&mut self, name: &str, outcome: Result<String, String>) -> bool {
        let passed = outcome.is_ok();
        self.checks.push(Check {
            name: name.into(),
            passed,
            skipped: false,
            detail: outcome.unwrap_or_else(|e| e),
        });
        passed
    }

    fn skip(&mut self, name: &str, because: &[&str]) {
        let failed: Vec<&str> = because
            .iter()
            .copied()
            .filter(|b| self.checks.iter().any(|c| c.name == *b && !c.passed))
            .collect();
        self.checks.push(Check {
            name: name.into(),
            passed: false,
            skipped: true,
            detail: format!("skipped: needs the {} check to pass", failed.join(", ")),
        });
    }

    fn finish(self) -> CheckReport {
        CheckReport {
            passed: self.checks.iter().all(|c| c.passed),
            checks: self.checks,
        }
    }
}

/// Run every submission check on `bundle`. `vendor_keys` are the registered,
/// unrevoked keys (those of other vendors may be included: a signature by one
/// is reported as such). Compiles the component, so call it off the async
/// executor (`spawn_blocking`).
pub fn check_submission(
    engine: &PluginEngine,
    bundle: &Bundle,
    vendor_keys: &[VendorKey],
) -> CheckReport {
    let mut report = Report { checks: Vec::new() };
    report.record("format", Ok(format!("{FORMAT} envelope")));
    run_checks(&mut report, engine, bundle, vendor_keys);
    report.finish()
}

/// Read a bundle file and run every check; a file that is not a bundle fails
/// the `format` check and every other check is reported skipped.
pub fn check_bundle_file(
    engine: &PluginEngine,
    bytes: &[u8],
    vendor_keys: &[VendorKey],
) -> (Option<Bundle>, CheckReport) {
    match Bundle::from_json(bytes) {
        Ok(bundle) => {
            let report = check_submission(engine, &bundle, vendor_keys);
            (Some(bundle), report)
        }
        Err(e) => {
            let mut report = Report { checks: Vec::new() };
            report.record("format", Err(e.to_string()));
            for name in &CHECKS[1..] {
                report.skip(name, &["format"]);
            }
            (None, report.finish())
        }
    }
}

fn run_checks(
    report: &mut Report,
    engine: &PluginEngine,
    bundle: &Bundle,
    vendor_keys: &[VendorKey],
) {
    let size_ok = report.record("size", check_size(bundle));

    let manifest = if size_ok {
        match Manifest::parse_structure(&bundle.manifest) {
            Ok(m) => {
                report.record("manifest", Ok(summary(&m)));
                Some(m)
            }
            Err(e) => {
                report.record("manifest", Err(format!("invalid manifest: {e}")));
                None
            }
        }
    } else {
        report.skip("manifest", &["size"]);
        None
    };

    match &manifest {
        Some(m) => {
            let outcome = signing::verify(bundle, &m.vendor, vendor_keys)
                .map(|k| format!("signed by key {} of vendor `{}`", k.key_id, k.vendor_id))
                .map_err(|e| e.to_string());
            report.record("signature", outcome);
        }
        None => report.skip("signature", &["size", "manifest"]),
    }

    let component = if size_ok {
        match engine.load_component(&bundle.component, &bundle.component_sha256()) {
            Ok(c) => {
                report.record(
                    "component",
                    Ok(format!(
                        "a valid Wasm component of {} bytes, SHA-256 {}",
                        bundle.component.len(),
                        bundle.component_sha256()
                    )),
                );
                Some(c)
            }
            Err(e) => {
                report.record("component", Err(e.to_string()));
                None
            }
        }
    } else {
        report.skip("component", &["size"]);
        None
    };

    let versions_ok = match &component {
        Some(c) => report.record("wit-version", check_wit_version(engine, c)),
        None => {
            report.skip("wit-version", &["size", "component"]);
            false
        }
    };

    let imports_ok = match (&component, &manifest, versions_ok) {
        (Some(c), Some(m), true) => report.record("imports", check_imports(engine, c, m)),
        _ => {
            report.skip("imports", &["size", "manifest", "component", "wit-version"]);
            false
        }
    };

    match (&component, &manifest, imports_ok) {
        (Some(c), Some(m), true) => {
            report.record("exports", check_exports(engine, c, m));
        }
        _ => report.skip("exports", &["size", "manifest", "component", "imports"]),
    }

    match &manifest {
        Some(m) => {
            let outcome = m
                .check_config()
                .map(|()| match (&m.config.schema, &m.config.defaults) {
                    (None, _) => {
                        "no configuration schema (the plugin takes no configuration)".to_owned()
                    }
                    (Some(_), None) => "the configuration schema compiles".to_owned(),
                    (Some(_), Some(_)) => {
                        "the configuration schema compiles and the defaults satisfy it".to_owned()
                    }
                })
                .map_err(|e| e.to_string());
            report.record("config-schema", outcome);
        }
        None => report.skip("config-schema", &["size", "manifest"]),
    }
}

fn check_size(bundle: &Bundle) -> Result<String, String> {
    let (m, c) = (bundle.manifest.len(), bundle.component.len());
    if m > MAX_MANIFEST_BYTES {
        return Err(format!(
            "the manifest is {m} bytes, over the {MAX_MANIFEST_BYTES} byte limit"
        ));
    }
    if c as u64 > MAX_COMPONENT_BYTES {
        return Err(format!(
            "the component is {c} bytes, over the {MAX_COMPONENT_BYTES} byte limit"
        ));
    }
    if c == 0 {
        return Err("the component is empty".into());
    }
    Ok(format!(
        "manifest {m} bytes (limit {MAX_MANIFEST_BYTES}), component {c} bytes (limit {MAX_COMPONENT_BYTES})"
    ))
}

fn summary(m: &Manifest) -> String {
    let requested = if m.capabilities.is_empty() {
        "no capabilities".to_owned()
    } else {
        m.capabilities
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{} {} by vendor `{}` ({}), requests {requested}",
        m.id,
        m.version,
        m.vendor,
        m.kind.name()
    )
}

/// Every platform interface the component imports or exports must be of a
/// package version this runtime supports.
fn check_wit_version(engine: &PluginEngine, component: &Component) -> Result<String, String> {
    let ty = component.component_type();
    let names: Vec<&str> = ty
        .imports(engine.engine())
        .map(|(n, _)| n)
        .chain(ty.exports(engine.engine()).map(|(n, _)| n))
        .collect();
    let mut bad = Vec::new();
    for name in names {
        let (path, version) = name.split_once('@').unwrap_or((name, ""));
        let platform = path
            .split_once('/')
            .is_some_and(|(package, _)| package == PACKAGE);
        if platform && !version_compatible(version) {
            bad.push(format!("`{name}`"));
        }
    }
    if bad.is_empty() {
        Ok(format!(
            "built against a version of {PACKAGE} compatible with {PACKAGE_VERSION}"
        ))
    } else {
        Err(format!(
            "{} not supported by this runtime ({PACKAGE}@{PACKAGE_VERSION})",
            bad.join(", ")
        ))
    }
}

/// Every import must be a platform interface among the capabilities the
/// manifest requests.
fn check_imports(
    engine: &PluginEngine,
    component: &Component,
    manifest: &Manifest,
) -> Result<String, String> {
    let requested = manifest.requested();
    let mut used = Vec::new();
    let mut problems = Vec::new();
    for (name, item) in component.component_type().imports(engine.engine()) {
        if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
            problems.push(format!("imports `{name}`, which is not an interface"));
            continue;
        }
        match resolve_import(name) {
            Ok(ImportKind::TypesOnly) => {}
            Ok(ImportKind::Capability(c)) if requested.contains(&c) => used.push(c.name()),
            Ok(ImportKind::Capability(c)) => problems.push(format!(
                "imports `{name}`, but the manifest does not request `{c}`"
            )),
            Err(e) => problems.push(e),
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let unused: Vec<&str> = requested
        .iter()
        .map(|c| c.name())
        .filter(|c| !used.contains(c))
        .collect();
    let mut detail = if used.is_empty() {
        "imports no capability".to_owned()
    } else {
        format!("imports only requested capabilities: {}", used.join(", "))
    };
    if !unused.is_empty() {
        // Not a failure, but a reviewer may narrow the grant accordingly.
        detail.push_str(&format!(
            " (requested but not imported: {})",
            unused.join(", ")
        ));
    }
    Ok(detail)
}

/// The component must link with the requested capabilities and export the
/// platform's `plugin` world.
fn check_exports(
    engine: &PluginEngine,
    component: &Component,
    manifest: &Manifest,
) -> Result<String, String> {
    let mut linker = Linker::<StoreState>::new(engine.engine());
    for capability in manifest.requested() {
        capability
            .add_to_linker(&mut linker)
            .map_err(|e| format!("cannot link `{capability}`: {e:#}"))?;
    }
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| format!("does not link: {e:#}"))?;
    PluginPre::new(pre).map_err(|e| {
        format!("does not export the platform's `plugin` world (http-handler, lifecycle): {e:#}")
    })?;
    Ok("exports the platform's `plugin` world".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::governance::signing::SigningKey;

    const MANIFEST: &str = r#"id = "empty"
version = "0.1.0"
vendor = "acme"
kind = "workflow"
capabilities = ["log"]

[description]
vi = "Trống."
en = "Empty."
"#;

    fn engine() -> PluginEngine {
        PluginEngine::on_demand(&Limits::default()).expect("engine")
    }

    #[test]
    fn an_empty_component_fails_exports_and_a_bad_file_skips_the_rest() {
        let engine = engine();
        let key = SigningKey::generate().expect("key");
        let keys = [VendorKey::new("acme", key.public_key())];
        // The engine accepts WAT text: an empty component compiles but exports nothing.
        let mut bundle = Bundle::new(MANIFEST.into(), b"(component)".to_vec());
        key.sign(&mut bundle);
        let report = check_submission(&engine, &bundle, &keys);
        let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, CHECKS);
        for name in [
            "format",
            "size",
            "manifest",
            "signature",
            "component",
            "imports",
        ] {
            assert!(report.get(name).expect(name).passed, "{report}");
        }
        assert!(!report.passed);
        assert!(
            report
                .get("exports")
                .expect("exports")
                .detail
                .contains("plugin")
        );

        let (parsed, report) = check_bundle_file(&engine, b"not json", &keys);
        assert!(parsed.is_none());
        assert!(!report.passed);
        assert_eq!(report.checks.len(), CHECKS.len());
        assert!(report.checks[1..].iter().all(|c| c.skipped));
        assert!(report.to_string().contains("[skip]"));
    }

    #[test]
    fn an_invalid_manifest_skips_what_needs_it() {
        let engine = engine();
        let bundle = Bundle::new("id = 3".into(), b"\0asm\x0d\0\x01\0".to_vec());
        let report = check_submission(&engine, &bundle, &[]);
        assert!(!report.get("manifest").expect("manifest").passed);
        for name in ["signature", "imports", "exports", "config-schema"] {
            let check = report.get(name).expect(name);
            assert!(check.skipped, "{name}: {report}");
            assert!(check.detail.contains("manifest"), "{}", check.detail);
        }
        let json = serde_json::to_value(&report).expect("serialize");
        assert_eq!(json["passed"], false);
        assert_eq!(json["checks"][0]["name"], "format");
    }

    #[test]
    fn oversized_parts_fail_the_size_check() {
        let engine = engine();
        let bundle = Bundle::new("#".repeat(MAX_MANIFEST_BYTES + 1), vec![0]);
        let report = check_submission(&engine, &bundle, &[]);
        assert!(!report.get("size").expect("size").passed);
        assert!(report.get("component").expect("component").skipped);
    }
}
