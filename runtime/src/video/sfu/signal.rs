//! The JSON messages of the media signalling WebSocket (see docs/video-media.md).

use serde::{Deserialize, Serialize};

use crate::video::ParticipantRole;

/// Largest SDP or candidate accepted from a client; real ones are a few KiB.
pub const MAX_SDP_BYTES: usize = 64 * 1024;

/// Whether a message `type` belongs to the media session (the rest are the
/// room service's control messages).
pub fn is_media_message(kind: &str) -> bool {
    matches!(kind, "offer" | "answer" | "candidate" | "leave")
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
    },
    /// The participant leaves the room.
    Leave,
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
    /// The grant does not allow it (an observer offering to send media).
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
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"publish"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"answer"}"#).is_err());
    }
}
