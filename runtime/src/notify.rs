//! Notifications plugins send to people through the `notify` capability.
//! Stored first (nothing is lost when nobody is connected), then announced
//! on the cluster bus so every node's open streams push them at once.
//! Recipients read their own at `/api/v1/me/notifications` (`api/notify.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use tokio::sync::broadcast;

use crate::audit::rfc3339;
use crate::cluster::{Bus, BusMessage};
use crate::db::Database;
use crate::time::now_millis;

/// The bus channel: each event is a recipient's subject.
pub const CHANNEL: &str = "vth_notifications";
/// Most recipients of one message.
pub const MAX_RECIPIENTS: usize = 100;
/// Largest `data` of one message.
pub const MAX_DATA_BYTES: usize = 4096;
const MAX_TOPIC_BYTES: usize = 100;
const MAX_TITLE_BYTES: usize = crate::text_limits::NOTIFY_TITLE_BYTES;
const MAX_LINK_BYTES: usize = 500;
/// Most notifications one page lists.
pub const PAGE_LIMIT: i64 = 200;
/// Most streams one person keeps open on one node (tabs, devices).
pub const MAX_STREAMS_PER_PERSON: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    Invalid(String),
    #[error("notifications storage error: {0}")]
    Database(#[from] sqlx::Error),
}

/// What a plugin sends.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub topic: String,
    pub title: String,
    /// JSON text.
    pub data: String,
    /// A path below the plugin's mount point.
    pub link: Option<String>,
}

impl NewMessage {
    /// Check the message's fields; the parsed `data`.
    pub fn validate(&self) -> Result<Value, NotifyError> {
        let bad = |m: String| Err(NotifyError::Invalid(m));
        if self.topic.is_empty()
            || self.topic.len() > MAX_TOPIC_BYTES
            || !self
                .topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return bad(format!(
                "topic `{}`: 1 to {MAX_TOPIC_BYTES} bytes of letters, digits, `.`, `-` and `_`",
                self.topic.chars().take(40).collect::<String>()
            ));
        }
        let title = self.title.trim();
        if title.is_empty() || title.len() > MAX_TITLE_BYTES || title.chars().any(char::is_control)
        {
            return bad(format!(
                "title: one line of 1 to {MAX_TITLE_BYTES} bytes, without control characters"
            ));
        }
        if self.data.len() > MAX_DATA_BYTES {
            return bad(format!(
                "data is {} bytes; at most {MAX_DATA_BYTES}",
                self.data.len()
            ));
        }
        let data: Value = if self.data.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(&self.data) {
                Ok(v) => v,
                Err(e) => return bad(format!("data is not JSON: {e}")),
            }
        };
        if let Some(link) = &self.link
            && (!link.starts_with('/')
                || link.starts_with("//")
                || link.len() > MAX_LINK_BYTES
                || link.chars().any(|c| c.is_control() || c == '\\' || c == ' ')
                // Never a way out of the plugin's own path.
                || link.to_ascii_lowercase().contains("%2e")
                || link
                    .split(['/', '?', '#'])
                    .any(|seg| seg == "." || seg == ".."))
        {
            return bad(format!(
                "link `{}` must be a path of the plugin starting with `/` (at most {MAX_LINK_BYTES} bytes)",
                link.chars().take(60).collect::<String>()
            ));
        }
        Ok(data)
    }
}

/// One stored notification, as its recipient sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Notification {
    pub seq: i64,
    pub topic: String,
    pub title: String,
    pub data: Value,
    /// The full path (`/hospitals/{h}/plugins/{p}/...`), when the plugin gave one.
    pub link: Option<String>,
    pub hospital: String,
    pub plugin: String,
    pub sender: String,
    /// RFC 3339.
    pub created_at: String,
    pub read: bool,
}

/// The notifications of the deployment.
pub struct Notifications {
    db: Database,
    bus: Arc<Bus>,
    /// Milliseconds; 0 means the default for the bus.
    recheck_ms: AtomicU64,
    /// Open streams per recipient on this node.
    streams: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One open stream, counted until dropped.
pub struct StreamGuard {
    owner: Arc<Notifications>,
    recipient: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut streams = self.owner.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = streams.get_mut(&self.recipient) {
            *n -= 1;
            if *n == 0 {
                streams.remove(&self.recipient);
            }
        }
    }
}

