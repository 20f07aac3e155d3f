//! The signalling endpoint `GET /video/rooms/{room}/ws?token=`: verifies
//! the join token before upgrading, holds the socket in the waiting room
//! until a chair admits it, then relays the room's control events. The
//! participation is marked left when the socket ends, however it ends.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::ApiError;
use crate::Runtime;
use crate::directory::HospitalDirectory;
use crate::video::media::MediaSession;
use crate::video::rooms::{Invitation, RoomEvent, RoomStatus, VideoService};
use crate::video::signal::{
    self, ClientMessage, ErrorCode, Incoming, PresentParticipant, RosterEntry, ServerMessage,
};
use crate::video::{JoinGrant, ParticipantRole};

/// How often the server pings an idle client.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// A client silent this long (no message, no pong) is marked left.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// The signalling route.
pub fn routes() -> Router<Arc<Runtime>> {
    Router::new().route("/video/rooms/{room}/ws", get(join))
}

#[derive(Deserialize)]
struct JoinQuery {
    token: Option<String>,
}

async fn join(
    State(rt): State<Arc<Runtime>>,
    Path(room): Path<String>,
    Query(q): Query<JoinQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let token = q
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("a join token is required: ?token=".into()))?;
    // The token is checked before the upgrade, so a refused client gets
    // an HTTP status it can read.
    let (grant, invitation) = rt.video.verify_join(&room, &token).await?;
    let ws =
        ws.map_err(|e| ApiError::BadRequest(format!("a WebSocket upgrade is required: {e}")))?;
    let video = rt.video.clone();
    let hospitals = rt.hospitals.clone();
    Ok(ws
        .max_message_size(signal::MAX_SOCKET_MESSAGE_BYTES)
        .max_frame_size(signal::MAX_SOCKET_MESSAGE_BYTES)
        .on_upgrade(move |socket| session(video, hospitals, socket, grant, invitation)))
}

type Sink = SplitSink<WebSocket, Message>;

async fn send(sink: &mut Sink, msg: &ServerMessage) -> bool {
    match serde_json::to_string(msg) {
        Ok(text) => sink.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => false,
    }
}

async fn send_error(
    sink: &mut Sink,
    code: ErrorCode,
    message: impl Into<String>,
    fatal: bool,
) -> bool {
    send(
        sink,
        &ServerMessage::Error {
            code,
            message: message.into(),
            fatal,
        },
    )
    .await
}

/// Send who is present now; with `only_if_changed`, only when it differs
/// from the last list sent (`last`).
async fn send_participants(
    ctx: &Ctx<'_>,
    sink: &mut Sink,
    room: &str,
    last: &mut Option<Vec<PresentParticipant>>,
    only_if_changed: bool,
) -> bool {
    match ctx.video.present(room).await {
        Ok(participants) => {
            if only_if_changed && last.as_ref() == Some(&participants) {
                return true;
            }
            *last = Some(participants.clone());
            // Pages show hospitals by name, never by id.
            let participants = participants
                .into_iter()
                .map(|p| RosterEntry {
                    hospital_name: p
                        .hospital
                        .as_deref()
                        .and_then(|h| ctx.hospitals.get(h))
                        .map(|h| h.name),
                    participant: p,
                })
                .collect();
            send(
                sink,
                &ServerMessage::Participants {
                    room: room.to_owned(),
                    participants,
                },
            )
            .await
        }
        Err(e) => {
            tracing::error!(error = %e, "listing the room's participants");
            send_error(
                sink,
                ErrorCode::Internal,
                "cannot list the participants now",
                false,
            )
            .await
        }
    }
}

/// What a session reads besides its socket.
struct Ctx<'a> {
    video: &'a VideoService,
    hospitals: &'a HospitalDirectory,
}

/// One participant's signalling session.
async fn session(
    video: Arc<VideoService>,
    hospitals: Arc<HospitalDirectory>,
    socket: WebSocket,
    grant: JoinGrant,
    inv: Invitation,
) {
    let room = grant.room_id.clone();
    // Subscribe before recording the connection, so no admission is missed.
    let events = video.subscribe(&room);
    let (mut sink, stream) = socket.split();
    let (participation, admitted) = match video.connect(&inv).await {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "recording a video connection");
            send_error(
                &mut sink,
                ErrorCode::Internal,
                "cannot join now; retry",
                true,
            )
            .await;
            return;
        }
    };
    tracing::info!(%room, participant = %grant.participant_id, admitted, "joined the room's signalling");
    let mut media = Media::default();
    let ctx = Ctx {
        video: &video,
        hospitals: &hospitals,
    };
    let reason = run(
        &ctx,
        &grant,
        &mut sink,
        stream,
        events,
        admitted,
        &participation,
        &mut media,
    )
    .await;
    if let Some(s) = media.session.take() {
        s.leave();
    }
    let _ = sink.close().await;
    if let Err(e) = video.disconnect(&room, &participation, reason).await {
        tracing::error!(error = %e, "recording that a participant left");
    }
    tracing::info!(%room, participant = %grant.participant_id, reason, "left the room's signalling");
}

