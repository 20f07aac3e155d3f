//! The one `bindgen!` over the platform's WIT package.
//!
//! Imports are async (host calls may wait on the database and must honour
//! the call's deadline) and trappable (a limit breach inside a host call ends
//! the call); authorization and validation failures are `types::Error`
//! values returned to the plugin instead.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use exports::vtelehealth::platform::http_handler::{Request, Response};
pub use vtelehealth::platform::types::{Error as WitError, Header};
