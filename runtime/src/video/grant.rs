//! What a verified join token lets one participant do in one room. The
//! signalling endpoint and the media relay trust only this, never the
//! client's own claims.

use serde::{Deserialize, Serialize};

/// A participant's role in a consultation room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParticipantRole {
    /// The upper-level host's lead: admits people from the waiting room, ends the room.
    Chair,
    /// Shares screen or imaging; publishes and receives.
    Presenter,
    /// Publishes and receives.
    Participant,
    /// Follows and learns: receives only, never publishes.
    Observer,
}

impl ParticipantRole {
    /// Whether this role may publish media.
    pub fn can_publish(self) -> bool {
        !matches!(self, Self::Observer)
    }
}

/// The verified content of a join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinGrant {
    pub room_id: String,
    /// Stable id of the participant within the room (the invitation id).
    pub participant_id: String,
    /// The person (token subject) behind the participant.
    pub subject: String,
    pub display_name: String,
    pub hospital_id: Option<String>,
    pub role: ParticipantRole,
    pub can_publish: bool,
    pub can_subscribe: bool,
    /// Seconds since the epoch.
    pub expires_at: i64,
}
