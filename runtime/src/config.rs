//! Runtime configuration: sandbox limits and server settings.

use std::time::Duration;

/// Per-call sandbox limits; the defaults and their flags are in docs/operations.md.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Maximum linear memory of one plugin instance, in bytes.
    pub memory_bytes: usize,
    /// Maximum elements of a plugin's tables.
    pub table_elements: usize,
    /// Core instances one component may create (a component built by
    /// wit-component is a few core modules glued together).
    pub core_instances: usize,
    /// Wall-clock deadline of one call, guest code and host calls together.
    pub deadline: Duration,
    /// Largest response a plugin may return: the body plus every header's
    /// name and value.
    pub max_response_bytes: usize,
    /// Most headers one plugin response may carry.
    pub max_response_headers: usize,
    /// Longest header name in a plugin response, in bytes.
    pub max_response_header_name_bytes: usize,
    /// Longest header value in a plugin response, in bytes.
    pub max_response_header_value_bytes: usize,
    /// Largest request body forwarded to a plugin.
    pub max_request_bytes: usize,
    /// Key-value quota per (hospital, plugin): sum of key and value sizes.
    pub kv_quota_bytes: u64,
    /// Largest single kv value.
    pub kv_max_value_bytes: usize,
    /// Plugin calls running at once on this node; further calls wait (within
    /// their deadline) for a free slot.
    pub max_concurrent_calls: u32,
    /// Maximum guest stack, in bytes.
    pub max_wasm_stack: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            table_elements: 10_000,
            core_instances: 16,
            deadline: Duration::from_secs(2),
            max_response_bytes: 8 << 20,
            max_response_headers: 100,
            max_response_header_name_bytes: 256,
            max_response_header_value_bytes: 8 << 10,
            max_request_bytes: 8 << 20,
            kv_quota_bytes: 100 << 20,
            kv_max_value_bytes: 1 << 20,
            max_concurrent_calls: 256,
            max_wasm_stack: 512 << 10,
        }
    }
}

/// Longest kv key, in bytes.
pub const KV_MAX_KEY_BYTES: usize = 512;
/// Most keys one `list-keys` call returns.
pub const KV_MAX_LIST: u32 = 1000;
/// Interval of the epoch ticker that interrupts guest code. A busy guest
/// yields the executor thread this often, which bounds how long a call
/// waiting on the database (holding a row lock, say) waits for its turn.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
