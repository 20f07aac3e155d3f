//! `log`: plugin log lines, tagged with the call's plugin, hospital and request.

use super::CallState;
use crate::bindings::vtelehealth::platform::log::{Host, Level};

/// Longest message kept; the rest is cut so a plugin cannot flood the logs.
const MAX_MESSAGE: usize = 4096;

impl Host for CallState {
    async fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.require(crate::capabilities::Capability::Log)?;
        let message = truncate(&message, MAX_MESSAGE);
        let ctx = &self.ctx;
        let (plugin, hospital, request) = (&ctx.plugin_id, &ctx.hospital.id, &ctx.request_id);
        match level {
            Level::Trace => {
                tracing::trace!(target: "plugin", %plugin, %hospital, %request, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "plugin", %plugin, %hospital, %request, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "plugin", %plugin, %hospital, %request, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "plugin", %plugin, %hospital, %request, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "plugin", %plugin, %hospital, %request, "{message}")
            }
        }
        Ok(())
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncates_on_char_boundary() {
        assert_eq!(super::truncate("Xin chào", 7), "Xin ch");
        assert_eq!(super::truncate("abc", 10), "abc");
    }
}
