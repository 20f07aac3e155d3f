//! Host capabilities offered to plugins, one module per WIT interface.
//!
//! [`CallState`] is what one call gives the capabilities: who is calling,
//! what the review granted, and each capability's own part (kv's scope,
//! records' grant and store, identity's disclosure). Each module implements
//! its generated `Host` trait over it, and is added to a plugin's linker only
//! when the plugin is granted it, through [`CallView`]: the sandbox's store
//! owns a `CallState` and projects it, as wasmtime-wasi-http's `WasiHttpView`
//! does, so this layer never names the store above it.

pub mod clock;
pub mod identity;
pub mod kv;
pub mod log;
pub mod notify;
pub mod payment;
pub mod random;
pub mod records;
pub mod video;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::vtelehealth::platform;
use crate::db::Database;
use crate::records::scopes::RecordGrant;

use identity::CallContext;
use kv::KvScope;

/// Everything a capability may read during one call. Built only by
/// `sandbox::CallBuilder`, from the hospital, plugin, principal and the
/// reviewed version's grants.
pub struct CallState {
    /// Who is calling, for which hospital and plugin.
    pub ctx: Arc<CallContext>,
    /// Capabilities the review granted; linked but ungranted ones refuse.
    pub granted: BTreeSet<Capability>,
    /// `kv`: the (hospital, plugin) key-value scope.
    pub kv: KvScope,
    /// `records`: the grant's data scopes and purposes, and the store.
    pub records: RecordsState,
    /// `identity`: whether it may show the citizen's national identifiers.
    pub national_ids: bool,
    /// The plugin serves the practitioners of every hospital where it is
    /// active (its reviewed manifest's `network`): `identity`'s search lets
    /// them find the call's hospital's practitioners.
    pub network: bool,
}

/// The `records` capability's part of a call.
pub struct RecordsState {
    /// The data scopes and purposes of the `records` grant.
    pub grant: Arc<RecordGrant>,
    /// The health-record database (the runtime's, not reached through kv).
    pub db: Database,
}

impl CallState {
    /// Refuse a call into `capability` unless it was granted.
    pub fn require(&self, capability: Capability) -> Result<(), CapabilityDenied> {
        if self.granted.contains(&capability) {
            Ok(())
        } else {
            Err(CapabilityDenied(capability))
        }
    }
}

/// A plugin called a capability it requested but was not granted.
#[derive(Debug, thiserror::Error)]
#[error("the plugin was not granted the `{0}` capability")]
pub struct CapabilityDenied(pub Capability);

/// A store's data that carries a [`CallState`]: what the linker projects to
/// reach the capabilities.
pub trait CallView: Send + 'static {
    /// This call's capability state.
    fn call(&mut self) -> &mut CallState;
}

/// The platform package every interface belongs to.
pub const PACKAGE: &str = "vtelehealth:platform";
/// The package version this runtime implements. Plugins built against an
/// older patch release of the same minor version keep working.
pub const PACKAGE_VERSION: &str = "0.1.0";

/// The grant that adds citizens' national identifiers (citizen ID/CCCD and
/// health ID/BHXH) to what `identity` shows a plugin; without it they are
/// absent.
pub const NATIONAL_IDS_GRANT: &str = "identity:national-ids";
/// The scope of [`NATIONAL_IDS_GRANT`] within `identity`.
pub const NATIONAL_IDS_SCOPE: &str = "national-ids";
/// [`NATIONAL_IDS_GRANT`] in plain words, for reviewers.
pub const NATIONAL_IDS_MEANING: &str = "also read the calling citizen's own citizen ID (CCCD) and health insurance number (BHXH); without this grant the plugin never sees them";

/// A capability a plugin can be granted: one imported WIT interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    Log,
    Clock,
    Random,
    Kv,
    Identity,
    Records,
    Video,
    Payment,
    Notify,
}

impl Capability {
    /// Every capability this runtime implements.
    pub const ALL: [Capability; 9] = [
        Self::Log,
        Self::Clock,
        Self::Random,
        Self::Kv,
        Self::Identity,
        Self::Records,
        Self::Video,
        Self::Payment,
        Self::Notify,
    ];

