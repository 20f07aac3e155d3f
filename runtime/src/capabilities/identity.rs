//! `identity`: the call's hospital and principal, and look-ups of the
//! network's hospitals and practitioners; read-only, never other citizens.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::CallState;
use crate::bindings::WitError;
use crate::bindings::vtelehealth::platform::identity::{self as wit, Host};
use crate::capabilities::Capability;
use crate::directory::HospitalDirectory;
use crate::identity::IdentityService;

// The network's hospitals are ground data; plugins see them through here.
pub use crate::directory::{Hospital, Tier};
pub use crate::identity::Principal;

/// The context of one plugin call.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub hospital: Hospital,
    pub plugin_id: String,
    pub request_id: String,
    pub principal: Option<Principal>,
    /// When the call started; origin of the plugin's monotonic clock.
    pub started: Instant,
    /// What `identity.lookup-hospital` and `identity.lookup-practitioner`
    /// read, and the payment and notification services.
    pub directory: CallServices,
    /// The room service `video` calls act on; `None` where no call can
    /// use it (activation hooks of a national rollout, benchmarks).
    pub video: Option<Arc<crate::video::rooms::VideoService>>,
}

/// Longest id a look-up accepts; longer ones cannot exist.
const MAX_LOOKUP_ID: usize = 256;

/// The node's services a plugin call reaches beyond its own state: the
/// hospitals and practitioners (only them) that `identity` looks up, and
/// the payment and notification services. Not to be confused with
/// [`HospitalDirectory`], the hospitals alone.
#[derive(Clone)]
pub struct CallServices {
    hospitals: Arc<HospitalDirectory>,
    people: Arc<IdentityService>,
    /// The node's payment service, for the `payment` capability (the call
    /// context carries the directory to every capability).
    payments: Option<Arc<crate::payment::Payments>>,
    /// The node's notifications, for the `notify` capability.
    notifications: Option<Arc<crate::notify::Notifications>>,
}

impl CallServices {
    pub fn new(hospitals: Arc<HospitalDirectory>, people: Arc<IdentityService>) -> Self {
        Self {
            hospitals,
            people,
            payments: None,
            notifications: None,
        }
    }

    /// The same directory with the node's notifications.
    pub fn with_notifications(mut self, n: Arc<crate::notify::Notifications>) -> Self {
        self.notifications = Some(n);
        self
    }

    /// The notifications service, when this node offers one.
    pub fn notifications(&self) -> Option<&Arc<crate::notify::Notifications>> {
        self.notifications.as_ref()
    }

    /// The person `p` stands for (see [`crate::identity::PersonRef`]).
    pub fn person(&self, p: &Principal) -> crate::identity::PersonRef {
        self.people.person(p)
    }

    /// Whether `id` names a user of the platform (any role).
    pub async fn user_exists(&self, id: &str) -> Result<bool, crate::identity::IdentityError> {
        if id.is_empty() || id.len() > MAX_LOOKUP_ID {
            return Ok(false);
        }
        Ok(self.people.user(id).await?.is_some())
    }

    /// The same directory with the node's payment service.
    pub fn with_payments(mut self, payments: Arc<crate::payment::Payments>) -> Self {
        self.payments = Some(payments);
        self
    }

    /// The payment service, when this node offers one.
    pub fn payments(&self) -> Option<&Arc<crate::payment::Payments>> {
        self.payments.as_ref()
    }

    /// Every hospital, sorted by id.
    pub fn hospitals(&self) -> Vec<Hospital> {
        self.hospitals.list()
    }

    /// The hospital with this id.
    pub fn hospital(&self, id: &str) -> Option<Hospital> {
        if id.len() > MAX_LOOKUP_ID {
            return None;
        }
        self.hospitals.get(id)
    }

    /// The hospitals of `tier`, or all, sorted by id.
    pub fn hospitals_of(&self, tier: Option<Tier>) -> Vec<Hospital> {
        let mut all = self.hospitals.list();
        all.retain(|h| tier.is_none_or(|t| h.tier == t));
        all
    }

    /// Practitioners by name and specialty (see
    /// [`crate::identity::PractitionerSearch`]): never anyone else, never a
    /// national identifier. Who may search is checked by the caller.
    pub async fn search_practitioners(
        &self,
        search: &crate::identity::PractitionerSearch,
    ) -> Result<Vec<crate::identity::PractitionerEntry>, crate::identity::IdentityError> {
        self.people.search_practitioners(search).await
    }

    /// The practitioner with this id, at any hospital. Citizens and other
    /// people are never returned.
    pub async fn practitioner(
        &self,
        id: &str,
    ) -> Result<Option<crate::identity::User>, crate::identity::IdentityError> {
        if id.is_empty() || id.len() > MAX_LOOKUP_ID {
            return Ok(None);
        }
        let user = self.people.practitioner(id).await?;
        Ok(user.filter(|u| u.role == crate::identity::Role::Practitioner))
    }
}

impl fmt::Debug for CallServices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallServices").finish_non_exhaustive()
    }
}

impl From<Tier> for wit::Tier {
    fn from(t: Tier) -> Self {
        match t {
            Tier::Central => wit::Tier::Central,
            Tier::Provincial => wit::Tier::Provincial,
            Tier::District => wit::Tier::District,
            Tier::Commune => wit::Tier::Commune,
        }
    }
}

impl From<wit::Tier> for Tier {
    fn from(t: wit::Tier) -> Self {
        match t {
            wit::Tier::Central => Tier::Central,
            wit::Tier::Provincial => Tier::Provincial,
            wit::Tier::District => Tier::District,
            wit::Tier::Commune => Tier::Commune,
        }
    }
}

