//! Teleconsultation (hội chẩn): the workflow between a lower-level hospital that asks for
//! support and the upper-level hospital that gives it, on the `video` and `records`
//! capabilities. All state of a consultation lives in the kv store of the plugin at the
//! **upper (host) hospital**: the requester calls the plugin mounted there
//! (`/hospitals/{upper}/plugins/teleconsult/...`). See `docs/teleconsult.md`.
//!
//! | route | who | what |
//! | --- | --- | --- |
//! | `POST /consultations` | practitioner of a lower-tier hospital | request |
//! | `GET /consultations[?status=]` | host staff: all; others: their own | list |
//! | `GET /consultations/{id}` | participants, host staff | one |
//! | `POST /consultations/{id}/accept` | practitioner of the host | accept, schedule, open the room, invite |
//! | `POST /consultations/{id}/decline` | practitioner of the host | decline |
//! | `POST /consultations/{id}/conclusion` | the chair | FHIR Communication or DiagnosticReport, room ended |
//! | `GET /consultations/{id}/events[?after=N]` | participants, host staff | the steps so far |
//! | `PUT /rosters/{id}` | hospital-admin of the host | a 1-4-4-2 mentoring roster |
//! | `GET /rosters`, `GET /rosters/{id}` | staff of the host | rosters |
use serde::{Deserialize, Serialize};
use vtelehealth_plugin_sdk::identity::{self, Principal, Tier};
use vtelehealth_plugin_sdk::serde_json::{self, Value};
use vtelehealth_plugin_sdk::video::{self, Role, RoomSpec};
use vtelehealth_plugin_sdk::{
    Error, Plugin, Request, Response, clock, export_plugin, json, kv, log, notify, records,
};

const SEQ_KEY: &str = "seq/consultation";
/// Identifier systems the platform matches patients by across hospitals.
const CCCD_SYSTEM: &str = "https://vneid.gov.vn/cccd";
const BHYT_SYSTEM: &str = "https://baohiemxahoi.gov.vn/ma-so-bhxh";
const CONSULTATION_PREFIX: &str = "consultation/";
const ROSTER_PREFIX: &str = "roster/";
const MAX_SUMMARY: usize = 4000;
const MAX_REFERENCES: usize = 50;
const MAX_INVITEES: usize = 40;

#[derive(Serialize, Deserialize, Clone)]
struct Patient {
    /// A FHIR reference at the requesting hospital, e.g. `Patient/123`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    /// `{system, value}` identifiers (CCCD, BHYT...).
    #[serde(default)]
    identifiers: Vec<Identifier>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Identifier {
    system: String,
    value: String,
}

#[derive(Serialize, Deserialize, Clone)]
struct Invitee {
    practitioner: String,
    name: String,
    hospital: String,
    role: String,
    participant_id: String,
}

#[derive(Serialize, Deserialize, Clone)]
struct Consultation {
    id: String,
    status: String,
    host_hospital: String,
    requesting_hospital: String,
    requester: String,
    requester_name: String,
    patient: Patient,
    summary: String,
    urgency: String,
    #[serde(default)]
    specialty: Option<String>,
    records: Vec<String>,
    imaging: Vec<String>,
    proposed_consultants: Vec<Value>,
    created_at: u64,
    #[serde(default)]
    chair: Option<String>,
    #[serde(default)]
    scheduled_at: Option<u64>,
    #[serde(default)]
    room_id: Option<String>,
    #[serde(default)]
    invitees: Vec<Invitee>,
    #[serde(default)]
    decline_reason: Option<String>,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(default)]
    conclusion_reference: Option<String>,
    /// The platform's consultation record (`/api/v1/consultations`) that opens the
    /// patient's records to the upper hospital while the consultation is accepted; only
    /// when the patient is named by citizen ID or social-insurance number.
    #[serde(default)]
    records_consultation: Option<String>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Roster {
    id: String,
    name: String,
    central: String,
    provincial: Vec<String>,
    district: Vec<String>,
    commune: Vec<String>,
    updated_at: u64,
}

impl Roster {
    fn members(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.central)
            .chain(&self.provincial)
            .chain(&self.district)
            .chain(&self.commune)
    }
}

struct Teleconsult;

