//! On-call rotas, paging and the triage queue of the host hospital.
//!
//! Plugins have no timers and no clock of their own, so the re-sending and escalation of an
//! unanswered page run in the host: `notify::page` hands the host every stage at once (who,
//! and after how many minutes), the host pages the first stage, re-sends and escalates from
//! its sweeper, and the plugin calls `notify::resolve_page` when someone answers (accepts,
//! declines, or acknowledges the page). See `docs/teleconsult.md`.
use serde::{Deserialize, Serialize};
use vtelehealth_plugin_sdk::bindings::vtelehealth::platform::notify as raw_notify;
use vtelehealth_plugin_sdk::identity::{self, Principal};
use vtelehealth_plugin_sdk::serde_json::Value;
use vtelehealth_plugin_sdk::{Error, Request, Response, clock, json, kv, log};

use crate::{
    Consultation, Person, body, caller, event, host_staff, iso8601, load, practitioner_of_host,
    scrub, urgency_rank,
};

const ROTA_PREFIX: &str = "oncall/";
/// Most doctors on call at once, and in a specialty's group.
const MAX_ON_CALL: usize = 10;
const MAX_GROUP: usize = 60;

/// The on-call rota of one specialty, set by the host's hospital admin.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct Rota {
    /// `tim-mach`: the path segment.
    pub code: String,
    /// `Tim mạch`: shown to people, and matched against a request's `specialty`.
    pub name: String,
    /// Paged at once for an urgent or emergency request.
    pub on_call: Vec<Person>,
    /// The specialty's whole group: paged when the on-call doctors do not answer, and for a
    /// routine request when its mentors do not.
    pub group: Vec<Person>,
    /// The hospital admin who set the rota: paged last.
    pub admin: Person,
    pub resend_minutes: u32,
    pub escalate_after_minutes: u32,
    pub routine_escalate_after_minutes: u32,
    pub updated_at: u64,
}

/// One stage of a consultation's page, by names.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct PagedStage {
    /// `on-call`, `group`, `admin` or `mentors`.
    pub label: String,
    pub after_minutes: u32,
    pub people: Vec<Person>,
}

/// Who a request paged, and whether someone answered.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct Paging {
    /// `paging`, `answered`, `unrouted` (nobody to page: the request waits in the queue) or
    /// `failed` (the platform refused the page; logged).
    pub status: String,
    #[serde(default)]
    pub rota: Option<String>,
    pub stages: Vec<PagedStage>,
    pub resend_minutes: u32,
    pub started_at: u64,
    #[serde(default)]
    pub answered_by_name: Option<String>,
    #[serde(default)]
    pub answered_at: Option<u64>,
}

impl Paging {
    pub fn paged(&self, subject: &str) -> bool {
        self.stages
            .iter()
            .any(|s| s.people.iter().any(|p| p.id == subject))
    }
}

fn rota_key(code: &str) -> Result<String, Error> {
    if code.is_empty()
        || code.len() > 64
        || !code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(Error::bad_request(format!(
            "Mã chuyên khoa `{code}` không hợp lệ: 1-64 ký tự a-z, 0-9, '-' (invalid specialty code)"
        )));
    }
    Ok(format!("{ROTA_PREFIX}{code}"))
}

pub(crate) fn rotas() -> Result<Vec<Rota>, Error> {
    let mut out = Vec::new();
    for key in kv::list_keys(ROTA_PREFIX)? {
        if let Some(r) = kv::get_json::<Rota>(&key)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// The rota whose code or name is `specialty` (letter case aside).
pub(crate) fn rota_for(specialty: Option<&str>) -> Result<Option<Rota>, Error> {
    let Some(s) = specialty.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let s = s.to_lowercase();
    Ok(rotas()?
        .into_iter()
        .find(|r| r.code == s || r.name.to_lowercase() == s))
}

/// `GET /oncall`: every rota of the host, by names.
pub(crate) fn list_rotas() -> Result<Response, Error> {
    host_staff()?;
    Ok(Response::ok_json(&json!({ "rotas": rotas()? })))
}

/// `GET /oncall/{code}`.
pub(crate) fn get_rota(code: &str) -> Result<Response, Error> {
    host_staff()?;
    let r: Rota = kv::get_json(&rota_key(code)?)?.ok_or_else(|| {
        Error::not_found(format!(
            "Chưa có lịch trực chuyên khoa `{code}` (no on-call rota `{code}`)"
        ))
    })?;
    Ok(Response::ok_json(&r))
}

fn minutes(b: &Value, key: &str, default: u32, max: u32) -> Result<u32, Error> {
    match b.get(key).filter(|v| !v.is_null()) {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "`{key}` phải là số phút từ 1 đến {max} (`{key}`: 1 to {max} minutes)"
                ))
            }),
    }
}

