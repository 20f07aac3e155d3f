//! The `payment` capability through a real plugin (`tests/plugins/payment-probe`) and the
//! built-in sandbox gateway: one intent per idempotency key however many requests race,
//! bad input refused with the ledger untouched, a refund never above the capture even when
//! refunds race, settlement events handled once, and the reconciliation report.

use serde_json::{Value, json};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::identity::Role;
use vtelehealth_runtime::payment::ledger;
use vtelehealth_tests::{TestServer, plugin_set, test_plugin_dir};

use vtelehealth_tests::common::{send, user};

const PROBE: &str = "payment-probe";

fn probe_path(path: &str) -> String {
    format!("/hospitals/bv-a/plugins/{PROBE}{path}")
}

/// A new intent for `body` and its checkout (`query` after `/checkout`),
/// both answered 200: the intent's id and the checkout answer.
async fn checked_out(
    server: &TestServer,
    citizen: &str,
    body: Value,
    query: &str,
) -> (String, Value) {
    let (s, b) = send(
        server,
        "POST",
        &probe_path("/intents"),
        citizen,
        Some(body),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let id = b["id"].as_str().expect("id").to_owned();
    let (s, b) = send(
        server,
        "POST",
        &probe_path(&format!("/intents/{id}/checkout{query}")),
        citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    (id, b)
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
    // The link carries the payer's ticket (their session on the sandbox).
    let (page_path, ticket) = url.split_once("?ticket=").expect("a ticket");
    assert_eq!(page_path, format!("/payments/sandbox/{id}"));
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
    let form = [("ticket", ticket)];
    let paid = no_follow
        .post(format!("{}{page_path}/pay", server.base))
        .form(&form)
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
        .post(format!("{}{page_path}/pay", server.base))
        .form(&form)
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
    let (id, _) = checked_out(&server, &citizen, order(50_000, "f1"), "").await;
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

/// `application/x-www-form-urlencoded` as the WHATWG URL standard and the
/// gateway's documentation define it, written here without any library:
/// ASCII letters, digits and `*-._` stay, space is `+`, every other byte is
/// `%XX` (upper-case hex).
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The query string a VNPAY-style gateway sends, signed here without the
/// runtime's helpers, by the documented rules: parameters sorted by name,
/// names and values form-URL-encoded, joined `k=v&k=v`, HMAC-SHA512, hex.
fn gateway_query(fields: &[(&str, String)], secret: &str) -> String {
    let mut sorted = fields.to_vec();
    sorted.sort();
    let data = sorted
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
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

const SECRET: &str = "BVA-HASH-SECRET-2026";

/// The probe through review (granted `payment`), as a vendor would publish
/// it: the approved version's id and a token of hospital A's admin.
async fn reviewed_probe(server: &TestServer) -> (String, String) {
    use base64::Engine as _;
    use vtelehealth_runtime::governance::bundle::Bundle;
    use vtelehealth_runtime::governance::signing::SigningKey;
    use vtelehealth_runtime::identity::NewUser;

    let id = &server.runtime.identity;
    id.create_vendor("vtelehealth-tests", "Tests")
        .await
        .expect("vendor");
    let mut vendor = NewUser::new("dev.tests", "dev", Role::VendorUser, "password-1");
    vendor.vendor_id = Some("vtelehealth-tests".into());
    let vendor = id
        .token_for(&id.create_user(vendor).await.expect("user"))
        .expect("token");
    let reviewer = user(server, "rev-pay", Role::Reviewer, None).await;
    let admin = user(server, "admin-pay", Role::HospitalAdmin, Some("bv-a")).await;

    let key = SigningKey::generate().expect("key");
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
    let (s, b) = send(
        server,
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
        server,
        "POST",
        &format!("/api/v1/plugin-versions/{version}/approve"),
        &reviewer,
        Some(json!({ "granted": ["log", "kv", "payment"], "note": "payments" })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    (version, admin)
}

/// A reviewed payment plugin activated by hospital A with a VNPAY-style
/// gateway, a 3% platform fee and a 10% hospital share: the payer is sent
/// to that gateway, its signed IPN settles once with the activation's split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activation_chooses_the_gateway_and_the_revenue_share() {
    let no_dev_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_dev_plugins.path(), Limits::default()).await;
    let (version, admin) = reviewed_probe(&server).await;
    let citizen = user(&server, "cd-pay", Role::Citizen, None).await;
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
    let (intent, b) =
        checked_out(&server, &citizen, order(1_000_000, "v-1"), "?return=/done").await;
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

/// A production node (no `--demo`, no `--payment-sandbox`) has no sandbox:
/// a module granted `payment` whose activation names no real gateway is
/// refused with a message saying what to configure, a development plugin
/// cannot take payments, and the sandbox's pages do not exist; a real
/// gateway still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_development_flag_payments_need_a_real_gateway() {
    use vtelehealth_runtime::RuntimeOptions;

    let dir = plugin_set(&test_plugin_dir(), &[PROBE]);
    let data = tempfile::TempDir::new().expect("dir");
    let options = RuntimeOptions {
        database_url: format!("sqlite://{}", data.path().join("prod.db").display()),
        plugin_dir: Some(dir.path().to_path_buf()),
        cache_dir: Some(data.path().join("cache")),
        payment_sandbox: false,
        ..RuntimeOptions::default()
    };
    let server = TestServer::start_with(options, data).await;
    assert!(server.runtime.payments.sandbox().is_none());
    let citizen = user(&server, "cd-pay", Role::Citizen, None).await;

    // The unreviewed development copy (at B, where nothing is activated).
    let (s, b) = send(
        &server,
        "POST",
        "/hospitals/bv-b/plugins/payment-probe/intents",
        &citizen,
        Some(order(150_000, "dev")),
        &[],
    )
    .await;
    assert_ne!(s, 200, "{b}");
    assert!(b.to_string().contains("names no payment gateway"), "{b}");
    assert_eq!(intents(&server).await, 0);

    // The sandbox's pages are not there.
    let (s, b) = server
        .get_json(&format!("{}/payments/sandbox/some-intent", server.base))
        .await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")));
    let resp = server
        .client
        .post(format!("{}/payments/sandbox/some-intent/pay", server.base))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 404);

    // The reviewed module, activated with default settings: refused, clearly.
    let (version, admin) = reviewed_probe(&server).await;
    let activation = format!("/api/v1/hospitals/bv-a/activations/{PROBE}");
    let (s, b) = send(
        &server,
        "PUT",
        &activation,
        &admin,
        Some(json!({ "version_id": version })),
        &[],
    )
    .await;
    assert_eq!(s, 422, "{b}");
    let message = b["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("names no payment gateway") && message.contains("--payment-sandbox"),
        "{b}"
    );
    // Naming the sandbox explicitly is refused the same way.
    let (s, _) = send(
        &server,
        "PUT",
        &activation,
        &admin,
        Some(json!({ "version_id": version, "config": { "payment": { "gateway": "sandbox" } } })),
        &[],
    )
    .await;
    assert_eq!(s, 422);
    let (s, b) = send(
        &server,
        "GET",
        "/api/v1/hospitals/bv-a/activations",
        &admin,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(!b.to_string().contains(PROBE), "nothing was activated: {b}");

    // A real gateway is accepted and used.
    let config = json!({ "payment": { "gateway": "vnpay",
        "vnpay": { "tmn_code": "BVA00001", "pay_url": "https://pay.example.vn/vpcpay.html",
                   "return_url": format!("{}/api/v1/payments/vnpay/return", server.base) } } });
    let (s, b) = send(&server, "PUT", &activation, &admin,
        Some(json!({ "version_id": version, "config": config, "secrets": { "vnpay_hash_secret": SECRET } })), &[]).await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = checked_out(&server, &citizen, order(150_000, "real"), "").await;
    assert!(
        b["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://pay.example.vn/")),
        "{b}"
    );
}

/// The sandbox page and its posts need the payer's session (the ticket of
/// the checkout link, bound to the intent) and refuse cross-site posts
/// (CSRF): nothing moves until the payer's own page posts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_page_needs_the_payers_ticket_and_refuses_cross_site_posts() {
    let dir = plugin_set(&test_plugin_dir(), &[PROBE]);
    let server = TestServer::start(dir.path(), Limits::default()).await;
    let citizen = user(&server, "cd-pay", Role::Citizen, None).await;
    let checkout = |key: &'static str| {
        let (server, citizen) = (&server, &citizen);
        async move {
            let (id, b) = checked_out(server, citizen, order(80_000, key), "").await;
            let url = b["url"].as_str().expect("url");
            let (page, ticket) = url.split_once("?ticket=").expect("a ticket");
            assert_eq!(page, format!("/payments/sandbox/{id}"));
            (id, ticket.to_owned())
        }
    };
    let (id, ticket) = checkout("csrf-1").await;
    let (_, other_ticket) = checkout("csrf-2").await;
    let page = format!("{}/payments/sandbox/{id}", server.base);

    // The page: only with the ticket; it is not cached, leaked or framed.
    let (s, b) = server.get_json(&page).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let resp = server
        .client
        .get(format!("{page}?ticket={ticket}"))
        .send()
        .await
        .expect("page");
    assert_eq!(resp.status().as_u16(), 200);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("referrer-policy"), "same-origin");
    assert_eq!(header("cache-control"), "no-store");
    assert!(header("content-security-policy").contains("frame-ancestors 'none'"));
    let html = resp.text().await.expect("html");
    assert!(
        html.contains(&format!("name=\"ticket\" value=\"{ticket}\"")),
        "{html}"
    );

    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let pay = format!("{page}/pay");
    let post = |form: Vec<(&'static str, String)>, headers: Vec<(&'static str, String)>| {
        let mut req = no_follow.post(&pay).form(&form);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move {
            let resp = req.send().await.expect("post");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let before = ledger_is_consistent(&server).await;
    // Anonymous, forged, or another intent's ticket: 401.
    for form in [
        vec![],
        vec![("ticket", String::new())],
        vec![("ticket", "9999999999999.Y2QtcGF5.AAAA".to_owned())],
        vec![("ticket", other_ticket.clone())],
    ] {
        let (s, b) = post(form.clone(), vec![]).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{form:?}: {b}"
        );
    }
    // The payer's ticket, posted from another site (or an opaque origin): 403.
    for headers in [
        vec![("origin", "https://evil.example".to_owned())],
        vec![("origin", "null".to_owned())],
        vec![("sec-fetch-site", "cross-site".to_owned())],
        vec![
            ("origin", server.base.clone()),
            ("sec-fetch-site", "same-site".to_owned()),
        ],
    ] {
        let (s, b) = post(vec![("ticket", ticket.clone())], headers.clone()).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{headers:?}: {b}"
        );
        assert!(
            b["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("cross-site")),
            "{b}"
        );
    }
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
    assert_eq!(b["state"], "pending", "nothing moved: {b}");

    // From the page itself, as a browser posts it: paid.
    let (s, _) = post(
        vec![("ticket", ticket.clone())],
        vec![
            ("origin", server.base.clone()),
            ("sec-fetch-site", "same-origin".to_owned()),
        ],
    )
    .await;
    assert_eq!(s, 303);
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
}

/// Undo [`form_encode`] (test helper: `+` is space, `%XX` a byte).
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).expect("utf-8")
}