impl Plugin for Teleconsult {
    fn handle(req: Request) -> Result<Response, Error> {
        let segments: Vec<String> = req.segments().iter().map(|s| s.to_string()).collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (req.method(), segments.as_slice()) {
            ("POST", ["consultations"]) => create(&req),
            ("GET", ["consultations"]) => list(&req),
            ("GET", ["consultations", id]) => {
                let (c, _) = visible(id)?;
                Ok(Response::ok_json(&c))
            }
            ("POST", ["consultations", id, "accept"]) => accept(&req, id),
            ("POST", ["consultations", id, "decline"]) => decline(&req, id),
            ("POST", ["consultations", id, "conclusion"]) => conclude(&req, id),
            ("GET", ["consultations", id, "events"]) => events(&req, id),
            ("GET", ["rosters"]) => list_rosters(),
            ("GET", ["rosters", id]) => {
                host_staff()?;
                let r: Roster = kv::get_json(&roster_key(id)?)?.ok_or_else(|| {
                    Error::not_found(format!("Không có kíp 1-4-4-2 `{id}` (no roster `{id}`)"))
                })?;
                Ok(Response::ok_json(&r))
            }
            ("PUT", ["rosters", id]) => set_roster(&req, id),
            (_, ["consultations", ..]) | (_, ["rosters", ..]) => {
                Err(Error::method_not_allowed(format!(
                    "{} không được phép trên {} ({} is not allowed)",
                    req.method(),
                    req.path(),
                    req.method()
                )))
            }
            _ => Err(Error::not_found(format!(
                "Không có đường dẫn {} {} (no route)",
                req.method(),
                req.path()
            ))),
        }
    }
}

// ---- callers ----

fn caller() -> Result<Principal, Error> {
    identity::current()
        .principal
        .ok_or_else(|| Error::forbidden("Cần đăng nhập (a bearer token is required)"))
}

/// A practitioner with a hospital.
fn practitioner() -> Result<(Principal, String), Error> {
    let p = caller()?;
    if !p.has_role("practitioner") {
        return Err(Error::forbidden(
            "Chỉ bác sĩ (practitioner) mới thực hiện được bước này (practitioners only)",
        ));
    }
    let hospital = p
        .hospital
        .as_ref()
        .map(|h| h.id.clone())
        .ok_or_else(|| Error::forbidden("Bác sĩ không thuộc bệnh viện nào (no hospital)"))?;
    Ok((p, hospital))
}

/// A practitioner of the host hospital (the hospital of this call).
fn host_practitioner() -> Result<Principal, Error> {
    let (p, hospital) = practitioner()?;
    if hospital != identity::current().hospital.id {
        return Err(Error::forbidden(
            "Chỉ bác sĩ của bệnh viện tuyến trên nhận hội chẩn mới làm được bước này (practitioners of the host hospital only)",
        ));
    }
    Ok(p)
}

/// Staff (any role) of the host hospital.
fn host_staff() -> Result<Principal, Error> {
    let p = caller()?;
    let host = identity::current().hospital.id;
    if p.hospital.as_ref().map(|h| h.id.as_str()) != Some(host.as_str()) {
        return Err(Error::forbidden(
            "Chỉ nhân viên của bệnh viện chủ trì (staff of the host hospital only)",
        ));
    }
    Ok(p)
}

fn is_host_staff(p: &Principal) -> bool {
    p.hospital.as_ref().map(|h| h.id.as_str()) == Some(identity::current().hospital.id.as_str())
}

fn involved(c: &Consultation, p: &Principal) -> bool {
    is_host_staff(p)
        || c.requester == p.subject
        || c.invitees.iter().any(|i| i.practitioner == p.subject)
}

fn rank(t: Tier) -> u8 {
    match t {
        Tier::Central => 0,
        Tier::Provincial => 1,
        Tier::District => 2,
        Tier::Commune => 3,
    }
}

// ---- input ----

fn body(req: &Request) -> Result<Value, Error> {
    if req.body.is_empty() {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(&req.body).map_err(|e| {
        Error::bad_request(format!(
            "Nội dung không phải JSON hợp lệ (invalid JSON body): {e}"
        ))
    })?;
    if !v.is_object() {
        return Err(Error::bad_request(
            "Nội dung phải là một đối tượng JSON (the body must be a JSON object)",
        ));
    }
    Ok(v)
}

fn required_text(v: &Value, key: &str, max: usize) -> Result<String, Error> {
    let s = v[key].as_str().map(str::trim).unwrap_or("");
    if s.is_empty() {
        return Err(Error::bad_request(format!(
            "Thiếu trường `{key}` (`{key}` is required)"
        )));
    }
    if s.len() > max {
        return Err(Error::bad_request(format!(
            "`{key}` dài quá {max} byte (`{key}` is longer than {max} bytes)"
        )));
    }
    Ok(s.to_owned())
}

/// `Type/id` or an absolute URL ending in one (imaging on another server).
fn fhir_reference(s: &str) -> bool {
    let tail: Vec<&str> = s.rsplitn(3, '/').collect();
    if tail.len() < 2 || s.len() > 1024 {
        return false;
    }
    let (id, ty) = (tail[0], tail[1]);
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && ty.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && ty.chars().all(|c| c.is_ascii_alphabetic())
}

fn references(v: &Value, key: &str) -> Result<Vec<String>, Error> {
    let Some(items) = v.get(key).filter(|x| !x.is_null()) else {
        return Ok(Vec::new());
    };
    let items = items.as_array().ok_or_else(|| {
        Error::bad_request(format!(
            "`{key}` phải là danh sách tham chiếu FHIR (`{key}` must be a list of FHIR references)"
        ))
    })?;
    if items.len() > MAX_REFERENCES {
        return Err(Error::bad_request(format!(
            "`{key}`: tối đa {MAX_REFERENCES} (at most {MAX_REFERENCES})"
        )));
    }
    items
        .iter()
        .map(|x| {
            let s = x.as_str().or_else(|| x["reference"].as_str()).unwrap_or("");
            if fhir_reference(s) {
                Ok(s.to_owned())
            } else {
                Err(Error::bad_request(format!(
                    "`{key}`: `{s}` không phải tham chiếu FHIR dạng Loại/id (not a FHIR reference Type/id)"
                )))
            }
        })
        .collect()
}

fn consultation_key(id: &str) -> Result<String, Error> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(Error::not_found(format!(
            "Không có yêu cầu hội chẩn `{id}` (no consultation `{id}`)"
        )));
    }
    Ok(format!("{CONSULTATION_PREFIX}{id}"))
}

