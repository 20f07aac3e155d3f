//! The vendor's command line, run as the real `runtime` binary: keys, pack,
//! sign, verify, publish, on the hello plugin built by
//! `cargo xtask build-plugins`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RUNTIME: &str = env!("CARGO_BIN_EXE_runtime");

fn runtime(args: &[&str], dir: &Path) -> Output {
    Command::new(RUNTIME)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the runtime binary")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(args: &[&str], dir: &Path) -> String {
    let out = runtime(args, dir);
    assert!(
        out.status.success(),
        "runtime {args:?} failed:\n{}",
        text(&out)
    );
    text(&out)
}

fn fails(args: &[&str], dir: &Path) -> String {
    let out = runtime(args, dir);
    assert!(
        !out.status.success(),
        "runtime {args:?} succeeded:\n{}",
        text(&out)
    );
    text(&out)
}

/// The hello plugin's component and manifest.
fn hello() -> (PathBuf, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    let wasm = dir.join("hello.wasm");
    assert!(
        wasm.is_file(),
        "{} is missing: run `cargo xtask build-plugins` (or `cargo xtask test`)",
        wasm.display()
    );
    (wasm, dir.join("hello.toml"))
}

#[test]
fn keys_pack_sign_verify() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (wasm, toml) = hello();
    let (wasm, toml) = (wasm.to_str().expect("utf-8"), toml.to_str().expect("utf-8"));

    let out = ok(&["keys", "new", "--out", "vendor.key"], dir);
    assert!(out.contains("key id:"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("vendor.key"))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = fails(&["keys", "new", "--out", "vendor.key"], dir);
    assert!(out.contains("already exists"), "{out}");
    ok(&["keys", "new", "--out", "other.key"], dir);

    let pack = ["plugin", "pack", "--manifest", toml, "--component", wasm];
    ok(&[&pack[..], &["--out", "hello.vtpkg"]].concat(), dir);

    let out = fails(&["plugin", "verify", "hello.vtpkg"], dir);
    assert!(out.contains("not signed"), "{out}");

    let out = ok(
        &["plugin", "sign", "hello.vtpkg", "--key", "vendor.key"],
        dir,
    );
    assert!(out.contains("signed hello 0.1.0"), "{out}");

    let out = ok(
        &[
            "plugin",
            "verify",
            "hello.vtpkg",
            "--public-key",
            "vendor.key.pub",
        ],
        dir,
    );
    assert!(out.contains("all 9 checks passed"), "{out}");
    assert!(out.contains("requests identity:"), "{out}");

    // Without a key: checked against the key the bundle carries, with a caveat.
    let out = ok(&["plugin", "verify", "hello.vtpkg"], dir);
    assert!(out.contains("proves the bundle is intact"), "{out}");

    let out = fails(
        &[
            "plugin",
            "verify",
            "hello.vtpkg",
            "--public-key",
            "other.key.pub",
        ],
        dir,
    );
    assert!(out.contains("[FAIL] signature"), "{out}");

    // A manifest edited after signing.
    let bundle = std::fs::read_to_string(dir.join("hello.vtpkg")).expect("bundle");
    let tampered = bundle.replacen("Lời chào", "Lời chào giả", 1);
    assert_ne!(tampered, bundle);
    std::fs::write(dir.join("tampered.vtpkg"), tampered).expect("write");
    let out = fails(
        &[
            "plugin",
            "verify",
            "tampered.vtpkg",
            "--public-key",
            "vendor.key.pub",
        ],
        dir,
    );
    assert!(out.contains("manifest was changed after signing"), "{out}");

    std::fs::write(dir.join("junk.vtpkg"), "{}").expect("write");
    let out = fails(&["plugin", "verify", "junk.vtpkg"], dir);
    assert!(out.contains("[FAIL] format"), "{out}");
}

#[test]
fn new_scaffolds_a_plugin_crate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = ok(
        &[
            "plugin",
            "new",
            "triage-notes",
            "--dir",
            ".",
            "--vendor",
            "acme",
        ],
        tmp.path(),
    );
    assert!(out.contains("created"), "{out}");
    let crate_dir = tmp.path().join("triage-notes");
    for file in ["Cargo.toml", "plugin.toml", "src/lib.rs"] {
        assert!(crate_dir.join(file).is_file(), "{file}");
    }
    let manifest = std::fs::read_to_string(crate_dir.join("plugin.toml")).expect("manifest");
    assert!(manifest.contains("vendor = \"acme\""), "{manifest}");
    fails(&["plugin", "new", "triage-notes", "--dir", "."], tmp.path());
}

