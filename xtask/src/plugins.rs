//! `cargo xtask build-plugins`: guest workspace → core modules → components + manifests.
//!
//! Every directory under `plugins/` (reference plugins) and `tests/plugins/` (test-only
//! plugins) that holds a `plugin.toml` is a plugin. Next to `plugin.toml`, any
//! `<variant>.plugin.toml` describes another plugin made of the same component (for tests,
//! e.g. `hostile-nogrant`). Outputs, named by the manifest's `id`:
//!
//! - `target/plugins/<id>.wasm` and `target/plugins/<id>.toml` for reference plugins,
//! - `target/test-plugins/<id>.wasm` and `target/test-plugins/<id>.toml` for test plugins.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::manifest::Manifest;
use crate::toolchain::{self, TARGET};

/// Guest workspaces to build, relative to the repository root. `tests/plugins/*` are members
/// of `plugins/Cargo.toml` through `package.workspace`.
const GUEST_WORKSPACES: &[&str] = &["plugins/Cargo.toml"];

/// Where plugins live, and whether they are test-only.
const PLUGIN_DIRS: &[(&str, Kind)] = &[("plugins", Kind::Reference), ("tests/plugins", Kind::Test)];

const WIT_PACKAGE: &str = "vtelehealth:platform";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reference,
    Test,
}

impl Kind {
    fn out_dir(self, root: &Path) -> PathBuf {
        match self {
            Kind::Reference => root.join("target/plugins"),
            Kind::Test => root.join("target/test-plugins"),
        }
    }
}

/// A crate directory with at least one manifest.
struct PluginCrate {
    dir: PathBuf,
    crate_name: String,
    kind: Kind,
    manifests: Vec<PathBuf>,
}

pub fn build(root: &Path, options: &toolchain::Options) -> Result<()> {
    let crates = discover(root)?;
    if crates.is_empty() {
        bail!("no plugins found (no */plugin.toml under plugins/ or tests/plugins/)");
    }

    println!("[1/3] checking the Rust toolchain for {TARGET}");
    let route = toolchain::ensure(options)?;

    let target_dir = route.target_dir(root);
    for (i, workspace) in GUEST_WORKSPACES.iter().enumerate() {
        println!(
            "[2/3] building the guest workspace {workspace} (release, {TARGET}){}",
            progress(i, GUEST_WORKSPACES.len())
        );
        let mut cmd = route.cargo_build();
        cmd.current_dir(root)
            .arg("--manifest-path")
            .arg(workspace)
            .arg("--workspace")
            .arg("--target-dir")
            .arg(&target_dir);
        crate::run_command(cmd)
            .with_context(|| format!("building the guest workspace {workspace}"))?;
    }

    let module_dir = target_dir.join(TARGET).join("release");
    let total: usize = crates.iter().map(|c| c.manifests.len()).sum();
    println!("[3/3] making components ({total} plugins)");
    let mut ids = BTreeSet::new();
    for plugin in &crates {
        let module = module_dir.join(format!("{}.wasm", plugin.crate_name.replace('-', "_")));
        if !module.is_file() {
            bail!(
                "cargo did not produce {} for {}: does its Cargo.toml say crate-type = [\"cdylib\"], \
                 and is it a member of a guest workspace?",
                module.display(),
                plugin.dir.display()
            );
        }
        let mut component: Option<Vec<u8>> = None;
        for manifest_path in &plugin.manifests {
            let (manifest, text) = Manifest::load(manifest_path)?;
            if !ids.insert(manifest.id.clone()) {
                bail!(
                    "two manifests use the id {:?} ({})",
                    manifest.id,
                    manifest_path.display()
                );
            }
            let out_dir = plugin.kind.out_dir(root);
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("creating {}", out_dir.display()))?;
            let out_wasm = out_dir.join(format!("{}.wasm", manifest.id));
            let out_toml = out_dir.join(format!("{}.toml", manifest.id));
            let label = format!("{} {}", manifest.id, manifest.version);

            if newer_than(&[&out_wasm, &out_toml], &[&module, manifest_path])? {
                println!("      {label}: up to date");
                let bytes = std::fs::read(&out_wasm)
                    .with_context(|| format!("reading {}", out_wasm.display()))?;
                check_imports(&bytes, &manifest, plugin.kind, &label)?;
                continue;
            }
            if component.is_none() {
                component = Some(componentize(&module)?);
            }
            let bytes = component.as_deref().expect("set above");
            // Check before writing, so a refused plugin leaves no output behind.
            check_imports(bytes, &manifest, plugin.kind, &label)?;
            std::fs::write(&out_wasm, bytes)
                .with_context(|| format!("writing {}", out_wasm.display()))?;
            std::fs::write(&out_toml, &text)
                .with_context(|| format!("writing {}", out_toml.display()))?;
            println!(
                "      {label}: wrote {} ({} KiB)",
                relative(root, &out_wasm),
                bytes.len().div_ceil(1024)
            );
        }
    }
    println!(
        "      done: reference plugins in {}, test plugins in {}",
        relative(root, &Kind::Reference.out_dir(root)),
        relative(root, &Kind::Test.out_dir(root))
    );
    Ok(())
}

