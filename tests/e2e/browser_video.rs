//! Real browsers in a consultation room: headless Chromium instances join
//! through the room page and the embedded media relay, and WebRTC stats show
//! that everyone decodes everyone who publishes, and that observers publish
//! nothing.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use vtelehealth_runtime::RuntimeOptions;
use vtelehealth_runtime::video::sfu::{MediaRelay, dev};
use vtelehealth_tests::TestServer;
use vtelehealth_tests::browser::{Browser, ROOM_STATS_JS, chromium};

/// A server whose dev join route is mounted, with a relay on loopback.
pub async fn video_server() -> TestServer {
    let data = TempDir::new().expect("temp dir");
    let options = RuntimeOptions {
        database_url: format!("sqlite://{}", data.path().join("test.db").display()),
        ..Default::default()
    };
    TestServer::start_with_routes(options, data, async {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let relay = MediaRelay::start(addr).await.expect("media relay starts");
        dev::routes(relay)
    })
    .await
}

/// The room page URL for a dev participant.
pub fn room_url(server: &TestServer, room: &str, name: &str, role: &str) -> String {
    format!("{}/rooms/{room}?dev=1&name={name}&role={role}", server.base)
}

/// Each browser's stats, once every browser decodes video from every other
/// publisher in the room (`publishers` of them in all). Gives up after a
/// bounded wait with the last stats in the message: never a timing assertion.
pub async fn wait_all_decoding(browsers: &mut [(&str, Browser)], publishers: usize) -> Vec<Value> {
    match poll_all_decoding(browsers, publishers, 240).await {
        Ok(stats) => stats,
        Err(last) => panic!("not every participant decodes every publisher; last stats: {last:#?}"),
    }
}

/// Poll every 250 ms, at most `polls` times, until all decode all publishers.
async fn poll_all_decoding(
    browsers: &mut [(&str, Browser)],
    publishers: usize,
    polls: u32,
) -> Result<Vec<Value>, Vec<Value>> {
    let mut last = Vec::new();
    for _ in 0..polls {
        last.clear();
        let mut done = true;
        for (_, b) in browsers.iter_mut() {
            let s = b.eval(ROOM_STATS_JS).await.expect("stats");
            done &= decodes_every_publisher(&s, publishers);
            last.push(s);
        }
        if done {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(last)
}

/// Whether `stats` shows decoded frames from every publisher but itself.
fn decodes_every_publisher(stats: &Value, publishers: usize) -> bool {
    let Some(parts) = stats["participants"].as_array() else {
        return false;
    };
    let me = &stats["me"];
    let others: Vec<&Value> = parts
        .iter()
        .filter(|p| p["can_publish"] == true && &p["participant_id"] != me)
        .collect();
    let self_publishes = parts
        .iter()
        .any(|p| &p["participant_id"] == me && p["can_publish"] == true);
    let expected = publishers - usize::from(self_publishes);
    others.len() == expected
        && others.iter().all(|p| {
            p["stream_id"]
                .as_str()
                .and_then(|id| stats["decoded"][id].as_u64())
                .is_some_and(|frames| frames > 0)
        })
}

#[tokio::test]
async fn two_then_three_browsers_decode_every_publisher_and_the_observer_publishes_nothing() {
    let Some(chromium) = chromium() else { return };
    let server = video_server().await;
    let room = "hoi-chan-1";
    let chair = Browser::launch(&chromium, &room_url(&server, room, "BS-An", "chair"))
        .await
        .expect("chair's browser");
    let doctor = Browser::launch(
        &chromium,
        &room_url(&server, room, "BS-Binh", "participant"),
    )
    .await
    .expect("participant's browser");
    let mut browsers = vec![("chair", chair), ("participant", doctor)];
    let stats = wait_all_decoding(&mut browsers, 2).await;
    for s in &stats {
        assert!(
            s["outboundBytes"].as_u64().unwrap_or(0) > 0,
            "publishers send: {s}"
        );
        assert_eq!(
            s["errors"],
            serde_json::json!([]),
            "no signalling errors: {s}"
        );
    }

    let observer = Browser::launch(&chromium, &room_url(&server, room, "BS-Chi", "observer"))
        .await
        .expect("observer's browser");
    browsers.push(("observer", observer));
    let stats = wait_all_decoding(&mut browsers, 2).await;
    let observer = &stats[2];
    assert_eq!(
        observer["outboundBytes"], 0,
        "the observer publishes nothing: {observer}"
    );
    assert_eq!(
        observer["sendingTracks"], 0,
        "the observer has no sending track: {observer}"
    );
    assert_eq!(observer["errors"], serde_json::json!([]), "{observer}");
    let roles: Vec<&str> = observer["participants"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["role"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(roles.len(), 3, "everyone listed: {observer}");
    assert!(
        roles.contains(&"observer") && roles.contains(&"chair"),
        "{roles:?}"
    );
}
