//! The media signalling WebSocket with bad and out-of-order input, rooms kept
//! apart, and a participant that disappears; no browser needed (offers are
//! made with str0m itself).

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use str0m::Rtc;
use str0m::media::{Direction, MediaKind};
use tokio_tungstenite::tungstenite::Message;
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
