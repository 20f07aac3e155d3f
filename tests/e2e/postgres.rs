//! The same behaviour on PostgreSQL as on SQLite: the kv store, the audit
//! trail, and the whole runtime (dev plugins, the governance lifecycle with a
//! second node sharing the database, identity). Each test gets a fresh
//! database from `postgres_database()`; without `VTH_TEST_POSTGRES_URL` they
//! are skipped (`cargo xtask test` starts a server and sets it).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::future::join_all;
use serde_json::{Value, json};
use sqlx::Connection as _;
use vtelehealth_runtime::capabilities::kv::{KvError, KvScope, KvStore};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::db::{Backend, Database};
use vtelehealth_runtime::governance::audit::{AuditEvent, AuditFilter, AuditLog, VerifyReport};
use vtelehealth_runtime::governance::bundle::Bundle;
use vtelehealth_runtime::governance::signing::SigningKey;
use vtelehealth_runtime::identity::{IdentityOptions, NewUser, Role};
use vtelehealth_runtime::{Runtime, RuntimeOptions, api};
use vtelehealth_tests::{TestServer, component, plugin_dir, postgres_database};

// ---------------------------------------------------------------- kv store

async fn kv_scope(quota: u64) -> Option<(Arc<KvStore>, KvScope)> {
    let url = postgres_database().await?;
    let db = Database::connect(&url).await.expect("database");
    assert_eq!(db.backend, Backend::Postgres);
    let store = Arc::new(KvStore::new(db));
    let limits = Limits {
        kv_quota_bytes: quota,
        kv_max_value_bytes: 1000,
        ..Limits::default()
    };
    let scope = store.scope("h1", "p1", &limits);
    Some((store, scope))
}

#[tokio::test]
async fn kv_usage_quota_and_compare_and_swap_on_postgres() {
    let Some((_, kv)) = kv_scope(10_000).await else {
        return;
    };
    // Usage follows sets, overwrites and deletes.
    kv.put("a", b"12345", None).await.unwrap();
    assert_eq!(kv.used_bytes().await.unwrap(), 6);
    kv.put("a", b"1", None).await.unwrap();
    assert_eq!(kv.used_bytes().await.unwrap(), 2);
    assert!(kv.delete("a").await.unwrap());
    assert!(!kv.delete("a").await.unwrap());
    assert_eq!(kv.used_bytes().await.unwrap(), 0);
    assert_eq!(kv.get("a").await.unwrap(), None);

    // Bad keys and values are refused before the database.
    assert!(matches!(
        kv.put("", b"x", None).await,
        Err(KvError::InvalidKey(0))
    ));
    assert!(matches!(
        kv.put("k", &[0; 1001], None).await,
        Err(KvError::ValueTooLarge { .. })
    ));

    // Compare-and-swap swaps only on a match.
    assert!(
        kv.put("c", b"1", Some(None)).await.unwrap(),
        "absent matches None"
    );
    assert!(
        !kv.put("c", b"2", Some(None)).await.unwrap(),
        "present does not match None"
    );
    assert!(!kv.put("c", b"2", Some(Some(b"0"))).await.unwrap());
    assert!(kv.put("c", b"2", Some(Some(b"1"))).await.unwrap());
    assert_eq!(kv.get("c").await.unwrap().as_deref(), Some(&b"2"[..]));

    // Binary values survive the round trip through BYTEA.
    let bytes: Vec<u8> = (0..=255).collect();
    kv.put("bin", &bytes[..255], None).await.unwrap();
    assert_eq!(kv.get("bin").await.unwrap(), Some(bytes[..255].to_vec()));
}

