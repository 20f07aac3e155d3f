//! The JSON messages of the media signalling WebSocket (see docs/video-media.md).

use serde::{Deserialize, Serialize};

use crate::video::ParticipantRole;

/// Largest SDP or candidate accepted from a client; real ones are a few KiB.
pub const MAX_SDP_BYTES: usize = 64 * 1024;

/// Longest chat line, in characters.
pub const MAX_CHAT_CHARS: usize = 1000;

/// Whether a message `type` belongs to the media session (the rest are the
/// room service's control messages).
pub fn is_media_message(kind: &str) -> bool {
    matches!(
        kind,
        "offer" | "answer" | "candidate" | "leave" | "media-state" | "mute" | "chat"
    )
}

/// A message from the browser.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ClientMessage {
    /// The client's one initial offer.
    Offer { sdp: String },
    /// The answer to a server re-offer.
    Answer { sdp: String },
    /// A trickled ICE candidate (`candidate:...` line); `null` ends gathering.
    Candidate {
        candidate: Option<String>,
        #[serde(default, rename = "sdpMid")]
        sdp_mid: Option<String>,
        #[serde(default, rename = "sdpMLineIndex")]
        sdp_mline_index: Option<u32>,
        /// The ICE ufrag the candidate belongs to; `RTCIceCandidate.toJSON()`
        /// sends it. The relay has one ICE session per connection, so it is
        /// accepted and not needed.
        #[serde(default, rename = "usernameFragment")]
        username_fragment: Option<String>,
    },
    /// The participant leaves the room.
    Leave,
    /// What the participant sends now, shown on the others' tiles: a muted
    /// microphone, a camera turned off, a screen being shared.
    MediaState {
        #[serde(default)]
        audio_muted: bool,
        #[serde(default)]
        video_muted: bool,
        #[serde(default)]
        sharing_screen: bool,
        /// `false`: audio only, for a poor network: the relay stops
        /// forwarding others' camera video to this participant (a shared
        /// screen still comes).
        #[serde(default = "yes")]
        receive_video: bool,
    },
    /// Chairs only: ask a participant to turn their microphone off.
    Mute { participant_id: String },
    /// A chat line to everyone in the room (publishers only).
    Chat { text: String },
}

fn yes() -> bool {
    true
}

/// Whether `role` may share a screen (docs/video.md: chairs and presenters).
pub fn may_share_screen(role: ParticipantRole) -> bool {
    matches!(role, ParticipantRole::Chair | ParticipantRole::Presenter)
}

/// A message to the browser.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage {
    /// The answer to the client's offer.
    Answer { sdp: String },
    /// A server re-offer: tracks of other publishers were added or removed.
    Offer { sdp: String },
    /// Who is in the media session and which stream carries whose media.
    Tracks {
        /// The receiving participant's own id.
        you: String,
        participants: Vec<MediaParticipant>,
    },
    /// A rejected message; the session goes on unless `fatal`.
    Error {
        code: ErrorCode,
        message: String,
        fatal: bool,
    },
    /// A chair asked this participant to turn the microphone off; `by` is
    /// the chair's display name.
    MuteRequested { by: String },
    /// A chat line, to everyone in the room including its sender.
    Chat {
        participant_id: String,
        name: String,
        text: String,
        /// When the relay received it, epoch milliseconds.
        at: i64,
    },
}

/// One participant as the `tracks` message lists it.
#[derive(Debug, Clone, Serialize)]
pub struct MediaParticipant {
    pub participant_id: String,
    pub display_name: String,
    pub role: ParticipantRole,
    pub can_publish: bool,
    /// The WebRTC stream id (`MediaStream.id` in the browser) of the
    /// participant's forwarded media; `None` until it publishes.
    pub stream_id: Option<String>,
    /// The stream id of the screen it shares; `None` when not sharing.
    pub screen_stream_id: Option<String>,
    /// As the participant's last `media-state` said.
    pub audio_muted: bool,
    pub video_muted: bool,
}

/// Why a message was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// Not JSON, an unknown type or missing fields.
    BadMessage,
    /// Valid, but not expected now (an answer with no offer pending, a second offer).
    OutOfOrder,
    /// SDP or candidate that does not parse or cannot be applied.
    BadSdp,
    /// The grant does not allow it (an observer offering to send media, a
    /// non-chair muting someone).
    Forbidden,
    /// The relay is gone or the connection failed.
    Unavailable,
    /// The room was ended; the session is over.
    RoomEnded,
}

/// Whether an SDP offers to send audio or video (an m-line that is
/// `sendrecv`, `sendonly` or has no direction, which means `sendrecv`).
pub fn sdp_sends_media(sdp: &str) -> bool {
    let mut in_media = false;
    let mut sends = false;
    let mut port_zero = false;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            if in_media && sends && !port_zero {
                return true;
            }
            let mut parts = m.split(' ');
            let kind = parts.next().unwrap_or("");
            port_zero = parts.next() == Some("0");
            in_media = kind == "audio" || kind == "video";
            sends = true;
        } else if in_media {
            match line {
                "a=recvonly" | "a=inactive" => sends = false,
                "a=sendrecv" | "a=sendonly" => sends = true,
                _ => {}
            }
        }
    }
    in_media && sends && !port_zero
}

