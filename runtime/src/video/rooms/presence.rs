//! Who is in the room: connections, admission state on the sockets, and
//! the participants' view.

use serde::Serialize;
use serde_json::json;
use sqlx::Row;

use super::{
    INVITATION_COLUMNS, Invitation, RoomEvent, RoomStatus, VideoError, VideoService,
    invitation_from_row, parse_role,
};
use crate::audit::rfc3339;
use crate::time::now_millis;
use crate::video::ParticipantRole;
use crate::video::signal::{PresenceState, PresentParticipant};

/// One connection of a participant.
#[derive(Debug, Clone, Serialize)]
pub struct Participation {
    pub joined_at: String,
    pub admitted_at: Option<String>,
    pub admitted_by: Option<String>,
    pub left_at: Option<String>,
    pub left_reason: Option<String>,
}

impl VideoService {
    /// Record a connection of `inv`; chairs are admitted on arrival.
    /// Returns the participation id and whether it is admitted.
    pub async fn connect(&self, inv: &Invitation) -> Result<(String, bool), VideoError> {
        let now = now_millis();
        let id = uuid::Uuid::now_v7().to_string();
        let auto = inv.role == ParticipantRole::Chair;
        let mut tx = self.db.begin_write().await?;
        if auto && inv.admitted_at.is_none() {
            sqlx::query(
                "UPDATE video_invitations SET admitted_at = $1, admitted_by = 'chair-on-arrival' WHERE id = $2",
            )
            .bind(now)
            .bind(&inv.id)
            .execute(&mut *tx.tx)
            .await?;
        }
        // Read admission inside the write, so an admit cannot slip between.
        let admitted_at: Option<i64> =
            sqlx::query_scalar("SELECT admitted_at FROM video_invitations WHERE id = $1")
                .bind(&inv.id)
                .fetch_one(&mut *tx.tx)
                .await?;
        let admitted_by: Option<String> =
            sqlx::query_scalar("SELECT admitted_by FROM video_invitations WHERE id = $1")
                .bind(&inv.id)
                .fetch_one(&mut *tx.tx)
                .await?;
        sqlx::query(
            "INSERT INTO video_participations (id, room_id, invitation_id, joined_at, admitted_at, admitted_by, left_at, left_reason) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)",
        )
        .bind(&id)
        .bind(&inv.room_id)
        .bind(&inv.id)
        .bind(now)
        .bind(admitted_at.map(|_| now))
        .bind(admitted_by.as_deref())
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query(
            "UPDATE video_rooms SET status = 'open', opened_at = $1 WHERE id = $2 AND status = 'scheduled'",
        )
        .bind(now)
        .bind(&inv.room_id)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        self.publish(&inv.room_id, RoomEvent::Changed);
        Ok((id, admitted_at.is_some()))
    }

    /// The room's status and the participant's invitation, as stored.
    pub async fn state(
        &self,
        room: &str,
        participant: &str,
    ) -> Result<(RoomStatus, Invitation), VideoError> {
        let status = self.room(room).await?.status;
        Ok((status, self.invitation(room, participant).await?))
    }

    /// Whether the invitation is admitted now (read from the database).
    pub async fn is_admitted(&self, room: &str, participant: &str) -> Result<bool, VideoError> {
        let inv = self.invitation(room, participant).await?;
        Ok(inv.admitted_at.is_some() && inv.removed_at.is_none())
    }

    /// Mark the connection admitted (the invitation was admitted while it waited).
    pub async fn mark_admitted(&self, participation: &str) -> Result<(), VideoError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE video_participations SET admitted_at = COALESCE(admitted_at, $1), \
             admitted_by = COALESCE(admitted_by, (SELECT admitted_by FROM video_invitations i WHERE i.id = video_participations.invitation_id)) \
             WHERE id = $2",
        )
        .bind(now_millis())
        .bind(participation)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Record that a connection ended, for `reason`.
    pub async fn disconnect(
        &self,
        room: &str,
        participation: &str,
        reason: &str,
    ) -> Result<(), VideoError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE video_participations SET left_at = $1, left_reason = $2 WHERE id = $3 AND left_at IS NULL",
        )
        .bind(now_millis())
        .bind(reason)
        .bind(participation)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        self.publish(room, RoomEvent::Changed);
        Ok(())
    }

    /// Who is connected to `room` now, waiting or in the room.
    pub async fn present(&self, room: &str) -> Result<Vec<PresentParticipant>, VideoError> {
        let rows = sqlx::query(
            "SELECT i.id, i.display_name, i.role, i.hospital_id, p.admitted_at, p.joined_at \
             FROM video_participations p JOIN video_invitations i ON i.id = p.invitation_id \
             WHERE p.room_id = $1 AND p.left_at IS NULL ORDER BY p.joined_at, p.id",
        )
        .bind(room)
        .fetch_all(&self.db.pool)
        .await?;
        let mut out: Vec<PresentParticipant> = Vec::new();
        for r in rows {
            let id: String = r.try_get("id")?;
            let state = if r.try_get::<Option<i64>, _>("admitted_at")?.is_some() {
                PresenceState::InRoom
            } else {
                PresenceState::Waiting
            };
            // Two tabs of one participant show once.
            if let Some(p) = out.iter_mut().find(|p| p.participant_id == id) {
                if state == PresenceState::InRoom {
                    p.state = state;
                }
                continue;
            }
            let role: String = r.try_get("role")?;
            out.push(PresentParticipant {
                participant_id: id,
                name: r.try_get("display_name")?,
                role: parse_role(&role),
                hospital: r.try_get("hospital_id")?,
                state,
                joined_at: rfc3339(r.try_get("joined_at")?),
            });
        }
        Ok(out)
    }

    /// Every invitation of `room` with its connections, oldest first.
    pub async fn participants(
        &self,
        room: &str,
    ) -> Result<Vec<(Invitation, Vec<Participation>)>, VideoError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INVITATION_COLUMNS} FROM video_invitations WHERE room_id = $1 ORDER BY invited_at, id"
        )))
        .bind(room)
        .fetch_all(&self.db.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push((invitation_from_row(r)?, Vec::new()));
        }
        let joins = sqlx::query(
            "SELECT invitation_id, joined_at, admitted_at, admitted_by, left_at, left_reason \
             FROM video_participations WHERE room_id = $1 ORDER BY joined_at, id",
        )
        .bind(room)
        .fetch_all(&self.db.pool)
        .await?;
        for j in joins {
            let inv: String = j.try_get("invitation_id")?;
            if let Some((_, list)) = out.iter_mut().find(|(i, _)| i.id == inv) {
                list.push(Participation {
                    joined_at: rfc3339(j.try_get("joined_at")?),
                    admitted_at: j.try_get::<Option<i64>, _>("admitted_at")?.map(rfc3339),
                    admitted_by: j.try_get("admitted_by")?,
                    left_at: j.try_get::<Option<i64>, _>("left_at")?.map(rfc3339),
                    left_reason: j.try_get("left_reason")?,
                });
            }
        }
        Ok(out)
    }
}

/// The API's view of one invitation and its connections.
pub fn participant_json(inv: &Invitation, joins: &[Participation]) -> serde_json::Value {
    json!({
        "participant_id": inv.id,
        "subject": inv.subject,
        "name": inv.display_name,
        "hospital": inv.hospital_id,
        "role": inv.role,
        "invited_by": inv.invited_by,
        "admitted_at": inv.admitted_at.map(rfc3339),
        "admitted_by": inv.admitted_by,
        "removed_at": inv.removed_at.map(rfc3339),
        "present": joins.iter().any(|j| j.left_at.is_none()),
        "joins": joins,
    })
}