fn roster_key(id: &str) -> Result<String, Error> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(Error::bad_request(format!(
            "Mã kíp `{id}` không hợp lệ: 1-64 ký tự a-z, 0-9, '-' (invalid roster id)"
        )));
    }
    Ok(format!("{ROSTER_PREFIX}{id}"))
}

fn load(id: &str) -> Result<Consultation, Error> {
    kv::get_json(&consultation_key(id)?)?.ok_or_else(|| {
        Error::not_found(format!(
            "Không có yêu cầu hội chẩn `{id}` (no consultation `{id}`)"
        ))
    })
}

/// The consultation, when the caller may see it (else 404, so ids do not leak).
fn visible(id: &str) -> Result<(Consultation, Principal), Error> {
    let p = caller()?;
    let c = load(id)?;
    if !involved(&c, &p) {
        return Err(Error::not_found(format!(
            "Không có yêu cầu hội chẩn `{id}` (no consultation `{id}`)"
        )));
    }
    Ok((c, p))
}

/// Move a consultation from `from` to a new state with `f`, without lost updates; a
/// consultation in another state is a 409.
fn transition<F>(id: &str, from: &str, mut f: F) -> Result<Consultation, Error>
where
    F: FnMut(&mut Consultation) -> Result<(), Error>,
{
    let key = consultation_key(id)?;
    kv::update_json(&key, |current: Option<Consultation>| {
        let mut c = current.ok_or_else(|| {
            Error::not_found(format!(
                "Không có yêu cầu hội chẩn `{id}` (no consultation `{id}`)"
            ))
        })?;
        if c.status != from {
            return Err(Error::conflict(format!(
                "Yêu cầu hội chẩn `{id}` đang ở trạng thái `{}`, không phải `{from}` (the consultation is {}, not {from})",
                c.status, c.status
            )));
        }
        f(&mut c)?;
        Ok(c)
    })
}

// ---- events ----

fn event(
    id: &str,
    kind: &str,
    actor: &Principal,
    vi: String,
    en: String,
    data: Value,
) -> Result<(), Error> {
    let seq = kv::increment(&format!("seq/event/{id}"), 1)?;
    kv::set_json(
        &format!("event/{id}/{seq:08}"),
        &json!({
            "seq": seq, "type": kind, "at": clock::now_millis(),
            "actor": actor.subject, "actor_name": actor.name,
            "vi": vi, "en": en, "data": data,
        }),
    )?;
    push(id, kind, seq, actor, &vi, &en);
    Ok(())
}

/// Push the step to the people of the consultation (not the one who took it) through
/// `notify`. The event is already stored and listed, so a failure here is only logged.
fn push(id: &str, kind: &str, seq: i64, actor: &Principal, vi: &str, en: &str) {
    let Ok(c) = load(id) else { return };
    // Who may open the consultation (`visible`) gets a link to it.
    let mut linked: Vec<String> = vec![c.requester.clone()];
    linked.extend(c.chair.iter().cloned());
    linked.extend(c.invitees.iter().map(|i| i.practitioner.clone()));
    // The roster's consultants hear of a request they may be asked to join; those of other
    // hospitals than the host cannot open it yet, so theirs has no link.
    let mut unlinked: Vec<String> = Vec::new();
    if kind == "requested" {
        for p in &c.proposed_consultants {
            if let Some(who) = p["practitioner"].as_str() {
                if p["hospital"].as_str() == Some(c.host_hospital.as_str()) {
                    linked.push(who.to_owned());
                } else {
                    unlinked.push(who.to_owned());
                }
            }
        }
    }
    let tidy = |v: &mut Vec<String>| {
        v.retain(|s| s != &actor.subject);
        v.sort();
        v.dedup();
    };
    tidy(&mut linked);
    unlinked.retain(|s| !linked.contains(s));
    tidy(&mut unlinked);
    // One line of at most 300 bytes, cut at a character boundary.
    let mut title = format!("Hội chẩn {id}: {}", vi.replace(['\n', '\r'], " "));
    if title.len() > 300 {
        let mut end = 297;
        while !title.is_char_boundary(end) {
            end -= 1;
        }
        title.truncate(end);
        title.push('…');
    }
    let data = json!({ "consultation": id, "type": kind, "seq": seq, "en": en });
    let link = format!("/consultations/{id}");
    for (people, link) in [(&linked, Some(link.as_str())), (&unlinked, None)] {
        // The capability takes at most 100 recipients a call.
        for batch in people.chunks(100) {
            if let Err(e) = notify::send(batch, &format!("teleconsult.{kind}"), &title, &data, link)
            {
                log::warn!(
                    "consultation {id}: notifying the participants failed: {}",
                    e.message()
                );
            }
        }
    }
}

