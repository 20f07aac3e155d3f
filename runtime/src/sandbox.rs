//! One plugin call: a fresh instance in a store that carries the call's
//! context and limits, and the mapping of every way it can fail.

use std::sync::Arc;

use wasmtime::{ResourceLimiter, Store, StoreContextMut, Trap, UpdateDeadline};

use std::collections::BTreeSet;

use crate::bindings::{Plugin, Request, Response};
use crate::capabilities::identity::{CallContext, CallServices, Hospital};
use crate::capabilities::kv::{KvScope, KvStore};
use crate::capabilities::{CallState, CallView, Capability, CapabilityDenied, RecordsState};
use crate::config::Limits;
use crate::identity::Principal;
use crate::plugins::LoadedPlugin;
use crate::video::rooms::VideoService;

/// The one place a plugin call's state is assembled, for plugin routes,
/// activation hooks and rollouts alike: the calling hospital, plugin and
/// person, the (hospital, plugin) kv scope under the given limits, and the
/// grants of the reviewed version (capabilities, records scopes, national
/// identifiers), all taken from the loaded plugin itself.
pub struct CallBuilder<'a> {
    plugin: &'a LoadedPlugin,
    hospital: Hospital,
    directory: CallServices,
    kv: &'a Arc<KvStore>,
    limits: &'a Limits,
    principal: Option<Principal>,
    request_id: Option<String>,
    video: Option<Arc<VideoService>>,
    started: std::time::Instant,
}

impl<'a> CallBuilder<'a> {
    /// A call into `plugin` for `hospital`; its deadline runs from now.
    pub fn new(
        plugin: &'a LoadedPlugin,
        hospital: Hospital,
        directory: CallServices,
        kv: &'a Arc<KvStore>,
        limits: &'a Limits,
    ) -> Self {
        Self {
            plugin,
            hospital,
            directory,
            kv,
            limits,
            principal: None,
            request_id: None,
            video: None,
            started: std::time::Instant::now(),
        }
    }

    /// The person the call acts for (`None`: anonymous or the platform).
    pub fn principal(mut self, principal: Option<Principal>) -> Self {
        self.principal = principal;
        self
    }

    /// The request id logs and the plugin see (a fresh one otherwise).
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// The room service the `video` capability acts on.
    pub fn video(mut self, video: Option<Arc<VideoService>>) -> Self {
        self.video = video;
        self
    }

    /// When the call started (its deadline and monotonic clock count from here).
    pub fn started(&self) -> std::time::Instant {
        self.started
    }

    /// The call's context and kv scope.
    fn parts(self) -> (&'a LoadedPlugin, &'a Limits, Arc<CallContext>, KvScope) {
        let plugin_id = self.plugin.manifest.id.clone();
        let kv = self.kv.scope(&self.hospital.id, &plugin_id, self.limits);
        let ctx = Arc::new(CallContext {
            hospital: self.hospital,
            plugin_id,
            request_id: self
                .request_id
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            principal: self.principal,
            started: self.started,
            directory: self.directory,
            video: self.video,
        });
        (self.plugin, self.limits, ctx, kv)
    }

    /// Handle one HTTP request.
    pub async fn http(self, request: Request) -> Result<Response, CallError> {
        let (plugin, limits, ctx, kv) = self.parts();
        call_http(plugin, limits, ctx, kv, request).await
    }

    /// Run the activation hook with `config`; `Ok(Err(message))` is the
    /// plugin refusing it.
    pub async fn activate(self, config: String) -> Result<Result<(), String>, CallError> {
        let (plugin, limits, ctx, kv) = self.parts();
        call_activate(plugin, limits, ctx, kv, config).await
    }
}

/// A call's store data: the capabilities' state, and what only the sandbox
/// needs (limits enforcement and the deadline).
pub struct StoreState {
    /// What the capabilities see.
    pub call: CallState,
    /// Enforces memory and table limits; records refusals.
    pub limiter: CallLimiter,
    /// When the call must be over.
    pub deadline: tokio::time::Instant,
}

impl CallView for StoreState {
    fn call(&mut self) -> &mut CallState {
        &mut self.call
    }
}

/// Guest computation beyond this, within one call, is throttled.
const LONG_RUNNING: std::time::Duration = std::time::Duration::from_millis(100);

