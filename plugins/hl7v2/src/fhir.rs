//! HL7 v2 → FHIR R4 transaction Bundle (Patient, Encounter, ServiceRequest, Observation,
//! DiagnosticReport). See `docs/his-hl7v2.md` for the field-by-field table.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value, json};

use crate::datetime::Timestamp;
use crate::error::{ErrorCode, Issue, Location};
use crate::message::{Message, Repetition, Segment};

/// Identifier system of the citizen ID (CCCD), 12 digits.
pub const CCCD_SYSTEM: &str = "https://vneid.gov.vn/cccd";
/// Identifier system of the social-insurance number (mã số BHXH) used as health ID, 10 digits.
pub const BHXH_SYSTEM: &str = "https://baohiemxahoi.gov.vn/ma-so-bhxh";
/// HL7 versions whose messages are mapped.
pub const SUPPORTED_VERSIONS: &[&str] = &["2.3", "2.3.1", "2.4", "2.5", "2.5.1"];
/// Message types (MSH-9.1^MSH-9.2) that are mapped.
pub const SUPPORTED_MESSAGES: &[&str] = &[
    "ADT^A01", "ADT^A04", "ADT^A08", "ADT^A03", "ORU^R01", "ORM^O01", "OML^O21",
];

const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const OBS_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
const UCUM: &str = "http://unitsofmeasure.org";

/// What the mapping needs to know besides the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingContext {
    /// The platform id of the hospital whose HIS sent the message (`bach-mai`); it names
    /// the hospital-local identifier systems.
    pub hospital_id: String,
}

impl MappingContext {
    /// A context for this hospital.
    pub fn new(hospital_id: impl Into<String>) -> Self {
        Self {
            hospital_id: hospital_id.into(),
        }
    }

    /// `urn:vtelehealth:hospital:<hospital>:<what>`, a hospital-local identifier or code
    /// system.
    pub fn local_system(&self, what: &str) -> String {
        format!("urn:vtelehealth:hospital:{}:{what}", self.hospital_id)
    }

    /// The system of the hospital's medical record numbers (PID-3 type MR).
    pub fn mrn_system(&self) -> String {
        self.local_system("mrn")
    }
}

/// Why a parsed message cannot be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapErrorKind {
    /// MSH-12 names a version other than 2.3 to 2.5.1 (AR).
    UnsupportedVersion,
    /// MSH-9.1 is not ADT, ORU, ORM or OML (AR).
    UnsupportedMessageType,
    /// MSH-9.2 is not a supported trigger for its type (AR).
    UnsupportedEvent,
    /// A required segment is missing, or segments are out of order (AE).
    Structure,
    /// A required field is empty (AE).
    MissingField,
    /// A value does not have its data type: date, number, identifier format (AE).
    BadValue,
    /// A coded value is not one this mapping knows (AE).
    UnknownCode,
}

/// A message that parsed but cannot be turned into FHIR resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError {
    /// What kind of problem.
    pub kind: MapErrorKind,
    /// Where, when one place is to blame.
    pub location: Option<Location>,
    /// For people: what is wrong and what was expected.
    pub message: String,
}

impl MapError {
    fn new(kind: MapErrorKind, location: Option<Location>, message: impl Into<String>) -> Self {
        Self {
            kind,
            location,
            message: message.into(),
        }
    }

