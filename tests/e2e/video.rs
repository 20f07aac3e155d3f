//! Video consultation rooms end to end: the room API, join tokens, the
//! signalling WebSocket with its waiting room, and the LiveKit adapter
//! against a stub of LiveKit's room service on loopback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;
use vtelehealth_runtime::RuntimeOptions;
use vtelehealth_runtime::identity::{IdentityOptions, NewUser, Role};
use vtelehealth_runtime::time::now_secs;
use vtelehealth_runtime::video::ParticipantRole;
use vtelehealth_runtime::video::livekit::LiveKitConfig;
use vtelehealth_runtime::video::token::{JoinClaims, VideoClaims, VthClaims};
use vtelehealth_tests::TestServer;

use vtelehealth_tests::common::send;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn server() -> TestServer {
    let data = TempDir::new().expect("temp dir");
    let options = RuntimeOptions {
        database_url: format!("sqlite://{}", data.path().join("video.db").display()),
        cache_dir: Some(data.path().join("cache")),
        identity: IdentityOptions {
            password_iterations: 1_000,
            ..IdentityOptions::default()
        },
        ..RuntimeOptions::default()
    };
    TestServer::start_with(options, data).await
}

/// A user: (subject, platform token).
pub(crate) async fn person(
    server: &TestServer,
    name: &str,
    role: Role,
    hospital: &str,
) -> (String, String) {
    let mut u = NewUser::new(name, &format!("BS. {name}"), role, "password-1");
    u.hospital_id = Some(hospital.into());
    let user = server.runtime.identity.create_user(u).await.expect("user");
    let token = server.runtime.identity.token_for(&user).expect("token");
    (user.id, token)
}

/// A room hosted by A, chaired by its creator; its id.
pub(crate) async fn room(server: &TestServer, chair: &str) -> String {
    let (s, r) = send(
        server,
        "POST",
        "/api/v1/video/rooms",
        chair,
        Some(json!({ "purpose": "Hội chẩn ca bệnh", "requesting_hospital": "bv-b", "max_participants": 5 })),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["status"], "scheduled", "{r}");
    r["id"].as_str().expect("id").to_owned()
}

pub(crate) async fn invite(
    server: &TestServer,
    chair: &str,
    room: &str,
    subject: &str,
    role: &str,
) -> String {
    let (s, inv) = send(
        server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/invitations"),
        chair,
        Some(json!({ "subject": subject, "role": role })),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{inv}");
    inv["participant_id"].as_str().expect("id").to_owned()
}

pub(crate) async fn join_token(server: &TestServer, who: &str, room: &str, body: Value) -> Value {
    let (s, t) = send(
        server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/token"),
        who,
        Some(body),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    t
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

async fn connect(server: &TestServer, path: &str) -> Result<Socket, u16> {
    match tokio_tungstenite::connect_async(format!("ws://{}{path}", server.addr)).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("connecting {path}: {e}"),
    }
}

async fn open(server: &TestServer, token: &Value) -> Socket {
    let url = token["signalling_url"].as_str().expect("signalling_url");
    connect(server, url).await.expect("upgraded")
}

/// The next JSON message, skipping pings.
async fn next(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("JSON message");
        }
    }
}

/// The next message of type `ty`, skipping participant-list updates.
async fn next_of(ws: &mut Socket, ty: &str) -> Value {
    loop {
        let m = next(ws).await;
        if m["type"] == ty {
            return m;
        }
        assert_eq!(m["type"], "participants", "expected {ty}, got {m}");
    }
}

/// Nothing arrives for a while.
async fn silent(ws: &mut Socket, what: &str) {
    match tokio::time::timeout(Duration::from_millis(400), ws.next()).await {
        Err(_) => {}
        Ok(Some(Ok(Message::Ping(_)))) => {}
        Ok(other) => panic!("{what}: expected nothing, got {other:?}"),
    }
}

async fn say(ws: &mut Socket, text: &str) {
    ws.send(Message::Text(text.into())).await.expect("sent");
}

