//! The plugin lifecycle end to end, through HTTP with real tokens: a vendor
//! signs and publishes, a reviewer narrows and approves, hospital A
//! activates with config and a secret, its practitioner calls the plugin,
//! hospital B cannot interfere, bad bundles are refused, and a revocation
//! stops the plugin on every node.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::governance::bundle::Bundle;
use vtelehealth_runtime::governance::signing::SigningKey;
use vtelehealth_runtime::identity::{IdentityOptions, NewUser, Role};
use vtelehealth_runtime::{Runtime, RuntimeOptions, api};
use vtelehealth_tests::{TestServer, component, plugin_dir};

struct Actors {
    vendor: String,
    reviewer: String,
    admin_a: String,
    admin_b: String,
    doctor_a: String,
    doctor_b: String,
}

async fn user(
    server: &TestServer,
    username: &str,
    role: Role,
    hospital: Option<&str>,
    vendor: Option<&str>,
) -> String {
    let mut u = NewUser::new(username, username, role, "password-1");
    u.hospital_id = hospital.map(Into::into);
    u.vendor_id = vendor.map(Into::into);
    let user = server.runtime.identity.create_user(u).await.expect("user");
    server.runtime.identity.token_for(&user).expect("token")
}

async fn actors(server: &TestServer) -> Actors {
    server
        .runtime
        .identity
        .create_vendor("acme", "ACME Health")
        .await
        .expect("vendor");
    Actors {
        vendor: user(server, "dev.acme", Role::VendorUser, None, Some("acme")).await,
        reviewer: user(server, "reviewer", Role::Reviewer, None, None).await,
        admin_a: user(server, "admin.a", Role::HospitalAdmin, Some("bv-a"), None).await,
        admin_b: user(server, "admin.b", Role::HospitalAdmin, Some("bv-b"), None).await,
        doctor_a: user(server, "doctor.a", Role::Practitioner, Some("bv-a"), None).await,
        doctor_b: user(server, "doctor.b", Role::Practitioner, Some("bv-b"), None).await,
    }
}

/// visit-counter repackaged as ACME's.
fn acme_bundle() -> Bundle {
    let (wasm, toml) = component(&plugin_dir(), "visit-counter");
    let manifest = std::fs::read_to_string(toml)
        .expect("manifest")
        .replace("vendor = \"vtelehealth\"", "vendor = \"acme\"");
    Bundle::new(manifest, std::fs::read(wasm).expect("component"))
}

async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    vtelehealth_tests::common::send(server, method, path, token, body, &[]).await
}