    /// The acknowledgment this error calls for.
    pub fn issue(&self) -> Issue {
        let (reject, code) = match self.kind {
            MapErrorKind::UnsupportedVersion => (true, ErrorCode::UnsupportedVersion),
            MapErrorKind::UnsupportedMessageType => (true, ErrorCode::UnsupportedMessageType),
            MapErrorKind::UnsupportedEvent => (true, ErrorCode::UnsupportedEventCode),
            MapErrorKind::Structure => (false, ErrorCode::SegmentSequence),
            MapErrorKind::MissingField => (false, ErrorCode::RequiredFieldMissing),
            MapErrorKind::BadValue => (false, ErrorCode::DataType),
            MapErrorKind::UnknownCode => (false, ErrorCode::TableValueNotFound),
        };
        let issue = if reject {
            Issue::reject(code, self.message.clone())
        } else {
            Issue::error(code, self.message.clone())
        };
        issue.at(self.location.clone())
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for MapError {}

/// The supported message kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Adt(Adt),
    Order,
    Result,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adt {
    Admit,
    Register,
    Update,
    Discharge,
}

/// Check that the message's version and type are supported, without mapping it.
pub fn check_supported(message: &Message) -> Result<(), MapError> {
    classify(message).map(|_| ())
}

fn classify(message: &Message) -> Result<Kind, MapError> {
    let version = message.version();
    if !SUPPORTED_VERSIONS.contains(&version.as_ref()) {
        return Err(MapError::new(
            MapErrorKind::UnsupportedVersion,
            Some(Location::segment("MSH", 1).field(12)),
            format!(
                "HL7 version {version} is not supported (supported: {})",
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    let (code, trigger) = (message.message_code(), message.trigger_event());
    let kind = match (code.as_ref(), trigger.as_ref()) {
        ("ADT", "A01") => Kind::Adt(Adt::Admit),
        ("ADT", "A04") => Kind::Adt(Adt::Register),
        ("ADT", "A08") => Kind::Adt(Adt::Update),
        ("ADT", "A03") => Kind::Adt(Adt::Discharge),
        ("ORU", "R01") => Kind::Result,
        ("ORM", "O01") | ("OML", "O21") => Kind::Order,
        ("ADT" | "ORU" | "ORM" | "OML", _) => {
            return Err(MapError::new(
                MapErrorKind::UnsupportedEvent,
                Some(Location::segment("MSH", 1).field(9).component(2)),
                format!(
                    "{code}^{trigger} is not supported (supported: {})",
                    SUPPORTED_MESSAGES.join(", ")
                ),
            ));
        }
        _ => {
            return Err(MapError::new(
                MapErrorKind::UnsupportedMessageType,
                Some(Location::segment("MSH", 1).field(9).component(1)),
                format!(
                    "message type {code} is not supported (supported: {})",
                    SUPPORTED_MESSAGES.join(", ")
                ),
            ));
        }
    };
    Ok(kind)
}

/// The idempotency key of a message: `hl7:<MSH-4.1>:<MSH-3.1>:<MSH-10>`. The sending
/// application is included because a hospital's HIS and LIS number their messages
/// independently.
pub fn idempotency_key(message: &Message) -> String {
    format!(
        "hl7:{}:{}:{}",
        message.sending_facility().unwrap_or_default(),
        message.sending_application().unwrap_or_default(),
        message.control_id()
    )
}

/// Map a message to a FHIR R4 `transaction` Bundle. The Patient is written with a
/// conditional PUT on its medical record number; see the crate docs for the other entries.
/// Entry `fullUrl`s are `urn:uuid:`s derived from the message, so the same message always
/// gives the same Bundle.
pub fn to_fhir_bundle(message: &Message, ctx: &MappingContext) -> Result<Value, MapError> {
    let kind = classify(message)?;
    let mut mapper = Mapper {
        message,
        ctx,
        seed: idempotency_key(message),
        entries: Vec::new(),
    };
    let pid = mapper.required_segment("PID")?;
    let patient = mapper.patient(pid)?;
    match kind {
        Kind::Adt(event) => mapper.encounter(event, &patient)?,
        Kind::Order => mapper.orders(&patient)?,
        Kind::Result => mapper.results(&patient)?,
    }
    Ok(json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": mapper.entries,
    }))
}

/// Parse and map in one step, reporting either failure as the [`Issue`] to acknowledge.
pub fn translate(input: &str, ctx: &MappingContext) -> Result<Value, Issue> {
    let message = crate::parse(input).map_err(|e| e.issue())?;
    to_fhir_bundle(&message, ctx).map_err(|e| e.issue())
}

struct Mapper<'a> {
    message: &'a Message,
    ctx: &'a MappingContext,
    seed: String,
    entries: Vec<Value>,
}

/// An OBR with the ORC before it and its index among the message's segments.
#[derive(Clone, Copy)]
struct OrderGroup<'a> {
    orc: Option<&'a Segment>,
    index: usize,
    obr: &'a Segment,
}

/// The Patient entry's fullUrl, for references.
struct PatientRef(String);

impl PatientRef {
    fn reference(&self) -> Value {
        json!({ "reference": self.0 })
    }
}

impl<'a> Mapper<'a> {
    // ---- helpers -------------------------------------------------------------------------

    /// Component `c` of the first repetition of `field`, with HL7's `""` (explicit null)
    /// read as empty.
    fn value(&self, seg: &'a Segment, field: usize, c: usize) -> Option<String> {
        let v = self.message.field(seg, field).component(c)?;
        not_null(v)
    }

    fn required(&self, seg: &'a Segment, field: usize, what: &str) -> Result<String, MapError> {
        self.value(seg, field, 1).ok_or_else(|| {
            MapError::new(
                MapErrorKind::MissingField,
                Some(seg.location(Some(field))),
                format!("{}-{field} ({what}) is required", seg.id()),
            )
        })
    }

    fn required_segment(&self, id: &str) -> Result<&'a Segment, MapError> {
        self.message.segment(id).ok_or_else(|| {
            MapError::new(
                MapErrorKind::Structure,
                Some(Location::segment(id, 1)),
                format!("the message has no {id} segment"),
            )
        })
    }

    fn timestamp(&self, seg: &'a Segment, field: usize) -> Result<Option<Timestamp>, MapError> {
        let Some(raw) = self.value(seg, field, 1) else {
            return Ok(None);
        };
        Timestamp::parse(raw.trim()).map(Some).map_err(|e| {
            MapError::new(
                MapErrorKind::BadValue,
                Some(seg.location(Some(field))),
                format!("{}-{field}: {e}", seg.id()),
            )
        })
    }

    fn datetime(&self, seg: &'a Segment, field: usize) -> Result<Option<String>, MapError> {
        Ok(self.timestamp(seg, field)?.map(|t| t.to_fhir_datetime()))
    }

    fn full_url(&self, index: usize) -> String {
        format!("urn:uuid:{}", name_uuid(&self.seed, index))
    }

    /// Append an entry; returns its fullUrl.
    fn push(&mut self, resource: Value, method: &str, url: String) -> String {
        let full_url = self.full_url(self.entries.len());
        self.entries.push(json!({
            "fullUrl": full_url,
            "resource": resource,
            "request": { "method": method, "url": url },
        }));
        full_url
    }

    /// A CodeableConcept from a CE/CWE/CNE repetition: identifier^text^system and the
    /// alternate triple, CWE-9 original text.
    fn codeable_concept(&self, rep: Repetition<'_>) -> Option<Value> {
        let get = |n: usize| rep.component(n).and_then(not_null);
        let mut codings = Vec::new();
        for (code, display, system) in [(1, 2, 3), (4, 5, 6)] {
            if let Some(code) = get(code) {
                let mut coding = Map::new();
                coding.insert(
                    "system".into(),
                    code_system(self.ctx, get(system).as_deref()).into(),
                );
                coding.insert("code".into(), code.into());
                if let Some(display) = get(display) {
                    coding.insert("display".into(), display.into());
                }
                codings.push(Value::Object(coding));
            }
        }
        let text = get(9).or_else(|| get(2)).or_else(|| get(5));
        if codings.is_empty() && text.is_none() {
            return None;
        }
        let mut cc = Map::new();
        if !codings.is_empty() {
            cc.insert("coding".into(), codings.into());
        }
        if let Some(text) = text {
            cc.insert("text".into(), text.into());
        }
        Some(Value::Object(cc))
    }

    fn required_code(&self, seg: &'a Segment, field: usize, what: &str) -> Result<Value, MapError> {
        let rep = self.message.field(seg, field).first();
        self.codeable_concept(rep).ok_or_else(|| {
            MapError::new(
                MapErrorKind::MissingField,
                Some(seg.location(Some(field))),
                format!("{}-{field} ({what}) is required", seg.id()),
            )
        })
    }

    /// NTE-3 of the NTE segments right after `index`, as FHIR annotations.
    fn notes_after(&self, index: usize) -> Vec<Value> {
        self.message.segments()[index + 1..]
            .iter()
            .take_while(|s| s.id() == "NTE")
            .filter_map(|nte| {
                let text: Vec<String> = self
                    .message
                    .field(nte, 3)
                    .repetitions()
                    .map(|r| r.text(" "))
                    .collect();
                let text = text.join("\n");
                (!text.trim().is_empty()).then(|| json!({ "text": text }))
            })
            .collect()
    }

    // ---- Patient ---------------------------------------------------------------------------

    fn patient(&mut self, pid: &'a Segment) -> Result<PatientRef, MapError> {
        let ctx = self.ctx;
        let pid3 = self.message.field(pid, 3);
        if pid3.is_empty() {
            return Err(MapError::new(
                MapErrorKind::MissingField,
                Some(pid.location(Some(3))),
                "PID-3 (patient identifier list) is required",
            ));
        }
        let mut identifiers = Vec::new();
        let mut mrn: Option<String> = None;
        for (r, rep) in pid3.repetitions().enumerate() {
            let Some(value) = rep.component(1).and_then(not_null) else {
                continue;
            };
            let value = value.trim().to_owned();
            let type_code = rep
                .component(5)
                .and_then(not_null)
                .unwrap_or_default()
                .to_ascii_uppercase();
            let at = || pid.location(Some(3)).repetition(r + 1).component(1);
            let identifier = match type_code.as_str() {
                "" | "MR" | "MRN" | "PI" => {
                    mrn.get_or_insert_with(|| value.clone());
                    json!({
                        "use": "usual",
                        "type": { "coding": [{ "system": V2_0203, "code": "MR" }] },
                        "system": ctx.mrn_system(),
                        "value": value,
                    })
                }
                "CCCD" | "NNID" | "NI" | "NN" | "NNVNM" => {
                    let digits: String = value.chars().filter(|c| !c.is_whitespace()).collect();
                    if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(MapError::new(
                            MapErrorKind::BadValue,
                            Some(at()),
                            format!("PID-3: citizen ID (CCCD) {value:?} is not 12 digits"),
                        ));
                    }
                    json!({ "use": "official", "system": CCCD_SYSTEM, "value": digits })
                }
                "BHYT" | "BHXH" | "HC" | "SB" => {
                    let number = bhxh_number(&value).ok_or_else(|| {
                        MapError::new(
                            MapErrorKind::BadValue,
                            Some(at()),
                            format!(
                                "PID-3: social-insurance number {value:?} is neither 10 digits \
                                 nor a 15-character BHYT card number"
                            ),
                        )
                    })?;
                    json!({ "use": "official", "system": BHXH_SYSTEM, "value": number })
                }
                other => json!({
                    "type": { "coding": [{ "system": V2_0203, "code": other }] },
                    "system": ctx.local_system(&format!("id:{}", uri_part(other))),
                    "value": value,
                }),
            };
            if !identifiers.contains(&identifier) {
                identifiers.push(identifier);
            }
        }
        let Some(mrn) = mrn else {
            return Err(MapError::new(
                MapErrorKind::MissingField,
                Some(pid.location(Some(3))),
                "PID-3 has no medical record number (identifier type MR, PI or none)",
            ));
        };

        let mut patient = Map::new();
        patient.insert("resourceType".into(), "Patient".into());
        patient.insert("identifier".into(), identifiers.into());

        let names: Vec<Value> = self
            .message
            .field(pid, 5)
            .repetitions()
            .filter_map(|rep| human_name(rep))
            .collect();
        if names.is_empty() {
            return Err(MapError::new(
                MapErrorKind::MissingField,
                Some(pid.location(Some(5))),
                "PID-5 (patient name) is required",
            ));
        }
        patient.insert("name".into(), names.into());

        if let Some(gender) = self.value(pid, 8, 1) {
            let gender = match gender.to_ascii_uppercase().as_str() {
                "M" => "male",
                "F" => "female",
                "O" | "A" => "other",
                "U" | "N" => "unknown",
                _ => {
                    return Err(MapError::new(
                        MapErrorKind::UnknownCode,
                        Some(pid.location(Some(8))),
                        format!("PID-8: sex {gender:?} is not one of M, F, O, U, A, N"),
                    ));
                }
            };
            patient.insert("gender".into(), gender.into());
        }
        if let Some(birth) = self.timestamp(pid, 7)? {
            patient.insert("birthDate".into(), birth.to_fhir_date().into());
        }

        let addresses: Vec<Value> = self
            .message
            .field(pid, 11)
            .repetitions()
            .filter_map(address)
            .collect();
        if !addresses.is_empty() {
            patient.insert("address".into(), addresses.into());
        }
        let mut telecom: Vec<Value> = Vec::new();
        for (field, work) in [(13, false), (14, true)] {
            for rep in self.message.field(pid, field).repetitions() {
                if let Some(t) = contact_point(rep, work)
                    && !telecom.contains(&t)
                {
                    telecom.push(t);
                }
            }
        }
        if !telecom.is_empty() {
            patient.insert("telecom".into(), telecom.into());
        }
        if let Some(died) = self.datetime(pid, 29)? {
            patient.insert("deceasedDateTime".into(), died.into());
        } else if let Some(flag) = self.value(pid, 30, 1) {
            match flag.as_str() {
                "Y" => patient.insert("deceasedBoolean".into(), true.into()),
                "N" => patient.insert("deceasedBoolean".into(), false.into()),
                _ => None,
            };
        }

        let url = format!(
            "Patient?identifier={}|{}",
            query_escape(&ctx.mrn_system()),
            query_escape(&mrn)
        );
        let full_url = self.push(Value::Object(patient), "PUT", url);
        Ok(PatientRef(full_url))
    }

