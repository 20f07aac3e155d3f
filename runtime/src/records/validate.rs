//! Write-time validation of FHIR R4 resources: the resource type, required
//! elements, reference syntax, identifier systems, dates; and what the
//! store indexes (patient, identifiers, codes, dates).

use serde_json::{Map, Value};

use super::{BHYT_SYSTEM, CCCD_SYSTEM, RecordError, ResourceType, date_range};
use crate::text_limits::{self, TooLong};

/// A relative reference (`Type/id`) found in a resource, to be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub resource_type: ResourceType,
    pub id: String,
    /// Where it was found, as a FHIRPath-like location.
    pub path: String,
}

/// What a valid resource is indexed by.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct IndexEntries {
    /// `Patient/<id>` the resource is about.
    pub patient: Option<String>,
    pub identifiers: Vec<(String, String)>,
    pub codes: Vec<(String, String)>,
    /// Instant ranges in ms since the epoch.
    pub dates: Vec<(i64, i64)>,
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> RecordError {
    RecordError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// Whether `id` is a valid FHIR id: 1-64 of `A-Za-z0-9-.`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Parse a request body into a JSON object of `expected` type (or of any
/// known type when `None`).
pub fn parse_body(
    body: &[u8],
    expected: Option<ResourceType>,
) -> Result<(ResourceType, Map<String, Value>), RecordError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| RecordError::InvalidJson(format!("the body is not UTF-8: {e}")))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| RecordError::InvalidJson(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(RecordError::InvalidJson(
            "a FHIR resource must be a JSON object".into(),
        ));
    };
    let Some(rt) = object.get("resourceType") else {
        return Err(invalid("resourceType", "resourceType is missing"));
    };
    let rt = rt
        .as_str()
        .ok_or_else(|| invalid("resourceType", "resourceType must be a string"))?;
    let rt: ResourceType = rt.parse()?;
    if let Some(expected) = expected
        && expected != rt
    {
        return Err(invalid(
            "resourceType",
            format!("the body is a {rt} but the URL names {expected}"),
        ));
    }
    Ok((rt, object))
}

/// One step of the path to a string, rendered only when it is too long.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Refuse a string over its documented maximum: names (a `HumanName`'s
/// parts, an organization's name), narrative XHTML, any other string.
/// Attachment `data` (base64) is bounded by the request body's limit.
fn check_strings(rt: ResourceType, r: &Map<String, Value>) -> Result<(), TooLong> {
    fn walk<'a>(v: &'a Value, max: usize, steps: &mut Vec<Step<'a>>) -> Result<(), usize> {
        match v {
            Value::String(s) => match text_limits::check("", s, max) {
                Ok(()) => Ok(()),
                Err(_) => Err(max),
            },
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    steps.push(Step::Index(i));
                    walk(item, max, steps)?;
                    steps.pop();
                }
                Ok(())
            }
            Value::Object(o) => walk_object(o, max, steps),
            _ => Ok(()),
        }
    }
    fn walk_object<'a>(
        o: &'a Map<String, Value>,
        max: usize,
        steps: &mut Vec<Step<'a>>,
    ) -> Result<(), usize> {
        for (k, item) in o {
            let max = match k.as_str() {
                "data" => continue,
                "div" => text_limits::FHIR_NARRATIVE,
                "name" => max.min(text_limits::NAME),
                _ => max,
            };
            steps.push(Step::Key(k));
            walk(item, max, steps)?;
            steps.pop();
        }
        Ok(())
    }
    let mut steps = Vec::new();
    walk_object(r, text_limits::FHIR_STRING, &mut steps).map_err(|max| {
        let mut field = rt.as_str().to_owned();
        for step in &steps {
            match step {
                Step::Key(k) => {
                    field.push('.');
                    field.push_str(k);
                }
                Step::Index(i) => field.push_str(&format!("[{i}]")),
            }
        }
        TooLong { field, max }
    })
}