/// Memory and table limits of one store; remembers that it refused a
/// growth, because a guest that cannot allocate traps as `unreachable`,
/// exactly like a panic.
#[derive(Debug)]
pub struct CallLimiter {
    memory_bytes: usize,
    table_elements: usize,
    core_instances: usize,
    /// Size of the refused memory growth, if any.
    pub memory_refused: Option<usize>,
    /// A table growth was refused.
    pub table_refused: bool,
}

impl CallLimiter {
    /// A limiter enforcing `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
            core_instances: limits.core_instances,
            memory_refused: None,
            table_refused: false,
        }
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.table_refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.core_instances
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }
}

/// How a plugin call failed. Each variant names the limit or fault.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the plugin did not finish within its {limit_ms} ms deadline")]
    Deadline { limit_ms: u128 },
    #[error("the plugin exceeded its memory limit of {limit_bytes} bytes")]
    Memory { limit_bytes: usize },
    #[error("the plugin exhausted its call stack")]
    StackOverflow,
    #[error("the plugin exceeded its table limit of {limit} elements")]
    Table { limit: usize },
    #[error("the plugin trapped: {0}")]
    Trap(String),
    #[error(
        "the plugin's response of {size} bytes (body and headers) exceeds the {limit} byte limit"
    )]
    ResponseTooLarge { size: usize, limit: usize },
    #[error("the plugin's response has {count} headers, over the limit of {limit}")]
    TooManyHeaders { count: usize, limit: usize },
    #[error("the plugin's response header {which} is {size} bytes, over the {limit} byte limit")]
    HeaderTooLarge {
        /// `name` or `` `x-name` value`` (the name cut to 64 bytes).
        which: String,
        size: usize,
        limit: usize,
    },
    #[error("the runtime is at its limit of {0} concurrent plugin calls")]
    Busy(u32),
    #[error("the plugin could not be instantiated: {0}")]
    Instantiate(String),
    #[error("permission denied: the plugin was not granted the `{0}` capability")]
    Denied(Capability),
}

impl CallError {
    /// Stable machine-readable code for API responses and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Deadline { .. } => "deadline_exceeded",
            Self::Memory { .. } => "memory_limit_exceeded",
            Self::StackOverflow => "stack_overflow",
            Self::Table { .. } => "table_limit_exceeded",
            Self::Trap(_) => "plugin_trapped",
            Self::ResponseTooLarge { .. } => "response_too_large",
            Self::TooManyHeaders { .. } => "too_many_response_headers",
            Self::HeaderTooLarge { .. } => "response_header_too_large",
            Self::Busy(_) => "runtime_busy",
            Self::Instantiate(_) => "instantiation_failed",
            Self::Denied(_) => "capability_denied",
        }
    }
}

/// Marker error raised by the epoch callback and host calls when the
/// call's deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
pub struct DeadlineExceeded;

/// A store for one call: the call's context, its limits and its deadline.
pub fn new_store(
    engine: &wasmtime::Engine,
    limits: &Limits,
    ctx: Arc<CallContext>,
    kv: KvScope,
    granted: BTreeSet<Capability>,
) -> Store<StoreState> {
    let deadline = tokio::time::Instant::from_std(ctx.started + limits.deadline);
    // The records capability gets the runtime's health-record database as
    // its own handle; kv and records share one pool, not one access path.
    let records = RecordsState {
        grant: Arc::default(),
        db: kv.database().clone(),
    };
    let state = StoreState {
        call: CallState {
            ctx,
            granted,
            kv,
            records,
            national_ids: false,
            network: false,
        },
        limiter: CallLimiter::new(limits),
        deadline,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    // Guest code yields to the executor every tick, so a spinning plugin
    // never starves other calls, and traps once the deadline has passed.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx: StoreContextMut<'_, StoreState>| {
        let state = ctx.data();
        if tokio::time::Instant::now() >= state.deadline {
            Err(wasmtime::Error::new(DeadlineExceeded))
        } else if state.call.ctx.started.elapsed() >= LONG_RUNNING {
            // A call still computing after this long gets at most half a
            // core: it sleeps one tick for every tick it runs, so spinning
            // plugins cannot starve other calls or the database.
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::time::sleep(crate::config::EPOCH_TICK)),
            ))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

/// A store for one call into `plugin`, with every grant of its reviewed
/// version.
fn plugin_store(
    plugin: &LoadedPlugin,
    limits: &Limits,
    ctx: Arc<CallContext>,
    kv: KvScope,
) -> Store<StoreState> {
    let mut store = new_store(plugin.pre.engine(), limits, ctx, kv, plugin.granted.clone());
    let call = &mut store.data_mut().call;
    call.records.grant = plugin.records.clone();
    call.national_ids = plugin.national_ids;
    call.network = plugin.manifest.network;
    store
}

