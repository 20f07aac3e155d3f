//! The relay's event loop: one task owns the UDP socket and every
//! participant's `str0m::Rtc`, demultiplexes datagrams to them and forwards
//! each publisher's RTP to the other participants of the same room.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::CryptoProvider;
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::signal::{
    ErrorCode, MAX_CHAT_CHARS, MediaParticipant, ServerMessage, candidates_in_every_media,
    may_share_screen, sdp_sends_media, sdp_syntax_problem,
};
use crate::video::JoinGrant;
use crate::video::media::ChatLine;

/// One participant's connection, numbered by the relay.
pub type ClientId = u64;

/// What the signalling side asks of the event loop.
#[derive(Debug)]
pub enum Command {
    Join {
        id: ClientId,
        grant: JoinGrant,
        out: mpsc::UnboundedSender<ServerMessage>,
    },
    Offer {
        id: ClientId,
        sdp: String,
    },
    Answer {
        id: ClientId,
        sdp: String,
    },
    Candidate {
        id: ClientId,
        candidate: String,
    },
    Leave {
        id: ClientId,
    },
    MediaState {
        id: ClientId,
        state: MediaState,
    },
    Mute {
        id: ClientId,
        target: String,
    },
    Chat {
        id: ClientId,
        text: String,
    },
    EndRoom {
        room: String,
    },
    /// Pass every chat line on to `log` as well.
    KeepChat {
        log: mpsc::UnboundedSender<ChatLine>,
    },
}

/// Chat lines a room replays to whoever joins (its recent conversation).
const CHAT_REPLAY: usize = 50;
/// Rooms whose recent chat is held at once; the quietest is dropped first.
const CHAT_ROOMS: usize = 256;

/// What a participant says it sends and wants (`media-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaState {
    pub audio_muted: bool,
    pub video_muted: bool,
    pub sharing_screen: bool,
    pub receive_video: bool,
}

