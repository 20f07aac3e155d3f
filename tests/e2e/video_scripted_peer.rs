//! A WebRTC client written only from docs/video.md and docs/video-media.md,
//! outside any browser (as a hospital's own client or an aiortc script
//! would be): str0m as a *client*, speaking the documented JSON signalling.
//! It bundles everything on one transport (max-bundle) and takes the
//! relay's ICE candidate from a non-first m-line, so an answer with the
//! candidate in the first m-line only would leave it unconnected.
//!
//! What it publishes: Opus silence (a real, decodable Opus frame every
//! 20 ms) and, as video, the frames it receives from the other publisher
//! echoed back from the first keyframe, so a browser has real VP8 to decode
//! from it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;
use vtelehealth_tests::TestServer;
use vtelehealth_tests::browser::{Browser, chromium};

use crate::browser_video::{room_url, video_server, wait_all_decoding};

/// An Opus packet of 20 ms of silence (CELT, fullband, one frame): what
/// WebRTC stacks send for a muted microphone; decoders decode it as audio.
const OPUS_SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];

/// What the scripted peer has seen, shared with the test.
#[derive(Debug, Default, Clone)]
pub struct PeerStats {
    pub ice_connected: bool,
    pub audio_packets_in: u64,
    pub video_frames_in: u64,
    pub video_keyframes_in: u64,
    pub video_frames_echoed: u64,
    pub audio_packets_out: u64,
    /// `error` messages from the relay.
    pub errors: Vec<Value>,
    /// The last `tracks` message.
    pub tracks: Value,
    /// The relay's answer as received (to check its candidates).
    pub answer_sdp: String,
}

