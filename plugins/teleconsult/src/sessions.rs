//! Network sessions (1-N): the chair opens an accepted consultation to the whole network as a
//! teaching session; any practitioner of any hospital lists the schedule and joins as an
//! observer with one call. Observers get the video room and never the patient: what the
//! plugin returns to them carries no identifiers, records or conclusion (`crate::view`), and
//! the platform refuses their hospital the patient's records (it is not part of the records
//! consultation).
use serde::{Deserialize, Serialize};
use vtelehealth_plugin_sdk::identity;
use vtelehealth_plugin_sdk::serde_json::Value;
use vtelehealth_plugin_sdk::video::{self, Role};
use vtelehealth_plugin_sdk::{Error, Request, Response, clock, json, kv};

use crate::{
    CONSULTATION_PREFIX, Consultation, Invitee, body, event, host_practitioner, iso8601, load,
    practitioner, required_text, scrub, transition,
};

/// A consultation opened to the network.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct Session {
    pub title: String,
    /// Milliseconds since the epoch.
    pub starts_at: u64,
    pub opened_by: String,
    pub opened_by_name: String,
    pub opened_at: u64,
}

/// `POST /consultations/{id}/session` `{title, starts_at}`: the chair opens it (again: a new
/// title or time replaces the old).
pub(crate) fn open(req: &Request, id: &str) -> Result<Response, Error> {
    let p = host_practitioner()?;
    let c = load(id)?;
    if c.chair.as_deref() != Some(p.subject.as_str()) {
        return Err(Error::forbidden(
            "Chỉ chủ trì hội chẩn mới mở phiên cho mạng lưới (only the chair opens a network session)",
        ));
    }
    let b = body(req)?;
    let title = required_text(&b, "title", 300)?;
    if title.chars().any(char::is_control) {
        return Err(Error::bad_request(
            "`title` là một dòng, không có ký tự điều khiển (one line)",
        ));
    }
    let starts_at = b["starts_at"]
        .as_u64()
        .or(c.scheduled_at)
        .ok_or_else(|| {
            Error::bad_request(
                "Thiếu `starts_at` (mili giây từ 1970) (`starts_at`, milliseconds since the epoch, is required)",
            )
        })?;
    let session = Session {
        title: title.clone(),
        starts_at,
        opened_by: p.subject.clone(),
        opened_by_name: p.name.clone(),
        opened_at: clock::now_millis(),
    };
    let c = transition(id, "accepted", |c| {
        c.session = Some(session.clone());
        Ok(())
    })?;
    event(
        id,
        "session-opened",
        &p,
        format!(
            "{} mở phiên hội chẩn cho mạng lưới: «{title}», lúc {} (UTC)",
            p.name,
            iso8601(starts_at)
        ),
        format!(
            "{} opened a network session: \"{title}\", at {} (UTC)",
            p.name,
            iso8601(starts_at)
        ),
        json!({ "title": title, "starts_at": starts_at }),
    )?;
    Ok(Response::ok_json(&summary(&c, None)))
}

/// What anyone of the network sees of a session: no patient.
fn summary(c: &Consultation, me: Option<&str>) -> Value {
    let s = c.session.as_ref();
    let host = identity::hospital(&c.host_hospital);
    json!({
        "consultation": c.id,
        "title": s.map(|s| scrub(&s.title)),
        "starts_at": s.map(|s| s.starts_at),
        "starts_at_utc": s.map(|s| iso8601(s.starts_at)),
        "host_hospital": c.host_hospital,
        "host_hospital_name": host.map(|h| h.name).unwrap_or_else(|| c.host_hospital_name.clone()),
        "requesting_hospital_name": c.requesting_hospital_name,
        "specialty": c.specialty,
        "urgency": c.urgency,
        "chair_name": c.chair_name,
        "observers": c.invitees.iter().filter(|i| i.role == "observer").count(),
        "joined": me.is_some_and(|m| c.invitees.iter().any(|i| i.practitioner == m)),
        "join_url": format!("/sessions/{}/join", c.id),
    })
}

/// `GET /sessions`: the open sessions of this hospital, soonest first, for any practitioner
/// of the network.
pub(crate) fn list(_req: &Request) -> Result<Response, Error> {
    let (p, _) = practitioner()?;
    let mut open: Vec<Consultation> = Vec::new();
    for key in kv::list_keys(CONSULTATION_PREFIX)? {
        if let Some(c) = kv::get_json::<Consultation>(&key)?
            && c.status == "accepted"
            && c.session.is_some()
        {
            open.push(c);
        }
    }
    open.sort_by_key(|c| c.session.as_ref().map(|s| s.starts_at));
    let out: Vec<Value> = open.iter().map(|c| summary(c, Some(&p.subject))).collect();
    Ok(Response::ok_json(&json!({ "sessions": out })))
}

/// `POST /sessions/{id}/join`: any practitioner of the network joins an open session as an
/// observer, in one call; joining twice answers the same invitation.
pub(crate) fn join(id: &str) -> Result<Response, Error> {
    let (p, hospital) = practitioner()?;
    let c = load(id)?;
    if c.session.is_none() || c.status != "accepted" {
        return Err(Error::not_found(format!(
            "Không có phiên hội chẩn mở `{id}` (no open session `{id}`)"
        )));
    }
    let room = c.room_id.clone().ok_or_else(|| {
        Error::conflict(format!(
            "Hội chẩn `{id}` chưa có phòng (the consultation has no room)"
        ))
    })?;
    let existing = c
        .invitees
        .iter()
        .find(|i| i.practitioner == p.subject)
        .cloned();
    let me = match existing {
        Some(i) => i,
        None => {
            let part = video::invite(&room, &p.subject, Role::Observer).map_err(|e| match e {
                Error::Conflict(m) => Error::conflict(format!(
                    "Phòng đã đủ chỗ hoặc bạn đã được mời (the room is full or you are invited): {m}"
                )),
                other => other,
            })?;
            let me = Invitee {
                practitioner: p.subject.clone(),
                name: p.name.clone(),
                hospital: hospital.clone(),
                role: "observer".into(),
                participant_id: part.id,
            };
            let added = me.clone();
            transition(id, "accepted", |c| {
                if !c
                    .invitees
                    .iter()
                    .any(|i| i.practitioner == added.practitioner)
                {
                    c.invitees.push(added.clone());
                }
                Ok(())
            })?;
            let hospital_name = identity::hospital(&hospital)
                .map(|h| h.name)
                .unwrap_or_else(|| hospital.clone());
            event(
                id,
                "observer-joined",
                &p,
                format!(
                    "{} ({hospital_name}) tham dự phiên với vai trò quan sát",
                    p.name
                ),
                format!(
                    "{} ({hospital_name}) joined the session as an observer",
                    p.name
                ),
                json!({ "participant_id": me.participant_id, "hospital": hospital }),
            )?;
            me
        }
    };
    let c = load(id)?;
    let mut v = summary(&c, Some(&p.subject));
    v["role"] = json!(me.role);
    v["participant_id"] = json!(me.participant_id);
    v["join"] = json!({
        "token_url": format!("/api/v1/video/rooms/{room}/token"),
        "method": "POST",
        "vi": "Lấy mã tham gia bằng tài khoản của mình: POST token_url với {}",
        "en": "Fetch a join token with your own bearer token: POST token_url with {}",
    });
    Ok(Response::ok_json(&v))
}
