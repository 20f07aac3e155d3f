//! The reference plugins served through the real runtime.

use futures::future::join_all;
use serde_json::Value;
use vtelehealth_runtime::config::Limits;
use vtelehealth_tests::{TestServer, plugin_dir};

#[tokio::test]
async fn hello_greets_the_calling_hospital() {
    let server = TestServer::start(&plugin_dir(), Limits::default()).await;
    let (status, body) = server
        .get_json(&server.plugin_url("bv-a", "hello", "/"))
        .await;
    assert_eq!(status, 200, "{body}");
    let text = body.to_string();
    assert!(
        text.contains("Bệnh viện A"),
        "greeting names the hospital: {text}"
    );
    assert!(
        text.contains("Xin chào"),
        "greeting is in Vietnamese: {text}"
    );

    let (status, _) = server
        .get_json(&server.plugin_url("bv-a", "hello", "/no-such-page"))
        .await;
    assert_eq!(status, 404);
}

/// A plugin's response, opened directly on the platform's address, runs in
/// a CSP sandbox (an opaque origin): its script can never read the
/// consoles' session there. The plugin cannot remove the header.
#[tokio::test]
async fn direct_plugin_responses_are_sandboxed() {
    let server = TestServer::start(&plugin_dir(), Limits::default()).await;
    for url in [
        server.plugin_url("bv-a", "hello", "/"),
        server.plugin_url("bv-a", "hello", "/no-such-page"),
    ] {
        let resp = server.client.get(&url).send().await.expect("sent");
        let csp = resp
            .headers()
            .get_all("content-security-policy")
            .iter()
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>();
        assert_eq!(csp.len(), 1, "{url}: {csp:?}");
        assert!(
            csp[0].starts_with("sandbox allow-scripts allow-forms allow-popups; "),
            "{url}: {csp:?}"
        );
        // What the page sends stays on its own plugin's routes.
        let own = format!("http://{}/hospitals/bv-a/plugins/hello/", server.addr);
        assert!(
            csp[0].contains(&format!("connect-src {own} ")),
            "{url}: {csp:?}"
        );
    }
}

#[tokio::test]
async fn visit_counter_counts_concurrent_visits_per_hospital() {
    let server = TestServer::start(&plugin_dir(), Limits::default()).await;
    let url_a = server.plugin_url("bv-a", "visit-counter", "/visits");
    let posts = (0..40).map(|_| server.client.post(&url_a).send());
    for resp in join_all(posts).await {
        let resp = resp.expect("request sent");
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    }
    let (status, body) = server.get_json(&url_a).await;
    assert_eq!(status, 200);
    assert_eq!(
        count_of(&body),
        40,
        "no visit lost under concurrency: {body}"
    );

    // Hospital B has its own data.
    let url_b = server.plugin_url("bv-b", "visit-counter", "/visits");
    let (_, body) = server.get_json(&url_b).await;
    assert_eq!(
        count_of(&body),
        0,
        "hospital B sees none of A's visits: {body}"
    );
}

fn count_of(body: &Value) -> i64 {
    body.get("count")
        .and_then(Value::as_i64)
        .or_else(|| body.get("visits").and_then(Value::as_i64))
        .unwrap_or(-1)
}

#[tokio::test]
async fn plugin_list_health_and_metrics() {
    let server = TestServer::start(&plugin_dir(), Limits::default()).await;
    let (status, body) = server.get_json(&format!("{}/healthz", server.base)).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    let (_, body) = server
        .get_json(&format!("{}/api/v1/plugins", server.base))
        .await;
    let plugins = body["plugins"].as_array().expect("plugin list");
    let ids: Vec<_> = plugins.iter().filter_map(|p| p["id"].as_str()).collect();
    assert!(
        ids.contains(&"hello") && ids.contains(&"visit-counter"),
        "{body}"
    );
    assert!(plugins.iter().all(|p| p["status"] == "ready"), "{body}");

    server
        .get_json(&server.plugin_url("bv-a", "hello", "/"))
        .await;
    let metrics = server
        .client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains(
            r#"vtelehealth_plugin_calls_total{plugin="hello",hospital="bv-a",outcome="ok"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("vtelehealth_plugin_call_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[tokio::test]
async fn compiled_components_are_cached_by_digest() {
    let data = tempfile::TempDir::new().expect("temp dir");
    let cache = data.path().join("cache");
    let options = || vtelehealth_runtime::RuntimeOptions {
        database_url: format!("sqlite://{}", data.path().join("db.sqlite").display()),
        plugin_dir: Some(plugin_dir()),
        cache_dir: Some(cache.clone()),
        ..Default::default()
    };
    let first = vtelehealth_runtime::Runtime::start(options())
        .await
        .expect("first start");
    let artifacts: Vec<_> = std::fs::read_dir(&cache)
        .expect("cache dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert!(
        artifacts.len() >= 2,
        "one artifact per plugin: {artifacts:?}"
    );
    drop(first);

    // Corrupt one artifact: the runtime must notice, recompile and still serve.
    let victim = artifacts[0].path();
    std::fs::write(&victim, b"not a compiled component").expect("corrupt");
    let second = vtelehealth_runtime::Runtime::start(options())
        .await
        .expect("second start");
    assert!(
        second
            .plugins
            .statuses()
            .iter()
            .all(|p| p.status == "ready")
    );
    let repaired = std::fs::read(&victim).expect("artifact rewritten");
    assert_ne!(repaired, b"not a compiled component");
}