/// Required elements per type: each entry is one element, or alternatives
/// (`medication[x]`) of which one must be present.
fn required(rt: ResourceType) -> &'static [&'static [&'static str]] {
    use ResourceType::*;
    match rt {
        Patient | Practitioner | Organization => &[],
        Encounter => &[&["status"], &["class"]],
        ServiceRequest => &[&["status"], &["intent"], &["subject"]],
        Observation => &[&["status"], &["code"]],
        DiagnosticReport => &[&["status"], &["code"]],
        ImagingStudy => &[&["status"], &["subject"]],
        MedicationRequest => &[
            &["status"],
            &["intent"],
            &["subject"],
            &["medicationCodeableConcept", "medicationReference"],
        ],
        Appointment => &[&["status"], &["participant"]],
        Communication => &[&["status"]],
        Consent => &[&["status"], &["scope"], &["category"]],
    }
}

fn present(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// Validate a resource about to be written; returns its references (to be
/// resolved by the store) and its index entries.
pub fn validate(
    rt: ResourceType,
    r: &Map<String, Value>,
) -> Result<(Vec<Reference>, IndexEntries), RecordError> {
    check_strings(rt, r)?;
    if let Some(id) = r.get("id") {
        match id.as_str() {
            Some(id) if valid_id(id) => {}
            _ => {
                return Err(invalid(
                    "id",
                    "id must be 1-64 characters of A-Z a-z 0-9 - .",
                ));
            }
        }
    }
    for alternatives in required(rt) {
        if !alternatives.iter().any(|e| present(r.get(*e))) {
            let name = if alternatives.len() == 1 {
                alternatives[0].to_owned()
            } else {
                alternatives.join(" or ")
            };
            return Err(RecordError::Invalid {
                path: format!("{rt}.{}", alternatives[0]),
                message: format!("{rt}.{name} is required"),
            });
        }
    }
    if let Some(status) = r.get("status")
        && !status.is_string()
    {
        return Err(invalid(
            format!("{rt}.status"),
            "status must be a code (string)",
        ));
    }
    if rt == ResourceType::Encounter && !r.get("class").is_some_and(Value::is_object) {
        return Err(invalid(
            "Encounter.class",
            "Encounter.class must be a Coding",
        ));
    }
    for e in ["code", "medicationCodeableConcept"] {
        if let Some(v) = r.get(e)
            && !v.is_object()
        {
            return Err(invalid(
                format!("{rt}.{e}"),
                format!("{rt}.{e} must be a CodeableConcept"),
            ));
        }
    }
    let mut refs = Vec::new();
    collect_references(&Value::Object(r.clone()), rt.as_str(), &mut refs)?;
    let mut index = IndexEntries::default();
    // Identifiers: the type's own `identifier` (a list, or one on some types).
    let identifiers: Vec<&Value> = match r.get("identifier") {
        None => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        Some(_) => {
            return Err(invalid(
                format!("{rt}.identifier"),
                "identifier must be a list of Identifier",
            ));
        }
    };
    for (i, ident) in identifiers.iter().enumerate() {
        let path = format!("{rt}.identifier[{i}]");
        let system = ident.get("system").and_then(Value::as_str).unwrap_or("");
        let value = ident
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(&path, format!("{path}.value is required (a string)")))?;
        check_identifier(system, value, &path)?;
        index
            .identifiers
            .push((system.to_owned(), value.to_owned()));
    }
    index.patient = patient_of(rt, r);
    for e in code_elements(rt) {
        collect_codings(r.get(*e), &mut index.codes);
    }
    for e in date_elements(rt) {
        collect_dates(r.get(*e), &format!("{rt}.{e}"), &mut index.dates)?;
    }
    Ok((refs, index))
}

/// Check the format of the national identifiers.
pub fn check_identifier(system: &str, value: &str, path: &str) -> Result<(), RecordError> {
    let digits = |n: usize| value.len() == n && value.bytes().all(|b| b.is_ascii_digit());
    if system == CCCD_SYSTEM && !digits(12) {
        return Err(invalid(
            path,
            format!("a citizen ID (CCCD, system {CCCD_SYSTEM}) is 12 digits, not `{value}`"),
        ));
    }
    if system == BHYT_SYSTEM && !digits(10) {
        return Err(invalid(
            path,
            format!(
                "a social-insurance health ID (mã số BHXH, system {BHYT_SYSTEM}) is 10 digits, not `{value}`"
            ),
        ));
    }
    Ok(())
}

