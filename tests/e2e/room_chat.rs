//! A room keeps its chat: lines go to everyone present, whoever joins later
//! (or reconnects) reads the recent conversation, and the whole of it stays
//! with the room for its participants to read after the call.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use vtelehealth_runtime::identity::Role;
use vtelehealth_runtime::video::sfu::MediaRelay;
use vtelehealth_tests::TestServer;
use vtelehealth_tests::common::send;

use crate::video::{invite, join_token, person, room};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(server: &TestServer, token: &Value) -> Ws {
    let url = format!(
        "ws://{}{}",
        server.addr,
        token["signalling_url"].as_str().expect("signalling_url")
    );
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("upgraded");
    ws
}

/// The next message of `kind` (bounded wait, so a missing one fails).
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(t) = frame {
            let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
            if v["type"] == kind {
                return v;
            }
        }
    }
}

async fn say(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(
        json!({ "type": "chat", "text": text }).to_string().into(),
    ))
    .await
    .expect("sent");
}

#[tokio::test]
async fn a_rooms_chat_is_replayed_to_newcomers_and_kept_with_the_room() {
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
    let (_, chair) = person(&server, "chat-chair", Role::Practitioner, "bv-a").await;
    let (guest_id, guest) = person(&server, "chat-guest", Role::Practitioner, "bv-b").await;
    let (_, stranger) = person(&server, "chat-stranger", Role::Practitioner, "bv-b").await;
    let room = room(&server, &chair).await;
    let guest_participant = invite(&server, &chair, &room, &guest_id, "participant").await;

    let mut a = open(
        &server,
        &join_token(&server, &chair, &room, json!({})).await,
    )
    .await;
    next_of(&mut a, "admitted").await;
    say(&mut a, "Phim chụp lúc 8 giờ, mời xem").await;
    say(&mut a, "Chờ BS. khách vào phòng").await;
    assert_eq!(
        next_of(&mut a, "chat").await["text"],
        "Phim chụp lúc 8 giờ, mời xem"
    );
    assert_eq!(
        next_of(&mut a, "chat").await["text"],
        "Chờ BS. khách vào phòng"
    );

    // The guest joins afterwards, is admitted, and reads what was said before.
    let mut b = open(
        &server,
        &join_token(&server, &guest, &room, json!({})).await,
    )
    .await;
    next_of(&mut b, "waiting").await;
    let (s, r) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/participants/{guest_participant}/admit"),
        &chair,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{r}");
    next_of(&mut b, "admitted").await;
    let first = next_of(&mut b, "chat").await;
    assert_eq!(
        (&first["text"], &first["name"]),
        (
            &json!("Phim chụp lúc 8 giờ, mời xem"),
            &json!("BS. chat-chair")
        ),
        "{first}"
    );
    assert_eq!(
        next_of(&mut b, "chat").await["text"],
        "Chờ BS. khách vào phòng"
    );
    say(&mut b, "Đã xem, đồng ý can thiệp").await;
    assert_eq!(
        next_of(&mut a, "chat").await["text"],
        "Đã xem, đồng ý can thiệp"
    );

    // Kept with the room, in order, for its participants (written off the
    // relay's loop: wait until the third line is there).
    let path = format!("/api/v1/video/rooms/{room}/chat");
    let mut kept = Value::Null;
    for _ in 0..100 {
        let (s, r) = send(&server, "GET", &path, &guest, None, &[]).await;
        assert_eq!(s, 200, "{r}");
        if r["lines"].as_array().is_some_and(|l| l.len() == 3) {
            kept = r;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let texts: Vec<&str> = kept["lines"]
        .as_array()
        .expect("three lines kept")
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        [
            "Phim chụp lúc 8 giờ, mời xem",
            "Chờ BS. khách vào phòng",
            "Đã xem, đồng ý can thiệp"
        ]
    );
    assert_eq!(kept["lines"][2]["name"], "BS. chat-guest", "{kept}");
    // Someone never invited reads nothing of it.
    let (s, r) = send(&server, "GET", &path, &stranger, None, &[]).await;
    assert_eq!(s, 403, "{r}");
}
