//! The wasmtime engine: pooling allocator, epoch ticker thread and the
//! on-disk cache of compiled components.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::{EPOCH_TICK, Limits};

/// Bytes of each pooled linear memory kept mapped between calls: covers a
/// Rust plugin's 1 MiB shadow stack and its first heap pages.
const KEEP_RESIDENT_BYTES: usize = 2 << 20;

/// Why the engine could not be created or a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot configure the wasm engine: {0}")]
    Config(String),
    #[error("not a valid wasm component: {0}")]
    InvalidComponent(String),
    #[error("compiled-component cache at {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The shared wasmtime engine of one runtime node.
pub struct PluginEngine {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    fingerprint: String,
    ticker: Option<EpochTicker>,
}

impl PluginEngine {
    /// Build an engine enforcing `limits`, caching compiled components in
    /// `cache_dir` when given.
    pub fn new(limits: &Limits, cache_dir: Option<PathBuf>) -> Result<Self, EngineError> {
        Self::build(limits, cache_dir, true)
    }

    /// An engine without the pooling allocator: the baseline the benchmarks
    /// compare pooling with. Not for serving.
    pub fn on_demand(limits: &Limits) -> Result<Self, EngineError> {
        Self::build(limits, None, false)
    }

    fn build(
        limits: &Limits,
        cache_dir: Option<PathBuf>,
        pooling: bool,
    ) -> Result<Self, EngineError> {
        let slots = limits.max_concurrent_calls;
        let per_component = limits.core_instances as u32;
        let pool = |pagemap_scan: bool| {
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(slots)
                .total_core_instances(slots * per_component)
                .total_memories(slots)
                .total_tables(slots * 4)
                .total_stacks(slots)
                .max_memories_per_component(1)
                .max_tables_per_component(4)
                .max_core_instances_per_component(per_component)
                .max_memory_size(limits.memory_bytes)
                .table_elements(limits.table_elements);
            if pagemap_scan {
                // Reset a slot by rewriting only the pages the last call
                // dirtied (PAGEMAP_SCAN, Linux 6.7+) instead of unmapping
                // them: the next call on the slot takes no page faults.
                // Memory still returns to its initial contents.
                pool.pagemap_scan(wasmtime::Enabled::Yes)
                    .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
                    .table_keep_resident(64 << 10);
            }
            pool
        };
        let config = |strategy: Option<PoolingAllocationConfig>| {
            let mut config = Config::new();
            if let Some(pool) = strategy {
                config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            }
            config
                .epoch_interruption(true)
                .max_wasm_stack(limits.max_wasm_stack)
                .memory_init_cow(true)
                .wasm_component_model(true);
            config
        };
        let engine = if pooling {
            // Without PAGEMAP_SCAN, keeping memory resident would mean a
            // memset of the whole prefix per call: fall back to madvise.
            Engine::new(&config(Some(pool(true))))
                .or_else(|_| Engine::new(&config(Some(pool(false)))))
        } else {
            Engine::new(&config(None))
        }
        .map_err(|e| EngineError::Config(format!("{e:#}")))?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let fingerprint = format!("{:016x}", hasher.finish());
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| EngineError::Cache {
                path: dir.clone(),
                source,
            })?;
        }
        let ticker = Some(
            EpochTicker::start(engine.clone())
                .map_err(|e| EngineError::Config(format!("epoch ticker: {e}")))?,
        );
        Ok(Self {
            engine,
            cache_dir,
            fingerprint,
            ticker,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compile `bytes` (digest `digest`), or load the artifact compiled
    /// earlier for the same digest and engine configuration.
    pub fn load_component(&self, bytes: &[u8], digest: &str) -> Result<Component, EngineError> {
        let Some(dir) = &self.cache_dir else {
            return self.compile(bytes);
        };
        let artifact = dir.join(format!("{digest}-{}.cwasm", self.fingerprint));
        let checksum = artifact.with_extension("cwasm.sha256");
        if let Some(component) = self.load_cached(&artifact, &checksum) {
            return Ok(component);
        }
        let component = self.compile(bytes)?;
        if let Err(e) = self.store_cached(&component, &artifact, &checksum) {
            tracing::warn!(path = %artifact.display(), error = %e, "could not cache compiled component");
        }
        Ok(component)
    }

    fn compile(&self, bytes: &[u8]) -> Result<Component, EngineError> {
        Component::new(&self.engine, bytes)
            .map_err(|e| EngineError::InvalidComponent(format!("{e:#}")))
    }

    fn load_cached(&self, artifact: &Path, checksum: &Path) -> Option<Component> {
        let bytes = std::fs::read(artifact).ok()?;
        let expected = std::fs::read_to_string(checksum).ok()?;
        // Guards against a truncated or corrupted file; the cache directory
        // itself must be writable only by the operator (docs/operations.md).
        if hex::encode(Sha256::digest(&bytes)) != expected.trim() {
            tracing::warn!(path = %artifact.display(), "cached component checksum mismatch; recompiling");
            return None;
        }
        // SAFETY: the artifact was produced by `Component::serialize` of an
        // engine with the same compatibility fingerprint (part of the file
        // name) and its checksum matches what we wrote.
        match unsafe { Component::deserialize(&self.engine, &bytes) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %artifact.display(), error = %e, "stale cached component; recompiling");
                None
            }
        }
    }

    fn store_cached(
        &self,
        component: &Component,
        artifact: &Path,
        checksum: &Path,
    ) -> Result<(), EngineError> {
        let cache_err = |source| EngineError::Cache {
            path: artifact.to_path_buf(),
            source,
        };
        let bytes = component.serialize().map_err(|e| EngineError::Cache {
            path: artifact.to_path_buf(),
            source: std::io::Error::other(format!("{e:#}")),
        })?;
        // Write to a temporary name and rename, so a crash never leaves a
        // half-written artifact under the final name.
        let tmp = artifact.with_extension("cwasm.tmp");
        std::fs::write(&tmp, &bytes).map_err(cache_err)?;
        std::fs::write(checksum, hex::encode(Sha256::digest(&bytes))).map_err(cache_err)?;
        std::fs::rename(&tmp, artifact).map_err(cache_err)?;
        Ok(())
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.stop();
        }
    }
}

/// Advances the engine's epoch on its own OS thread, so a busy async
/// executor can never delay the interruption of guest code.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self { stop, handle })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
    }
}

/// Hex SHA-256 of a component's bytes: its identity in caches and logs.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
