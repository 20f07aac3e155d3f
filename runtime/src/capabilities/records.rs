//! `records`: FHIR R4 resources for plugins. Every call is checked three
//! ways before the store sees it: the plugin was granted the `records`
//! capability and the call's purpose of use; one of its data scopes covers
//! the resource type and interaction for this caller (a `patient/` scope
//! when a citizen calls, `user/` for the hospital's practitioners and
//! admins, `system/` for anyone of the hospital, services included); and the resource matches that scope's
//! constraints. The store then applies the caller's own rights (tenancy,
//! consent, consultation) and writes the audit trail and access log.

use std::sync::Arc;

use serde_json::Value;
use tracing::instrument;

use super::CallState;
use crate::bindings::WitError;
use crate::bindings::vtelehealth::platform::records::{self as wit, Host};
use crate::capabilities::Capability;
use crate::identity::Role;
use crate::records::access::PatientKeys;
use crate::records::scopes::{Context, DataScope, Interaction, Purpose, RecordGrant};
use crate::records::transaction::{self, IdempotencyKey, Method};
use crate::records::validate::parse_body;
use crate::records::{Actor, ActorKind, RecordError, RecordStore, ResourceType, SearchQuery};

/// Largest resource or Bundle a plugin may pass in one call.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

impl From<wit::Purpose> for Purpose {
    fn from(p: wit::Purpose) -> Self {
        match p {
            wit::Purpose::Treatment => Self::Treatment,
            wit::Purpose::Payment => Self::Payment,
            wit::Purpose::PublicHealth => Self::PublicHealth,
        }
    }
}

impl From<RecordError> for WitError {
    fn from(e: RecordError) -> Self {
        let message = e.to_string();
        match e {
            RecordError::NotFound(_) => WitError::NotFound(message),
            RecordError::Forbidden(_) => WitError::Denied(message),
            RecordError::Database(_) | RecordError::Audit(_) => {
                tracing::error!(error = %message, "records capability failed");
                WitError::Unavailable("records storage unavailable".into())
            }
            _ => WitError::Invalid(message),
        }
    }
}

/// The contexts a caller's scopes may act in, most specific first. A
/// citizen acts only in `patient/` (never falling through to a wider
/// context); the hospital's practitioners and admins in `user/` then
/// `system/`; its services in `system/`. Anyone else gets no context.
fn contexts(state: &CallState) -> Vec<(Context, ActorKind)> {
    let Some(p) = &state.ctx.principal else {
        return Vec::new();
    };
    if p.has_role(Role::Citizen) {
        return vec![(
            Context::Patient,
            ActorKind::Citizen(PatientKeys {
                national_id: p.national_id.clone(),
                health_id: p.health_id.clone(),
            }),
        )];
    }
    if p.hospital_id.as_deref() != Some(state.ctx.hospital.id.as_str()) {
        return Vec::new();
    }
    let mut out = Vec::new();
    if p.has_role(Role::Practitioner) || p.has_role(Role::HospitalAdmin) {
        out.push((Context::User, ActorKind::Staff));
        out.push((Context::System, ActorKind::System));
    } else if p.has_role(Role::Service) {
        out.push((Context::System, ActorKind::System));
    }
    out
}

/// The scopes and actor a call acts with.
struct Decision<'g> {
    actor: Actor,
    scopes: Vec<&'g DataScope>,
}

impl Decision<'_> {
    /// Whether some scope of the decision admits `resource`.
    fn admits(&self, resource: &Value) -> bool {
        self.scopes.iter().any(|s| s.admits(resource))
    }
}

fn denied(message: impl Into<String>) -> WitError {
    WitError::Denied(message.into())
}

impl CallState {
    fn records(&self) -> RecordStore {
        RecordStore::new(self.records.db.clone())
    }

