//! Teleconsultation (hội chẩn): the workflow between a lower-level hospital that asks for
//! support and the upper-level hospital that gives it, on the `video` and `records`
//! capabilities. All state of a consultation lives in the kv store of the plugin at the
//! **upper (host) hospital**: the requester calls the plugin mounted there
//! (`/hospitals/{upper}/plugins/teleconsult/...`). See `docs/teleconsult.md`.
//!
//! | route | who | what |
//! | --- | --- | --- |
//! | `POST /consultations` | practitioner of a lower-tier hospital | request; pages the host |
//! | `GET /consultations[?status=]` | host staff: all; others: their own | list |
//! | `GET /consultations/{id}` | participants, host staff | one (observers: without the patient) |
//! | `POST /consultations/{id}/attachments` | the requester | more records, imaging, documents |
//! | `POST /consultations/{id}/accept` | practitioner of the host | accept, schedule, open the room, invite |
//! | `POST /consultations/{id}/decline` | practitioner of the host | decline with a reason |
//! | `POST /consultations/{id}/conclusion` | the chair | signed conclusion as FHIR, room ended |
//! | `POST /consultations/{id}/acknowledge` | the requesting hospital's practitioners | conclusion received |
//! | `GET /consultations/{id}/events[?after=N]` | participants, host staff | the steps so far |
//! | `GET /consultations/{id}/page`, `POST .../page/ack` | paged people | the page's state; "I have it" |
//! | `POST /consultations/{id}/session` | the chair | open to the network as a teaching session |
//! | `GET /sessions`, `POST /sessions/{id}/join` | any practitioner of the network | schedule; join as observer |
//! | `GET /queue[?specialty=]` | host practitioners and admins | incoming requests per specialty |
//! | `GET /history` | each hospital's practitioners and admins | consultations, timings, participants |
//! | `GET /specialties`, `GET /practitioners` | any practitioner | what a request picks from |
//! | `GET /patients?q=` | practitioners of the hospital it is mounted at | own patients |
//! | `PUT/GET /oncall/{code}`, `GET /oncall` | host admin sets; host staff read | on-call rotas |
//! | `PUT/GET/DELETE /rosters/{id}`, `GET /rosters` | host admin sets; host staff read | 1-4-4-2 rosters |
mod admin_pages;
mod directory;
mod pages;
mod paging;
mod sessions;

use serde::{Deserialize, Serialize};
use vtelehealth_plugin_sdk::identity::{self, Principal, Tier};
use vtelehealth_plugin_sdk::serde_json::{self, Value};
use vtelehealth_plugin_sdk::video::{self, Role, RoomSpec};
use vtelehealth_plugin_sdk::{
    Error, Plugin, Request, Response, clock, export_plugin, json, kv, log, notify, records,
};

const SEQ_KEY: &str = "seq/consultation";
/// Identifier systems the platform matches patients by across hospitals.
pub(crate) const CCCD_SYSTEM: &str = "https://vneid.gov.vn/cccd";
pub(crate) const BHYT_SYSTEM: &str = "https://baohiemxahoi.gov.vn/ma-so-bhxh";
pub(crate) const CONSULTATION_PREFIX: &str = "consultation/";
pub(crate) const ROSTER_PREFIX: &str = "roster/";
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
    /// The patient's name as the requesting hospital records it, for the pages of those
    /// who see the patient (never observers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Identifier {
    system: String,
    value: String,
}

/// A practitioner by name, as pages show them.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct Person {
    pub id: String,
    pub name: String,
    pub hospital: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// The chair's signed conclusion.
#[derive(Serialize, Deserialize, Clone)]
struct SignedConclusion {
    assessment: String,
    #[serde(default)]
    recommendations: Option<String>,
    #[serde(default)]
    follow_up: Option<String>,
    signed_by: String,
    signed_by_name: String,
    #[serde(default)]
    signed_by_title: Option<String>,
    signed_at: u64,
}

#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct Invitee {
    practitioner: String,
    name: String,
    hospital: String,
    role: String,
    participant_id: String,
}

