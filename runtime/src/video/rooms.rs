//! The room service: rooms, invitations with a role, the waiting room
//! (admission is a column of the invitation, checked by the signalling
//! endpoint before anything of the room is sent) and the participation log.

mod admission;
mod chat;
mod events;
mod presence;

pub use events::{NOTIFY_CHANNEL, RECHECK_WITH_NOTIFY, RECHECK_WITHOUT_NOTIFY, RoomEvent};
pub use presence::{Participation, participant_json};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use sqlx::Row;
use tokio::sync::broadcast;

use super::livekit::{LiveKit, LiveKitError};
use super::media::{ChatLine, MediaPlane};
use super::token::{JoinError, TokenSigner};
use super::{JoinGrant, ParticipantRole};
use crate::audit::{AuditError, AuditEvent, AuditLog, rfc3339};
use crate::db::{Database, WriteTx};
use crate::time::now_millis;

/// Most participants a room may have.
pub const MAX_PARTICIPANTS: u32 = 50;

/// Why a room operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("no video room {0}")]
    RoomNotFound(String),
    #[error("no participant {0} in this room")]
    ParticipantNotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("video room {0} has ended")]
    RoomEnded(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error("video backend: {0}")]
    LiveKit(#[from] LiveKitError),
    #[error("video storage error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Which server carries the media.
pub enum VideoBackend {
    /// This runtime: signalling at `/video/rooms/{room}/ws`, the built-in relay.
    Embedded,
    /// A LiveKit-compatible SFU cluster.
    LiveKit(LiveKit),
}

/// Room status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomStatus {
    Scheduled,
    Open,
    Ended,
}

impl RoomStatus {
    fn parse(s: &str) -> Self {
        match s {
            "open" => Self::Open,
            "ended" => Self::Ended,
            _ => Self::Scheduled,
        }
    }
}

/// A consultation room.
#[derive(Debug, Clone, Serialize)]
pub struct Room {
    pub id: String,
    pub host_hospital: String,
    pub requesting_hospital: Option<String>,
    pub purpose: String,
    pub max_participants: u32,
    /// Milliseconds since the epoch.
    pub scheduled_at: Option<i64>,
    pub status: RoomStatus,
    pub consultation_id: Option<String>,
    pub created_by: String,
    pub created_by_plugin: Option<String>,
    pub created_at: i64,
    pub ended_at: Option<i64>,
}

impl Room {
    /// As the API shows it.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "host_hospital": self.host_hospital,
            "requesting_hospital": self.requesting_hospital,
            "purpose": self.purpose,
            "max_participants": self.max_participants,
            "scheduled_at": self.scheduled_at.map(rfc3339),
            "status": self.status,
            "consultation_id": self.consultation_id,
            "created_by": self.created_by,
            "created_by_plugin": self.created_by_plugin,
            "created_at": rfc3339(self.created_at),
            "ended_at": self.ended_at.map(rfc3339),
        })
    }
}

/// What a new room is.
#[derive(Debug, Clone)]
pub struct NewRoom {
    pub host_hospital: String,
    pub requesting_hospital: Option<String>,
    pub purpose: String,
    pub max_participants: u32,
    pub scheduled_at: Option<i64>,
    pub consultation_id: Option<String>,
    pub created_by: String,
    pub created_by_plugin: Option<String>,
}

/// One invited participant.
#[derive(Debug, Clone, Serialize)]
pub struct Invitation {
    /// The participant id.
    pub id: String,
    pub room_id: String,
    pub subject: String,
    pub display_name: String,
    pub hospital_id: Option<String>,
    pub role: ParticipantRole,
    pub invited_by: String,
    pub admitted_at: Option<i64>,
    pub admitted_by: Option<String>,
    pub removed_at: Option<i64>,
}

/// Who is invited.
#[derive(Debug, Clone)]
pub struct Invitee {
    /// The person, as a [`crate::identity::PersonRef`] stores them.
    pub subject: String,
    pub display_name: String,
    pub hospital_id: Option<String>,
    pub role: ParticipantRole,
}