    /// Check the capability, the purpose and the scopes of one interaction
    /// (all of `interactions` must be covered by one context).
    fn decide<'g>(
        &self,
        grant: &'g RecordGrant,
        rt: ResourceType,
        interactions: &[Interaction],
        purpose: Purpose,
    ) -> Result<Decision<'g>, WitError> {
        self.require(Capability::Records)
            .map_err(|e| denied(e.to_string()))?;
        if !grant.purposes.contains(&purpose) {
            let granted: Vec<&str> = grant.purposes.iter().map(|p| p.as_str()).collect();
            return Err(denied(format!(
                "the plugin was not granted the purpose of use `{purpose}` (granted: {})",
                if granted.is_empty() {
                    "none".into()
                } else {
                    granted.join(", ")
                }
            )));
        }
        if self.ctx.principal.is_none() {
            return Err(denied(
                "health records are never served to an anonymous caller; the request needs a bearer token",
            ));
        }
        for (context, kind) in contexts(self) {
            let mut scopes = Vec::new();
            let covered = interactions.iter().all(|i| {
                let m = grant.matching(context, rt, *i);
                scopes.extend(m.iter().copied());
                !m.is_empty()
            });
            if !covered {
                continue;
            }
            let principal = self.ctx.principal.as_ref();
            let actor = Actor {
                subject: principal.map_or_else(
                    || format!("plugin:{}", self.ctx.plugin_id),
                    |p| self.ctx.directory.person(p).into_string(),
                ),
                name: principal.map(|p| p.name.clone()),
                hospital_id: self.ctx.hospital.id.clone(),
                kind,
                purpose,
                plugin: Some(self.ctx.plugin_id.clone()),
            };
            return Ok(Decision { actor, scopes });
        }
        let verbs: Vec<&str> = interactions
            .iter()
            .map(|i| match i {
                Interaction::Create => "create",
                Interaction::Read => "read",
                Interaction::Update => "update",
                Interaction::Delete => "delete",
                Interaction::Search => "search",
            })
            .collect();
        let granted: Vec<String> = grant.scopes.iter().map(ToString::to_string).collect();
        Err(denied(format!(
            "no data scope of the plugin lets it {} {rt} records for this caller (granted: {})",
            verbs.join(" and "),
            if granted.is_empty() {
                "none".into()
            } else {
                granted.join(", ")
            }
        )))
    }

    fn grant(&self) -> Arc<RecordGrant> {
        self.records.grant.clone()
    }

    async fn create_impl(&self, body: String, purpose: Purpose) -> Result<String, WitError> {
        let grant = self.grant();
        let (rt, resource) = parse_json(&body)?;
        let d = self.decide(&grant, rt, &[Interaction::Create], purpose)?;
        if !d.admits(&Value::Object(resource.clone())) {
            return Err(denied(format!(
                "the {rt} is outside the plugin's data scopes ({})",
                scope_list(&d.scopes)
            )));
        }
        let stored = self.records().create(&d.actor, rt, resource).await?;
        Ok(stored.resource.to_string())
    }

    async fn read_impl(
        &self,
        ty: String,
        id: String,
        purpose: Purpose,
    ) -> Result<String, WitError> {
        let grant = self.grant();
        let rt: ResourceType = ty.parse()?;
        let d = self.decide(&grant, rt, &[Interaction::Read], purpose)?;
        let admit = |r: &Value| d.admits(r);
        let stored = self
            .records()
            .read_scoped(&d.actor, rt, &id, Some(&admit))
            .await?;
        Ok(stored.resource.to_string())
    }

    async fn update_impl(
        &self,
        body: String,
        if_match: Option<u64>,
        purpose: Purpose,
    ) -> Result<String, WitError> {
        let grant = self.grant();
        let (rt, resource) = parse_json(&body)?;
        let id = resource
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| WitError::Invalid(format!("{rt}.id: an update must carry the id")))?
            .to_owned();
        let d = self.decide(&grant, rt, &[Interaction::Update], purpose)?;
        if !d.admits(&Value::Object(resource.clone())) {
            return Err(denied(format!(
                "the {rt} is outside the plugin's data scopes ({})",
                scope_list(&d.scopes)
            )));
        }
        // The version being replaced must be within the scope too, or a
        // laboratory-only plugin could overwrite any Observation.
        if let Some(current) = self.records().current(rt, &id).await?
            && current.hospital_id == d.actor.hospital_id
            && !d.admits(&current.resource)
        {
            return Err(denied(format!(
                "{rt}/{id} is outside the plugin's data scopes ({})",
                scope_list(&d.scopes)
            )));
        }
        let if_match = if_match.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        let stored = self
            .records()
            .update(&d.actor, rt, &id, resource, if_match)
            .await?;
        Ok(stored.resource.to_string())
    }

    async fn search_impl(
        &self,
        ty: String,
        query: String,
        purpose: Purpose,
    ) -> Result<wit::Page, WitError> {
        let grant = self.grant();
        let rt: ResourceType = ty.parse()?;
        let d = self.decide(&grant, rt, &[Interaction::Search], purpose)?;
        let params = crate::query::pairs(&query);
        let mut q = SearchQuery::parse(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        // One constrained scope: let the database narrow the search too.
        if let [only] = d.scopes.as_slice() {
            for (_, token) in &only.constraints {
                q.require_code(token);
            }
        }
        let admit = |r: &Value| d.admits(r);
        let page = self
            .records()
            .search_scoped(&d.actor, rt, &q, Some(&admit))
            .await?;
        Ok(wit::Page {
            total: u32::try_from(page.total).unwrap_or(u32::MAX),
            resources: page
                .entries
                .iter()
                .map(|s| s.resource.to_string())
                .collect(),
            next_offset: page.next_offset.and_then(|n| u32::try_from(n).ok()),
        })
    }

    async fn transaction_impl(
        &self,
        bundle: String,
        key: Option<String>,
        purpose: Purpose,
    ) -> Result<String, WitError> {
        let grant = self.grant();
        if bundle.len() > MAX_BODY_BYTES {
            return Err(WitError::Invalid(format!(
                "the Bundle is {} bytes; at most {MAX_BODY_BYTES}",
                bundle.len()
            )));
        }
        let value: Value = serde_json::from_str(&bundle)
            .map_err(|e| WitError::Invalid(format!("the Bundle is not valid JSON: {e}")))?;
        let entries = transaction::parse(&value)?;
        let mut actor = None;
        for (i, e) in entries.iter().enumerate() {
            let interactions: &[Interaction] = match e.method {
                Method::Create => &[Interaction::Create],
                Method::Update(_) => &[Interaction::Update],
                Method::Upsert { .. } => &[Interaction::Create, Interaction::Update],
            };
            let d = self
                .decide(&grant, e.resource_type, interactions, purpose)
                .map_err(|err| match err {
                    WitError::Denied(m) => WitError::Denied(format!("Bundle.entry[{i}]: {m}")),
                    other => other,
                })?;
            if !d.admits(&Value::Object(e.resource.clone())) {
                return Err(denied(format!(
                    "Bundle.entry[{i}]: the {} is outside the plugin's data scopes ({})",
                    e.resource_type,
                    scope_list(&d.scopes)
                )));
            }
            match &actor {
                None => actor = Some(d.actor),
                Some(a) if a.kind != d.actor.kind => {
                    return Err(denied(format!(
                        "Bundle.entry[{i}]: the entries need scopes of different contexts (user and system); send them in separate transactions"
                    )));
                }
                Some(_) => {}
            }
        }
        let Some(actor) = actor else {
            // An empty transaction writes nothing; still check the grant.
            self.require(Capability::Records)
                .map_err(|e| denied(e.to_string()))?;
            return Ok(
                r#"{"resourceType":"Bundle","type":"transaction-response","entry":[]}"#.into(),
            );
        };
        let key = key.map(|key| IdempotencyKey {
            owner: self.ctx.plugin_id.clone(),
            key,
        });
        let response = self
            .records()
            .transaction(&actor, entries, key.as_ref())
            .await?;
        Ok(response.to_string())
    }
}

