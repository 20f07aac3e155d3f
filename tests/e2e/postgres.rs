//! The storage layer on PostgreSQL: the kv store (including byte order
//! whatever the cluster's locale) and the audit trail. The whole runtime on
//! PostgreSQL is covered by running the entire e2e suite a second time with
//! `VTH_E2E_ON_POSTGRES=1` (`cargo xtask test` does). Each test gets a fresh
//! database from `postgres_database()`; without `VTH_TEST_POSTGRES_URL` they
//! are skipped.

use std::sync::Arc;

use serde_json::json;
use sqlx::Connection as _;
use vtelehealth_runtime::capabilities::kv::{KvError, KvScope, KvStore};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::db::{Backend, Database};
use vtelehealth_runtime::governance::audit::{AuditEvent, AuditFilter, AuditLog, VerifyReport};
use vtelehealth_tests::postgres_database;

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
