//! Payment intents, refunds, the VNPAY-style IPN and the outbox, against a
//! real database (SQLite; PostgreSQL too when `VTH_TEST_POSTGRES_URL` is set).

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lc_rs::hmac;

use super::gateway::VnpayTerminal;
use super::*;

const SECRET: &str = "VTH-TEST-HASH-SECRET-0123456789";

async fn sqlite() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("pay.db").display());
    (dir, Database::connect(&url).await.expect("database"))
}

/// A fresh database on the server named by `VTH_TEST_POSTGRES_URL`.
async fn postgres() -> Option<Database> {
    use sqlx::Connection as _;
    let admin = std::env::var("VTH_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let name = format!("vth_pay_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::postgres::PgConnection::connect(&admin)
        .await
        .expect("postgres");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    let url = if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    };
    Some(Database::connect(&url).await.expect("connect"))
}

fn sandbox_terms() -> TermsSource {
    TermsSource::Fixed(Arc::new(PaymentTerms {
        platform_fee_bps: 300,
        hospital_share_bps: 1000,
        max_amount: Some(50_000_000),
        ..PaymentTerms::default()
    }))
}

fn vnpay_terms() -> TermsSource {
    TermsSource::Fixed(Arc::new(PaymentTerms {
        gateway: GatewayKind::Vnpay,
        platform_fee_bps: 300,
        hospital_share_bps: 1000,
        max_amount: Some(50_000_000),
        vnpay: Some(VnpayTerminal {
            tmn_code: "VTH00001".into(),
            pay_url: "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html".into(),
            return_url: "https://vth.example/api/v1/payments/vnpay/return".into(),
        }),
        hash_secret: Some(SECRET.into()),
    }))
}

fn order(amount: i64, key: &str) -> NewIntent {
    NewIntent {
        amount,
        currency: "VND".into(),
        payer: "citizen-001".into(),
        merchant: MerchantKind::Vendor,
        purpose: "Đơn thuốc 42".into(),
        idempotency_key: key.into(),
    }
}

async fn consistent(p: &Payments) -> ledger::LedgerCheck {
    let check = ledger::check(&p.database().pool).await.expect("check");
    assert!(check.is_consistent(), "{check:?}");
    check
}