fn scope_list(scopes: &[&DataScope]) -> String {
    scopes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_json(body: &str) -> Result<(ResourceType, serde_json::Map<String, Value>), WitError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(WitError::Invalid(format!(
            "the resource is {} bytes; at most {MAX_BODY_BYTES}",
            body.len()
        )));
    }
    Ok(parse_body(body.as_bytes(), None)?)
}

/// A consultation as the WIT record.
fn consultation_wit(c: crate::records::access::Consultation) -> wit::Consultation {
    wit::Consultation {
        id: c.id,
        requesting_hospital: c.requesting_hospital,
        host_hospital: c.host_hospital,
        status: c.status,
    }
}

impl CallState {
    /// The signed-in practitioner's hospital, once the plugin may handle
    /// consultations (`records:consultation` and the treatment purpose).
    fn consultation_caller(&self) -> Result<(String, String), WitError> {
        self.require(Capability::Records)
            .map_err(|e| denied(e.to_string()))?;
        let grant = self.grant();
        if !grant.consultations {
            return Err(denied(
                "the plugin was not granted `records:consultation`, so it cannot open or move consultations",
            ));
        }
        if !grant.purposes.contains(&Purpose::Treatment) {
            return Err(denied(
                "consultations are for treatment, and the plugin was not granted `records:purpose=treatment`",
            ));
        }
        match &self.ctx.principal {
            Some(p) if p.has_role(Role::Practitioner) => match &p.hospital_id {
                Some(h) => Ok((self.ctx.directory.person(p).into_string(), h.clone())),
                None => Err(denied("the practitioner belongs to no hospital")),
            },
            _ => Err(denied(
                "only a signed-in practitioner opens or moves a consultation",
            )),
        }
    }

