//! Plugin governance: signed bundles and the checks a submission passes.

/// The audit trail lives in the ground layer; the old path stays for callers.
pub use crate::audit;
pub mod bundle;
pub mod checks;
pub mod cli;
pub mod demo;
pub mod manifest;
pub mod registry;
pub mod service;
pub mod signing;