/// The relay's SDP with its ICE candidates in every bundled m-line, not in
/// the first only (str0m's output). A max-bundle client may read the
/// candidates of whichever m-line it bundles on; RFC 8843 allows them in
/// each. Rejected m-lines (port 0) get none.
pub fn candidates_in_every_media(sdp: &str) -> String {
    let is_candidate = |l: &str| l.starts_with("a=candidate:") || l == "a=end-of-candidates";
    let lines: Vec<&str> = sdp.split("\r\n").filter(|l| !l.is_empty()).collect();
    let candidates: Vec<&str> =
        lines
            .iter()
            .copied()
            .filter(|l| is_candidate(l))
            .fold(Vec::new(), |mut v, l| {
                if !v.contains(&l) {
                    v.push(l);
                }
                v
            });
    if candidates.is_empty() {
        return sdp.to_owned();
    }
    // Sections: the session part, then one per m-line.
    let mut sections: Vec<Vec<&str>> = vec![Vec::new()];
    for line in lines {
        if line.starts_with("m=") {
            sections.push(Vec::new());
        }
        if let Some(last) = sections.last_mut() {
            last.push(line);
        }
    }
    let mut out = String::with_capacity(sdp.len() + 64 * sections.len());
    for (i, section) in sections.iter().enumerate() {
        for line in section {
            out.push_str(line);
            out.push_str("\r\n");
        }
        let rejected = section
            .first()
            .is_some_and(|m| m.split(' ').nth(1) == Some("0"));
        if i > 0 && !rejected && !section.iter().any(|l| is_candidate(l)) {
            for c in &candidates {
                out.push_str(c);
                out.push_str("\r\n");
            }
        }
    }
    out
}

/// Why an SDP does not parse, in words a client can act on. str0m's parser
/// error is not given: it prints positions as memory addresses.
pub fn sdp_syntax_problem(sdp: &str) -> String {
    if !sdp.starts_with("v=0") {
        return "an SDP starts with the line `v=0`".into();
    }
    for (n, line) in sdp.lines().enumerate() {
        let b = line.as_bytes();
        let well_formed = b.len() >= 2 && b[0].is_ascii_lowercase() && b[1] == b'=';
        if !well_formed {
            return format!("line {} is not of the form `<letter>=<value>`", n + 1);
        }
    }
    "a line has a value the SDP grammar does not allow (check the m=, c= and a= lines)".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_sending_media_lines() {
        let recv = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        assert!(!sdp_sends_media(recv));
        let send = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n";
        assert!(sdp_sends_media(send));
        let implicit = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n";
        assert!(sdp_sends_media(implicit));
        let stopped = "v=0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\na=sendrecv\r\n";
        assert!(!sdp_sends_media(stopped));
    }

    #[test]
    fn parses_and_rejects_messages() {
        let ok: ClientMessage = serde_json::from_str(r#"{"type":"offer","sdp":"v=0"}"#).unwrap();
        assert!(matches!(ok, ClientMessage::Offer { .. }));
        let cand: ClientMessage =
            serde_json::from_str(r#"{"type":"candidate","candidate":null}"#).unwrap();
        assert!(matches!(
            cand,
            ClientMessage::Candidate {
                candidate: None,
                ..
            }
        ));
        // What a browser's `RTCIceCandidate.toJSON()` gives.
        let browser: ClientMessage = serde_json::from_str(
            r#"{"type":"candidate","candidate":"candidate:1 1 udp 2122260223 10.0.0.2 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}"#,
        )
        .unwrap();
        assert!(matches!(
            browser,
            ClientMessage::Candidate {
                username_fragment: Some(_),
                ..
            }
        ));
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"publish"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"answer"}"#).is_err());
    }

    #[test]
    fn every_bundled_media_line_gets_the_candidates() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\na=group:BUNDLE 0 1 2\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1 1 udp 2130706175 127.0.0.1 4000 typ host\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n\
                   m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\n";
        let out = candidates_in_every_media(sdp);
        let sections: Vec<&str> = out.split("m=").collect();
        assert_eq!(sections.len(), 4, "{out}");
        assert!(!sections[0].contains("a=candidate"), "not at session level");
        assert!(sections[1].contains("a=candidate:1 1 udp"), "{out}");
        assert!(sections[2].contains("a=candidate:1 1 udp"), "{out}");
        assert!(
            !sections[3].contains("a=candidate"),
            "rejected m-line: {out}"
        );
        assert_eq!(out.matches("a=candidate").count(), 2);
    }

    #[test]
    fn sdp_problems_are_described_without_internals() {
        assert!(sdp_syntax_problem("garbage").contains("v=0"));
        assert!(sdp_syntax_problem("v=0\r\nnonsense\r\n").contains("line 2"));
        let deep = sdp_syntax_problem("v=0\r\nm=video x\r\n");
        assert!(!deep.contains("0x"), "{deep}");
    }
}