/// Run one HTTP request through a fresh instance of `pre`. The deadline
/// runs from `ctx.started`.
pub async fn call_http(
    plugin: &LoadedPlugin,
    limits: &Limits,
    ctx: Arc<CallContext>,
    kv: KvScope,
    request: Request,
) -> Result<Response, CallError> {
    let pre = &plugin.pre;
    let mut store = plugin_store(plugin, limits, ctx, kv);
    let deadline = store.data().deadline;
    let limit_ms = limits.deadline.as_millis();
    let run = async {
        let plugin: Plugin = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        plugin
            .vtelehealth_platform_http_handler()
            .call_handle(&mut store, &request)
            .await
            .map_err(|e| classify(e, store.data(), limits))
    };
    // The outer timeout also covers time spent awaiting host calls, which
    // epochs cannot interrupt.
    let response = match tokio::time::timeout_at(deadline, run).await {
        Ok(result) => result?,
        Err(_) => return Err(CallError::Deadline { limit_ms }),
    };
    check_response_size(&response, limits)?;
    Ok(response)
}

/// Headers are bounded in count and size and count toward the response
/// limit, so a plugin cannot return megabytes through them instead of the body.
fn check_response_size(response: &Response, limits: &Limits) -> Result<(), CallError> {
    let count = response.headers.len();
    if count > limits.max_response_headers {
        return Err(CallError::TooManyHeaders {
            count,
            limit: limits.max_response_headers,
        });
    }
    let mut size = response.body.len();
    for h in &response.headers {
        if h.name.len() > limits.max_response_header_name_bytes {
            return Err(CallError::HeaderTooLarge {
                which: "name".into(),
                size: h.name.len(),
                limit: limits.max_response_header_name_bytes,
            });
        }
        if h.value.len() > limits.max_response_header_value_bytes {
            return Err(CallError::HeaderTooLarge {
                which: format!("`{}` value", cut(&h.name, 64)),
                size: h.value.len(),
                limit: limits.max_response_header_value_bytes,
            });
        }
        size += h.name.len() + h.value.len();
    }
    if size > limits.max_response_bytes {
        return Err(CallError::ResponseTooLarge {
            size,
            limit: limits.max_response_bytes,
        });
    }
    Ok(())
}

/// At most `max` bytes of `s`, on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Run the plugin's activation hook with `config` (a JSON document) in a
/// fresh instance. `Ok(Err(message))` is the plugin refusing the config.
pub async fn call_activate(
    plugin: &LoadedPlugin,
    limits: &Limits,
    ctx: Arc<CallContext>,
    kv: KvScope,
    config: String,
) -> Result<Result<(), String>, CallError> {
    let pre = &plugin.pre;
    let mut store = plugin_store(plugin, limits, ctx, kv);
    let deadline = store.data().deadline;
    let run = async {
        let instance: Plugin = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        instance
            .vtelehealth_platform_lifecycle()
            .call_on_activate(&mut store, &config)
            .await
            .map_err(|e| classify(e, store.data(), limits))
    };
    match tokio::time::timeout_at(deadline, run).await {
        Ok(result) => result,
        Err(_) => Err(CallError::Deadline {
            limit_ms: limits.deadline.as_millis(),
        }),
    }
}

/// Turn a wasmtime error into the limit or fault that caused it.
fn classify(err: wasmtime::Error, state: &StoreState, limits: &Limits) -> CallError {
    if let Some(denied) = err.downcast_ref::<CapabilityDenied>() {
        return CallError::Denied(denied.0);
    }
    if err.downcast_ref::<DeadlineExceeded>().is_some() {
        return CallError::Deadline {
            limit_ms: limits.deadline.as_millis(),
        };
    }
    if state.limiter.memory_refused.is_some() {
        return CallError::Memory {
            limit_bytes: limits.memory_bytes,
        };
    }
    if state.limiter.table_refused {
        return CallError::Table {
            limit: limits.table_elements,
        };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => CallError::StackOverflow,
        Some(Trap::Interrupt) => CallError::Deadline {
            limit_ms: limits.deadline.as_millis(),
        },
        Some(Trap::UnreachableCodeReached) => CallError::Trap(
            "wasm `unreachable` executed (usually a panic in the plugin; see the runtime log)"
                .into(),
        ),
        Some(trap) => CallError::Trap(trap.to_string()),
        None => CallError::Trap(format!("{err:#}")),
    }
}