    // ---- Encounter (ADT) ---------------------------------------------------------------------

    fn encounter(&mut self, event: Adt, patient: &PatientRef) -> Result<(), MapError> {
        let pv1 = match (self.message.segment("PV1"), event) {
            (Some(pv1), _) => pv1,
            // A demographics update may come without a visit.
            (None, Adt::Update) => return Ok(()),
            (None, _) => return self.required_segment("PV1").map(|_| ()),
        };
        let Some(class) = self.value(pv1, 2, 1) else {
            if event == Adt::Update {
                return Ok(());
            }
            return self.required(pv1, 2, "patient class").map(|_| ());
        };
        let (code, display) = match class.to_ascii_uppercase().as_str() {
            "I" | "B" => ("IMP", "inpatient encounter"),
            "O" | "R" => ("AMB", "ambulatory"),
            "E" => ("EMER", "emergency"),
            "P" => ("PRENC", "pre-admission"),
            // "Not applicable": no visit to record.
            "N" => return Ok(()),
            _ => {
                return Err(MapError::new(
                    MapErrorKind::UnknownCode,
                    Some(pv1.location(Some(2))),
                    format!("PV1-2: patient class {class:?} is not one of I, O, E, P, R, B, N"),
                ));
            }
        };
        let visit = self.value(pv1, 19, 1);
        // Updates and discharges must name the visit they change.
        if visit.is_none() && matches!(event, Adt::Update | Adt::Discharge) {
            if event == Adt::Update {
                return Ok(());
            }
            return self.required(pv1, 19, "visit number").map(|_| ());
        }
        let start = self.datetime(pv1, 44)?;
        let mut end = self.datetime(pv1, 45)?;
        if end.is_none()
            && event == Adt::Discharge
            && let Some(evn) = self.message.segment("EVN")
        {
            end = match self.datetime(evn, 6)? {
                Some(t) => Some(t),
                None => self.datetime(evn, 2)?,
            };
        }
        let status = match event {
            Adt::Discharge => "finished",
            _ if end.is_some() => "finished",
            _ => "in-progress",
        };

        let mut encounter = Map::new();
        encounter.insert("resourceType".into(), "Encounter".into());
        let visit_system = self.ctx.local_system("visit");
        if let Some(visit) = &visit {
            encounter.insert(
                "identifier".into(),
                json!([{ "use": "official", "system": visit_system, "value": visit }]),
            );
        }
        encounter.insert("status".into(), status.into());
        encounter.insert(
            "class".into(),
            json!({ "system": ACT_CODE, "code": code, "display": display }),
        );
        encounter.insert("subject".into(), patient.reference());
        let mut period = Map::new();
        if let Some(start) = start {
            period.insert("start".into(), start.into());
        }
        if let Some(end) = end {
            period.insert("end".into(), end.into());
        }
        if !period.is_empty() {
            encounter.insert("period".into(), Value::Object(period));
        }
        if let Some(pv2) = self.message.segment("PV2")
            && let Some(reason) = self.codeable_concept(self.message.field(pv2, 3).first())
        {
            encounter.insert("reasonCode".into(), json!([reason]));
        }
        let (method, url) = match &visit {
            Some(visit) => (
                "PUT",
                format!(
                    "Encounter?identifier={}|{}",
                    query_escape(&visit_system),
                    query_escape(visit)
                ),
            ),
            None => ("POST", "Encounter".to_owned()),
        };
        self.push(Value::Object(encounter), method, url);
        Ok(())
    }