async fn count(p: &Payments, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&p.database().pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn same_key_same_intent_other_parameters_conflict() {
    let (_d, db) = sqlite().await;
    let p = Payments::new(db, sandbox_terms());
    let a = p
        .create("bv", "shop", &order(120_000, "k1"))
        .await
        .expect("create");
    let b = p
        .create("bv", "shop", &order(120_000, "k1"))
        .await
        .expect("again");
    assert_eq!(a, b);
    assert!(matches!(
        p.create("bv", "shop", &order(120_001, "k1")).await,
        Err(PaymentError::Conflict(_))
    ));
    // Another plugin's key space is its own.
    let c = p
        .create("bv", "other", &order(120_000, "k1"))
        .await
        .expect("other plugin");
    assert_ne!(a.id, c.id);
}

async fn fifty_racing_creates(db: Database) {
    let p = Arc::new(Payments::new(db, sandbox_terms()));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.create("bv", "shop", &order(99_000, "race")).await })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        ids.insert(t.await.expect("join").expect("create").id);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(
        count(&p, "SELECT CAST(COUNT(*) AS BIGINT) FROM payment_intents").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_creates_make_one_intent_sqlite() {
    let (_d, db) = sqlite().await;
    fifty_racing_creates(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_creates_make_one_intent_postgres() {
    let Some(db) = postgres().await else {
        eprintln!("skipping: VTH_TEST_POSTGRES_URL is not set");
        return;
    };
    fifty_racing_creates(db).await;
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let (_d, db) = sqlite().await;
    let p = Payments::new(db, sandbox_terms());
    for amount in [0, -1, -50_000, 50_000_001, i64::MAX] {
        assert!(
            matches!(
                p.create("bv", "shop", &order(amount, "bad")).await,
                Err(PaymentError::Invalid(_))
            ),
            "{amount}"
        );
    }
    let mut usd = order(10_000, "bad");
    usd.currency = "USD".into();
    assert!(matches!(
        p.create("bv", "shop", &usd).await,
        Err(PaymentError::Invalid(_))
    ));
    for key in ["", " ", &"k".repeat(300)] {
        assert!(p.create("bv", "shop", &order(10_000, key)).await.is_err());
    }
    assert_eq!(
        count(&p, "SELECT CAST(COUNT(*) AS BIGINT) FROM payment_intents").await,
        0
    );
    assert_eq!(consistent(&p).await.postings, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sandbox_payment_splits_refunds_and_refuses_illegal_moves_sqlite() {
    let (_d, db) = sqlite().await;
    payment_splits_refunds_and_refuses_illegal_moves(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sandbox_payment_splits_refunds_and_refuses_illegal_moves_postgres() {
    let Some(db) = postgres().await else {
        eprintln!("skipping: VTH_TEST_POSTGRES_URL is not set");
        return;
    };
    payment_splits_refunds_and_refuses_illegal_moves(db).await;
}

async fn payment_splits_refunds_and_refuses_illegal_moves(db: Database) {
    let p = Payments::new(db, sandbox_terms());
    let i = p
        .create("bv", "shop", &order(1_000_000, "o1"))
        .await
        .expect("create");
    assert!(matches!(
        p.refund("tester", "bv", "shop", &i.id, 1, "r0").await,
        Err(PaymentError::IllegalTransition { .. })
    ));
    let url = p
        .checkout("bv", "shop", &i.id, "/orders/1")
        .await
        .expect("checkout");
    assert_eq!(url, format!("/payments/sandbox/{}", i.id));
    assert_eq!(
        ledger::balance(&p.database().pool, "clearing:payer:citizen-001")
            .await
            .expect("b")
            .pending,
        1_000_000
    );
    p.succeed("tester", &i.id, "sb-1").await.expect("pay");
    assert!(matches!(
        p.succeed("tester", &i.id, "sb-1").await,
        Err(PaymentError::IllegalTransition { .. })
    ));
    assert!(matches!(
        p.abandon("tester", &i.id, IntentState::Cancelled).await,
        Err(PaymentError::IllegalTransition { .. })
    ));
    let pool = p.database().pool.clone();
    let bal = |a: &'static str| {
        let pool = pool.clone();
        async move { ledger::balance(&pool, a).await.expect("balance") }
    };
    assert_eq!(bal("merchant:vendor:shop").await.posted, 870_000);
    assert_eq!(bal("platform:fee").await.posted, 30_000);
    assert_eq!(bal("hospital_share:bv").await.posted, 100_000);
    assert_eq!(bal("gateway:sandbox").await.posted, -1_000_000);
    assert_eq!(
        bal("clearing:payer:citizen-001").await,
        ledger::Balance::default()
    );

    // Above captured: refused, nothing moves.
    let before = consistent(&p).await;
    assert!(matches!(
        p.refund("tester", "bv", "shop", &i.id, 1_000_001, "r1")
            .await,
        Err(PaymentError::ExceedsCaptured { .. })
    ));
    assert!(
        p.refund("tester", "bv", "shop", &i.id, -5, "r1")
            .await
            .is_err()
    );
    assert_eq!(consistent(&p).await, before);

    // Ten racing refunds of 40%: exactly two fit.
    let p = Arc::new(p);
    let tasks: Vec<_> = (0..10)
        .map(|n| {
            let (p, id) = (p.clone(), i.id.clone());
            tokio::spawn(async move {
                p.refund("tester", "bv", "shop", &id, 400_000, &format!("race{n}"))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(_) => ok += 1,
            Err(PaymentError::ExceedsCaptured { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 2);
    // The same key again returns the first result without refunding twice.
    let again = p
        .refund("tester", "bv", "shop", &i.id, 200_000, "last")
        .await
        .expect("rest");
    assert_eq!(again.state, IntentState::Refunded);
    let twice = p
        .refund("tester", "bv", "shop", &i.id, 200_000, "last")
        .await
        .expect("same key");
    assert_eq!(twice.refunded, 1_000_000);
    // Every money movement is in the audit trail, with who did it.
    assert_eq!(
        count(&p, "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_events WHERE action = 'payment.refunded' AND actor = 'tester'").await,
        3
    );
    // Everything given back exactly, to the đồng.
    for a in [
        "merchant:vendor:shop",
        "platform:fee",
        "hospital_share:bv",
        "gateway:sandbox",
    ] {
        assert_eq!(bal(a).await.posted, 0, "{a}");
    }
    consistent(&p).await;
}

/// The query string VNPAY would send, signed here without the module's
/// helpers: names sorted, values form-encoded, HMAC-SHA512 in hex.
fn signed_ipn(fields: &[(&str, &str)], secret: &str) -> BTreeMap<String, String> {
    let mut sorted: Vec<(&str, &str)> = fields.to_vec();
    sorted.sort();
    let data = sorted
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(' ', "+")))
        .collect::<Vec<_>>()
        .join("&");
    let key = hmac::Key::new(hmac::HMAC_SHA512, secret.as_bytes());
    let hash = hex::encode(hmac::sign(&key, data.as_bytes()).as_ref());
    let mut map: BTreeMap<String, String> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    map.insert("vnp_SecureHash".into(), hash);
    map
}

#[tokio::test]
async fn vnpay_ipn_verifies_and_settles_once() {
    let (_d, db) = sqlite().await;
    let p = Payments::new(db, vnpay_terms());
    let i = p
        .create("bv", "shop", &order(250_000, "v1"))
        .await
        .expect("create");
    let url = p
        .checkout("bv", "shop", &i.id, "/done")
        .await
        .expect("checkout");
    assert!(
        url.starts_with("https://sandbox.vnpayment.vn/paymentv2/vpcpay.html?vnp_Amount=25000000&")
    );
    // The redirect's own signature verifies under the secret.
    let query: BTreeMap<String, String> =
        form_urlencoded::parse(url.split_once('?').expect("query").1.as_bytes())
            .into_owned()
            .collect();
    assert!(gateway::vnpay_verify(&query, SECRET.as_bytes()));

    let fields = |amount: &'static str| {
        vec![
            ("vnp_Amount", amount),
            ("vnp_BankCode", "NCB"),
            ("vnp_OrderInfo", "Don thuoc 42"),
            ("vnp_ResponseCode", "00"),
            ("vnp_TmnCode", "VTH00001"),
            ("vnp_TransactionNo", "14000001"),
            ("vnp_TransactionStatus", "00"),
        ]
    };
    let mut good = fields("25000000");
    good.push(("vnp_TxnRef", i.id.as_str()));
    let ipn = signed_ipn(&good, SECRET);

    // Forged: wrong secret, or a tampered amount under the old signature.
    let before = consistent(&p).await;
    assert_eq!(
        p.vnpay_ipn(&signed_ipn(&good, "guess")).await,
        IpnAnswer::InvalidSignature
    );
    let mut tampered = ipn.clone();
    tampered.insert("vnp_Amount".into(), "100".into());
    assert_eq!(p.vnpay_ipn(&tampered).await, IpnAnswer::InvalidSignature);
    // Correctly signed, but not the intent's amount.
    let mut wrong = fields("24900000");
    wrong.push(("vnp_TxnRef", i.id.as_str()));
    assert_eq!(
        p.vnpay_ipn(&signed_ipn(&wrong, SECRET)).await,
        IpnAnswer::InvalidAmount
    );
    let mut unknown = fields("25000000");
    unknown.push(("vnp_TxnRef", "no-such-order"));
    assert_eq!(
        p.vnpay_ipn(&signed_ipn(&unknown, SECRET)).await,
        IpnAnswer::OrderNotFound
    );
    // Validly signed, but for another merchant's terminal: not this order.
    let other: Vec<(&str, &str)> = good
        .iter()
        .map(|&(k, v)| (k, if k == "vnp_TmnCode" { "OTHER001" } else { v }))
        .collect();
    assert_eq!(
        p.vnpay_ipn(&signed_ipn(&other, SECRET)).await,
        IpnAnswer::OrderNotFound
    );
    assert_eq!(consistent(&p).await, before);
    assert_eq!(p.get(&i.id).await.expect("get").state, IntentState::Pending);

    assert_eq!(p.vnpay_ipn(&ipn).await, IpnAnswer::Confirmed);
    assert_eq!(IpnAnswer::Confirmed.body()["RspCode"], "00");
    assert_eq!(p.vnpay_ipn(&ipn).await, IpnAnswer::AlreadyConfirmed);
    assert_eq!(IpnAnswer::AlreadyConfirmed.body()["RspCode"], "02");
    assert_eq!(
        p.get(&i.id).await.expect("get").state,
        IntentState::Succeeded
    );
    assert_eq!(
        count(
            &p,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_transfers WHERE kind = 'capture'"
        )
        .await,
        1
    );
    // The browser's return verifies the same way.
    assert!(p.vnpay_return(&ipn).await.expect("return").is_some());
    assert!(p.vnpay_return(&tampered).await.expect("return").is_none());
    consistent(&p).await;
}

#[tokio::test]
async fn settlement_survives_a_restart_and_is_delivered_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("pay.db").display());
    let ipn;
    {
        let p = Payments::new(Database::connect(&url).await.expect("db"), vnpay_terms());
        let i = p
            .create("bv", "shop", &order(80_000, "crash"))
            .await
            .expect("create");
        p.checkout("bv", "shop", &i.id, "/x")
            .await
            .expect("checkout");
        let fields = vec![
            ("vnp_Amount", "8000000"),
            ("vnp_ResponseCode", "00"),
            // The activation's own terminal: others' notices settle nothing.
            ("vnp_TmnCode", "VTH00001"),
            ("vnp_TransactionNo", "1"),
            ("vnp_TransactionStatus", "00"),
            ("vnp_TxnRef", i.id.as_str()),
        ];
        ipn = signed_ipn(&fields, SECRET);
        assert_eq!(p.vnpay_ipn(&ipn).await, IpnAnswer::Confirmed);
        // Crash point: the IPN is committed, nothing was dispatched.
        p.database().pool.close().await;
    }
    let p = Payments::new(
        Database::connect(&url).await.expect("reopen"),
        vnpay_terms(),
    );
    // The gateway retries its IPN after the restart: no second settlement.
    assert_eq!(p.vnpay_ipn(&ipn).await, IpnAnswer::AlreadyConfirmed);
    let first = p.pending_events("bv", "shop", 10).await.expect("events");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].kind, "payment.succeeded");
    // Not acknowledged (the plugin crashed): it comes back, same id.
    let again = p.pending_events("bv", "shop", 10).await.expect("events");
    assert_eq!(again[0].event_id, first[0].event_id);
    assert_eq!(again[0].attempts, 2);
    assert!(
        p.acknowledge("bv", "shop", &first[0].event_id)
            .await
            .expect("ack")
    );
    assert!(
        !p.acknowledge("bv", "shop", &first[0].event_id)
            .await
            .expect("re-ack")
    );
    assert!(matches!(
        p.acknowledge("other", "shop", &first[0].event_id).await,
        Err(PaymentError::NotFound(_))
    ));
    assert!(
        p.pending_events("bv", "shop", 10)
            .await
            .expect("events")
            .is_empty()
    );
    assert_eq!(
        count(
            &p,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_transfers WHERE kind = 'capture'"
        )
        .await,
        1
    );
    consistent(&p).await;
}

#[tokio::test]
async fn cancel_and_timeout_void_the_hold_and_report_reconciles() {
    let (_d, db) = sqlite().await;
    let p = Payments::new(db, sandbox_terms());
    let a = p
        .create("bv", "shop", &order(10_000, "a"))
        .await
        .expect("a");
    p.checkout("bv", "shop", &a.id, "/a")
        .await
        .expect("checkout");
    p.abandon("tester", &a.id, IntentState::Cancelled)
        .await
        .expect("cancel");
    assert!(matches!(
        p.checkout("bv", "shop", &a.id, "/a").await,
        Err(PaymentError::IllegalTransition { .. })
    ));
    let b = p
        .create("bv", "shop", &order(20_000, "b"))
        .await
        .expect("b");
    p.checkout("bv", "shop", &b.id, "/b")
        .await
        .expect("checkout");
    sqlx::query("UPDATE payment_intents SET expires_at = 0 WHERE id = $1")
        .bind(&b.id)
        .execute(&p.database().pool)
        .await
        .expect("age");
    assert_eq!(p.expire_due().await.expect("expire"), 1);
    assert_eq!(p.get(&b.id).await.expect("b").state, IntentState::Cancelled);
    assert_eq!(
        ledger::balance(&p.database().pool, "gateway:sandbox")
            .await
            .expect("b"),
        ledger::Balance::default()
    );
    let c = p
        .create("bv", "shop", &order(500_000, "c"))
        .await
        .expect("c");
    p.checkout("bv", "shop", &c.id, "/c")
        .await
        .expect("checkout");
    p.succeed("tester", &c.id, "sb").await.expect("pay");
    p.refund("tester", "bv", "shop", &c.id, 100_000, "r")
        .await
        .expect("refund");
    let day = crate::audit::rfc3339(now_millis());
    let report = p
        .reconciliation("merchant:vendor:shop", &day[..10])
        .await
        .expect("report");
    assert_eq!(report.lines.len(), 2);
    assert_eq!(report.totals.captured, 500_000);
    assert_eq!(report.totals.refunded, 100_000);
    assert_eq!(report.totals.merchant_net, 435_000 - 87_000);
    assert_eq!(report.totals.platform_fee, 15_000 - 3_000);
    assert_eq!(report.totals.hospital_share, 50_000 - 10_000);
    assert_eq!(report.to_csv().lines().count(), 3);
    assert!(
        p.reconciliation("merchant:vendor:shop", "2026-02-30")
            .await
            .is_err()
    );
    consistent(&p).await;
}

/// Payments and refunds of many intents at once share accounts (gateway,
/// merchant, fee, hospital share): none fails or deadlocks, and the ledger
/// balances.
async fn concurrent_settlements_and_refunds(db: Database) {
    let p = Arc::new(Payments::new(db, sandbox_terms()));
    let mut ids = Vec::new();
    for n in 0..10 {
        let i = p
            .create("bv", "shop", &order(100_000 + n, &format!("m{n}")))
            .await
            .expect("create");
        p.checkout("bv", "shop", &i.id, "/x")
            .await
            .expect("checkout");
        ids.push(i.id);
    }
    for id in &ids[..5] {
        p.succeed("tester", id, "g").await.expect("pay");
    }
    let mut tasks = Vec::new();
    for id in &ids[5..] {
        let (p, id) = (p.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            p.succeed("tester", &id, "g").await.map(|_| ())
        }));
    }
    for (n, id) in ids[..5].iter().cloned().enumerate() {
        for k in 0..2 {
            let (p, id) = (p.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                p.refund("tester", "bv", "shop", &id, 10_000, &format!("r{n}-{k}"))
                    .await
                    .map(|_| ())
            }));
        }
    }
    for t in tasks {
        t.await.expect("join").expect("no refusal, no deadlock");
    }
    let check = consistent(&p).await;
    assert_eq!(check.pending_sum, 0);
    let pool = &p.database().pool;
    let gateway = ledger::balance(pool, "gateway:sandbox")
        .await
        .expect("gateway");
    let captured: i64 = (0..10).map(|n| 100_000 + n).sum();
    assert_eq!(gateway.posted, -captured + 10 * 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_settlements_and_refunds_sqlite() {
    let (_d, db) = sqlite().await;
    concurrent_settlements_and_refunds(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_settlements_and_refunds_postgres() {
    let Some(db) = postgres().await else {
        eprintln!("skipping: VTH_TEST_POSTGRES_URL is not set");
        return;
    };
    concurrent_settlements_and_refunds(db).await;
}
