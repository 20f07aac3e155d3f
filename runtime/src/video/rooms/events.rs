//! Room events for the signalling sockets, and their fan-out between nodes
//! (PostgreSQL LISTEN/NOTIFY through the cluster bus).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;

use super::VideoService;

/// What happened in a room, for the signalling sockets. On PostgreSQL
/// every node hears every node's events (LISTEN/NOTIFY on [`NOTIFY_CHANNEL`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "event", content = "participant", rename_all = "kebab-case")]
pub enum RoomEvent {
    /// Someone connected, left, or was admitted: send the list again.
    Changed,
    Admitted(String),
    Removed(String),
    Ended,
}

/// The PostgreSQL channel room events travel on between nodes.
pub const NOTIFY_CHANNEL: &str = "vth_video_rooms";
/// How often a socket re-reads its room from the database when no other
/// node can tell it of a change (SQLite, or before LISTEN is up).
pub const RECHECK_WITHOUT_NOTIFY: Duration = Duration::from_secs(2);
/// The same once LISTEN/NOTIFY carries the changes: only a safety net for
/// notifications lost while the listening connection reconnects.
pub const RECHECK_WITH_NOTIFY: Duration = Duration::from_secs(30);

/// One room event between nodes.
#[derive(Serialize, serde::Deserialize)]
struct Notice {
    room: String,
    #[serde(flatten)]
    event: RoomEvent,
}

impl VideoService {
    /// Share room events with the other nodes through `bus` (PostgreSQL
    /// LISTEN/NOTIFY). Without a shared bus (SQLite, or when listening
    /// failed) sockets re-read the database every [`RECHECK_WITHOUT_NOTIFY`].
    pub fn start_cluster_events(self: &Arc<Self>, bus: Arc<crate::cluster::Bus>) {
        if !bus.is_shared() || self.bus.set(bus.clone()).is_err() {
            return;
        }
        self.set_recheck_interval(RECHECK_WITH_NOTIFY);
        let mut events = bus.subscribe(NOTIFY_CHANNEL);
        // A weak handle, so the service can go away with its runtime.
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let message = events.recv().await;
                let Some(video) = me.upgrade() else { return };
                match message {
                    Ok(crate::cluster::BusMessage::Event(payload)) => {
                        match serde_json::from_str::<Notice>(&payload) {
                            Ok(n) => video.publish_local(&n.room, n.event),
                            Err(e) => tracing::warn!(error = %e, "unreadable room event"),
                        }
                    }
                    // Missed events: every socket re-reads its room.
                    Ok(crate::cluster::BusMessage::Resync)
                    | Err(broadcast::error::RecvError::Lagged(_)) => {
                        video.publish_everywhere(RoomEvent::Changed)
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Events of `room` on this node, from now on.
    pub fn subscribe(&self, room: &str) -> broadcast::Receiver<RoomEvent> {
        let mut hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        hub.entry(room.to_owned())
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Tell the sockets of `room`: this node's, and the other nodes' when
    /// cluster events run.
    pub fn publish(&self, room: &str, event: RoomEvent) {
        if let Some(bus) = self.bus.get()
            && let Ok(payload) = serde_json::to_string(&Notice {
                room: room.to_owned(),
                event: event.clone(),
            })
        {
            bus.notify_others(NOTIFY_CHANNEL, &payload);
        }
        self.publish_local(room, event);
    }

    /// Every room with sockets on this node gets `event`.
    fn publish_everywhere(&self, event: RoomEvent) {
        let rooms: Vec<String> = {
            let hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
            hub.keys().cloned().collect()
        };
        for room in rooms {
            self.publish_local(&room, event.clone());
        }
    }

    /// Tell this node's sockets of `room`.
    fn publish_local(&self, room: &str, event: RoomEvent) {
        let mut hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = hub.get(room)
            && tx.send(event).is_err()
        {
            // Nobody listens any more.
            hub.remove(room);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn notices_between_nodes_round_trip() {
        for event in [
            RoomEvent::Changed,
            RoomEvent::Ended,
            RoomEvent::Admitted("p-1".into()),
            RoomEvent::Removed("p-2".into()),
        ] {
            let n = Notice {
                room: "r".into(),
                event: event.clone(),
            };
            let text = serde_json::to_string(&n).unwrap();
            let back: Notice = serde_json::from_str(&text).unwrap();
            assert_eq!((back.room, back.event), ("r".into(), event), "{text}");
        }
        let admitted = serde_json::to_value(Notice {
            room: "r".into(),
            event: RoomEvent::Admitted("p".into()),
        })
        .unwrap();
        assert_eq!(
            admitted,
            json!({"room": "r", "event": "admitted", "participant": "p"})
        );
    }
}