impl Default for MediaState {
    fn default() -> Self {
        Self {
            audio_muted: false,
            video_muted: false,
            sharing_screen: false,
            receive_video: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
    ToStop(Mid),
    Stopping(Mid),
}

/// A publisher's track forwarded to one subscriber.
#[derive(Debug)]
struct TrackOut {
    origin: ClientId,
    origin_mid: Mid,
    kind: MediaKind,
    /// The publisher's second video: its shared screen, in a stream of its own.
    screen: bool,
    state: OutState,
}

impl TrackOut {
    fn open_mid(&self) -> Option<Mid> {
        match self.state {
            OutState::Open(m) => Some(m),
            _ => None,
        }
    }
}

/// A published track received from a participant.
#[derive(Debug)]
struct TrackIn {
    mid: Mid,
    kind: MediaKind,
    /// The second video m-line of a publisher's offer, kept for screen sharing.
    screen: bool,
    last_keyframe_request: Option<Instant>,
}

struct Client {
    id: ClientId,
    grant: JoinGrant,
    out: mpsc::UnboundedSender<ServerMessage>,
    /// `None` until the client's initial offer.
    rtc: Option<Rtc>,
    pending: Option<SdpPendingOffer>,
    tracks_in: Vec<TrackIn>,
    tracks_out: Vec<TrackOut>,
    remote_candidates: usize,
    /// Touched since last polled: input, media written, tracks changed.
    dirty: bool,
    /// When its `Rtc` next needs a timeout input.
    next_timeout: Instant,
    /// Its connection was dropped after a panic in the WebRTC stack.
    failed: bool,
    /// An ICE connectivity check from the client has succeeded.
    ice_connected: bool,
    /// Why its connection was dropped: said to the client and logged.
    lost: Option<Lost>,
    /// As its last `media-state` said.
    state: MediaState,
    /// When its recent chat lines were sent, for the rate limit.
    chat_times: VecDeque<Instant>,
}

/// Why a participant's media connection ended.
#[derive(Debug)]
struct Lost {
    /// For the client: no internals.
    reason: &'static str,
    /// For the log: the WebRTC stack's own error, if any.
    detail: Option<String>,
}

impl Lost {
    fn new(reason: &'static str) -> Self {
        Self {
            reason,
            detail: None,
        }
    }

    fn because(reason: &'static str, detail: impl std::fmt::Display) -> Self {
        Self {
            reason,
            detail: Some(detail.to_string()),
        }
    }
}

/// Record the first reason a connection is dropped and disconnect it.
fn drop_connection(rtc: &mut Rtc, lost: &mut Option<Lost>, why: Lost) {
    if lost.is_none() {
        *lost = Some(why);
    }
    rtc.disconnect();
}

/// Chat lines a participant may send per [`CHAT_WINDOW`].
const CHAT_BURST: usize = 10;
const CHAT_WINDOW: Duration = Duration::from_secs(10);

/// More candidates than any real browser trickles; the rest are ignored so a
/// client cannot grow the ICE agent without bound.
const MAX_REMOTE_CANDIDATES: usize = 64;

impl Client {
    fn stream_id(&self) -> String {
        format!("p{}", self.id)
    }

    fn screen_stream_id(&self) -> String {
        format!("p{}s", self.id)
    }

    fn send(&self, msg: ServerMessage) {
        // A closed channel means the socket is going away; its Leave follows.
        let _ = self.out.send(msg);
    }

    fn error(&self, code: ErrorCode, message: impl Into<String>) {
        self.send(ServerMessage::Error {
            code,
            message: message.into(),
            fatal: false,
        });
    }

    fn alive(&self) -> bool {
        !self.failed && self.rtc.as_ref().is_none_or(Rtc::is_alive)
    }
}

/// Work produced by one client for the others.
enum Propagated {
    TrackOpen {
        origin: ClientId,
        mid: Mid,
        kind: MediaKind,
        screen: bool,
    },
    Media(ClientId, Box<MediaData>),
    KeyframeRequest {
        origin: ClientId,
        origin_mid: Mid,
        kind: KeyframeRequestKind,
    },
}

/// The relay's state, owned by the event loop task.
pub struct Relay {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    crypto: Arc<CryptoProvider>,
    clients: Vec<Client>,
    queue: VecDeque<Propagated>,
    /// Where chat lines are kept (the room service), once set.
    chat_log: Option<mpsc::UnboundedSender<ChatLine>>,
    /// Each room's recent chat, replayed to whoever joins it.
    recent_chat: HashMap<String, VecDeque<ServerMessage>>,
}

impl Relay {
    pub fn new(socket: UdpSocket, local: SocketAddr, crypto: Arc<CryptoProvider>) -> Self {
        Self {
            socket: Arc::new(socket),
            local,
            crypto,
            clients: Vec::new(),
            queue: VecDeque::new(),
            chat_log: None,
            recent_chat: HashMap::new(),
        }
    }

    /// Run until every handle to the command channel is dropped.
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut buf = vec![0u8; 2000];
        let socket = self.socket.clone();
        loop {
            let deadline = self.poll_all();
            let sleep = tokio::time::sleep_until(deadline.into());
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.handle_command(cmd),
                    None => return,
                },
                recv = socket.recv_from(&mut buf) => match recv {
                    Ok((n, source)) => self.handle_datagram(&buf[..n], source),
                    Err(e) => tracing::debug!(error = %e, "media socket receive"),
                },
                () = sleep => {}
            }
            // Only clients whose timer is due: feeding all of them on every
            // packet made the loop quadratic in the number of participants.
            let now = Instant::now();
            for client in self.clients.iter_mut().filter(|c| c.next_timeout <= now) {
                client.dirty = true;
                if let Some(rtc) = client.rtc.as_mut().filter(|r| r.is_alive())
                    && let Err(e) = rtc.handle_input(Input::Timeout(now))
                {
                    drop_connection(
                        rtc,
                        &mut client.lost,
                        Lost::because("the WebRTC stack failed", e),
                    );
                }
            }
        }
    }

    fn handle_datagram(&mut self, data: &[u8], source: SocketAddr) {
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        let Some(client) = self
            .clients
            .iter_mut()
            .find(|c| c.rtc.as_ref().is_some_and(|r| r.accepts(&input)))
        else {
            return;
        };
        client.dirty = true;
        if let Some(rtc) = client.rtc.as_mut() {
            match contained(|| rtc.handle_input(input)) {
                Some(Ok(())) => {}
                Some(Err(e)) => drop_connection(
                    rtc,
                    &mut client.lost,
                    Lost::because("a media packet from the client was refused", e),
                ),
                None => {
                    client.lost = Some(Lost::new("a media packet crashed the WebRTC stack"));
                    client.rtc = None;
                    client.failed = true;
                }
            }
        }
    }

    fn client(&mut self, id: ClientId) -> Option<&mut Client> {
        self.clients.iter_mut().find(|c| c.id == id)
    }

    fn handle_command(&mut self, cmd: Command) {
        for c in &mut self.clients {
            c.dirty = true;
        }
        match cmd {
            Command::Join { id, grant, out } => {
                // Everything already published in the room, offered once the
                // newcomer's own offer is answered.
                let tracks_out = if grant.can_subscribe {
                    self.clients
                        .iter()
                        .filter(|c| c.grant.room_id == grant.room_id)
                        .flat_map(|c| {
                            c.tracks_in.iter().map(|t| TrackOut {
                                origin: c.id,
                                origin_mid: t.mid,
                                kind: t.kind,
                                screen: t.screen,
                                state: OutState::ToOpen,
                            })
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                self.clients.push(Client {
                    id,
                    grant,
                    out,
                    rtc: None,
                    pending: None,
                    tracks_in: Vec::new(),
                    tracks_out,
                    remote_candidates: 0,
                    dirty: true,
                    next_timeout: Instant::now(),
                    failed: false,
                    ice_connected: false,
                    lost: None,
                    state: MediaState::default(),
                    chat_times: VecDeque::new(),
                });
                if let Some(room) = self.client(id).map(|c| c.grant.room_id.clone()) {
                    self.announce(&room);
                    // A newcomer (or someone reconnecting) reads what was said.
                    let replay: Vec<ServerMessage> = self
                        .recent_chat
                        .get(&room)
                        .map(|lines| lines.iter().cloned().collect())
                        .unwrap_or_default();
                    if let Some(client) = self.client(id) {
                        for line in replay {
                            client.send(line);
                        }
                    }
                }
            }
            Command::Offer { id, sdp } => self.handle_offer(id, &sdp),
            Command::Answer { id, sdp } => self.handle_answer(id, &sdp),
            Command::Candidate { id, candidate } => {
                let Some(client) = self.client(id) else {
                    return;
                };
                let Some(rtc) = client.rtc.as_mut() else {
                    client.error(ErrorCode::OutOfOrder, "a candidate before the offer");
                    return;
                };
                if client.remote_candidates >= MAX_REMOTE_CANDIDATES {
                    return;
                }
                client.remote_candidates += 1;
                let line = candidate.strip_prefix("a=").unwrap_or(&candidate);
                match contained(|| Candidate::from_sdp_string(line)) {
                    Some(Ok(c)) => rtc.add_remote_candidate(c),
                    // mDNS (`.local`) host names do not parse; the relay
                    // learns such peers from their connectivity checks.
                    _ => tracing::debug!("ignoring a remote candidate"),
                }
            }
            Command::Leave { id } => self.remove(id),
            Command::MediaState { id, state } => self.media_state(id, state),
            Command::Mute { id, target } => self.mute(id, &target),
            Command::Chat { id, text } => self.chat(id, &text),
            Command::KeepChat { log } => self.chat_log = Some(log),
            Command::EndRoom { room } => {
                self.recent_chat.remove(&room);
                let ids: Vec<ClientId> = self
                    .clients
                    .iter()
                    .filter(|c| c.grant.room_id == room)
                    .map(|c| c.id)
                    .collect();
                for id in ids {
                    if let Some(c) = self.client(id) {
                        c.send(ServerMessage::Error {
                            code: ErrorCode::RoomEnded,
                            message: "the room has ended".into(),
                            fatal: true,
                        });
                    }
                    self.remove(id);
                }
            }
        }
    }

    fn handle_offer(&mut self, id: ClientId, sdp: &str) {
        let crypto = self.crypto.clone();
        let local = self.local;
        let Some(client) = self.client(id) else {
            return;
        };
        if client.rtc.is_some() {
            client.error(
                ErrorCode::OutOfOrder,
                "only one offer per connection; the relay re-offers when tracks change",
            );
            return;
        }
        if !client.grant.can_publish && sdp_sends_media(sdp) {
            client.error(
                ErrorCode::Forbidden,
                "this participant may not publish: offer audio and video as recvonly or not at all",
            );
            return;
        }
        let offer = match contained(|| SdpOffer::from_sdp_string(sdp)) {
            Some(Ok(o)) => o,
            parse_error => {
                // The parser's own message prints positions as addresses.
                if let Some(Err(e)) = parse_error {
                    tracing::debug!(participant = %client.grant.participant_id, error = %e, "offer does not parse");
                }
                let problem = sdp_syntax_problem(sdp);
                client.error(
                    ErrorCode::BadSdp,
                    format!("offer does not parse: {problem}"),
                );
                return;
            }
        };
        let mut rtc = Rtc::builder()
            .set_crypto_provider(crypto)
            .set_ice_lite(true)
            .build(Instant::now());
        let Ok(candidate) = Candidate::host(local, "udp") else {
            client.send(ServerMessage::Error {
                code: ErrorCode::Unavailable,
                message: "the media relay has no usable address".into(),
                fatal: true,
            });
            return;
        };
        rtc.add_local_candidate(candidate);
        match contained(|| rtc.sdp_api().accept_offer(offer)) {
            Some(Ok(answer)) => {
                client.rtc = Some(rtc);
                client.send(ServerMessage::Answer {
                    sdp: candidates_in_every_media(&answer.to_sdp_string()),
                });
            }
            Some(Err(e)) => {
                tracing::debug!(participant = %client.grant.participant_id, error = %e, "offer rejected");
                client.error(ErrorCode::BadSdp, format!("offer rejected: {}", plain(&e)));
            }
            None => client.error(ErrorCode::BadSdp, "offer rejected"),
        }
    }

    fn handle_answer(&mut self, id: ClientId, sdp: &str) {
        let Some(client) = self.client(id) else {
            return;
        };
        let (Some(rtc), Some(pending)) = (client.rtc.as_mut(), client.pending.take()) else {
            client.error(ErrorCode::OutOfOrder, "an answer with no offer pending");
            return;
        };
        let answer = match contained(|| SdpAnswer::from_sdp_string(sdp)) {
            Some(Ok(a)) => a,
            parse_error => {
                // Keep the offer pending: the client may send a good answer.
                client.pending = Some(pending);
                if let Some(Err(e)) = parse_error {
                    tracing::debug!(participant = %client.grant.participant_id, error = %e, "answer does not parse");
                }
                let problem = sdp_syntax_problem(sdp);
                client.error(
                    ErrorCode::BadSdp,
                    format!("answer does not parse: {problem}"),
                );
                return;
            }
        };
        let accepted = contained(|| rtc.sdp_api().accept_answer(pending, answer));
        if accepted.is_none() {
            // The stack panicked midway: its state is unknown, drop the connection.
            client.lost = Some(Lost::new("an answer crashed the WebRTC stack"));
            client.rtc = None;
            client.failed = true;
            return;
        }
        if let Some(Err(e)) = accepted {
            // The pending offer is consumed: put the tracks back to be offered again.
            for t in &mut client.tracks_out {
                match t.state {
                    OutState::Negotiating(_) => t.state = OutState::ToOpen,
                    OutState::Stopping(m) => t.state = OutState::ToStop(m),
                    _ => {}
                }
            }
            tracing::debug!(participant = %client.grant.participant_id, error = %e, "answer rejected");
            client.error(ErrorCode::BadSdp, format!("answer rejected: {}", plain(&e)));
            return;
        }
        let mut opened = Vec::new();
        for t in &mut client.tracks_out {
            if let OutState::Negotiating(m) = t.state {
                t.state = OutState::Open(m);
                if t.kind == MediaKind::Video {
                    opened.push((t.origin, t.origin_mid));
                }
            }
        }
        client
            .tracks_out
            .retain(|t| !matches!(t.state, OutState::Stopping(_)));
        // A new subscriber can decode only from a keyframe.
        for (origin, origin_mid) in opened {
            self.queue.push_back(Propagated::KeyframeRequest {
                origin,
                origin_mid,
                kind: KeyframeRequestKind::Pli,
            });
        }
    }

    fn media_state(&mut self, id: ClientId, state: MediaState) {
        let Some(client) = self.client(id) else {
            return;
        };
        let sends = state.sharing_screen || state.audio_muted || state.video_muted;
        if sends && !client.grant.can_publish {
            client.error(ErrorCode::Forbidden, "this participant does not publish");
            return;
        }
        if state.sharing_screen && !may_share_screen(client.grant.role) {
            client.error(ErrorCode::Forbidden, "chairs and presenters share screens");
            return;
        }
        let started_sharing = state.sharing_screen && !client.state.sharing_screen;
        // Video comes back after audio only: each camera needs a keyframe.
        let resumed: Vec<(ClientId, Mid)> = if state.receive_video && !client.state.receive_video {
            client
                .tracks_out
                .iter()
                .filter(|t| t.kind == MediaKind::Video && !t.screen && t.open_mid().is_some())
                .map(|t| (t.origin, t.origin_mid))
                .collect()
        } else {
            Vec::new()
        };
        client.state = state;
        let screen_mid = client.tracks_in.iter().find(|t| t.screen).map(|t| t.mid);
        let room = client.grant.room_id.clone();
        for (origin, origin_mid) in resumed {
            self.queue.push_back(Propagated::KeyframeRequest {
                origin,
                origin_mid,
                kind: KeyframeRequestKind::Pli,
            });
        }
        // Viewers of the screen need a keyframe to start from.
        if let (true, Some(origin_mid)) = (started_sharing, screen_mid) {
            self.queue.push_back(Propagated::KeyframeRequest {
                origin: id,
                origin_mid,
                kind: KeyframeRequestKind::Pli,
            });
        }
        self.announce(&room);
    }

    /// A chair asks `target` to turn the microphone off; the target's page
    /// does it (the person may turn it on again, as in any meeting).
    fn mute(&mut self, id: ClientId, target: &str) {
        let Some(chair) = self.clients.iter().find(|c| c.id == id) else {
            return;
        };
        if chair.grant.role != crate::video::ParticipantRole::Chair {
            chair.error(ErrorCode::Forbidden, "only a chair mutes participants");
            return;
        }
        let by = chair.grant.display_name.clone();
        let room = &chair.grant.room_id;
        match self
            .clients
            .iter()
            .find(|c| &c.grant.room_id == room && c.grant.participant_id == target)
        {
            Some(t) => t.send(ServerMessage::MuteRequested { by }),
            None => chair.error(
                ErrorCode::BadMessage,
                "no such participant in this room's media session",
            ),
        }
    }

    /// Pass a chat line to everyone in the sender's room.
    fn chat(&mut self, id: ClientId, text: &str) {
        let Some(client) = self.client(id) else {
            return;
        };
        if !client.grant.can_publish {
            client.error(ErrorCode::Forbidden, "observers follow without chatting");
            return;
        }
        let text = text.trim();
        if text.is_empty()
            || text.chars().count() > MAX_CHAT_CHARS
            || text.chars().any(|c| c.is_control() && c != '\n')
        {
            client.error(
                ErrorCode::BadMessage,
                format!("a chat line is 1 to {MAX_CHAT_CHARS} characters, no control characters"),
            );
            return;
        }
        let now = Instant::now();
        while client
            .chat_times
            .front()
            .is_some_and(|t| now.duration_since(*t) > CHAT_WINDOW)
        {
            client.chat_times.pop_front();
        }
        if client.chat_times.len() >= CHAT_BURST {
            client.error(ErrorCode::BadMessage, "too many chat lines; wait a moment");
            return;
        }
        client.chat_times.push_back(now);
        let kept = ChatLine {
            room_id: client.grant.room_id.clone(),
            participant_id: client.grant.participant_id.clone(),
            name: client.grant.display_name.clone(),
            text: text.to_owned(),
            at: crate::time::now_millis(),
        };
        let line = ServerMessage::Chat {
            participant_id: kept.participant_id.clone(),
            name: kept.name.clone(),
            text: kept.text.clone(),
            at: kept.at,
        };
        let room = kept.room_id.clone();
        if let Some(log) = &self.chat_log {
            let _ = log.send(kept);
        }
        for c in self.clients.iter().filter(|c| c.grant.room_id == room) {
            c.send(line.clone());
        }
        self.remember_chat(room, line);
    }

    /// Hold `line` among `room`'s recent chat, within the bounds.
    fn remember_chat(&mut self, room: String, line: ServerMessage) {
        if !self.recent_chat.contains_key(&room) && self.recent_chat.len() >= CHAT_ROOMS {
            let quietest = self
                .recent_chat
                .iter()
                .min_by_key(|(_, lines)| match lines.back() {
                    Some(ServerMessage::Chat { at, .. }) => *at,
                    _ => i64::MIN,
                })
                .map(|(r, _)| r.clone());
            if let Some(r) = quietest {
                self.recent_chat.remove(&r);
            }
        }
        let lines = self.recent_chat.entry(room).or_default();
        if lines.len() >= CHAT_REPLAY {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// Drop a participant; others stop receiving its tracks.
    fn remove(&mut self, id: ClientId) {
        let Some(pos) = self.clients.iter().position(|c| c.id == id) else {
            return;
        };
        let mut gone = self.clients.swap_remove(pos);
        if let Some(rtc) = gone.rtc.as_mut() {
            rtc.disconnect();
        }
        for c in &mut self.clients {
            c.dirty = true;
            for t in &mut c.tracks_out {
                if t.origin == id {
                    t.state = match t.state {
                        OutState::Open(m) | OutState::Negotiating(m) => OutState::ToStop(m),
                        s => s,
                    };
                }
            }
            // Not yet offered: nothing to stop.
            c.tracks_out
                .retain(|t| !(t.origin == id && t.state == OutState::ToOpen));
        }
        tracing::info!(room = %gone.grant.room_id, participant = %gone.grant.participant_id, "left the media session");
        self.announce(&gone.grant.room_id);
    }

    /// Tell everyone in `room` who is there and which stream is whose.
    fn announce(&self, room: &str) {
        let participants: Vec<MediaParticipant> = self
            .clients
            .iter()
            .filter(|c| c.grant.room_id == room)
            .map(|c| MediaParticipant {
                participant_id: c.grant.participant_id.clone(),
                display_name: c.grant.display_name.clone(),
                role: c.grant.role,
                can_publish: c.grant.can_publish,
                stream_id: c.tracks_in.iter().any(|t| !t.screen).then(|| c.stream_id()),
                screen_stream_id: (c.state.sharing_screen && c.tracks_in.iter().any(|t| t.screen))
                    .then(|| c.screen_stream_id()),
                audio_muted: c.state.audio_muted,
                video_muted: c.state.video_muted,
            })
            .collect();
        for c in self.clients.iter().filter(|c| c.grant.room_id == room) {
            c.send(ServerMessage::Tracks {
                you: c.grant.participant_id.clone(),
                participants: participants.clone(),
            });
        }
    }

    /// Drain every client's output, forward what must be forwarded, and
    /// return when the loop must wake up next.
    fn poll_all(&mut self) -> Instant {
        loop {
            for i in 0..self.clients.len() {
                if std::mem::take(&mut self.clients[i].dirty) {
                    self.clients[i].next_timeout = self.poll_client(i);
                }
            }
            if self.queue.is_empty() {
                // Removing someone changes others' tracks: poll them again.
                if self.reap() {
                    continue;
                }
                let cap = Instant::now() + Duration::from_millis(100);
                return self
                    .clients
                    .iter()
                    .map(|c| c.next_timeout)
                    .fold(cap, Instant::min);
            }
            while let Some(p) = self.queue.pop_front() {
                self.propagate(p);
            }
        }
    }

    /// Remove participants whose connection died (ICE or DTLS failure);
    /// whether any was.
    fn reap(&mut self) -> bool {
        let dead: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|c| !c.alive())
            .map(|c| c.id)
            .collect();
        for &id in &dead {
            if let Some(c) = self.client(id) {
                let lost = c
                    .lost
                    .take()
                    .unwrap_or_else(|| Lost::new("the WebRTC connection closed"));
                tracing::warn!(
                    room = %c.grant.room_id,
                    participant = %c.grant.participant_id,
                    reason = lost.reason,
                    detail = lost.detail.as_deref().unwrap_or(""),
                    ice_connected = c.ice_connected,
                    "media connection lost"
                );
                c.send(ServerMessage::Error {
                    code: ErrorCode::Unavailable,
                    message: format!("the media connection was lost: {}", lost.reason),
                    fatal: true,
                });
            }
            self.remove(id);
        }
        !dead.is_empty()
    }

    fn poll_client(&mut self, i: usize) -> Instant {
        let socket = self.socket.clone();
        let client = &mut self.clients[i];
        negotiate_if_needed(client);
        let Some(rtc) = client.rtc.as_mut() else {
            return Instant::now() + Duration::from_secs(1);
        };
        let mut announce = false;
        let deadline = loop {
            if !rtc.is_alive() {
                break Instant::now();
            }
            let output = match rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    drop_connection(
                        rtc,
                        &mut client.lost,
                        Lost::because("the WebRTC stack failed", e),
                    );
                    break Instant::now();
                }
            };
            match output {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    // UDP: a full send buffer drops the packet, as the network would.
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(e) => match e {
                    Event::IceConnectionStateChange(
                        IceConnectionState::Connected | IceConnectionState::Completed,
                    ) => client.ice_connected = true,
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        let why = if client.ice_connected {
                            "ICE connectivity checks from the client stopped (network change or loss)"
                        } else {
                            // The usual cause: the client never used the
                            // relay's candidate, or UDP to it is blocked.
                            "no ICE connectivity check from the client reached the relay's candidate"
                        };
                        drop_connection(rtc, &mut client.lost, Lost::new(why));
                    }
                    Event::MediaAdded(m) => {
                        let publishes =
                            matches!(m.direction, Direction::RecvOnly | Direction::SendRecv);
                        // One audio and two video tracks per publisher (the
                        // camera, then the screen it may share); observers none.
                        let same_kind =
                            client.tracks_in.iter().filter(|t| t.kind == m.kind).count();
                        let room_for = match m.kind {
                            MediaKind::Audio => same_kind == 0,
                            MediaKind::Video => {
                                same_kind == 0
                                    || (same_kind == 1 && may_share_screen(client.grant.role))
                            }
                        };
                        if publishes && client.grant.can_publish && room_for {
                            let screen = m.kind == MediaKind::Video && same_kind == 1;
                            client.tracks_in.push(TrackIn {
                                mid: m.mid,
                                kind: m.kind,
                                screen,
                                last_keyframe_request: None,
                            });
                            self.queue.push_back(Propagated::TrackOpen {
                                origin: client.id,
                                mid: m.mid,
                                kind: m.kind,
                                screen,
                            });
                            announce = true;
                        }
                    }
                    Event::MediaData(data) => {
                        if !client.tracks_in.iter().any(|t| t.mid == data.mid) {
                            continue;
                        }
                        // No layer selection yet: of a simulcast publisher,
                        // forward the high layer only.
                        if data.rid.is_some_and(|r| r != "h".into()) {
                            continue;
                        }
                        if !data.contiguous {
                            request_keyframe(
                                &mut client.tracks_in,
                                rtc,
                                data.mid,
                                KeyframeRequestKind::Fir,
                            );
                        }
                        self.queue
                            .push_back(Propagated::Media(client.id, Box::new(data)));
                    }
                    Event::KeyframeRequest(req) => {
                        if let Some(t) = client
                            .tracks_out
                            .iter()
                            .find(|t| t.open_mid() == Some(req.mid))
                        {
                            self.queue.push_back(Propagated::KeyframeRequest {
                                origin: t.origin,
                                origin_mid: t.origin_mid,
                                kind: req.kind,
                            });
                        }
                    }
                    _ => {}
                },
            }
        };
        if announce {
            let room = client.grant.room_id.clone();
            self.announce(&room);
        }
        deadline
    }

    fn propagate(&mut self, p: Propagated) {
        match p {
            Propagated::TrackOpen {
                origin,
                mid,
                kind,
                screen,
            } => {
                let Some(room) = self
                    .clients
                    .iter()
                    .find(|c| c.id == origin)
                    .map(|c| c.grant.room_id.clone())
                else {
                    return;
                };
                for c in &mut self.clients {
                    if c.id != origin && c.grant.room_id == room && c.grant.can_subscribe {
                        c.dirty = true;
                        c.tracks_out.push(TrackOut {
                            origin,
                            origin_mid: mid,
                            kind,
                            screen,
                            state: OutState::ToOpen,
                        });
                    }
                }
            }
            Propagated::Media(origin, data) => {
                for c in &mut self.clients {
                    if c.id == origin {
                        continue;
                    }
                    let Some(track) = c
                        .tracks_out
                        .iter()
                        .find(|t| t.origin == origin && t.origin_mid == data.mid)
                    else {
                        continue;
                    };
                    // Audio only: no camera video (a shared screen still comes).
                    let skip =
                        track.kind == MediaKind::Video && !track.screen && !c.state.receive_video;
                    let Some(mid) = track.open_mid().filter(|_| !skip) else {
                        continue;
                    };
                    let Some(rtc) = c.rtc.as_mut() else { continue };
                    c.dirty = true;
                    let Some(writer) = rtc.writer(mid) else {
                        continue;
                    };
                    let Some(pt) = writer.match_params(data.params) else {
                        continue;
                    };
                    if let Err(e) =
                        writer.write(pt, data.network_time, data.time, data.data.clone())
                    {
                        drop_connection(
                            rtc,
                            &mut c.lost,
                            Lost::because("forwarding media failed", e),
                        );
                    }
                }
            }
            Propagated::KeyframeRequest {
                origin,
                origin_mid,
                kind,
            } => {
                if let Some(c) = self.clients.iter_mut().find(|c| c.id == origin)
                    && let Some(rtc) = c.rtc.as_mut()
                {
                    c.dirty = true;
                    request_keyframe(&mut c.tracks_in, rtc, origin_mid, kind);
                }
            }
        }
    }
}