/// Turn a core module with wit-bindgen's `component-type` section into a validated component.
fn componentize(module: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    wit_component::ComponentEncoder::default()
        .module(&bytes)
        .and_then(|encoder| encoder.validate(true).encode())
        .with_context(|| format!("turning {} into a component", module.display()))
}

/// The `vtelehealth:platform` interfaces a component imports, e.g. `["kv", "log", "types"]`;
/// an import from any other package is an error.
pub fn imported_interfaces(component: &[u8]) -> Result<BTreeSet<String>> {
    use wasmparser::{Parser, Payload};
    let mut interfaces = BTreeSet::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(component) {
        match payload.context("parsing the component")? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let name = import.context("reading an import")?.name.name;
                    let interface = name
                        .strip_prefix(WIT_PACKAGE)
                        .and_then(|rest| rest.strip_prefix('/'))
                        .map(|rest| rest.split('@').next().unwrap_or(rest));
                    match interface {
                        Some(interface) => interfaces.insert(interface.to_owned()),
                        None => bail!("imports {name:?}, which is not part of {WIT_PACKAGE}"),
                    };
                }
            }
            _ => {}
        }
    }
    Ok(interfaces)
}

/// Compare the component's imports with the manifest's capabilities.
fn check_imports(component: &[u8], manifest: &Manifest, kind: Kind, label: &str) -> Result<()> {
    let imports = imported_interfaces(component).with_context(|| format!("inspecting {label}"))?;
    let used: Vec<&str> = imports
        .iter()
        .map(String::as_str)
        .filter(|i| *i != "types")
        .collect();
    let not_granted: Vec<&str> = used
        .iter()
        .copied()
        .filter(|i| !manifest.capability_names().contains(i))
        .collect();
    let unused: Vec<&str> = manifest
        .capability_names()
        .into_iter()
        .filter(|c| !used.contains(c))
        .collect();
    println!("      {label}: imports {}", used.join(", "));
    if !unused.is_empty() {
        println!(
            "      {label}: note: capabilities {} are listed but not imported",
            unused.join(", ")
        );
    }
    if !not_granted.is_empty() {
        match kind {
            Kind::Reference => bail!(
                "{label} imports {} but its manifest's capabilities do not list them: add them to \
                 `capabilities`, or stop calling them",
                not_granted.join(", ")
            ),
            Kind::Test => println!(
                "      {label}: imports {} without listing them (test plugin: on purpose)",
                not_granted.join(", ")
            ),
        }
    }
    Ok(())
}

/// Plugin crates under the plugin directories, sorted by path.
fn discover(root: &Path) -> Result<Vec<PluginCrate>> {
    let mut crates = Vec::new();
    for &(base, kind) in PLUGIN_DIRS {
        let base = root.join(base);
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("plugin.toml").is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let mut manifests = vec![dir.join("plugin.toml")];
            let mut variants: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("listing {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(".plugin.toml"))
                })
                .collect();
            variants.sort();
            manifests.extend(variants);
            crates.push(PluginCrate {
                crate_name: crate_name(&dir)?,
                dir,
                kind,
                manifests,
            });
        }
    }
    Ok(crates)
}

fn crate_name(dir: &Path) -> Result<String> {
    let path = dir.join("Cargo.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    table
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .with_context(|| format!("{} has no package.name", path.display()))
}

/// Whether every output exists and is at least as new as every input.
fn newer_than(outputs: &[&Path], inputs: &[&Path]) -> Result<bool> {
    let mut newest_input = SystemTime::UNIX_EPOCH;
    for input in inputs {
        let modified = std::fs::metadata(input)
            .and_then(|m| m.modified())
            .with_context(|| format!("reading the time of {}", input.display()))?;
        newest_input = newest_input.max(modified);
    }
    Ok(outputs.iter().all(|output| {
        std::fs::metadata(output)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= newest_input)
    }))
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn progress(i: usize, n: usize) -> String {
    if n > 1 {
        format!(" ({}/{n})", i + 1)
    } else {
        String::new()
    }
}
