//! End-to-end tests: one binary, one module per topic.

mod authz;
mod bad_input;
mod browser_video;
mod bundles;
mod consoles;
mod docs;
mod epharmacy;
mod fhir;
mod governance;
mod his_hl7v2;
mod identity;
mod identity_wit;
mod imaging_share;
mod interop;
mod notify;
mod payment;
mod plugins;
mod postgres;
mod records_access;
mod records_plugin;
mod sandbox;
mod teleconsult;
mod video;
mod video_load;
mod video_signalling;