#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct Consultation {
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
    /// The conclusion's copy in the requesting hospital's records (`Type/id` there), or why
    /// it could not be delivered.
    #[serde(default)]
    delivered_reference: Option<String>,
    #[serde(default)]
    delivery_error: Option<String>,
    // Names and timings for the pages (requests stored before them read as empty).
    #[serde(default)]
    requesting_hospital_name: String,
    #[serde(default)]
    host_hospital_name: String,
    /// Other documents the request points to (`Type/id` or URLs ending in one).
    #[serde(default)]
    documents: Vec<String>,
    #[serde(default)]
    chair_name: Option<String>,
    #[serde(default)]
    accepted_at: Option<u64>,
    #[serde(default)]
    declined_at: Option<u64>,
    #[serde(default)]
    declined_by_name: Option<String>,
    #[serde(default)]
    concluded_at: Option<u64>,
    #[serde(default)]
    signed_conclusion: Option<SignedConclusion>,
    #[serde(default)]
    acknowledged_at: Option<u64>,
    #[serde(default)]
    acknowledged_by_name: Option<String>,
    #[serde(default)]
    paging: Option<paging::Paging>,
    #[serde(default)]
    session: Option<sessions::Session>,
}

#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct Roster {
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
        // The doctors' pages and their small routes (`src/pages.rs`).
        if let Some(answer) = pages::route(&req, &segments) {
            return answer;
        }
        // The hospital admin's pages and their routes (`src/admin_pages.rs`).
        if let Some(answer) = admin_pages::route(&req, &segments) {
            return answer;
        }
        match (req.method(), segments.as_slice()) {
            ("POST", ["consultations"]) => create(&req),
            ("GET", ["consultations"]) => list(&req),
            ("GET", ["consultations", id]) => {
                let (c, p) = visible(id)?;
                Ok(Response::ok_json(&view(&c, &p)))
            }
            ("POST", ["consultations", id, "attachments"]) => attach(&req, id),
            ("POST", ["consultations", id, "accept"]) => accept(&req, id),
            ("POST", ["consultations", id, "decline"]) => decline(&req, id),
            ("POST", ["consultations", id, "conclusion"]) => conclude(&req, id),
            ("POST", ["consultations", id, "acknowledge"]) => acknowledge(id),
            ("GET", ["consultations", id, "events"]) => events(&req, id),
            ("GET", ["consultations", id, "page"]) => paging::get_page(id),
            ("POST", ["consultations", id, "page", "ack"]) => paging::ack_page(id),
            ("POST", ["consultations", id, "session"]) => sessions::open(&req, id),
            ("GET", ["sessions"]) => sessions::list(&req),
            ("POST", ["sessions", id, "join"]) => sessions::join(id),
            ("GET", ["queue"]) => paging::queue(&req),
            ("GET", ["history"]) => history(&req),
            ("GET", ["specialties"]) => paging::specialties(),
            ("GET", ["practitioners"]) => directory::practitioners(&req),
            ("GET", ["patients"]) => directory::patients(&req),
            ("GET", ["oncall"]) => paging::list_rotas(),
            ("GET", ["oncall", code]) => paging::get_rota(code),
            ("PUT", ["oncall", code]) => paging::set_rota(&req, code),
            ("GET", ["rosters"]) => list_rosters(),
            ("GET", ["rosters", id]) => {
                host_staff()?;
                let r: Roster = kv::get_json(&roster_key(id)?)?.ok_or_else(|| {
                    Error::not_found(format!("Không có kíp 1-4-4-2 `{id}` (no roster `{id}`)"))
                })?;
                Ok(Response::ok_json(&roster_view(&r)))
            }
            ("PUT", ["rosters", id]) => set_roster(&req, id),
            ("DELETE", ["rosters", id]) => delete_roster(id),
            (_, ["consultations", ..])
            | (_, ["rosters", ..])
            | (_, ["oncall", ..])
            | (_, ["sessions", ..])
            | (_, ["queue" | "history" | "specialties" | "practitioners" | "patients"]) => {
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

/// Most urgent first.
fn urgency_rank(u: &str) -> u8 {
    match u {
        "emergency" => 0,
        "urgent" => 1,
        _ => 2,
    }
}

/// A practitioner of the host hospital by id, with their name; else what is wrong.
fn practitioner_of_host(id: &str) -> Result<Person, String> {
    let host = identity::current().hospital.id;
    match identity::practitioner(id) {
        None => Err(format!("không có bác sĩ `{id}` (no practitioner `{id}`)")),
        Some(p) if p.hospital_id != host => Err(format!(
            "`{id}` ({}) thuộc {}, không phải {host} (not a practitioner of {host})",
            p.name, p.hospital_id
        )),
        Some(p) => Ok(Person {
            id: p.id,
            name: p.name,
            hospital: p.hospital_id,
            title: p.title,
        }),
    }
}

/// Text without long digit runs: a citizen ID (12 digits) or insurance number (10) typed
/// into a summary or title never reaches an observer.
fn scrub(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 9 {
            out.push_str("[đã ẩn]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            run.push(ch);
        } else {
            flush(&mut run, &mut out);
            out.push(ch);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Cut `s` to at most `max` bytes at a character boundary, with an ellipsis.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

/// Whether `p` sees the patient: the host's staff, the requester and the invitees who take
/// part (not observers). Everyone else who may open the consultation is an observer.
fn sees_patient(c: &Consultation, p: &Principal) -> bool {
    is_host_staff(p)
        || c.requester == p.subject
        || c.invitees
            .iter()
            .any(|i| i.practitioner == p.subject && i.role != "observer")
}

/// The consultation as `p` may see it: observers get no patient, no records, no conclusion
/// and no national identifiers, whatever the requester typed.
fn view(c: &Consultation, p: &Principal) -> Value {
    if sees_patient(c, p) {
        return with_join_hints(c);
    }
    json!({
        "id": c.id,
        "status": c.status,
        "patient_hidden": true,
        "host_hospital": c.host_hospital,
        "host_hospital_name": c.host_hospital_name,
        "requesting_hospital": c.requesting_hospital,
        "requesting_hospital_name": c.requesting_hospital_name,
        "requester_name": c.requester_name,
        "summary": scrub(&c.summary),
        "urgency": c.urgency,
        "specialty": c.specialty,
        "created_at": c.created_at,
        "scheduled_at": c.scheduled_at,
        "chair_name": c.chair_name,
        "room_id": c.room_id,
        "session": c.session.as_ref().map(|s| json!({ "title": scrub(&s.title), "starts_at": s.starts_at })),
        "invitees": c.invitees.iter().map(|i| json!({
            "name": i.name, "hospital": i.hospital, "role": i.role,
            "practitioner": i.practitioner,
        })).collect::<Vec<_>>(),
    })
}

// ---- input ----

pub(crate) fn body(req: &Request) -> Result<Value, Error> {
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
    // Who may open the consultation (`visible`) gets a link to it. The on-call doctors and
    // the roster's consultants hear of a request by its page (`paging`), which the host
    // re-sends and escalates; an observer joining is news for the chair only.
    let mut people: Vec<String> = c.chair.iter().cloned().collect();
    if kind != "observer-joined" {
        people.push(c.requester.clone());
        people.extend(c.invitees.iter().map(|i| i.practitioner.clone()));
    }
    people.retain(|s| s != &actor.subject);
    people.sort();
    people.dedup();
    // One line of at most 300 bytes; observers get these too, so no digit runs.
    let mut title = format!("Hội chẩn {id}: {}", scrub(&vi.replace(['\n', '\r'], " ")));
    cut(&mut title, 300);
    let data = json!({ "consultation": id, "type": kind, "seq": seq, "en": scrub(en) });
    let link = format!("/consultations/{id}");
    // The capability takes at most 100 recipients a call.
    for batch in people.chunks(100) {
        if let Err(e) = notify::send(
            batch,
            &format!("teleconsult.{kind}"),
            &title,
            &data,
            Some(&link),
        ) {
            log::warn!(
                "consultation {id}: notifying the participants failed: {}",
                e.message()
            );
        }
    }
}

fn events(req: &Request, id: &str) -> Result<Response, Error> {
    let (c, p) = visible(id)?;
    let observer = !sees_patient(&c, &p);
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
        if let Some(mut e) = kv::get_json::<Value>(&key)? {
            if observer {
                // Texts a person typed (reasons, titles) lose digit runs; data goes.
                for k in ["vi", "en"] {
                    let t = scrub(e[k].as_str().unwrap_or(""));
                    e[k] = json!(t);
                }
                e["data"] = json!({});
            }
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
    let mut patient: Patient =
        serde_json::from_value(b.get("patient").cloned().unwrap_or(Value::Null)).map_err(|e| {
            Error::bad_request(format!(
                "`patient` không hợp lệ: cần `reference` hoặc `identifiers` (invalid patient: {e})"
            ))
        })?;
    if let Some(name) = &mut patient.name {
        cut(name, 200);
    }
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
    let specialty = match b.get("specialty").filter(|v| !v.is_null()) {
        None => None,
        Some(v) => Some(
            v.as_str()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.len() <= 200)
                .ok_or_else(|| {
                    Error::bad_request(
                        "`specialty`: tên hoặc mã chuyên khoa, tối đa 200 byte (a specialty's name or code)",
                    )
                })?
                .to_owned(),
        ),
    };
    let records_refs = references(&b, "records")?;
    let imaging = references(&b, "imaging")?;
    let documents = references(&b, "documents")?;
    let proposed = propose(&requesting, host.tier)?;
    let proposed = pages::with_requested_consultants(&b, proposed)?;
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
        delivered_reference: None,
        delivery_error: None,
        requesting_hospital_name: req_hospital.name.clone(),
        host_hospital_name: host.name.clone(),
        documents,
        chair_name: None,
        accepted_at: None,
        declined_at: None,
        declined_by_name: None,
        concluded_at: None,
        signed_conclusion: None,
        acknowledged_at: None,
        acknowledged_by_name: None,
        paging: None,
        session: None,
    };
    // Who is paged, planned before storing so the stored request says so.
    let mut c = c;
    c.paging = Some(paging::plan(&c).map_err(abandon)?);
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
    if let Some(pg) = &c.paging {
        paging::page(&c, pg);
    }
    log::info!("consultation {id} requested by {requesting}");
    let c = load(&id).unwrap_or(c);
    Ok(Response::json(201, &with_join_hints(&c)))
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
            out.push(view(&c, &p));
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
    // Room for observers who join a network session later (the platform's most).
    let max_participants = b["max_participants"]
        .as_u64()
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .unwrap_or(50);
    // Claim the consultation first so a second accept (or a decline) loses.
    transition(id, "requested", |c| {
        c.status = "accepting".into();
        c.chair = Some(p.subject.clone());
        c.chair_name = Some(p.name.clone());
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
                c.chair_name = None;
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
        c.accepted_at = Some(clock::now_millis());
        Ok(())
    })?;
    // Answered: the host stops paging.
    paging::answered(id, &p);
    let c = load(id).unwrap_or(c);
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
        c.declined_at = Some(clock::now_millis());
        c.declined_by_name = Some(p.name.clone());
        Ok(())
    })?;
    paging::answered(id, &p);
    let c = load(id).unwrap_or(c);
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
    let signed = signed_conclusion(&b, &p)?;
    let conclusion = signed.text();
    let kind = b["resource_type"]
        .as_str()
        .unwrap_or("Communication")
        .to_owned();
    // Claim the step, so two conclusions never both write.
    transition(id, "accepted", |c| {
        c.status = "concluding".into();
        Ok(())
    })?;
    let written = write_conclusion(&c, &kind, &signed, &b);
    let (reference, resource) = match written {
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
    // The requesting hospital gets its copy while the records still flow; the conclusion
    // at the upper hospital stands either way, and a failed delivery is shown, not lost.
    let (delivered, delivery_error) = deliver_to_requester(&c, &kind, resource);
    let c = transition(id, "concluding", |c| {
        c.status = "concluded".into();
        c.delivered_reference = delivered.clone();
        c.delivery_error = delivery_error.clone();
        c.conclusion = Some(conclusion.clone());
        c.conclusion_reference = Some(reference.clone());
        c.signed_conclusion = Some(signed.clone());
        c.concluded_at = Some(signed.signed_at);
        Ok(())
    })?;
    // A page still running (e.g. accepted through another path) stops too.
    paging::resolve(id);
    // The consultation is over: the patient's records stop flowing.
    close_records_access(&c, records::ConsultationStep::End);
    event(
        id,
        "concluded",
        &p,
        format!(
            "{} ký kết luận hội chẩn ({reference}); phòng đã đóng; bệnh viện yêu cầu xin xác nhận đã nhận",
            p.name
        ),
        format!(
            "{} signed the conclusion ({reference}); the room is closed; the requesting hospital is asked to acknowledge it",
            p.name
        ),
        json!({ "reference": reference }),
    )?;
    Ok(Response::ok_json(&c))
}

/// Deliver the written conclusion to the requesting hospital's record of the patient,
/// through the platform's consultation record; `(reference there, why not)`.
fn deliver_to_requester(
    c: &Consultation,
    kind: &str,
    mut resource: Value,
) -> (Option<String>, Option<String>) {
    let Some(rc) = &c.records_consultation else {
        return (
            None,
            Some("bệnh nhân không có CCCD/BHXH nên không gửi được về bệnh viện yêu cầu (the patient has no CCCD/BHXH to match at the requesting hospital)".into()),
        );
    };
    if let Some(o) = resource.as_object_mut() {
        for k in ["id", "meta", "subject"] {
            o.remove(k);
        }
    }
    match records::deliver_conclusion(rc, &resource) {
        Ok(stored) => {
            let id = stored["id"].as_str().unwrap_or_default();
            (Some(format!("{kind}/{id}")), None)
        }
        Err(e) => {
            log::warn!(
                "consultation {}: the conclusion was not delivered to {}: {}",
                c.id,
                c.requesting_hospital,
                e.message()
            );
            (None, Some(e.message().to_owned()))
        }
    }
}

fn write_conclusion(
    c: &Consultation,
    kind: &str,
    signed: &SignedConclusion,
    b: &Value,
) -> Result<(String, Value), Error> {
    let conclusion = signed.text();
    let signature = signed.signature();
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
            "note": [{ "text": about }, { "text": signature }],
        }),
        "DiagnosticReport" => json!({
            "resourceType": "DiagnosticReport",
            "identifier": identifier,
            "status": "final",
            "category": [{ "text": "Hội chẩn (teleconsultation)" }],
            "code": { "text": b["code_text"].as_str().unwrap_or("Kết luận hội chẩn") },
            "issued": now,
            "conclusion": format!("{conclusion}\n{about}\n{signature}"),
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
    Ok((format!("{kind}/{rid}"), resource))
}

/// The structured conclusion of the body (`assessment`, `recommendations`, `follow_up`; a
/// lone `conclusion` is the assessment), signed by `p` now.
fn signed_conclusion(b: &Value, p: &Principal) -> Result<SignedConclusion, Error> {
    let optional = |key: &str| -> Result<Option<String>, Error> {
        match b.get(key).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(_) => required_text(b, key, MAX_SUMMARY).map(Some),
        }
    };
    let assessment = match optional("assessment")? {
        Some(a) => a,
        None => required_text(b, "conclusion", MAX_SUMMARY).map_err(|_| {
            Error::bad_request(
                "Thiếu `assessment` (đánh giá) hoặc `conclusion` (`assessment` or `conclusion` is required)",
            )
        })?,
    };
    Ok(SignedConclusion {
        assessment,
        recommendations: optional("recommendations")?,
        follow_up: optional("follow_up")?,
        signed_by: p.subject.clone(),
        signed_by_name: p.name.clone(),
        signed_by_title: identity::practitioner(&p.subject).and_then(|x| x.title),
        signed_at: clock::now_millis(),
    })
}

impl SignedConclusion {
    /// The conclusion as one text: the assessment, then each part that was given.
    fn text(&self) -> String {
        let mut t = self.assessment.clone();
        if let Some(r) = &self.recommendations {
            t.push_str(&format!("\nKhuyến nghị (recommendations): {r}"));
        }
        if let Some(f) = &self.follow_up {
            t.push_str(&format!("\nTheo dõi (follow-up): {f}"));
        }
        t
    }

    /// Who signed, and when.
    fn signature(&self) -> String {
        format!(
            "Ký bởi (signed by) {}{} [{}] lúc (at) {}",
            self.signed_by_title
                .as_ref()
                .map(|t| format!("{t} "))
                .unwrap_or_default(),
            self.signed_by_name,
            self.signed_by,
            iso8601(self.signed_at)
        )
    }
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

fn roster_view(r: &Roster) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    let named = |id: &String| match identity::practitioner(id) {
        Some(p) => {
            let h = identity::hospital(&p.hospital_id);
            json!({
                "id": p.id, "name": p.name, "title": p.title, "specialty": p.specialty,
                "hospital": p.hospital_id,
                "hospital_name": h.as_ref().map(|h| h.name.clone()),
                "tier": h.map(|h| h.tier.as_str()),
            })
        }
        None => json!({ "id": id, "name": null }),
    };
    v["members"] = json!({
        "central": named(&r.central),
        "provincial": r.provincial.iter().map(named).collect::<Vec<_>>(),
        "district": r.district.iter().map(named).collect::<Vec<_>>(),
        "commune": r.commune.iter().map(named).collect::<Vec<_>>(),
    });
    v
}

fn delete_roster(id: &str) -> Result<Response, Error> {
    let p = host_staff()?;
    if !p.has_role("hospital-admin") {
        return Err(Error::forbidden(
            "Chỉ quản trị bệnh viện mới xoá kíp 1-4-4-2 (hospital-admin only)",
        ));
    }
    if !kv::delete(&roster_key(id)?)? {
        return Err(Error::not_found(format!(
            "Không có kíp 1-4-4-2 `{id}` (no roster `{id}`)"
        )));
    }
    Ok(Response::ok_json(&json!({ "deleted": id })))
}

// ---- after the conclusion; attachments; history ----

/// `POST /consultations/{id}/acknowledge`: the requester (or a practitioner of the
/// requesting hospital) confirms the conclusion arrived.
fn acknowledge(id: &str) -> Result<Response, Error> {
    let (p, hospital) = practitioner()?;
    let c = load(id)?;
    if c.requester != p.subject && c.requesting_hospital != hospital {
        return Err(Error::not_found(format!(
            "Không có yêu cầu hội chẩn `{id}` (no consultation `{id}`)"
        )));
    }
    let at = clock::now_millis();
    let c = kv::update_json(&consultation_key(id)?, |current: Option<Consultation>| {
        let mut c = current.ok_or_else(|| Error::not_found(id.to_owned()))?;
        if c.status != "concluded" {
            return Err(Error::conflict(format!(
                "Hội chẩn `{id}` đang ở trạng thái `{}`, chưa có kết luận để xác nhận (the consultation is {}, not concluded)",
                c.status, c.status
            )));
        }
        if c.acknowledged_at.is_some() {
            return Err(Error::conflict(format!(
                "Kết luận đã được {} xác nhận (already acknowledged)",
                c.acknowledged_by_name.clone().unwrap_or_default()
            )));
        }
        c.acknowledged_at = Some(at);
        c.acknowledged_by_name = Some(p.name.clone());
        Ok(c)
    })?;
    event(
        id,
        "acknowledged",
        &p,
        format!(
            "{} ({}) xác nhận đã nhận kết luận",
            p.name, c.requesting_hospital_name
        ),
        format!(
            "{} ({}) acknowledged the conclusion",
            p.name, c.requesting_hospital_name
        ),
        json!({}),
    )?;
    Ok(Response::ok_json(&with_join_hints(&c)))
}

/// `POST /consultations/{id}/attachments` `{records, imaging, documents}`: the requester adds
/// references (lab reports, imaging studies, documents) before the conclusion.
fn attach(req: &Request, id: &str) -> Result<Response, Error> {
    let p = caller()?;
    let c = load(id)?;
    if c.requester != p.subject {
        return Err(if involved(&c, &p) {
            Error::forbidden(
                "Chỉ người gửi yêu cầu mới đính kèm hồ sơ (only the requester attaches records)",
            )
        } else {
            Error::not_found(format!(
                "Không có yêu cầu hội chẩn `{id}` (no consultation `{id}`)"
            ))
        });
    }
    let b = body(req)?;
    let (records_refs, imaging, documents) = (
        references(&b, "records")?,
        references(&b, "imaging")?,
        references(&b, "documents")?,
    );
    if records_refs.is_empty() && imaging.is_empty() && documents.is_empty() {
        return Err(Error::bad_request(
            "Cần ít nhất một tham chiếu trong `records`, `imaging` hoặc `documents` (nothing to attach)",
        ));
    }
    let merge = |into: &mut Vec<String>, add: &[String], key: &str| -> Result<(), Error> {
        for r in add {
            if !into.contains(r) {
                into.push(r.clone());
            }
        }
        if into.len() > MAX_REFERENCES {
            return Err(Error::bad_request(format!(
                "`{key}`: tối đa {MAX_REFERENCES} (at most {MAX_REFERENCES})"
            )));
        }
        Ok(())
    };
    let c = kv::update_json(&consultation_key(id)?, |current: Option<Consultation>| {
        let mut c = current.ok_or_else(|| Error::not_found(id.to_owned()))?;
        if !matches!(c.status.as_str(), "requested" | "accepted") {
            return Err(Error::conflict(format!(
                "Hội chẩn `{id}` đang ở trạng thái `{}`: không đính kèm thêm được (the consultation is {})",
                c.status, c.status
            )));
        }
        merge(&mut c.records, &records_refs, "records")?;
        merge(&mut c.imaging, &imaging, "imaging")?;
        merge(&mut c.documents, &documents, "documents")?;
        Ok(c)
    })?;
    let n = records_refs.len() + imaging.len() + documents.len();
    event(
        id,
        "attached",
        &p,
        format!("{} đính kèm {n} hồ sơ", p.name),
        format!("{} attached {n} record(s)", p.name),
        json!({ "records": records_refs, "imaging": imaging, "documents": documents }),
    )?;
    Ok(Response::ok_json(&with_join_hints(&c)))
}

/// `GET /history[?status=]`: the host's staff see every consultation of the host; another
/// hospital's practitioners and admins those their hospital requested, and any they took
/// part in. Status, timings and participants by name; never the patient.
fn history(req: &Request) -> Result<Response, Error> {
    let p = caller()?;
    if !(p.has_role("practitioner") || p.has_role("hospital-admin")) {
        return Err(Error::forbidden(
            "Chỉ bác sĩ và quản trị bệnh viện (practitioners and hospital admins only)",
        ));
    }
    let mine = p
        .hospital
        .as_ref()
        .map(|h| h.id.clone())
        .unwrap_or_default();
    let staff = is_host_staff(&p);
    let status = req.query_param("status");
    let mut out: Vec<Consultation> = Vec::new();
    for key in kv::list_keys(CONSULTATION_PREFIX)? {
        let Some(c) = kv::get_json::<Consultation>(&key)? else {
            continue;
        };
        let ours = staff || c.requesting_hospital == mine || involved(&c, &p);
        if ours && status.as_deref().is_none_or(|s| s == c.status) {
            out.push(c);
        }
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    let entries: Vec<Value> = out
        .iter()
        .map(|c| {
            let participants: Vec<Value> = c
                .invitees
                .iter()
                .map(|i| {
                    json!({
                        "name": i.name, "role": i.role, "hospital": i.hospital,
                        "hospital_name": identity::hospital(&i.hospital).map(|h| h.name),
                    })
                })
                .collect();
            json!({
                "id": c.id,
                "status": c.status,
                "urgency": c.urgency,
                "specialty": c.specialty,
                "host_hospital": c.host_hospital,
                "host_hospital_name": c.host_hospital_name,
                "requesting_hospital": c.requesting_hospital,
                "requesting_hospital_name": c.requesting_hospital_name,
                "requester_name": c.requester_name,
                "chair_name": c.chair_name,
                "participants": participants,
                "decline_reason": c.decline_reason,
                "timings": {
                    "requested_at": c.created_at,
                    "accepted_at": c.accepted_at,
                    "declined_at": c.declined_at,
                    "scheduled_at": c.scheduled_at,
                    "session_starts_at": c.session.as_ref().map(|s| s.starts_at),
                    "concluded_at": c.concluded_at,
                    "acknowledged_at": c.acknowledged_at,
                    "minutes_to_accept": c.accepted_at.map(|a| a.saturating_sub(c.created_at) / 60_000),
                },
                "signed_by_name": c.signed_conclusion.as_ref().map(|s| s.signed_by_name.clone()),
                "acknowledged_by_name": c.acknowledged_by_name,
            })
        })
        .collect();
    Ok(Response::ok_json(&json!({ "consultations": entries })))
}

export_plugin!(Teleconsult);