fn events(req: &Request, id: &str) -> Result<Response, Error> {
    visible(id)?;
    let after = match req.query_param("after") {
        None => 0,
        Some(t) => t.parse::<u64>().map_err(|_| {
            Error::bad_request(
                "`after` phải là số thứ tự sự kiện (`after` must be an event number)",
            )
        })?,
    };
    let prefix = format!("event/{id}/");
    let start = (after > 0).then(|| format!("{prefix}{after:08}"));
    let mut out = Vec::new();
    for key in kv::list_keys_page(&prefix, start.as_deref(), 1000)? {
        if let Some(e) = kv::get_json::<Value>(&key)? {
            out.push(e);
        }
    }
    Ok(Response::ok_json(
        &json!({ "consultation": id, "events": out }),
    ))
}

// ---- the workflow ----

fn create(req: &Request) -> Result<Response, Error> {
    let (p, requesting) = practitioner()?;
    let host = identity::current().hospital;
    if requesting == host.id {
        return Err(Error::bad_request(
            "Bệnh viện không tự gửi yêu cầu hội chẩn cho chính mình (a hospital does not request a consultation from itself)",
        ));
    }
    let req_hospital = identity::hospital(&requesting).ok_or_else(|| {
        Error::bad_request(format!(
            "Không biết bệnh viện `{requesting}` (unknown hospital)"
        ))
    })?;
    if rank(req_hospital.tier) <= rank(host.tier) {
        return Err(Error::bad_request(format!(
            "Chỉ bệnh viện tuyến dưới gửi yêu cầu lên tuyến trên: {} ({}) không dưới {} ({}) (only a lower-tier hospital requests a consultation)",
            req_hospital.id,
            req_hospital.tier.as_str(),
            host.id,
            host.tier.as_str()
        )));
    }
    let b = body(req)?;
    let patient: Patient = serde_json::from_value(b.get("patient").cloned().unwrap_or(Value::Null))
        .map_err(|e| {
            Error::bad_request(format!(
                "`patient` không hợp lệ: cần `reference` hoặc `identifiers` (invalid patient: {e})"
            ))
        })?;
    if patient.reference.is_none() && patient.identifiers.is_empty() {
        return Err(Error::bad_request(
            "`patient` cần `reference` hoặc ít nhất một `identifiers` (patient needs a reference or an identifier)",
        ));
    }
    if let Some(r) = &patient.reference
        && !(fhir_reference(r) && r.contains("Patient/"))
    {
        return Err(Error::bad_request(format!(
            "`patient.reference` `{r}` phải có dạng Patient/id (must be Patient/id)"
        )));
    }
    if patient
        .identifiers
        .iter()
        .any(|i| i.system.trim().is_empty() || i.value.trim().is_empty())
    {
        return Err(Error::bad_request(
            "`patient.identifiers`: cần `system` và `value` (system and value are required)",
        ));
    }
    let summary = required_text(&b, "summary", MAX_SUMMARY)?;
    let urgency = b["urgency"].as_str().unwrap_or("routine").to_owned();
    if !["routine", "urgent", "emergency"].contains(&urgency.as_str()) {
        return Err(Error::bad_request(format!(
            "`urgency` phải là routine, urgent hoặc emergency, không phải `{urgency}` (urgency must be routine, urgent or emergency)"
        )));
    }
    let specialty = b["specialty"].as_str().map(str::to_owned);
    let records_refs = references(&b, "records")?;
    let imaging = references(&b, "imaging")?;
    let proposed = propose(&requesting, host.tier)?;
    let records_consultation = request_records_access(&patient, &summary)?;
    // A records consultation never outlives a request that was not stored.
    let abandon = |e: Error| {
        if let Some(rc) = &records_consultation {
            close_records("(not stored)", rc, records::ConsultationStep::End);
        }
        e
    };

    let n = kv::increment(SEQ_KEY, 1).map_err(abandon)?;
    let id = format!("hc-{n:06}");
    let c = Consultation {
        id: id.clone(),
        status: "requested".into(),
        host_hospital: host.id.clone(),
        requesting_hospital: requesting.clone(),
        requester: p.subject.clone(),
        requester_name: p.name.clone(),
        patient,
        summary,
        urgency: urgency.clone(),
        specialty,
        records: records_refs,
        imaging,
        proposed_consultants: proposed,
        created_at: clock::now_millis(),
        chair: None,
        scheduled_at: None,
        room_id: None,
        invitees: Vec::new(),
        decline_reason: None,
        conclusion: None,
        conclusion_reference: None,
        records_consultation: records_consultation.clone(),
    };
    let stored = consultation_key(&id)
        .and_then(|key| {
            let bytes = serde_json::to_vec(&c).map_err(|e| Error::internal(e.to_string()))?;
            kv::compare_and_swap(&key, None, &bytes)
        })
        .map_err(abandon)?;
    if !stored {
        close_records_access(&c, records::ConsultationStep::End);
        return Err(Error::conflict(
            "Mã yêu cầu đã tồn tại, hãy thử lại (id taken, retry)",
        ));
    }
    event(
        &id,
        "requested",
        &p,
        format!(
            "{} ({}) gửi yêu cầu hội chẩn, mức độ {}",
            p.name, requesting, urgency
        ),
        format!(
            "{} ({}) requested a consultation, urgency {}",
            p.name, requesting, urgency
        ),
        json!({ "urgency": urgency }),
    )?;
    log::info!("consultation {id} requested by {requesting}");
    Ok(Response::json(201, &c))
}

