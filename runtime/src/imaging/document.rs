//! The FHIR document Bundle of an imaging share: a generated Composition,
//! the hospital's Organization, the Patient, the DiagnosticReport, the
//! ImagingStudy and the DICOMweb Endpoint the images are retrieved from.

use serde_json::{Value, json};

use super::ShareError;
use crate::directory::Hospital;
use crate::records::BHYT_SYSTEM;

/// Document type of the Composition (LOINC "Diagnostic imaging study").
const DOCUMENT_TYPE: (&str, &str) = ("18748-4", "Diagnostic imaging study");
/// Extension on the Composition naming the BHYT claim it was made for.
pub const CLAIM_EXTENSION: &str = "https://vtelehealth.gov.vn/fhir/StructureDefinition/bhyt-claim";
/// Identifier system of a BHYT claim (hồ sơ giám định) number.
pub const CLAIM_SYSTEM: &str = "urn:vtelehealth:bhyt-claim";
/// Identifier system of a hospital of the network.
pub const HOSPITAL_SYSTEM: &str = "urn:vtelehealth:hospital";

/// What a document is made of.
pub struct Sources<'a> {
    pub share_id: &'a str,
    pub claim_id: &'a str,
    pub hospital: &'a Hospital,
    /// The FHIR base URL of the deployment (`…/fhir/R4`).
    pub base: &'a str,
    /// FHIR instant of the assembly.
    pub now: &'a str,
    pub patient: &'a Value,
    pub report: &'a Value,
    pub study: &'a Value,
    /// A DICOMweb (WADO-RS) base URL to add as the study's Endpoint.
    pub dicomweb_base_url: Option<&'a str>,
}

/// The Patient's health ID (mã số BHXH).
pub fn health_id(patient: &Value) -> Result<String, ShareError> {
    patient["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["system"] == BHYT_SYSTEM)
        .and_then(|i| i["value"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            ShareError::Invalid(format!(
                "Patient/{} has no health ID: a BHYT claim needs an identifier with system {BHYT_SYSTEM} (mã số BHXH)",
                patient["id"].as_str().unwrap_or_default()
            ))
        })
}

/// The id of a `Patient/<id>` (or `Patient/<id>/_history/<n>`) reference.
pub fn patient_id(reference: &Value) -> Option<String> {
    let r = reference["reference"].as_str()?;
    let mut parts = r.split('/');
    match (parts.next(), parts.next()) {
        (Some("Patient"), Some(id)) if !id.is_empty() => Some(id.to_owned()),
        _ => None,
    }
}

/// Whether an endpoint reference can be followed by the assessor: a
/// contained Endpoint with an address, or an absolute URL.
fn usable_endpoint(study: &Value, reference: &Value) -> bool {
    let Some(r) = reference["reference"].as_str() else {
        return false;
    };
    if let Some(local) = r.strip_prefix('#') {
        return study["contained"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["resourceType"] == "Endpoint"
                    && c["id"] == local
                    && c["address"].as_str().is_some_and(|a| !a.is_empty())
            });
    }
    r.starts_with("https://") || r.starts_with("http://")
}

/// Check a DICOMweb base URL given in a request.
pub fn check_dicomweb_url(url: &str) -> Result<(), ShareError> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ShareError::Invalid(
            "dicomweb_base_url must be an http(s) URL without spaces, at most 2048 bytes".into(),
        ))
    }
}

/// Assemble the (unsigned) document. The ImagingStudy must have a series
/// with a modality and an endpoint, or `dicomweb_base_url` must give one.
pub fn assemble(s: &Sources) -> Result<Value, ShareError> {
    let study_id = s.study["id"].as_str().unwrap_or_default();
    let with_modality = s.study["series"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|series| {
            series["modality"]["code"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        });
    if !with_modality {
        return Err(ShareError::Invalid(format!(
            "ImagingStudy/{study_id} has no series with a modality; the assessor needs to know what was imaged"
        )));
    }
    let mut study = s.study.clone();
    let mut endpoint_entry = None;
    if let Some(url) = s.dicomweb_base_url {
        check_dicomweb_url(url)?;
        let id = uuid::Uuid::now_v7().to_string();
        let endpoint = json!({
            "resourceType": "Endpoint",
            "id": id,
            "status": "active",
            "connectionType": {
                "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                "code": "dicom-wado-rs"
            },
            "name": format!("DICOMweb {}", s.hospital.name),
            "managingOrganization": { "reference": format!("Organization/{}", s.hospital.id) },
            "payloadType": [{ "text": "DICOM WADO-RS" }],
            "payloadMimeType": ["application/dicom"],
            "address": url
        });
        let reference = json!({ "reference": format!("Endpoint/{id}") });
        match study["endpoint"].as_array_mut() {
            Some(list) => list.push(reference),
            None => study["endpoint"] = json!([reference]),
        }
        endpoint_entry = Some(endpoint);
    } else {
        let study_level = study["endpoint"].as_array().into_iter().flatten();
        let series_level = study["series"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|series| series["endpoint"].as_array().into_iter().flatten());
        if !study_level
            .chain(series_level)
            .any(|r| usable_endpoint(&study, r))
        {
            return Err(ShareError::Invalid(format!(
                "ImagingStudy/{study_id} names no DICOMweb endpoint (a contained Endpoint or an absolute URL); give dicomweb_base_url"
            )));
        }
    }

    let patient_id = s.patient["id"].as_str().unwrap_or_default();
    let report_id = s.report["id"].as_str().unwrap_or_default();
    let organization = json!({
        "resourceType": "Organization",
        "id": s.hospital.id,
        "identifier": [{ "system": HOSPITAL_SYSTEM, "value": s.hospital.id }],
        "active": true,
        "name": s.hospital.name,
        "address": [{ "state": s.hospital.province, "country": "VN" }]
    });
    let author = json!({ "reference": format!("Organization/{}", s.hospital.id), "display": s.hospital.name });
    let composition = json!({
        "resourceType": "Composition",
        "id": s.share_id,
        "extension": [{
            "url": CLAIM_EXTENSION,
            "valueIdentifier": { "system": CLAIM_SYSTEM, "value": s.claim_id }
        }],
        "status": "final",
        "type": { "coding": [{ "system": "http://loinc.org", "code": DOCUMENT_TYPE.0, "display": DOCUMENT_TYPE.1 }] },
        "subject": { "reference": format!("Patient/{patient_id}") },
        "date": s.now,
        "author": [author],
        "title": "Kết quả chẩn đoán hình ảnh / Imaging results",
        "custodian": author,
        "section": [
            {
                "title": "Kết luận chẩn đoán hình ảnh / Diagnostic report",
                "entry": [{ "reference": format!("DiagnosticReport/{report_id}") }]
            },
            {
                "title": "Nghiên cứu hình ảnh / Imaging study",
                "entry": [{ "reference": format!("ImagingStudy/{study_id}") }]
            }
        ]
    });
    let mut entries = vec![
        composition,
        organization,
        s.patient.clone(),
        s.report.clone(),
        study,
    ];
    entries.extend(endpoint_entry);
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|r| {
            let url = format!(
                "{}/{}/{}",
                s.base,
                r["resourceType"].as_str().unwrap_or_default(),
                r["id"].as_str().unwrap_or_default()
            );
            json!({ "fullUrl": url, "resource": r })
        })
        .collect();
    Ok(json!({
        "resourceType": "Bundle",
        "id": s.share_id,
        "identifier": { "system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", s.share_id) },
        "type": "document",
        "timestamp": s.now,
        "entry": entries
    }))
}
