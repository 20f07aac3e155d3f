//! `clock`: wall-clock and monotonic time, since plugins have no WASI.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::bindings::vtelehealth::platform::clock::Host;
use crate::sandbox::CallState;

impl Host for CallState {
    async fn now_millis(&mut self) -> wasmtime::Result<u64> {
        self.require(crate::capabilities::Capability::Clock)?;
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    async fn monotonic_nanos(&mut self) -> wasmtime::Result<u64> {
        self.require(crate::capabilities::Capability::Clock)?;
        let elapsed = self.ctx.started.elapsed();
        Ok(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }
}