/// Ask the platform for a consultation record about the patient, so the upper hospital may
/// read the patient's records once it accepts. Only a citizen ID or social-insurance number
/// names a patient across hospitals; without one, no records are shared.
fn request_records_access(patient: &Patient, summary: &str) -> Result<Option<String>, Error> {
    let find = |system: &str| {
        patient
            .identifiers
            .iter()
            .find(|i| i.system == system)
            .map(|i| i.value.trim().to_owned())
    };
    let (national_id, health_id) = (find(CCCD_SYSTEM), find(BHYT_SYSTEM));
    if national_id.is_none() && health_id.is_none() {
        return Ok(None);
    }
    let reason: String = summary.chars().take(500).collect();
    let c = records::request_consultation(national_id.as_deref(), health_id.as_deref(), &reason)?;
    Ok(Some(c.id))
}

/// Decline or end the platform's consultation record, if there is one. The workflow has
/// already moved on, so a failure is logged rather than undoing it.
fn close_records_access(c: &Consultation, step: records::ConsultationStep) {
    if let Some(rc) = &c.records_consultation {
        close_records(&c.id, rc, step);
    }
}

/// Decline or end the platform's consultation record `rc` of consultation `id`.
fn close_records(id: &str, rc: &str, step: records::ConsultationStep) {
    let mut result = records::move_consultation(rc, step);
    // Already accepted elsewhere (e.g. through the API): a decline must still close it.
    if result.is_err() && step == records::ConsultationStep::Decline {
        result = records::move_consultation(rc, records::ConsultationStep::End);
    }
    if let Err(e) = result {
        log::warn!(
            "consultation {id}: records access {rc} not closed: {}",
            e.message()
        );
    }
}

/// Members of the rosters that mentor the requesting hospital, from tiers above it and at
/// most at the host's tier: the consultants the upper hospital may invite.
fn propose(requesting: &str, host_tier: Tier) -> Result<Vec<Value>, Error> {
    let req_tier = identity::hospital(requesting)
        .map(|h| rank(h.tier))
        .unwrap_or(3);
    let mut out: Vec<Value> = Vec::new();
    for key in kv::list_keys(ROSTER_PREFIX)? {
        let Some(r) = kv::get_json::<Roster>(&key)? else {
            continue;
        };
        let members: Vec<identity::Practitioner> = r
            .members()
            .filter_map(|m| identity::practitioner(m))
            .collect();
        if !members.iter().any(|m| m.hospital_id == requesting) {
            continue;
        }
        for m in members {
            let Some(h) = identity::hospital(&m.hospital_id) else {
                continue;
            };
            let t = rank(h.tier);
            if t < req_tier
                && t >= rank(host_tier)
                && !out.iter().any(|o| o["practitioner"] == m.id.as_str())
            {
                out.push(json!({
                    "practitioner": m.id, "name": m.name, "hospital": m.hospital_id,
                    "tier": h.tier.as_str(), "specialty": m.specialty, "roster": r.id,
                }));
            }
        }
    }
    Ok(out)
}

fn list(req: &Request) -> Result<Response, Error> {
    let p = caller()?;
    let status = req.query_param("status");
    let staff = is_host_staff(&p);
    let mut out = Vec::new();
    for key in kv::list_keys(CONSULTATION_PREFIX)? {
        let Some(c) = kv::get_json::<Consultation>(&key)? else {
            continue;
        };
        if (staff || involved(&c, &p)) && status.as_deref().is_none_or(|s| s == c.status) {
            out.push(c);
        }
    }
    Ok(Response::ok_json(&json!({ "consultations": out })))
}

fn role_of(name: &str) -> Result<Role, Error> {
    match name {
        "presenter" => Ok(Role::Presenter),
        "participant" => Ok(Role::Participant),
        "observer" => Ok(Role::Observer),
        _ => Err(Error::bad_request(format!(
            "Vai trò `{name}` không hợp lệ: presenter, participant hoặc observer (invalid role)"
        ))),
    }
}