/// An issued join token.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    pub token: String,
    /// Seconds since the epoch.
    pub expires_at: i64,
    pub grant: JoinGrant,
    /// `embedded` or `livekit`.
    pub backend: &'static str,
    /// LiveKit: the server URL the client connects to.
    pub livekit_url: Option<String>,
}

/// The video rooms of the deployment.
pub struct VideoService {
    db: Database,
    signer: TokenSigner,
    backend: VideoBackend,
    hub: Mutex<HashMap<String, broadcast::Sender<RoomEvent>>>,
    media: OnceLock<Arc<dyn MediaPlane>>,
    /// The deployment's event bus, when it reaches other nodes.
    bus: OnceLock<Arc<crate::cluster::Bus>>,
    recheck_ms: AtomicU64,
}

const ROOM_COLUMNS: &str = "id, host_hospital, requesting_hospital, purpose, max_participants, scheduled_at, status, consultation_id, created_by, created_by_plugin, created_at, ended_at";
const INVITATION_COLUMNS: &str = "id, room_id, subject, display_name, hospital_id, role, invited_by, admitted_at, admitted_by, removed_at";

fn room_from_row(r: &sqlx::any::AnyRow) -> Result<Room, sqlx::Error> {
    let status: String = r.try_get("status")?;
    Ok(Room {
        id: r.try_get("id")?,
        host_hospital: r.try_get("host_hospital")?,
        requesting_hospital: r.try_get("requesting_hospital")?,
        purpose: r.try_get("purpose")?,
        max_participants: u32::try_from(r.try_get::<i64, _>("max_participants")?).unwrap_or(0),
        scheduled_at: r.try_get("scheduled_at")?,
        status: RoomStatus::parse(&status),
        consultation_id: r.try_get("consultation_id")?,
        created_by: r.try_get("created_by")?,
        created_by_plugin: r.try_get("created_by_plugin")?,
        created_at: r.try_get("created_at")?,
        ended_at: r.try_get("ended_at")?,
    })
}

pub(crate) fn parse_role(s: &str) -> ParticipantRole {
    match s {
        "chair" => ParticipantRole::Chair,
        "presenter" => ParticipantRole::Presenter,
        "observer" => ParticipantRole::Observer,
        _ => ParticipantRole::Participant,
    }
}

/// The role's name in the database and the API.
pub fn role_name(role: ParticipantRole) -> &'static str {
    match role {
        ParticipantRole::Chair => "chair",
        ParticipantRole::Presenter => "presenter",
        ParticipantRole::Participant => "participant",
        ParticipantRole::Observer => "observer",
    }
}

fn invitation_from_row(r: &sqlx::any::AnyRow) -> Result<Invitation, sqlx::Error> {
    let role: String = r.try_get("role")?;
    Ok(Invitation {
        id: r.try_get("id")?,
        room_id: r.try_get("room_id")?,
        subject: r.try_get("subject")?,
        display_name: r.try_get("display_name")?,
        hospital_id: r.try_get("hospital_id")?,
        role: parse_role(&role),
        invited_by: r.try_get("invited_by")?,
        admitted_at: r.try_get("admitted_at")?,
        admitted_by: r.try_get("admitted_by")?,
        removed_at: r.try_get("removed_at")?,
    })
}

async fn audit(
    tx: &mut WriteTx,
    actor: &str,
    action: &str,
    room: &str,
    hospital: &str,
    details: serde_json::Value,
) -> Result<(), AuditError> {
    AuditLog::append_in(
        tx,
        AuditEvent {
            actor: actor.to_owned(),
            action: format!("video.{action}"),
            target: format!("video-room/{room}"),
            hospital_id: Some(hospital.to_owned()),
            details,
        },
    )
    .await
    .map(|_| ())
}

impl std::fmt::Debug for VideoService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoService").finish_non_exhaustive()
    }
}

impl VideoService {
    /// The service over `db`, signing embedded tokens with `signer`.
    pub fn new(db: Database, signer: TokenSigner, backend: VideoBackend) -> Self {
        Self {
            db,
            signer,
            backend,
            hub: Mutex::new(HashMap::new()),
            media: OnceLock::new(),
            bus: OnceLock::new(),
            recheck_ms: AtomicU64::new(RECHECK_WITHOUT_NOTIFY.as_millis() as u64),
        }
    }

