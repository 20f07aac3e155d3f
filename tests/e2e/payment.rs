//! The `payment` capability through a real plugin (`tests/plugins/payment-probe`) and the
//! built-in sandbox gateway: one intent per idempotency key however many requests race,
//! bad input refused with the ledger untouched, a refund never above the capture even when
//! refunds race, settlement events handled once, and the reconciliation report.

use serde_json::{Value, json};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::identity::Role;
use vtelehealth_runtime::payment::ledger;
use vtelehealth_tests::{TestServer, plugin_set, test_plugin_dir};

use crate::records_access::{send, user};

const PROBE: &str = "payment-probe";

fn probe_path(path: &str) -> String {
    format!("/hospitals/bv-a/plugins/{PROBE}{path}")
}

fn order(amount: i64, key: &str) -> Value {
    json!({ "amount": amount, "currency": "VND", "payer": "cd-pay", "merchant": "vendor",
            "purpose": "Đơn thuốc 7", "key": key })
}

/// `send` with an owned path, so racing calls can be built in a closure.
async fn call(
    server: &TestServer,
    method: &str,
    path: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    send(server, method, &path, token, body, &[]).await
}

async fn intents(server: &TestServer) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT CAST(COUNT(*) AS BIGINT) FROM payment_intents")
        .fetch_one(&server.runtime.db.pool)
        .await
        .expect("count")
}