/// Practitioners of the host named by id in `b[key]`, with their names; every problem named.
fn host_people(
    b: &Value,
    key: &str,
    min: usize,
    max: usize,
    problems: &mut Vec<String>,
) -> Result<Vec<Person>, Error> {
    let items = match b.get(key).filter(|v| !v.is_null()) {
        None => Vec::new(),
        Some(v) => v.as_array().cloned().ok_or_else(|| {
            Error::bad_request(format!(
                "`{key}` phải là danh sách mã bác sĩ (must be a list of practitioner ids)"
            ))
        })?,
    };
    if items.len() < min || items.len() > max {
        return Err(Error::bad_request(format!(
            "`{key}`: cần {min} đến {max} bác sĩ ({min} to {max} practitioners)"
        )));
    }
    let mut out: Vec<Person> = Vec::new();
    for x in &items {
        let id = x.as_str().unwrap_or("");
        if out.iter().any(|p| p.id == id) {
            problems.push(format!(
                "`{id}` có mặt hai lần trong `{key}` (listed twice)"
            ));
            continue;
        }
        match practitioner_of_host(id) {
            Ok(p) => out.push(p),
            Err(e) => problems.push(e),
        }
    }
    Ok(out)
}

/// `PUT /oncall/{code}`: the host's hospital admin sets who is on call for a specialty.
pub(crate) fn set_rota(req: &Request, code: &str) -> Result<Response, Error> {
    let p = host_staff()?;
    if !p.has_role("hospital-admin") {
        return Err(Error::forbidden(
            "Chỉ quản trị bệnh viện mới đặt lịch trực (hospital-admin only)",
        ));
    }
    let key = rota_key(code)?;
    let b = body(req)?;
    let name = b["name"]
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 200)
        .ok_or_else(|| {
            Error::bad_request(
                "Thiếu `name`: tên chuyên khoa, tối đa 200 byte (`name`, the specialty's name, is required)",
            )
        })?
        .to_owned();
    let mut problems = Vec::new();
    let on_call = host_people(&b, "on_call", 1, MAX_ON_CALL, &mut problems)?;
    let mut group = host_people(&b, "group", 0, MAX_GROUP, &mut problems)?;
    if !problems.is_empty() {
        return Err(Error::bad_request(format!(
            "Lịch trực không hợp lệ (invalid rota): {}",
            problems.join("; ")
        )));
    }
    // The on-call doctors are of the group too; the group pages the others.
    group.retain(|g| !on_call.iter().any(|o| o.id == g.id));
    let escalate_after_minutes = minutes(&b, "escalate_after_minutes", 15, 24 * 60)?;
    let rota = Rota {
        code: code.to_owned(),
        name,
        on_call,
        group,
        admin: Person {
            id: p.subject.clone(),
            name: p.name.clone(),
            hospital: identity::current().hospital.id,
            title: None,
        },
        resend_minutes: minutes(&b, "resend_minutes", 5, 24 * 60)?,
        escalate_after_minutes,
        routine_escalate_after_minutes: minutes(
            &b,
            "routine_escalate_after_minutes",
            240,
            7 * 24 * 60,
        )?,
        updated_at: clock::now_millis(),
    };
    if rota.resend_minutes > rota.escalate_after_minutes {
        return Err(Error::bad_request(
            "`resend_minutes` không được lớn hơn `escalate_after_minutes` (a reminder comes before the escalation)",
        ));
    }
    kv::set_json(&key, &rota)?;
    Ok(Response::ok_json(&rota))
}

