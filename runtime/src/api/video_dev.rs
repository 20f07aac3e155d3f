//! Development-only routes that mint a [`JoinGrant`] from query parameters,
//! with no token: `GET /video/dev/{room}/ws?name=...&role=...`. Never mounted
//! by `api::app`; tests and `--video-dev-join` mount them through
//! `api::app_with`.

use std::sync::Arc;

use axum::extract::ws::Message;
use axum::extract::{Path, Query, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;

use super::ApiError;
use crate::Runtime;
use crate::video::sfu::{Incoming, MAX_SIGNAL_SOCKET_MESSAGE, MediaRelay, serve_media};
use crate::video::{JoinGrant, ParticipantRole};

#[derive(Deserialize)]
struct JoinQuery {
    name: String,
    #[serde(default = "default_role")]
    role: ParticipantRole,
    id: Option<String>,
}

fn default_role() -> ParticipantRole {
    ParticipantRole::Participant
}

/// The dev join route, served by `relay`.
pub fn routes(relay: MediaRelay) -> Router<Arc<Runtime>> {
    Router::new()
        .route("/video/dev/{room}/ws", get(join))
        .layer(Extension(relay))
}

async fn join(
    Extension(relay): Extension<MediaRelay>,
    Path(room): Path<String>,
    Query(q): Query<JoinQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let valid = |s: &str| !s.is_empty() && s.len() <= 64 && !s.chars().any(char::is_control);
    if !valid(&room) || !valid(&q.name) {
        return Err(ApiError::BadRequest(
            "room and name must be 1 to 64 printable characters".into(),
        ));
    }
    let participant_id = q.id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let grant = JoinGrant {
        room_id: room,
        participant_id,
        subject: format!("dev:{}", q.name),
        display_name: q.name,
        hospital_id: None,
        role: q.role,
        can_publish: q.role.can_publish(),
        can_subscribe: true,
        expires_at: i64::MAX,
    };
    Ok(ws
        .max_message_size(MAX_SIGNAL_SOCKET_MESSAGE)
        .max_frame_size(MAX_SIGNAL_SOCKET_MESSAGE)
        .on_upgrade(move |socket| async move {
            let (sink, stream) = socket.split();
            let sink = sink.with(|text: String| async move {
                Ok::<_, axum::Error>(Message::Text(text.into()))
            });
            let stream = stream.map(|frame| match frame {
                Ok(Message::Text(t)) => Incoming::Text(t.to_string()),
                Ok(Message::Binary(_)) => Incoming::Binary,
                Ok(Message::Close(_)) | Err(_) => Incoming::Close,
                Ok(_) => Incoming::Other,
            });
            serve_media(&relay, stream, Box::pin(sink), grant).await
        }))
}
