//! Who is calling and for which hospital (WIT interface `identity`; list `"identity"` in the
//! manifest). Read-only.

use crate::bindings::vtelehealth::platform::identity as raw;

pub use raw::{CallContext, Hospital, Principal, Tier};

/// The context of the current call: hospital, plugin id, request id and the caller (when
/// the request was authenticated).
pub fn current() -> CallContext {
    raw::current()
}

impl CallContext {
    /// Whether the caller is authenticated and has `role` (e.g. `"practitioner"`).
    pub fn has_role(&self, role: &str) -> bool {
        self.principal
            .as_ref()
            .is_some_and(|p| p.roles.iter().any(|r| r == role))
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
