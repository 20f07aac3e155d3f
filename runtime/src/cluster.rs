//! Events between the nodes of a deployment. Every node publishes to its own
//! subscribers at once; on PostgreSQL it also sends each event with `NOTIFY`
//! and `LISTEN`s for the other nodes' (ADR 0013). On SQLite there is one
//! node and the bus stays in process.
//!
//! Notifications are transient: those sent while a node's listening
//! connection reconnects are lost, so subscribers get [`BusMessage::Resync`]
//! then and re-read what they follow from the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::db::{Backend, Database};

/// PostgreSQL's limit on a `NOTIFY` payload is 8000 bytes; larger events
/// are not sent to other nodes (they re-read instead).
const MAX_PAYLOAD: usize = 7900;

/// What a subscriber of a channel receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusMessage {
    /// An event, as published (on this node or another).
    Event(String),
    /// Events may have been missed: re-read from the database.
    Resync,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    node: String,
    payload: String,
}

/// The deployment's event bus.
pub struct Bus {
    db: Database,
    node: String,
    channels: Mutex<HashMap<String, broadcast::Sender<BusMessage>>>,
    /// (channel, envelope JSON) to `NOTIFY`, in order; set once listening.
    outbox: OnceLock<mpsc::UnboundedSender<(String, String)>>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("node", &self.node)
            .field("shared", &self.is_shared())
            .finish_non_exhaustive()
    }
}

impl Bus {
    pub fn new(db: Database) -> Self {
        Self {
            db,
            node: uuid::Uuid::now_v7().to_string(),
            channels: Mutex::new(HashMap::new()),
            outbox: OnceLock::new(),
        }
    }

    /// Whether events reach the other nodes (PostgreSQL, listening).
    pub fn is_shared(&self) -> bool {
        self.outbox.get().is_some()
    }

    fn sender(&self, channel: &str) -> broadcast::Sender<BusMessage> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(channel.to_owned())
            .or_insert_with(|| broadcast::channel(256).0)
            .clone()
    }

    /// Events of `channel` from now on, from every node.
    pub fn subscribe(&self, channel: &str) -> broadcast::Receiver<BusMessage> {
        self.sender(channel).subscribe()
    }

    /// Publish `payload` on `channel`: to this node's subscribers, and to
    /// the other nodes' when the bus is shared.
    pub fn publish(&self, channel: &str, payload: String) {
        self.notify_others(channel, &payload);
        let _ = self.sender(channel).send(BusMessage::Event(payload));
    }

    /// Send `payload` to the other nodes' subscribers of `channel` only (for
    /// a service that already told its own).
    pub fn notify_others(&self, channel: &str, payload: &str) {
        if let Some(out) = self.outbox.get()
            && let Ok(envelope) = serde_json::to_string(&Envelope {
                node: self.node.clone(),
                payload: payload.to_owned(),
            })
        {
            if envelope.len() <= MAX_PAYLOAD {
                let _ = out.send((channel.to_owned(), envelope));
            } else {
                tracing::warn!(
                    channel,
                    bytes = envelope.len(),
                    "event too large to NOTIFY; other nodes re-read"
                );
            }
        }
    }

    /// On PostgreSQL, send `payload` to every node's subscribers of
    /// `channel` now, without a bus (the CLI, after changing the database).
    pub async fn notify_now(
        db: &Database,
        channel: &str,
        payload: &str,
    ) -> Result<(), sqlx::Error> {
        if db.backend != Backend::Postgres {
            return Ok(());
        }
        let envelope = serde_json::to_string(&Envelope {
            node: "cli".into(),
            payload: payload.to_owned(),
        })
        .unwrap_or_default();
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(envelope)
            .execute(&db.pool)
            .await?;
        Ok(())
    }

    fn resync_all(&self) {
        let senders: Vec<_> = {
            let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            channels.values().cloned().collect()
        };
        for s in senders {
            let _ = s.send(BusMessage::Resync);
        }
    }

    /// On PostgreSQL, start sharing `channels` with the other nodes. Returns
    /// whether the bus is shared; when the listening connection cannot open
    /// it stays in process (logged) and subscribers must poll.
    pub async fn start(self: &Arc<Self>, channels: &[&str]) -> bool {
        if self.db.backend != Backend::Postgres || self.is_shared() {
            return self.is_shared();
        }
        let mut listener = match sqlx::postgres::PgListener::connect(&self.db.url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for cluster events; nodes fall back to re-reading the database");
                return false;
            }
        };
        if let Err(e) = listener.listen_all(channels.iter().copied()).await {
            tracing::warn!(error = %e, "cannot LISTEN for cluster events; nodes fall back to re-reading the database");
            return false;
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, String)>();
        if self.outbox.set(tx).is_err() {
            return true;
        }
        // One sender task, so this node's events reach the others in order.
        let pool = self.db.pool.clone();
        tokio::spawn(async move {
            while let Some((channel, envelope)) = rx.recv().await {
                if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(&channel)
                    .bind(envelope)
                    .execute(&pool)
                    .await
                {
                    // The other nodes' subscribers catch up when they re-read.
                    tracing::warn!(error = %e, channel, "NOTIFY failed");
                }
            }
        });
        // A weak handle, so the bus can go away with its runtime.
        let bus = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let next = listener.try_recv().await;
                let Some(bus) = bus.upgrade() else { return };
                match next {
                    Ok(Some(n)) => match serde_json::from_str::<Envelope>(n.payload()) {
                        Ok(e) if e.node != bus.node => {
                            let _ = bus.sender(n.channel()).send(BusMessage::Event(e.payload));
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "unreadable cluster event"),
                    },
                    // The connection dropped: anything may have been missed.
                    Ok(None) => bus.resync_all(),
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for cluster events");
                        drop(bus);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        tracing::info!(
            ?channels,
            "events shared with the other nodes through PostgreSQL LISTEN/NOTIFY"
        );
        true
    }
}