/// VNPAY details: the redirect's order description is Vietnamese without
/// diacritics or punctuation, and the whole redirect is exactly what an
/// independent implementation of the documented signing rules produces; a
/// validly signed IPN (or return) for another merchant code settles
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vnpay_descriptions_are_signed_as_documented_and_other_merchant_codes_are_refused() {
    let no_dev_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_dev_plugins.path(), Limits::default()).await;
    let (version, admin) = reviewed_probe(&server).await;
    let citizen = user(&server, "cd-pay", Role::Citizen, None).await;
    let config = json!({ "payment": { "gateway": "vnpay",
        "vnpay": { "tmn_code": "BVA00001", "pay_url": "https://pay.example.vn/vpcpay.html",
                   "return_url": format!("{}/api/v1/payments/vnpay/return", server.base) } } });
    let (s, b) = send(&server, "PUT", &format!("/api/v1/hospitals/bv-a/activations/{PROBE}"), &admin,
        Some(json!({ "version_id": version, "config": config, "secrets": { "vnpay_hash_secret": SECRET } })), &[]).await;
    assert_eq!(s, 200, "{b}");
    let mut new = order(320_000, "vn-1");
    new["purpose"] = json!("Đơn thuốc số 7: Paracetamol 500mg (2 hộp), giao tận nhà!");
    let (intent, b) = checked_out(&server, &citizen, new, "").await;
    let url = b["url"].as_str().expect("url");
    let query = url
        .strip_prefix("https://pay.example.vn/vpcpay.html?")
        .expect("the gateway's page");
    let fields: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k != "vnp_SecureHash")
        .map(|(k, v)| (form_decode(k), form_decode(v)))
        .collect();
    let info = fields
        .iter()
        .find(|(k, _)| k == "vnp_OrderInfo")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        info,
        Some("Don thuoc so 7 Paracetamol 500mg 2 hop giao tan nha")
    );
    let borrowed: Vec<(&str, String)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    assert_eq!(
        gateway_query(&borrowed, SECRET),
        query,
        "the redirect is signed exactly as the documented rules say"
    );

    let notice = |tmn: &str| {
        vec![
            ("vnp_Amount", "32000000".to_owned()),
            ("vnp_BankCode", "NCB".to_owned()),
            (
                "vnp_OrderInfo",
                "Don thuoc so 7 Paracetamol 500mg 2 hop giao tan nha".to_owned(),
            ),
            ("vnp_ResponseCode", "00".to_owned()),
            ("vnp_TmnCode", tmn.to_owned()),
            ("vnp_TransactionNo", "14422999".to_owned()),
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
    let before = ledger_is_consistent(&server).await;
    // Validly signed, but for another merchant's terminal: not this order.
    let other = gateway_query(&notice("BVZ99999"), SECRET);
    assert_eq!(
        ipn(other.clone()).await,
        json!({ "RspCode": "01", "Message": "Order not found" })
    );
    let mut missing = notice("BVA00001");
    missing.retain(|(k, _)| *k != "vnp_TmnCode");
    assert_eq!(ipn(gateway_query(&missing, SECRET)).await["RspCode"], "01");
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let back = no_follow
        .get(format!(
            "{}/api/v1/payments/vnpay/return?{other}",
            server.base
        ))
        .send()
        .await
        .expect("return");
    assert_eq!(back.status().as_u16(), 200, "not sent on as paid");
    assert_eq!(ledger_is_consistent(&server).await, before);
    let (_, b) = send(
        &server,
        "GET",
        &probe_path(&format!("/intents/{intent}")),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(b["state"], "pending");

    // The activation's own terminal, with the description it was sent: paid.
    assert_eq!(
        ipn(gateway_query(&notice("BVA00001"), SECRET)).await,
        json!({ "RspCode": "00", "Message": "Confirm Success" })
    );
    let (_, b) = send(
        &server,
        "GET",
        &probe_path(&format!("/intents/{intent}")),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(b["state"], "succeeded");
}

/// In a real browser: a form on another origin (here a `data:` page, whose
/// origin is opaque) posting the payer's ticket to the sandbox is refused
/// and moves nothing; the sandbox page's own pay button works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_only_the_sandbox_page_itself_can_pay() {
    use vtelehealth_tests::browser::{Browser, chromium};
    let Some(chromium) = chromium() else { return };
    let dir = plugin_set(&test_plugin_dir(), &[PROBE]);
    let server = TestServer::start(dir.path(), Limits::default()).await;
    let citizen = user(&server, "cd-pay", Role::Citizen, None).await;
    let (id, b) = checked_out(&server, &citizen, order(90_000, "browser"), "?return=/done").await;
    let link = format!("{}{}", server.base, b["url"].as_str().expect("url"));
    let ticket = link.split_once("?ticket=").expect("ticket").1.to_owned();
    let state = || async {
        let (_, b) = send(
            &server,
            "GET",
            &probe_path(&format!("/intents/{id}")),
            &citizen,
            None,
            &[],
        )
        .await;
        b["state"].as_str().unwrap_or_default().to_owned()
    };

    // Another site's page auto-submits the stolen ticket.
    let attack = format!(
        "data:text/html,<form method=post action=\"{}/payments/sandbox/{id}/pay\">\
         <input name=ticket value=\"{ticket}\"></form><script>document.forms[0].submit()</script>",
        server.base
    );
    let mut b = Browser::launch(&chromium, &attack).await.expect("chromium");
    let mut refused = Value::Null;
    for _ in 0..100 {
        refused = b
            .eval("document.body ? document.body.innerText : ''")
            .await
            .unwrap_or_default();
        if refused.as_str().is_some_and(|t| t.contains("cross-site")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        refused.as_str().is_some_and(|t| t.contains("cross-site")),
        "{refused}"
    );
    assert_eq!(state().await, "pending");

    // The payer on the sandbox page itself.
    b.call("Page.navigate", json!({ "url": link }))
        .await
        .expect("navigate");
    let mut clicked = false;
    for _ in 0..100 {
        let done = b
            .eval("(() => { const f = document.querySelector('form[action$=\"/pay\"]'); if (!f) return false; f.querySelector('button').click(); return true; })()")
            .await
            .unwrap_or_default();
        if done == json!(true) {
            clicked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(clicked, "the pay button");
    let mut paid = String::new();
    for _ in 0..100 {
        paid = state().await;
        if paid == "succeeded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let page = b
        .eval("document.location.href + ' ' + (document.body ? document.body.innerText : '')")
        .await
        .unwrap_or_default();
    assert_eq!(paid, "succeeded", "{page}");
    b.kill().await;
}