    async fn request_consultation_impl(
        &self,
        national_id: Option<String>,
        health_id: Option<String>,
        reason: String,
    ) -> Result<wit::Consultation, WitError> {
        let (subject, own) = self.consultation_caller()?;
        let host = self.ctx.hospital.id.as_str();
        if own == host {
            return Err(WitError::Invalid(format!(
                "a consultation is between two hospitals; the caller is of `{host}`, this plugin's hospital"
            )));
        }
        let patient = crate::records::access::consultation_patient(national_id, health_id)?;
        let reason = crate::records::access::consultation_reason(&reason)?;
        let store = crate::records::access::AccessStore::new(self.records.db.clone());
        let c = store
            .request_consultation(&subject, &own, host, &patient, reason)
            .await?;
        Ok(consultation_wit(c))
    }

    async fn move_consultation_impl(
        &self,
        id: String,
        step: wit::ConsultationStep,
    ) -> Result<wit::Consultation, WitError> {
        use crate::records::access::ConsultationStep;
        let (subject, own) = self.consultation_caller()?;
        let store = crate::records::access::AccessStore::new(self.records.db.clone());
        let here = self.ctx.hospital.id.as_str();
        let c = store.consultation(&id).await?;
        // A plugin reaches only the consultations of its own hospital.
        if c.host_hospital != here && c.requesting_hospital != here {
            return Err(WitError::NotFound(format!("consultation {id}")));
        }
        let (step, target) = match step {
            wit::ConsultationStep::Accept => (ConsultationStep::Accept, "active"),
            wit::ConsultationStep::Decline => (ConsultationStep::Decline, "declined"),
            wit::ConsultationStep::End => (ConsultationStep::End, "ended"),
        };
        // Opening or refusing another hospital's records is the host's
        // decision: only through the host hospital's plugin.
        if step != ConsultationStep::End && c.host_hospital != here {
            return Err(WitError::Denied(format!(
                "consultation {id} is accepted or declined through the host hospital `{}`'s plugin",
                c.host_hospital
            )));
        }
        // A plugin retrying a step already taken (or taken through the API)
        // gets the consultation as it is.
        if c.status == target {
            return Ok(consultation_wit(c));
        }
        let c = store
            .move_loaded_consultation(&c, &subject, &own, step)
            .await?;
        Ok(consultation_wit(c))
    }
}