/// Who a new request pages, stage by stage: urgent and emergency requests the specialty's
/// on-call doctors, then its group, then the admin who set the rota; routine ones the
/// rostered mentors (1-4-4-2), then the specialty's group. Each person once, at the first
/// stage that names them; empty stages left out.
pub(crate) fn plan(c: &Consultation) -> Result<Paging, Error> {
    let rota = rota_for(c.specialty.as_deref())?;
    let mentors: Vec<Person> = c
        .proposed_consultants
        .iter()
        .filter_map(|p| {
            Some(Person {
                id: p["practitioner"].as_str()?.to_owned(),
                name: p["name"].as_str().unwrap_or("").to_owned(),
                hospital: p["hospital"].as_str().unwrap_or("").to_owned(),
                title: None,
            })
        })
        .collect();
    let host_mentors: Vec<Person> = mentors
        .iter()
        .filter(|m| m.hospital == c.host_hospital)
        .cloned()
        .collect();
    let urgent = c.urgency != "routine";
    let mut stages: Vec<PagedStage> = Vec::new();
    let add = |stages: &mut Vec<PagedStage>, label: &str, after: u32, people: Vec<Person>| {
        let mut fresh: Vec<Person> = Vec::new();
        for p in people {
            let seen = stages.iter().any(|s| s.people.iter().any(|q| q.id == p.id))
                || fresh.iter().any(|q| q.id == p.id);
            if p.id != c.requester && !seen {
                fresh.push(p);
            }
        }
        // The host pages in ascending minutes; a stage at the same time as the last joins it.
        if !fresh.is_empty() {
            match stages.last_mut() {
                Some(last) if last.after_minutes >= after => last.people.extend(fresh),
                _ => stages.push(PagedStage {
                    label: label.into(),
                    after_minutes: after,
                    people: fresh,
                }),
            }
        }
    };
    let resend_minutes = match (&rota, urgent) {
        (Some(r), true) => {
            add(&mut stages, "on-call", 0, r.on_call.clone());
            add(
                &mut stages,
                "group",
                r.escalate_after_minutes,
                r.group.clone(),
            );
            add(
                &mut stages,
                "admin",
                r.escalate_after_minutes * 2,
                vec![r.admin.clone()],
            );
            r.resend_minutes
        }
        (Some(r), false) => {
            add(&mut stages, "mentors", 0, mentors.clone());
            let first = if stages.is_empty() {
                0
            } else {
                r.routine_escalate_after_minutes
            };
            let mut group = r.on_call.clone();
            group.extend(r.group.iter().cloned());
            add(&mut stages, "group", first, group);
            0
        }
        (None, true) => {
            // No rota for the specialty: the host's rostered mentors, re-sent every 5 minutes.
            add(&mut stages, "mentors", 0, host_mentors);
            5
        }
        (None, false) => {
            add(&mut stages, "mentors", 0, mentors);
            0
        }
    };
    Ok(Paging {
        status: if stages.is_empty() {
            "unrouted".into()
        } else {
            "paging".into()
        },
        rota: rota.map(|r| r.code),
        stages,
        resend_minutes,
        started_at: clock::now_millis(),
        answered_by_name: None,
        answered_at: None,
    })
}

/// Hand the page to the host, which pages the first stage at once and re-sends and escalates
/// until [`resolve`]. A failure is logged: the request is stored and in the queue anyway.
pub(crate) fn page(c: &Consultation, paging: &Paging) {
    if paging.stages.is_empty() {
        return;
    }
    let urgency = match c.urgency.as_str() {
        "emergency" => "CẤP CỨU",
        "urgent" => "KHẨN",
        _ => "thường quy",
    };
    let mut title = format!(
        "Hội chẩn {} ({urgency}) từ {}: {}",
        c.id,
        c.requesting_hospital_name,
        scrub(&c.summary).replace(['\n', '\r'], " ")
    );
    crate::cut(&mut title, 280);
    let message = raw_notify::Message {
        topic: "teleconsult.page".into(),
        title,
        data: json!({
            "consultation": c.id, "urgency": c.urgency, "specialty": c.specialty,
            "en": format!("Consultation {} ({}) requested by {}", c.id, c.urgency, c.requesting_hospital_name),
        })
        .to_string(),
        link: Some(format!("/consultations/{}/page", c.id)),
    };
    let stages: Vec<raw_notify::PageStage> = paging
        .stages
        .iter()
        .map(|s| raw_notify::PageStage {
            recipients: s.people.iter().map(|p| p.id.clone()).collect(),
            after_minutes: s.after_minutes,
        })
        .collect();
    if let Err(e) = raw_notify::page(&c.id, &message, &stages, paging.resend_minutes) {
        log::warn!("consultation {}: paging failed: {:?}", c.id, e);
        // Said on the request, so the queue shows that nobody was paged.
        if let Ok(key) = crate::consultation_key(&c.id) {
            let _ = kv::update_json(&key, |current: Option<Consultation>| {
                let mut c = current.ok_or_else(|| Error::not_found("gone"))?;
                if let Some(p) = c.paging.as_mut() {
                    p.status = "failed".into();
                }
                Ok(c)
            });
        }
    }
}

/// Stop paging: someone answered. Logged on failure (the page then runs its course).
pub(crate) fn resolve(id: &str) {
    if let Err(e) = raw_notify::resolve_page(id) {
        log::warn!("consultation {id}: the page could not be resolved: {e:?}");
    }
}

