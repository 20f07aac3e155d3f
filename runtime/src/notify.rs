//! Notifications plugins send to people through the `notify` capability.
//! Stored first (nothing is lost when nobody is connected), then announced
//! on the cluster bus so every node's open streams push them at once.
//! Recipients read their own at `/api/v1/me/notifications` (`api/notify.rs`).
//! Pages (`notify.page`) are notifications the host re-sends and escalates
//! on its own clock until the plugin resolves them: plugins have no timers.

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
        let mut tx = self.db.begin_write().await?;
        self.insert(&mut tx, hospital, plugin, sender, &unique, message, &data)
            .await?;
        tx.commit().await?;
        for r in &unique {
            self.bus.publish(CHANNEL, (*r).to_owned());
        }
        Ok(unique.len() as u32)
    }

    /// Store `message` (its `data` parsed) for each of `recipients` in `tx`;
    /// the caller commits, then announces.
    #[allow(clippy::too_many_arguments)]
    async fn insert(
        &self,
        tx: &mut crate::db::WriteTx,
        hospital: &str,
        plugin: &str,
        sender: &str,
        recipients: &[&str],
        message: &NewMessage,
        data: &Value,
    ) -> Result<(), NotifyError> {
        let link = message
            .link
            .as_ref()
            .map(|l| format!("/hospitals/{hospital}/plugins/{plugin}{l}"));
        let now = now_millis();
        // Sends commit in `seq` order, so a stream that moved past a seq
        // never misses an earlier one committing later (PostgreSQL hands
        // out BIGSERIAL values before commit; SQLite has one writer).
        if self.db.backend == crate::db::Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7301001)")
                .execute(&mut *tx.tx)
                .await?;
        }
        for r in recipients {
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
        Ok(())
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

// ----- pages: re-sent and escalated by the host until resolved -----

/// Most stages of one page.
pub const MAX_PAGE_STAGES: usize = 5;
/// Most sends of one page, the first included; then it stays open, silent.
pub const MAX_PAGE_SENDS: i64 = 20;
const MAX_PAGE_KEY_BYTES: usize = 200;
/// How often each node looks for pages due (the runtime's sweeper).
pub const PAGE_SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Most pages one sweep handles; the rest wait for the next one.
const SWEEP_BATCH: i64 = 100;

/// One stage of a page.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct PageStage {
    pub recipients: Vec<String>,
    /// Milliseconds after the page started; the first stage is paged at once.
    pub after_ms: i64,
}

/// What a plugin pages.
#[derive(Debug, Clone)]
pub struct NewPage {
    pub key: String,
    pub message: NewMessage,
    pub stages: Vec<PageStage>,
    /// 0: never re-sent.
    pub resend_ms: i64,
}

impl NewPage {
    /// Check the key, stages and message; the parsed `data`.
    pub fn validate(&self) -> Result<Value, NotifyError> {
        let bad = |m: String| Err(NotifyError::Invalid(m));
        if self.key.is_empty()
            || self.key.len() > MAX_PAGE_KEY_BYTES
            || self.key.chars().any(char::is_control)
        {
            return bad(format!(
                "page key: 1 to {MAX_PAGE_KEY_BYTES} bytes without control characters"
            ));
        }
        if self.stages.is_empty() || self.stages.len() > MAX_PAGE_STAGES {
            return bad(format!("a page has 1 to {MAX_PAGE_STAGES} stages"));
        }
        let mut last = 0;
        for (i, stage) in self.stages.iter().enumerate() {
            let mut unique: Vec<&str> = stage.recipients.iter().map(String::as_str).collect();
            unique.sort_unstable();
            unique.dedup();
            if unique.is_empty() || unique.len() > MAX_RECIPIENTS {
                return bad(format!("stage {i}: 1 to {MAX_RECIPIENTS} recipients"));
            }
            if i > 0 && stage.after_ms <= last {
                return bad(format!(
                    "stage {i}: its minutes must come after the previous stage's"
                ));
            }
            last = stage.after_ms;
        }
        if self.resend_ms < 0 {
            return bad("resend minutes must not be negative".into());
        }
        self.message.validate()
    }
}