/// The participant's media session, once admitted and if a relay is plugged in.
struct Media {
    session: Option<Box<dyn MediaSession>>,
    out: mpsc::UnboundedSender<serde_json::Value>,
    inbox: mpsc::UnboundedReceiver<serde_json::Value>,
}

impl Default for Media {
    fn default() -> Self {
        let (out, inbox) = mpsc::unbounded_channel();
        Self {
            session: None,
            out,
            inbox,
        }
    }
}

impl Media {
    fn start(&mut self, video: &VideoService, grant: &JoinGrant) {
        if self.session.is_none()
            && let Some(plane) = video.media_plane()
        {
            self.session = Some(plane.join(grant, self.out.clone()));
        }
    }
}

/// The session loop; returns why it ended.
#[allow(clippy::too_many_arguments)]
async fn run(
    ctx: &Ctx<'_>,
    grant: &JoinGrant,
    sink: &mut Sink,
    mut stream: futures::stream::SplitStream<WebSocket>,
    mut events: tokio::sync::broadcast::Receiver<RoomEvent>,
    mut admitted: bool,
    participation: &str,
    media: &mut Media,
) -> &'static str {
    let video = ctx.video;
    let room = grant.room_id.as_str();
    let me = grant.participant_id.as_str();
    let announce = |admitted: bool| {
        if admitted {
            ServerMessage::Admitted {
                room: room.to_owned(),
                participant_id: me.to_owned(),
                role: grant.role,
                can_publish: grant.can_publish,
                can_subscribe: grant.can_subscribe,
            }
        } else {
            ServerMessage::Waiting {
                room: room.to_owned(),
                participant_id: me.to_owned(),
            }
        }
    };
    let mut last_list = None;
    if !send(sink, &announce(admitted)).await {
        return "disconnected";
    }
    if admitted {
        if !send_participants(ctx, sink, room, &mut last_list, false).await {
            return "disconnected";
        }
        media.start(video, grant);
    }
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    // The database is the truth across nodes; see `VideoService::recheck_interval`.
    let mut recheck = tokio::time::interval(video.recheck_interval());
    recheck.tick().await;
    let mut last_seen = Instant::now();
    loop {
        tokio::select! {
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else { return "disconnected" };
                last_seen = Instant::now();
                let text = match frame {
                    Message::Text(t) => t,
                    Message::Close(_) => return "left",
                    Message::Binary(_) => {
                        if !send_error(sink, ErrorCode::BadMessage, "send JSON text messages", false).await {
                            return "disconnected";
                        }
                        continue;
                    }
                    _ => continue,
                };
                let reply = match signal::parse(text.as_str()) {
                    Err(message) => Some((ErrorCode::BadMessage, message)),
                    Ok(Incoming::Control(ClientMessage::Leave)) => return "left",
                    Ok(Incoming::Control(ClientMessage::Ping)) => None,
                    Ok(Incoming::Control(ClientMessage::Admit { .. })) if !admitted => {
                        Some((ErrorCode::OutOfOrder, "you are still in the waiting room".into()))
                    }
                    Ok(Incoming::Control(ClientMessage::Admit { participant_id })) => {
                        admit(video, grant, &participant_id).await
                    }
                    Ok(Incoming::Control(ClientMessage::Remove { .. })) if !admitted => {
                        Some((ErrorCode::OutOfOrder, "you are still in the waiting room".into()))
                    }
                    Ok(Incoming::Control(ClientMessage::Remove { participant_id })) => {
                        remove(video, grant, &participant_id).await
                    }
                    Ok(Incoming::Media(_)) if !admitted => Some((
                        ErrorCode::OutOfOrder,
                        "media signalling starts after the chair admits you".into(),
                    )),
                    Ok(Incoming::Media(m)) => match media.session.as_mut() {
                        Some(s) => {
                            s.message(m);
                            None
                        }
                        None => Some((
                            ErrorCode::Unavailable,
                            "no media relay serves this room on this node".into(),
                        )),
                    },
                };
                if let Some((code, message)) = reply
                    && !send_error(sink, code, message, false).await
                {
                    return "disconnected";
                }
            }
            event = events.recv() => {
                let event = match event {
                    Ok(e) => e,
                    // Missed events: the database says what is true now.
                    Err(RecvError::Lagged(_)) => RoomEvent::Changed,
                    Err(RecvError::Closed) => return "disconnected",
                };
                match event {
                    RoomEvent::Ended => {
                        send(sink, &ServerMessage::RoomEnded { room: room.to_owned() }).await;
                        return "room-ended";
                    }
                    RoomEvent::Removed(id) if id == me => {
                        send_error(sink, ErrorCode::Removed, "the chair removed you from the room", true).await;
                        return "removed";
                    }
                    RoomEvent::Admitted(id) if id == me && !admitted => {
                        admitted = true;
                        if let Err(e) = video.mark_admitted(participation).await {
                            tracing::error!(error = %e, "recording an admission");
                        }
                        if !send(sink, &announce(true)).await
                            || !send_participants(ctx, sink, room, &mut last_list, false).await
                        {
                            return "disconnected";
                        }
                        media.start(video, grant);
                    }
                    RoomEvent::Changed if admitted && !send_participants(ctx, sink, room, &mut last_list, false).await => {
                        return "disconnected";
                    }
                    _ => {}
                }
            }
            Some(out) = media.inbox.recv() => {
                if sink.send(Message::Text(out.to_string().into())).await.is_err() {
                    return "disconnected";
                }
            }
            // A safety net: events from other nodes come by NOTIFY on
            // PostgreSQL, but one lost while reconnecting is caught here.
            _ = recheck.tick() => {
                let (status, inv) = match video.state(room, me).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "re-reading the room's state");
                        continue;
                    }
                };
                if status == RoomStatus::Ended {
                    send(sink, &ServerMessage::RoomEnded { room: room.to_owned() }).await;
                    return "room-ended";
                }
                if inv.removed_at.is_some() {
                    send_error(sink, ErrorCode::Removed, "the chair removed you from the room", true).await;
                    return "removed";
                }
                if !admitted && inv.admitted_at.is_some() {
                    admitted = true;
                    if let Err(e) = video.mark_admitted(participation).await {
                        tracing::error!(error = %e, "recording an admission");
                    }
                    if !send(sink, &announce(true)).await {
                        return "disconnected";
                    }
                    media.start(video, grant);
                }
                if admitted && !send_participants(ctx, sink, room, &mut last_list, true).await {
                    return "disconnected";
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > IDLE_TIMEOUT {
                    return "timed-out";
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return "disconnected";
                }
            }
        }
    }
}