/// The page's answer recorded on the consultation (any state).
pub(crate) fn answered(id: &str, by: &Principal) {
    resolve(id);
    let key = match crate::consultation_key(id) {
        Ok(k) => k,
        Err(_) => return,
    };
    let at = clock::now_millis();
    let _ = kv::update_json(&key, |current: Option<Consultation>| {
        let mut c = current.ok_or_else(|| Error::not_found(id.to_owned()))?;
        if let Some(p) = c.paging.as_mut()
            && p.status == "paging"
        {
            p.status = "answered".into();
            p.answered_by_name = Some(by.name.clone());
            p.answered_at = Some(at);
        }
        Ok(c)
    });
}

/// What a page's link shows: the consultation's state now, so a page that arrives or is
/// opened after someone else answered (or after the conclusion) says so instead of failing.
pub(crate) fn page_view(c: &Consultation) -> Value {
    let when = |t: Option<u64>| t.map(iso8601).unwrap_or_default();
    let chair = c.chair_name.clone().unwrap_or_default();
    let (open, vi, en) = match c.status.as_str() {
        "requested" => (
            true,
            "Yêu cầu đang chờ: nhận (kèm lịch) hoặc từ chối (kèm lý do)".to_owned(),
            "Waiting: accept with a schedule, or decline with a reason".to_owned(),
        ),
        "accepting" | "accepted" => (
            false,
            format!(
                "{chair} đã nhận lúc {} (UTC); không cần trả lời trang này nữa",
                when(c.accepted_at)
            ),
            format!(
                "{chair} accepted it at {} (UTC); this page needs no answer any more",
                when(c.accepted_at)
            ),
        ),
        "concluding" | "concluded" => (
            false,
            format!(
                "Hội chẩn đã kết luận lúc {} (UTC), chủ trì {chair}; không cần trả lời trang này nữa",
                when(c.concluded_at)
            ),
            format!(
                "Concluded at {} (UTC), chaired by {chair}; this page needs no answer any more",
                when(c.concluded_at)
            ),
        ),
        _ => (
            false,
            format!(
                "{} đã từ chối lúc {} (UTC): {}",
                c.declined_by_name.clone().unwrap_or_default(),
                when(c.declined_at),
                c.decline_reason.clone().unwrap_or_default()
            ),
            format!(
                "Declined by {} at {} (UTC)",
                c.declined_by_name.clone().unwrap_or_default(),
                when(c.declined_at)
            ),
        ),
    };
    json!({
        "consultation": c.id,
        "status": c.status,
        "open": open,
        "actions": if open { json!(["accept", "decline"]) } else { json!([]) },
        "urgency": c.urgency,
        "specialty": c.specialty,
        "summary": scrub(&c.summary),
        "requesting_hospital": c.requesting_hospital,
        "requesting_hospital_name": c.requesting_hospital_name,
        "requester_name": c.requester_name,
        "requested_at": c.created_at,
        "chair_name": c.chair_name,
        "paging": c.paging,
        "vi": vi,
        "en": en,
    })
}

/// The consultation, when the caller was paged about it or may see it anyway.
fn paged_or_visible(id: &str) -> Result<(Consultation, Principal), Error> {
    let p = caller()?;
    let c = load(id)?;
    let paged = c.paging.as_ref().is_some_and(|pg| pg.paged(&p.subject));
    if !(paged || crate::involved(&c, &p)) {
        return Err(Error::not_found(format!(
            "Không có yêu cầu hội chẩn `{id}` (no consultation `{id}`)"
        )));
    }
    Ok((c, p))
}

/// `GET /consultations/{id}/page`.
pub(crate) fn get_page(id: &str) -> Result<Response, Error> {
    let (c, _) = paged_or_visible(id)?;
    Ok(Response::ok_json(&page_view(&c)))
}

/// `POST /consultations/{id}/page/ack`: a paged doctor says "I have it", which
/// stops the re-sending and escalation; the request stays to accept or decline. A stale
/// page (answered, or the consultation moved on) answers with the state, not an error.
pub(crate) fn ack_page(id: &str) -> Result<Response, Error> {
    let (c, p) = paged_or_visible(id)?;
    let pending =
        c.status == "requested" && c.paging.as_ref().is_some_and(|pg| pg.status == "paging");
    if !pending {
        let mut v = page_view(&c);
        v["acknowledged"] = json!(false);
        return Ok(Response::ok_json(&v));
    }
    // The requester or an observer does not answer a page meant for the upper hospital.
    let paged = c.paging.as_ref().is_some_and(|pg| pg.paged(&p.subject));
    if !(paged || crate::is_host_staff(&p)) {
        return Err(Error::forbidden(
            "Chỉ người được gọi hoặc nhân viên bệnh viện tuyến trên trả lời trang này (only the people paged or the host's staff answer a page)",
        ));
    }
    answered(id, &p);
    event(
        id,
        "page-acknowledged",
        &p,
        format!("{} đã nhận trang và đang xem yêu cầu", p.name),
        format!(
            "{} acknowledged the page and is looking at the request",
            p.name
        ),
        json!({}),
    )?;
    let mut v = page_view(&load(id)?);
    v["acknowledged"] = json!(true);
    Ok(Response::ok_json(&v))
}