/// A stored page.
struct PageRow {
    hospital: String,
    plugin: String,
    key: String,
    sender: String,
    message: NewMessage,
    stages: Vec<PageStage>,
    resend_ms: i64,
    started_at: i64,
    stage: i64,
    sends: i64,
    next_at: i64,
}

/// When the next step of a page is due: the next stage's time or the next
/// re-send, whichever comes first; `None` when nothing is left.
fn next_due(
    stages: &[PageStage],
    stage: usize,
    started_at: i64,
    last_sent: i64,
    resend_ms: i64,
    sends: i64,
) -> Option<i64> {
    let escalation = stages.get(stage + 1).map(|s| started_at + s.after_ms);
    let resend = (resend_ms > 0 && sends < MAX_PAGE_SENDS).then_some(last_sent + resend_ms);
    match (escalation, resend) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The message of one send of a page: the title says whether it is a
/// reminder or an escalation; `data` (an object) gains `page`.
fn page_message(
    message: &NewMessage,
    key: &str,
    stage: usize,
    send: i64,
    escalated: bool,
) -> Result<(NewMessage, Value), NotifyError> {
    let mut data = message.validate()?;
    let prefix = match (send, escalated) {
        (1, _) => "",
        (_, true) => "Chuyển cấp (escalated): ",
        (_, false) => "Nhắc lại (reminder): ",
    };
    let mut title = format!("{prefix}{}", message.title.trim());
    if title.len() > MAX_TITLE_BYTES {
        let mut end = MAX_TITLE_BYTES - '…'.len_utf8();
        while !title.is_char_boundary(end) {
            end -= 1;
        }
        title.truncate(end);
        title.push('…');
    }
    if let Value::Object(map) = &mut data {
        map.insert(
            "page".into(),
            serde_json::json!({ "key": key, "stage": stage, "send": send, "escalated": escalated }),
        );
    }
    Ok((
        NewMessage {
            title,
            ..message.clone()
        },
        data,
    ))
}

impl Notifications {
    /// Page the first stage of `page` now and keep it open: later stages
    /// and re-sends go out from [`Self::sweep_pages`]. Replaces an open
    /// page with the same key. Returns how many were paged now.
    pub async fn page(
        &self,
        hospital: &str,
        plugin: &str,
        sender: &str,
        page: &NewPage,
    ) -> Result<u32, NotifyError> {
        page.validate()?;
        let now = now_millis();
        let (message, data) = page_message(&page.message, &page.key, 0, 1, false)?;
        let mut first: Vec<&str> = page.stages[0]
            .recipients
            .iter()
            .map(String::as_str)
            .collect();
        first.sort_unstable();
        first.dedup();
        let stages =
            serde_json::to_string(&page.stages).map_err(|e| NotifyError::Invalid(e.to_string()))?;
        let next = next_due(&page.stages, 0, now, now, page.resend_ms, 1);
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "DELETE FROM notification_pages WHERE hospital_id = $1 AND plugin_id = $2 AND page_key = $3",
        )
        .bind(hospital)
        .bind(plugin)
        .bind(&page.key)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query(
            "INSERT INTO notification_pages (hospital_id, plugin_id, page_key, sender, topic, title, data, link, \
             stages, resend_ms, started_at, stage, sends, next_at, resolved_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, 1, $12, NULL)",
        )
        .bind(hospital)
        .bind(plugin)
        .bind(&page.key)
        .bind(sender)
        .bind(&page.message.topic)
        .bind(page.message.title.trim())
        .bind(&page.message.data)
        .bind(page.message.link.as_deref())
        .bind(stages)
        .bind(page.resend_ms)
        .bind(now)
        .bind(next)
        .execute(&mut *tx.tx)
        .await?;
        self.insert(&mut tx, hospital, plugin, sender, &first, &message, &data)
            .await?;
        tx.commit().await?;
        for r in &first {
            self.bus.publish(CHANNEL, (*r).to_owned());
        }
        Ok(first.len() as u32)
    }

    /// Stop paging `key`; true when it was open.
    pub async fn resolve_page(
        &self,
        hospital: &str,
        plugin: &str,
        key: &str,
    ) -> Result<bool, NotifyError> {
        let mut tx = self.db.begin_write().await?;
        let n = sqlx::query(
            "UPDATE notification_pages SET resolved_at = $1, next_at = NULL \
             WHERE hospital_id = $2 AND plugin_id = $3 AND page_key = $4 AND resolved_at IS NULL",
        )
        .bind(now_millis())
        .bind(hospital)
        .bind(plugin)
        .bind(key)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Send every step of open pages due at `now` (milliseconds since the
    /// epoch): the next stages whose time has come (escalation), else a
    /// re-send to everyone paged so far. Each step is claimed by moving the
    /// page's `next_at` in the transaction that stores its notifications,
    /// so with several nodes sweeping it goes out once. Returns how many
    /// notifications were stored. The runtime calls it with the wall clock
    /// ([`Self::spawn_page_sweeper`]); tests call it with the time they want.
    pub async fn sweep_pages(&self, now: i64) -> Result<u32, NotifyError> {
        let rows = sqlx::query(
            "SELECT hospital_id, plugin_id, page_key, sender, topic, title, data, link, stages, resend_ms, \
             started_at, stage, sends, next_at FROM notification_pages \
             WHERE next_at IS NOT NULL AND next_at <= $1 AND resolved_at IS NULL ORDER BY next_at LIMIT $2",
        )
        .bind(now)
        .bind(SWEEP_BATCH)
        .fetch_all(&self.db.pool)
        .await?;
        let mut sent = 0;
        for r in rows {
            let stages: String = r.try_get("stages")?;
            let page = PageRow {
                hospital: r.try_get("hospital_id")?,
                plugin: r.try_get("plugin_id")?,
                key: r.try_get("page_key")?,
                sender: r.try_get("sender")?,
                message: NewMessage {
                    topic: r.try_get("topic")?,
                    title: r.try_get("title")?,
                    data: r.try_get("data")?,
                    link: r.try_get("link")?,
                },
                stages: serde_json::from_str(&stages)
                    .map_err(|e| NotifyError::Invalid(format!("stored page stages: {e}")))?,
                resend_ms: r.try_get("resend_ms")?,
                started_at: r.try_get("started_at")?,
                stage: r.try_get("stage")?,
                sends: r.try_get("sends")?,
                next_at: r.try_get("next_at")?,
            };
            match self.page_step(&page, now).await {
                Ok(n) => sent += n,
                // One broken page never stops the others.
                Err(e) => tracing::warn!(hospital = %page.hospital, plugin = %page.plugin,
                    key = %page.key, error = %e, "a page step failed"),
            }
        }
        Ok(sent)
    }

    /// One due step of `page` at `now`; how many were notified (0 when
    /// another node took the step first).
    async fn page_step(&self, page: &PageRow, now: i64) -> Result<u32, NotifyError> {
        let current = usize::try_from(page.stage).unwrap_or(0);
        // Every later stage whose time has come is paged now.
        let reached = (current + 1..page.stages.len())
            .rev()
            .find(|&i| page.started_at + page.stages[i].after_ms <= now);
        let (stage, recipients): (usize, Vec<&str>) = match reached {
            Some(to) => (
                to,
                page.stages[current + 1..=to]
                    .iter()
                    .flat_map(|s| s.recipients.iter().map(String::as_str))
                    .collect(),
            ),
            None if page.resend_ms > 0 && page.sends < MAX_PAGE_SENDS => (
                current,
                page.stages[..=current.min(page.stages.len() - 1)]
                    .iter()
                    .flat_map(|s| s.recipients.iter().map(String::as_str))
                    .collect(),
            ),
            None => (current, Vec::new()),
        };
        let mut recipients = recipients;
        recipients.sort_unstable();
        recipients.dedup();
        let sends = page.sends + i64::from(!recipients.is_empty());
        let next = next_due(
            &page.stages,
            stage,
            page.started_at,
            now,
            page.resend_ms,
            sends,
        );
        let mut tx = self.db.begin_write().await?;
        let claimed = sqlx::query(
            "UPDATE notification_pages SET stage = $1, sends = $2, next_at = $3 \
             WHERE hospital_id = $4 AND plugin_id = $5 AND page_key = $6 AND next_at = $7 AND resolved_at IS NULL",
        )
        .bind(stage as i64)
        .bind(sends)
        .bind(next)
        .bind(&page.hospital)
        .bind(&page.plugin)
        .bind(&page.key)
        .bind(page.next_at)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if claimed == 0 || recipients.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let (message, data) =
            page_message(&page.message, &page.key, stage, sends, reached.is_some())?;
        self.insert(
            &mut tx,
            &page.hospital,
            &page.plugin,
            &page.sender,
            &recipients,
            &message,
            &data,
        )
        .await?;
        tx.commit().await?;
        for r in &recipients {
            self.bus.publish(CHANNEL, (*r).to_owned());
        }
        Ok(recipients.len() as u32)
    }

    /// Sweep the pages due every `every`, with the wall clock, until the
    /// service is dropped.
    pub fn spawn_page_sweeper(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(n) = weak.upgrade() else { break };
                if let Err(e) = n.sweep_pages(now_millis()).await {
                    tracing::warn!(error = %e, "sweeping the pages failed");
                }
            }
        })
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

    fn stage(who: &[&str], after_min: i64) -> PageStage {
        PageStage {
            recipients: who.iter().map(|s| s.to_string()).collect(),
            after_ms: after_min * 60_000,
        }
    }

    #[tokio::test]
    async fn a_page_is_resent_escalated_once_per_step_and_stops_when_resolved() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = Database::connect(&format!("sqlite://{}", dir.path().join("p.db").display()))
            .await
            .unwrap();
        let n = Arc::new(Notifications::new(db.clone(), Arc::new(Bus::new(db))));
        let page = NewPage {
            key: "hc-000001".into(),
            message: msg("teleconsult.page", "Khẩn", r#"{"id":"hc-000001"}"#, None),
            stages: vec![stage(&["a"], 0), stage(&["b", "c"], 15)],
            resend_ms: 5 * 60_000,
        };
        assert_eq!(n.page("h", "p", "s", &page).await.unwrap(), 1);
        let t0 = now_millis();
        let count = |who: &'static str| {
            let n = n.clone();
            async move { n.list(who, 0, 100).await.unwrap().len() }
        };
        // Two nodes sweeping the same due step send it once.
        let (x, y) = tokio::join!(
            n.sweep_pages(t0 + 6 * 60_000),
            n.sweep_pages(t0 + 6 * 60_000)
        );
        assert_eq!(x.unwrap() + y.unwrap(), 1);
        assert_eq!(count("a").await, 2);
        let escalated = n.sweep_pages(t0 + 16 * 60_000).await.unwrap();
        assert_eq!(escalated, 2);
        let last = n.list("b", 0, 10).await.unwrap();
        assert!(last[0].title.starts_with("Chuyển cấp"), "{last:?}");
        assert_eq!(last[0].data["page"]["stage"], 1);
        assert!(n.resolve_page("h", "p", "hc-000001").await.unwrap());
        assert!(!n.resolve_page("h", "p", "hc-000001").await.unwrap());
        assert_eq!(n.sweep_pages(t0 + 600 * 60_000).await.unwrap(), 0);
        // Stages must come in order, with someone in each.
        let mut bad = page.clone();
        bad.stages = vec![stage(&["a"], 0), stage(&["b"], 0)];
        assert!(bad.validate().is_err());
        bad.stages = vec![stage(&[], 0)];
        assert!(bad.validate().is_err());
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
