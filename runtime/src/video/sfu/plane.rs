//! The embedded relay behind the signalling endpoint: admitted participants
//! of `/video/rooms/{room}/ws` reach the relay through [`MediaPlane`].

use serde_json::Value;
use tokio::sync::mpsc;

use super::signal::{ClientMessage, ErrorCode, ServerMessage};
use super::{MediaRelay, MediaSession};
use crate::video::JoinGrant;
use crate::video::media::{self, MediaPlane};

fn error(code: ErrorCode, message: impl Into<String>, fatal: bool) -> Value {
    serde_json::to_value(ServerMessage::Error {
        code,
        message: message.into(),
        fatal,
    })
    .unwrap_or(Value::Null)
}

impl MediaPlane for MediaRelay {
    fn keep_chat(&self, log: mpsc::UnboundedSender<media::ChatLine>) {
        if MediaRelay::keep_chat(self, log).is_err() {
            tracing::warn!("the media relay has stopped: room chat is not kept");
        }
    }

    fn join(
        &self,
        grant: &JoinGrant,
        out: mpsc::UnboundedSender<Value>,
    ) -> Box<dyn media::MediaSession> {
        let (tx, mut rx) = mpsc::unbounded_channel::<ServerMessage>();
        let forward = out.clone();
        // The relay speaks typed messages; the control plane writes JSON.
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let Ok(v) = serde_json::to_value(&m) else {
                    continue;
                };
                if forward.send(v).is_err() {
                    break;
                }
            }
        });
        let session = MediaRelay::join(self, grant.clone(), tx).ok();
        if session.is_none() {
            let _ = out.send(error(
                ErrorCode::Unavailable,
                "the media relay is not running",
                true,
            ));
        }
        Box::new(RelaySession { session, out })
    }
}

struct RelaySession {
    session: Option<MediaSession>,
    out: mpsc::UnboundedSender<Value>,
}

impl media::MediaSession for RelaySession {
    fn message(&mut self, message: Value) {
        let Some(session) = &self.session else {
            let _ = self.out.send(error(
                ErrorCode::Unavailable,
                "the media relay is not running",
                true,
            ));
            return;
        };
        match serde_json::from_value::<ClientMessage>(message) {
            Ok(m) => {
                if session.handle(m).is_err() {
                    let _ = self.out.send(error(
                        ErrorCode::Unavailable,
                        "the media relay stopped",
                        true,
                    ));
                }
            }
            Err(e) => {
                let _ = self
                    .out
                    .send(error(ErrorCode::BadMessage, e.to_string(), false));
            }
        }
    }

    fn leave(self: Box<Self>) {
        // Dropping the relay session tells the relay the participant left.
    }
}
