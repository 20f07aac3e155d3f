//! Health records as FHIR R4 JSON (WIT interface `records`; list `"records:<scope>"` entries
//! in the manifest, e.g. `"records:system/Patient.cru"` and `"records:purpose=treatment"`).
//!
//! Every call names a [`Purpose`] the plugin was granted and is checked against its data
//! scopes and against the caller's rights (tenancy, consent, consultation). Resources go in
//! and out as [`serde_json::Value`]s; refusals come back as [`Error`] (`denied` → 403,
//! `invalid` → 400, `not-found` → 404).

use serde_json::Value;

use crate::Error;
use crate::bindings::vtelehealth::platform::records as raw;
pub use crate::bindings::vtelehealth::platform::records::Purpose;

/// One page of search results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// How many resources match, over all pages.
    pub total: u32,
    /// The resources of this page.
    pub resources: Vec<Value>,
    /// The `_offset` of the next page, if there is one.
    pub next_offset: Option<u32>,
}

fn parse(text: String) -> Result<Value, Error> {
    serde_json::from_str(&text)
        .map_err(|e| Error::internal(format!("the host returned unreadable JSON: {e}")))
}

/// Store a new resource; the stored resource (with `id` and `meta`) comes back.
pub fn create(resource: &Value, purpose: Purpose) -> Result<Value, Error> {
    parse(raw::create(&resource.to_string(), purpose)?)
}

/// The current version of `resource_type/id`.
pub fn read(resource_type: &str, id: &str, purpose: Purpose) -> Result<Value, Error> {
    parse(raw::read(resource_type, id, purpose)?)
}

/// Replace a resource (which carries its `id`) as a new version; `if_match` is the version
/// last seen, if the update must not overwrite someone else's.
pub fn update(resource: &Value, if_match: Option<u64>, purpose: Purpose) -> Result<Value, Error> {
    parse(raw::update(&resource.to_string(), if_match, purpose)?)
}

/// Search with FHIR search parameters as a query string, e.g. `patient=Patient/1&code=718-7`.
pub fn search(resource_type: &str, query: &str, purpose: Purpose) -> Result<Page, Error> {
    let page = raw::search(resource_type, query, purpose)?;
    Ok(Page {
        total: page.total,
        resources: page
            .resources
            .into_iter()
            .map(parse)
            .collect::<Result<_, _>>()?,
        next_offset: page.next_offset,
    })
}

/// Apply a FHIR `transaction` Bundle: all entries are written or none. With an
/// `idempotency_key` already used by this plugin at this hospital, nothing is written and
/// the first response comes back. Returns the `transaction-response` Bundle.
pub fn transaction(
    bundle: &Value,
    idempotency_key: Option<&str>,
    purpose: Purpose,
) -> Result<Value, Error> {
    parse(raw::transaction(
        &bundle.to_string(),
        idempotency_key,
        purpose,
    )?)
}

pub use crate::bindings::vtelehealth::platform::records::{Consultation, ConsultationStep};

/// Ask this plugin's hospital to consult on a patient named by citizen ID (12 digits) and/or
/// social-insurance number (10 digits). The caller is a practitioner of another hospital.
/// Needs `"records:consultation"` in the manifest. While the consultation is active, the two
/// hospitals read each other's records about that patient for treatment (audited).
pub fn request_consultation(
    national_id: Option<&str>,
    health_id: Option<&str>,
    reason: &str,
) -> Result<Consultation, Error> {
    Ok(raw::request_consultation(national_id, health_id, reason)?)
}

/// Accept or decline (a practitioner of the host hospital) or end (either hospital) a
/// consultation between the caller's hospital and this plugin's hospital.
pub fn move_consultation(id: &str, step: ConsultationStep) -> Result<Consultation, Error> {
    Ok(raw::move_consultation(id, step)?)
}

/// Deliver a consultation's conclusion (a DiagnosticReport or Communication, without `id`)
/// to the requesting hospital's record of the patient, while the consultation is active;
/// the stored resource as that hospital keeps it. The host hospital's practitioner calls it.
pub fn deliver_conclusion(id: &str, resource: &Value) -> Result<Value, Error> {
    parse(raw::deliver_conclusion(id, &resource.to_string())?)
}