fn accept(req: &Request, id: &str) -> Result<Response, Error> {
    let p = host_practitioner()?;
    let c = load(id)?;
    let b = body(req)?;
    let scheduled_at = b["scheduled_at"].as_u64().ok_or_else(|| {
        Error::bad_request("Thiếu `scheduled_at` (mili giây từ 1970) (scheduled_at, milliseconds since the epoch, is required)")
    })?;
    // Who to invite: the requester presents, the consultants (or the proposed ones) take
    // part, observers of any hospital follow.
    let mut wanted: Vec<(String, String)> = vec![(c.requester.clone(), "presenter".into())];
    let consultants = match b.get("consultants").filter(|x| !x.is_null()) {
        Some(v) => v.as_array().cloned().ok_or_else(|| {
            Error::bad_request("`consultants` phải là danh sách (must be a list)")
        })?,
        None => c.proposed_consultants.clone(),
    };
    for x in &consultants {
        let who = x
            .as_str()
            .or_else(|| x["practitioner"].as_str())
            .unwrap_or("")
            .to_owned();
        let role = x["role"].as_str().unwrap_or("participant").to_owned();
        role_of(&role)?;
        wanted.push((who, role));
    }
    if let Some(v) = b.get("observers").filter(|x| !x.is_null()) {
        for x in v
            .as_array()
            .ok_or_else(|| Error::bad_request("`observers` phải là danh sách (must be a list)"))?
        {
            wanted.push((x.as_str().unwrap_or("").to_owned(), "observer".into()));
        }
    }
    if wanted.len() + 1 > MAX_INVITEES {
        return Err(Error::bad_request(format!(
            "Tối đa {MAX_INVITEES} người (at most {MAX_INVITEES} invitees)"
        )));
    }
    let mut people = Vec::new();
    for (who, role) in wanted {
        if who == p.subject
            || people
                .iter()
                .any(|(q, _): &(identity::Practitioner, String)| q.id == who)
        {
            continue;
        }
        let pr = identity::practitioner(&who).ok_or_else(|| {
            Error::bad_request(format!(
                "Không có bác sĩ `{who}` trong mạng lưới (no practitioner `{who}`)"
            ))
        })?;
        people.push((pr, role));
    }
    let max_participants = b["max_participants"]
        .as_u64()
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .unwrap_or((people.len() as u32 + 1).clamp(2, 50));
    // Claim the consultation first so a second accept (or a decline) loses.
    transition(id, "requested", |c| {
        c.status = "accepting".into();
        c.chair = Some(p.subject.clone());
        c.scheduled_at = Some(scheduled_at);
        Ok(())
    })?;
    let opened = open_room(&c, &p, scheduled_at, max_participants, &people);
    // Open the patient's records to this hospital for the consultation.
    let opened = opened.and_then(|x| match &c.records_consultation {
        Some(rc) => match records::move_consultation(rc, records::ConsultationStep::Accept) {
            Ok(_) => Ok(x),
            Err(e) => {
                let _ = video::end_room(&x.0);
                Err(e)
            }
        },
        None => Ok(x),
    });
    let (room_id, invitees) = match opened {
        Ok(x) => x,
        Err(e) => {
            // Give the request back.
            let _ = transition(id, "accepting", |c| {
                c.status = "requested".into();
                c.chair = None;
                c.scheduled_at = None;
                Ok(())
            });
            return Err(e);
        }
    };
    let c = transition(id, "accepting", |c| {
        c.status = "accepted".into();
        c.room_id = Some(room_id.clone());
        c.invitees = invitees.clone();
        Ok(())
    })?;
    let names: Vec<String> = invitees
        .iter()
        .map(|i| format!("{} ({}, {})", i.name, i.hospital, i.role))
        .collect();
    event(
        id,
        "accepted",
        &p,
        format!(
            "{} nhận hội chẩn, lịch lúc {} (UTC)",
            p.name,
            iso8601(scheduled_at)
        ),
        format!(
            "{} accepted the consultation, scheduled at {} (UTC)",
            p.name,
            iso8601(scheduled_at)
        ),
        json!({ "scheduled_at": scheduled_at, "records_consultation": c.records_consultation }),
    )?;
    event(
        id,
        "room-opened",
        &p,
        format!("Mở phòng hội chẩn {room_id}; mời: {}", names.join(", ")),
        format!("Room {room_id} opened; invited: {}", names.join(", ")),
        json!({ "room": room_id, "invitees": invitees }),
    )?;
    Ok(Response::ok_json(&with_join_hints(&c)))
}