async fn publish(server: &TestServer, token: &str, bundle: &Bundle) -> (u16, Value) {
    let resp = server
        .client
        .post(format!("{}/api/v1/plugin-versions", server.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(bundle.to_json())
        .send()
        .await
        .expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn failed_checks(body: &Value) -> Vec<String> {
    body["checks"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| c["passed"] == false && c["skipped"] != true)
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_plugin_goes_from_vendor_to_practitioner_and_is_revoked() {
    let no_dev_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_dev_plugins.path(), Limits::default()).await;
    let t = actors(&server).await;

    // The vendor registers its key and publishes a signed bundle.
    let key = SigningKey::generate().expect("key");
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
    let (status, body) = send(
        &server,
        "POST",
        "/api/v1/vendor/keys",
        &t.vendor,
        Some(json!({ "public_key": public })),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // Unsigned and tampered bundles are refused, and nothing is stored.
    let (status, body) = publish(&server, &t.vendor, &acme_bundle()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(failed_checks(&body), ["signature"], "{body}");
    let mut tampered = acme_bundle();
    key.sign(&mut tampered);
    let last = tampered.component.len() - 1;
    tampered.component[last] ^= 0xff;
    let (status, body) = publish(&server, &t.vendor, &tampered).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        failed_checks(&body).contains(&"signature".to_owned()),
        "{body}"
    );
    let (_, listed) = send(&server, "GET", "/api/v1/plugin-versions", &t.reviewer, None).await;
    assert_eq!(
        listed["versions"].as_array().map(Vec::len),
        Some(0),
        "refused bundles are not stored: {listed}"
    );

    let mut bundle = acme_bundle();
    key.sign(&mut bundle);
    let (status, body) = publish(&server, &t.vendor, &bundle).await;
    assert_eq!(status, 201, "{body}");
    let version_id = body["id"].as_str().expect("version id").to_owned();
    // The same version twice is a conflict.
    let (status, _) = publish(&server, &t.vendor, &bundle).await;
    assert_eq!(status, 409);

    // Not approved yet: hospitals cannot activate it.
    let activation_path = "/api/v1/hospitals/bv-a/activations/visit-counter";
    let (status, body) = send(
        &server,
        "PUT",
        activation_path,
        &t.admin_a,
        Some(json!({ "version_id": version_id })),
    )
    .await;
    assert_eq!(status, 409, "{body}");

    // The reviewer sees capabilities in plain words and narrows the grant:
    // no clock, so recording a visit (which reads the clock) is refused.
    let (status, body) = send(
        &server,
        "GET",
        &format!("/api/v1/plugin-versions/{version_id}"),
        &t.reviewer,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let meanings: Vec<_> = body["requested"]
        .as_array()
        .expect("requested")
        .iter()
        .map(|r| r["meaning"].to_string())
        .collect();
    assert!(
        meanings.iter().any(|m| m.contains("store its own data")),
        "{body}"
    );
    let (status, body) = send(
        &server,
        "POST",
        &format!("/api/v1/plugin-versions/{version_id}/approve"),
        &t.vendor,
        Some(json!({ "granted": ["kv"] })),
    )
    .await;
    assert_eq!(status, 403, "a vendor cannot approve: {body}");
    let (status, body) = send(
        &server,
        "POST",
        &format!("/api/v1/plugin-versions/{version_id}/approve"),
        &t.reviewer,
        Some(json!({ "granted": ["kv", "log", "identity", "records"] })),
    )
    .await;
    assert_eq!(status, 422, "cannot grant what was not requested: {body}");
    let (status, decision) = send(
        &server,
        "POST",
        &format!("/api/v1/plugin-versions/{version_id}/approve"),
        &t.reviewer,
        Some(json!({ "granted": ["kv", "log", "identity"], "note": "no clock needed" })),
    )
    .await;
    assert_eq!(status, 200, "{decision}");
    // The decision is signed by the platform key published at /platform/keys.
    let (_, keys) = send(&server, "GET", "/api/v1/platform/keys", &t.reviewer, None).await;
    assert_eq!(decision["platform_key_id"], keys["keys"][0]["key_id"]);
    assert!(server.runtime.governance.signer().key_id == decision["platform_key_id"]);

    // Hospital B's admin cannot activate for A; the attempt is audited.
    let (status, body) = send(
        &server,
        "PUT",
        activation_path,
        &t.admin_b,
        Some(json!({ "version_id": version_id })),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // Invalid configuration is refused with the schema's reason.
    let (status, body) = send(
        &server,
        "PUT",
        activation_path,
        &t.admin_a,
        Some(json!({ "version_id": version_id, "config": { "history_limit": 1000 } })),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("history_limit"),
        "{body}"
    );
    // Valid configuration and a secret: activated; the secret never comes back.
    let (status, body) = send(&server, "PUT", activation_path, &t.admin_a,
        Some(json!({ "version_id": version_id, "config": { "history_limit": 5 }, "secrets": { "his_password": "s3cr3t-HIS" } }))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["config"]["history_limit"], 5);
    assert_eq!(body["has_secrets"], true);
    assert!(!body.to_string().contains("s3cr3t-HIS"));
    let (_, listed) = send(
        &server,
        "GET",
        "/api/v1/hospitals/bv-a/activations",
        &t.admin_a,
        None,
    )
    .await;
    assert!(!listed.to_string().contains("s3cr3t-HIS"), "{listed}");
    let sealed = server
        .runtime
        .governance
        .registry
        .sealed_secrets("bv-a", "visit-counter")
        .await
        .expect("db")
        .expect("sealed");
    assert!(
        !String::from_utf8_lossy(&sealed).contains("s3cr3t-HIS"),
        "secrets are encrypted at rest"
    );

    // A practitioner of A uses it; B's practitioner and anonymous callers cannot.
    let visits = server.plugin_url("bv-a", "visit-counter", "/visits");
    let resp = server
        .client
        .get(&visits)
        .bearer_auth(&t.doctor_a)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    let resp = server
        .client
        .get(&visits)
        .bearer_auth(&t.doctor_b)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 403);
    let resp = server.client.get(&visits).send().await.expect("sent");
    assert_eq!(resp.status(), 401);
    // Outside the grant: a permission error, not a crash.
    let resp = server
        .client
        .post(&visits)
        .bearer_auth(&t.doctor_a)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "capability_denied", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("clock"),
        "{body}"
    );
    // Not activated at B.
    let resp = server
        .client
        .get(server.plugin_url("bv-b", "visit-counter", "/visits"))
        .bearer_auth(&t.doctor_b)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 404);

    // An upgrade to a newer approved version keeps the stored secret.
    let mut v2 = acme_bundle();
    v2.manifest = v2
        .manifest
        .replace("version = \"0.1.0\"", "version = \"0.2.0\"");
    key.sign(&mut v2);
    let (status, body) = publish(&server, &t.vendor, &v2).await;
    assert_eq!(status, 201, "{body}");
    let v2_id = body["id"].as_str().expect("id").to_owned();
    let (status, _) = send(
        &server,
        "POST",
        &format!("/api/v1/plugin-versions/{v2_id}/approve"),
        &t.reviewer,
        Some(json!({ "granted": ["kv", "log", "identity", "clock"] })),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = send(
        &server,
        "PUT",
        activation_path,
        &t.admin_a,
        Some(json!({ "version_id": v2_id })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["version"].as_str(), body["has_secrets"].as_bool()),
        (Some("0.2.0"), Some(true)),
        "{body}"
    );
    let resp = server
        .client
        .post(&visits)
        .bearer_auth(&t.doctor_a)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200, "0.2.0 was granted the clock");
    // Back to 0.1.0 for the revocation below.
    let (status, _) = send(
        &server,
        "PUT",
        activation_path,
        &t.admin_a,
        Some(json!({ "version_id": version_id })),
    )
    .await;
    assert_eq!(status, 200);

    // Revocation stops it at once.
    let (status, body) = send(
        &server,
        "POST",
        &format!("/api/v1/plugin-versions/{version_id}/revoke"),
        &t.reviewer,
        Some(json!({ "reason": "" })),
    )
    .await;
    assert_eq!(status, 422, "a revocation needs a reason: {body}");
    let (status, _) = send(
        &server,
        "POST",
        &format!("/api/v1/plugin-versions/{version_id}/revoke"),
        &t.reviewer,
        Some(json!({ "reason": "security flaw reported" })),
    )
    .await;
    assert_eq!(status, 200);
    let resp = server
        .client
        .get(&visits)
        .bearer_auth(&t.doctor_a)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "plugin_suspended", "{body}");

    // The audit trail holds every step, verifies, and exports as FHIR.
    let (status, audit) = send(&server, "GET", "/api/v1/audit", &t.reviewer, None).await;
    assert_eq!(status, 200);
    let actions: Vec<_> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for expected in [
        "vendor.key_registered",
        "plugin.submission_refused",
        "plugin.submitted",
        "plugin.approved",
        "access.denied",
        "activation.created",
        "plugin.revoked",
    ] {
        assert!(
            actions.contains(&expected),
            "audit lacks {expected}: {actions:?}"
        );
    }
    let (_, report) = send(&server, "GET", "/api/v1/audit/verify", &t.reviewer, None).await;
    assert_eq!(report["ok"], true, "{report}");
    let (_, fhir) = send(
        &server,
        "GET",
        "/api/v1/audit?format=fhir&action=plugin.",
        &t.reviewer,
        None,
    )
    .await;
    assert_eq!(fhir["resourceType"], "Bundle");
    assert_eq!(fhir["entry"][0]["resource"]["resourceType"], "AuditEvent");
    let (status, _) = send(&server, "GET", "/api/v1/audit", &t.doctor_a, None).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_revocation_reaches_another_node_sharing_the_database() {
    let no_dev_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_dev_plugins.path(), Limits::default()).await;
    let t = actors(&server).await;
    let key = SigningKey::generate().expect("key");
    server
        .runtime
        .governance
        .registry
        .add_vendor_key("test", "acme", &key.key_id(), &key.public_key())
        .await
        .expect("key");
    let mut bundle = acme_bundle();
    key.sign(&mut bundle);
    let (_, body) = publish(&server, &t.vendor, &bundle).await;
    let version_id = body["id"].as_str().expect("id").to_owned();
    send(
        &server,
        "POST",
        &format!("/api/v1/plugin-versions/{version_id}/approve"),
        &t.reviewer,
        Some(json!({})),
    )
    .await;
    let (status, body) = send(
        &server,
        "POST",
        &format!("/api/v1/plugin-versions/{version_id}/rollout"),
        &t.reviewer,
        Some(json!({ "tier": "central", "mandatory": true })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["activated"].as_array().map(Vec::len),
        Some(1),
        "only the central hospital: {body}"
    );
    // Mandatory: the hospital cannot remove it.
    let (status, _) = send(
        &server,
        "DELETE",
        "/api/v1/hospitals/bv-a/activations/visit-counter",
        &t.admin_a,
        None,
    )
    .await;
    assert_eq!(status, 403);

    // A second node on the same database, with the same master key.
    let node2 = Runtime::start(RuntimeOptions {
        database_url: server.runtime.db.url.clone(),
        identity: IdentityOptions {
            issuer: Some(server.runtime.identity.issuer().to_owned()),
            password_iterations: 1000,
            ..IdentityOptions::default()
        },
        ..RuntimeOptions::default()
    })
    .await
    .expect("second node");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base2 = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(axum::serve(listener, api::app(node2)).into_future());
    let url2 = format!("{base2}/hospitals/bv-a/plugins/visit-counter/visits");
    let status = server
        .client
        .get(&url2)
        .bearer_auth(&t.doctor_a)
        .send()
        .await
        .expect("sent")
        .status();
    assert_eq!(status, 200, "node 2 serves the plugin");

    send(
        &server,
        "POST",
        &format!("/api/v1/plugin-versions/{version_id}/revoke"),
        &t.reviewer,
        Some(json!({ "reason": "recalled" })),
    )
    .await;
    // Node 2 polls the governance epoch every 200 ms; allow generous slack
    // for a loaded CI machine (the design target is one second).
    let mut stopped = false;
    for _ in 0..50 {
        let status = server
            .client
            .get(&url2)
            .bearer_auth(&t.doctor_a)
            .send()
            .await
            .expect("sent")
            .status();
        if status == 403 {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped, "node 2 stopped serving the revoked version");
}

/// `component` with a custom section of `size` bytes appended: still a
/// valid component, just bigger.
fn padded(mut component: Vec<u8>, size: usize) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"padding";
    let mut payload = Vec::with_capacity(size + 16);
    leb128(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.resize(payload.len() + size, 0x5a);
    component.push(0);
    leb128(payload.len(), &mut component);
    component.extend_from_slice(&payload);
    component
}

/// A bundle bigger than the framework's 2 MiB default body limit is
/// submitted through the API; one over the bundle format's own limit is
/// refused with 413 in the JSON error shape before its body is read.
#[tokio::test]
async fn bundles_over_2_mib_are_accepted_up_to_the_bundle_limit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use vtelehealth_runtime::governance::bundle::MAX_BUNDLE_BYTES;

    let no_dev_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_dev_plugins.path(), Limits::default()).await;
    let t = actors(&server).await;
    let key = SigningKey::generate().expect("key");
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
    let (status, body) = send(
        &server,
        "POST",
        "/api/v1/vendor/keys",
        &t.vendor,
        Some(json!({ "public_key": public })),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let mut bundle = acme_bundle();
    bundle.component = padded(bundle.component, 5 << 19);
    key.sign(&mut bundle);
    let size = bundle.to_json().len();
    assert!(size > 3 << 20, "the bundle is {size} bytes");
    let (status, body) = publish(&server, &t.vendor, &bundle).await;
    assert_eq!(status, 201, "a {size} byte bundle: {body}");

    // Over the limit: refused on its declared length, nothing read.
    let mut socket = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/plugin-versions HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.addr,
        t.vendor,
        MAX_BUNDLE_BYTES + 1
    );
    // The head only: the answer must not wait for the body.
    socket.write_all(head.as_bytes()).await.expect("head");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let body: Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert_eq!(body["error"]["limit"]["request_bytes"], MAX_BUNDLE_BYTES);
    assert!(body["error"]["message_vi"].is_string(), "{body}");

    let (_, listed) = send(&server, "GET", "/api/v1/plugin-versions", &t.reviewer, None).await;
    assert_eq!(
        listed["versions"].as_array().map(Vec::len),
        Some(1),
        "only the accepted bundle is stored: {listed}"
    );
}
