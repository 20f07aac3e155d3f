//! `clock`: wall-clock and monotonic time, since plugins have no WASI.

use super::CallState;
use crate::bindings::vtelehealth::platform::clock::Host;

impl Host for CallState {
    async fn now_millis(&mut self) -> wasmtime::Result<u64> {
        self.require(crate::capabilities::Capability::Clock)?;
        Ok(u64::try_from(crate::time::now_millis()).unwrap_or(0))
    }

    async fn monotonic_nanos(&mut self) -> wasmtime::Result<u64> {
        self.require(crate::capabilities::Capability::Clock)?;
        let elapsed = self.ctx.started.elapsed();
        Ok(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }
}