/// A WebRTC stack error for the client: its message, unless it carries a
/// memory address (some of str0m's parser errors do).
fn plain(e: &str0m::RtcError) -> String {
    let text = e.to_string();
    if text.contains("0x") {
        "the SDP is not consistent with the session".into()
    } else {
        text
    }
}

/// Run `f` on untrusted input so that a panic inside the WebRTC stack costs
/// one participant its connection, not every room its relay.
fn contained<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// Ask a publisher for a keyframe, at most once a second per track.
fn request_keyframe(tracks: &mut [TrackIn], rtc: &mut Rtc, mid: Mid, kind: KeyframeRequestKind) {
    let Some(track) = tracks.iter_mut().find(|t| t.mid == mid) else {
        return;
    };
    if track
        .last_keyframe_request
        .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
    {
        return;
    }
    if let Some(mut writer) = rtc.writer(mid) {
        let _ = writer.request_keyframe(None, kind);
        track.last_keyframe_request = Some(Instant::now());
    }
}

/// Send a re-offer when tracks were added or removed and none is pending.
fn negotiate_if_needed(client: &mut Client) {
    let Some(rtc) = client.rtc.as_mut() else {
        return;
    };
    if client.pending.is_some() || !rtc.is_alive() {
        return;
    }
    let mut change = rtc.sdp_api();
    for t in &mut client.tracks_out {
        match t.state {
            OutState::ToOpen => {
                // The screen is a stream of its own, so pages tell it apart.
                let stream = if t.screen {
                    format!("p{}s", t.origin)
                } else {
                    format!("p{}", t.origin)
                };
                let mid = change.add_media(t.kind, Direction::SendOnly, Some(stream), None, None);
                t.state = OutState::Negotiating(mid);
            }
            OutState::ToStop(mid) => {
                change.stop_media(mid);
                t.state = OutState::Stopping(mid);
            }
            _ => {}
        }
    }
    if !change.has_changes() {
        return;
    }
    let Some((offer, pending)) = change.apply() else {
        return;
    };
    client.pending = Some(pending);
    client.send(ServerMessage::Offer {
        sdp: candidates_in_every_media(&offer.to_sdp_string()),
    });
}