impl From<Hospital> for wit::Hospital {
    fn from(h: Hospital) -> Self {
        wit::Hospital {
            id: h.id,
            name: h.name,
            tier: h.tier.into(),
            province: h.province,
        }
    }
}

impl CallState {
    /// Whether the caller may search `hospital`'s practitioners (`None`:
    /// the whole network's): a signed-in practitioner or hospital admin of
    /// the call's hospital, any hospital; a practitioner of another
    /// hospital calling a network plugin, the call's hospital or their own.
    fn may_search(&self, hospital: Option<&str>) -> Result<(), WitError> {
        use crate::identity::Role;
        let here = self.ctx.hospital.id.as_str();
        let Some(p) = self.ctx.principal.as_ref() else {
            return Err(WitError::Denied(
                "the practitioner directory is searched only for a signed-in practitioner or hospital admin".into(),
            ));
        };
        let own = p.hospital_id.as_deref();
        let staff_here = own == Some(here)
            && (p.has_role(Role::Practitioner) || p.has_role(Role::HospitalAdmin));
        if staff_here {
            return Ok(());
        }
        let network_practitioner = self.network && p.has_role(Role::Practitioner) && own.is_some();
        match hospital {
            Some(h) if network_practitioner && (h == here || Some(h) == own) => Ok(()),
            _ if network_practitioner => Err(WitError::Denied(format!(
                "a practitioner of another hospital searches only the practitioners of {here} or of their own hospital"
            ))),
            _ => Err(WitError::Denied(format!(
                "only the practitioners and hospital admins of {here} search the practitioner directory"
            ))),
        }
    }
}

impl Host for CallState {
    async fn current(&mut self) -> wasmtime::Result<wit::CallContext> {
        self.require(Capability::Identity)?;
        let ctx = &self.ctx;
        Ok(wit::CallContext {
            hospital: ctx.hospital.clone().into(),
            plugin_id: ctx.plugin_id.clone(),
            request_id: ctx.request_id.clone(),
            principal: ctx.principal.as_ref().map(|p| wit::Principal {
                // Issuer-qualified for external people, so data a plugin
                // keys by subject never collides with a local user's.
                subject: ctx.directory.person(p).into_string(),
                name: p.name.clone(),
                roles: p.roles.iter().map(|r| r.as_str().to_owned()).collect(),
                hospital: p
                    .hospital_id
                    .as_deref()
                    .and_then(|id| ctx.directory.hospital(id))
                    .map(Into::into),
                // Only with `identity:national-ids` (issue 12 item 11).
                national_id: p.national_id.clone().filter(|_| self.national_ids),
                health_id: p.health_id.clone().filter(|_| self.national_ids),
            }),
        })
    }

    async fn lookup_hospital(&mut self, id: String) -> wasmtime::Result<Option<wit::Hospital>> {
        self.require(Capability::Identity)?;
        Ok(self.ctx.directory.hospital(&id).map(Into::into))
    }

    async fn lookup_practitioner(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Option<wit::Practitioner>> {
        self.require(Capability::Identity)?;
        let user = self
            .ctx
            .directory
            .practitioner(&id)
            .await
            .map_err(|e| wasmtime::Error::msg(format!("practitioner look-up failed: {e}")))?;
        // A practitioner always has a hospital; one without is not shown.
        Ok(user.and_then(|u| {
            Some(wit::Practitioner {
                hospital_id: u.hospital_id?,
                id: u.id,
                name: u.display_name,
                specialty: u.specialty,
                title: u.title,
            })
        }))
    }

    async fn list_hospitals(
        &mut self,
        tier: Option<wit::Tier>,
    ) -> wasmtime::Result<Vec<wit::Hospital>> {
        self.require(Capability::Identity)?;
        Ok(self
            .ctx
            .directory
            .hospitals_of(tier.map(Into::into))
            .into_iter()
            .map(Into::into)
            .collect())
    }

    async fn search_practitioners(
        &mut self,
        hospital: Option<String>,
        query: String,
        specialty: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<wit::Practitioner>, WitError>> {
        self.require(Capability::Identity)?;
        if let Err(e) = self.may_search(hospital.as_deref()) {
            return Ok(Err(e));
        }
        if hospital.as_deref().is_some_and(|h| h.len() > MAX_LOOKUP_ID) {
            return Ok(Ok(Vec::new()));
        }
        let search = crate::identity::PractitionerSearch {
            hospital,
            query,
            specialty,
            limit,
            ..Default::default()
        };
        use crate::identity::IdentityError;
        Ok(
            match self.ctx.directory.search_practitioners(&search).await {
                Ok(found) => Ok(found
                    .into_iter()
                    .map(|p| wit::Practitioner {
                        id: p.id,
                        name: p.display_name,
                        hospital_id: p.hospital_id,
                        specialty: p.specialty,
                        title: p.title,
                    })
                    .collect()),
                Err(IdentityError::Invalid(m)) => Err(WitError::Invalid(m)),
                Err(e) => {
                    tracing::error!(error = %e, "practitioner search failed");
                    Err(WitError::Unavailable(
                        "the practitioner directory is unavailable".into(),
                    ))
                }
            },
        )
    }

    async fn has_role(&mut self, role: String) -> wasmtime::Result<bool> {
        self.require(Capability::Identity)?;
        Ok(self
            .ctx
            .principal
            .as_ref()
            .is_some_and(|p| p.roles.iter().any(|r| r.as_str() == role)))
    }
}
