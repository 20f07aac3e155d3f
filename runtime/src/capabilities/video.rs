//! `video`: consultation rooms for plugins. A plugin creates rooms hosted
//! by the hospital of the call and acts only on the rooms it created
//! there; every call also checks the caller (staff or service of that
//! hospital, or for a join token the invited person themselves).

use std::sync::Arc;

use tracing::instrument;

use super::CallState;
use crate::bindings::WitError;
use crate::bindings::vtelehealth::platform::video::{self as wit, Host};
use crate::capabilities::Capability;
use crate::identity::{PersonRef, Principal, Role};
use crate::records::access::AccessStore;
use crate::video::ParticipantRole;
use crate::video::rooms::{Invitee, NewRoom, Room, RoomStatus, VideoError, VideoService};

impl From<VideoError> for WitError {
    fn from(e: VideoError) -> Self {
        let message = e.to_string();
        match e {
            VideoError::RoomNotFound(_) | VideoError::ParticipantNotFound(_) => {
                WitError::NotFound(message)
            }
            VideoError::Forbidden(_) | VideoError::Join(_) => WitError::Denied(message),
            VideoError::Invalid(_) | VideoError::RoomEnded(_) | VideoError::Conflict(_) => {
                WitError::Invalid(message)
            }
            VideoError::LiveKit(_) => WitError::Unavailable(message),
            VideoError::Database(_) | VideoError::Audit(_) => {
                tracing::error!(error = %message, "video capability failed");
                WitError::Unavailable("video storage unavailable".into())
            }
        }
    }
}

impl From<wit::Role> for ParticipantRole {
    fn from(r: wit::Role) -> Self {
        match r {
            wit::Role::Chair => Self::Chair,
            wit::Role::Presenter => Self::Presenter,
            wit::Role::Participant => Self::Participant,
            wit::Role::Observer => Self::Observer,
        }
    }
}

impl From<ParticipantRole> for wit::Role {
    fn from(r: ParticipantRole) -> Self {
        match r {
            ParticipantRole::Chair => Self::Chair,
            ParticipantRole::Presenter => Self::Presenter,
            ParticipantRole::Participant => Self::Participant,
            ParticipantRole::Observer => Self::Observer,
        }
    }
}

fn denied(message: impl Into<String>) -> WitError {
    WitError::Denied(message.into())
}

fn wit_room(r: &Room) -> wit::Room {
    wit::Room {
        id: r.id.clone(),
        host_hospital: r.host_hospital.clone(),
        requesting_hospital: r.requesting_hospital.clone(),
        purpose: r.purpose.clone(),
        max_participants: r.max_participants,
        status: match r.status {
            RoomStatus::Scheduled => "scheduled",
            RoomStatus::Open => "open",
            RoomStatus::Ended => "ended",
        }
        .into(),
        consultation_id: r.consultation_id.clone(),
    }
}

impl CallState {
    fn video(&self) -> Result<Arc<VideoService>, WitError> {
        self.require(Capability::Video)
            .map_err(|e| denied(e.to_string()))?;
        self.ctx
            .video
            .clone()
            .ok_or_else(|| WitError::Unavailable("video is not available in this call".into()))
    }

    /// The caller, when they are staff or a service of the call's hospital.
    fn video_staff(&self) -> Result<&Principal, WitError> {
        let p = self.ctx.principal.as_ref().ok_or_else(|| {
            denied("video rooms are never managed for an anonymous caller; the request needs a bearer token")
        })?;
        let of_hospital = p.hospital_id.as_deref() == Some(self.ctx.hospital.id.as_str());
        let staff = p.has_role(Role::Practitioner)
            || p.has_role(Role::HospitalAdmin)
            || p.has_role(Role::Service);
        if of_hospital && staff {
            Ok(p)
        } else {
            Err(denied(format!(
                "only practitioners, admins and services of {} manage its video rooms",
                self.ctx.hospital.id
            )))
        }
    }

