//! Video consultation rooms: the room model and the grant a join token
//! carries. The room service (rooms, invitations, waiting room, tokens),
//! the signalling endpoint and the media relay build on these types.

pub mod grant;
pub mod livekit;
pub mod media;
pub mod rooms;
pub mod signal;
pub mod token;

pub use grant::{JoinGrant, ParticipantRole};
pub mod sfu;