/// Every `reference` string in the resource: relative `Type/id` ones are
/// returned for resolution; contained (`#id`) and absolute URLs pass.
fn collect_references(v: &Value, path: &str, out: &mut Vec<Reference>) -> Result<(), RecordError> {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                let child_path = format!("{path}.{k}");
                if k == "reference" {
                    let Some(s) = child.as_str() else {
                        return Err(invalid(child_path, "a reference must be a string"));
                    };
                    if let Some(r) = parse_reference(s, &child_path)? {
                        out.push(r);
                    }
                } else if k != "contained" {
                    collect_references(child, &child_path, out)?;
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                collect_references(child, &format!("{path}[{i}]"), out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn parse_reference(s: &str, path: &str) -> Result<Option<Reference>, RecordError> {
    if s.starts_with('#') || s.starts_with("http://") || s.starts_with("https://") {
        return Ok(None);
    }
    let parts: Vec<&str> = s.split('/').collect();
    let (ty, id) = match parts.as_slice() {
        [ty, id] => (*ty, *id),
        [ty, id, "_history", _] => (*ty, *id),
        _ => {
            return Err(invalid(
                path,
                format!("reference `{s}` is not of the form Type/id"),
            ));
        }
    };
    let resource_type: ResourceType = ty.parse().map_err(|_| {
        RecordError::UnresolvedReference(format!(
            "{path}: reference `{s}` names a resource type this store does not hold"
        ))
    })?;
    if !valid_id(id) {
        return Err(invalid(path, format!("reference `{s}` has an invalid id")));
    }
    Ok(Some(Reference {
        resource_type,
        id: id.to_owned(),
        path: path.to_owned(),
    }))
}

/// The patient a resource is about, as `Patient/<id>`.
fn patient_of(rt: ResourceType, r: &Map<String, Value>) -> Option<String> {
    use ResourceType::*;
    let reference = |e: &str| {
        r.get(e)
            .and_then(|v| v.get("reference"))
            .and_then(Value::as_str)
            .filter(|s| s.starts_with("Patient/"))
            .map(|s| s.split('/').take(2).collect::<Vec<_>>().join("/"))
    };
    match rt {
        Patient => r
            .get("id")
            .and_then(Value::as_str)
            .map(|id| format!("Patient/{id}")),
        Practitioner | Organization => None,
        Consent => reference("patient"),
        Appointment => r
            .get("participant")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("actor")?.get("reference")?.as_str())
            .find(|s| s.starts_with("Patient/"))
            .map(|s| s.split('/').take(2).collect::<Vec<_>>().join("/")),
        _ => reference("subject"),
    }
}

/// Elements holding the codes searched by `code`.
fn code_elements(rt: ResourceType) -> &'static [&'static str] {
    use ResourceType::*;
    match rt {
        Patient | Practitioner | Organization => &[],
        Encounter => &["class", "type"],
        ServiceRequest | Observation | DiagnosticReport => &["code", "category"],
        ImagingStudy => &["modality"],
        MedicationRequest => &["medicationCodeableConcept"],
        Appointment => &["serviceType", "appointmentType"],
        Communication => &["category"],
        Consent => &["category", "scope"],
    }
}

/// Elements holding the dates searched by `date`.
fn date_elements(rt: ResourceType) -> &'static [&'static str] {
    use ResourceType::*;
    match rt {
        Patient => &["birthDate"],
        Practitioner | Organization => &[],
        Encounter => &["period"],
        ServiceRequest => &["authoredOn", "occurrenceDateTime", "occurrencePeriod"],
        Observation => &[
            "effectiveDateTime",
            "effectivePeriod",
            "effectiveInstant",
            "issued",
        ],
        DiagnosticReport => &["effectiveDateTime", "effectivePeriod", "issued"],
        ImagingStudy => &["started"],
        MedicationRequest => &["authoredOn"],
        Appointment => &["start"],
        Communication => &["sent"],
        Consent => &["dateTime"],
    }
}