    /// The WIT interface name, e.g. `kv`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Clock => "clock",
            Self::Random => "random",
            Self::Kv => "kv",
            Self::Identity => "identity",
            Self::Records => "records",
            Self::Video => "video",
            Self::Payment => "payment",
            Self::Notify => "notify",
        }
    }

    /// What the capability lets a plugin do, in plain words for reviewers.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Log => "write log lines tagged with its hospital and request",
            Self::Clock => "read the current time",
            Self::Random => "draw secure random numbers",
            Self::Kv => {
                "store its own data for each hospital (private key-value storage with a quota)"
            }
            Self::Identity => {
                "know which hospital it serves and who is calling, and look up or search the network's hospitals and practitioners by name (never citizens, never national identifiers)"
            }
            Self::Records => {
                "read or write patients' health records (FHIR), within the data scopes and purposes listed, every access checked and audited"
            }
            Self::Video => {
                "open video consultation rooms hosted by its hospital, invite practitioners of any hospital and issue their join tokens"
            }
            Self::Payment => {
                "take payments in VND through the hospital's gateway and refund them, every movement booked in the platform ledger"
            }
            Self::Notify => {
                "send notifications (a title, a link and a small data record) to named users of the platform, during calls made by signed-in users or the hospital's services"
            }
        }
    }

    /// Add this capability's host functions to `linker`.
    pub fn add_to_linker<T: CallView>(self, linker: &mut Linker<T>) -> wasmtime::Result<()> {
        let get: fn(&mut T) -> &mut CallState = T::call;
        match self {
            Self::Log => platform::log::add_to_linker::<T, HasSelf<CallState>>(linker, get),
            Self::Clock => platform::clock::add_to_linker::<T, HasSelf<CallState>>(linker, get),
            Self::Random => platform::random::add_to_linker::<T, HasSelf<CallState>>(linker, get),
            Self::Kv => platform::kv::add_to_linker::<T, HasSelf<CallState>>(linker, get),
            Self::Identity => {
                platform::identity::add_to_linker::<T, HasSelf<CallState>>(linker, get)
            }
            Self::Records => platform::records::add_to_linker::<T, HasSelf<CallState>>(linker, get),
            Self::Video => platform::video::add_to_linker::<T, HasSelf<CallState>>(linker, get),
            Self::Payment => platform::payment::add_to_linker::<T, HasSelf<CallState>>(linker, get),
            Self::Notify => platform::notify::add_to_linker::<T, HasSelf<CallState>>(linker, get),
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Capability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown capability `{s}` (known: log, clock, random, kv, identity, records, video, payment, notify)"
                )
            })
    }
}

/// An import of a component, resolved against the platform package.
#[derive(Debug, PartialEq, Eq)]
pub enum ImportKind {
    /// A capability interface.
    Capability(Capability),
    /// An interface that only declares types (always allowed).
    TypesOnly,
}

/// Resolve a component import name such as `vtelehealth:platform/kv@0.1.0`.
pub fn resolve_import(name: &str) -> Result<ImportKind, String> {
    let (path, version) = name.split_once('@').unwrap_or((name, ""));
    let Some((package, interface)) = path.split_once('/') else {
        return Err(format!(
            "imports `{name}`, which is not a platform interface"
        ));
    };
    if package != PACKAGE {
        return Err(format!(
            "imports `{name}`, which the platform does not provide (plugins get only {PACKAGE} interfaces; no WASI)"
        ));
    }
    if !version_compatible(version) {
        return Err(format!(
            "imports `{name}`, built against {PACKAGE}@{version}, which this runtime ({PACKAGE}@{PACKAGE_VERSION}) does not support"
        ));
    }
    if interface == "types" {
        return Ok(ImportKind::TypesOnly);
    }
    interface
        .parse()
        .map(ImportKind::Capability)
        .map_err(|_| format!("imports `{name}`, an interface this runtime does not implement"))
}

/// Whether a plugin built against `version` of the platform package runs
/// here. Semver compatibility for 0.x packages: same minor, patch not newer.
pub fn version_compatible(version: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64, u64)> {
        let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
        Some((it.next()??, it.next()??, it.next()??))
    };
    match (parse(version), parse(PACKAGE_VERSION)) {
        (Some((0, minor, patch)), Some((0, our_minor, our_patch))) => {
            minor == our_minor && patch <= our_patch
        }
        (Some((major, minor, _)), Some((our_major, our_minor, _))) => {
            major == our_major && minor <= our_minor
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_platform_imports() {
        assert_eq!(
            resolve_import("vtelehealth:platform/kv@0.1.0"),
            Ok(ImportKind::Capability(Capability::Kv))
        );
        assert_eq!(
            resolve_import("vtelehealth:platform/types@0.1.0"),
            Ok(ImportKind::TypesOnly)
        );
    }

    #[test]
    fn refuses_foreign_and_incompatible_imports() {
        assert!(
            resolve_import("wasi:filesystem/types@0.2.0")
                .unwrap_err()
                .contains("no WASI")
        );
        assert!(
            resolve_import("vtelehealth:platform/kv@0.2.0")
                .unwrap_err()
                .contains("does not support")
        );
        assert!(resolve_import("vtelehealth:platform/kv@0.1.9").is_err());
        assert!(resolve_import("vtelehealth:platform/teleport@0.1.0").is_err());
    }

    #[test]
    fn capability_names_round_trip() {
        for c in Capability::ALL {
            assert_eq!(c.name().parse::<Capability>(), Ok(c));
        }
    }
}
