//! Where the control plane hands an admitted participant to the media
//! relay. The relay (embedded SFU) implements [`MediaPlane`] and is set
//! once with [`super::rooms::VideoService::set_media_plane`]; without one,
//! media messages are answered with an `unavailable` error.

use tokio::sync::mpsc;

use super::JoinGrant;

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
}

/// One participant's media session.
pub trait MediaSession: Send {
    /// A client `offer`, `answer` or `candidate`, as received.
    fn message(&mut self, message: serde_json::Value);
    /// The participant left, was removed, or the room ended.
    fn leave(self: Box<Self>);
}