    // ---- ServiceRequest (ORM^O01, OML^O21) -----------------------------------------------------

    /// Order numbers (placer, filler) from ORC-2/3, else OBR-2/3.
    fn order_numbers(
        &self,
        orc: Option<&'a Segment>,
        obr: &'a Segment,
    ) -> (Option<String>, Option<String>) {
        let pick = |field: usize| {
            orc.and_then(|orc| self.value(orc, field, 1))
                .or_else(|| self.value(obr, field, 1))
        };
        (pick(2), pick(3))
    }

    fn order_identifiers(&self, placer: &Option<String>, filler: &Option<String>) -> Vec<Value> {
        let mut out = Vec::new();
        for (number, what, code) in [
            (placer, "placer-order", "PLAC"),
            (filler, "filler-order", "FILL"),
        ] {
            if let Some(number) = number {
                out.push(json!({
                    "type": { "coding": [{ "system": V2_0203, "code": code }] },
                    "system": self.ctx.local_system(what),
                    "value": number,
                }));
            }
        }
        out
    }

    /// The OBR segments with their ORC, index in the message, in order.
    fn order_groups(&self) -> Result<Vec<OrderGroup<'a>>, MapError> {
        let mut groups = Vec::new();
        let mut orc: Option<&'a Segment> = None;
        for (i, seg) in self.message.segments().iter().enumerate() {
            match seg.id() {
                "ORC" => {
                    if let Some(pending) = orc {
                        return Err(orphan_orc(pending));
                    }
                    orc = Some(seg);
                }
                "OBR" => groups.push(OrderGroup {
                    orc: orc.take(),
                    index: i,
                    obr: seg,
                }),
                _ => {}
            }
        }
        if let Some(pending) = orc {
            return Err(orphan_orc(pending));
        }
        if groups.is_empty() {
            return Err(MapError::new(
                MapErrorKind::Structure,
                Some(Location::segment("OBR", 1)),
                "the message has no OBR segment",
            ));
        }
        Ok(groups)
    }

    fn orders(&mut self, patient: &PatientRef) -> Result<(), MapError> {
        for OrderGroup { orc, index, obr } in self.order_groups()? {
            let (placer, filler) = self.order_numbers(orc, obr);
            if placer.is_none() && filler.is_none() {
                let at = orc.unwrap_or(obr);
                return Err(MapError::new(
                    MapErrorKind::MissingField,
                    Some(at.location(Some(2))),
                    format!("{}-2 (placer order number) is required", at.id()),
                ));
            }
            let status = match orc {
                Some(orc) => self.order_status(orc)?,
                None => "active",
            };
            let code = self.required_code(obr, 4, "universal service identifier")?;
            let mut request = Map::new();
            request.insert("resourceType".into(), "ServiceRequest".into());
            request.insert(
                "identifier".into(),
                self.order_identifiers(&placer, &filler).into(),
            );
            request.insert("status".into(), status.into());
            request.insert("intent".into(), "order".into());
            let priority = self
                .value(obr, 27, 6)
                .or_else(|| orc.and_then(|orc| self.value(orc, 7, 6)));
            if let Some(priority) = priority.as_deref().and_then(order_priority) {
                request.insert("priority".into(), priority.into());
            }
            request.insert("code".into(), code);
            request.insert("subject".into(), patient.reference());
            if let Some(orc) = orc
                && let Some(authored) = self.datetime(orc, 9)?
            {
                request.insert("authoredOn".into(), authored.into());
            }
            let requester = orc
                .map(|orc| self.message.field(orc, 12).first())
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| self.message.field(obr, 16).first());
            if let Some(requester) = self.practitioner(requester) {
                request.insert("requester".into(), requester);
            }
            let reasons: Vec<Value> = self
                .message
                .field(obr, 31)
                .repetitions()
                .filter_map(|r| self.codeable_concept(r))
                .collect();
            if !reasons.is_empty() {
                request.insert("reasonCode".into(), reasons.into());
            }
            let notes = self.notes_after(index);
            if !notes.is_empty() {
                request.insert("note".into(), notes.into());
            }
            // Later messages about the same order (change, cancel) update it.
            let (method, url) = match &placer {
                Some(placer) => (
                    "PUT",
                    format!(
                        "ServiceRequest?identifier={}|{}",
                        query_escape(&self.ctx.local_system("placer-order")),
                        query_escape(placer)
                    ),
                ),
                None => ("POST", "ServiceRequest".to_owned()),
            };
            self.push(Value::Object(request), method, url);
        }
        Ok(())
    }

    /// ORC-5 (order status) when sent, else ORC-1 (order control).
    fn order_status(&self, orc: &'a Segment) -> Result<&'static str, MapError> {
        if let Some(status) = self.value(orc, 5, 1) {
            let mapped = match status.as_str() {
                "CM" => Some("completed"),
                "CA" | "DC" => Some("revoked"),
                "HD" => Some("on-hold"),
                "IP" | "SC" | "A" => Some("active"),
                _ => None,
            };
            if let Some(mapped) = mapped {
                return Ok(mapped);
            }
        }
        let control = self.required(orc, 1, "order control")?;
        match control.as_str() {
            "NW" | "XO" | "XX" | "SC" | "RL" | "SN" => Ok("active"),
            "CA" | "OC" | "DC" | "OD" | "CR" | "DR" => Ok("revoked"),
            "HD" | "OH" => Ok("on-hold"),
            _ => Err(MapError::new(
                MapErrorKind::UnknownCode,
                Some(orc.location(Some(1))),
                format!(
                    "ORC-1: order control {control:?} is not supported (NW, XO, SC, CA, DC, HD...)"
                ),
            )),
        }
    }

    /// A practitioner reference by display name and hospital-local id (XCN): the record
    /// store has no Practitioner for HIS staff, so it is not a literal reference.
    fn practitioner(&self, xcn: Repetition<'_>) -> Option<Value> {
        let get = |n: usize| xcn.component(n).and_then(not_null);
        let name: Vec<String> = [get(6), get(2), get(4), get(3)]
            .into_iter()
            .flatten()
            .collect();
        let mut reference = Map::new();
        if let Some(id) = get(1) {
            reference.insert(
                "identifier".into(),
                json!({ "system": self.ctx.local_system("practitioner"), "value": id }),
            );
        }
        if !name.is_empty() {
            reference.insert("display".into(), name.join(" ").into());
        }
        (!reference.is_empty()).then_some(Value::Object(reference))
    }

    // ---- Observation and DiagnosticReport (ORU^R01) ---------------------------------------------

    fn results(&mut self, patient: &PatientRef) -> Result<(), MapError> {
        let groups = self.order_groups()?;
        let segments = self.message.segments();
        // OBX must follow an OBR.
        if let Some(first_obr) = groups.first().map(|g| g.index)
            && let Some(stray) = segments[..first_obr].iter().find(|s| s.id() == "OBX")
        {
            return Err(MapError::new(
                MapErrorKind::Structure,
                Some(stray.location(None)),
                "OBX before any OBR: results must follow their OBR",
            ));
        }
        let mut reports = Vec::new();
        for (g, &OrderGroup { orc, index, obr }) in groups.iter().enumerate() {
            let end = groups.get(g + 1).map_or(segments.len(), |next| next.index);
            let mut results = Vec::new();
            let mut statuses = Vec::new();
            for (i, seg) in segments.iter().enumerate().take(end).skip(index + 1) {
                if seg.id() == "OBX" {
                    let (observation, status) = self.observation(seg, i, obr, patient)?;
                    statuses.push(status);
                    let url = self.push(observation, "POST", "Observation".into());
                    results.push(json!({ "reference": url }));
                }
            }
            reports.push((orc, obr, results, statuses));
        }
        for (orc, obr, results, statuses) in reports {
            let report = self.diagnostic_report(orc, obr, results, &statuses, patient)?;
            self.push_report(report, orc, obr);
        }
        Ok(())
    }

    fn push_report(&mut self, report: Value, orc: Option<&'a Segment>, obr: &'a Segment) {
        // A corrected report replaces the earlier one with the same filler order number.
        let (_, filler) = self.order_numbers(orc, obr);
        let (method, url) = match filler {
            Some(filler) => (
                "PUT",
                format!(
                    "DiagnosticReport?identifier={}|{}",
                    query_escape(&self.ctx.local_system("filler-order")),
                    query_escape(&filler)
                ),
            ),
            None => ("POST", "DiagnosticReport".to_owned()),
        };
        self.push(report, method, url);
    }

    fn observation(
        &self,
        obx: &'a Segment,
        index: usize,
        obr: &'a Segment,
        patient: &PatientRef,
    ) -> Result<(Value, &'static str), MapError> {
        let status_code = self.required(obx, 11, "observation result status")?;
        let status = match status_code.as_str() {
            "F" | "U" => "final",
            "C" => "corrected",
            "P" | "R" | "S" => "preliminary",
            "I" => "registered",
            "X" => "cancelled",
            "D" | "W" => "entered-in-error",
            "A" => "amended",
            _ => {
                return Err(MapError::new(
                    MapErrorKind::UnknownCode,
                    Some(obx.location(Some(11))),
                    format!(
                        "OBX-11: result status {status_code:?} is not one of F, C, P, R, S, I, X, D, W, A, U"
                    ),
                ));
            }
        };
        let code = self.required_code(obx, 3, "observation identifier")?;
        let mut obs = Map::new();
        obs.insert("resourceType".into(), "Observation".into());
        obs.insert("status".into(), status.into());
        obs.insert(
            "category".into(),
            json!([{ "coding": [{ "system": OBS_CATEGORY, "code": "laboratory", "display": "Laboratory" }] }]),
        );
        obs.insert("code".into(), code);
        obs.insert("subject".into(), patient.reference());
        let effective = match self.datetime(obx, 14)? {
            Some(t) => Some(t),
            None => self.datetime(obr, 7)?,
        };
        if let Some(effective) = effective {
            obs.insert("effectiveDateTime".into(), effective.into());
        }
        let unit = self.unit(obx);
        if let Some((key, value)) = self.observation_value(obx, &unit)? {
            obs.insert(key.into(), value);
        }
        if let Some(range) = self.value(obx, 7, 1) {
            obs.insert(
                "referenceRange".into(),
                json!([reference_range(&range, &unit)]),
            );
        }
        let flags: Vec<Value> = self
            .message
            .field(obx, 8)
            .repetitions()
            .filter_map(|r| r.component(1).and_then(not_null))
            .map(|flag| {
                let system = if INTERPRETATION_CODES.contains(&flag.as_str()) {
                    INTERPRETATION.to_owned()
                } else {
                    "http://terminology.hl7.org/CodeSystem/v2-0078".to_owned()
                };
                json!({ "coding": [{ "system": system, "code": flag }] })
            })
            .collect();
        if !flags.is_empty() {
            obs.insert("interpretation".into(), flags.into());
        }
        let notes = self.notes_after(index);
        if !notes.is_empty() {
            obs.insert("note".into(), notes.into());
        }
        Ok((Value::Object(obs), status))
    }

    /// OBX-6 as a FHIR Quantity's unit fields.
    fn unit(&self, obx: &'a Segment) -> Map<String, Value> {
        let mut unit = Map::new();
        let code = self.value(obx, 6, 1);
        let text = self.value(obx, 6, 2);
        let system = self.value(obx, 6, 3);
        if let Some(u) = text.clone().or_else(|| code.clone()) {
            unit.insert("unit".into(), u.into());
        }
        if let (Some(code), Some(system)) = (code, system)
            && matches!(system.to_ascii_uppercase().as_str(), "UCUM" | "ANS+")
        {
            unit.insert("system".into(), UCUM.into());
            unit.insert("code".into(), code.into());
        }
        unit
    }

    /// OBX-5 typed by OBX-2, as `(value[x] element name, value)`.
    fn observation_value(
        &self,
        obx: &'a Segment,
        unit: &Map<String, Value>,
    ) -> Result<Option<(&'static str, Value)>, MapError> {
        let field = self.message.field(obx, 5);
        let first = field.first();
        if field.is_empty() || first.component(1).as_deref() == Some("\"\"") {
            return Ok(None);
        }
        let value_type = self
            .value(obx, 2, 1)
            .ok_or_else(|| {
                MapError::new(
                    MapErrorKind::MissingField,
                    Some(obx.location(Some(2))),
                    "OBX-2 (value type) is required when OBX-5 has a value",
                )
            })?
            .to_ascii_uppercase();
        let bad = |what: String| {
            MapError::new(
                MapErrorKind::BadValue,
                Some(obx.location(Some(5))),
                format!("OBX-5: {what}"),
            )
        };
        let value = match value_type.as_str() {
            "NM" => {
                let raw = first.component(1).unwrap_or_default();
                let number = decimal(raw.trim())
                    .ok_or_else(|| bad(format!("{raw:?} is not a number (OBX-2 is NM)")))?;
                ("valueQuantity", quantity(number, unit))
            }
            "SN" => {
                let get = |n: usize| first.component(n).map(Cow::into_owned);
                let comparator = get(1).unwrap_or_default();
                let n1 = get(2).as_deref().and_then(decimal);
                let separator = get(3).unwrap_or_default();
                let n2 = get(4).as_deref().and_then(decimal);
                structured_numeric(&comparator, n1, &separator, n2, unit).ok_or_else(|| {
                    bad(format!(
                        "{:?} is not a structured numeric value",
                        first.raw()
                    ))
                })?
            }
            "ST" | "TX" | "FT" => {
                let joiner = self.message.separators().component.to_string();
                let text: Vec<String> = field.repetitions().map(|r| r.text(&joiner)).collect();
                ("valueString", text.join("\n").into())
            }
            "CE" | "CWE" | "CNE" => {
                let cc = self
                    .codeable_concept(first)
                    .ok_or_else(|| bad("a coded value needs a code or a text".into()))?;
                ("valueCodeableConcept", cc)
            }
            "DT" | "TS" | "DTM" => {
                let raw = first.component(1).unwrap_or_default();
                let ts = Timestamp::parse(raw.trim()).map_err(|e| bad(e.to_string()))?;
                ("valueDateTime", ts.to_fhir_datetime().into())
            }
            "TM" => {
                let raw = first.component(1).unwrap_or_default();
                let time = hl7_time(raw.trim())
                    .ok_or_else(|| bad(format!("{raw:?} is not a time HHMM[SS]")))?;
                ("valueTime", time.into())
            }
            other => {
                return Err(MapError::new(
                    MapErrorKind::UnknownCode,
                    Some(obx.location(Some(2))),
                    format!(
                        "OBX-2: value type {other} is not supported (NM, SN, ST, TX, FT, CE, CWE, CNE, DT, TS, DTM, TM)"
                    ),
                ));
            }
        };
        Ok(Some(value))
    }

    fn diagnostic_report(
        &self,
        orc: Option<&'a Segment>,
        obr: &'a Segment,
        results: Vec<Value>,
        statuses: &[&str],
        patient: &PatientRef,
    ) -> Result<Value, MapError> {
        let status = match self.value(obr, 25, 1) {
            Some(code) => match code.as_str() {
                "O" | "I" | "S" => "registered",
                "A" | "R" => "partial",
                "P" => "preliminary",
                "C" => "corrected",
                "F" => "final",
                "X" => "cancelled",
                _ => {
                    return Err(MapError::new(
                        MapErrorKind::UnknownCode,
                        Some(obr.location(Some(25))),
                        format!(
                            "OBR-25: result status {code:?} is not one of O, I, S, A, R, P, C, F, X"
                        ),
                    ));
                }
            },
            // Not sent: summarize the results.
            None if statuses.is_empty() => "registered",
            None if statuses.iter().all(|s| *s == "final") => "final",
            None if statuses.iter().all(|s| matches!(*s, "final" | "corrected")) => "corrected",
            None => "preliminary",
        };
        let code = self.required_code(obr, 4, "universal service identifier")?;
        let (placer, filler) = self.order_numbers(orc, obr);
        let mut report = Map::new();
        report.insert("resourceType".into(), "DiagnosticReport".into());
        let identifiers = self.order_identifiers(&placer, &filler);
        if !identifiers.is_empty() {
            report.insert("identifier".into(), identifiers.into());
        }
        report.insert("status".into(), status.into());
        let section = self.value(obr, 24, 1).unwrap_or_else(|| "LAB".into());
        report.insert(
            "category".into(),
            json!([{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": section }] }]),
        );
        report.insert("code".into(), code);
        report.insert("subject".into(), patient.reference());
        if let Some(effective) = self.datetime(obr, 7)? {
            report.insert("effectiveDateTime".into(), effective.into());
        }
        if let Some(issued) = self.timestamp(obr, 22)?.and_then(|t| t.to_fhir_instant()) {
            report.insert("issued".into(), issued.into());
        }
        if !results.is_empty() {
            report.insert("result".into(), results.into());
        }
        Ok(Value::Object(report))
    }
}

fn orphan_orc(orc: &Segment) -> MapError {
    MapError::new(
        MapErrorKind::Structure,
        Some(orc.location(None)),
        format!(
            "ORC {} is not followed by an OBR (only OBR orders are supported)",
            orc.sequence()
        ),
    )
}

/// v2 table 0078 codes that v3 ObservationInterpretation has with the same meaning.
const INTERPRETATION_CODES: &[&str] = &[
    "L", "H", "LL", "HH", "<", ">", "N", "A", "AA", "U", "D", "B", "W", "S", "R", "I", "NEG",
    "POS", "IND", "DET", "ND", "HU", "LU",
];

/// `""` is HL7's explicit null; read it as absent.
fn not_null(v: Cow<'_, str>) -> Option<String> {
    let v = v.trim();
    (!v.is_empty() && v != "\"\"").then(|| v.to_owned())
}

/// A coding system name from CE-3/CWE-3 to a FHIR system URI.
fn code_system(ctx: &MappingContext, name: Option<&str>) -> String {
    let Some(name) = name else {
        return ctx.local_system("code");
    };
    let upper = name.to_ascii_uppercase();
    match upper.as_str() {
        "LN" | "LOINC" => "http://loinc.org".into(),
        "SCT" | "SNOMED" | "SNOMEDCT" => "http://snomed.info/sct".into(),
        "I10" | "ICD10" | "ICD-10" => "http://hl7.org/fhir/sid/icd-10".into(),
        "UCUM" => UCUM.into(),
        _ => match upper.strip_prefix("HL7") {
            Some(table) if table.len() == 4 && table.bytes().all(|b| b.is_ascii_digit()) => {
                format!("http://terminology.hl7.org/CodeSystem/v2-{table}")
            }
            _ => ctx.local_system(&format!("code:{}", uri_part(name))),
        },
    }
}

/// Keep a name usable inside a URN: letters, digits, `-`, `.` and `_`; others become `-`.
fn uri_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Percent-encode a search parameter value (system or code) for a conditional URL.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The 10-digit BHXH number: as is, or the last 10 digits of a 15-character BHYT card
/// number (2 letters, 1 digit, 2-digit province code, then the BHXH number).
fn bhxh_number(value: &str) -> Option<String> {
    let v: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if v.len() == 10 && digits(&v) {
        return Some(v);
    }
    let b = v.as_bytes();
    (v.len() == 15 && b[..2].iter().all(u8::is_ascii_alphabetic) && digits(&v[2..]))
        .then(|| v[5..].to_owned())
}

/// XPN → HumanName. Vietnamese order: family name first, then middle (XPN-3) and given
/// name (XPN-2); given names are split into words so FHIR's `given` keeps that order.
fn human_name(rep: Repetition<'_>) -> Option<Value> {
    let get = |n: usize| rep.component(n).and_then(not_null);
    let family = get(1);
    let mut given: Vec<String> = Vec::new();
    for part in [get(3), get(2)].into_iter().flatten() {
        given.extend(part.split_whitespace().map(str::to_owned));
    }
    if family.is_none() && given.is_empty() {
        return None;
    }
    let mut name = Map::new();
    let usage = match get(7).as_deref() {
        None | Some("L") => Some("official"),
        Some("D") => Some("usual"),
        Some("M") => Some("maiden"),
        Some("N") => Some("nickname"),
        Some("A") => Some("anonymous"),
        _ => None,
    };
    if let Some(usage) = usage {
        name.insert("use".into(), usage.into());
    }
    let text: Vec<&str> = family
        .iter()
        .map(String::as_str)
        .chain(given.iter().map(String::as_str))
        .collect();
    name.insert("text".into(), text.join(" ").into());
    if let Some(family) = family {
        name.insert("family".into(), family.into());
    }
    if !given.is_empty() {
        name.insert("given".into(), given.into());
    }
    if let Some(prefix) = get(5) {
        name.insert("prefix".into(), json!([prefix]));
    }
    if let Some(suffix) = get(4) {
        name.insert("suffix".into(), json!([suffix]));
    }
    Some(Value::Object(name))
}

/// XAD → Address. Vietnamese use: XAD-1 house and street, XAD-2 ward (phường/xã), XAD-9
/// district (quận/huyện), XAD-3 city, XAD-4 province.
fn address(rep: Repetition<'_>) -> Option<Value> {
    let get = |n: usize| rep.component(n).and_then(not_null);
    let lines: Vec<String> = [get(1), get(2)].into_iter().flatten().collect();
    let (district, city, state, zip, country) = (get(9), get(3), get(4), get(5), get(6));
    let text: Vec<&String> = lines
        .iter()
        .chain(district.iter())
        .chain(city.iter())
        .chain(state.iter())
        .collect();
    if text.is_empty() && zip.is_none() && country.is_none() {
        return None;
    }
    let mut address = Map::new();
    let usage = match get(7).as_deref() {
        Some("H") => Some("home"),
        Some("B" | "O") => Some("work"),
        Some("C") => Some("temp"),
        Some("BA" | "BI") => Some("old"),
        _ => None,
    };
    if let Some(usage) = usage {
        address.insert("use".into(), usage.into());
    }
    if !text.is_empty() {
        let joined: Vec<&str> = text.iter().map(|s| s.as_str()).collect();
        address.insert("text".into(), joined.join(", ").into());
    }
    if !lines.is_empty() {
        address.insert("line".into(), lines.into());
    }
    for (key, value) in [
        ("district", district),
        ("city", city),
        ("state", state),
        ("postalCode", zip),
        ("country", country),
    ] {
        if let Some(value) = value {
            address.insert(key.into(), value.into());
        }
    }
    Some(Value::Object(address))
}

/// XTN → ContactPoint (phone, fax, pager or email).
fn contact_point(rep: Repetition<'_>, work: bool) -> Option<Value> {
    let get = |n: usize| rep.component(n).and_then(not_null);
    let equipment = get(3).unwrap_or_default().to_ascii_uppercase();
    let use_code = get(2).unwrap_or_default().to_ascii_uppercase();
    let (system, value) = if equipment == "INTERNET" || equipment == "X.400" || use_code == "NET" {
        ("email", get(4).or_else(|| get(1))?)
    } else {
        let number = get(1).or_else(|| get(12)).or_else(|| {
            let parts: Vec<String> = [get(5).map(|c| format!("+{c}")), get(6), get(7)]
                .into_iter()
                .flatten()
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })?;
        let system = match equipment.as_str() {
            "FX" => "fax",
            "BP" => "pager",
            _ => "phone",
        };
        (system, number)
    };
    let usage = if equipment == "CP" {
        "mobile"
    } else if work || use_code == "WPN" {
        "work"
    } else {
        "home"
    };
    Some(json!({ "system": system, "value": value, "use": usage }))
}

/// An HL7 NM value as a JSON number: optional sign, digits, optional decimals.
fn decimal(raw: &str) -> Option<serde_json::Number> {
    let unsigned = raw.strip_prefix(['+', '-']).unwrap_or(raw);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.len() + frac.len() == 0 || !digits(int) || !digits(frac) {
        return None;
    }
    let negative = raw.starts_with('-');
    if frac.is_empty() && !unsigned.contains('.') {
        let n: i64 = int.parse().ok()?;
        return Some(if negative { -n } else { n }.into());
    }
    let n: f64 = format!("{}{}.{}", if negative { "-" } else { "" }, int, frac)
        .trim_end_matches('.')
        .parse()
        .ok()
        .or_else(|| format!("0.{frac}").parse().ok())?;
    serde_json::Number::from_f64(n)
}

fn quantity(value: serde_json::Number, unit: &Map<String, Value>) -> Value {
    let mut q = unit.clone();
    q.insert("value".into(), Value::Number(value));
    Value::Object(q)
}

/// SN (comparator^num1^separator^num2) → valueQuantity, valueRange or valueRatio.
fn structured_numeric(
    comparator: &str,
    n1: Option<serde_json::Number>,
    separator: &str,
    n2: Option<serde_json::Number>,
    unit: &Map<String, Value>,
) -> Option<(&'static str, Value)> {
    match (separator, n1, n2) {
        ("", Some(n), None) => {
            let mut q = quantity(n, unit);
            match comparator {
                "" | "=" => {}
                "<" | ">" | "<=" | ">=" => {
                    q["comparator"] = comparator.into();
                }
                _ => return None,
            }
            Some(("valueQuantity", q))
        }
        ("-", Some(low), Some(high)) if comparator.is_empty() => Some((
            "valueRange",
            json!({ "low": quantity(low, unit), "high": quantity(high, unit) }),
        )),
        (":" | "/", Some(a), Some(b)) if comparator.is_empty() => Some((
            "valueRatio",
            json!({ "numerator": { "value": a }, "denominator": { "value": b } }),
        )),
        _ => None,
    }
}

/// OBX-7: `3.5-5.0`, `<5`, `>=10` → low/high quantities; anything else as text.
fn reference_range(range: &str, unit: &Map<String, Value>) -> Value {
    let r = range.trim();
    for (prefix, key) in [("<=", "high"), (">=", "low"), ("<", "high"), (">", "low")] {
        if let Some(n) = r.strip_prefix(prefix).and_then(|n| decimal(n.trim())) {
            return json!({ key: quantity(n, unit), "text": range });
        }
    }
    for (i, _) in r.match_indices('-').filter(|(i, _)| *i > 0) {
        if let (Some(low), Some(high)) = (decimal(r[..i].trim()), decimal(r[i + 1..].trim())) {
            return json!({ "low": quantity(low, unit), "high": quantity(high, unit), "text": range });
        }
    }
    json!({ "text": range })
}

/// `HHMM[SS]` → `hh:mm:ss`.
fn hl7_time(raw: &str) -> Option<String> {
    if !matches!(raw.len(), 4 | 6) || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let part = |i: usize| raw.get(i..i + 2).and_then(|s| s.parse::<u8>().ok());
    let (h, m, s) = (part(0)?, part(2)?, part(4).unwrap_or(0));
    (h <= 23 && m <= 59 && s <= 59).then(|| format!("{h:02}:{m:02}:{s:02}"))
}

fn order_priority(code: &str) -> Option<&'static str> {
    match code {
        "S" => Some("stat"),
        "A" => Some("asap"),
        "R" => Some("routine"),
        "T" | "P" => Some("urgent"),
        _ => None,
    }
}

/// A name-based UUID (version 8, RFC 9562) from `seed` and `index`: two FNV-1a 64-bit
/// hashes. Only uniqueness within one Bundle and repeatability matter here.
pub fn name_uuid(seed: &str, index: usize) -> String {
    let hash = |basis: u64| {
        let mut h = basis;
        for b in seed.bytes().chain(index.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    };
    let hi = hash(0xcbf2_9ce4_8422_2325);
    let lo = hash(0x6c62_272e_07bb_0142);
    let hi = (hi & !0xf000) | 0x8000; // version 8
    let lo = (lo & !(0b11 << 62)) | (0b10 << 62); // RFC variant
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let n = |s: &str| decimal(s).map(|n| n.to_string());
        assert_eq!(n("140").as_deref(), Some("140"));
        assert_eq!(n("-3").as_deref(), Some("-3"));
        assert_eq!(n("+5.25").as_deref(), Some("5.25"));
        assert_eq!(n(".5").as_deref(), Some("0.5"));
        assert_eq!(n("5.").as_deref(), Some("5.0"));
        for bad in ["", ".", "-", "1e5", "NaN", "inf", "1,5", "1.2.3", "--1"] {
            assert_eq!(decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges() {
        let unit = Map::new();
        assert_eq!(
            reference_range("3.5-5.0", &unit),
            json!({"low": {"value": 3.5}, "high": {"value": 5.0}, "text": "3.5-5.0"})
        );
        assert_eq!(
            reference_range("-1-2", &unit),
            json!({"low": {"value": -1}, "high": {"value": 2}, "text": "-1-2"})
        );
        assert_eq!(
            reference_range("<5", &unit),
            json!({"high": {"value": 5}, "text": "<5"})
        );
        assert_eq!(
            reference_range("âm tính", &unit),
            json!({"text": "âm tính"})
        );
    }

    #[test]
    fn bhxh_numbers() {
        assert_eq!(bhxh_number("0123456789").as_deref(), Some("0123456789"));
        assert_eq!(
            bhxh_number("DN4010123456789").as_deref(),
            Some("0123456789")
        );
        assert_eq!(bhxh_number("012345678"), None);
        assert_eq!(bhxh_number("DN40101234567X9"), None);
    }

    #[test]
    fn uuids_are_stable_and_distinct() {
        let a = name_uuid("hl7:BV:HIS:1", 0);
        assert_eq!(a, name_uuid("hl7:BV:HIS:1", 0));
        assert_ne!(a, name_uuid("hl7:BV:HIS:1", 1));
        assert_ne!(a, name_uuid("hl7:BV:HIS:2", 0));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn escapes_query_values() {
        assert_eq!(
            query_escape("urn:vtelehealth:hospital:bach-mai:mrn"),
            "urn:vtelehealth:hospital:bach-mai:mrn"
        );
        assert_eq!(query_escape("A 1|&#"), "A%201%7C%26%23");
    }
}
