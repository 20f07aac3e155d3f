//! Who may join: invitations, the chair, join tokens and their check, the
//! waiting room's admit and remove, and ending a room.

use serde_json::json;

use super::{
    INVITATION_COLUMNS, Invitation, Invitee, IssuedToken, Room, RoomEvent, RoomStatus,
    VideoBackend, VideoError, VideoService, audit, invitation_from_row, role_name,
};
use crate::identity::PersonRef;
use crate::time::{now_millis, now_secs};
use crate::video::token::{
    DEFAULT_TTL_SECS, JoinClaims, JoinError, MAX_TTL_SECS, VideoClaims, VthClaims,
};
use crate::video::{JoinGrant, ParticipantRole};

impl VideoService {
    /// Invite someone with a role, audited. The room must not have ended
    /// or be full; inviting the same person twice is a conflict.
    pub async fn invite(
        &self,
        room: &Room,
        invitee: &Invitee,
        invited_by: &str,
    ) -> Result<Invitation, VideoError> {
        if room.status == RoomStatus::Ended {
            return Err(VideoError::RoomEnded(room.id.clone()));
        }
        let mut tx = self.db.begin_write().await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM video_invitations WHERE room_id = $1 AND removed_at IS NULL",
        )
        .bind(&room.id)
        .fetch_one(&mut *tx.tx)
        .await?;
        if count >= i64::from(room.max_participants) {
            return Err(VideoError::Conflict(format!(
                "the room is full: at most {} participants",
                room.max_participants
            )));
        }
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT id FROM video_invitations WHERE room_id = $1 AND subject = $2",
        )
        .bind(&room.id)
        .bind(&invitee.subject)
        .fetch_optional(&mut *tx.tx)
        .await?;
        if let Some(id) = existing {
            return Err(VideoError::Conflict(format!(
                "{} is already invited as participant {id}",
                invitee.subject
            )));
        }
        let id = uuid::Uuid::now_v7().to_string();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO video_invitations ({INVITATION_COLUMNS}, invited_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, NULL, $8)"
        )))
        .bind(&id)
        .bind(&room.id)
        .bind(&invitee.subject)
        .bind(&invitee.display_name)
        .bind(invitee.hospital_id.as_deref())
        .bind(role_name(invitee.role))
        .bind(invited_by)
        .bind(now_millis())
        .execute(&mut *tx.tx)
        .await?;
        audit(
            &mut tx,
            invited_by,
            "invited",
            &room.id,
            &room.host_hospital,
            json!({ "participant": id, "subject": invitee.subject, "role": role_name(invitee.role), "hospital": invitee.hospital_id }),
        )
        .await?;
        tx.commit().await?;
        self.invitation(&room.id, &id).await
    }

    /// The invitation `id` of `room`.
    pub async fn invitation(&self, room: &str, id: &str) -> Result<Invitation, VideoError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INVITATION_COLUMNS} FROM video_invitations WHERE room_id = $1 AND id = $2"
        )))
        .bind(room)
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| VideoError::ParticipantNotFound(id.to_owned()))?;
        Ok(invitation_from_row(&row)?)
    }

    /// The invitation of `who` in `room`, removed or not. A person, never
    /// a bare `sub`: another issuer's token with the same `sub` is not them.
    pub async fn invitation_of(
        &self,
        room: &str,
        who: &PersonRef,
    ) -> Result<Option<Invitation>, VideoError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INVITATION_COLUMNS} FROM video_invitations WHERE room_id = $1 AND subject = $2"
        )))
        .bind(room)
        .bind(who.as_str())
        .fetch_optional(&self.db.pool)
        .await?;
        Ok(row.as_ref().map(invitation_from_row).transpose()?)
    }

    /// Whether `who` chairs `room` (an invitation as chair, not removed).
    pub async fn is_chair(&self, room: &str, who: &PersonRef) -> Result<bool, VideoError> {
        Ok(self
            .invitation_of(room, who)
            .await?
            .is_some_and(|i| i.role == ParticipantRole::Chair && i.removed_at.is_none()))
    }

    /// A join token for the invitation `participant` of `room`. Observers
    /// never publish, whatever `can_publish` asks.
    pub async fn issue_token(
        &self,
        room: &Room,
        participant: &str,
        can_publish: Option<bool>,
        ttl_secs: Option<i64>,
    ) -> Result<IssuedToken, VideoError> {
        if room.status == RoomStatus::Ended {
            return Err(VideoError::RoomEnded(room.id.clone()));
        }
        let ttl = ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
        if !(30..=MAX_TTL_SECS).contains(&ttl) {
            return Err(VideoError::Invalid(format!(
                "ttl_seconds must be 30 to {MAX_TTL_SECS}"
            )));
        }
        let inv = self.invitation(&room.id, participant).await?;
        if inv.removed_at.is_some() {
            return Err(JoinError::Removed.into());
        }
        let publish = inv.role.can_publish() && can_publish.unwrap_or(true);
        let now = now_secs();
        let claims = JoinClaims {
            iss: self.signer.issuer().to_owned(),
            sub: inv.subject.clone(),
            nbf: now,
            exp: now + ttl,
            iat: now,
            jti: uuid::Uuid::now_v7().to_string(),
            name: inv.display_name.clone(),
            video: VideoClaims {
                room: room.id.clone(),
                room_join: true,
                can_publish: publish,
                can_subscribe: true,
                can_publish_data: publish,
            },
            vth: VthClaims {
                participant_id: inv.id.clone(),
                role: inv.role,
                hospital: inv.hospital_id.clone(),
            },
        };
        let grant = claims.grant();
        let (token, backend, livekit_url) = match &self.backend {
            VideoBackend::Embedded => (self.signer.sign(&claims)?, "embedded", None),
            VideoBackend::LiveKit(lk) => {
                // LiveKit has no waiting room of ours: only admitted
                // participants (and chairs) get a token for it.
                if inv.admitted_at.is_none() && inv.role != ParticipantRole::Chair {
                    return Err(VideoError::Conflict(
                        "waiting for the chair to admit this participant".into(),
                    ));
                }
                (
                    lk.join_token(&claims, ttl)?,
                    "livekit",
                    Some(lk.url().to_owned()),
                )
            }
        };
        Ok(IssuedToken {
            token,
            expires_at: claims.exp,
            grant,
            backend,
            livekit_url,
        })
    }

    /// Verify a token presented to `room`'s signalling: signature,
    /// lifetime, room, room state and invitation.
    pub async fn verify_join(
        &self,
        room: &str,
        token: &str,
    ) -> Result<(JoinGrant, Invitation), JoinError> {
        let claims = self.signer.verify(token)?;
        if claims.video.room != room || !claims.video.room_join {
            return Err(JoinError::WrongRoom);
        }
        let internal = |e: VideoError| JoinError::Unavailable(e.to_string());
        let r = match self.room(room).await {
            Ok(r) => r,
            Err(VideoError::RoomNotFound(_)) => return Err(JoinError::UnknownRoom(room.into())),
            Err(e) => return Err(internal(e)),
        };
        if r.status == RoomStatus::Ended {
            return Err(JoinError::RoomEnded(room.into()));
        }
        let inv = match self.invitation(room, &claims.vth.participant_id).await {
            Ok(i) => i,
            Err(VideoError::ParticipantNotFound(_)) => return Err(JoinError::Uninvited),
            Err(e) => return Err(internal(e)),
        };
        if inv.subject != claims.sub || inv.role != claims.vth.role {
            return Err(JoinError::Uninvited);
        }
        if inv.removed_at.is_some() {
            return Err(JoinError::Removed);
        }
        let mut grant = claims.grant();
        // The role decides, not the token alone.
        grant.can_publish &= inv.role.can_publish();
        Ok((grant, inv))
    }

    /// Admit `participant` from the waiting room (before or after it
    /// connects), audited.
    pub async fn admit(
        &self,
        room: &Room,
        participant: &str,
        by: &str,
    ) -> Result<Invitation, VideoError> {
        if room.status == RoomStatus::Ended {
            return Err(VideoError::RoomEnded(room.id.clone()));
        }
        let inv = self.invitation(&room.id, participant).await?;
        if inv.removed_at.is_some() {
            return Err(VideoError::Conflict(format!(
                "participant {participant} was removed"
            )));
        }
        if inv.admitted_at.is_none() {
            let now = now_millis();
            let mut tx = self.db.begin_write().await?;
            sqlx::query(
                "UPDATE video_invitations SET admitted_at = $1, admitted_by = $2 WHERE id = $3 AND admitted_at IS NULL",
            )
            .bind(now)
            .bind(by)
            .bind(participant)
            .execute(&mut *tx.tx)
            .await?;
            sqlx::query(
                "UPDATE video_participations SET admitted_at = $1, admitted_by = $2 \
                 WHERE invitation_id = $3 AND left_at IS NULL AND admitted_at IS NULL",
            )
            .bind(now)
            .bind(by)
            .bind(participant)
            .execute(&mut *tx.tx)
            .await?;
            audit(
                &mut tx,
                by,
                "admitted",
                &room.id,
                &room.host_hospital,
                json!({ "participant": participant }),
            )
            .await?;
            tx.commit().await?;
        }
        self.publish(&room.id, RoomEvent::Admitted(participant.to_owned()));
        self.publish(&room.id, RoomEvent::Changed);
        self.invitation(&room.id, participant).await
    }

    /// Remove `participant`: its invitation ends, its sockets close, audited.
    pub async fn remove(
        &self,
        room: &Room,
        participant: &str,
        by: &str,
    ) -> Result<Invitation, VideoError> {
        let inv = self.invitation(&room.id, participant).await?;
        if inv.removed_at.is_none() {
            let now = now_millis();
            let mut tx = self.db.begin_write().await?;
            sqlx::query(
                "UPDATE video_invitations SET removed_at = $1, removed_by = $2 WHERE id = $3",
            )
            .bind(now)
            .bind(by)
            .bind(participant)
            .execute(&mut *tx.tx)
            .await?;
            sqlx::query(
                "UPDATE video_participations SET left_at = $1, left_reason = 'removed' \
                 WHERE invitation_id = $2 AND left_at IS NULL",
            )
            .bind(now)
            .bind(participant)
            .execute(&mut *tx.tx)
            .await?;
            audit(
                &mut tx,
                by,
                "removed",
                &room.id,
                &room.host_hospital,
                json!({ "participant": participant }),
            )
            .await?;
            tx.commit().await?;
            if let Some(lk) = self.livekit() {
                lk.remove_participant(&room.id, &inv.subject).await?;
            }
        }
        self.publish(&room.id, RoomEvent::Removed(participant.to_owned()));
        self.publish(&room.id, RoomEvent::Changed);
        self.invitation(&room.id, participant).await
    }

    /// End the room: no token verifies for it any more, every socket gets
    /// `room-ended`, audited. Ending twice is harmless.
    pub async fn end(&self, room: &Room, by: &str) -> Result<Room, VideoError> {
        if room.status != RoomStatus::Ended {
            let now = now_millis();
            let mut tx = self.db.begin_write().await?;
            sqlx::query(
                "UPDATE video_rooms SET status = 'ended', ended_at = $1, ended_by = $2 WHERE id = $3 AND status <> 'ended'",
            )
            .bind(now)
            .bind(by)
            .bind(&room.id)
            .execute(&mut *tx.tx)
            .await?;
            sqlx::query(
                "UPDATE video_participations SET left_at = $1, left_reason = 'room-ended' \
                 WHERE room_id = $2 AND left_at IS NULL",
            )
            .bind(now)
            .bind(&room.id)
            .execute(&mut *tx.tx)
            .await?;
            audit(
                &mut tx,
                by,
                "room_ended",
                &room.id,
                &room.host_hospital,
                json!({}),
            )
            .await?;
            tx.commit().await?;
            if let Some(lk) = self.livekit() {
                lk.delete_room(&room.id).await?;
            }
        }
        self.publish(&room.id, RoomEvent::Ended);
        self.room(&room.id).await
    }
}