/// One line of the queue.
fn queue_item(c: &Consultation, now: u64) -> Value {
    json!({
        "id": c.id,
        "urgency": c.urgency,
        "summary": c.summary,
        "specialty": c.specialty,
        "requesting_hospital": c.requesting_hospital,
        "requesting_hospital_name": c.requesting_hospital_name,
        "requester_name": c.requester_name,
        "requested_at": c.created_at,
        "waiting_minutes": now.saturating_sub(c.created_at) / 60_000,
        "paging": c.paging.as_ref().map(|p| json!({
            "status": p.status,
            "stages": p.stages.iter().map(|s| json!({
                "label": s.label, "after_minutes": s.after_minutes,
                "names": s.people.iter().map(|x| x.name.clone()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "answered_by_name": p.answered_by_name,
        })),
        "proposed_consultants": c.proposed_consultants,
    })
}

/// `GET /queue[?specialty=]`: the host's incoming requests per specialty, the most urgent
/// and then the oldest first.
pub(crate) fn queue(req: &Request) -> Result<Response, Error> {
    let p = host_staff()?;
    if !(p.has_role("practitioner") || p.has_role("hospital-admin")) {
        return Err(Error::forbidden(
            "Chỉ bác sĩ và quản trị của bệnh viện (practitioners and admins of the host only)",
        ));
    }
    let only = req.query_param("specialty").map(|s| s.to_lowercase());
    let rotas = rotas()?;
    // A request's specialty by its rota's code when one matches, else as written.
    let group_of = |c: &Consultation| -> (String, String) {
        let s = c.specialty.clone().unwrap_or_default();
        let low = s.to_lowercase();
        match rotas
            .iter()
            .find(|r| r.code == low || r.name.to_lowercase() == low)
        {
            Some(r) => (r.code.clone(), r.name.clone()),
            None if s.is_empty() => ("".into(), "Chưa ghi chuyên khoa (no specialty)".into()),
            None => (low, s),
        }
    };
    let mut waiting: Vec<Consultation> = Vec::new();
    for key in kv::list_keys(crate::CONSULTATION_PREFIX)? {
        if let Some(c) = kv::get_json::<Consultation>(&key)?
            && c.status == "requested"
        {
            waiting.push(c);
        }
    }
    waiting.sort_by_key(|c| (urgency_rank(&c.urgency), c.created_at));
    let now = clock::now_millis();
    let mut groups: Vec<(String, String, Vec<Value>)> = Vec::new();
    for c in &waiting {
        let (code, name) = group_of(c);
        if only
            .as_deref()
            .is_some_and(|o| o != code && o != name.to_lowercase())
        {
            continue;
        }
        match groups.iter_mut().find(|g| g.0 == code) {
            Some(g) => g.2.push(queue_item(c, now)),
            None => groups.push((code, name, vec![queue_item(c, now)])),
        }
    }
    let out: Vec<Value> = groups
        .into_iter()
        .map(|(code, name, items)| json!({ "code": code, "name": name, "requests": items }))
        .collect();
    Ok(Response::ok_json(&json!({ "specialties": out })))
}

/// `GET /specialties`: what a requesting doctor chooses from at this (upper) hospital: the
/// specialties with an on-call rota, by names. Any practitioner of the network.
pub(crate) fn specialties() -> Result<Response, Error> {
    crate::practitioner()?;
    let host = identity::current().hospital;
    let out: Vec<Value> = rotas()?
        .into_iter()
        .map(|r| {
            json!({
                "code": r.code, "name": r.name,
                "on_call": r.on_call.iter().map(|p| json!({ "name": p.name, "title": p.title })).collect::<Vec<_>>(),
                "group_size": r.group.len() + r.on_call.len(),
            })
        })
        .collect();
    Ok(Response::ok_json(&json!({
        "hospital": host.id, "hospital_name": host.name, "tier": host.tier.as_str(),
        "specialties": out,
    })))
}