fn open_room(
    c: &Consultation,
    chair: &Principal,
    scheduled_at: u64,
    max_participants: u32,
    people: &[(identity::Practitioner, String)],
) -> Result<(String, Vec<Invitee>), Error> {
    let room = video::create_room(&RoomSpec {
        requesting_hospital: Some(c.requesting_hospital.clone()),
        purpose: format!(
            "Hội chẩn {} ({}): {}",
            c.id,
            c.urgency,
            c.summary.chars().take(200).collect::<String>()
        ),
        max_participants,
        scheduled_at: Some(scheduled_at),
        consultation_id: None,
    })?;
    let mut invitees = Vec::new();
    let host = identity::current().hospital.id;
    let chair_p = video::invite(&room.id, &chair.subject, Role::Chair)?;
    invitees.push(Invitee {
        practitioner: chair.subject.clone(),
        name: chair.name.clone(),
        hospital: host,
        role: "chair".into(),
        participant_id: chair_p.id,
    });
    for (pr, role) in people {
        let part = video::invite(&room.id, &pr.id, role_of(role)?)?;
        invitees.push(Invitee {
            practitioner: pr.id.clone(),
            name: pr.name.clone(),
            hospital: pr.hospital_id.clone(),
            role: role.clone(),
            participant_id: part.id,
        });
    }
    Ok((room.id, invitees))
}

/// The consultation with, for every invitee, where to fetch a join token.
fn with_join_hints(c: &Consultation) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if let Some(room) = &c.room_id {
        v["join"] = json!({
            "token_url": format!("/api/v1/video/rooms/{room}/token"),
            "method": "POST",
            "vi": "Mỗi người được mời tự lấy mã tham gia bằng tài khoản của mình: POST token_url với {}",
            "en": "Each invitee fetches a join token with their own bearer token: POST token_url with {}",
            "invitees": c.invitees.iter().map(|i| json!({
                "practitioner": i.practitioner, "participant_id": i.participant_id, "role": i.role,
                "hospital": i.hospital,
            })).collect::<Vec<_>>(),
        });
    }
    v
}

fn decline(req: &Request, id: &str) -> Result<Response, Error> {
    let p = host_practitioner()?;
    let b = body(req)?;
    let reason = required_text(&b, "reason", 2000)?;
    let c = transition(id, "requested", |c| {
        c.status = "declined".into();
        c.decline_reason = Some(reason.clone());
        Ok(())
    })?;
    event(
        id,
        "declined",
        &p,
        format!("{} từ chối hội chẩn: {reason}", p.name),
        format!("{} declined the consultation: {reason}", p.name),
        json!({ "reason": reason }),
    )?;
    close_records_access(&c, records::ConsultationStep::Decline);
    Ok(Response::ok_json(&c))
}

fn conclude(req: &Request, id: &str) -> Result<Response, Error> {
    let p = host_practitioner()?;
    let c = load(id)?;
    if c.status == "accepted" && c.chair.as_deref() != Some(p.subject.as_str()) {
        return Err(Error::forbidden(
            "Chỉ chủ trì hội chẩn mới ghi kết luận (only the chair records the conclusion)",
        ));
    }
    let b = body(req)?;
    let conclusion = required_text(&b, "conclusion", MAX_SUMMARY)?;
    let kind = b["resource_type"]
        .as_str()
        .unwrap_or("Communication")
        .to_owned();
    // Claim the step, so two conclusions never both write.
    transition(id, "accepted", |c| {
        c.status = "concluding".into();
        Ok(())
    })?;
    let written = write_conclusion(&c, &kind, &conclusion, &b);
    let reference = match written {
        Ok(r) => r,
        Err(e) => {
            let _ = transition(id, "concluding", |c| {
                c.status = "accepted".into();
                Ok(())
            });
            return Err(e);
        }
    };
    if let Some(room) = &c.room_id
        && let Err(e) = video::end_room(room)
    {
        log::warn!(
            "consultation {id}: the room could not be ended: {}",
            e.message()
        );
    }
    let c = transition(id, "concluding", |c| {
        c.status = "concluded".into();
        c.conclusion = Some(conclusion.clone());
        c.conclusion_reference = Some(reference.clone());
        Ok(())
    })?;
    // The consultation is over: the patient's records stop flowing.
    close_records_access(&c, records::ConsultationStep::End);
    event(
        id,
        "concluded",
        &p,
        format!(
            "{} ghi kết luận hội chẩn ({reference}); phòng đã đóng",
            p.name
        ),
        format!(
            "{} recorded the conclusion ({reference}); the room is closed",
            p.name
        ),
        json!({ "reference": reference }),
    )?;
    Ok(Response::ok_json(&c))
}