    /// The room `id`, when this plugin created it at this hospital.
    async fn own_room(&self, video: &VideoService, id: &str) -> Result<Room, WitError> {
        let room = video.room(id).await?;
        if room.host_hospital != self.ctx.hospital.id
            || room.created_by_plugin.as_deref() != Some(self.ctx.plugin_id.as_str())
        {
            // As if it did not exist: a plugin learns nothing of others' rooms.
            return Err(WitError::NotFound(format!("no video room {id}")));
        }
        Ok(room)
    }

    async fn create_room_impl(&self, spec: wit::RoomSpec) -> Result<wit::Room, WitError> {
        let video = self.video()?;
        let p = self.video_staff()?;
        let host = self.ctx.hospital.id.clone();
        let mut requesting = spec.requesting_hospital;
        if let Some(c) = &spec.consultation_id {
            let c = AccessStore::new(self.records.db.clone())
                .consultation(c)
                .await
                .map_err(|_| WitError::NotFound(format!("no consultation {c}")))?;
            if c.host_hospital != host {
                return Err(denied(format!(
                    "consultation {} is not hosted by {host}",
                    c.id
                )));
            }
            if requesting
                .as_ref()
                .is_some_and(|r| *r != c.requesting_hospital)
            {
                return Err(WitError::Invalid(format!(
                    "consultation {} was requested by {}",
                    c.id, c.requesting_hospital
                )));
            }
            requesting = Some(c.requesting_hospital);
        }
        if let Some(r) = &requesting
            && self.ctx.directory.hospital(r).is_none()
        {
            return Err(WitError::Invalid(format!("unknown hospital `{r}`")));
        }
        let scheduled_at = spec
            .scheduled_at
            .map(|ms| {
                i64::try_from(ms).map_err(|_| WitError::Invalid("scheduled-at is too far".into()))
            })
            .transpose()?;
        let room = video
            .create_room(NewRoom {
                host_hospital: host,
                requesting_hospital: requesting,
                purpose: spec.purpose,
                max_participants: spec.max_participants,
                scheduled_at,
                consultation_id: spec.consultation_id,
                created_by: self.ctx.directory.person(p).into_string(),
                created_by_plugin: Some(self.ctx.plugin_id.clone()),
            })
            .await?;
        Ok(wit_room(&room))
    }

    async fn invite_impl(
        &self,
        room: String,
        practitioner: String,
        role: wit::Role,
    ) -> Result<wit::Participant, WitError> {
        let video = self.video()?;
        // Staff of the host invite anyone; a practitioner of another
        // hospital (who reaches a network plugin) only themselves, as an
        // observer: the 1-N model's "follow and learn", decided by the plugin.
        let p = match self.video_staff() {
            Ok(p) => p,
            Err(refused) => match self.ctx.principal.as_ref() {
                Some(p)
                    if p.has_role(Role::Practitioner)
                        && role == wit::Role::Observer
                        && self.ctx.directory.person(p).as_str() == practitioner =>
                {
                    p
                }
                _ => return Err(refused),
            },
        };
        let room = self.own_room(&video, &room).await?;
        let user = self
            .ctx
            .directory
            .practitioner(&practitioner)
            .await
            .map_err(|e| WitError::Unavailable(e.to_string()))?
            .ok_or_else(|| WitError::NotFound(format!("no practitioner {practitioner}")))?;
        let inv = video
            .invite(
                &room,
                &Invitee {
                    subject: PersonRef::of_user(&user).into_string(),
                    display_name: user.display_name,
                    hospital_id: user.hospital_id,
                    role: role.into(),
                },
                &format!(
                    "{} via plugin {}",
                    self.ctx.directory.person(p),
                    self.ctx.plugin_id
                ),
            )
            .await?;
        Ok(participant(&inv, &[]))
    }

