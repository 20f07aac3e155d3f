//! The sandbox, proven by hostile plugins: every misbehaviour ends in a
//! clear, typed error for that call only, and the host keeps serving.

use std::time::Duration;

use futures::future::join_all;
use serde_json::Value;
use vtelehealth_runtime::config::Limits;
use vtelehealth_tests::{TestServer, plugin_dir, plugin_set, test_plugin_dir};

/// Limits small enough to hit quickly, large enough for good calls.
fn test_limits() -> Limits {
    Limits {
        deadline: Duration::from_millis(1500),
        kv_quota_bytes: 2 << 20,
        ..Limits::default()
    }
}

async fn hostile_server() -> TestServer {
    let dir = plugin_set(&test_plugin_dir(), &["hostile", "hostile-nogrant"]);
    let server = TestServer::start(dir.path(), test_limits()).await;
    // The directory is only read at start.
    drop(dir);
    server
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn infinite_loop_hits_the_deadline() {
    let server = hostile_server().await;
    let (status, body) = server
        .get_json(&server.plugin_url("bv-a", "hostile", "/loop"))
        .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(error_code(&body), "deadline_exceeded");
    assert_eq!(body["error"]["limit"]["deadline_ms"], 1500);
}

#[tokio::test]
async fn time_inside_host_calls_counts_against_the_deadline() {
    let server = hostile_server().await;
    let (status, body) = server
        .get_json(&server.plugin_url("bv-a", "hostile", "/host-loop"))
        .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(error_code(&body), "deadline_exceeded");
}

#[tokio::test]
async fn allocating_past_the_memory_limit_is_reported_as_such() {
    let server = hostile_server().await;
    let (status, body) = server
        .get_json(&server.plugin_url("bv-a", "hostile", "/oom"))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(error_code(&body), "memory_limit_exceeded");
    assert_eq!(body["error"]["limit"]["memory_bytes"], 64 << 20);
}

#[tokio::test]
async fn stack_overflow_is_reported_as_such() {
    let server = hostile_server().await;
    let (status, body) = server
        .get_json(&server.plugin_url("bv-a", "hostile", "/recurse"))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(error_code(&body), "stack_overflow");
}

#[tokio::test]
async fn a_panic_is_a_trap_of_that_call_only() {
    let server = hostile_server().await;
    let (status, body) = server
        .get_json(&server.plugin_url("bv-a", "hostile", "/panic"))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(error_code(&body), "plugin_trapped");
    let (status, _) = server
        .get_json(&server.plugin_url("bv-a", "hostile", "/ok"))
        .await;
    assert_eq!(status, 200, "the next call gets a fresh instance");
}

#[tokio::test]
async fn an_oversized_response_is_refused() {
    let server = hostile_server().await;
    let (status, body) = server
        .get_json(&server.plugin_url("bv-a", "hostile", "/big-response"))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(error_code(&body), "response_too_large");
    assert_eq!(body["error"]["limit"]["response_bytes"], 8 << 20);
}

/// Headers are no way around the response limit: their count and sizes are
/// bounded and they count toward it, each breach a 502 naming the limit.
#[tokio::test]
async fn response_headers_are_bounded_and_count_toward_the_response_limit() {
    let server = hostile_server().await;
    let headers = |q: &str| server.plugin_url("bv-a", "hostile", &format!("/headers?{q}"));
    // Within the limits the headers pass through.
    let resp = server
        .client
        .get(headers("count=50&size=1000&body=10"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-h-49"].len(), 1000);
    for (query, code, limit) in [
        // A thousand small headers.
        (
            "count=1000&size=100",
            "too_many_response_headers",
            ("response_headers", 100),
        ),
        // One 48 KiB header.
        (
            "count=1&size=49152",
            "response_header_too_large",
            ("response_header_bytes", 8 << 10),
        ),
        // Headers within their limits, but with the body over the response limit.
        (
            "count=90&size=8000&body=8000000",
            "response_too_large",
            ("response_bytes", 8 << 20),
        ),
    ] {
        let (status, body) = server.get_json(&headers(query)).await;
        assert_eq!(status, 502, "{query}: {body}");
        assert_eq!(error_code(&body), code, "{query}: {body}");
        assert_eq!(body["error"]["limit"][limit.0], limit.1, "{query}: {body}");
    }
    // The host keeps serving.
    let (status, _) = server
        .get_json(&server.plugin_url("bv-a", "hostile", "/ok"))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn kv_flood_stops_at_the_quota_and_keeps_it() {
    let server = hostile_server().await;
    let (status, body) = server
        .get_json(&server.plugin_url("bv-a", "hostile", "/kv-flood"))
        .await;
    assert_eq!(status, 507, "{body}");
    assert!(body.to_string().contains("quota"), "{body}");
    let used = server
        .runtime
        .kv
        .scope("bv-a", "hostile", &server.runtime.limits)
        .used_bytes()
        .await
        .expect("usage");
    assert!(used <= 2 << 20, "usage {used} within the quota");
    assert!(
        used > (2 << 20) - (128 << 10),
        "usage {used} close to the quota: the flood really filled it"
    );
    // Another hospital's quota is untouched.
    let other = server
        .runtime
        .kv
        .scope("bv-b", "hostile", &server.runtime.limits);
    assert_eq!(other.used_bytes().await.expect("usage"), 0);
}

#[tokio::test]
async fn an_import_that_is_not_granted_keeps_the_plugin_from_loading() {
    let server = hostile_server().await;
    let (_, plugins) = server
        .get_json(&format!("{}/api/v1/plugins", server.base))
        .await;
    let nogrant = plugins["plugins"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["id"] == "hostile-nogrant"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(nogrant["status"], "failed", "{plugins}");
    assert!(
        nogrant["error"]
            .as_str()
            .unwrap_or("")
            .contains("not granted"),
        "{nogrant}"
    );

    let (status, body) = server
        .get_json(&server.plugin_url("bv-a", "hostile-nogrant", "/ok"))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("kv"),
        "names the interface: {body}"
    );
}

#[tokio::test]
async fn good_calls_all_succeed_while_hostile_ones_run() {
    let dir = plugin_set(&test_plugin_dir(), &["hostile"]);
    let refs = plugin_set(&plugin_dir(), &["hello", "visit-counter"]);
    for entry in std::fs::read_dir(refs.path()).expect("read") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    // A longer deadline than the other tests: the good calls must succeed
    // even when the whole suite loads this 2-core machine; the hostile ones
    // still end at their deadline.
    let limits = Limits {
        deadline: Duration::from_secs(5),
        ..test_limits()
    };
    let server = TestServer::start(dir.path(), limits).await;

    let hostile = [
        "/loop",
        "/oom",
        "/recurse",
        "/panic",
        "/big-response",
        "/host-loop",
        "/loop",
        "/oom",
    ]
    .into_iter()
    .map(|p| {
        let url = server.plugin_url("bv-b", "hostile", p);
        let client = server.client.clone();
        tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) })
    })
    .collect::<Vec<_>>();
    let good = (0..100).map(|i| {
        let (plugin, path, post) = if i % 2 == 0 {
            ("hello", "/", false)
        } else {
            ("visit-counter", "/visits", true)
        };
        let url = server.plugin_url("bv-a", plugin, path);
        let client = server.client.clone();
        tokio::spawn(async move {
            let req = if post {
                client.post(url)
            } else {
                client.get(url)
            };
            req.send().await.map(|r| r.status().as_u16())
        })
    });
    let good: Vec<_> = join_all(good).await;
    let ok = good.iter().filter(|r| matches!(r, Ok(Ok(200)))).count();
    assert_eq!(ok, 100, "every good call succeeds: {good:?}");
    for h in join_all(hostile).await {
        let status = h.expect("task").expect("hostile call answered");
        assert!(status >= 500, "hostile call failed cleanly with {status}");
    }
    let (_, body) = server
        .get_json(&server.plugin_url("bv-a", "visit-counter", "/visits"))
        .await;
    assert_eq!(body["visits"], 50, "every good write landed: {body}");
    let (status, _) = server.get_json(&format!("{}/healthz", server.base)).await;
    assert_eq!(status, 200);
}