#[test]
fn publish_posts_the_bundle_with_the_token() {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (wasm, toml) = hello();
    ok(&["keys", "new", "--out", "vendor.key"], dir);
    ok(
        &[
            "plugin",
            "pack",
            "--manifest",
            toml.to_str().expect("utf-8"),
            "--component",
            wasm.to_str().expect("utf-8"),
            "--out",
            "hello.vtpkg",
        ],
        dir,
    );
    let out = fails(
        &[
            "plugin",
            "publish",
            "hello.vtpkg",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "t",
        ],
        dir,
    );
    assert!(out.contains("not signed"), "{out}");
    ok(
        &["plugin", "sign", "hello.vtpkg", "--key", "vendor.key"],
        dir,
    );

    // A stand-in for the server's endpoint: 201 for the right token and body.
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route(
        "/api/v1/plugin-versions",
        post(|headers: HeaderMap, body: String| async move {
            let authorized = headers
                .get("authorization")
                .is_some_and(|v| v == "Bearer vendor-token");
            let json = headers
                .get("content-type")
                .is_some_and(|v| v == "application/json");
            let bundle = body.contains("vtelehealth-bundle/1");
            if authorized && json && bundle {
                (StatusCode::CREATED, r#"{"id":"v-1","checks":[]}"#)
            } else {
                (StatusCode::UNAUTHORIZED, r#"{"error":"unauthorized"}"#)
            }
        }),
    );
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let server = format!("http://{addr}/");
    let out = ok(
        &[
            "plugin",
            "publish",
            "hello.vtpkg",
            "--server",
            &server,
            "--token",
            "vendor-token",
        ],
        dir,
    );
    assert!(out.contains("201") && out.contains("\"v-1\""), "{out}");
    let out = fails(
        &[
            "plugin",
            "publish",
            "hello.vtpkg",
            "--server",
            &server,
            "--token",
            "wrong",
        ],
        dir,
    );
    assert!(out.contains("401"), "{out}");
}

/// `runtime audit verify` passes on an intact trail and names the entry
/// that was edited or deleted behind the runtime's back.
#[test]
fn audit_verify_detects_edits_and_deletions() {
    use vtelehealth_runtime::db::Database;
    use vtelehealth_runtime::governance::audit::{AuditEvent, AuditLog};
    let dir = tempfile::TempDir::new().expect("dir");
    let db_path = dir.path().join("audit.db");
    let url = format!("sqlite://{}", db_path.display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let db = rt.block_on(async {
        let db = Database::connect(&url).await.expect("db");
        let audit = AuditLog::new(db.clone());
        for n in 0..4 {
            audit
                .append(AuditEvent {
                    actor: "reviewer".into(),
                    action: "plugin.approved".into(),
                    target: format!("plugin-version:{n}"),
                    hospital_id: None,
                    details: serde_json::json!({ "n": n }),
                })
                .await
                .expect("append");
        }
        db
    });
    let db_arg = db_path.to_string_lossy().into_owned();
    let out = ok(&["audit", "verify", "--db", &db_arg], dir.path());
    assert!(out.contains("4 entries"), "{out}");
    let fhir = ok(
        &["audit", "export", "--db", &db_arg, "--format", "fhir"],
        dir.path(),
    );
    assert!(fhir.contains("\"AuditEvent\""), "{fhir}");

    rt.block_on(async {
        sqlx::query("UPDATE audit_events SET details = '{\"n\":99}' WHERE seq = 2")
            .execute(&db.pool)
            .await
            .expect("tamper")
    });
    let out = fails(&["audit", "verify", "--db", &db_arg], dir.path());
    assert!(out.contains("entry 2 was modified"), "{out}");

    rt.block_on(async {
        sqlx::query("DELETE FROM audit_events WHERE seq = 2")
            .execute(&db.pool)
            .await
            .expect("delete")
    });
    let out = fails(&["audit", "verify", "--db", &db_arg], dir.path());
    assert!(out.contains("entry 2 is missing"), "{out}");
}

/// Delete entry `deleted` and rebuild the chain after it as an attacker
/// would: renumber, recompute every hash (SHA-256 of the JSON array `[seq,
/// at, actor, action, target, hospital_id, details, prev_hash]`) and the head.
async fn delete_and_rebuild(pool: &sqlx::AnyPool, deleted: i64) {
    use sha2::Digest as _;
    use sqlx::Row as _;
    sqlx::query("DELETE FROM audit_events WHERE seq = $1")
        .bind(deleted)
        .execute(pool)
        .await
        .expect("delete");
    sqlx::query("UPDATE audit_events SET seq = seq - 1 WHERE seq > $1")
        .bind(deleted)
        .execute(pool)
        .await
        .expect("renumber");
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
        let canonical = serde_json::json!([
            seq,
            row.try_get::<i64, _>("at").expect("at"),
            row.try_get::<String, _>("actor").expect("actor"),
            row.try_get::<String, _>("action").expect("action"),
            row.try_get::<String, _>("target").expect("target"),
            row.try_get::<Option<String>, _>("hospital_id")
                .expect("hospital"),
            serde_json::from_str::<serde_json::Value>(&details).expect("json"),
            prev
        ]);
        let hash = hex::encode(sha2::Sha256::digest(canonical.to_string().as_bytes()));
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

/// `runtime audit checkpoints create|export` and `runtime audit verify`: a
/// deleted entry with the chain rebuilt is named against the checkpoints,
/// and against an exported copy once the checkpoint rows are deleted too
/// (with the master key, or only the public key pinned from the export).
#[test]
fn audit_checkpoints_catch_a_rebuilt_chain_from_the_command_line() {
    use vtelehealth_runtime::db::Database;
    use vtelehealth_runtime::governance::audit::{AuditEvent, AuditLog};
    let dir = tempfile::TempDir::new().expect("dir");
    // `data/master.key` in the working directory: the commands' default.
    vtelehealth_runtime::secrets::MasterKey::load_or_create(&dir.path().join("data/master.key"))
        .expect("master key");
    let db_path = dir.path().join("audit.db");
    let db_arg = db_path.to_string_lossy().into_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let db = rt
        .block_on(Database::connect(&format!(
            "sqlite://{}",
            db_path.display()
        )))
        .expect("db");
    let append = |from: u32, to: u32| {
        rt.block_on(async {
            let audit = AuditLog::new(db.clone());
            for n in from..to {
                audit
                    .append(AuditEvent {
                        actor: "reviewer".into(),
                        action: "plugin.approved".into(),
                        target: format!("plugin-version:{n}"),
                        hospital_id: None,
                        details: serde_json::json!({ "n": n }),
                    })
                    .await
                    .expect("append");
            }
        })
    };
    append(0, 5);
    let out = ok(
        &["audit", "checkpoints", "create", "--db", &db_arg],
        dir.path(),
    );
    assert!(out.contains("\"seq\": 5"), "{out}");
    append(5, 8);
    let out = ok(
        &["audit", "checkpoints", "create", "--db", &db_arg],
        dir.path(),
    );
    assert!(out.contains("\"seq\": 8"), "{out}");
    append(8, 9);
    ok(
        &[
            "audit",
            "checkpoints",
            "export",
            "--db",
            &db_arg,
            "--out",
            "checkpoints.json",
        ],
        dir.path(),
    );
    let out = ok(&["audit", "verify", "--db", &db_arg], dir.path());
    assert!(
        out.contains("9 entries") && out.contains("2 signed checkpoints match"),
        "{out}"
    );

    rt.block_on(delete_and_rebuild(&db.pool, 6));
    let out = fails(&["audit", "verify", "--db", &db_arg], dir.path());
    assert!(out.contains("rewritten in entries 6 to 8"), "{out}");

    // The checkpoint rows deleted too: only the exported copy tells.
    rt.block_on(async {
        sqlx::query("DELETE FROM audit_checkpoints")
            .execute(&db.pool)
            .await
            .expect("delete checkpoints")
    });
    ok(&["audit", "verify", "--db", &db_arg], dir.path());
    let with_copy = [
        "audit",
        "verify",
        "--db",
        &db_arg,
        "--checkpoints",
        "checkpoints.json",
    ];
    let out = fails(&with_copy, dir.path());
    assert!(
        out.contains("rewritten in entries 6 to 8") && out.contains("checkpoint rows were deleted"),
        "{out}"
    );
    let export: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("checkpoints.json")).expect("export"),
    )
    .expect("json");
    let public = export["public_key"].as_str().expect("public key");
    let elsewhere = tempfile::TempDir::new().expect("dir");
    let out = fails(
        &[
            "audit",
            "verify",
            "--db",
            &db_arg,
            "--checkpoints",
            &dir.path().join("checkpoints.json").to_string_lossy(),
            "--public-key",
            public,
        ],
        elsewhere.path(),
    );
    assert!(out.contains("rewritten in entries 6 to 8"), "{out}");
}

/// A free loopback port (released before the server binds it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `runtime serve` on `db`, waited for until it answers `/healthz`.
async fn serve(dir: &Path, db: &str, port: u16) -> std::process::Child {
    let mut child = Command::new(RUNTIME)
        .args([
            "serve",
            "--db",
            db,
            "--listen",
            &format!("127.0.0.1:{port}"),
            // The payment test pays on the development gateway.
            "--payment-sandbox",
        ])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn runtime serve");
    let url = format!("http://127.0.0.1:{port}/healthz");
    for _ in 0..300 {
        if reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return child;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("runtime serve did not become healthy");
}

/// The server killed (SIGKILL) after a payment's settlement committed and
/// before any plugin took its event: after a restart the gateway's retry
/// settles nothing twice, the event is still there exactly once, and the
/// ledger balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_settlement_and_delivery_settles_once() {
    use vtelehealth_runtime::db::Database;
    use vtelehealth_runtime::payment::{
        MerchantKind, NewIntent, PaymentTerms, Payments, TermsSource, ledger,
    };

    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("pay.db").display());
    // The server's master key (`data/master.key`, made here first) signs
    // the payer's sandbox ticket on both sides.
    let master = vtelehealth_runtime::secrets::MasterKey::load_or_create(
        &dir.path().join("data/master.key"),
    )
    .expect("master key");
    let tickets = vtelehealth_runtime::payment::gateway::SandboxTickets::new(
        &master.payment_sandbox_key().expect("key"),
    );
    let payments = |database| {
        Payments::new(database, TermsSource::Fixed(PaymentTerms::default().into()))
            .with_sandbox(tickets.clone())
    };
    let p = payments(Database::connect(&db).await.expect("database"));
    let intent = p
        .create(
            "bv-a",
            "shop",
            &NewIntent {
                amount: 240_000,
                currency: "VND".into(),
                payer: "citizen-9".into(),
                merchant: MerchantKind::Hospital,
                purpose: "Khám từ xa".into(),
                idempotency_key: "sigkill".into(),
            },
        )
        .await
        .expect("intent");
    let link = p
        .checkout_as("bv-a", "shop", &intent.id, "/done", Some("citizen-9"))
        .await
        .expect("checkout");
    let (page, ticket) = link.split_once("?ticket=").expect("a ticket");
    let form = [("ticket", ticket)];
    p.database().pool.close().await;

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let port = free_port();
    let mut server = serve(dir.path(), &db, port).await;
    let pay = format!("http://127.0.0.1:{port}{page}/pay");
    let paid = client.post(&pay).form(&form).send().await.expect("pay");
    assert_eq!(paid.status().as_u16(), 303);
    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");

    let port = free_port();
    let mut server = serve(dir.path(), &db, port).await;
    let pay = format!("http://127.0.0.1:{port}{page}/pay");
    let again = client
        .post(&pay)
        .form(&form)
        .send()
        .await
        .expect("pay again");
    assert_eq!(
        again.status().as_u16(),
        409,
        "a second settlement is refused"
    );

    let p = payments(Database::connect(&db).await.expect("reopen"));
    let events = p.pending_events("bv-a", "shop", 10).await.expect("events");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, "payment.succeeded");
    assert!(
        p.acknowledge("bv-a", "shop", &events[0].event_id)
            .await
            .expect("ack")
    );
    assert!(
        p.pending_events("bv-a", "shop", 10)
            .await
            .expect("events")
            .is_empty()
    );
    let check = ledger::check(&p.database().pool).await.expect("check");
    assert!(check.is_consistent(), "{check:?}");
    assert_eq!(
        ledger::balance(&p.database().pool, "merchant:hospital:bv-a")
            .await
            .expect("balance")
            .posted,
        240_000
    );
    let _ = server.kill();
    let _ = server.wait();
}
