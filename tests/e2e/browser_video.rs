//! Real browsers in a consultation room: headless Chromium instances join
//! through the room page and the embedded media relay, and WebRTC stats show
//! that everyone decodes everyone who publishes, and that observers publish
//! nothing.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use vtelehealth_runtime::RuntimeOptions;
use vtelehealth_runtime::api::video_dev as dev;
use vtelehealth_runtime::video::sfu::MediaRelay;
use vtelehealth_tests::TestServer;
use vtelehealth_tests::browser::{Browser, ROOM_STATS_JS, chromium};

/// A server whose dev join route is mounted, with a relay on loopback.
pub async fn video_server() -> TestServer {
    video_server_and_relay().await.0
}

/// [`video_server`] and a handle to its relay.
pub async fn video_server_and_relay() -> (TestServer, MediaRelay) {
    let data = TempDir::new().expect("temp dir");
    let options = RuntimeOptions {
        database_url: format!("sqlite://{}", data.path().join("test.db").display()),
        ..Default::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = TestServer::start_with_routes(options, data, async {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let relay = MediaRelay::start(addr).await.expect("media relay starts");
        let _ = tx.send(relay.clone());
        dev::routes(relay)
    })
    .await;
    (server, rx.await.expect("the relay handle"))
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
    let directions = observer["directions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !directions.is_empty() && directions.iter().all(|d| d == "recvonly"),
        "the observer's media is negotiated receive-only: {observer}"
    );
    let roles: Vec<&str> = observer["participants"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["role"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(roles.len(), 3, "everyone listed: {observer}");
    assert!(
        roles.contains(&"observer") && roles.contains(&"chair"),
        "{roles:?}"
    );

    // The participant's browser dies without leaving: the others drop its
    // stream and go on decoding the chair.
    let (_, gone) = browsers.remove(1);
    gone.kill().await;
    for _ in 0..240 {
        let mut settled = true;
        for (_, b) in browsers.iter_mut() {
            let s = b.eval(ROOM_STATS_JS).await.expect("stats");
            let listed = s["participants"].as_array().map_or(0, Vec::len);
            settled &= listed == 2 && remote_streams(&s) == usize::from(s["sendingTracks"] == 0);
        }
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stats = wait_all_decoding(&mut browsers, 1).await;
    for s in &stats {
        assert_eq!(s["participants"].as_array().map_or(0, Vec::len), 2, "{s}");
    }
    assert_eq!(
        remote_streams(&stats[0]),
        0,
        "the chair sees no one publishing: {}",
        stats[0]
    );
    assert_eq!(
        remote_streams(&stats[1]),
        1,
        "the observer sees the chair only: {}",
        stats[1]
    );
}

fn remote_streams(stats: &Value) -> usize {
    stats["decoded"].as_object().map_or(0, serde_json::Map::len)
}

/// CPU seconds this process (the runtime and its relay, plus the small
/// DevTools clients) has used.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Frames decoded so far per (browser, stream), in a stable order.
fn decoded_frames(stats: &[Value]) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = stats
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s["decoded"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, f)| Some((format!("{i}/{k}"), f.as_u64()?)))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect();
    v.sort();
    v
}

/// The video numbers of docs/benchmarks.md: time from join request to first
/// decoded frame, and how large a room of publishing Chromium instances one
/// runtime relays here. Run with
/// `cargo test -p vtelehealth-tests --test e2e video_benchmark -- --ignored --nocapture`
/// (`VTH_VIDEO_BENCH_MAX`, default 6, caps the room).
#[tokio::test]
#[ignore = "a measurement, not a test: run it by name"]
async fn video_benchmark() {
    let Some(chromium) = chromium() else { return };
    let max: usize = std::env::var("VTH_VIDEO_BENCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let server = video_server().await;
    let room = "bench";
    let mut browsers: Vec<(&str, Browser)> = Vec::new();
    println!(
        "| publishers | all decode all | newest joiner: join → first frame per publisher (ms) | \
         decoded fps per stream (min / median) | runtime process CPU (% of one core) | load average (1 min) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for n in 1..=max {
        let url = room_url(&server, room, &format!("p{n}"), "participant");
        let browser = Browser::launch(&chromium, &url).await.expect("browser");
        browsers.push(("publisher", browser));
        if n == 1 {
            continue;
        }
        if poll_all_decoding(&mut browsers, n, 240).await.is_err() {
            println!("| {n} | no (not within 60 s) | | | | |");
            break;
        }
        // The newest joiner's first frame from each publisher already there.
        let (_, newest) = browsers.last_mut().expect("a browser");
        let s = newest.eval(ROOM_STATS_JS).await.expect("stats");
        let joined = s["joinRequestedAt"].as_f64().unwrap_or(0.0);
        let mut firsts: Vec<f64> = s["firstFrameAt"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(Value::as_f64)
                    .map(|t| t - joined)
                    .collect()
            })
            .unwrap_or_default();
        firsts.sort_by(f64::total_cmp);
        // Let the room settle, then measure 10 s of steady forwarding.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = decoded_frames(
            &poll_all_decoding(&mut browsers, n, 1)
                .await
                .unwrap_or_else(|s| s),
        );
        let cpu0 = process_cpu_seconds();
        let window = Duration::from_secs(10);
        tokio::time::sleep(window).await;
        let cpu1 = process_cpu_seconds();
        let after = decoded_frames(
            &poll_all_decoding(&mut browsers, n, 1)
                .await
                .unwrap_or_else(|s| s),
        );
        let mut fps: Vec<f64> = after
            .iter()
            .map(|(k, a)| {
                let b = before.iter().find(|(kb, _)| kb == k).map_or(0, |(_, b)| *b);
                a.saturating_sub(b) as f64 / window.as_secs_f64()
            })
            .collect();
        fps.sort_by(f64::total_cmp);
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "| {n} | yes | {} | {:.1} / {:.1} | {:.0} | {} |",
            firsts
                .iter()
                .map(|t| format!("{t:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            fps.first().copied().unwrap_or(0.0),
            fps.get(fps.len() / 2).copied().unwrap_or(0.0),
            (cpu1 - cpu0) / window.as_secs_f64() * 100.0,
            load.split_whitespace().next().unwrap_or("?"),
        );
    }
}

/// Poll `predicate` (a page expression giving a boolean) in `browser` until
/// it holds; bounded, with what the page shows in the failure message.
async fn wait_page(browser: &mut Browser, predicate: &str, what: &str) {
    for _ in 0..240 {
        if browser.eval(predicate).await.expect("page script") == Value::Bool(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let state = browser
        .eval("JSON.stringify({ state: window.vthState && window.vthState(), text: document.body.innerText })")
        .await
        .unwrap_or_default();
    panic!("{what}: not within 60 s; the page: {state}");
}

/// The production path in browsers: join tokens from the room API, the
/// server-side waiting room, and the chair admitting from the room page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_join_tokens_the_chair_admits_from_the_page_and_everyone_decodes() {
    use crate::video::{invite, join_token, person, room};
    use vtelehealth_runtime::identity::Role;

    let Some(chromium) = chromium() else { return };
    let server = crate::video::server().await;
    let relay = MediaRelay::start("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("media relay starts");
    assert!(
        server
            .runtime
            .video
            .set_media_plane(std::sync::Arc::new(relay))
    );
    let (_, chair) = person(&server, "chair-a", Role::Practitioner, "bv-a").await;
    let (b_id, b) = person(&server, "bs-b", Role::Practitioner, "bv-b").await;
    let (o_id, o) = person(&server, "hv-o", Role::Practitioner, "bv-b").await;
    let room = room(&server, &chair).await;
    let presenter_id = invite(&server, &chair, &room, &b_id, "presenter").await;
    let observer_id = invite(&server, &chair, &room, &o_id, "observer").await;
    let page = |t: &Value| {
        format!(
            "{}{}",
            server.base,
            t["room_url"].as_str().expect("room_url")
        )
    };
    let status_is = |s: &str| format!("window.vthState && window.vthState().status === '{s}'");

    // The presenter and the observer arrive first: they wait, and no media
    // is negotiated for them.
    let mut presenter = Browser::launch(
        &chromium,
        &page(&join_token(&server, &b, &room, serde_json::json!({})).await),
    )
    .await
    .expect("presenter's browser");
    let mut observer = Browser::launch(
        &chromium,
        &page(&join_token(&server, &o, &room, serde_json::json!({})).await),
    )
    .await
    .expect("observer's browser");
    wait_page(&mut presenter, &status_is("waiting"), "the presenter waits").await;
    wait_page(&mut observer, &status_is("waiting"), "the observer waits").await;
    let waiting = presenter.eval(ROOM_STATS_JS).await.expect("stats");
    assert_eq!(waiting["outboundBytes"], 0, "{waiting}");
    assert_eq!(waiting["participants"], serde_json::json!([]), "{waiting}");

    // The chair is in on arrival and sees an admit button for each.
    let tc = join_token(&server, &chair, &room, serde_json::json!({})).await;
    let mut chair_page = Browser::launch(&chromium, &page(&tc))
        .await
        .expect("chair's browser");
    let buttons = format!(
        "(() => {{ const ids = [...document.querySelectorAll('button[data-admit]')].map((b) => b.dataset.admit); \
         return ids.includes('{presenter_id}') && ids.includes('{observer_id}'); }})()"
    );
    wait_page(&mut chair_page, &buttons, "the chair sees both waiting").await;
    let label = chair_page
        .eval(&format!(
            "document.querySelector('button[data-admit=\"{presenter_id}\"]').getAttribute('aria-label')"
        ))
        .await
        .expect("label");
    assert!(
        label.as_str().is_some_and(|l| l.contains("BS. bs-b")),
        "the admit button names who it admits: {label}"
    );
    // A double click admits once; then the observer.
    chair_page
        .eval(&format!(
            "(() => {{ const b = document.querySelector('button[data-admit=\"{presenter_id}\"]'); b.click(); b.click(); return true; }})()"
        ))
        .await
        .expect("click");
    wait_page(
        &mut presenter,
        &status_is("connected"),
        "the presenter is admitted",
    )
    .await;
    chair_page
        .eval(&format!(
            "document.querySelector('button[data-admit=\"{observer_id}\"]').click()"
        ))
        .await
        .expect("click");
    wait_page(
        &mut observer,
        &status_is("connected"),
        "the observer is admitted",
    )
    .await;

    let mut browsers = vec![
        ("chair", chair_page),
        ("presenter", presenter),
        ("observer", observer),
    ];
    let stats = wait_all_decoding(&mut browsers, 2).await;
    for s in &stats {
        assert_eq!(s["errors"], serde_json::json!([]), "no errors: {s}");
    }
    let observer = &stats[2];
    assert_eq!(observer["outboundBytes"], 0, "{observer}");
    assert_eq!(observer["sendingTracks"], 0, "{observer}");
    let no_buttons = browsers[0]
        .1
        .eval("document.querySelectorAll('button[data-admit]').length")
        .await
        .expect("buttons");
    assert_eq!(no_buttons, 0, "nobody is left waiting");

    // The participation log: everyone joined once and was admitted by the chair.
    let (s, log) = vtelehealth_tests::common::send(
        &server,
        "GET",
        &format!("/api/v1/video/rooms/{room}/participants"),
        &chair,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{log}");
    let people = log["participants"].as_array().cloned().unwrap_or_default();
    assert_eq!(people.len(), 3, "{log}");
    for p in &people {
        assert_eq!(p["present"], true, "{p}");
        assert!(p["admitted_at"].is_string(), "{p}");
        assert_eq!(
            p["joins"].as_array().map_or(0, Vec::len),
            1,
            "one join each, the double click admitted once: {p}"
        );
    }
}
