//! Plugins loaded from a directory: manifest, compiled component, granted
//! capabilities and the `InstancePre` every call starts from.
//!
//! Until governance lands, a plugin is `<id>.wasm` beside its manifest
//! `<id>.toml`, and the manifest's `capabilities` are its grant.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Serialize;
use wasmtime::component::Linker;
use wasmtime::component::types::ComponentItem;

use crate::bindings::PluginPre;
use crate::capabilities::{Capability, ImportKind, resolve_import};
use crate::engine::{PluginEngine, digest};
pub use crate::manifest::{Description, Manifest, PluginKind};
use crate::records::scopes::RecordGrant;
use crate::sandbox::StoreState;

/// Largest component file accepted.
pub const MAX_COMPONENT_BYTES: u64 = 32 << 20;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("component is {size} bytes, over the {MAX_COMPONENT_BYTES} byte limit")]
    TooLarge { size: u64 },
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error("plugin {0}")]
    Import(String),
    #[error(
        "plugin `{plugin}` imports `{import}`, which is not granted to it (granted: {granted})"
    )]
    NotGranted {
        plugin: String,
        import: String,
        granted: String,
    },
    #[error("cannot link the plugin: {0}")]
    Link(String),
    #[error("the plugin does not export the platform's `plugin` world: {0}")]
    Exports(String),
}

/// A plugin ready to serve calls.
pub struct LoadedPlugin {
    pub manifest: Manifest,
    /// SHA-256 of the component.
    pub digest: String,
    pub granted: BTreeSet<Capability>,
    /// The data scopes and purposes granted within `records`.
    pub records: Arc<RecordGrant>,
    /// Granted `identity:national-ids`: `identity` shows the calling
    /// citizen's citizen ID and health ID.
    pub national_ids: bool,
    pub pre: PluginPre<StoreState>,
}

/// A plugin the runtime knows of: ready, or failed to load (and why).
pub enum PluginEntry {
    Ready(Arc<LoadedPlugin>),
    Failed { reason: String },
}

/// Status of a plugin, as shown by the API.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    pub id: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub capabilities: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The development plugins this node loaded from a directory (`--dev-plugins`),
/// by id; reviewed versions live in governance's registry.
#[derive(Default)]
pub struct DevPlugins {
    entries: RwLock<HashMap<String, Arc<PluginEntry>>>,
}

impl DevPlugins {
    /// The entry for `id`.
    pub fn get(&self, id: &str) -> Option<Arc<PluginEntry>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Record the outcome of loading `id`.
    pub fn insert(&self, id: String, entry: PluginEntry) {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::new(entry));
    }

    /// Status of every plugin, sorted by id.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = entries
            .iter()
            .map(|(id, entry)| match entry.as_ref() {
                PluginEntry::Ready(p) => PluginStatus {
                    id: id.clone(),
                    status: "ready",
                    version: Some(p.manifest.version.clone()),
                    digest: Some(p.digest.clone()),
                    capabilities: p.granted.iter().map(|c| c.name().to_owned()).collect(),
                    error: None,
                },
                PluginEntry::Failed { reason } => PluginStatus {
                    id: id.clone(),
                    status: "failed",
                    version: None,
                    digest: None,
                    capabilities: vec![],
                    error: Some(reason.clone()),
                },
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Load every `*.wasm` in `dir` (with its `.toml` manifest). A plugin that
    /// fails is recorded as failed with its reason; the others still load.
    pub async fn load_dir(
        &self,
        engine: &Arc<PluginEngine>,
        dir: &Path,
    ) -> Result<usize, LoadError> {
        let io = |source| LoadError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut wasm_files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "wasm") {
                wasm_files.push(path);
            }
        }
        wasm_files.sort();
        let mut ready = 0;
        for path in wasm_files {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let engine = engine.clone();
            let load_path = path.clone();
            let outcome = tokio::task::spawn_blocking(move || load_plugin(&engine, &load_path))
                .await
                .unwrap_or_else(|e| Err(LoadError::Link(format!("loader task failed: {e}"))));
            match outcome {
                Ok(plugin) => {
                    tracing::info!(plugin = %plugin.manifest.id, version = %plugin.manifest.version,
                        digest = %&plugin.digest[..12], "plugin loaded");
                    ready += 1;
                    self.insert(
                        plugin.manifest.id.clone(),
                        PluginEntry::Ready(Arc::new(plugin)),
                    );
                }
                Err(e) => {
                    tracing::error!(plugin = %stem, path = %path.display(), error = %e, "plugin failed to load");
                    self.insert(
                        stem,
                        PluginEntry::Failed {
                            reason: e.to_string(),
                        },
                    );
                }
            }
        }
        Ok(ready)
    }
}

