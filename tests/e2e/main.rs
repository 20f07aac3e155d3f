//! End-to-end tests: one binary, one module per topic.

mod authz;
mod bad_input;
mod bundles;
mod docs;
mod fhir;
mod governance;
mod identity;
mod identity_wit;
mod interop;
mod plugins;
mod postgres;
mod sandbox;
