//! `/api/v1/me/notifications`: bad input, and a notification sent on one
//! node pushed to a stream open on another (PostgreSQL LISTEN/NOTIFY).

use std::time::Duration;

use serde_json::json;
use vtelehealth_runtime::identity::Role;
use vtelehealth_runtime::notify::NewMessage;

use crate::teleconsult::Feed;
use crate::video::person;
use vtelehealth_tests::common::send;

#[tokio::test]
async fn bad_requests_are_refused_with_reasons() {
    let server = crate::video::server().await;
    let (_, doctor) = person(&server, "bs-n", Role::Practitioner, "bv-a").await;
    let (s, _) = send(&server, "GET", "/api/v1/me/notifications", "", None, &[]).await;
    assert_eq!(s, 401);
    let (s, r) = send(
        &server,
        "GET",
        "/api/v1/me/notifications?limit=0",
        &doctor,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 400, "{r}");
    let (s, r) = send(
        &server,
        "GET",
        "/api/v1/me/notifications?since=1",
        &doctor,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 400, "unknown parameter: {r}");
    let (s, r) = send(
        &server,
        "GET",
        "/api/v1/me/notifications/stream",
        &doctor,
        None,
        &[("last-event-id", "yesterday")],
    )
    .await;
    assert_eq!(s, 400, "{r}");
    let (s, r) = send(
        &server,
        "POST",
        "/api/v1/me/notifications/read",
        &doctor,
        Some(json!({ "upto": "all" })),
        &[],
    )
    .await;
    assert!(s == 400 || s == 422, "{s} {r}");

    // A person keeps a bounded number of streams open.
    let mut open = Vec::new();
    for _ in 0..vtelehealth_runtime::notify::MAX_STREAMS_PER_PERSON {
        open.push(Feed::open(&server, &doctor, None).await);
    }
    let (s, r) = send(
        &server,
        "GET",
        "/api/v1/me/notifications/stream",
        &doctor,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 429, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("streams"),
        "{r}"
    );
    let (_, other) = person(&server, "bs-m", Role::Practitioner, "bv-a").await;
    let _theirs = Feed::open(&server, &other, None).await;
}

/// Two nodes on one PostgreSQL database: node two stores a notification;
/// the stream open on node one (database re-read set to an hour) gets it
/// pushed by LISTEN/NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_notification_from_another_node_is_pushed() {
    let Some((one, two)) = crate::video::postgres_nodes().await else {
        return;
    };
    one.runtime
        .notifications
        .set_recheck_interval(Duration::from_secs(3600));
    let (who, token) = person(&one, "bs-feed", Role::Practitioner, "bv-b").await;
    let mut feed = Feed::open(&one, &token, None).await;
    let sent = two
        .runtime
        .notifications
        .send(
            "bv-a",
            "teleconsult",
            "user:chair",
            std::slice::from_ref(&who),
            &NewMessage {
                topic: "teleconsult.accepted".into(),
                title: "Hội chẩn hc-000001: đã nhận".into(),
                data: r#"{"consultation":"hc-000001"}"#.into(),
                link: Some("/consultations/hc-000001".into()),
            },
        )
        .await
        .expect("sent on node two");
    assert_eq!(sent, 1);
    let n = feed.until("teleconsult.accepted").await;
    assert_eq!(n["data"]["consultation"], "hc-000001", "{n}");
    assert_eq!(n["hospital"], "bv-a", "{n}");
}