/// Load one plugin: `path` is its component, `path` with `.toml` its manifest.
pub fn load_plugin(engine: &PluginEngine, path: &Path) -> Result<LoadedPlugin, LoadError> {
    let manifest_path = path.with_extension("toml");
    let text = std::fs::read_to_string(&manifest_path).map_err(|source| LoadError::Io {
        path: manifest_path.clone(),
        source,
    })?;
    let manifest = Manifest::parse(&text).map_err(|e| LoadError::Manifest {
        path: manifest_path.clone(),
        message: e.to_string(),
    })?;
    let size = std::fs::metadata(path)
        .map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if size > MAX_COMPONENT_BYTES {
        return Err(LoadError::TooLarge { size });
    }
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    prepare(engine, manifest, &bytes)
}

/// Compile (or load from cache) a component, check its imports against the
/// manifest's grant and link exactly the granted capabilities.
pub fn prepare(
    engine: &PluginEngine,
    manifest: Manifest,
    bytes: &[u8],
) -> Result<LoadedPlugin, LoadError> {
    let granted = manifest.requested();
    let records = RecordGrant::from_grants(
        manifest
            .capabilities
            .iter()
            .filter(|c| c.capability == Capability::Records)
            .flat_map(|c| c.scopes.iter().map(|s| format!("records:{s}")))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    );
    let national_ids = manifest
        .capabilities
        .iter()
        .flat_map(|c| c.grant_strings())
        .any(|g| g == crate::capabilities::NATIONAL_IDS_GRANT);
    let mut plugin = prepare_granted(engine, manifest, bytes, granted, records)?;
    plugin.national_ids = national_ids;
    Ok(plugin)
}

/// Like [`prepare`], for a reviewed version: every import must have been
/// requested; the requested interfaces are linked, and calls into one that
/// the review did not grant are refused at call time (`denied`).
pub fn prepare_granted(
    engine: &PluginEngine,
    manifest: Manifest,
    bytes: &[u8],
    granted: BTreeSet<Capability>,
    records: RecordGrant,
) -> Result<LoadedPlugin, LoadError> {
    let digest = digest(bytes);
    let component = engine.load_component(bytes, &digest)?;
    let requested = manifest.requested();
    let wasm_engine = engine.engine();
    for (name, item) in component.component_type().imports(wasm_engine) {
        if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
            return Err(LoadError::Import(format!(
                "imports `{name}`, which is not an interface"
            )));
        }
        match resolve_import(name).map_err(LoadError::Import)? {
            ImportKind::TypesOnly => {}
            ImportKind::Capability(c) if requested.contains(&c) => {}
            ImportKind::Capability(_) => {
                return Err(LoadError::NotGranted {
                    plugin: manifest.id.clone(),
                    import: name.to_owned(),
                    granted: requested
                        .iter()
                        .map(|c| c.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }
    let mut linker = Linker::<StoreState>::new(wasm_engine);
    for capability in &requested {
        capability
            .add_to_linker(&mut linker)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
    }
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|e| LoadError::Link(format!("{e:#}")))?;
    let pre = PluginPre::new(instance_pre).map_err(|e| LoadError::Exports(format!("{e:#}")))?;
    Ok(LoadedPlugin {
        manifest,
        digest,
        granted,
        records: Arc::new(records),
        national_ids: false,
        pre,
    })
}
