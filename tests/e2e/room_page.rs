//! The consultation room page as doctors use it, in headless Chromium: a
//! layout that fills the window, people by name (and hospital) with their
//! microphone and camera state, a shared screen, chat, the chair's
//! controls, and what a participant sees when the connection drops or is
//! too poor for video. Screenshots at 1280 and 390 px go to
//! `target/room-screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use vtelehealth_runtime::directory::{Hospital, Tier};
use vtelehealth_runtime::video::sfu::MediaRelay;
use vtelehealth_tests::browser::{Browser, chromium};

use crate::browser_video::{room_url, video_server, wait_all_decoding};

/// Evaluate `js` in `b` until it gives `true` (every 250 ms, at most 60 s);
/// the page's state in the failure message.
async fn until(b: &mut Browser, js: &str, what: &str) {
    for _ in 0..240 {
        if b.eval(js).await.unwrap_or(Value::Null) == Value::Bool(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let page = b
        .eval("JSON.stringify({ state: window.vthState && window.vthState(), text: document.body.innerText })")
        .await
        .unwrap_or_default();
    panic!("{what}: not within 60 s; the page: {page}");
}

async fn click(b: &mut Browser, selector: &str) {
    let js = format!(
        "(() => {{ const el = document.querySelector({sel}); if (!el) return false; el.click(); return true; }})()",
        sel = json!(selector)
    );
    assert_eq!(
        b.eval(&js).await.expect("click"),
        json!(true),
        "no {selector} to click"
    );
}

async fn viewport(b: &mut Browser, width: u32, height: u32) {
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600 }),
    )
    .await
    .expect("viewport");
}

/// Save a PNG of the page under target/room-screenshots/.
async fn screenshot(b: &mut Browser, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/room-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let shot = b
        .call("Page.captureScreenshot", json!({ "format": "png" }))
        .await
        .expect("screenshot");
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap_or_default())
        .expect("base64 png");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

/// Frames decoded so far on the page's inbound video track `track`.
async fn frames_of(b: &mut Browser, track: &str) -> u64 {
    let js = format!(
        "(async () => {{ let n = 0; (await window.vthPc.getStats()).forEach((s) => {{ \
           if (s.type === 'inbound-rtp' && s.kind === 'video' && s.trackIdentifier === {t}) n = s.framesDecoded || 0; }}); return n; }})()",
        t = json!(track)
    );
    b.eval(&js).await.expect("stats").as_u64().unwrap_or(0)
}

