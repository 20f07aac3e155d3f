//! Plugin governance: signed bundles and the checks a submission passes.

pub mod audit;
pub mod bundle;
pub mod checks;
pub mod cli;
pub mod demo;
pub mod manifest;
pub mod registry;
pub mod service;
pub mod signing;
