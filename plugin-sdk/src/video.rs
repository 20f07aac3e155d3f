//! Video consultation rooms (WIT interface `video`; list `"video"` in the manifest).
//!
//! Rooms are hosted by the hospital of the call, and a plugin acts only on the rooms it
//! created there. The caller must be a practitioner, admin or service of that hospital
//! (a join token may also be issued to the invited person themselves). Refusals come back
//! as [`Error`] (`denied` → 403, `invalid` → 400, `not-found` → 404).
//!
//! ```no_run
//! use vtelehealth_plugin_sdk::video::{self, Role, RoomSpec};
//! # fn run(consultant: &str) -> Result<(), vtelehealth_plugin_sdk::Error> {
//! let room = video::create_room(&RoomSpec {
//!     requesting_hospital: Some("bv-huyen".into()),
//!     purpose: "Hội chẩn".into(),
//!     max_participants: 6,
//!     scheduled_at: None,
//!     consultation_id: None,
//! })?;
//! let p = video::invite(&room.id, consultant, Role::Presenter)?;
//! let token = video::issue_join_token(&room.id, &p.id, None)?;
//! # let _ = token; Ok(()) }
//! ```

use crate::Error;
use crate::bindings::vtelehealth::platform::video as raw;
pub use crate::bindings::vtelehealth::platform::video::{
    JoinToken, Participant, Role, Room, RoomSpec,
};

/// Create a room hosted by the hospital of this call.
pub fn create_room(spec: &RoomSpec) -> Result<Room, Error> {
    Ok(raw::create_room(spec)?)
}

/// Invite a practitioner of any hospital with a role.
pub fn invite(room_id: &str, practitioner_id: &str, role: Role) -> Result<Participant, Error> {
    Ok(raw::invite(room_id, practitioner_id, role)?)
}

/// A join token for an invited participant; `ttl_seconds` 30 to 3600 (600 when `None`).
pub fn issue_join_token(
    room_id: &str,
    participant_id: &str,
    ttl_seconds: Option<u32>,
) -> Result<JoinToken, Error> {
    Ok(raw::issue_join_token(room_id, participant_id, ttl_seconds)?)
}

/// Every invited participant and when they were in the room.
pub fn list_participants(room_id: &str) -> Result<Vec<Participant>, Error> {
    Ok(raw::list_participants(room_id)?)
}

/// End the room: everyone is disconnected and no join token works any more.
pub fn end_room(room_id: &str) -> Result<Room, Error> {
    Ok(raw::end_room(room_id)?)
}