fn write_conclusion(
    c: &Consultation,
    kind: &str,
    conclusion: &str,
    b: &Value,
) -> Result<String, Error> {
    let identifier = json!([{ "system": "urn:vtelehealth:teleconsult", "value": c.id }]);
    let now = iso8601(clock::now_millis());
    let patient_ids: Vec<String> = c
        .patient
        .identifiers
        .iter()
        .map(|i| format!("{}|{}", i.system, i.value))
        .collect();
    let about = format!(
        "Bệnh nhân (patient): {}{}; yêu cầu từ (requested by) {}",
        c.patient.reference.clone().unwrap_or_default(),
        if patient_ids.is_empty() {
            String::new()
        } else {
            format!(" [{}]", patient_ids.join(", "))
        },
        c.requesting_hospital
    );
    let mut resource = match kind {
        "Communication" => json!({
            "resourceType": "Communication",
            "identifier": identifier,
            "status": "completed",
            "category": [{ "text": "Kết luận hội chẩn (teleconsultation conclusion)" }],
            "sent": now,
            "payload": [{ "contentString": conclusion }],
            "note": [{ "text": about }],
        }),
        "DiagnosticReport" => json!({
            "resourceType": "DiagnosticReport",
            "identifier": identifier,
            "status": "final",
            "category": [{ "text": "Hội chẩn (teleconsultation)" }],
            "code": { "text": b["code_text"].as_str().unwrap_or("Kết luận hội chẩn") },
            "issued": now,
            "conclusion": format!("{conclusion}\n{about}"),
        }),
        other => {
            return Err(Error::bad_request(format!(
                "`resource_type` phải là Communication hoặc DiagnosticReport, không phải `{other}`"
            )));
        }
    };
    // A patient of the host hospital, when the chair names one: records resolve references
    // at the hospital of the call only.
    if let Some(subject) = b["subject"].as_str() {
        if !(fhir_reference(subject) && subject.starts_with("Patient/")) {
            return Err(Error::bad_request(
                "`subject` phải có dạng Patient/id (must be Patient/id)",
            ));
        }
        resource["subject"] = json!({ "reference": subject });
    }
    let stored = records::create(&resource, records::Purpose::Treatment)?;
    let rid = stored["id"].as_str().unwrap_or("").to_owned();
    Ok(format!("{kind}/{rid}"))
}

/// RFC 3339 in UTC from milliseconds since the epoch.
fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---- rosters ----

fn list_rosters() -> Result<Response, Error> {
    host_staff()?;
    let mut out = Vec::new();
    for key in kv::list_keys(ROSTER_PREFIX)? {
        if let Some(r) = kv::get_json::<Roster>(&key)? {
            out.push(r);
        }
    }
    Ok(Response::ok_json(&json!({ "rosters": out })))
}

fn set_roster(req: &Request, id: &str) -> Result<Response, Error> {
    let p = host_staff()?;
    if !p.has_role("hospital-admin") {
        return Err(Error::forbidden(
            "Chỉ quản trị bệnh viện mới đặt kíp 1-4-4-2 (hospital-admin only)",
        ));
    }
    let key = roster_key(id)?;
    let b = body(req)?;
    let list_of = |k: &str, max: usize| -> Result<Vec<String>, Error> {
        let v = b.get(k).cloned().unwrap_or(json!([]));
        let items = v.as_array().ok_or_else(|| {
            Error::bad_request(format!(
                "`{k}` phải là danh sách mã bác sĩ (must be a list of practitioner ids)"
            ))
        })?;
        if items.is_empty() || items.len() > max {
            return Err(Error::bad_request(format!(
                "`{k}`: cần 1 đến {max} bác sĩ theo mô hình 1-4-4-2 (1 to {max} practitioners in the 1-4-4-2 model)"
            )));
        }
        Ok(items
            .iter()
            .map(|x| x.as_str().unwrap_or("").to_owned())
            .collect())
    };
    let central = required_text(&b, "central", 128)?;
    let roster = Roster {
        id: id.to_owned(),
        name: b["name"].as_str().unwrap_or(id).to_owned(),
        central,
        provincial: list_of("provincial", 4)?,
        district: list_of("district", 4)?,
        commune: list_of("commune", 2)?,
        updated_at: clock::now_millis(),
    };
    let mut problems = Vec::new();
    let mut seen: Vec<&String> = Vec::new();
    for (tier, members) in [
        (Tier::Central, vec![&roster.central]),
        (Tier::Provincial, roster.provincial.iter().collect()),
        (Tier::District, roster.district.iter().collect()),
        (Tier::Commune, roster.commune.iter().collect()),
    ] {
        for m in members {
            if seen.contains(&m) {
                problems.push(format!("`{m}` có mặt hai lần (listed twice)"));
                continue;
            }
            seen.push(m);
            match identity::practitioner(m) {
                None => problems.push(format!("không có bác sĩ `{m}` (no practitioner `{m}`)")),
                Some(pr) => match identity::hospital(&pr.hospital_id) {
                    None => problems.push(format!("`{m}`: không biết bệnh viện `{}`", pr.hospital_id)),
                    Some(h) if h.tier != tier => problems.push(format!(
                        "`{m}` thuộc {} tuyến {}, không phải tuyến {} ({m} is at a {} hospital, not {})",
                        h.id,
                        h.tier.as_str(),
                        tier.as_str(),
                        h.tier.as_str(),
                        tier.as_str()
                    )),
                    Some(_) => {}
                },
            }
        }
    }
    if !problems.is_empty() {
        return Err(Error::bad_request(format!(
            "Kíp 1-4-4-2 không hợp lệ (invalid roster): {}",
            problems.join("; ")
        )));
    }
    kv::set_json(&key, &roster)?;
    Ok(Response::ok_json(&roster))
}

export_plugin!(Teleconsult);
