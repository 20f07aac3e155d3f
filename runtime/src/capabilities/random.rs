//! `random`: secure random numbers from the host.

use rand::Rng;

use super::CallState;
use crate::bindings::vtelehealth::platform::random::Host;

/// Most bytes one call may ask for.
const MAX_BYTES: u32 = 4096;

impl Host for CallState {
    async fn bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        self.require(crate::capabilities::Capability::Random)?;
        let mut buf = vec![0u8; len.min(MAX_BYTES) as usize];
        rand::rng().fill_bytes(&mut buf);
        Ok(buf)
    }

    async fn next_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(rand::rng().next_u64())
    }
}
