//! The direction of dependencies inside `runtime/src` (docs/architecture.md).
//!
//! Every top-level module has a layer; a module may use only modules of
//! lower layers (the host modules `engine`, `manifest`, `plugins`, `sandbox`
//! form one layer and may use each other, as do `lib` and `demo`). A reference is any `crate::<module>` path
//! outside a comment, or `super::<item>` in a top-level module's own file.
//!
//! The edges that still point upward are listed in `KNOWN_UPWARD`, each with
//! its count of references: the listing may only shrink. A new upward
//! reference fails the test, and so does a fixed one left in the list, so
//! the list always says what is left to untangle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Layer of each top-level module, lowest first.
const LAYERS: &[(&str, u32)] = &[
    // Ground: no domain knowledge.
    ("time", 0),
    ("text_limits", 0),
    ("query", 0),
    ("config", 1),
    ("db", 2),
    ("secrets", 3),
    ("audit", 4),
    ("metrics", 3),
    ("cluster", 4),
    ("directory", 5),
    // The register of facilities and vendors, over the directory.
    ("network", 6),
    // Domain services, no axum and no Runtime; identity is below the rest.
    ("identity", 10),
    ("records", 11),
    ("notify", 12),
    ("imaging", 13),
    ("payment", 14),
    ("video", 15),
    ("outbound", 16),
    // What plugins reach: the WIT bindings, then one module per interface.
    ("bindings", 19),
    ("capabilities", 20),
    // The host: engine, manifest, loader, sandbox.
    ("engine", 30),
    ("manifest", 30),
    ("plugins", 30),
    ("sandbox", 30),
    ("governance", 40),
    // The composition root: lib.rs (the Runtime) and the demo network.
    ("lib", 50),
    ("demo", 50),
    ("api", 60),
];

/// Upward edges not yet untangled (issue 13), with their reference counts.
const KNOWN_UPWARD: &[(&str, &str, usize)] = &[];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read runtime/src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The identifiers following `prefix` (`crate::`, `super::`) in `code`.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + prefix.len()..];
        let end = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') && end > 0 {
            found.push(&after[..end]);
        }
        rest = &after[end..];
    }
    found
}

/// `(from, to) -> references` for every edge between top-level modules.
fn edges() -> BTreeMap<(String, String), usize> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges = BTreeMap::new();
    for file in files {
        let rel: Vec<String> = file
            .strip_prefix(&src)
            .expect("under src")
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        let from = rel[0].trim_end_matches(".rs").to_owned();
        if from == "main" {
            // The binary is its own crate on top of everything.
            continue;
        }
        // In `src/x.rs` and `src/x/mod.rs`, `super::` is the crate root.
        let top_file = rel.len() == 1 || (rel.len() == 2 && rel[1] == "mod.rs");
        let text = std::fs::read_to_string(&file).expect("read source");
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or_default();
            let mut targets = paths_after(code, "crate::");
            if top_file {
                targets.extend(paths_after(code, "super::"));
            }
            for target in targets {
                // An item of lib.rs (`crate::Runtime`) rather than a module.
                let to = if layer(target).is_some() {
                    target
                } else {
                    "lib"
                };
                if to != from {
                    *edges.entry((from.clone(), to.to_owned())).or_insert(0) += 1;
                }
            }
        }
    }
    edges
}

#[test]
fn every_top_level_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&src).expect("read runtime/src") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name == "main" {
            continue;
        }
        assert!(
            layer(&name).is_some(),
            "runtime/src/{name}: give it a layer in LAYERS (tests/layers.rs) and docs/architecture.md"
        );
    }
}

#[test]
fn dependencies_point_down_except_the_known_upward_edges() {
    let mut upward = BTreeMap::new();
    for ((from, to), n) in edges() {
        let (Some(lf), Some(lt)) = (layer(&from), layer(&to)) else {
            continue;
        };
        // The host (30) and the composition root (50) are one layer each.
        if lt > lf || (lt == lf && lf != 30 && lf != 50) {
            upward.insert((from, to), n);
        }
    }
    let known: BTreeMap<(String, String), usize> = KNOWN_UPWARD
        .iter()
        .map(|(f, t, n)| ((f.to_string(), t.to_string()), *n))
        .collect();
    let mut problems = Vec::new();
    for ((from, to), n) in &upward {
        match known.get(&(from.clone(), to.clone())) {
            None => problems.push(format!(
                "new upward dependency {from} -> {to} ({n} references)"
            )),
            Some(k) if n > k => {
                problems.push(format!("{from} -> {to} grew from {k} to {n} references"))
            }
            Some(k) if n < k => problems.push(format!(
                "{from} -> {to} shrank from {k} to {n} references: lower its count in KNOWN_UPWARD"
            )),
            Some(_) => {}
        }
    }
    for (from, to) in known.keys() {
        if !upward.contains_key(&(from.clone(), to.clone())) {
            problems.push(format!(
                "{from} -> {to} no longer points up: remove it from KNOWN_UPWARD"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_parser_sees_paths_and_skips_lookalikes() {
    assert_eq!(
        paths_after(
            "use crate::db::Database; x::crate::no; crate::Runtime",
            "crate::"
        ),
        vec!["db", "Runtime"]
    );
    assert_eq!(paths_after("my_crate::db", "crate::"), Vec::<&str>::new());
}

/// Below the host, nothing speaks HTTP: routes, extractors, WebSockets and
/// the mapping of errors to status codes belong to `api/`.
#[test]
fn no_module_below_the_host_names_axum() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut offenders = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let top = rel
            .iter()
            .next()
            .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_owned())
            .unwrap_or_default();
        if layer(&top).is_none_or(|l| l >= 30) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if paths_after(code, "axum::").len() + usize::from(code.contains("use axum")) > 0 {
                offenders.push(format!("{}:{}", rel.display(), n + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "modules below the host name axum: {offenders:?}"
    );
}
