//! Outbound connections' destination policy (issue 16, first slice; ADR
//! 0015 in `docs/adr/0015-outbound-http.md`, and `docs/outbound.md`).
//!
//! Where a plugin may connect is part of its manifest, as destinations: a
//! fixed origin (`https://api.vendor.vn`, optionally with a path prefix) or
//! a placeholder the hospital fills in at activation
//! (`https://{config.his_base_url}`), each with its purpose in Vietnamese.
//! This module holds the rules the host applies to every outbound request,
//! and nothing that sends one:
//!
//! - [`Destination::parse`] checks a manifest's destination and refuses
//!   userinfo, wildcards, schemes other than http(s), placeholders other
//!   than `{config.<name>}` and placeholders that are not the whole
//!   `host[:port][/path]` part;
//! - [`resolve_destinations`] fills the placeholders from an activation's
//!   configuration into the concrete [`AllowedOrigin`]s of that activation;
//! - [`check_url`] decides whether one URL may be requested (HTTPS unless
//!   the operator allows the origin for development, a granted origin,
//!   no userinfo, and no refused literal address);
//! - [`check_addresses`] decides whether the addresses a name resolved to
//!   may be connected to (called after DNS resolution, before connecting);
//! - [`check_redirect`] applies [`check_url`] to a redirect's target;
//! - [`ConnectionLimiter`] bounds the connections of one (hospital, plugin)
//!   pair open at once.
//!
//! Not built here yet: the WIT interface, the capability that uses these
//! rules, secrets added by the host, metrics and audit, the connectors.
//! It sits in the domain layer (no axum, no `Runtime`), so the capability
//! above it can call it.

mod limiter;
mod policy;

pub use limiter::{ConnectionLimiter, ConnectionPermit, ConnectionsExhausted};
pub use policy::{
    AddressClass, AllowedOrigin, CheckOptions, Destination, DestinationError, DestinationPattern,
    FixedDestination, MAX_DESTINATIONS, MAX_REDIRECTS, Origin, OutboundDenied, RawDestination,
    RawPurpose, Redirect, ResolveError, Scheme, Target, check_addresses, check_redirect, check_url,
    classify_address, parse_destinations, resolve_destinations,
};