/// A running scripted peer; stops when dropped.
pub struct ScriptedPeer {
    pub stats: Arc<Mutex<PeerStats>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedPeer {
    /// Join `room` on the dev route as a publishing participant.
    pub async fn join(server: &TestServer, room: &str, name: &str) -> Self {
        let url = format!(
            "ws://{}/video/dev/{room}/ws?name={name}&role=participant",
            server.addr
        );
        Self::join_url(&url).await
    }

    /// Join over the signalling WebSocket at `url`.
    pub async fn join_url(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the signalling socket opens");
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp socket");
        let stats = Arc::new(Mutex::new(PeerStats::default()));
        let task = tokio::spawn(run(ws, socket, stats.clone()));
        Self { stats, task }
    }

    pub fn stats(&self) -> PeerStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The relay's SDP as a max-bundle client that takes candidates from a
/// non-first m-line sees it: the first m-line's candidates are dropped.
fn without_first_mline_candidates(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    let mut mline = 0;
    for line in sdp.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with("m=") {
            mline += 1;
        }
        if mline == 1 && line.starts_with("a=candidate:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

struct Peer {
    rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    audio_out: Option<Mid>,
    video_out: Option<Mid>,
    /// Video m-lines the relay forwards to us (a publisher's camera and,
    /// for chairs and presenters, its screen slot).
    videos_in: Vec<Mid>,
    /// The one echoed: the first to deliver a keyframe.
    video_in: Option<Mid>,
    audio_clock: u64,
    stats: Arc<Mutex<PeerStats>>,
}

impl Peer {
    fn stat(&self, f: impl FnOnce(&mut PeerStats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }
}

async fn send(ws: &mut Ws, msg: Value) -> bool {
    ws.send(Message::Text(msg.to_string().into())).await.is_ok()
}

async fn run(mut ws: Ws, socket: UdpSocket, stats: Arc<Mutex<PeerStats>>) {
    let local: SocketAddr = socket.local_addr().expect("local address");
    let mut peer = Peer {
        rtc: Rtc::builder().build(Instant::now()),
        pending: None,
        audio_out: None,
        video_out: None,
        videos_in: Vec::new(),
        video_in: None,
        audio_clock: 0,
        stats,
    };
    let candidate = Candidate::host(local, "udp").expect("host candidate");
    peer.rtc.add_local_candidate(candidate.clone());
    let mut buf = vec![0u8; 2000];
    let mut audio_tick = tokio::time::interval(Duration::from_millis(20));
    let mut offered = false;
    loop {
        let deadline = match drain(&mut peer, &socket) {
            Some(d) => d,
            None => return,
        };
        tokio::select! {
            frame = ws.next() => {
                let Some(Ok(Message::Text(text))) = frame else {
                    if frame.is_none() { return; }
                    continue;
                };
                let Ok(msg) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                match msg["type"].as_str() {
                    // The docs: offer once, after the first `tracks` message.
                    Some("tracks") => {
                        peer.stat(|s| s.tracks = msg.clone());
                        if !offered {
                            offered = true;
                            let mut change = peer.rtc.sdp_api();
                            peer.audio_out = Some(change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
                            peer.video_out = Some(change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
                            let Some((offer, pending)) = change.apply() else { return };
                            peer.pending = Some(pending);
                            if !send(&mut ws, json!({"type": "offer", "sdp": offer.to_sdp_string()})).await {
                                return;
                            }
                            // Trickle the candidate as a browser's toJSON() gives it.
                            let c = json!({
                                "type": "candidate",
                                "candidate": candidate.to_sdp_string(),
                                "sdpMid": "0",
                                "sdpMLineIndex": 0,
                                "usernameFragment": peer.rtc.direct_api().local_ice_credentials().ufrag,
                            });
                            if !send(&mut ws, c).await || !send(&mut ws, json!({"type": "candidate", "candidate": null})).await {
                                return;
                            }
                        }
                    }
                    Some("answer") => {
                        let sdp = msg["sdp"].as_str().unwrap_or_default();
                        peer.stat(|s| s.answer_sdp = sdp.to_owned());
                        let stripped = without_first_mline_candidates(sdp);
                        if let (Ok(answer), Some(pending)) = (SdpAnswer::from_sdp_string(&stripped), peer.pending.take()) {
                            let _ = peer.rtc.sdp_api().accept_answer(pending, answer);
                        }
                    }
                    Some("offer") => {
                        let sdp = without_first_mline_candidates(msg["sdp"].as_str().unwrap_or_default());
                        let Ok(offer) = SdpOffer::from_sdp_string(&sdp) else { continue };
                        let Ok(answer) = peer.rtc.sdp_api().accept_offer(offer) else { continue };
                        if !send(&mut ws, json!({"type": "answer", "sdp": answer.to_sdp_string()})).await {
                            return;
                        }
                    }
                    Some("error") => {
                        let fatal = msg["fatal"] == true;
                        peer.stat(|s| s.errors.push(msg.clone()));
                        if fatal { return; }
                    }
                    _ => {}
                }
            }
            recv = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = recv else { continue };
                let Ok(contents) = buf[..n].try_into() else { continue };
                let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
                if peer.rtc.accepts(&input) {
                    let _ = peer.rtc.handle_input(input);
                }
            }
            _ = audio_tick.tick() => send_silence(&mut peer),
            () = tokio::time::sleep_until(deadline.into()) => {
                let _ = peer.rtc.handle_input(Input::Timeout(Instant::now()));
            }
        }
    }
}

/// 20 ms of Opus silence on the audio m-line, once connected.
fn send_silence(peer: &mut Peer) {
    let Some(mid) = peer.audio_out else { return };
    if !peer.stats.lock().is_ok_and(|s| s.ice_connected) {
        return;
    }
    let Some(writer) = peer.rtc.writer(mid) else {
        return;
    };
    let Some(pt) = writer
        .payload_params()
        .find(|p| p.spec().codec == Codec::Opus)
        .map(|p| p.pt())
    else {
        return;
    };
    let time = MediaTime::new(peer.audio_clock, Frequency::FORTY_EIGHT_KHZ);
    peer.audio_clock += 960;
    if writer
        .write(pt, Instant::now(), time, OPUS_SILENCE.to_vec())
        .is_ok()
    {
        peer.stat(|s| s.audio_packets_out += 1);
    }
}

/// Send what str0m wants sent and handle its events; when to wake next, or
/// `None` once the connection is closed.
fn drain(peer: &mut Peer, socket: &UdpSocket) -> Option<Instant> {
    loop {
        if !peer.rtc.is_alive() {
            return None;
        }
        match peer.rtc.poll_output().ok()? {
            Output::Timeout(t) => return Some(t),
            Output::Transmit(t) => {
                let _ = socket.try_send_to(&t.contents, t.destination);
            }
            Output::Event(e) => match e {
                Event::IceConnectionStateChange(
                    IceConnectionState::Connected | IceConnectionState::Completed,
                ) => peer.stat(|s| s.ice_connected = true),
                Event::MediaAdded(m)
                    if m.kind == MediaKind::Video && m.direction == Direction::RecvOnly =>
                {
                    peer.videos_in.push(m.mid);
                }
                Event::MediaData(data) => {
                    if Some(data.mid) == peer.audio_out || Some(data.mid) == peer.video_out {
                        continue;
                    }
                    match data.params.spec().codec {
                        Codec::Opus => peer.stat(|s| s.audio_packets_in += 1),
                        _ => {
                            let key = data.is_keyframe();
                            peer.stat(|s| {
                                s.video_frames_in += 1;
                                s.video_keyframes_in += u64::from(key);
                            });
                            // Echo from a keyframe on, so the other side can decode.
                            if peer.video_in.is_none() && key {
                                peer.video_in = Some(data.mid);
                            }
                            if Some(data.mid) != peer.video_in {
                                continue;
                            }
                            let Some(out) = peer.video_out else {
                                continue;
                            };
                            let Some(writer) = peer.rtc.writer(out) else {
                                continue;
                            };
                            let Some(pt) = writer.match_params(data.params) else {
                                continue;
                            };
                            if writer
                                .write(pt, Instant::now(), data.time, data.data.clone())
                                .is_ok()
                            {
                                peer.stat(|s| s.video_frames_echoed += 1);
                            }
                        }
                    }
                }
                // Whoever receives our echo wants a keyframe: ask the source.
                Event::KeyframeRequest(req) if Some(req.mid) == peer.video_out => {
                    let sources = peer
                        .video_in
                        .map_or_else(|| peer.videos_in.clone(), |m| vec![m]);
                    for mid in sources {
                        if let Some(mut w) = peer.rtc.writer(mid) {
                            let _ = w.request_keyframe(None, KeyframeRequestKind::Pli);
                        }
                    }
                }
                _ => {}
            },
        }
    }
}

/// Poll `check` on the peer's stats every 250 ms for at most 60 s.
async fn wait_peer(peer: &ScriptedPeer, what: &str, check: impl Fn(&PeerStats) -> bool) {
    for _ in 0..240 {
        if check(&peer.stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what}: not within 60 s; the peer: {:#?}", peer.stats());
}

/// Two scripted peers (no browser): each connects through the candidate of
/// a non-first m-line and receives the other's audio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_peers_connect_with_the_candidate_of_a_non_first_mline() {
    let server = video_server().await;
    let a = ScriptedPeer::join(&server, "scripted-1", "May-A").await;
    let b = ScriptedPeer::join(&server, "scripted-1", "May-B").await;
    for (peer, who) in [(&a, "A"), (&b, "B")] {
        wait_peer(peer, &format!("{who} hears the other"), |s| {
            s.ice_connected && s.audio_packets_in > 10
        })
        .await;
        let s = peer.stats();
        assert!(s.errors.is_empty(), "{who}: {:?}", s.errors);
        // Every bundled m-line of the relay's answer carries its candidate.
        let sections: Vec<&str> = s.answer_sdp.split("\r\nm=").skip(1).collect();
        assert_eq!(sections.len(), 2, "{}", s.answer_sdp);
        for m in sections {
            assert!(m.contains("a=candidate:"), "m-line without candidate: {m}");
        }
    }
}

/// The page's inbound audio: packets, samples and concealed samples per
/// received track.
const AUDIO_STATS_JS: &str = r#"(async () => {
  const pc = window.vthPc;
  if (!pc) return {};
  const stats = await pc.getStats();
  const audio = {};
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      audio[s.trackIdentifier] = { packets: s.packetsReceived || 0, samples: s.totalSamplesReceived || 0,
                                   concealed: s.concealedSamples || 0 };
    }
  });
  return { audio };
})()"#;

/// The scripted peer and headless Chromium in one room: Chromium decodes the
/// peer's video (its own frames, echoed) and receives decodable audio; the
/// peer receives Chromium's audio and video as str0m reports them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_peer_and_chromium_decode_each_other() {
    let Some(chromium) = chromium() else { return };
    let server = video_server().await;
    let room = "hoi-chan-kich-ban";
    let browser = Browser::launch(&chromium, &room_url(&server, room, "BS-An", "chair"))
        .await
        .expect("chromium");
    let peer = ScriptedPeer::join(&server, room, "May-kich-ban").await;

    wait_peer(&peer, "the peer receives Chromium's media", |s| {
        s.ice_connected
            && s.video_keyframes_in > 0
            && s.video_frames_in > 20
            && s.audio_packets_in > 20
    })
    .await;
    let mut browsers = vec![("chromium", browser)];
    // Both publish: Chromium decodes video frames from the peer's stream.
    let stats = wait_all_decoding(&mut browsers, 2).await;
    assert_eq!(stats[0]["errors"], json!([]), "{}", stats[0]);
    // And decodes the peer's audio: samples received, beyond concealment.
    let (_, browser) = &mut browsers[0];
    let mut audio = Value::Null;
    for _ in 0..120 {
        audio = browser.eval(AUDIO_STATS_JS).await.expect("audio stats");
        let decoded = audio["audio"].as_object().is_some_and(|m| {
            m.values().any(|a| {
                a["packets"].as_u64().unwrap_or(0) > 20
                    && a["samples"].as_u64().unwrap_or(0) > a["concealed"].as_u64().unwrap_or(0)
            })
        });
        if decoded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        audio["audio"]
            .as_object()
            .is_some_and(|m| m.values().any(|a| {
                a["packets"].as_u64().unwrap_or(0) > 20
                    && a["samples"].as_u64().unwrap_or(0) > a["concealed"].as_u64().unwrap_or(0)
            })),
        "Chromium decodes the peer's audio: {audio}"
    );
    let s = peer.stats();
    assert!(s.video_frames_echoed > 0, "{s:#?}");
    assert!(s.errors.is_empty(), "{:?}", s.errors);
}
