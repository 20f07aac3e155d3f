//! `/api/v1/video` routes: consultation rooms, invitations, join tokens,
//! the waiting room and the participation log (docs/video.md).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::extract::{Json, Path};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::Authenticated;
use crate::Runtime;
use crate::audit::rfc3339;
use crate::identity::{PersonRef, Principal, Role};
use crate::records::access::AccessStore;
use crate::video::ParticipantRole;
use crate::video::rooms::{Invitee, NewRoom, Room, VideoError, participant_json, role_name};
use crate::video::token::JoinError;

/// The routes.
pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/api/v1/video/rooms", post(create_room))
        .route("/api/v1/video/rooms/{room}/invitations", post(invite))
        .route("/api/v1/video/rooms/{room}/token", post(issue_token))
        .route("/api/v1/video/rooms/{room}/participants", get(participants))
        .route("/api/v1/video/rooms/{room}/chat", get(chat))
        .route(
            "/api/v1/video/rooms/{room}/participants/{participant}/admit",
            post(admit),
        )
        .route(
            "/api/v1/video/rooms/{room}/participants/{participant}/remove",
            post(remove),
        )
        .route("/api/v1/video/rooms/{room}/end", post(end))
}

impl From<VideoError> for ApiError {
    fn from(e: VideoError) -> Self {
        match e {
            VideoError::RoomNotFound(_) | VideoError::ParticipantNotFound(_) => {
                ApiError::NotFound(e.to_string())
            }
            VideoError::Forbidden(m) => ApiError::Forbidden(m),
            VideoError::Invalid(m) => ApiError::Unprocessable(m),
            VideoError::RoomEnded(_) => ApiError::Gone(e.to_string()),
            VideoError::Conflict(m) => ApiError::Conflict(m),
            VideoError::Join(j) => j.into(),
            VideoError::LiveKit(_) => ApiError::Unavailable(e.to_string()),
            VideoError::Database(_) | VideoError::Audit(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<JoinError> for ApiError {
    fn from(e: JoinError) -> Self {
        match e {
            JoinError::Malformed(_)
            | JoinError::BadSignature
            | JoinError::Expired
            | JoinError::NotYetValid
            | JoinError::WrongIssuer => ApiError::Unauthorized(e.to_string()),
            JoinError::WrongRoom | JoinError::Uninvited | JoinError::Removed => {
                ApiError::Forbidden(e.to_string())
            }
            JoinError::UnknownRoom(_) => ApiError::NotFound(e.to_string()),
            JoinError::RoomEnded(_) => ApiError::Gone(e.to_string()),
            JoinError::Unavailable(m) => ApiError::Internal(m),
        }
    }
}

/// The caller's hospital when they are its practitioner or admin.
fn staff_hospital(p: &Principal) -> Option<&str> {
    match &p.hospital_id {
        Some(h) if p.has_role(Role::Practitioner) || p.has_role(Role::HospitalAdmin) => Some(h),
        _ => None,
    }
}

fn is_host_admin(p: &Principal, room: &Room) -> bool {
    p.has_role(Role::HospitalAdmin) && p.hospital_id.as_deref() == Some(room.host_hospital.as_str())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    purpose: String,
    requesting_hospital: Option<String>,
    max_participants: Option<u32>,
    /// Seconds since the epoch.
    scheduled_at: Option<i64>,
    consultation_id: Option<String>,
}

async fn create_room(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Json(body): Json<CreateBody>,
) -> Result<Response, ApiError> {
    let host = staff_hospital(&p)
        .ok_or_else(|| {
            ApiError::Forbidden(
                "rooms are created by the practitioners and admins of the host hospital".into(),
            )
        })?
        .to_owned();
    let mut requesting = body.requesting_hospital;
    if let Some(c) = &body.consultation_id {
        let c = AccessStore::new(rt.db.clone()).consultation(c).await?;
        if c.host_hospital != host {
            return Err(ApiError::Forbidden(format!(
                "consultation {} is not hosted by your hospital",
                c.id
            )));
        }
        if !matches!(c.status.as_str(), "requested" | "active") {
            return Err(ApiError::Conflict(format!(
                "consultation {} is {}",
                c.id, c.status
            )));
        }
        match &requesting {
            Some(r) if *r != c.requesting_hospital => {
                return Err(ApiError::Unprocessable(format!(
                    "consultation {} was requested by {}, not {r}",
                    c.id, c.requesting_hospital
                )));
            }
            _ => requesting = Some(c.requesting_hospital),
        }
    }
    if let Some(r) = &requesting
        && rt.hospitals.get(r).is_none()
    {
        return Err(ApiError::Unprocessable(format!("unknown hospital `{r}`")));
    }
    let scheduled_at = match body.scheduled_at {
        Some(s) if !(0..=32_503_680_000).contains(&s) => {
            return Err(ApiError::Unprocessable(
                "scheduled_at is seconds since the epoch".into(),
            ));
        }
        s => s.map(|s| s * 1000),
    };
    let me = rt.identity.person(&p);
    let room = rt
        .video
        .create_room(NewRoom {
            host_hospital: host.clone(),
            requesting_hospital: requesting,
            purpose: body.purpose,
            max_participants: body.max_participants.unwrap_or(10),
            scheduled_at,
            consultation_id: body.consultation_id,
            created_by: me.to_string(),
            created_by_plugin: None,
        })
        .await?;
    // The creator chairs the room.
    let chair = rt
        .video
        .invite(
            &room,
            &Invitee {
                subject: me.to_string(),
                display_name: p.name.clone(),
                hospital_id: Some(host),
                role: ParticipantRole::Chair,
            },
            me.as_str(),
        )
        .await?;
    let mut out = room.to_json();
    out["chair_participant_id"] = json!(chair.id);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    /// The person's subject (user id).
    subject: String,
    role: ParticipantRole,
}

async fn invite(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(room): Path<String>,
    Json(body): Json<InviteBody>,
) -> Result<Response, ApiError> {
    let room = rt.video.room(&room).await?;
    let me = rt.identity.person(&p);
    if !(rt.video.is_chair(&room.id, &me).await? || is_host_admin(&p, &room)) {
        return Err(ApiError::Forbidden(
            "the room's chair or its host hospital's admin invites".into(),
        ));
    }
    let user = rt
        .identity
        .user(&body.subject)
        .await?
        .ok_or_else(|| ApiError::Unprocessable(format!("no user `{}`", body.subject)))?;
    let inv = rt
        .video
        .invite(
            &room,
            &Invitee {
                subject: PersonRef::of_user(&user).into_string(),
                display_name: user.display_name,
                hospital_id: user.hospital_id,
                role: body.role,
            },
            me.as_str(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(participant_json(&inv, &[]))).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    can_publish: Option<bool>,
    ttl_seconds: Option<i64>,
}

async fn issue_token(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(room): Path<String>,
    body: Option<Json<TokenBody>>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let room = rt.video.room(&room).await?;
    let inv = rt
        .video
        .invitation_of(&room.id, &rt.identity.person(&p))
        .await?
        .filter(|i| i.removed_at.is_none())
        .ok_or_else(|| ApiError::Forbidden("you are not invited to this room".into()))?;
    let issued = rt
        .video
        .issue_token(&room, &inv.id, body.can_publish, body.ttl_seconds)
        .await?;
    let id = &room.id;
    let t = &issued.token;
    Ok(Json(json!({
        "token": issued.token,
        "expires_at": issued.expires_at,
        "participant_id": inv.id,
        "role": role_name(inv.role),
        "can_publish": issued.grant.can_publish,
        "can_subscribe": issued.grant.can_subscribe,
        "backend": issued.backend,
        "livekit_url": issued.livekit_url,
        "signalling_url": format!("/video/rooms/{id}/ws?token={t}"),
        "room_url": format!("/rooms/{id}?token={t}"),
        "room": room.to_json(),
        "name": inv.display_name,
    })))
}

async fn participants(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(room): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let room = rt.video.room(&room).await?;
    let invited = rt
        .video
        .invitation_of(&room.id, &rt.identity.person(&p))
        .await?
        .is_some_and(|i| i.removed_at.is_none());
    if !(invited || is_host_admin(&p, &room)) {
        return Err(ApiError::Forbidden(
            "the room's participants and its host hospital's admin see who takes part".into(),
        ));
    }
    let list = rt.video.participants(&room.id).await?;
    Ok(Json(json!({
        "room": room.to_json(),
        "participants": list.iter().map(|(i, j)| participant_json(i, j)).collect::<Vec<_>>(),
    })))
}

/// The room's kept chat: for the same people as its participant list.
async fn chat(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(room): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let room = rt.video.room(&room).await?;
    let invited = rt
        .video
        .invitation_of(&room.id, &rt.identity.person(&p))
        .await?
        .is_some_and(|i| i.removed_at.is_none());
    if !(invited || is_host_admin(&p, &room)) {
        return Err(ApiError::Forbidden(
            "the room's participants and its host hospital's admin read its chat".into(),
        ));
    }
    let lines = rt.video.chat(&room.id).await?;
    Ok(Json(json!({
        "room": room.id,
        "consultation_id": room.consultation_id,
        "lines": lines.iter().map(|l| json!({
            "participant_id": l.participant_id,
            "name": l.name,
            "text": l.text,
            "at": rfc3339(l.at),
        })).collect::<Vec<_>>(),
    })))
}

async fn admit(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path((room, participant)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let room = rt.video.room(&room).await?;
    let me = rt.identity.person(&p);
    if !rt.video.is_chair(&room.id, &me).await? {
        return Err(ApiError::Forbidden(
            "only the room's chair admits participants".into(),
        ));
    }
    let inv = rt.video.admit(&room, &participant, me.as_str()).await?;
    Ok(Json(participant_json(&inv, &[])))
}

async fn remove(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path((room, participant)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let room = rt.video.room(&room).await?;
    let me = rt.identity.person(&p);
    if !(rt.video.is_chair(&room.id, &me).await? || is_host_admin(&p, &room)) {
        return Err(ApiError::Forbidden(
            "the room's chair or its host hospital's admin removes participants".into(),
        ));
    }
    let inv = rt.video.remove(&room, &participant, me.as_str()).await?;
    Ok(Json(participant_json(&inv, &[])))
}

async fn end(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Path(room): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let room = rt.video.room(&room).await?;
    let me = rt.identity.person(&p);
    if !(rt.video.is_chair(&room.id, &me).await? || is_host_admin(&p, &room)) {
        return Err(ApiError::Forbidden(
            "the room's chair or its host hospital's admin ends the room".into(),
        ));
    }
    let room = rt.video.end(&room, me.as_str()).await?;
    Ok(Json(room.to_json()))
}