/// Codings of a Coding, a CodeableConcept, or a list of either.
fn collect_codings(v: Option<&Value>, out: &mut Vec<(String, String)>) {
    match v {
        Some(Value::Array(a)) => a.iter().for_each(|x| collect_codings(Some(x), out)),
        Some(Value::Object(o)) => {
            if let Some(code) = o.get("code").and_then(Value::as_str) {
                let system = o.get("system").and_then(Value::as_str).unwrap_or("");
                out.push((system.to_owned(), code.to_owned()));
            }
            if let Some(codings) = o.get("coding") {
                collect_codings(Some(codings), out);
            }
        }
        _ => {}
    }
}

/// A date, dateTime, instant or Period as instant ranges.
fn collect_dates(
    v: Option<&Value>,
    path: &str,
    out: &mut Vec<(i64, i64)>,
) -> Result<(), RecordError> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => {
            let range = date_range(s)
                .ok_or_else(|| invalid(path, format!("`{s}` is not a FHIR date or dateTime")))?;
            out.push(range);
            Ok(())
        }
        Some(Value::Object(o)) => {
            let bound = |k: &str| -> Result<Option<(i64, i64)>, RecordError> {
                match o.get(k) {
                    None => Ok(None),
                    Some(Value::String(s)) => date_range(s).map(Some).ok_or_else(|| {
                        invalid(
                            format!("{path}.{k}"),
                            format!("`{s}` is not a FHIR dateTime"),
                        )
                    }),
                    Some(_) => Err(invalid(format!("{path}.{k}"), "must be a dateTime string")),
                }
            };
            let (start, end) = (bound("start")?, bound("end")?);
            if start.is_none() && end.is_none() {
                return Ok(());
            }
            let lo = start.map_or(i64::MIN, |s| s.0);
            let hi = end.map_or(i64::MAX, |e| e.1);
            if lo > hi {
                return Err(invalid(path, "the period ends before it starts"));
            }
            out.push((lo, hi));
            Ok(())
        }
        Some(_) => Err(invalid(path, "must be a date string or a Period")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<(Vec<Reference>, IndexEntries), RecordError> {
        let (rt, o) = parse_body(v.to_string().as_bytes(), None)?;
        validate(rt, &o)
    }

    fn message(e: RecordError) -> String {
        e.to_string()
    }

    #[test]
    fn rejects_what_is_not_a_resource() {
        assert!(matches!(
            parse_body(b"{not json", None),
            Err(RecordError::InvalidJson(_))
        ));
        assert!(matches!(
            parse_body(b"[1]", None),
            Err(RecordError::InvalidJson(_))
        ));
        assert!(matches!(
            parse_body(&[0xff, 0xfe], None),
            Err(RecordError::InvalidJson(_))
        ));
        let e = parse_body(br#"{"resourceType":"Banana"}"#, None).unwrap_err();
        assert!(
            matches!(e, RecordError::UnknownType(ref t) if t == "Banana"),
            "{e}"
        );
        let e = parse_body(br#"{"status":"final"}"#, None).unwrap_err();
        assert!(message(e).contains("resourceType is missing"));
        let e = parse_body(
            br#"{"resourceType":"Patient"}"#,
            Some(ResourceType::Observation),
        )
        .unwrap_err();
        assert!(message(e).contains("URL names Observation"));
    }

    #[test]
    fn names_the_missing_required_element() {
        let cases = [
            (
                json!({"resourceType":"Observation","status":"final"}),
                "Observation.code is required",
            ),
            (
                json!({"resourceType":"Observation","code":{"text":"x"}}),
                "Observation.status is required",
            ),
            (
                json!({"resourceType":"Encounter","status":"finished"}),
                "Encounter.class is required",
            ),
            (
                json!({"resourceType":"DiagnosticReport","status":"final"}),
                "DiagnosticReport.code is required",
            ),
            (
                json!({"resourceType":"ServiceRequest","status":"active","intent":"order"}),
                "ServiceRequest.subject is required",
            ),
            (
                json!({"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"}}),
                "MedicationRequest.medicationCodeableConcept or medicationReference is required",
            ),
            (
                json!({"resourceType":"Consent","status":"active","scope":{"text":"x"}}),
                "Consent.category is required",
            ),
            (
                json!({"resourceType":"ImagingStudy","status":"available"}),
                "ImagingStudy.subject is required",
            ),
            (
                json!({"resourceType":"Appointment","status":"booked","participant":[]}),
                "Appointment.participant is required",
            ),
            (
                json!({"resourceType":"Communication"}),
                "Communication.status is required",
            ),
        ];
        for (resource, expected) in cases {
            let e = check(resource).unwrap_err();
            assert!(message(e).contains(expected), "expected `{expected}`");
        }
    }

    #[test]
    fn checks_national_identifiers() {
        let patient = |system: &str, value: &str| json!({"resourceType":"Patient","identifier":[{"system":system,"value":value}]});
        assert!(check(patient(CCCD_SYSTEM, "001088012345")).is_ok());
        assert!(check(patient(BHYT_SYSTEM, "0123456789")).is_ok());
        assert!(check(patient("urn:other", "x")).is_ok());
        for (s, v) in [
            (CCCD_SYSTEM, "12345"),
            (CCCD_SYSTEM, "00108801234a"),
            (BHYT_SYSTEM, "01234567890"),
        ] {
            let e = check(patient(s, v)).unwrap_err();
            assert!(message(e).contains("digits"), "{s} {v}");
        }
        let e = check(json!({"resourceType":"Patient","identifier":[{"system":CCCD_SYSTEM}]}))
            .unwrap_err();
        assert!(message(e).contains("identifier[0].value is required"));
    }

    #[test]
    fn finds_references_patient_codes_and_dates() {
        let (refs, index) = check(json!({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": "Encounter/e1"},
            "performer": [{"reference": "https://example.org/Practitioner/9"}, {"reference": "#c1"}],
            "effectiveDateTime": "2026-03-01T08:30:00+07:00"
        }))
        .unwrap();
        let names: Vec<_> = refs
            .iter()
            .map(|r| format!("{}/{}", r.resource_type, r.id))
            .collect();
        assert_eq!(names, ["Encounter/e1", "Patient/p1"]);
        assert_eq!(index.patient.as_deref(), Some("Patient/p1"));
        assert_eq!(
            index.codes,
            [("http://loinc.org".to_owned(), "8867-4".to_owned())]
        );
        // 2026-03-01T01:30:00Z
        assert_eq!(index.dates, [(1_772_328_600_000, 1_772_328_600_999)]);
    }

    #[test]
    fn bounds_strings_by_kind() {
        let name =
            |family: String| json!({ "resourceType": "Patient", "name": [{ "family": family }] });
        assert!(check(name("Đ".repeat(200))).is_ok());
        let err = check(name("Đ".repeat(201))).expect_err("too long");
        assert!(
            matches!(&err, RecordError::TooLong(e) if e.field == "Patient.name[0].family" && e.max == 200),
            "{err:?}"
        );
        let note = |text: String| {
            json!({ "resourceType": "Observation", "status": "final", "code": { "text": "x" },
                "valueString": text, "text": { "status": "generated", "div": "d".repeat(20_000) },
                "attachment": { "data": "A".repeat(100_000) } })
        };
        assert!(check(note("a".repeat(16_384))).is_ok());
        assert!(matches!(
            check(note("a".repeat(16_385))),
            Err(RecordError::TooLong(e)) if e.field == "Observation.valueString"
        ));
    }

    #[test]
    fn rejects_bad_references_and_dates() {
        let obs = |extra: Value| {
            let mut o = json!({"resourceType":"Observation","status":"final","code":{"text":"x"}});
            o.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            o
        };
        let e = check(obs(json!({"subject":{"reference":"Location/1"}}))).unwrap_err();
        assert!(matches!(e, RecordError::UnresolvedReference(_)));
        let e = check(obs(json!({"subject":{"reference":"Patient"}}))).unwrap_err();
        assert!(message(e).contains("Type/id"));
        let e = check(obs(json!({"effectiveDateTime":"yesterday"}))).unwrap_err();
        assert!(message(e).contains("not a FHIR date"));
        let e = check(obs(
            json!({"effectivePeriod":{"start":"2026-02-01","end":"2026-01-01"}}),
        ))
        .unwrap_err();
        assert!(message(e).contains("ends before"));
    }
}
