//! Bad input gets a clear error and writes nothing.

use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::identity::{NewUser, Role};
use vtelehealth_tests::{TestServer, component, plugin_dir, plugin_set, test_plugin_dir};

#[tokio::test]
async fn a_malformed_component_fails_to_load_and_others_still_serve() {
    let dir = plugin_set(&plugin_dir(), &["hello"]);
    let (_, manifest) = component(&plugin_dir(), "hello");
    let text = std::fs::read_to_string(manifest).expect("manifest");
    std::fs::write(dir.path().join("broken.wasm"), b"\0asm garbage").expect("write");
    std::fs::write(
        dir.path().join("broken.toml"),
        text.replace("id = \"hello\"", "id = \"broken\""),
    )
    .expect("write");
    // A component with no manifest.
    std::fs::write(dir.path().join("orphan.wasm"), b"\0asm").expect("write");
    let server = TestServer::start(dir.path(), Limits::default()).await;

    let (status, body) = server
        .get_json(&server.plugin_url("bv-a", "broken", "/"))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not a valid wasm component"),
        "{body}"
    );
    let (status, body) = server
        .get_json(&server.plugin_url("bv-a", "orphan", "/"))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("orphan.toml"),
        "{body}"
    );
    let (status, _) = server
        .get_json(&server.plugin_url("bv-a", "hello", "/"))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn unknown_plugin_hospital_and_route_are_404_with_a_reason() {
    let server = TestServer::start(&plugin_dir(), Limits::default()).await;
    // Anonymous callers learn nothing about a hospital's modules.
    let (status, _) = server
        .get_json(&server.plugin_url("bv-a", "no-such-plugin", "/"))
        .await;
    assert_eq!(status, 401);
    let doctor = server
        .runtime
        .identity
        .create_user({
            let mut u = NewUser::new("bs.a", "BS A", Role::Practitioner, "password-1");
            u.hospital_id = Some("bv-a".into());
            u
        })
        .await
        .expect("user");
    let token = server.runtime.identity.token_for(&doctor).expect("token");
    let resp = server
        .client
        .get(server.plugin_url("bv-a", "no-such-plugin", "/"))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(status, 404);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("is not activated at hospital"),
        "{body}"
    );
    let (status, body) = server
        .get_json(&server.plugin_url("no-such-hospital", "hello", "/"))
        .await;
    assert_eq!(status, 404);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("unknown hospital"),
        "{body}"
    );
    let (status, body) = server.get_json(&format!("{}/nowhere", server.base)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_before_the_plugin_runs() {
    let limits = Limits {
        max_request_bytes: 1024,
        ..Limits::default()
    };
    let server = TestServer::start(&plugin_dir(), limits).await;
    let url = server.plugin_url("bv-a", "visit-counter", "/visits");
    let resp = server
        .client
        .post(&url)
        .body(vec![b'x'; 4096])
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["limit"]["request_bytes"], 1024);
    // Chunked, with no Content-Length: still refused.
    let stream = futures::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 512])));
    let resp = server
        .client
        .post(&url)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 413);
    // Nothing was written. (A fresh client: the server closes a connection
    // whose oversized body it did not read.)
    let body: serde_json::Value = reqwest::get(&url)
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(body["visits"], 0, "{body}");
}

#[tokio::test]
async fn a_non_utf8_path_is_a_bad_request() {
    let server = TestServer::start(&plugin_dir(), Limits::default()).await;
    let (status, body) = server
        .get_json(&server.plugin_url("bv-a", "hello", "/%FF%FE"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("UTF-8"),
        "{body}"
    );
}

#[tokio::test]
async fn echo_round_trips_bytes_exactly() {
    let dir = plugin_set(&test_plugin_dir(), &["hostile"]);
    let server = TestServer::start(dir.path(), Limits::default()).await;
    let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let resp = server
        .client
        .post(server.plugin_url("bv-a", "hostile", "/echo"))
        .body(payload.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.expect("body").to_vec(), payload);
}