async fn ledger_is_consistent(server: &TestServer) -> ledger::LedgerCheck {
    let check = ledger::check(&server.runtime.db.pool).await.expect("check");
    assert!(check.is_consistent(), "{check:?}");
    check
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_through_a_plugin_and_the_sandbox_gateway() {
    let dir = plugin_set(&test_plugin_dir(), &[PROBE]);
    let server = TestServer::start(dir.path(), Limits::default()).await;
    let citizen = user(&server, "cd-pay", Role::Citizen, None).await;
    let operator = user(&server, "op-pay", Role::Operator, None).await;

    // 50 racing requests with one key: one intent.
    let racing = (0..50).map(|_| {
        call(
            &server,
            "POST",
            probe_path("/intents"),
            &citizen,
            Some(order(150_000, "k-race")),
        )
    });
    let answers = futures::future::join_all(racing).await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(s, b)| {
            assert_eq!(*s, 200, "{b}");
            b["id"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(intents(&server).await, 1);
    let id = ids.into_iter().next().expect("one id");

    // Bad input: refused, nothing written.
    let before = ledger_is_consistent(&server).await;
    for (body, status) in [
        (order(0, "b1"), 400),
        (order(-10_000, "b2"), 400),
        (order(2_000_000_000, "b3"), 400),
        (
            json!({ "amount": 10_000, "currency": "USD", "payer": "cd-pay", "purpose": "x", "key": "b4" }),
            400,
        ),
        (order(150_001, "k-race"), 409),
    ] {
        let (s, b) = send(
            &server,
            "POST",
            &probe_path("/intents"),
            &citizen,
            Some(body),
            &[],
        )
        .await;
        assert_eq!(s, status, "{b}");
    }
    assert_eq!(intents(&server).await, 1);
    assert_eq!(ledger_is_consistent(&server).await, before);
    // A refund before payment is an illegal transition.
    let (s, b) = send(
        &server,
        "POST",
        &probe_path(&format!("/intents/{id}/refund")),
        &citizen,
        Some(json!({ "amount": 1, "key": "r0" })),
        &[],
    )
    .await;
    assert_eq!(s, 409, "{b}");

    // Checkout, then pay on the sandbox's page.
    let (s, b) = send(
        &server,
        "POST",
        &probe_path(&format!("/intents/{id}/checkout?return=/orders/7")),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let url = b["url"].as_str().expect("url").to_owned();
    assert_eq!(url, format!("/payments/sandbox/{id}"));
    let page = server
        .client
        .get(format!("{}{url}", server.base))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.expect("html").contains("150000 VND"));
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let paid = no_follow
        .post(format!("{}{url}/pay", server.base))
        .send()
        .await
        .expect("pay");
    assert_eq!(paid.status().as_u16(), 303);
    assert_eq!(
        paid.headers()["location"].to_str().expect("location"),
        format!("/hospitals/bv-a/plugins/{PROBE}/orders/7?payment={id}")
    );
    // Paying again is refused: nothing moves twice.
    let again = no_follow
        .post(format!("{}{url}/pay", server.base))
        .send()
        .await
        .expect("pay");
    assert_eq!(again.status().as_u16(), 409);
    let (_, b) = send(
        &server,
        "GET",
        &probe_path(&format!("/intents/{id}")),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(b["state"], "succeeded");
    assert_eq!(b["captured"], 150_000);

    // The settlement event is handled once, however often the plugin polls.
    let (_, b) = send(&server, "POST", &probe_path("/settle"), &citizen, None, &[]).await;
    assert_eq!(b["handled"], 1);
    let (_, b) = send(&server, "POST", &probe_path("/settle"), &citizen, None, &[]).await;
    assert_eq!(b["handled"], 0);
    let (_, b) = send(&server, "GET", &probe_path("/settled"), &citizen, None, &[]).await;
    assert_eq!(b, json!({ "payment.succeeded": 1 }));

    // Above captured: refused, ledger untouched. Racing refunds of 60%: one wins.
    let before = ledger_is_consistent(&server).await;
    let refund = |amount: i64, key: String| {
        call(
            &server,
            "POST",
            probe_path(&format!("/intents/{id}/refund")),
            &citizen,
            Some(json!({ "amount": amount, "key": key })),
        )
    };
    let (s, b) = refund(150_001, "too-much".into()).await;
    assert_eq!(s, 409, "{b}");
    let (s, _) = refund(-1, "negative".into()).await;
    assert_eq!(s, 400);
    assert_eq!(ledger_is_consistent(&server).await, before);
    let racing = (0..10).map(|n| refund(90_000, format!("race-{n}")));
    let results = futures::future::join_all(racing).await;
    let won = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(won, 1, "{results:?}");
    assert!(
        results.iter().all(|(s, _)| *s == 200 || *s == 409),
        "{results:?}"
    );
    let (_, b) = send(
        &server,
        "GET",
        &probe_path(&format!("/intents/{id}")),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(
        (b["state"].as_str(), b["refunded"].as_i64()),
        (Some("partially_refunded"), Some(90_000))
    );
    ledger_is_consistent(&server).await;

    // The day's report, for the operator.
    let day = &vtelehealth_runtime::governance::audit::rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    )[..10];
    let report = format!("/api/v1/payments/reconciliation?merchant=vendor:{PROBE}&day={day}");
    let (s, b) = send(&server, "GET", &report, &operator, None, &[]).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["totals"]["captured"], 150_000);
    assert_eq!(b["totals"]["refunded"], 90_000);
    assert_eq!(b["totals"]["merchant_net"], 60_000);
    let (s, csv) = send(
        &server,
        "GET",
        &format!("{report}&format=csv"),
        &operator,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(csv.as_str().map(|c| c.lines().count()), Some(3), "{csv}");
    let (s, _) = send(&server, "GET", &report, &citizen, None, &[]).await;
    assert_eq!(s, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_ipns_are_answered_in_the_protocol_and_change_nothing() {
    let dir = plugin_set(&test_plugin_dir(), &[PROBE]);
    let server = TestServer::start(dir.path(), Limits::default()).await;
    let citizen = user(&server, "cd-pay", Role::Citizen, None).await;
    let (_, b) = send(
        &server,
        "POST",
        &probe_path("/intents"),
        &citizen,
        Some(order(50_000, "f1")),
        &[],
    )
    .await;
    let id = b["id"].as_str().expect("id").to_owned();
    send(
        &server,
        "POST",
        &probe_path(&format!("/intents/{id}/checkout")),
        &citizen,
        None,
        &[],
    )
    .await;
    let before = ledger_is_consistent(&server).await;
    let ipn = |query: String| {
        let url = format!("{}/api/v1/payments/vnpay/ipn?{query}", server.base);
        let client = server.client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .expect("ipn")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    // A sandbox intent has no hash secret: any signature is invalid.
    let forged = ipn(format!("vnp_TxnRef={id}&vnp_Amount=5000000&vnp_ResponseCode=00&vnp_TransactionStatus=00&vnp_SecureHash=abcd")).await;
    assert_eq!(
        forged,
        json!({ "RspCode": "97", "Message": "Invalid signature" })
    );
    let unknown = ipn("vnp_TxnRef=nope&vnp_Amount=100".into()).await;
    assert_eq!(unknown["RspCode"], "01");
    assert_eq!(ledger_is_consistent(&server).await, before);
    let (_, b) = send(
        &server,
        "GET",
        &probe_path(&format!("/intents/{id}")),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(b["state"], "pending");
}

/// The query string a VNPAY-style gateway sends, signed here without the
/// runtime's helpers: names sorted, values URL-safe as chosen, HMAC-SHA512.
fn gateway_query(fields: &[(&str, String)], secret: &str) -> String {
    let mut sorted = fields.to_vec();
    sorted.sort();
    let data = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA512, secret.as_bytes());
    let hash: String = aws_lc_rs::hmac::sign(&key, data.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{data}&vnp_SecureHash={hash}")
}

/// A reviewed payment plugin activated by hospital A with a VNPAY-style
/// gateway, a 3% platform fee and a 10% hospital share: the payer is sent
/// to that gateway, its signed IPN settles once with the activation's split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activation_chooses_the_gateway_and_the_revenue_share() {
    use base64::Engine as _;
    use vtelehealth_runtime::governance::bundle::Bundle;
    use vtelehealth_runtime::governance::signing::SigningKey;
    use vtelehealth_runtime::identity::NewUser;

    const SECRET: &str = "BVA-HASH-SECRET-2026";
    let no_dev_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_dev_plugins.path(), Limits::default()).await;
    let id = &server.runtime.identity;
    id.create_vendor("vtelehealth-tests", "Tests")
        .await
        .expect("vendor");
    let mut vendor = NewUser::new("dev.tests", "dev", Role::VendorUser, "password-1");
    vendor.vendor_id = Some("vtelehealth-tests".into());
    let vendor = id
        .token_for(&id.create_user(vendor).await.expect("user"))
        .expect("token");
    let reviewer = user(&server, "rev-pay", Role::Reviewer, None).await;
    let admin = user(&server, "admin-pay", Role::HospitalAdmin, Some("bv-a")).await;
    let citizen = user(&server, "cd-pay", Role::Citizen, None).await;

    let key = SigningKey::generate().expect("key");
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
    let (s, b) = send(
        &server,
        "POST",
        "/api/v1/vendor/keys",
        &vendor,
        Some(json!({ "public_key": public })),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (wasm, toml) = vtelehealth_tests::component(&test_plugin_dir(), PROBE);
    let mut bundle = Bundle::new(
        std::fs::read_to_string(toml).expect("manifest"),
        std::fs::read(wasm).expect("component"),
    );
    key.sign(&mut bundle);
    let resp = server
        .client
        .post(format!("{}/api/v1/plugin-versions", server.base))
        .bearer_auth(&vendor)
        .header("content-type", "application/json")
        .body(bundle.to_json())
        .send()
        .await
        .expect("publish");
    assert_eq!(resp.status().as_u16(), 201);
    let version: Value = resp.json().await.expect("json");
    let version = version["id"].as_str().expect("id").to_owned();
    let (s, b) = send(
        &server,
        "POST",
        &format!("/api/v1/plugin-versions/{version}/approve"),
        &reviewer,
        Some(json!({ "granted": ["log", "kv", "payment"], "note": "payments" })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let config = json!({ "payment": {
        "gateway": "vnpay", "platform_fee_bps": 300, "hospital_share_bps": 1000, "max_amount": 5_000_000,
        "vnpay": { "tmn_code": "BVA00001", "pay_url": "https://pay.example.vn/vpcpay.html",
                   "return_url": format!("{}/api/v1/payments/vnpay/return", server.base) } } });
    let activation = format!("/api/v1/hospitals/bv-a/activations/{PROBE}");
    // A VNPAY gateway without its hash secret is refused at activation.
    let (s, b) = send(
        &server,
        "PUT",
        &activation,
        &admin,
        Some(json!({ "version_id": version, "config": config })),
        &[],
    )
    .await;
    assert!(s == 400 || s == 422, "{s} {b}");
    assert!(b.to_string().contains("vnpay_hash_secret"), "{b}");
    let (s, b) = send(&server, "PUT", &activation, &admin,
        Some(json!({ "version_id": version, "config": config, "secrets": { "vnpay_hash_secret": SECRET } })), &[]).await;
    assert_eq!(s, 200, "{b}");

    // The activation's maximum applies.
    let (s, _) = send(
        &server,
        "POST",
        &probe_path("/intents"),
        &citizen,
        Some(order(5_000_001, "max")),
        &[],
    )
    .await;
    assert_eq!(s, 400);
    let (s, b) = send(
        &server,
        "POST",
        &probe_path("/intents"),
        &citizen,
        Some(order(1_000_000, "v-1")),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let intent = b["id"].as_str().expect("id").to_owned();
    let (s, b) = send(
        &server,
        "POST",
        &probe_path(&format!("/intents/{intent}/checkout?return=/done")),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let url = b["url"].as_str().expect("url");
    assert!(
        url.starts_with("https://pay.example.vn/vpcpay.html?vnp_Amount=100000000&"),
        "{url}"
    );
    assert!(url.contains("vnp_TmnCode=BVA00001"), "{url}");

    let fields = |amount: &str| {
        vec![
            ("vnp_Amount", amount.to_owned()),
            ("vnp_BankCode", "NCB".to_owned()),
            ("vnp_ResponseCode", "00".to_owned()),
            ("vnp_TmnCode", "BVA00001".to_owned()),
            ("vnp_TransactionNo", "14422574".to_owned()),
            ("vnp_TransactionStatus", "00".to_owned()),
            ("vnp_TxnRef", intent.clone()),
        ]
    };
    let ipn = |query: String| {
        let url = format!("{}/api/v1/payments/vnpay/ipn?{query}", server.base);
        let client = server.client.clone();
        async move {
            let resp = client.get(url).send().await.expect("ipn");
            assert_eq!(resp.status().as_u16(), 200);
            resp.json::<Value>().await.expect("json")
        }
    };
    let good = gateway_query(&fields("100000000"), SECRET);
    let before = ledger_is_consistent(&server).await;
    let tampered = good.replace("vnp_Amount=100000000", "vnp_Amount=100");
    assert_eq!(ipn(tampered).await["RspCode"], "97");
    assert_eq!(
        ipn(gateway_query(&fields("100000000"), "guessed")).await["RspCode"],
        "97"
    );
    assert_eq!(
        ipn(gateway_query(&fields("99900000"), SECRET)).await["RspCode"],
        "04"
    );
    assert_eq!(ledger_is_consistent(&server).await, before);
    assert_eq!(
        ipn(good.clone()).await,
        json!({ "RspCode": "00", "Message": "Confirm Success" })
    );
    assert_eq!(ipn(good.clone()).await["RspCode"], "02");

    // The browser's return is verified and sent back to the plugin.
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let back = no_follow
        .get(format!(
            "{}/api/v1/payments/vnpay/return?{good}",
            server.base
        ))
        .send()
        .await
        .expect("return");
    assert_eq!(back.status().as_u16(), 303);
    assert_eq!(
        back.headers()["location"].to_str().expect("location"),
        format!("/hospitals/bv-a/plugins/{PROBE}/done?payment={intent}")
    );

    let pool = &server.runtime.db.pool;
    for (account, posted) in [
        (format!("merchant:vendor:{PROBE}"), 870_000),
        ("platform:fee".to_owned(), 30_000),
        ("hospital_share:bv-a".to_owned(), 100_000),
        ("gateway:vnpay".to_owned(), -1_000_000),
    ] {
        assert_eq!(
            ledger::balance(pool, &account)
                .await
                .expect("balance")
                .posted,
            posted,
            "{account}"
        );
    }
    let (_, b) = send(&server, "POST", &probe_path("/settle"), &citizen, None, &[]).await;
    assert_eq!(b["handled"], 1);
    ledger_is_consistent(&server).await;
}
