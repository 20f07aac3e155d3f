//! The runtime's one wall clock. Everything that stores or compares a time
//! (tokens, audit rows, consents, shares, payments, rooms) reads it here, so
//! a test or a future injected clock has one place to look.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Seconds since the Unix epoch, as JWT `exp`/`iat` count them.
pub fn now_secs() -> i64 {
    now_millis() / 1000
}
