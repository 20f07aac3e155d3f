//! The control-plane messages of the signalling WebSocket
//! (`/video/rooms/{room}/ws?token=...`), JSON objects tagged by `type`.
//! The media relay adds its own types (`offer`, `answer`, `candidate`);
//! the control plane passes those through only once a participant is
//! admitted. See docs/video.md.

use serde::{Deserialize, Serialize};

use super::ParticipantRole;

/// Largest client message the control plane reads (an SDP fits); a larger
/// one is answered with a non-fatal `bad-message`.
pub const MAX_MESSAGE_BYTES: usize = 96 * 1024;

/// The WebSocket's own limit, above [`MAX_MESSAGE_BYTES`] so that a message
/// a little too large reaches the check and gets its `bad-message` answer
/// instead of a dropped connection. Beyond this the connection closes.
pub const MAX_SOCKET_MESSAGE_BYTES: usize = 4 * MAX_MESSAGE_BYTES;

/// Message types that belong to the media plane (`leave` is the control
/// plane's: it ends the whole session).
pub const MEDIA_TYPES: [&str; 6] = [
    "offer",
    "answer",
    "candidate",
    "media-state",
    "mute",
    "chat",
];

/// A control message from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage {
    /// Connected, in the waiting room until a chair admits you. Nothing
    /// else of the room is sent before `admitted`.
    Waiting {
        room: String,
        participant_id: String,
    },
    /// In the room: media may start.
    Admitted {
        room: String,
        participant_id: String,
        role: ParticipantRole,
        can_publish: bool,
        can_subscribe: bool,
    },
    /// Who is connected now, sent to admitted participants on every change.
    Participants {
        room: String,
        participants: Vec<RosterEntry>,
    },
    /// The room was ended; the server closes the socket after this.
    RoomEnded { room: String },
    /// A refused message or a refused session; the socket closes when `fatal`.
    Error {
        code: ErrorCode,
        message: String,
        fatal: bool,
    },
}

/// One connected participant, as `participants` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresentParticipant {
    pub participant_id: String,
    pub name: String,
    pub role: ParticipantRole,
    pub hospital: Option<String>,
    pub state: PresenceState,
    /// RFC 3339.
    pub joined_at: String,
}

/// A connected participant with their hospital's name, for pages that show
/// people by name, never by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEntry {
    #[serde(flatten)]
    pub participant: PresentParticipant,
    /// From the hospital directory; `None` without a hospital or when the
    /// directory does not know it.
    pub hospital_name: Option<String>,
}

/// Whether a connected participant is still in the waiting room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PresenceState {
    Waiting,
    InRoom,
}

/// A control message from the client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Leave the room (closing the socket does the same).
    Leave,
    /// Chair only: let a waiting participant in.
    Admit { participant_id: String },
    /// Chair only: remove a participant (as `POST …/remove`); their
    /// invitation ends and their sockets close with a `removed` error.
    Remove { participant_id: String },
    /// Keep-alive; answered by nothing, it only proves the client is there.
    Ping,
}

/// Why a message or a session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// Not JSON, not an object with a known `type`, or wrong fields.
    BadMessage,
    /// Valid, but not now (media before admission).
    OutOfOrder,
    /// The role does not allow it (admitting without being chair).
    Forbidden,
    /// The chair removed this participant.
    Removed,
    /// No media relay serves this room on this node.
    Unavailable,
    /// A server fault; retry later.
    Internal,
}

/// What a client text message is.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    Control(ClientMessage),
    /// An `offer`, `answer` or `candidate`, for the media plane as is.
    Media(serde_json::Value),
}

/// Parse a client message; the error is the text of the `error` answer.
pub fn parse(text: &str) -> Result<Incoming, String> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(format!("message over {MAX_MESSAGE_BYTES} bytes"));
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let ty = value
        .get("type")
        .and_then(serde_json::Value::as_str)
        .ok_or("a message is a JSON object with a string `type`")?;
    if MEDIA_TYPES.contains(&ty) {
        return Ok(Incoming::Media(value));
    }
    serde_json::from_value(value.clone())
        .map(Incoming::Control)
        .map_err(|e| format!("`{ty}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_control_media_and_garbage() {
        assert_eq!(
            parse(r#"{"type":"leave"}"#),
            Ok(Incoming::Control(ClientMessage::Leave))
        );
        assert_eq!(
            parse(r#"{"type":"admit","participant_id":"p"}"#),
            Ok(Incoming::Control(ClientMessage::Admit {
                participant_id: "p".into()
            }))
        );
        assert!(matches!(
            parse(r#"{"type":"offer","sdp":"v=0"}"#),
            Ok(Incoming::Media(_))
        ));
        assert!(parse("{").is_err());
        assert!(parse("[1]").is_err());
        assert!(parse(r#"{"type":"teleport"}"#).is_err());
        assert!(parse(r#"{"type":"admit"}"#).is_err());
    }

    #[test]
    fn server_messages_are_tagged() {
        let m = ServerMessage::RoomEnded { room: "r".into() };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"type": "room-ended", "room": "r"})
        );
    }
}
