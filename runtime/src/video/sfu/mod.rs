//! The embedded selective forwarding unit: each participant uploads one
//! audio+video stream over WebRTC (chairs and presenters also a shared
//! screen) and the relay forwards it, unchanged, to every other participant
//! of the room. Observers only receive. The relay also carries the room's
//! small real-time state: mute and camera states, chairs' mute requests, chat.
//!
//! Signalling is JSON over a WebSocket ([`serve_media`], messages in
//! [`signal`], described in docs/video-media.md). Media goes over one UDP
//! socket for all rooms, owned by one task ([`relay`]) built on str0m's
//! sans-IO `Rtc`.

mod plane;
mod relay;
pub mod signal;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use self::relay::{Command, Relay};
use self::signal::{ClientMessage, ErrorCode, MAX_SDP_BYTES, ServerMessage};
use super::JoinGrant;

/// Largest signalling message accepted (an SDP plus JSON framing); a larger
/// one gets a non-fatal `bad-message`.
pub const MAX_SIGNAL_MESSAGE: usize = MAX_SDP_BYTES + 1024;

/// The WebSocket's own limit: above [`MAX_SIGNAL_MESSAGE`], or the socket
/// would drop an oversized message before the check could answer it.
pub const MAX_SIGNAL_SOCKET_MESSAGE: usize = 4 * MAX_SIGNAL_MESSAGE;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("binding the media UDP socket on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the media address {0} is unspecified: give the address browsers reach")]
    Unspecified(SocketAddr),
}

/// A handle to the running relay; cheap to clone.
#[derive(Clone)]
pub struct MediaRelay {
    commands: mpsc::UnboundedSender<Command>,
    local: SocketAddr,
    next_id: Arc<AtomicU64>,
}

impl MediaRelay {
    /// Bind the UDP socket on `addr` (port 0 picks one) and start the relay
    /// task on the current tokio runtime. The address is also the ICE
    /// candidate given to browsers, so it must be one they reach.
    pub async fn start(addr: SocketAddr) -> Result<Self, MediaError> {
        if addr.ip().is_unspecified() {
            return Err(MediaError::Unspecified(addr));
        }
        let socket = tokio::net::UdpSocket::bind(addr)
            .await
            .map_err(|source| MediaError::Bind { addr, source })?;
        let local = socket
            .local_addr()
            .map_err(|source| MediaError::Bind { addr, source })?;
        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(Relay::new(socket, local, crypto).run(rx));
        tracing::info!(%local, "media relay listening");
        Ok(Self {
            commands,
            local,
            next_id: Arc::new(AtomicU64::new(1)),
        })
    }

    /// The UDP address media flows through.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl MediaRelay {
    /// Join `grant`'s participant to its room's media session; the relay's
    /// messages for it go to `out`. For a signalling endpoint that also
    /// speaks control messages on the same socket: feed the media messages
    /// to [`MediaSession::handle`]. Dropping the session leaves the room.
    pub fn join(
        &self,
        grant: JoinGrant,
        out: mpsc::UnboundedSender<ServerMessage>,
    ) -> Result<MediaSession, RelayGone> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        tracing::info!(room = %grant.room_id, participant = %grant.participant_id, "joined the media session");
        self.commands
            .send(Command::Join { id, grant, out })
            .map_err(|_| RelayGone)?;
        Ok(MediaSession {
            commands: self.commands.clone(),
            id,
        })
    }

    /// Hand every chat line passed on from now to `log` (the room service
    /// stores them with the room).
    pub fn keep_chat(
        &self,
        log: mpsc::UnboundedSender<crate::video::media::ChatLine>,
    ) -> Result<(), RelayGone> {
        self.commands
            .send(Command::KeepChat { log })
            .map_err(|_| RelayGone)
    }

    /// Disconnect everyone in `room` (the room was ended): each gets a fatal
    /// `room-ended` error and their media stops.
    pub fn end_room(&self, room: &str) -> Result<(), RelayGone> {
        self.commands
            .send(Command::EndRoom {
                room: room.to_owned(),
            })
            .map_err(|_| RelayGone)
    }
}