/// Until the participants list shows `n` present people.
async fn participants_until(ws: &mut Socket, n: usize) -> Value {
    loop {
        let m = next(ws).await;
        if m["type"] == "participants" && m["participants"].as_array().map(Vec::len) == Some(n) {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_room_admission_and_the_participation_log() {
    let server = server().await;
    let (_, chair) = person(&server, "chair", Role::Practitioner, "bv-a").await;
    let (b_id, b) = person(&server, "bs-b", Role::Practitioner, "bv-b").await;
    let (o_id, observer) = person(&server, "hv-b", Role::Practitioner, "bv-b").await;
    let room = room(&server, &chair).await;
    let pb = invite(&server, &chair, &room, &b_id, "participant").await;
    invite(&server, &chair, &room, &o_id, "observer").await;

    // B arrives early: waiting, and nothing else before admission.
    let tb = join_token(&server, &b, &room, json!({})).await;
    assert_eq!(tb["participant_id"], pb.as_str());
    assert!(
        tb["room_url"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!("/rooms/{room}?token="))
    );
    let mut ws_b = open(&server, &tb).await;
    let m = next(&mut ws_b).await;
    assert_eq!(
        m,
        json!({ "type": "waiting", "room": room, "participant_id": pb })
    );
    say(&mut ws_b, r#"{"type":"offer","sdp":"v=0"}"#).await;
    let e = next(&mut ws_b).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("out-of-order")),
        "{e}"
    );
    say(&mut ws_b, r#"{"type":"admit","participant_id":"x"}"#).await;
    assert_eq!(next(&mut ws_b).await["code"], "out-of-order");

    // The chair is admitted on arrival and sees B waiting; B still hears nothing.
    let tc = join_token(&server, &chair, &room, json!({})).await;
    let mut ws_c = open(&server, &tc).await;
    let m = next(&mut ws_c).await;
    assert_eq!(m["type"], "admitted", "{m}");
    assert_eq!(m["role"], "chair");
    let list = participants_until(&mut ws_c, 2).await;
    let states: Vec<(&str, &str)> = list["participants"]
        .as_array()
        .expect("list")
        .iter()
        .map(|p| {
            (
                p["role"].as_str().unwrap_or(""),
                p["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(states.contains(&("participant", "waiting")), "{list}");
    assert!(states.contains(&("chair", "in-room")), "{list}");
    silent(&mut ws_b, "a waiting participant").await;

    // Only the chair admits.
    let (s, _) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/participants/{pb}/admit"),
        &b,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 403);
    let (s, body) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/participants/{pb}/admit"),
        &chair,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let m = next(&mut ws_b).await;
    assert_eq!(m["type"], "admitted", "{m}");
    assert_eq!(m["can_publish"], true);
    let list = next(&mut ws_b).await;
    assert_eq!(list["type"], "participants", "{list}");

    // Observers never publish, whatever they ask for.
    let to = join_token(&server, &observer, &room, json!({ "can_publish": true })).await;
    assert_eq!(to["can_publish"], false);
    let c = claims_of(to["token"].as_str().expect("token"));
    assert_eq!(c["video"]["canPublish"], false, "{c}");
    assert_eq!(c["video"]["canPublishData"], false, "{c}");
    assert_eq!(c["video"]["canSubscribe"], true, "{c}");
    assert_eq!(c["video"]["roomJoin"], true, "{c}");
    assert_eq!(c["video"]["room"], room.as_str(), "{c}");
    assert_eq!(c["vth"]["role"], "observer", "{c}");
    assert_eq!(c["vth"]["hospital"], "bv-b", "{c}");
    assert_eq!(c["sub"], o_id.as_str(), "{c}");
    assert_eq!(c["iss"], server.base.as_str(), "{c}");
    let (nbf, exp) = (
        c["nbf"].as_i64().unwrap_or(0),
        c["exp"].as_i64().unwrap_or(0),
    );
    assert_eq!(exp - nbf, 600, "ten minutes by default: {c}");
    let (s, _) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/token"),
        &observer,
        Some(json!({ "ttl_seconds": 7200 })),
        &[],
    )
    .await;
    assert_eq!(s, 422, "an hour at most");

    // B disappears without leaving: marked left, the chair sees it.
    drop(ws_b);
    participants_until(&mut ws_c, 1).await;
    let (s, log) = send(
        &server,
        "GET",
        &format!("/api/v1/video/rooms/{room}/participants"),
        &chair,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{log}");
    assert_eq!(log["room"]["status"], "open", "{log}");
    let b_entry = log["participants"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["participant_id"] == pb.as_str()))
        .cloned()
        .expect("B listed");
    assert_eq!(b_entry["present"], false, "{b_entry}");
    let join = &b_entry["joins"][0];
    assert!(join["joined_at"].is_string(), "{b_entry}");
    assert!(join["admitted_at"].is_string(), "{b_entry}");
    assert!(join["left_at"].is_string(), "{b_entry}");
    assert_eq!(join["left_reason"], "disconnected", "{b_entry}");
    assert!(b_entry["admitted_by"].is_string(), "{b_entry}");

    // Ending the room tells everyone, and no token works for it any more.
    let (s, ended) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/end"),
        &chair,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{ended}");
    assert_eq!(
        next_of(&mut ws_c, "room-ended").await["room"],
        room.as_str()
    );
    assert_eq!(
        connect(&server, tc["signalling_url"].as_str().unwrap_or(""))
            .await
            .err(),
        Some(410)
    );
    let (s, _) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/token"),
        &b,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 410);
    let (_, log) = send(
        &server,
        "GET",
        &format!("/api/v1/video/rooms/{room}/participants"),
        &chair,
        None,
        &[],
    )
    .await;
    assert!(
        log["participants"]
            .as_array()
            .is_some_and(|ps| ps.iter().all(|p| p["present"] == false)),
        "{log}"
    );
}

/// A token signed by the runtime's own key with these tweaks.
fn crafted(server: &TestServer, room: &str, participant: &str, sub: &str, exp_in: i64) -> String {
    let now = now_secs();
    server
        .runtime
        .video
        .signer()
        .sign(&JoinClaims {
            iss: server.base.clone(),
            sub: sub.into(),
            nbf: now - 10,
            exp: now + exp_in,
            iat: now - 10,
            jti: "crafted".into(),
            name: "Ai đó".into(),
            video: VideoClaims {
                room: room.into(),
                room_join: true,
                can_publish: true,
                can_subscribe: true,
                can_publish_data: true,
            },
            vth: VthClaims {
                participant_id: participant.into(),
                role: ParticipantRole::Participant,
                hospital: None,
            },
        })
        .expect("signed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninvited_expired_forged_wrong_room_and_removed_tokens_are_refused() {
    let server = server().await;
    let (_, chair) = person(&server, "chair", Role::Practitioner, "bv-a").await;
    let (b_id, b) = person(&server, "bs-b", Role::Practitioner, "bv-b").await;
    let (stranger_id, stranger) = person(&server, "la", Role::Practitioner, "bv-b").await;
    let room1 = room(&server, &chair).await;
    let room2 = room(&server, &chair).await;
    let pb = invite(&server, &chair, &room1, &b_id, "participant").await;
    let ws = |room: &str, token: &str| format!("/video/rooms/{room}/ws?token={token}");

    // Not invited: no token.
    let (s, body) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room1}/token"),
        &stranger,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 403, "{body}");
    // A token naming an invitation of someone else.
    let t = crafted(&server, &room1, &pb, &stranger_id, 600);
    assert_eq!(connect(&server, &ws(&room1, &t)).await.err(), Some(403));
    // A participant id that does not exist.
    let t = crafted(&server, &room1, "no-such-participant", &b_id, 600);
    assert_eq!(connect(&server, &ws(&room1, &t)).await.err(), Some(403));
    // Expired.
    let t = crafted(&server, &room1, &pb, &b_id, -60);
    let (s, body) = send(&server, "GET", &ws(&room1, &t), "unused", None, &[]).await;
    assert_eq!(s, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("expired"),
        "{body}"
    );
    assert_eq!(connect(&server, &ws(&room1, &t)).await.err(), Some(401));
    // Forged: the payload changed after signing, or signed by another key.
    let good = join_token(&server, &b, &room1, json!({})).await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut claims = claims_of(&good);
    claims["vth"]["role"] = json!("chair");
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let forged = parts.join(".");
    let (s, body) = send(&server, "GET", &ws(&room1, &forged), "unused", None, &[]).await;
    assert_eq!(s, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("signature"),
        "{body}"
    );
    let other_key = {
        let pair = aws_lc_rs::signature::Ed25519KeyPair::generate().expect("key");
        let der = pair.to_pkcs8().expect("pkcs8");
        jsonwebtoken::EncodingKey::from_ed_der(der.as_ref())
    };
    let foreign = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims_of(&good),
        &other_key,
    )
    .expect("signed");
    assert_eq!(
        connect(&server, &ws(&room1, &foreign)).await.err(),
        Some(401)
    );
    assert_eq!(
        connect(&server, &ws(&room1, "garbage")).await.err(),
        Some(401)
    );
    assert_eq!(
        connect(&server, &format!("/video/rooms/{room1}/ws"))
            .await
            .err(),
        Some(401)
    );
    // Wrong room.
    assert_eq!(connect(&server, &ws(&room2, &good)).await.err(), Some(403));
    // The good token works, until the chair removes B.
    let mut sock = connect(&server, &ws(&room1, &good)).await.expect("joins");
    assert_eq!(next(&mut sock).await["type"], "waiting");
    let (s, _) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room1}/participants/{pb}/remove"),
        &chair,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let m = next(&mut sock).await;
    assert_eq!(
        (m["code"].as_str(), m["fatal"].as_bool()),
        (Some("removed"), Some(true)),
        "{m}"
    );
    assert_eq!(connect(&server, &ws(&room1, &good)).await.err(), Some(403));
    let (s, _) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room1}/token"),
        &b,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 403);
    // Unknown room.
    assert_eq!(
        connect(
            &server,
            &ws(
                "no-such-room",
                &crafted(&server, "no-such-room", &pb, &b_id, 60)
            )
        )
        .await
        .err(),
        Some(404)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_do_not_see_each_other_and_bad_messages_get_errors() {
    let server = server().await;
    let (_, chair1) = person(&server, "chair1", Role::Practitioner, "bv-a").await;
    let (_, chair2) = person(&server, "chair2", Role::Practitioner, "bv-a").await;
    let (b_id, b) = person(&server, "bs-b", Role::Practitioner, "bv-b").await;
    let room1 = room(&server, &chair1).await;
    let room2 = room(&server, &chair2).await;
    let pb = invite(&server, &chair1, &room1, &b_id, "presenter").await;

    let mut c2 = open(
        &server,
        &join_token(&server, &chair2, &room2, json!({})).await,
    )
    .await;
    assert_eq!(next(&mut c2).await["type"], "admitted");
    participants_until(&mut c2, 1).await;

    let mut c1 = open(
        &server,
        &join_token(&server, &chair1, &room1, json!({})).await,
    )
    .await;
    assert_eq!(next(&mut c1).await["type"], "admitted");
    let mut sb = open(&server, &join_token(&server, &b, &room1, json!({})).await).await;
    assert_eq!(next(&mut sb).await["type"], "waiting");
    // The chair admits over the socket; B is in.
    say(
        &mut c1,
        &json!({ "type": "admit", "participant_id": pb }).to_string(),
    )
    .await;
    assert_eq!(next_of(&mut sb, "admitted").await["role"], "presenter");
    let list = participants_until(&mut c1, 2).await;
    assert!(list.to_string().contains(&pb), "{list}");

    // Malformed and out-of-place messages: an error each, the session goes on.
    for bad in [
        "not json",
        "[1,2]",
        r#"{"type":"teleport"}"#,
        r#"{"type":"admit"}"#,
        r#"{"kind":"leave"}"#,
    ] {
        say(&mut sb, bad).await;
        let e = next_of(&mut sb, "error").await;
        assert_eq!(
            (e["code"].as_str(), e["fatal"].as_bool()),
            (Some("bad-message"), Some(false)),
            "{bad}: {e}"
        );
    }
    sb.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .expect("sent");
    assert_eq!(next_of(&mut sb, "error").await["code"], "bad-message");
    say(
        &mut sb,
        &json!({ "type": "admit", "participant_id": pb }).to_string(),
    )
    .await;
    assert_eq!(next_of(&mut sb, "error").await["code"], "forbidden");
    say(&mut c1, r#"{"type":"admit","participant_id":"nobody"}"#).await;
    assert_eq!(next_of(&mut c1, "error").await["code"], "bad-message");
    say(&mut sb, r#"{"type":"ping"}"#).await;

    // B leaves properly; room 1's chair sees it, room 2 saw none of it.
    say(&mut sb, r#"{"type":"leave"}"#).await;
    participants_until(&mut c1, 1).await;
    // Room 2's socket heard only of room 2.
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_millis(400), c2.next()).await
    {
        if let Message::Text(t) = msg {
            let m: Value = serde_json::from_str(t.as_str()).expect("JSON");
            assert_eq!(m["room"], room2.as_str(), "{m}");
            assert!(
                !t.as_str().contains(&pb) && !t.as_str().contains(&room1),
                "{m}"
            );
        }
    }
    let (_, log) = send(
        &server,
        "GET",
        &format!("/api/v1/video/rooms/{room1}/participants"),
        &chair1,
        None,
        &[],
    )
    .await;
    let reason = log["participants"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["participant_id"] == pb.as_str()))
        .map(|p| p["joins"][0]["left_reason"].clone());
    assert_eq!(reason, Some(json!("left")), "{log}");
    // Room 2's list never named room 1's people.
    let (s, _) = send(
        &server,
        "GET",
        &format!("/api/v1/video/rooms/{room2}/participants"),
        &b,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 403, "B is not part of room 2");
}

/// What the LiveKit stub received: (method, bearer token, body).
type Calls = Arc<Mutex<Vec<(String, String, Value)>>>;

async fn livekit_stub() -> (String, Calls) {
    use axum::extract::{Path, State};
    use axum::http::HeaderMap;
    let calls: Calls = Arc::default();
    let app = axum::Router::new()
        .route(
            "/twirp/livekit.RoomService/{method}",
            axum::routing::post(
                |State(calls): State<Calls>, Path(method): Path<String>, headers: HeaderMap, body: String| async move {
                    let bearer = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .unwrap_or("")
                        .to_owned();
                    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    calls.lock().expect("calls").push((method.clone(), bearer, body.clone()));
                    axum::Json(match method.as_str() {
                        "CreateRoom" => json!({ "name": body["name"], "sid": "RM_stub" }),
                        "ListParticipants" => json!({ "participants": [{ "identity": "someone", "state": "ACTIVE" }] }),
                        _ => json!({}),
                    })
                },
            ),
        )
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("ws://{addr}"), calls)
}

const LK_KEY: &str = "APIstubKey";
const LK_SECRET: &str = "a-livekit-api-secret-of-at-least-32-bytes";

fn livekit_claims(token: &str) -> Value {
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
    v.set_issuer(&[LK_KEY]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(LK_SECRET.as_bytes()),
        &v,
    )
    .expect("an HS256 token of the API secret")
    .claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_backend_tokens_and_room_service_calls() {
    let (url, calls) = livekit_stub().await;
    let data = TempDir::new().expect("temp dir");
    let options = RuntimeOptions {
        database_url: format!("sqlite://{}", data.path().join("lk.db").display()),
        identity: IdentityOptions {
            password_iterations: 1_000,
            ..IdentityOptions::default()
        },
        livekit: Some(LiveKitConfig {
            url: url.clone(),
            api_key: LK_KEY.into(),
            api_secret: LK_SECRET.into(),
        }),
        ..RuntimeOptions::default()
    };
    let server = TestServer::start_with(options, data).await;
    let (chair_id, chair) = person(&server, "chair", Role::Practitioner, "bv-a").await;
    let (o_id, observer) = person(&server, "hv-b", Role::Practitioner, "bv-b").await;
    let room = room(&server, &chair).await;
    let po = invite(&server, &chair, &room, &o_id, "observer").await;

    // CreateRoom, with a roomCreate grant.
    {
        let calls = calls.lock().expect("calls");
        let (method, bearer, body) = calls.first().expect("CreateRoom called");
        assert_eq!(method, "CreateRoom");
        assert_eq!(body["name"], room.as_str());
        assert_eq!(body["max_participants"], 5);
        let c = livekit_claims(bearer);
        assert_eq!(c["video"]["roomCreate"], true, "{c}");
    }

    // The chair's token, in LiveKit's format, claim by claim.
    let t = join_token(&server, &chair, &room, json!({ "ttl_seconds": 900 })).await;
    assert_eq!(t["backend"], "livekit");
    assert_eq!(t["livekit_url"], url.as_str());
    let c = livekit_claims(t["token"].as_str().expect("token"));
    assert_eq!(c["iss"], LK_KEY);
    assert_eq!(c["sub"], chair_id.as_str());
    assert_eq!(c["name"], "BS. chair");
    assert_eq!(
        c["exp"].as_i64().unwrap_or(0) - c["nbf"].as_i64().unwrap_or(0),
        900
    );
    assert_eq!(
        c["video"],
        json!({ "room": room, "roomJoin": true, "canPublish": true, "canSubscribe": true, "canPublishData": true })
    );
    let meta: Value =
        serde_json::from_str(c["metadata"].as_str().expect("metadata")).expect("JSON");
    assert_eq!(meta["vth"]["role"], "chair");
    let header = jsonwebtoken::decode_header(t["token"].as_str().unwrap_or("")).expect("header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256);

    // LiveKit has no waiting room of ours: a token only once admitted.
    let (s, body) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/token"),
        &observer,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 409, "{body}");
    let (s, _) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/participants/{po}/admit"),
        &chair,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let t = join_token(&server, &observer, &room, json!({ "can_publish": true })).await;
    let c = livekit_claims(t["token"].as_str().expect("token"));
    assert_eq!(
        c["video"]["canPublish"], false,
        "observers never publish: {c}"
    );
    assert_eq!(c["video"]["canPublishData"], false, "{c}");
    assert_eq!(c["video"]["canSubscribe"], true, "{c}");

    // ListParticipants, RemoveParticipant and DeleteRoom with roomAdmin.
    let lk = server.runtime.video.livekit().expect("livekit backend");
    assert_eq!(
        lk.list_participants(&room).await.expect("listed"),
        vec!["someone".to_owned()]
    );
    let (s, _) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/participants/{po}/remove"),
        &chair,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/end"),
        &chair,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let calls = calls.lock().expect("calls").clone();
    let methods: Vec<&str> = calls.iter().map(|(m, _, _)| m.as_str()).collect();
    assert_eq!(
        methods,
        [
            "CreateRoom",
            "ListParticipants",
            "RemoveParticipant",
            "DeleteRoom"
        ]
    );
    let (_, bearer, body) = &calls[1];
    assert_eq!(body, &json!({ "room": room }));
    let c = livekit_claims(bearer);
    assert_eq!(
        (
            c["video"]["roomAdmin"].as_bool(),
            c["video"]["room"].as_str()
        ),
        (Some(true), Some(room.as_str())),
        "{c}"
    );
    let (_, _, body) = &calls[2];
    assert_eq!(body, &json!({ "room": room, "identity": o_id }));
    let (_, _, body) = &calls[3];
    assert_eq!(body, &json!({ "room": room }));
}

/// The `video` capability through a real plugin (`tests/plugins/video-probe`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_video_capability_acts_for_its_hospital_and_its_own_rooms() {
    let dir =
        vtelehealth_tests::plugin_set(&vtelehealth_tests::test_plugin_dir(), &["video-probe"]);
    let server =
        TestServer::start(dir.path(), vtelehealth_runtime::config::Limits::default()).await;
    let (a_id, a) = person(&server, "bs-a", Role::Practitioner, "bv-a").await;
    let (b_id, b) = person(&server, "bs-b", Role::Practitioner, "bv-b").await;
    let (o_id, _) = person(&server, "hv-b", Role::Practitioner, "bv-b").await;
    let probe =
        |hospital: &str, path: &str| format!("/hospitals/{hospital}/plugins/video-probe{path}");

    let spec = json!({ "purpose": "Hội chẩn qua plugin", "requesting_hospital": "bv-b", "max_participants": 4 });
    let (s, r) = send(
        &server,
        "POST",
        &probe("bv-a", "/rooms"),
        &a,
        Some(spec.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["host_hospital"], "bv-a");
    let room = r["id"].as_str().expect("id").to_owned();
    // Another hospital's staff cannot make A host a room, nor can anyone unauthenticated.
    let (s, r) = send(
        &server,
        "POST",
        &probe("bv-a", "/rooms"),
        &b,
        Some(spec.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 403, "{r}");
    let resp = server
        .client
        .post(format!("{}{}", server.base, probe("bv-a", "/rooms")))
        .body(spec.to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 403);

    let mut ids = Vec::new();
    for (who, role) in [(&a_id, "chair"), (&b_id, "presenter"), (&o_id, "observer")] {
        let (s, p) = send(
            &server,
            "POST",
            &probe("bv-a", &format!("/rooms/{room}/invite")),
            &a,
            Some(json!({ "practitioner": who, "role": role })),
            &[],
        )
        .await;
        assert_eq!(s, 200, "{p}");
        assert_eq!(p["role"], role);
        ids.push(p["id"].as_str().expect("id").to_owned());
    }
    let (s, p) = send(
        &server,
        "POST",
        &probe("bv-a", &format!("/rooms/{room}/invite")),
        &a,
        Some(json!({ "practitioner": "no-such-doctor", "role": "observer" })),
        &[],
    )
    .await;
    assert_eq!(s, 404, "{p}");

    // Tokens for invited participants; observers never publish.
    let (s, t) = send(
        &server,
        "POST",
        &probe("bv-a", &format!("/rooms/{room}/token/{}", ids[2])),
        &a,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["can_publish"], false);
    assert_eq!(
        claims_of(t["token"].as_str().unwrap_or(""))["video"]["canPublish"],
        false
    );
    let (s, t) = send(
        &server,
        "POST",
        &probe("bv-a", &format!("/rooms/{room}/token/{}", ids[1])),
        &a,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    let c = claims_of(t["token"].as_str().unwrap_or(""));
    assert_eq!(
        (c["sub"].as_str(), c["vth"]["role"].as_str()),
        (Some(b_id.as_str()), Some("presenter")),
        "{c}"
    );
    let mut ws = open(&server, &t).await;
    assert_eq!(next(&mut ws).await["type"], "waiting");

    // The same plugin at hospital B knows nothing of A's room.
    let (s, r) = send(
        &server,
        "GET",
        &probe("bv-b", &format!("/rooms/{room}/participants")),
        &b,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404, "{r}");
    let (s, r) = send(
        &server,
        "POST",
        &probe("bv-b", &format!("/rooms/{room}/end")),
        &b,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404, "{r}");
    // A room the platform API made is not the plugin's either.
    let api_room = self::room(&server, &a).await;
    let (s, r) = send(
        &server,
        "GET",
        &probe("bv-a", &format!("/rooms/{api_room}/participants")),
        &a,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404, "{r}");

    let (s, list) = send(
        &server,
        "GET",
        &probe("bv-a", &format!("/rooms/{room}/participants")),
        &a,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{list}");
    let presenter = &list["participants"][1];
    assert_eq!(
        (
            presenter["present"].as_bool(),
            presenter["admitted"].as_bool()
        ),
        (Some(true), Some(false)),
        "{list}"
    );
    assert!(presenter["first_joined_at"].is_string(), "{list}");

    let (s, r) = send(
        &server,
        "POST",
        &probe("bv-a", &format!("/rooms/{room}/end")),
        &a,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], "ended");
    assert_eq!(next(&mut ws).await["type"], "room-ended");
    let (s, _) = send(
        &server,
        "POST",
        &probe("bv-a", &format!("/rooms/{room}/token/{}", ids[1])),
        &a,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 400, "an ended room issues no token");
}

/// A media relay stand-in: answers each offer, records joins and leaves.
struct EchoPlane {
    log: Arc<Mutex<Vec<String>>>,
}

struct EchoSession {
    who: String,
    out: tokio::sync::mpsc::UnboundedSender<Value>,
    log: Arc<Mutex<Vec<String>>>,
}

impl vtelehealth_runtime::video::media::MediaPlane for EchoPlane {
    fn join(
        &self,
        grant: &vtelehealth_runtime::video::JoinGrant,
        out: tokio::sync::mpsc::UnboundedSender<Value>,
    ) -> Box<dyn vtelehealth_runtime::video::media::MediaSession> {
        self.log.lock().expect("log").push(format!(
            "join {} publish={}",
            grant.participant_id, grant.can_publish
        ));
        Box::new(EchoSession {
            who: grant.participant_id.clone(),
            out,
            log: self.log.clone(),
        })
    }
}

impl vtelehealth_runtime::video::media::MediaSession for EchoSession {
    fn message(&mut self, message: Value) {
        if message["type"] == "offer" {
            let _ = self.out.send(json!({ "type": "answer", "sdp": format!("echo:{}", message["sdp"].as_str().unwrap_or("")) }));
        }
    }
    fn leave(self: Box<Self>) {
        self.log
            .lock()
            .expect("log")
            .push(format!("leave {}", self.who));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitted_participants_reach_the_media_plane_and_waiting_ones_do_not() {
    let server = server().await;
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    assert!(
        server
            .runtime
            .video
            .set_media_plane(Arc::new(EchoPlane { log: log.clone() }))
    );
    let (_, chair) = person(&server, "chair", Role::Practitioner, "bv-a").await;
    let (o_id, observer) = person(&server, "hv-b", Role::Practitioner, "bv-b").await;
    let room = room(&server, &chair).await;
    let po = invite(&server, &chair, &room, &o_id, "observer").await;

    let mut so = open(
        &server,
        &join_token(&server, &observer, &room, json!({})).await,
    )
    .await;
    assert_eq!(next(&mut so).await["type"], "waiting");
    say(&mut so, r#"{"type":"offer","sdp":"v=0 early"}"#).await;
    assert_eq!(next(&mut so).await["code"], "out-of-order");
    assert!(
        log.lock().expect("log").is_empty(),
        "nothing reaches media before admission"
    );

    let (s, _) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/participants/{po}/admit"),
        &chair,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(next_of(&mut so, "admitted").await["can_publish"], false);
    say(&mut so, r#"{"type":"offer","sdp":"v=0"}"#).await;
    assert_eq!(next_of(&mut so, "answer").await["sdp"], "echo:v=0");
    say(&mut so, r#"{"type":"leave"}"#).await;
    for _ in 0..50 {
        if log.lock().expect("log").len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        *log.lock().expect("log"),
        vec![format!("join {po} publish=false"), format!("leave {po}")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_serves_a_consultation_of_its_host_and_has_a_size() {
    let server = server().await;
    let (_, a) = person(&server, "bs-a", Role::Practitioner, "bv-a").await;
    let (_, b) = person(&server, "bs-b", Role::Practitioner, "bv-b").await;
    let (s, c) = send(
        &server,
        "POST",
        "/api/v1/consultations",
        &b,
        Some(json!({ "host_hospital": "bv-a", "patient": { "health_id": "0101111111" }, "reason": "Đau ngực" })),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{c}");
    let consultation = c["id"].as_str().expect("id").to_owned();
    // Hosted by A: B cannot open its room, A can, and the requester is filled in.
    let body = json!({ "purpose": "Hội chẩn tim mạch", "consultation_id": consultation, "max_participants": 2 });
    let (s, r) = send(
        &server,
        "POST",
        "/api/v1/video/rooms",
        &b,
        Some(body.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 403, "{r}");
    let (s, r) = send(&server, "POST", "/api/v1/video/rooms", &a, Some(body), &[]).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["requesting_hospital"], "bv-b");
    assert_eq!(r["consultation_id"], consultation.as_str());
    let room = r["id"].as_str().expect("id").to_owned();
    let (s, r) = send(
        &server,
        "POST",
        "/api/v1/video/rooms",
        &a,
        Some(json!({ "purpose": "x", "consultation_id": consultation, "requesting_hospital": "bv-c" })),
        &[],
    )
    .await;
    assert_eq!(s, 422, "{r}");
    for bad in [
        json!({ "purpose": "" }),
        json!({ "purpose": "x", "max_participants": 1 }),
        json!({ "purpose": "x", "requesting_hospital": "bv-a" }),
        json!({ "purpose": "x", "colour": "red" }),
    ] {
        let (s, r) = send(
            &server,
            "POST",
            "/api/v1/video/rooms",
            &a,
            Some(bad.clone()),
            &[],
        )
        .await;
        assert!(s == 422 || s == 400, "{bad}: {s} {r}");
    }
    // Two places: the chair and one more.
    let (c_id, _) = person(&server, "bs-c", Role::Practitioner, "bv-b").await;
    let (d_id, _) = person(&server, "bs-d", Role::Practitioner, "bv-b").await;
    invite(&server, &a, &room, &c_id, "participant").await;
    let (s, r) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/invitations"),
        &a,
        Some(json!({ "subject": d_id, "role": "observer" })),
        &[],
    )
    .await;
    assert_eq!(s, 409, "{r}");
    let (s, r) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/invitations"),
        &a,
        Some(json!({ "subject": c_id, "role": "observer" })),
        &[],
    )
    .await;
    assert_eq!(s, 409, "invited twice: {r}");
    let (s, _) = send(
        &server,
        "GET",
        "/api/v1/video/rooms/no-such-room/participants",
        &a,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404);
}

/// A change written to the database with no event at all (as if its
/// notification were lost) still reaches the sockets: they re-read the
/// room (the safety net under LISTEN/NOTIFY, and all there is on SQLite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_on_another_node_reach_the_sockets() {
    let server = server().await;
    server
        .runtime
        .video
        .set_recheck_interval(vtelehealth_runtime::video::rooms::RECHECK_WITHOUT_NOTIFY);
    let (_, chair) = person(&server, "chair", Role::Practitioner, "bv-a").await;
    let (b_id, b) = person(&server, "bs-b", Role::Practitioner, "bv-b").await;
    let room = room(&server, &chair).await;
    let pb = invite(&server, &chair, &room, &b_id, "participant").await;
    let mut sb = open(&server, &join_token(&server, &b, &room, json!({})).await).await;
    assert_eq!(next(&mut sb).await["type"], "waiting");
    let pool = &server.runtime.db.pool;
    // What another node's admit writes, without this node's event.
    sqlx::query(
        "UPDATE video_invitations SET admitted_at = $1, admitted_by = 'node-2' WHERE id = $2",
    )
    .bind(now_secs() * 1000)
    .bind(&pb)
    .execute(pool)
    .await
    .expect("admitted elsewhere");
    assert_eq!(next(&mut sb).await["type"], "admitted");
    assert_eq!(next(&mut sb).await["type"], "participants");
    sqlx::query("UPDATE video_rooms SET status = 'ended' WHERE id = $1")
        .bind(&room)
        .execute(pool)
        .await
        .expect("ended elsewhere");
    assert_eq!(next_of(&mut sb, "room-ended").await["room"], room.as_str());
}

/// With the embedded relay plugged in (as `runtime serve` does), an
/// admitted chair's media messages reach the real SFU through the token
/// route: a malformed offer is answered by the relay itself (`bad-sdp`),
/// and an answer with no offer pending is out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_route_reaches_the_embedded_relay() {
    let server = server().await;
    let relay =
        vtelehealth_runtime::video::sfu::MediaRelay::start("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("relay");
    assert!(server.runtime.video.set_media_plane(Arc::new(relay)));
    let (_, chair) = person(&server, "chair-r", Role::Practitioner, "bv-a").await;
    let room = room(&server, &chair).await;
    let mut sc = open(
        &server,
        &join_token(&server, &chair, &room, json!({})).await,
    )
    .await;
    assert_eq!(next_of(&mut sc, "admitted").await["type"], "admitted");
    say(&mut sc, r#"{"type":"offer","sdp":"v=0 not an sdp"}"#).await;
    let reply = relay_error(&mut sc).await;
    assert_eq!(reply["code"], "bad-sdp", "{reply}");
    // An answer with no re-offer pending: out of order, not fatal.
    say(&mut sc, r#"{"type":"answer","sdp":"v=0"}"#).await;
    let reply = relay_error(&mut sc).await;
    assert_eq!(
        (reply["code"].clone(), reply["fatal"].clone()),
        (json!("out-of-order"), json!(false)),
        "{reply}"
    );
}

/// The next `error`, skipping the room's and the relay's lists.
async fn relay_error(ws: &mut Socket) -> Value {
    loop {
        let m = next(ws).await;
        match m["type"].as_str() {
            Some("error") => return m,
            Some("participants" | "tracks") => {}
            _ => panic!("expected an error, got {m}"),
        }
    }
}

/// Two nodes of one deployment on a fresh PostgreSQL database, when the
/// test cluster is there.
pub(crate) async fn postgres_nodes() -> Option<(TestServer, TestServer)> {
    let url = vtelehealth_tests::postgres_database().await?;
    let node = |url: String| async move {
        let options = RuntimeOptions {
            database_url: url,
            identity: IdentityOptions {
                password_iterations: 1_000,
                ..IdentityOptions::default()
            },
            ..RuntimeOptions::default()
        };
        TestServer::start_with(options, TempDir::new().expect("temp dir")).await
    };
    let one = node(url.clone()).await;
    Some((one, node(url).await))
}

/// On PostgreSQL, another node's admission and end reach this node's
/// sockets by LISTEN/NOTIFY. This node's re-read safety net is set to an
/// hour, so within the test's bounded wait only a notification can bring
/// them (on SQLite, the test above covers the re-read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_another_nodes_changes_arrive_by_notify() {
    let Some((one, two)) = postgres_nodes().await else {
        return;
    };
    one.runtime
        .video
        .set_recheck_interval(Duration::from_secs(3600));
    let (chair_id, chair) = person(&one, "chair-n", Role::Practitioner, "bv-a").await;
    let (b_id, b) = person(&one, "bs-n", Role::Practitioner, "bv-b").await;
    let room = room(&one, &chair).await;
    let pb = invite(&one, &chair, &room, &b_id, "participant").await;
    let mut sb = open(&one, &join_token(&one, &b, &room, json!({})).await).await;
    assert_eq!(next(&mut sb).await["type"], "waiting");

    // The chair admits through node two.
    let at_two = two.runtime.video.room(&room).await.expect("room");
    two.runtime
        .video
        .admit(&at_two, &pb, &chair_id)
        .await
        .expect("admitted on node two");
    assert_eq!(next_of(&mut sb, "admitted").await["participant_id"], pb);
    two.runtime
        .video
        .end(&at_two, &chair_id)
        .await
        .expect("ended on node two");
    assert_eq!(next_of(&mut sb, "room-ended").await["room"], room);
}
