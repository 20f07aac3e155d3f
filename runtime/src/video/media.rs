//! Where the control plane hands an admitted participant to the media
//! relay. The relay (embedded SFU) implements [`MediaPlane`] and is set
//! once with [`super::rooms::VideoService::set_media_plane`]; without one,
//! media messages are answered with an `unavailable` error.

use serde::Serialize;
use tokio::sync::mpsc;

use super::JoinGrant;

/// One chat line the relay passed on to a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatLine {
    pub room_id: String,
    pub participant_id: String,
    pub name: String,
    pub text: String,
    /// When the relay received it, epoch milliseconds.
    pub at: i64,
}

/// The media relay, as the signalling endpoint sees it.
pub trait MediaPlane: Send + Sync {
    /// An admitted participant joins the media session; the relay sends its
    /// own messages (`answer`, `offer`, `tracks`, `error`…, JSON objects
    /// tagged by `type`) through `out`, which the control plane writes to
    /// the participant's socket.
    fn join(
        &self,
        grant: &JoinGrant,
        out: mpsc::UnboundedSender<serde_json::Value>,
    ) -> Box<dyn MediaSession>;

    /// Hand every chat line passed on from now to `log`, so the room keeps
    /// its conversation. A relay without chat ignores it.
    fn keep_chat(&self, _log: mpsc::UnboundedSender<ChatLine>) {}
}

/// One participant's media session.
pub trait MediaSession: Send {
    /// A client `offer`, `answer` or `candidate`, as received.
    fn message(&mut self, message: serde_json::Value);
    /// The participant left, was removed, or the room ended.
    fn leave(self: Box<Self>);
}