    async fn issue_join_token_impl(
        &self,
        room: String,
        participant_id: String,
        ttl: Option<u32>,
    ) -> Result<wit::JoinToken, WitError> {
        let video = self.video()?;
        let room = self.own_room(&video, &room).await?;
        let inv = video.invitation(&room.id, &participant_id).await?;
        let is_invitee = self
            .ctx
            .principal
            .as_ref()
            .is_some_and(|p| self.ctx.directory.person(p) == inv.subject);
        if !is_invitee {
            self.video_staff()?;
        }
        let issued = video
            .issue_token(&room, &inv.id, None, ttl.map(i64::from))
            .await?;
        let (id, t) = (&room.id, &issued.token);
        Ok(wit::JoinToken {
            token: issued.token.clone(),
            expires_at: u64::try_from(issued.expires_at).unwrap_or(0),
            can_publish: issued.grant.can_publish,
            signalling_url: issued
                .livekit_url
                .clone()
                .unwrap_or_else(|| format!("/video/rooms/{id}/ws?token={t}")),
            room_url: format!("/rooms/{id}?token={t}"),
        })
    }

    async fn list_participants_impl(
        &self,
        room: String,
    ) -> Result<Vec<wit::Participant>, WitError> {
        let video = self.video()?;
        self.video_staff()?;
        let room = self.own_room(&video, &room).await?;
        Ok(video
            .participants(&room.id)
            .await?
            .iter()
            .map(|(i, j)| participant(i, j))
            .collect())
    }

    async fn end_room_impl(&self, room: String) -> Result<wit::Room, WitError> {
        let video = self.video()?;
        let p = self.video_staff()?;
        let room = self.own_room(&video, &room).await?;
        let by = format!(
            "{} via plugin {}",
            self.ctx.directory.person(p),
            self.ctx.plugin_id
        );
        Ok(wit_room(&video.end(&room, &by).await?))
    }
}

fn participant(
    inv: &crate::video::rooms::Invitation,
    joins: &[crate::video::rooms::Participation],
) -> wit::Participant {
    wit::Participant {
        id: inv.id.clone(),
        subject: inv.subject.clone(),
        name: inv.display_name.clone(),
        hospital_id: inv.hospital_id.clone(),
        role: inv.role.into(),
        admitted: inv.admitted_at.is_some(),
        removed: inv.removed_at.is_some(),
        present: joins.iter().any(|j| j.left_at.is_none()),
        first_joined_at: joins.first().map(|j| j.joined_at.clone()),
        last_left_at: joins.iter().rev().find_map(|j| j.left_at.clone()),
    }
}

impl Host for CallState {
    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id))]
    async fn create_room(
        &mut self,
        spec: wit::RoomSpec,
    ) -> wasmtime::Result<Result<wit::Room, WitError>> {
        Ok(self.create_room_impl(spec).await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, room = %room_id))]
    async fn invite(
        &mut self,
        room_id: String,
        practitioner_id: String,
        role: wit::Role,
    ) -> wasmtime::Result<Result<wit::Participant, WitError>> {
        Ok(self.invite_impl(room_id, practitioner_id, role).await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, room = %room_id))]
    async fn issue_join_token(
        &mut self,
        room_id: String,
        participant_id: String,
        ttl_seconds: Option<u32>,
    ) -> wasmtime::Result<Result<wit::JoinToken, WitError>> {
        Ok(self
            .issue_join_token_impl(room_id, participant_id, ttl_seconds)
            .await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, room = %room_id))]
    async fn list_participants(
        &mut self,
        room_id: String,
    ) -> wasmtime::Result<Result<Vec<wit::Participant>, WitError>> {
        Ok(self.list_participants_impl(room_id).await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, room = %room_id))]
    async fn end_room(&mut self, room_id: String) -> wasmtime::Result<Result<wit::Room, WitError>> {
        Ok(self.end_room_impl(room_id).await)
    }
}
