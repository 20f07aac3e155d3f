//! The media signalling WebSocket with bad and out-of-order input, rooms kept
//! apart, and a participant that disappears; no browser needed (offers are
//! made with str0m itself).

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use str0m::Rtc;
use str0m::media::{Direction, MediaKind};
use tokio_tungstenite::tungstenite::Message;
use vtelehealth_runtime::video::sfu::MediaRelay;
use vtelehealth_tests::TestServer;

use crate::browser_video::{video_server, video_server_and_relay};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn join(server: &TestServer, room: &str, name: &str, role: &str) -> Ws {
    let url = format!(
        "ws://{}/video/dev/{room}/ws?name={name}&role={role}&id={name}",
        server.addr
    );
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("websocket connects");
    ws
}

async fn send(ws: &mut Ws, msg: Value) {
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .expect("send");
}

/// The next JSON message (bounded wait, so a missing reply fails the test).
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a reply in time")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(t) = frame {
            return serde_json::from_str(t.as_str()).expect("JSON from the relay");
        }
    }
}

/// The next message of `kind`, skipping others (e.g. `tracks` updates).
async fn recv_type(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let msg = recv(ws).await;
        if msg["type"] == kind {
            return msg;
        }
    }
}

fn names(tracks: &Value) -> Vec<String> {
    let mut v: Vec<String> = tracks["participants"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["display_name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A real offer that sends video (as a browser publisher's would).
fn sending_offer() -> String {
    let mut rtc = Rtc::builder().build(Instant::now());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _pending) = change.apply().expect("an offer");
    offer.to_sdp_string()
}

#[tokio::test]
async fn malformed_and_out_of_order_messages_get_errors_and_the_session_goes_on() {
    let server = video_server().await;
    let mut ws = join(&server, "r1", "an", "participant").await;
    assert_eq!(names(&recv_type(&mut ws, "tracks").await), ["an"]);

    for (bad, code) in [
        (Message::Text("not json".into()), "bad-message"),
        (Message::Text(r#"{"type":"publish"}"#.into()), "bad-message"),
        (Message::Text(r#"{"type":"offer"}"#.into()), "bad-message"),
        (Message::Binary(vec![1, 2, 3].into()), "bad-message"),
        (
            Message::Text(json!({"type":"answer","sdp":"v=0"}).to_string().into()),
            "out-of-order",
        ),
        (
            Message::Text(
                json!({"type":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"})
                    .to_string()
                    .into(),
            ),
            "out-of-order",
        ),
        (
            Message::Text(json!({"type":"offer","sdp":"garbage"}).to_string().into()),
            "bad-sdp",
        ),
    ] {
        ws.send(bad).await.expect("send");
        let err = recv_type(&mut ws, "error").await;
        assert_eq!(err["code"], code, "{err}");
        assert_eq!(err["fatal"], false, "{err}");
    }

    // Still in the session: a good offer is answered, a second is refused.
    send(&mut ws, json!({"type":"offer","sdp": sending_offer()})).await;
    let answer = recv_type(&mut ws, "answer").await;
    assert!(answer["sdp"].as_str().is_some_and(|s| s.starts_with("v=0")));
    send(&mut ws, json!({"type":"offer","sdp": sending_offer()})).await;
    assert_eq!(recv_type(&mut ws, "error").await["code"], "out-of-order");
    send(&mut ws, json!({"type":"answer","sdp":"v=0"})).await;
    assert_eq!(recv_type(&mut ws, "error").await["code"], "out-of-order");
    send(
        &mut ws,
        json!({"type":"candidate","candidate":"candidate:x.local"}),
    )
    .await;
    send(&mut ws, json!({"type":"leave"})).await;
}

#[tokio::test]
async fn an_observer_may_not_offer_to_send_media() {
    let server = video_server().await;
    let mut ws = join(&server, "r1", "chi", "observer").await;
    let tracks = recv_type(&mut ws, "tracks").await;
    assert_eq!(tracks["participants"][0]["role"], "observer");
    assert_eq!(tracks["participants"][0]["can_publish"], false);
    send(&mut ws, json!({"type":"offer","sdp": sending_offer()})).await;
    let err = recv_type(&mut ws, "error").await;
    assert_eq!(err["code"], "forbidden", "{err}");
}

#[tokio::test]
async fn rooms_are_apart_and_a_vanished_participant_is_removed() {
    let server = video_server().await;
    let mut an = join(&server, "r1", "an", "chair").await;
    assert_eq!(names(&recv_type(&mut an, "tracks").await), ["an"]);
    let binh = join(&server, "r1", "binh", "participant").await;
    assert_eq!(names(&recv_type(&mut an, "tracks").await), ["an", "binh"]);
    let mut other = join(&server, "r2", "cuong", "participant").await;
    assert_eq!(names(&recv_type(&mut other, "tracks").await), ["cuong"]);
    // binh vanishes without a leave message.
    drop(binh);
    assert_eq!(names(&recv_type(&mut an, "tracks").await), ["an"]);
}

#[tokio::test]
async fn ending_a_room_disconnects_its_participants_only() {
    let (server, relay) = video_server_and_relay().await;
    let mut an = join(&server, "r1", "an", "chair").await;
    recv_type(&mut an, "tracks").await;
    let mut other = join(&server, "r2", "binh", "participant").await;
    recv_type(&mut other, "tracks").await;
    relay.end_room("r1").expect("relay running");
    let err = recv_type(&mut an, "error").await;
    assert_eq!(
        (&err["code"], &err["fatal"]),
        (&json!("room-ended"), &json!(true))
    );
    // The socket closes after the fatal error.
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(frame)) = an.next().await {
            if frame.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the ended room's socket closes");
    // The other room is untouched: its participant is still answered.
    send(&mut other, json!({"type":"answer","sdp":"v=0"})).await;
    assert_eq!(recv_type(&mut other, "error").await["code"], "out-of-order");
}

#[tokio::test]
async fn the_room_page_is_served_in_vietnamese() {
    let server = video_server().await;
    let resp = server
        .client
        .get(format!("{}/rooms/hoi-chan-1", server.base))
        .send()
        .await
        .expect("page");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["referrer-policy"].to_str().ok(),
        Some("no-referrer")
    );
    let html = resp.text().await.expect("body");
    assert!(html.contains(r#"<html lang="vi">"#) && html.contains("/ui/room.js"));
    let js = server
        .client
        .get(format!("{}/ui/room.js", server.base))
        .send()
        .await
        .expect("script");
    assert_eq!(js.status(), 200);
    assert!(js.text().await.expect("body").contains("window.vthPc"));
}

/// What the aiortc client met: a browser's `toJSON()` candidate (with
/// `usernameFragment`), a malformed SDP and an oversized message each get a
/// clean, non-fatal answer, and the session goes on.
#[tokio::test]
async fn browser_candidates_bad_sdp_and_oversized_messages_get_clean_answers() {
    let server = video_server().await;
    let mut ws = join(&server, "r1", "an", "participant").await;
    recv_type(&mut ws, "tracks").await;

    // A malformed SDP: the reason, and no parser internals (addresses).
    for sdp in [
        "garbage",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=video nonsense\r\n",
    ] {
        send(&mut ws, json!({"type":"offer","sdp": sdp})).await;
        let err = recv_type(&mut ws, "error").await;
        assert_eq!(err["code"], "bad-sdp", "{err}");
        let message = err["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("offer does not parse: ")
                && !message.contains("0x")
                && !message.contains("Pointer"),
            "{err}"
        );
    }

    // Over the documented limit (65 KiB), under the socket's: `bad-message`,
    // not a dropped connection.
    let big = json!({"type":"offer","sdp": format!("v=0\r\n{}", "a=x\r\n".repeat(14 * 1024))});
    send(&mut ws, big).await;
    let err = recv_type(&mut ws, "error").await;
    assert_eq!(
        (&err["code"], &err["fatal"]),
        (&json!("bad-message"), &json!(false)),
        "{err}"
    );

    send(&mut ws, json!({"type":"offer","sdp": sending_offer()})).await;
    recv_type(&mut ws, "answer").await;
    // RTCIceCandidate.toJSON(): accepted, so no error comes back; the next
    // error is the one the out-of-order answer below provokes.
    send(
        &mut ws,
        json!({"type":"candidate","candidate":"candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
               "sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"aBcD"}),
    )
    .await;
    send(&mut ws, json!({"type":"answer","sdp":"v=0"})).await;
    let err = recv_type(&mut ws, "error").await;
    assert_eq!(
        err["code"], "out-of-order",
        "the candidate was accepted: {err}"
    );
}

/// A client that never reaches the relay's candidate is told why its media
/// connection was lost (and the relay logs it), not just that it was.
#[tokio::test]
async fn a_connection_that_never_reaches_the_relay_is_lost_with_a_reason() {
    let server = video_server().await;
    let mut ws = join(&server, "r1", "an", "participant").await;
    recv_type(&mut ws, "tracks").await;
    // An offer with a candidate nobody answers from: ICE can only time out.
    let mut rtc = Rtc::builder().build(Instant::now());
    let nowhere = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    rtc.add_local_candidate(
        str0m::Candidate::host(nowhere.local_addr().expect("addr"), "udp").expect("candidate"),
    );
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, _pending) = change.apply().expect("an offer");
    send(
        &mut ws,
        json!({"type":"offer","sdp": offer.to_sdp_string()}),
    )
    .await;
    recv_type(&mut ws, "answer").await;
    let err = tokio::time::timeout(Duration::from_secs(60), recv_type(&mut ws, "error"))
        .await
        .expect("the relay gives up within a minute");
    assert_eq!(
        (&err["code"], &err["fatal"]),
        (&json!("unavailable"), &json!(true)),
        "{err}"
    );
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("the media connection was lost: ") && message.contains("ICE"),
        "a reason: {err}"
    );
}

/// The token route: a message over the control plane's limit (96 KiB) is
/// answered with a non-fatal `bad-message` and the socket stays open; a
/// browser's candidate JSON (with `usernameFragment`) reaches the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_route_answers_oversized_messages_and_takes_browser_candidates() {
    use crate::video::{join_token, person, room};
    use vtelehealth_runtime::identity::Role;

    let server = crate::video::server().await;
    let relay = MediaRelay::start("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("relay");
    assert!(
        server
            .runtime
            .video
            .set_media_plane(std::sync::Arc::new(relay))
    );
    let (_, chair) = person(&server, "chair-big", Role::Practitioner, "bv-a").await;
    let room = room(&server, &chair).await;
    let token = join_token(&server, &chair, &room, json!({})).await;
    let url = format!(
        "ws://{}{}",
        server.addr,
        token["signalling_url"].as_str().expect("signalling_url")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("upgraded");
    recv_type(&mut ws, "admitted").await;

    let big = json!({"type":"offer","sdp": "v=0\r\n".to_owned() + &"a=x\r\n".repeat(20 * 1024)});
    send(&mut ws, big).await;
    let err = recv_type(&mut ws, "error").await;
    assert_eq!(
        (&err["code"], &err["fatal"]),
        (&json!("bad-message"), &json!(false)),
        "{err}"
    );
    // Still open: a browser's candidate before the offer is out of order
    // for the relay, not a malformed message.
    send(
        &mut ws,
        json!({"type":"candidate","candidate":"candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
               "sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"aBcD"}),
    )
    .await;
    let err = recv_type(&mut ws, "error").await;
    assert_eq!(err["code"], "out-of-order", "{err}");
}

/// The relay's room features for the page: mute and camera states in
/// `tracks`, a chair's mute request, chat, and who may do what.
#[tokio::test]
async fn media_state_mute_requests_and_chat_follow_the_roles() {
    let server = video_server().await;
    let mut an = join(&server, "r1", "an", "chair").await;
    recv_type(&mut an, "tracks").await;
    let mut binh = join(&server, "r1", "binh", "participant").await;
    recv_type(&mut binh, "tracks").await;
    let mut chi = join(&server, "r1", "chi", "observer").await;
    recv_type(&mut chi, "tracks").await;

    // binh's state reaches everyone's list.
    send(
        &mut binh,
        json!({"type":"media-state","audio_muted":true,"video_muted":true}),
    )
    .await;
    loop {
        let t = recv_type(&mut an, "tracks").await;
        let b = t["participants"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["participant_id"] == "binh").cloned())
            .unwrap_or_default();
        if b["audio_muted"] == true && b["video_muted"] == true {
            assert_eq!(b["screen_stream_id"], Value::Null, "{t}");
            break;
        }
    }
    // Sharing a screen is for chairs and presenters.
    send(
        &mut binh,
        json!({"type":"media-state","sharing_screen":true}),
    )
    .await;
    assert_eq!(recv_type(&mut binh, "error").await["code"], "forbidden");
    // Only a chair mutes others, and the muted one hears who asked.
    send(&mut binh, json!({"type":"mute","participant_id":"an"})).await;
    assert_eq!(recv_type(&mut binh, "error").await["code"], "forbidden");
    send(&mut an, json!({"type":"mute","participant_id":"binh"})).await;
    assert_eq!(recv_type(&mut binh, "mute-requested").await["by"], "an");
    send(&mut an, json!({"type":"mute","participant_id":"nobody"})).await;
    assert_eq!(recv_type(&mut an, "error").await["code"], "bad-message");

    // Chat reaches everyone in the room, the observer included, and no other room.
    let mut other = join(&server, "r2", "dung", "participant").await;
    recv_type(&mut other, "tracks").await;
    send(&mut an, json!({"type":"chat","text":"  Mời BS. Bình  "})).await;
    for ws in [&mut an, &mut binh, &mut chi] {
        let line = recv_type(ws, "chat").await;
        assert_eq!(
            (&line["name"], &line["text"], &line["participant_id"]),
            (&json!("an"), &json!("Mời BS. Bình"), &json!("an")),
            "{line}"
        );
        assert!(line["at"].as_i64().is_some_and(|t| t > 0), "{line}");
    }
    // The observer reads but does not write; empty or oversized lines are refused.
    send(&mut chi, json!({"type":"chat","text":"xin chào"})).await;
    assert_eq!(recv_type(&mut chi, "error").await["code"], "forbidden");
    send(&mut an, json!({"type":"chat","text":"   "})).await;
    assert_eq!(recv_type(&mut an, "error").await["code"], "bad-message");
    send(&mut an, json!({"type":"chat","text":"x".repeat(1001)})).await;
    assert_eq!(recv_type(&mut an, "error").await["code"], "bad-message");
    // At most 10 lines per 10 s (one was sent above).
    for i in 0..9 {
        send(&mut an, json!({"type":"chat","text":format!("dòng {i}")})).await;
    }
    send(&mut an, json!({"type":"chat","text":"một dòng quá nhiều"})).await;
    let err = recv_type(&mut an, "error").await;
    assert_eq!(err["code"], "bad-message", "{err}");
    // The other room heard nothing of it: its next message is its own error.
    send(&mut other, json!({"type":"answer","sdp":"v=0"})).await;
    assert_eq!(recv(&mut other).await["type"], "error");
}
