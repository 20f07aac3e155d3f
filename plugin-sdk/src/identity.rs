//! Who is calling and for which hospital, and look-ups of the network's hospitals and
//! practitioners (WIT interface `identity`; list `"identity"` in the manifest). Read-only.
//!
//! ```no_run
//! use vtelehealth_plugin_sdk::{Error, identity};
//!
//! # fn f() -> Result<(), Error> {
//! let ctx = identity::current();
//! if !identity::has_role("practitioner") {
//!     return Err(Error::forbidden("practitioners only"));
//! }
//! let me = ctx.principal.expect("a practitioner is authenticated");
//! // The caller's own hospital; the call's hospital is `ctx.hospital`.
//! let home = me.hospital.map(|h| h.name);
//! // Names of a consultant at another hospital of the network:
//! if let Some(doctor) = identity::practitioner("0190c1f2-...") {
//!     let at = identity::hospital(&doctor.hospital_id).map(|h| h.name);
//!     let _ = (doctor.name, doctor.title, at, home);
//! }
//! # Ok(()) }
//! ```

use crate::Error;
use crate::bindings::vtelehealth::platform::identity as raw;

pub use raw::{CallContext, Hospital, Practitioner, Principal, Tier};

/// The context of the current call: the hospital the plugin runs for, plugin id, request id
/// and the caller (when the request was authenticated), with the caller's own hospital and,
/// for citizens, their citizen ID and health ID.
pub fn current() -> CallContext {
    raw::current()
}

/// The hospital with this id, at any level of the network; `None` when there is none.
pub fn hospital(id: &str) -> Option<Hospital> {
    raw::lookup_hospital(id)
}

/// The practitioner whose subject is `id`, at any hospital (so a plugin can show the names of
/// consultants in the referral network); `None` when no practitioner has this id. Other
/// people, citizens above all, are never returned.
pub fn practitioner(id: &str) -> Option<Practitioner> {
    raw::lookup_practitioner(id)
}

/// The hospitals of the network, of `tier` when given, sorted by id.
pub fn hospitals(tier: Option<Tier>) -> Vec<Hospital> {
    raw::list_hospitals(tier)
}

/// Most practitioners [`search_practitioners`] returns.
pub const MAX_SEARCH_RESULTS: u32 = 50;

/// Practitioners whose name contains every word of `query` (an empty query: every name) and
/// whose specialty contains `specialty` when given, without regard to letter case or
/// Vietnamese tone marks (`"nguyen"` finds `"Nguyễn"`); of `hospital` when given, else of
/// the whole network; sorted by name, at most `limit` (never more than
/// [`MAX_SEARCH_RESULTS`]). Never citizens or other people, never a national identifier.
///
/// Only a signed-in practitioner or hospital admin of the call's hospital searches (any
/// hospital, or the network); a practitioner of another hospital calling a network plugin,
/// only the call's hospital or their own. Anyone else is refused (403).
///
/// ```no_run
/// # fn f() -> Result<(), vtelehealth_plugin_sdk::Error> {
/// use vtelehealth_plugin_sdk::identity;
/// let here = identity::current().hospital.id;
/// let cardiologists = identity::search_practitioners(Some(&here), "nguyen", Some("tim mach"), 20)?;
/// # let _ = cardiologists; Ok(()) }
/// ```
pub fn search_practitioners(
    hospital: Option<&str>,
    query: &str,
    specialty: Option<&str>,
    limit: u32,
) -> Result<Vec<Practitioner>, Error> {
    Ok(raw::search_practitioners(
        hospital, query, specialty, limit,
    )?)
}

/// Whether the caller is authenticated and has `role`: `"citizen"`, `"practitioner"`,
/// `"hospital-admin"`, `"vendor-user"`, `"reviewer"`, `"operator"` or `"service"`.
pub fn has_role(role: &str) -> bool {
    raw::has_role(role)
}

impl CallContext {
    /// Whether the caller is authenticated and has `role` (e.g. `"practitioner"`), without a
    /// host call.
    pub fn has_role(&self, role: &str) -> bool {
        self.principal.as_ref().is_some_and(|p| p.has_role(role))
    }
}

impl Principal {
    /// Whether the principal has `role` (e.g. `"citizen"`).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

impl Tier {
    /// The WIT name: `central`, `provincial`, `district` or `commune`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Central => "central",
            Tier::Provincial => "provincial",
            Tier::District => "district",
            Tier::Commune => "commune",
        }
    }
}
