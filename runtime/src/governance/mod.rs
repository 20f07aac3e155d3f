//! Plugin governance: signed bundles and the checks a submission passes.

/// The audit trail lives in the ground layer; the old path stays for callers.
pub use crate::audit;
pub mod bundle;
pub mod checks;
pub mod cli;
/// Manifests are read by the host layer too; the old path stays for callers.
pub use crate::manifest;
pub mod registry;
pub mod service;
pub mod signing;