#[tokio::test]
async fn kv_quota_refuses_and_writes_nothing_on_postgres() {
    let Some((_, kv)) = kv_scope(20).await else {
        return;
    };
    kv.put("k1", &[0; 10], None).await.unwrap();
    let err = kv.put("k2", &[0; 10], None).await.unwrap_err();
    assert!(
        matches!(
            err,
            KvError::Quota {
                needed: 24,
                quota: 20
            }
        ),
        "{err}"
    );
    assert_eq!(kv.get("k2").await.unwrap(), None);
    assert_eq!(kv.used_bytes().await.unwrap(), 12);
    // Overwriting with a smaller value fits.
    kv.put("k1", &[1; 5], None).await.unwrap();
    assert_eq!(kv.used_bytes().await.unwrap(), 7);
}

#[tokio::test]
async fn kv_increments_on_postgres_lose_nothing() {
    let Some((_, kv)) = kv_scope(10_000).await else {
        return;
    };
    assert_eq!(kv.increment("n", 1).await.unwrap(), 1);
    assert_eq!(kv.increment("n", 41).await.unwrap(), 42);
    assert_eq!(kv.get("n").await.unwrap().as_deref(), Some(&b"42"[..]));
    kv.put("text", b"abc", None).await.unwrap();
    assert!(matches!(
        kv.increment("text", 1).await,
        Err(KvError::NotAnInteger(_))
    ));
    kv.put("big", i64::MAX.to_string().as_bytes(), None)
        .await
        .unwrap();
    assert!(matches!(
        kv.increment("big", 1).await,
        Err(KvError::Overflow(_))
    ));
    assert_eq!(
        kv.get("big").await.unwrap(),
        Some(i64::MAX.to_string().into_bytes())
    );

    // 50 concurrent increments of a key that does not exist yet: the first
    // ones race to create both the usage row and the entry.
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let kv = kv.clone();
            tokio::spawn(async move { kv.increment("c", 1).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(kv.get("c").await.unwrap().as_deref(), Some(&b"50"[..]));
    let expected_usage = ["n", "text", "big", "c"]
        .iter()
        .map(|k| k.len())
        .sum::<usize>()
        + 2
        + 3
        + i64::MAX.to_string().len()
        + 2;
    assert_eq!(kv.used_bytes().await.unwrap(), expected_usage as u64);
}

#[tokio::test]
async fn kv_list_keys_pages_in_byte_order_and_scopes_are_separate_on_postgres() {
    let Some((store, kv)) = kv_scope(100_000).await else {
        return;
    };
    for k in [
        "visit/3",
        "visit/1",
        "visit/é",
        "visit/Z",
        "visit/a",
        "visit/2",
        "other",
        "visiting",
        "hồ-sơ/2",
        "hồ-sơ/1",
    ] {
        kv.put(k, b"x", None).await.unwrap();
    }
    // Byte order (as SQLite compares): digits < upper case < lower case < é.
    assert_eq!(
        kv.list_keys("visit/", None, 2).await.unwrap(),
        ["visit/1", "visit/2"]
    );
    assert_eq!(
        kv.list_keys("visit/", Some("visit/2"), 10).await.unwrap(),
        ["visit/3", "visit/Z", "visit/a", "visit/é"]
    );
    assert_eq!(
        kv.list_keys("visit/", Some("visit/a"), 10).await.unwrap(),
        ["visit/é"]
    );
    // A non-ASCII prefix counts characters, as in SQLite.
    assert_eq!(
        kv.list_keys("hồ-sơ/", None, 10).await.unwrap(),
        ["hồ-sơ/1", "hồ-sơ/2"]
    );
    assert_eq!(kv.list_keys("", None, 100).await.unwrap().len(), 10);

    let other = store.scope("h2", "p1", &Limits::default());
    assert_eq!(
        other.list_keys("", None, 100).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(other.get("other").await.unwrap(), None);
    let other_plugin = store.scope("h1", "p2", &Limits::default());
    assert_eq!(other_plugin.get("other").await.unwrap(), None);
}

#[tokio::test]
async fn kv_keys_are_byte_ordered_whatever_the_cluster_locale() {
    let Some(url) = postgres_database().await else {
        return;
    };
    Database::connect(&url).await.expect("database");
    // The schema pins the collation, so a cluster initialised with a
    // language locale still pages keys in byte order.
    let mut conn = sqlx::postgres::PgConnection::connect(&url)
        .await
        .expect("connect");
    let collation: Option<String> = sqlx::query_scalar(
        "SELECT collation_name::text FROM information_schema.columns \
         WHERE table_name = 'kv_entries' AND column_name = 'key'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("column");
    assert_eq!(collation.as_deref(), Some("C"));
}

// ------------------------------------------------------------- audit trail

async fn audit_log() -> Option<(Database, AuditLog)> {
    let url = postgres_database().await?;
    let db = Database::connect(&url).await.expect("database");
    Some((db.clone(), AuditLog::new(db)))
}

fn event(n: u32) -> AuditEvent {
    AuditEvent {
        actor: "reviewer-1".into(),
        action: "plugin.approved".into(),
        target: format!("plugin-version:{n}"),
        hospital_id: None,
        details: json!({ "n": n, "note": "Bệnh viện" }),
    }
}

async fn exec(db: &Database, sql: &'static str) {
    sqlx::query(sql).execute(&db.pool).await.expect(sql);
}

#[tokio::test]
async fn audit_verify_detects_edits_deletions_and_truncation_on_postgres() {
    let Some((db, audit)) = audit_log().await else {
        return;
    };
    for n in 0..5 {
        audit.append(event(n)).await.unwrap();
    }
    assert_eq!(
        audit.verify().await.unwrap(),
        VerifyReport {
            entries: 5,
            ok: true,
            problem: None
        }
    );

    exec(
        &db,
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 3",
    )
    .await;
    let report = audit.verify().await.unwrap();
    assert!(!report.ok && report.problem.unwrap().contains("entry 3 was modified"));
    exec(
        &db,
        "UPDATE audit_events SET actor = 'reviewer-1' WHERE seq = 3",
    )
    .await;
    assert!(audit.verify().await.unwrap().ok);

    exec(&db, "DELETE FROM audit_events WHERE seq = 2").await;
    let report = audit.verify().await.unwrap();
    assert!(report.problem.unwrap().contains("entry 2 is missing"));

    let Some((db, audit)) = audit_log().await else {
        return;
    };
    // Concurrent appends from many tasks still form one chain.
    let appends: Vec<_> = (0..20)
        .map(|n| {
            let audit = audit.clone();
            tokio::spawn(async move { audit.append(event(n)).await })
        })
        .collect();
    for a in appends {
        a.await.unwrap().unwrap();
    }
    assert_eq!(audit.verify().await.unwrap().entries, 20);
    assert!(audit.verify().await.unwrap().ok);
    exec(&db, "DELETE FROM audit_events WHERE seq = 20").await;
    let report = audit.verify().await.unwrap();
    assert!(report.problem.unwrap().contains("entries were removed"));
}

#[tokio::test]
async fn audit_filters_and_fhir_export_on_postgres() {
    let Some((_, audit)) = audit_log().await else {
        return;
    };
    audit.append(event(1)).await.unwrap();
    audit
        .append(AuditEvent {
            actor: "admin-a".into(),
            action: "activation.created".into(),
            target: "plugin:hello".into(),
            hospital_id: Some("bv-a".into()),
            details: json!({}),
        })
        .await
        .unwrap();
    let only = audit
        .list(&AuditFilter {
            action_prefix: Some("activation.".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    let fhir = only[0].to_fhir();
    assert_eq!(fhir["resourceType"], "AuditEvent");
    assert_eq!(fhir["agent"][0]["who"]["identifier"]["value"], "admin-a");
    let by_hospital = audit
        .list(&AuditFilter {
            hospital_id: Some("bv-a".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_hospital.len(), 1);
    let by_actor = audit
        .list(&AuditFilter {
            actor: Some("reviewer-1".into()),
            limit: Some(10),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_actor.len(), 1);
    assert_eq!(by_actor[0].details["note"], "Bệnh viện");
    let all = audit.list(&AuditFilter::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [2, 1],
        "newest first"
    );
}

// ------------------------------------------------------ the whole runtime

/// A server on a fresh PostgreSQL database, with `plugin_dir` as its
/// development plugins.
async fn server_on_postgres(plugin_dir: &std::path::Path) -> Option<TestServer> {
    let url = postgres_database().await?;
    let data = tempfile::TempDir::new().expect("temp dir");
    let options = RuntimeOptions {
        database_url: url,
        plugin_dir: Some(plugin_dir.to_path_buf()),
        cache_dir: Some(data.path().join("cache")),
        identity: fast_identity(None),
        ..RuntimeOptions::default()
    };
    let server = TestServer::start_with(options, data).await;
    assert_eq!(server.runtime.db.backend, Backend::Postgres);
    Some(server)
}

fn fast_identity(issuer: Option<String>) -> IdentityOptions {
    IdentityOptions {
        issuer,
        password_iterations: 1000,
        ..IdentityOptions::default()
    }
}

#[tokio::test]
async fn dev_plugins_serve_and_count_concurrent_visits_on_postgres() {
    let Some(server) = server_on_postgres(&plugin_dir()).await else {
        return;
    };
    let (status, body) = server
        .get_json(&server.plugin_url("bv-a", "hello", "/"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("Bệnh viện A"), "{body}");

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
    let url_b = server.plugin_url("bv-b", "visit-counter", "/visits");
    let (_, body) = server.get_json(&url_b).await;
    assert_eq!(count_of(&body), 0, "hospital B sees none of A's: {body}");
}

fn count_of(body: &Value) -> i64 {
    body.get("count")
        .and_then(Value::as_i64)
        .or_else(|| body.get("visits").and_then(Value::as_i64))
        .unwrap_or(-1)
}

#[tokio::test]
async fn identity_tokens_validate_on_postgres() {
    let no_plugins = tempfile::TempDir::new().expect("dir");
    let Some(server) = server_on_postgres(no_plugins.path()).await else {
        return;
    };
    let identity = &server.runtime.identity;
    let mut new = NewUser::new("doctor.a", "Bác sĩ A", Role::Practitioner, "password-1");
    new.hospital_id = Some("bv-a".into());
    let user = identity.create_user(new).await.expect("user");
    let token = identity.token_for(&user).expect("token");
    let principal = identity.validate(&token).await.expect("valid token");
    assert_eq!(principal.subject, user.id);
    assert_eq!(principal.name, "Bác sĩ A");
    assert_eq!(principal.roles, [Role::Practitioner]);
    assert_eq!(principal.hospital_id.as_deref(), Some("bv-a"));
    assert_eq!(
        identity
            .user_by_username("doctor.a")
            .await
            .expect("db")
            .map(|u| u.id),
        Some(user.id.clone())
    );
    // Usernames stay unique.
    let again = NewUser::new("doctor.a", "Bác sĩ A", Role::Practitioner, "password-1");
    assert!(identity.create_user(again).await.is_err());
    // A tampered token is refused.
    let mut bad = token.clone();
    bad.pop();
    bad.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert!(identity.validate(&bad).await.is_err());
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

async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", server.base);
    let mut req = server
        .client
        .request(method.parse().expect("method"), url)
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn call(client: &reqwest::Client, method: &str, url: &str, token: &str) -> (u16, Value) {
    let resp = client
        .request(method.parse().expect("method"), url)
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn governance_lifecycle_on_postgres_with_a_second_node() {
    let no_plugins = tempfile::TempDir::new().expect("dir");
    let Some(server) = server_on_postgres(no_plugins.path()).await else {
        return;
    };
    server
        .runtime
        .identity
        .create_vendor("acme", "ACME Health")
        .await
        .expect("vendor");
    let vendor = user(&server, "dev.acme", Role::VendorUser, None, Some("acme")).await;
    let reviewer = user(&server, "reviewer", Role::Reviewer, None, None).await;
    let admin_a = user(&server, "admin.a", Role::HospitalAdmin, Some("bv-a"), None).await;
    let doctor_a = user(&server, "doctor.a", Role::Practitioner, Some("bv-a"), None).await;

    // Publish: the vendor registers its key and uploads a signed bundle.
    let key = SigningKey::generate().expect("key");
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
    let (status, body) = send(
        &server,
        "POST",
        "/api/v1/vendor/keys",
        &vendor,
        Some(json!({ "public_key": public })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (wasm, toml) = component(&plugin_dir(), "visit-counter");
    let manifest = std::fs::read_to_string(toml)
        .expect("manifest")
        .replace("vendor = \"vtelehealth\"", "vendor = \"acme\"");
    let mut bundle = Bundle::new(manifest, std::fs::read(wasm).expect("component"));
    key.sign(&mut bundle);
    let resp = server
        .client
        .post(format!("{}/api/v1/plugin-versions", server.base))
        .bearer_auth(&vendor)
        .header("content-type", "application/json")
        .body(bundle.to_json())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.expect("json");
    let version_id = body["id"].as_str().expect("version id").to_owned();

    // Approve, then activate at hospital A with configuration and a secret.
    let (status, body) = send(
        &server,
        "POST",
        &format!("/api/v1/plugin-versions/{version_id}/approve"),
        &reviewer,
        Some(json!({ "granted": ["kv", "log", "identity", "clock"] })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        &server,
        "PUT",
        "/api/v1/hospitals/bv-a/activations/visit-counter",
        &admin_a,
        Some(
            json!({ "version_id": version_id, "config": { "history_limit": 5 },
                     "secrets": { "his_password": "s3cr3t-HIS" } }),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["has_secrets"], true, "{body}");

    // Call it on this node, then on a second node sharing the database: the
    // token minted here validates there (signing keys live in PostgreSQL).
    let visits = server.plugin_url("bv-a", "visit-counter", "/visits");
    let (status, body) = call(&server.client, "POST", &visits, &doctor_a).await;
    assert_eq!(status, 200, "{body}");
    let node2 = Runtime::start(RuntimeOptions {
        database_url: server.runtime.db.url.clone(),
        identity: fast_identity(Some(server.runtime.identity.issuer().to_owned())),
        ..RuntimeOptions::default()
    })
    .await
    .expect("second node");
    let principal = node2.identity.validate(&doctor_a).await.expect("token");
    assert_eq!(principal.hospital_id.as_deref(), Some("bv-a"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base2 = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(axum::serve(listener, api::app(node2)).into_future());
    let visits2 = format!("{base2}/hospitals/bv-a/plugins/visit-counter/visits");
    let (status, body) = call(&server.client, "POST", &visits2, &doctor_a).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&server.client, "GET", &visits, &doctor_a).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count_of(&body), 2, "both nodes count in one store: {body}");

    // Revoke: 403 at once here, and on node 2 within its polling interval.
    let (status, body) = send(
        &server,
        "POST",
        &format!("/api/v1/plugin-versions/{version_id}/revoke"),
        &reviewer,
        Some(json!({ "reason": "security flaw reported" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&server.client, "GET", &visits, &doctor_a).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "plugin_suspended", "{body}");
    let mut stopped = false;
    for _ in 0..50 {
        if call(&server.client, "GET", &visits2, &doctor_a).await.0 == 403 {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped, "node 2 stopped serving the revoked version");

    // Every step is in the audit trail, which verifies.
    let (status, audit) = send(&server, "GET", "/api/v1/audit", &reviewer, None).await;
    assert_eq!(status, 200, "{audit}");
    let actions: Vec<_> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for expected in [
        "vendor.key_registered",
        "plugin.submitted",
        "plugin.approved",
        "activation.created",
        "plugin.revoked",
    ] {
        assert!(
            actions.contains(&expected),
            "audit lacks {expected}: {actions:?}"
        );
    }
    let (_, report) = send(&server, "GET", "/api/v1/audit/verify", &reviewer, None).await;
    assert_eq!(report["ok"], true, "{report}");
}