impl CallState {
    async fn deliver_conclusion_impl(&self, id: String, body: String) -> Result<String, WitError> {
        let (_, own) = self.consultation_caller()?;
        let here = self.ctx.hospital.id.as_str();
        let grant = self.grant();
        let (rt, resource) = parse_json(&body)?;
        // The plugin's scopes must let it write this kind of record at all.
        let d = self.decide(&grant, rt, &[Interaction::Create], Purpose::Treatment)?;
        if !d.admits(&Value::Object(resource.clone())) {
            return Err(denied(format!(
                "the {rt} is outside the plugin's data scopes ({})",
                scope_list(&d.scopes)
            )));
        }
        let store = crate::records::access::AccessStore::new(self.records.db.clone());
        let c = store.consultation(&id).await?;
        if c.host_hospital != here && c.requesting_hospital != here {
            return Err(WitError::NotFound(format!("consultation {id}")));
        }
        // The host's consultant concludes, through the host's plugin.
        if c.host_hospital != here || own != here {
            return Err(denied(format!(
                "the conclusion of consultation {id} is delivered by a practitioner of the host hospital `{}` through its plugin",
                c.host_hospital
            )));
        }
        let stored = store.deliver_conclusion(&c, &d.actor, rt, resource).await?;
        Ok(stored.resource.to_string())
    }
}

impl Host for CallState {
    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id))]
    async fn create(
        &mut self,
        body: String,
        purpose: wit::Purpose,
    ) -> wasmtime::Result<Result<String, WitError>> {
        Ok(self.create_impl(body, purpose.into()).await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, resource_type = %resource_type))]
    async fn read(
        &mut self,
        resource_type: String,
        id: String,
        purpose: wit::Purpose,
    ) -> wasmtime::Result<Result<String, WitError>> {
        Ok(self.read_impl(resource_type, id, purpose.into()).await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id))]
    async fn update(
        &mut self,
        body: String,
        if_match: Option<u64>,
        purpose: wit::Purpose,
    ) -> wasmtime::Result<Result<String, WitError>> {
        Ok(self.update_impl(body, if_match, purpose.into()).await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, resource_type = %resource_type))]
    async fn search(
        &mut self,
        resource_type: String,
        query: String,
        purpose: wit::Purpose,
    ) -> wasmtime::Result<Result<wit::Page, WitError>> {
        Ok(self.search_impl(resource_type, query, purpose.into()).await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, bytes = bundle.len()))]
    async fn transaction(
        &mut self,
        bundle: String,
        idempotency_key: Option<String>,
        purpose: wit::Purpose,
    ) -> wasmtime::Result<Result<String, WitError>> {
        Ok(self
            .transaction_impl(bundle, idempotency_key, purpose.into())
            .await)
    }
    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id))]
    async fn request_consultation(
        &mut self,
        national_id: Option<String>,
        health_id: Option<String>,
        reason: String,
    ) -> wasmtime::Result<Result<wit::Consultation, WitError>> {
        Ok(self
            .request_consultation_impl(national_id, health_id, reason)
            .await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, consultation = %id))]
    async fn move_consultation(
        &mut self,
        id: String,
        step: wit::ConsultationStep,
    ) -> wasmtime::Result<Result<wit::Consultation, WitError>> {
        Ok(self.move_consultation_impl(id, step).await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, consultation = %id))]
    async fn deliver_conclusion(
        &mut self,
        id: String,
        body: String,
    ) -> wasmtime::Result<Result<String, WitError>> {
        Ok(self.deliver_conclusion_impl(id, body).await)
    }
}
