//! The audit trail against someone who can write the database, and against
//! a caller who floods it: signed checkpoints catch a chain rebuilt after an
//! entry was deleted (also when the checkpoint rows were deleted too, given
//! an exported copy), and repeated refusals become one entry with a count,
//! with a bounded number of rows per caller.

use serde_json::{Value, json};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::governance::audit::{
    AuditEvent, AuditFilter, Checkpoint, CheckpointCheck, REFUSAL_ROWS_PER_CALLER,
};
use vtelehealth_runtime::identity::Role;
use vtelehealth_tests::{TestServer, plugin_dir};

use vtelehealth_tests::common::{send, user};

async fn append(server: &TestServer, n: usize) {
    for i in 0..n {
        server
            .runtime
            .governance
            .audit
            .append(AuditEvent {
                actor: "reviewer-1".into(),
                action: "plugin.approved".into(),
                target: format!("plugin-version:{i}"),
                hospital_id: Some("bv-a".into()),
                details: json!({ "note": format!("approval {i}") }),
            })
            .await
            .expect("append");
    }
}

/// What an attacker with write access to the database does after deleting
/// entry `deleted`: renumber the later entries and recompute every hash
/// from the documented format (SHA-256 of the JSON array `[seq, at, actor,
/// action, target, hospital_id, details, prev_hash]`), and the head, so the
/// chain alone verifies again. Written here without the runtime's code.
async fn delete_and_rebuild(server: &TestServer, deleted: i64) {
    use sqlx::Row as _;
    let pool = &server.runtime.db.pool;
    sqlx::query("DELETE FROM audit_events WHERE seq = $1")
        .bind(deleted)
        .execute(pool)
        .await
        .expect("delete");
    let later: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM audit_events WHERE seq > $1 ORDER BY seq")
            .bind(deleted)
            .fetch_all(pool)
            .await
            .expect("later");
    for seq in later {
        sqlx::query("UPDATE audit_events SET seq = $1 WHERE seq = $2")
            .bind(seq - 1)
            .bind(seq)
            .execute(pool)
            .await
            .expect("renumber");
    }
    let rows = sqlx::query(
        "SELECT seq, at, actor, action, target, hospital_id, details FROM audit_events ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .expect("rows");
    let mut prev = "0".repeat(64);
    for row in &rows {
        let seq: i64 = row.try_get("seq").expect("seq");
        let details: String = row.try_get("details").expect("details");
        let canonical = json!([
            seq,
            row.try_get::<i64, _>("at").expect("at"),
            row.try_get::<String, _>("actor").expect("actor"),
            row.try_get::<String, _>("action").expect("action"),
            row.try_get::<String, _>("target").expect("target"),
            row.try_get::<Option<String>, _>("hospital_id")
                .expect("hospital"),
            serde_json::from_str::<Value>(&details).expect("json"),
            prev
        ]);
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.to_string().as_bytes());
        let hash: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        sqlx::query("UPDATE audit_events SET prev_hash = $1, hash = $2 WHERE seq = $3")
            .bind(&prev)
            .bind(&hash)
            .bind(seq)
            .execute(pool)
            .await
            .expect("rehash");
        prev = hash;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(rows.len() as i64)
        .bind(&prev)
        .execute(pool)
        .await
        .expect("head");
}

/// An operator takes checkpoints (on demand here; the node also signs one
/// every five minutes) and exports them; someone deletes an entry and
/// rebuilds the chain: `verify` names the rewritten entries. When the
/// checkpoint rows are deleted too, the exported copy still does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_audit_chain_is_caught_by_its_signed_checkpoints() {
    let no_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_plugins.path(), Limits::default()).await;
    let operator = user(&server, "op-audit", Role::Operator, None).await;
    let doctor = user(&server, "bs-audit", Role::Practitioner, Some("bv-a")).await;

    // The checkpoint routes are the reviewers' and operators'.
    let (s, _) = send(
        &server,
        "POST",
        "/api/v1/audit/checkpoints",
        &doctor,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(
        &server,
        "GET",
        "/api/v1/audit/checkpoints",
        &doctor,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 403);

    // Entries the server wrote at start come first; `base` of them.
    let base = server
        .runtime
        .governance
        .audit
        .verify()
        .await
        .expect("verify")
        .entries;
    append(&server, 6).await;
    let (s, first) = send(
        &server,
        "POST",
        "/api/v1/audit/checkpoints",
        &operator,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["seq"].as_i64(), Some(base + 6));
    // The head has not moved: the same checkpoint.
    let (_, again) = send(
        &server,
        "POST",
        "/api/v1/audit/checkpoints",
        &operator,
        None,
        &[],
    )
    .await;
    assert_eq!(again, first);
    append(&server, 4).await;
    let (s, second) = send(
        &server,
        "POST",
        "/api/v1/audit/checkpoints",
        &operator,
        None,
        &[],
    )
    .await;
    assert_eq!(
        (s, second["seq"].as_i64()),
        (200, Some(base + 10)),
        "{second}"
    );
    // Entries after the last checkpoint.
    append(&server, 2).await;
    let (s, export) = send(
        &server,
        "GET",
        "/api/v1/audit/checkpoints",
        &operator,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{export}");
    assert_eq!(export["format"], "vtelehealth-audit-checkpoints/1");
    assert_eq!(export["checkpoints"].as_array().map(Vec::len), Some(2));
    let (_, report) = send(&server, "GET", "/api/v1/audit/verify", &operator, None, &[]).await;
    assert_eq!(report["ok"], true, "{report}");

    // Entry 8 deleted, the chain rebuilt: the chain alone verifies ...
    delete_and_rebuild(&server, base + 8).await;
    let rewritten = format!("rewritten in entries {} to {}", base + 7, base + 10);
    let alone = server
        .runtime
        .governance
        .audit
        .verify()
        .await
        .expect("verify");
    assert!(alone.ok, "the rebuilt chain verifies by itself: {alone:?}");
    // ... but not against the signed checkpoints, which name the entries.
    let (s, report) = send(&server, "GET", "/api/v1/audit/verify", &operator, None, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(report["ok"], false, "{report}");
    let problem = report["problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains(&rewritten)
            && problem.contains(&format!("entry {} does not match", base + 10)),
        "{problem}"
    );
    // No new checkpoint is signed over the rebuilt chain.
    let (s, b) = send(
        &server,
        "POST",
        "/api/v1/audit/checkpoints",
        &operator,
        None,
        &[],
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{b}"
    );

    // The checkpoint rows deleted as well: the database alone cannot tell,
    // the exported copy (with the public key pinned at export) can.
    sqlx::query("DELETE FROM audit_checkpoints")
        .execute(&server.runtime.db.pool)
        .await
        .expect("delete checkpoints");
    let (_, report) = send(&server, "GET", "/api/v1/audit/verify", &operator, None, &[]).await;
    assert_eq!(report["ok"], true, "without the export: {report}");
    use base64::Engine as _;
    let public_key = base64::engine::general_purpose::STANDARD
        .decode(export["public_key"].as_str().expect("key"))
        .expect("base64");
    let exported: Vec<Checkpoint> =
        serde_json::from_value(export["checkpoints"].clone()).expect("checkpoints");
    let check = CheckpointCheck {
        public_key: Some(public_key.clone()),
        exported: exported.clone(),
    };
    let report = server
        .runtime
        .governance
        .audit
        .verify_with(&check)
        .await
        .expect("verify");
    assert!(!report.ok);
    let problem = report.problem.unwrap_or_default();
    assert!(
        problem.contains(&rewritten) && problem.contains("checkpoint rows were deleted"),
        "{problem}"
    );
    // A forged exported checkpoint is refused, not believed.
    let mut forged = exported.clone();
    forged[1].hash = "f".repeat(64);
    let report = server
        .runtime
        .governance
        .audit
        .verify_with(&CheckpointCheck {
            public_key: Some(public_key),
            exported: forged,
        })
        .await
        .expect("verify");
    assert!(
        report
            .problem
            .is_some_and(|p| p.contains(&format!("entry {} has an invalid signature", base + 10))),
    );
}

/// Entries of `action` whose target starts with `prefix`, and the number of
/// refusals they stand for (an aggregate's count, or one).
async fn refusals(server: &TestServer, action: &str, prefix: &str) -> (usize, u64) {
    let entries = server
        .runtime
        .governance
        .audit
        .list(&AuditFilter {
            action_prefix: Some(action.into()),
            limit: Some(10_000),
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    let mine: Vec<_> = entries
        .iter()
        .filter(|e| e.target.starts_with(prefix))
        .collect();
    let total = mine
        .iter()
        .map(|e| e.details["aggregate"]["count"].as_u64().unwrap_or(1))
        .sum();
    (mine.len(), total)
}

/// 500 refused cross-hospital plugin calls by one practitioner write one
/// entry, and one aggregate entry with the count when the window ends (here
/// forced); a hospital admin refused at 60 different hospitals writes at
/// most the per-caller budget, the rest counted in one capped entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_refusals_become_one_entry_with_a_count_and_each_caller_is_bounded() {
    let no_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_plugins.path(), Limits::default()).await;
    vtelehealth_runtime::demo::publish_reference_plugins(&server.runtime, &plugin_dir())
        .await
        .expect("reference plugins rolled out");
    let doctor_b = user(&server, "bs-flood", Role::Practitioner, Some("bv-b")).await;
    let admin_b = user(&server, "admin-flood", Role::HospitalAdmin, Some("bv-b")).await;

    let url = server.plugin_url("bv-a", "hello", "/");
    for _ in 0..20 {
        let calls = (0..25).map(|_| server.client.get(&url).bearer_auth(&doctor_b).send());
        for resp in futures::future::join_all(calls).await {
            assert_eq!(resp.expect("call").status().as_u16(), 403);
        }
    }
    let (rows, _) = refusals(&server, "access.denied", "plugin:hello").await;
    // One window (two only if the calls took over a minute).
    assert!((1..=2).contains(&rows), "{rows} rows for 500 refusals");
    let audit = &server.runtime.governance.audit;
    assert!(audit.flush_refusals(true).await.expect("flush") >= 1);
    let (rows, total) = refusals(&server, "access.denied", "plugin:hello").await;
    assert!(rows <= 4, "{rows} rows for 500 refusals");
    assert_eq!(total, 500, "every refusal is counted");

    // 60 different targets: at most the caller's budget of rows.
    for n in 0..60 {
        let (s, _) = send(
            &server,
            "DELETE",
            &format!("/api/v1/hospitals/h-{n}/activations/hello"),
            &admin_b,
            None,
            &[],
        )
        .await;
        assert_eq!(s, 403);
    }
    let (rows, total) = refusals(&server, "access.denied", "hospital:h-").await;
    assert!(rows <= REFUSAL_ROWS_PER_CALLER as usize, "{rows} rows");
    audit.flush_refusals(true).await.expect("flush");
    let (capped, count) = refusals(&server, "access.denied", "*").await;
    assert_eq!(capped, 1);
    assert_eq!(total + count, 60, "every refusal is counted");
    assert!(audit.verify().await.expect("verify").ok);
}