    /// How often each signalling socket re-reads its room's state.
    pub fn recheck_interval(&self) -> Duration {
        Duration::from_millis(self.recheck_ms.load(Ordering::Relaxed).max(10))
    }

    /// Change [`Self::recheck_interval`] (sockets opened from now on).
    pub fn set_recheck_interval(&self, every: Duration) {
        self.recheck_ms
            .store(every.as_millis() as u64, Ordering::Relaxed);
    }

    /// Plug in the media relay; `false` when one is already set.
    pub fn set_media_plane(&self, media: Arc<dyn MediaPlane>) -> bool {
        if self.media.set(media.clone()).is_err() {
            return false;
        }
        // The room keeps its chat: the relay hands each line over, written
        // here off the relay's loop.
        let (log, mut lines) = tokio::sync::mpsc::unbounded_channel::<ChatLine>();
        media.keep_chat(log);
        let db = self.db.clone();
        tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                if let Err(e) = chat::insert(&db, &line).await {
                    tracing::warn!(room = %line.room_id, error = %e, "a chat line was not kept");
                }
            }
        });
        true
    }

    /// Whether this runtime carries the rooms' media itself.
    pub fn is_embedded(&self) -> bool {
        matches!(self.backend, VideoBackend::Embedded)
    }

    /// The media relay, when one is plugged in.
    pub fn media_plane(&self) -> Option<Arc<dyn MediaPlane>> {
        self.media.get().cloned()
    }

    /// The embedded token signer (also verifies).
    pub fn signer(&self) -> &TokenSigner {
        &self.signer
    }

    /// Whether media runs on a LiveKit cluster.
    pub fn livekit(&self) -> Option<&LiveKit> {
        match &self.backend {
            VideoBackend::LiveKit(lk) => Some(lk),
            VideoBackend::Embedded => None,
        }
    }

    /// Create a room, audited; on LiveKit the room is created there too.
    pub async fn create_room(&self, new: NewRoom) -> Result<Room, VideoError> {
        let purpose = new.purpose.trim();
        const MAX: usize = crate::text_limits::ROOM_PURPOSE_BYTES;
        if purpose.is_empty() || purpose.len() > MAX {
            return Err(VideoError::Invalid(format!(
                "purpose must be 1 to {MAX} bytes"
            )));
        }
        if !(2..=MAX_PARTICIPANTS).contains(&new.max_participants) {
            return Err(VideoError::Invalid(format!(
                "max_participants must be 2 to {MAX_PARTICIPANTS}"
            )));
        }
        if new.requesting_hospital.as_deref() == Some(new.host_hospital.as_str()) {
            return Err(VideoError::Invalid(
                "the requesting hospital is another hospital than the host".into(),
            ));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_millis();
        if let Some(lk) = self.livekit() {
            lk.create_room(&id, new.max_participants).await?;
        }
        let mut tx = self.db.begin_write().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO video_rooms ({ROOM_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, 'scheduled', $7, $8, $9, $10, NULL)"
        )))
        .bind(&id)
        .bind(&new.host_hospital)
        .bind(new.requesting_hospital.as_deref())
        .bind(purpose)
        .bind(i64::from(new.max_participants))
        .bind(new.scheduled_at)
        .bind(new.consultation_id.as_deref())
        .bind(&new.created_by)
        .bind(new.created_by_plugin.as_deref())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        audit(
            &mut tx,
            &new.created_by,
            "room_created",
            &id,
            &new.host_hospital,
            json!({ "requesting_hospital": new.requesting_hospital, "consultation": new.consultation_id, "plugin": new.created_by_plugin }),
        )
        .await?;
        tx.commit().await?;
        self.room(&id).await
    }

    /// The room `id`.
    pub async fn room(&self, id: &str) -> Result<Room, VideoError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROOM_COLUMNS} FROM video_rooms WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| VideoError::RoomNotFound(id.to_owned()))?;
        Ok(room_from_row(&row)?)
    }
}