/// What the layout looks like: tile sizes, the share of the window they
/// cover, and the text shown (to check no id leaks).
const LAYOUT_JS: &str = r#"(() => {
  const tiles = [...document.querySelectorAll('#tiles .tile')].map((f) => {
    const r = f.getBoundingClientRect();
    return { w: Math.round(r.width), h: Math.round(r.height), cls: f.className, label: f.querySelector('.label').textContent,
             avatar: f.querySelector('.avatar span').textContent, badges: [...f.querySelectorAll('.badge')].map((b) => b.getAttribute('aria-label')) };
  });
  const area = tiles.reduce((a, t) => a + t.w * t.h, 0);
  return { tiles, cover: area / (innerWidth * innerHeight), width: innerWidth, text: document.body.innerText,
           presenting: document.getElementById('tiles').classList.contains('presenting') };
})()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_page_fills_the_window_shows_people_and_shares_a_screen() {
    let Some(chromium) = chromium() else { return };
    let server = video_server().await;
    let room = "hoi-chan-giao-dien";
    let chair_url = room_url(&server, room, "Nguyen%20Van%20An", "chair");
    let presenter_url = room_url(&server, room, "Tran%20Thi%20Binh", "presenter");
    let chair = Browser::launch(&chromium, &chair_url).await.expect("chair");
    let presenter = Browser::launch(&chromium, &presenter_url)
        .await
        .expect("presenter");
    let mut browsers = vec![("chair", chair), ("presenter", presenter)];
    let stats = wait_all_decoding(&mut browsers, 2).await;
    let ids: Vec<String> = stats[0]["participants"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["participant_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ids.len(), 2, "{}", stats[0]);
    let presenter_id = stats[1]["me"].as_str().expect("me").to_owned();
    let [(_, chair), (_, presenter)] = &mut browsers[..] else {
        unreachable!()
    };

    // 1280 px: two tiles side by side, filling the stage; names, no ids.
    viewport(chair, 1280, 800).await;
    viewport(presenter, 1280, 800).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let layout = chair.eval(LAYOUT_JS).await.expect("layout");
    let tiles = layout["tiles"].as_array().cloned().unwrap_or_default();
    assert_eq!(tiles.len(), 2, "{layout}");
    for tile in &tiles {
        assert!(
            tile["w"].as_u64().unwrap_or(0) >= 400,
            "a tile uses the width: {layout}"
        );
        assert!(
            tile["h"].as_u64().unwrap_or(0) >= 300,
            "a tile uses the height: {layout}"
        );
    }
    assert!(
        layout["cover"].as_f64().unwrap_or(0.0) > 0.4,
        "the tiles fill the window: {layout}"
    );
    let text = layout["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("Tran Thi Binh") && text.contains("Người tham gia"),
        "{text}"
    );
    for id in &ids {
        assert!(
            !text.contains(id.as_str()),
            "no participant id on screen: {text}"
        );
    }
    screenshot(chair, "room-1280-two").await;

    // The presenter mutes the microphone and turns the camera off: the
    // chair sees the badges and the initials, not a black tile.
    click(presenter, "#mute-audio").await;
    click(presenter, "#mute-video").await;
    let tile = format!("document.querySelector('.tile[data-participant=\"{presenter_id}\"]')");
    until(
        chair,
        &format!("(() => {{ const t = {tile}; return !!t && t.classList.contains('video-off') && !!t.querySelector('.badge.mic-off') && t.querySelector('.avatar span').textContent === 'TB'; }})()"),
        "the chair sees the presenter muted, camera off, with initials",
    )
    .await;
    screenshot(chair, "room-1280-camera-off").await;
    click(presenter, "#mute-video").await;
    click(presenter, "#mute-audio").await;
    until(
        chair,
        &format!("(() => {{ const t = {tile}; return !!t && !t.classList.contains('video-off') && !t.querySelector('.badge'); }})()"),
        "the presenter's camera and microphone are back",
    )
    .await;

    // Screen sharing: Chromium's fake capture, forwarded as a third track.
    until(
        presenter,
        "!document.getElementById('share').hidden && !document.getElementById('share').disabled",
        "the share button",
    )
    .await;
    click(presenter, "#share").await;
    until(
        chair,
        "Object.keys(window.vthState().remoteScreenTracks).length === 1 && document.getElementById('tiles').classList.contains('presenting')",
        "the chair receives the presenter's screen",
    )
    .await;
    let screen_track = chair
        .eval("Object.values(window.vthState().remoteScreenTracks)[0]")
        .await
        .expect("track");
    let screen_track = screen_track.as_str().expect("a screen track").to_owned();
    for _ in 0..240 {
        if frames_of(chair, &screen_track).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        frames_of(chair, &screen_track).await > 0,
        "the chair decodes the shared screen"
    );
    let layout = chair.eval(LAYOUT_JS).await.expect("layout");
    let main = layout["tiles"]
        .as_array()
        .and_then(|t| {
            t.iter()
                .find(|t| t["cls"].as_str().is_some_and(|c| c.contains("main")))
                .cloned()
        })
        .unwrap_or_default();
    let others_max = layout["tiles"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter(|t| t != &&main)
                .map(|t| t["w"].as_u64().unwrap_or(0))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    assert!(
        main["w"].as_u64().unwrap_or(0) >= 600 && main["w"].as_u64().unwrap_or(0) >= 2 * others_max,
        "the screen is shown large, the cameras beside it: {layout}"
    );
    assert!(
        main["label"]
            .as_str()
            .is_some_and(|l| l.contains("Tran Thi Binh")),
        "{layout}"
    );
    screenshot(chair, "room-1280-screen-share").await;

    // Chat, with the time as in Vietnam.
    chair
        .eval("(() => { const i = document.getElementById('chat-input'); i.value = 'Mời BS. Bình trình bày phim CT'; document.getElementById('chat-send').click(); return true; })()")
        .await
        .expect("chat");
    until(
        presenter,
        "(() => { const li = document.querySelector('#chat-log li'); return !!li && li.textContent.includes('Nguyen Van An') && li.textContent.includes('phim CT') && /\\d\\d:\\d\\d/.test(li.querySelector('time').textContent); })()",
        "the presenter reads the chair's message",
    )
    .await;

    // The chair asks the presenter to mute.
    click(chair, &format!("button[data-mute=\"{presenter_id}\"]")).await;
    until(
        presenter,
        "document.getElementById('mute-audio').getAttribute('aria-pressed') === 'true' && document.getElementById('banner').textContent.includes('Nguyen Van An')",
        "the presenter is muted by the chair and told so",
    )
    .await;

    // 390 px (a phone): one column, the screen on top, still readable.
    viewport(chair, 390, 844).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let layout = chair.eval(LAYOUT_JS).await.expect("layout");
    for tile in layout["tiles"].as_array().cloned().unwrap_or_default() {
        assert!(
            tile["w"].as_u64().unwrap_or(999) <= 390,
            "nothing wider than the phone: {layout}"
        );
    }
    let overflow = chair
        .eval("document.documentElement.scrollWidth <= innerWidth")
        .await
        .expect("overflow");
    assert_eq!(overflow, json!(true), "no sideways scrolling at 390 px");
    screenshot(chair, "room-390-screen-share").await;
    click(presenter, "#share").await;
    until(
        chair,
        "Object.keys(window.vthState().remoteScreenTracks).length === 0 && !document.getElementById('tiles').classList.contains('presenting')",
        "sharing stops",
    )
    .await;
    screenshot(chair, "room-390-two").await;
}

/// A dropped connection shows "Đang kết nối lại…" and the page rejoins by
/// itself; audio only stops the camera video both ways (the relay stops
/// forwarding it) and the others see the initials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_rejoins_and_audio_only_stops_video() {
    let Some(chromium) = chromium() else { return };
    let server = video_server().await;
    let room = "hoi-chan-mang-yeu";
    let a = Browser::launch(&chromium, &room_url(&server, room, "Le%20Cuong", "chair"))
        .await
        .expect("a");
    let b = Browser::launch(
        &chromium,
        &room_url(&server, room, "Pham%20Dung", "participant"),
    )
    .await
    .expect("b");
    let mut browsers = vec![("a", a), ("b", b)];
    wait_all_decoding(&mut browsers, 2).await;

    {
        let (_, b) = &mut browsers[1];
        let shown = b
            .eval("(async () => { window.vthTest.dropConnection(); const banner = document.getElementById('banner'); \
                   for (let i = 0; i < 100 && !banner.textContent.includes('kết nối lại'); i++) await new Promise((r) => setTimeout(r, 50)); \
                   return banner.textContent; })()")
            .await
            .expect("drop");
        assert!(
            shown
                .as_str()
                .is_some_and(|t| t.contains("Đang kết nối lại")),
            "the page says it is reconnecting: {shown}"
        );
        until(
            b,
            "window.vthState().reconnects >= 1 && window.vthState().status === 'connected'",
            "b rejoins",
        )
        .await;
        viewport(b, 1280, 800).await;
    }
    // Everyone decodes everyone again, over the new connection.
    wait_all_decoding(&mut browsers, 2).await;

    let (_, b) = &mut browsers[1];
    let a_stream = b
        .eval("window.vthState().participants.find((p) => p.participant_id !== window.vthState().me).stream_id")
        .await
        .expect("stream");
    let a_track = b
        .eval(&format!(
            "window.vthState().remoteVideoTracks[{}]",
            a_stream
        ))
        .await
        .expect("track");
    let a_track = a_track.as_str().expect("a track").to_owned();
    click(b, "#audio-only").await;
    until(
        b,
        "document.getElementById('banner').textContent.includes('chỉ âm thanh')",
        "b says audio only",
    )
    .await;
    // The relay stops forwarding camera video to b.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = frames_of(b, &a_track).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = frames_of(b, &a_track).await;
    assert!(
        after <= before + 3,
        "no video reaches b in audio only: {before} -> {after}"
    );
    screenshot(b, "room-1280-audio-only").await;
    let b_id = b.eval("window.vthState().me").await.expect("me");
    let (_, a) = &mut browsers[0];
    until(
        a,
        &format!("(() => {{ const t = document.querySelector('.tile[data-participant=\"{}\"]'); return !!t && t.classList.contains('video-off'); }})()", b_id.as_str().unwrap_or_default()),
        "a sees b's initials",
    )
    .await;
    // Video back: frames flow again.
    let (_, b) = &mut browsers[1];
    click(b, "#audio-only").await;
    let resumed = frames_of(b, &a_track).await;
    for _ in 0..120 {
        if frames_of(b, &a_track).await > resumed + 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        frames_of(b, &a_track).await > resumed + 5,
        "video comes back"
    );
}

/// The production path: hospitals by name on the tiles and the list, the
/// waiting room with the person's own preview, and the chair removing
/// someone from the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_hospital_names_the_waiting_preview_and_removal() {
    use crate::video::{invite, join_token, person, room};
    use vtelehealth_runtime::identity::Role;

    let Some(chromium) = chromium() else { return };
    let server = crate::video::server().await;
    for (id, name) in [
        ("bv-a", "Bệnh viện Trung ương A"),
        ("bv-b", "Bệnh viện tỉnh B"),
    ] {
        server
            .runtime
            .hospitals
            .upsert(Hospital {
                id: id.into(),
                name: name.into(),
                tier: Tier::Provincial,
                province: "Hà Nội".into(),
                ..Default::default()
            })
            .await
            .expect("hospital");
    }
    let relay = MediaRelay::start("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("relay");
    assert!(
        server
            .runtime
            .video
            .set_media_plane(std::sync::Arc::new(relay))
    );
    let (_, chair) = person(&server, "chair-a", Role::Practitioner, "bv-a").await;
    let (b_id, b) = person(&server, "bs-b", Role::Practitioner, "bv-b").await;
    let room = room(&server, &chair).await;
    let presenter_id = invite(&server, &chair, &room, &b_id, "presenter").await;
    let page = |t: &Value| {
        format!(
            "{}{}",
            server.base,
            t["room_url"].as_str().expect("room_url")
        )
    };

    let mut presenter = Browser::launch(
        &chromium,
        &page(&join_token(&server, &b, &room, json!({})).await),
    )
    .await
    .expect("presenter");
    viewport(&mut presenter, 1280, 800).await;
    // Waiting: the person sees themselves, and is told they wait.
    until(
        &mut presenter,
        "window.vthState().status === 'waiting' && !!document.querySelector('.tile.self video') && document.querySelector('.tile.self video').videoWidth > 0",
        "the waiting room shows the presenter's own camera",
    )
    .await;
    let banner = presenter
        .eval("document.getElementById('banner').textContent")
        .await
        .expect("banner");
    assert!(
        banner
            .as_str()
            .is_some_and(|t| t.contains("Đang chờ chủ tọa")),
        "{banner}"
    );
    screenshot(&mut presenter, "room-1280-waiting").await;

    let mut chair_page = Browser::launch(
        &chromium,
        &page(&join_token(&server, &chair, &room, json!({})).await),
    )
    .await
    .expect("chair");
    viewport(&mut chair_page, 1280, 800).await;
    until(
        &mut chair_page,
        &format!("!!document.querySelector('button[data-admit=\"{presenter_id}\"]')"),
        "admit button",
    )
    .await;
    let list = chair_page
        .eval("document.getElementById('participants').innerText")
        .await
        .expect("list");
    assert!(
        list.as_str()
            .is_some_and(|t| t.contains("Bệnh viện tỉnh B") && !t.contains("bv-b")),
        "hospital by name: {list}"
    );
    click(
        &mut chair_page,
        &format!("button[data-admit=\"{presenter_id}\"]"),
    )
    .await;
    let mut browsers = vec![("chair", chair_page), ("presenter", presenter)];
    wait_all_decoding(&mut browsers, 2).await;
    let [(_, chair_page), (_, presenter)] = &mut browsers[..] else {
        unreachable!()
    };
    until(
        chair_page,
        &format!("(() => {{ const t = document.querySelector('.tile[data-participant=\"{presenter_id}\"] .label'); return !!t && t.textContent.includes('BS. bs-b') && t.textContent.includes('Bệnh viện tỉnh B'); }})()"),
        "the tile names the presenter and their hospital",
    )
    .await;
    screenshot(chair_page, "room-1280-chair-controls").await;
    // Remove: two clicks (the first asks for confirmation).
    click(
        chair_page,
        &format!("button[data-remove=\"{presenter_id}\"]"),
    )
    .await;
    click(
        chair_page,
        &format!("button[data-remove=\"{presenter_id}\"]"),
    )
    .await;
    until(
        presenter,
        "document.getElementById('banner').textContent.includes('mời bạn ra khỏi phòng')",
        "the presenter is told they were removed",
    )
    .await;
    until(
        chair_page,
        &format!("!document.querySelector('.tile[data-participant=\"{presenter_id}\"]')"),
        "the chair no longer sees the presenter",
    )
    .await;
}
