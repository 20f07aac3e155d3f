//! Time from the host (WIT interface `clock`; list `"clock"` in the manifest). Plugins have
//! no WASI, so this is the only clock.

use crate::bindings::vtelehealth::platform::clock as raw;

/// Wall-clock time in milliseconds since the Unix epoch (UTC).
pub fn now_millis() -> u64 {
    raw::now_millis()
}

/// A monotonic clock in nanoseconds, only meaningful for measuring durations within one call.
pub fn monotonic_nanos() -> u64 {
    raw::monotonic_nanos()
}
