//! The room's chat, kept with the room: every line the relay passed on, so
//! the consultation's conversation outlives the call.

use sqlx::Row;

use super::{VideoError, VideoService};
use crate::db::Database;
use crate::video::media::ChatLine;

/// Most lines one listing returns (the oldest are left out).
pub const CHAT_LIST_MAX: i64 = 1000;

/// Store one line.
pub(super) async fn insert(db: &Database, line: &ChatLine) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO video_chat (id, room_id, participant_id, name, text, at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&line.room_id)
    .bind(&line.participant_id)
    .bind(&line.name)
    .bind(&line.text)
    .bind(line.at)
    .execute(&db.pool)
    .await?;
    Ok(())
}

impl VideoService {
    /// The chat of `room`, oldest first (its last [`CHAT_LIST_MAX`] lines).
    pub async fn chat(&self, room: &str) -> Result<Vec<ChatLine>, VideoError> {
        let rows = sqlx::query(
            "SELECT room_id, participant_id, name, text, at FROM video_chat \
             WHERE room_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(room)
        .bind(CHAT_LIST_MAX)
        .fetch_all(&self.db.pool)
        .await?;
        let mut lines = rows
            .iter()
            .map(|r| {
                Ok(ChatLine {
                    room_id: r.try_get("room_id")?,
                    participant_id: r.try_get("participant_id")?,
                    name: r.try_get("name")?,
                    text: r.try_get("text")?,
                    at: r.try_get("at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        lines.reverse();
        Ok(lines)
    }
}