/// How often a stream re-reads the database when no other node can tell it
/// of new notifications (SQLite, or PostgreSQL without LISTEN).
pub const RECHECK_UNSHARED: Duration = Duration::from_secs(2);
/// The same as a safety net under LISTEN/NOTIFY.
pub const RECHECK_SHARED: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifications").finish_non_exhaustive()
    }
}

impl Notifications {
    pub fn new(db: Database, bus: Arc<Bus>) -> Self {
        Self {
            db,
            bus,
            recheck_ms: AtomicU64::new(0),
            streams: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Count a new stream of `recipient`; `None` when they already have
    /// [`MAX_STREAMS_PER_PERSON`] open on this node.
    pub fn open_stream(self: &Arc<Self>, recipient: &str) -> Option<StreamGuard> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let n = streams.entry(recipient.to_owned()).or_insert(0);
        if *n >= MAX_STREAMS_PER_PERSON {
            return None;
        }
        *n += 1;
        Some(StreamGuard {
            owner: self.clone(),
            recipient: recipient.to_owned(),
        })
    }

    /// How often an open stream re-reads the database even when told nothing.
    pub fn recheck_interval(&self) -> Duration {
        match self.recheck_ms.load(Ordering::Relaxed) {
            0 if self.is_shared() => RECHECK_SHARED,
            0 => RECHECK_UNSHARED,
            ms => Duration::from_millis(ms),
        }
    }

    /// Override [`Self::recheck_interval`] (streams opened from now on).
    pub fn set_recheck_interval(&self, every: Duration) {
        self.recheck_ms
            .store(every.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// Whether other nodes' notifications are pushed to this node's streams
    /// (otherwise streams also re-read the database now and then).
    pub fn is_shared(&self) -> bool {
        self.bus.is_shared()
    }

    /// New-notification announcements (a recipient's subject per event).
    pub fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.bus.subscribe(CHANNEL)
    }

    /// Store `message` for each distinct recipient in one transaction, then
    /// announce it. Returns how many were notified.
    pub async fn send(
        &self,
        hospital: &str,
        plugin: &str,
        sender: &str,
        recipients: &[String],
        message: &NewMessage,
    ) -> Result<u32, NotifyError> {
        let data = message.validate()?;
        let mut unique: Vec<&str> = recipients.iter().map(String::as_str).collect();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() > MAX_RECIPIENTS {
            return Err(NotifyError::Invalid(format!(
                "{} recipients; at most {MAX_RECIPIENTS}",
                unique.len()
            )));
        }
        let link = message
            .link
            .as_ref()
            .map(|l| format!("/hospitals/{hospital}/plugins/{plugin}{l}"));
        let now = now_millis();
        let mut tx = self.db.begin_write().await?;
        // Sends commit in `seq` order, so a stream that moved past a seq
        // never misses an earlier one committing later (PostgreSQL hands
        // out BIGSERIAL values before commit; SQLite has one writer).
        if self.db.backend == crate::db::Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7301001)")
                .execute(&mut *tx.tx)
                .await?;
        }
        for r in &unique {
            sqlx::query(
                "INSERT INTO notifications (recipient, hospital_id, plugin_id, sender, topic, title, data, link, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(*r)
            .bind(hospital)
            .bind(plugin)
            .bind(sender)
            .bind(&message.topic)
            .bind(message.title.trim())
            .bind(data.to_string())
            .bind(link.as_deref())
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await?;
        for r in &unique {
            self.bus.publish(CHANNEL, (*r).to_owned());
        }
        Ok(unique.len() as u32)
    }

    /// `recipient`'s notifications after `after` (a `seq`), oldest first.
    pub async fn list(
        &self,
        recipient: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Notification>, NotifyError> {
        let rows = sqlx::query(
            "SELECT seq, topic, title, data, link, hospital_id, plugin_id, sender, created_at, read_at \
             FROM notifications WHERE recipient = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(recipient)
        .bind(after)
        .bind(limit.clamp(1, PAGE_LIMIT))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let data: String = r.try_get("data")?;
                Ok(Notification {
                    seq: r.try_get("seq")?,
                    topic: r.try_get("topic")?,
                    title: r.try_get("title")?,
                    data: serde_json::from_str(&data).unwrap_or(Value::Null),
                    link: r.try_get("link")?,
                    hospital: r.try_get("hospital_id")?,
                    plugin: r.try_get("plugin_id")?,
                    sender: r.try_get("sender")?,
                    created_at: rfc3339(r.try_get("created_at")?),
                    read: r.try_get::<Option<i64>, _>("read_at")?.is_some(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// `recipient`'s newest `n` notifications, oldest first.
    pub async fn newest(&self, recipient: &str, n: i64) -> Result<Vec<Notification>, NotifyError> {
        // The `seq` just before the newest `n` (none: start at the first).
        let from: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM notifications WHERE recipient = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2",
        )
        .bind(recipient)
        .bind(n.clamp(1, PAGE_LIMIT))
        .fetch_optional(&self.db.pool)
        .await?;
        self.list(recipient, from.unwrap_or(0), n).await
    }

    /// The highest `seq` of `recipient`'s notifications (0 when none).
    pub async fn newest_seq(&self, recipient: &str) -> Result<i64, NotifyError> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM notifications WHERE recipient = $1")
                .bind(recipient)
                .fetch_one(&self.db.pool)
                .await?;
        Ok(seq.unwrap_or(0))
    }

    /// How many of `recipient`'s notifications are unread.
    pub async fn unread(&self, recipient: &str) -> Result<i64, NotifyError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM notifications WHERE recipient = $1 AND read_at IS NULL",
        )
        .bind(recipient)
        .fetch_one(&self.db.pool)
        .await?)
    }

    /// Mark `recipient`'s notifications up to `upto` read; how many changed.
    pub async fn mark_read(&self, recipient: &str, upto: i64) -> Result<u64, NotifyError> {
        let mut tx = self.db.begin_write().await?;
        let n = sqlx::query(
            "UPDATE notifications SET read_at = $1 WHERE recipient = $2 AND seq <= $3 AND read_at IS NULL",
        )
        .bind(now_millis())
        .bind(recipient)
        .bind(upto)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, title: &str, data: &str, link: Option<&str>) -> NewMessage {
        NewMessage {
            topic: topic.into(),
            title: title.into(),
            data: data.into(),
            link: link.map(Into::into),
        }
    }

    #[tokio::test]
    async fn streams_are_counted_per_person_until_dropped() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = Database::connect(&format!("sqlite://{}", dir.path().join("n.db").display()))
            .await
            .unwrap();
        let n = Arc::new(Notifications::new(db.clone(), Arc::new(Bus::new(db))));
        let open: Vec<StreamGuard> = (0..MAX_STREAMS_PER_PERSON)
            .map(|_| n.open_stream("u-1").expect("under the limit"))
            .collect();
        assert!(n.open_stream("u-1").is_none(), "one too many");
        assert!(
            n.open_stream("u-2").is_some(),
            "another person is not limited"
        );
        drop(open);
        assert!(
            n.open_stream("u-1").is_some(),
            "closed streams are given back"
        );
    }

    #[test]
    fn messages_are_validated() {
        assert!(
            msg(
                "consultation.accepted",
                "Đã nhận hội chẩn",
                r#"{"id":"hc-1"}"#,
                Some("/c/1")
            )
            .validate()
            .is_ok()
        );
        assert!(msg("a", "t", "", None).validate().is_ok());
        for bad in [
            msg("", "t", "", None),
            msg("has space", "t", "", None),
            msg("t", "", "", None),
            msg("t", "two\nlines", "", None),
            msg("t", "t", "{not json", None),
            msg("t", "t", &"x".repeat(MAX_DATA_BYTES + 1), None),
            msg("t", "t", "", Some("https://evil.example/")),
            msg("t", "t", "", Some("//evil.example/")),
            msg("t", "t", "", Some("relative")),
            msg("t", "t\u{0}nul", "", None),
            msg("t", "t", "", Some("/a/../../other-plugin/")),
            msg("t", "t", "", Some("/a/%2E%2E/x")),
            msg("t", "t", "", Some("/a\u{0}")),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