/// The relay task has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the media relay is not running")]
pub struct RelayGone;

/// One participant in a room's media session; leaves when dropped.
pub struct MediaSession {
    commands: mpsc::UnboundedSender<Command>,
    id: relay::ClientId,
}

impl MediaSession {
    /// Pass one media message from the client to the relay. `Ok(false)`
    /// when the client asked to leave.
    pub fn handle(&self, msg: ClientMessage) -> Result<bool, RelayGone> {
        let id = self.id;
        let cmd = match msg {
            ClientMessage::Offer { sdp } => Command::Offer { id, sdp },
            ClientMessage::Answer { sdp } => Command::Answer { id, sdp },
            ClientMessage::Candidate {
                candidate: Some(candidate),
                ..
            } if !candidate.is_empty() => Command::Candidate { id, candidate },
            // End of candidates: nothing to do for an ICE-lite relay.
            ClientMessage::Candidate { .. } => return Ok(true),
            ClientMessage::Leave => return Ok(false),
            ClientMessage::MediaState {
                audio_muted,
                video_muted,
                sharing_screen,
                receive_video,
            } => Command::MediaState {
                id,
                state: relay::MediaState {
                    audio_muted,
                    video_muted,
                    sharing_screen,
                    receive_video,
                },
            },
            ClientMessage::Mute { participant_id } => Command::Mute {
                id,
                target: participant_id,
            },
            ClientMessage::Chat { text } => Command::Chat { id, text },
        };
        self.commands.send(cmd).map_err(|_| RelayGone)?;
        Ok(true)
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Leave { id: self.id });
    }
}

/// One frame from the client's socket, as the signalling loop needs it; the
/// web layer adapts its WebSocket to this, so the relay names no HTTP crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary,
    /// The client closed the socket, or it failed.
    Close,
    /// Pings and pongs: nothing to answer here.
    Other,
}

/// Run one participant's media signalling over a socket (`stream` in,
/// `sink` out: JSON text) until it leaves or disconnects. `grant` must
/// already be verified.
pub async fn serve_media<St, Si>(relay: &MediaRelay, mut stream: St, mut sink: Si, grant: JoinGrant)
where
    St: futures::Stream<Item = Incoming> + Unpin,
    Si: futures::Sink<String> + Unpin + Send + 'static,
{
    let (out, mut out_rx) = mpsc::unbounded_channel::<ServerMessage>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let fatal = matches!(msg, ServerMessage::Error { fatal: true, .. });
            let Ok(text) = serde_json::to_string(&msg) else {
                continue;
            };
            if sink.send(text).await.is_err() || fatal {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let reply_error = |code: ErrorCode, message: String, fatal: bool| {
        let _ = out.send(ServerMessage::Error {
            code,
            message,
            fatal,
        });
    };
    match relay.join(grant, out.clone()) {
        Ok(session) => {
            while let Some(msg) = stream.next().await {
                let text = match msg {
                    Incoming::Text(t) => t,
                    Incoming::Close => break,
                    Incoming::Binary => {
                        reply_error(
                            ErrorCode::BadMessage,
                            "send JSON text messages".into(),
                            false,
                        );
                        continue;
                    }
                    Incoming::Other => continue,
                };
                if text.len() > MAX_SIGNAL_MESSAGE {
                    reply_error(
                        ErrorCode::BadMessage,
                        format!("message over {MAX_SIGNAL_MESSAGE} bytes"),
                        false,
                    );
                    continue;
                }
                let parsed: ClientMessage = match serde_json::from_str(text.as_str()) {
                    Ok(m) => m,
                    Err(e) => {
                        let message = format!("not a signalling message: {e}");
                        reply_error(ErrorCode::BadMessage, message, false);
                        continue;
                    }
                };
                match session.handle(parsed) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        reply_error(ErrorCode::Unavailable, e.to_string(), true);
                        break;
                    }
                }
            }
            // Dropping the session leaves the room.
        }
        Err(e) => reply_error(ErrorCode::Unavailable, e.to_string(), true),
    }
    drop(out);
    // The writer ends once the relay has dropped its sender too.
    let _ = writer.await;
}
