//! The room service: rooms, invitations with a role, the waiting room
//! (admission is a column of the invitation, checked by the signalling
//! endpoint before anything of the room is sent) and the participation log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use sqlx::Row;
use tokio::sync::broadcast;

use super::livekit::{LiveKit, LiveKitError};
use super::media::MediaPlane;
use super::signal::{PresenceState, PresentParticipant};
use super::token::{
    DEFAULT_TTL_SECS, JoinClaims, JoinError, MAX_TTL_SECS, TokenSigner, VideoClaims, VthClaims,
};
use super::{JoinGrant, ParticipantRole};
use crate::audit::{AuditError, AuditEvent, AuditLog, rfc3339};
use crate::db::{Database, WriteTx};
use crate::identity::PersonRef;
use crate::time::{now_millis, now_secs};

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

/// One connection of a participant.
#[derive(Debug, Clone, Serialize)]
pub struct Participation {
    pub joined_at: String,
    pub admitted_at: Option<String>,
    pub admitted_by: Option<String>,
    pub left_at: Option<String>,
    pub left_reason: Option<String>,
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

/// What happened in a room, for the signalling sockets. On PostgreSQL
/// every node hears every node's events (LISTEN/NOTIFY on [`NOTIFY_CHANNEL`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "event", content = "participant", rename_all = "kebab-case")]
pub enum RoomEvent {
    /// Someone connected, left, or was admitted: send the list again.
    Changed,
    Admitted(String),
    Removed(String),
    Ended,
}

/// The PostgreSQL channel room events travel on between nodes.
pub const NOTIFY_CHANNEL: &str = "vth_video_rooms";
/// How often a socket re-reads its room from the database when no other
/// node can tell it of a change (SQLite, or before LISTEN is up).
pub const RECHECK_WITHOUT_NOTIFY: Duration = Duration::from_secs(2);
/// The same once LISTEN/NOTIFY carries the changes: only a safety net for
/// notifications lost while the listening connection reconnects.
pub const RECHECK_WITH_NOTIFY: Duration = Duration::from_secs(30);

/// One room event between nodes.
#[derive(Serialize, serde::Deserialize)]
struct Notice {
    room: String,
    #[serde(flatten)]
    event: RoomEvent,
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

    /// Share room events with the other nodes through `bus` (PostgreSQL
    /// LISTEN/NOTIFY). Without a shared bus (SQLite, or when listening
    /// failed) sockets re-read the database every [`RECHECK_WITHOUT_NOTIFY`].
    pub fn start_cluster_events(self: &Arc<Self>, bus: Arc<crate::cluster::Bus>) {
        if !bus.is_shared() || self.bus.set(bus.clone()).is_err() {
            return;
        }
        self.set_recheck_interval(RECHECK_WITH_NOTIFY);
        let mut events = bus.subscribe(NOTIFY_CHANNEL);
        // A weak handle, so the service can go away with its runtime.
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let message = events.recv().await;
                let Some(video) = me.upgrade() else { return };
                match message {
                    Ok(crate::cluster::BusMessage::Event(payload)) => {
                        match serde_json::from_str::<Notice>(&payload) {
                            Ok(n) => video.publish_local(&n.room, n.event),
                            Err(e) => tracing::warn!(error = %e, "unreadable room event"),
                        }
                    }
                    // Missed events: every socket re-reads its room.
                    Ok(crate::cluster::BusMessage::Resync)
                    | Err(broadcast::error::RecvError::Lagged(_)) => {
                        video.publish_everywhere(RoomEvent::Changed)
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Plug in the media relay; `false` when one is already set.
    pub fn set_media_plane(&self, media: Arc<dyn MediaPlane>) -> bool {
        self.media.set(media).is_ok()
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

    /// Events of `room` on this node, from now on.
    pub fn subscribe(&self, room: &str) -> broadcast::Receiver<RoomEvent> {
        let mut hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        hub.entry(room.to_owned())
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Tell the sockets of `room`: this node's, and the other nodes' when
    /// cluster events run.
    pub fn publish(&self, room: &str, event: RoomEvent) {
        if let Some(bus) = self.bus.get()
            && let Ok(payload) = serde_json::to_string(&Notice {
                room: room.to_owned(),
                event: event.clone(),
            })
        {
            bus.notify_others(NOTIFY_CHANNEL, &payload);
        }
        self.publish_local(room, event);
    }

    /// Every room with sockets on this node gets `event`.
    fn publish_everywhere(&self, event: RoomEvent) {
        let rooms: Vec<String> = {
            let hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
            hub.keys().cloned().collect()
        };
        for room in rooms {
            self.publish_local(&room, event.clone());
        }
    }

    /// Tell this node's sockets of `room`.
    fn publish_local(&self, room: &str, event: RoomEvent) {
        let mut hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = hub.get(room)
            && tx.send(event).is_err()
        {
            // Nobody listens any more.
            hub.remove(room);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_between_nodes_round_trip() {
        for event in [
            RoomEvent::Changed,
            RoomEvent::Ended,
            RoomEvent::Admitted("p-1".into()),
            RoomEvent::Removed("p-2".into()),
        ] {
            let n = Notice {
                room: "r".into(),
                event: event.clone(),
            };
            let text = serde_json::to_string(&n).unwrap();
            let back: Notice = serde_json::from_str(&text).unwrap();
            assert_eq!((back.room, back.event), ("r".into(), event), "{text}");
        }
        let admitted = serde_json::to_value(Notice {
            room: "r".into(),
            event: RoomEvent::Admitted("p".into()),
        })
        .unwrap();
        assert_eq!(
            admitted,
            json!({"room": "r", "event": "admitted", "participant": "p"})
        );
    }
}
