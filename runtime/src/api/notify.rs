//! `/api/v1/me/notifications`: what plugins told the signed-in person, as a
//! list and as a Server-Sent Events stream that pushes new ones at once.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};

use super::extract::{Json, Query};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::ApiError;
use super::Authenticated;
use crate::Runtime;
use crate::cluster::BusMessage;
use crate::notify::{MAX_STREAMS_PER_PERSON, Notification, NotifyError, PAGE_LIMIT};

/// A stream ends after this long; the client reconnects with a fresh token
/// and `Last-Event-ID`, so an expired or revoked session stops receiving.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(600);

pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/api/v1/me/notifications", get(list))
        .route("/api/v1/me/notifications/read", post(mark_read))
        .route("/api/v1/me/notifications/stream", get(stream))
}

impl From<NotifyError> for ApiError {
    fn from(e: NotifyError) -> Self {
        match e {
            NotifyError::Invalid(m) => ApiError::Unprocessable(m),
            NotifyError::Database(e) => ApiError::Internal(e.to_string()),
        }
    }
}

/// Whose notifications: the caller's [`crate::identity::PersonRef`], so a
/// token of another issuer with the same `sub` never reads a local user's.
fn recipient(rt: &Runtime, p: &crate::identity::Principal) -> String {
    rt.identity.person(p).into_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    after: Option<i64>,
    limit: Option<i64>,
    /// The newest N instead of those after `after`.
    newest: Option<i64>,
}

async fn list(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let after = q.after.unwrap_or(0);
    let limit = q.newest.or(q.limit).unwrap_or(50);
    if !(1..=PAGE_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit and newest must be 1 to {PAGE_LIMIT}"
        )));
    }
    if q.newest.is_some() && (q.after.is_some() || q.limit.is_some()) {
        return Err(ApiError::BadRequest(
            "newest=N stands alone (no after or limit)".into(),
        ));
    }
    let me = recipient(&rt, &p);
    let items = match q.newest {
        Some(n) => rt.notifications.newest(&me, n).await?,
        None => rt.notifications.list(&me, after, limit).await?,
    };
    let unread = rt.notifications.unread(&me).await?;
    let newest = rt.notifications.newest_seq(&me).await?;
    let last = items.last().map_or(after, |n| n.seq);
    Ok(Json(json!({
        "notifications": items, "unread": unread, "last_seq": last, "newest_seq": newest,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadBody {
    upto: i64,
}

async fn mark_read(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Json(body): Json<ReadBody>,
) -> Result<Json<Value>, ApiError> {
    let me = recipient(&rt, &p);
    let marked = rt.notifications.mark_read(&me, body.upto).await?;
    let unread = rt.notifications.unread(&me).await?;
    Ok(Json(json!({ "marked": marked, "unread": unread })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    after: Option<i64>,
}

/// The stream's state between events.
struct Follow {
    rt: Arc<Runtime>,
    subject: String,
    after: i64,
    pending: VecDeque<Notification>,
    events: tokio::sync::broadcast::Receiver<BusMessage>,
    ends_at: Instant,
    recheck: Duration,
    /// Read the database before waiting again.
    dirty: bool,
    /// Counts this stream against the person's limit until it ends.
    _guard: crate::notify::StreamGuard,
}

async fn stream(
    State(rt): State<Arc<Runtime>>,
    Authenticated(p): Authenticated,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // A reconnecting EventSource-style client says where it was.
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                ApiError::BadRequest("Last-Event-ID must be a notification seq".into())
            })
        })
        .transpose()?;
    let after = resume.or(q.after).unwrap_or(0);
    // Subscribe before the first read, so nothing sent in between is missed.
    let events = rt.notifications.subscribe();
    let recheck = rt.notifications.recheck_interval();
    let subject = recipient(&rt, &p);
    let guard = rt.notifications.open_stream(&subject).ok_or_else(|| {
        ApiError::TooManyRequests(format!(
            "at most {MAX_STREAMS_PER_PERSON} notification streams per person; close another tab or device"
        ))
    })?;
    let state = Follow {
        rt,
        subject,
        after,
        pending: VecDeque::new(),
        events,
        ends_at: Instant::now() + STREAM_LIFETIME,
        recheck,
        dirty: true,
        _guard: guard,
    };
    let s = futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(n) = st.pending.pop_front() {
                st.after = n.seq;
                let event = Event::default()
                    .id(n.seq.to_string())
                    .event("notification")
                    .json_data(&n)
                    .unwrap_or_else(|_| Event::default().comment("unencodable notification"));
                return Some((Ok(event), st));
            }
            if st.dirty {
                st.dirty = false;
                match st.rt.notifications.list(&st.subject, st.after, 50).await {
                    Ok(items) if !items.is_empty() => {
                        // A full page may have more behind it.
                        st.dirty = items.len() == 50;
                        st.pending.extend(items);
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "reading notifications for a stream"),
                }
            }
            let now = Instant::now();
            if now >= st.ends_at {
                return None;
            }
            let wait = st.recheck.min(st.ends_at - now);
            tokio::select! {
                m = st.events.recv() => match m {
                    Ok(BusMessage::Event(who)) => st.dirty = who == st.subject,
                    Ok(BusMessage::Resync) | Err(RecvError::Lagged(_)) => st.dirty = true,
                    Err(RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep(wait) => st.dirty = true,
            }
        }
    });
    Ok(Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