/// A chair removes someone over the socket (not themselves: a chair leaves).
async fn remove(video: &VideoService, grant: &JoinGrant, who: &str) -> Option<(ErrorCode, String)> {
    if grant.role != ParticipantRole::Chair {
        return Some((
            ErrorCode::Forbidden,
            "only a chair removes participants".into(),
        ));
    }
    if who == grant.participant_id {
        return Some((
            ErrorCode::BadMessage,
            "a chair leaves rather than removing themselves".into(),
        ));
    }
    let room = match video.room(&grant.room_id).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "reading a room to remove a participant");
            return Some((ErrorCode::Internal, "cannot remove now; retry".into()));
        }
    };
    match video.remove(&room, who, &grant.subject).await {
        Ok(_) => None,
        Err(crate::video::rooms::VideoError::ParticipantNotFound(_)) => Some((
            ErrorCode::BadMessage,
            format!("no participant {who} in this room"),
        )),
        Err(e) => Some((ErrorCode::BadMessage, e.to_string())),
    }
}

/// A chair admits someone over the socket.
async fn admit(video: &VideoService, grant: &JoinGrant, who: &str) -> Option<(ErrorCode, String)> {
    if grant.role != ParticipantRole::Chair {
        return Some((
            ErrorCode::Forbidden,
            "only a chair admits participants".into(),
        ));
    }
    let room = match video.room(&grant.room_id).await {
        Ok(r) => r,
        Err(e) => return Some((ErrorCode::Internal, e.to_string())),
    };
    match video.admit(&room, who, &grant.subject).await {
        Ok(_) => None,
        Err(crate::video::rooms::VideoError::ParticipantNotFound(_)) => Some((
            ErrorCode::BadMessage,
            format!("no participant {who} in this room"),
        )),
        Err(e) => Some((ErrorCode::BadMessage, e.to_string())),
    }
}
