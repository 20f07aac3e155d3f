//! The reference `epharmacy` plugin, reviewed and activated by hospital A with two pharmacy
//! partners: a doctor prescribes through `/fhir/R4`, the citizen orders and pays through the
//! sandbox gateway, the settlement confirms the order once, the pharmacy (a service client)
//! takes it to delivered; a cancel before dispensing refunds the whole payment and leaves the
//! ledger balanced; a cancel after dispensing, another citizen's reads and cancels, and
//! orders of unknown or other people's prescriptions are refused.

use serde_json::{Value, json};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::identity::{NewUser, Role};
use vtelehealth_runtime::payment::ledger;
use vtelehealth_runtime::records::CCCD_SYSTEM;
use vtelehealth_tests::{TestServer, plugin_dir};

use vtelehealth_tests::common::{patient_with_lab, send, user};

const PLUGIN: &str = "epharmacy";
const CAPABILITIES: [&str; 6] = [
    "log",
    "kv",
    "identity",
    "payment",
    "records:patient/MedicationRequest.rs",
    "records:purpose=payment",
];

fn path(p: &str) -> String {
    format!("/hospitals/bv-a/plugins/{PLUGIN}{p}")
}

async fn service_token(server: &TestServer, client_id: &str, hospital: &str) -> String {
    server.service_token(client_id, hospital).await
}

/// Publish, approve and activate the plugin at bv-a with `config`.
pub(crate) async fn activate(server: &TestServer, config: Value) {
    use base64::Engine as _;
    use vtelehealth_runtime::governance::bundle::Bundle;
    use vtelehealth_runtime::governance::signing::SigningKey;

    let id = &server.runtime.identity;
    id.create_vendor("vtelehealth", "VTelehealth")
        .await
        .expect("vendor");
    let mut vendor = NewUser::new("dev.vth", "dev", Role::VendorUser, "password-1");
    vendor.vendor_id = Some("vtelehealth".into());
    let vendor = id
        .token_for(&id.create_user(vendor).await.expect("user"))
        .expect("token");
    let reviewer = user(server, "rev-ph", Role::Reviewer, None).await;
    let admin = user(server, "admin-ph", Role::HospitalAdmin, Some("bv-a")).await;
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
    let (wasm, toml) = vtelehealth_tests::component(&plugin_dir(), PLUGIN);
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
        Some(json!({ "granted": CAPABILITIES, "note": "e-pharmacy" })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let activation = format!("/api/v1/hospitals/bv-a/activations/{PLUGIN}");
    // A negative price is refused by the plugin's activation hook.
    let (s, b) = send(
        server,
        "PUT",
        &activation,
        &admin,
        Some(json!({ "version_id": version, "config": { "pharmacies": [
            { "id": "x", "name": "X", "prices": { "A": -1 } }] } })),
        &[],
    )
    .await;
    assert!(s == 400 || s == 422, "{s} {b}");
    let (s, b) = send(
        server,
        "PUT",
        &activation,
        &admin,
        Some(json!({ "version_id": version, "config": config })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

pub(crate) async fn prescribe(
    server: &TestServer,
    doctor: &str,
    patient: &str,
    code: &str,
    qty: i64,
) -> String {
    let (s, b) = send(
        server,
        "POST",
        "/fhir/R4/MedicationRequest",
        doctor,
        Some(json!({
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": { "reference": format!("Patient/{patient}") },
            "authoredOn": "2026-11-24",
            "medicationCodeableConcept": {
                "coding": [{ "system": "http://www.whocc.no/atc", "code": code }],
                "text": code
            },
            "dispenseRequest": { "quantity": { "value": qty } }
        })),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().expect("id").to_owned()
}

async fn pay(server: &TestServer, checkout: &str) {
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    // The checkout link carries the payer's ticket; the page posts it back.
    let (page, ticket) = checkout.split_once("?ticket=").expect("a ticket");
    let paid = no_follow
        .post(format!("{}{page}/pay", server.base))
        .form(&[("ticket", ticket)])
        .send()
        .await
        .expect("pay");
    assert_eq!(paid.status().as_u16(), 303);
}

async fn intent_state(server: &TestServer, id: &str) -> String {
    sqlx::query_scalar::<_, String>("SELECT state FROM payment_intents WHERE id = $1")
        .bind(id)
        .fetch_one(&server.runtime.db.pool)
        .await
        .expect("intent")
}

async fn posted(server: &TestServer, account: &str) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT CAST(posted AS BIGINT) FROM ledger_accounts WHERE id = $1")
        .bind(account)
        .fetch_one(&server.runtime.db.pool)
        .await
        .expect("account")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_pay_follow_and_cancel_with_a_refund() {
    let no_dev_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_dev_plugins.path(), Limits::default()).await;
    activate(
        &server,
        json!({ "pharmacies": [
            { "id": "pk-long-chau", "name": "Nhà thuốc Long Châu", "prices": { "J01CA04": 12_000, "N02BE01": 1_500 } },
            { "id": "pk-an-khang", "name": "Nhà thuốc An Khang", "prices": { "N02BE01": 1_400 },
              "client": "pharmacy-an-khang" }
        ] }),
    )
    .await;
    let doctor = user(&server, "dr-ph", Role::Practitioner, Some("bv-a")).await;
    let citizen = user(&server, "cd-1", Role::Citizen, None).await;
    let stranger = user(&server, "cd-2", Role::Citizen, None).await;
    let pharmacy = service_token(&server, "pharmacy-long-chau", "bv-a").await;
    let elsewhere = service_token(&server, "pharmacy-bv-b", "bv-b").await;
    let (patient, _) = patient_with_lab(&server, &doctor).await;
    let amoxicillin = prescribe(&server, &doctor, &patient, "J01CA04", 20).await;
    let paracetamol = prescribe(&server, &doctor, &patient, "N02BE01", 10).await;
    let aspirin = prescribe(&server, &doctor, &patient, "B01AC06", 30).await;
    // Another citizen's prescription.
    let (s, other) = send(&server, "POST", "/fhir/R4/Patient", &doctor,
        Some(json!({ "resourceType": "Patient", "identifier": [{ "system": CCCD_SYSTEM, "value": "001099000001" }] })), &[]).await;
    assert_eq!(s, 201, "{other}");
    let theirs = prescribe(
        &server,
        &doctor,
        other["id"].as_str().expect("id"),
        "N02BE01",
        5,
    )
    .await;

    // The citizen sees their active prescriptions only.
    let (s, b) = send(&server, "GET", &path("/prescriptions"), &citizen, None, &[]).await;
    assert_eq!(s, 200, "{b}");
    let mut ids: Vec<&str> = b["prescriptions"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    ids.sort_unstable();
    let mut want = vec![amoxicillin.as_str(), paracetamol.as_str(), aspirin.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want, "{b}");

    // Bad input: unknown or someone else's prescription, unknown pharmacy, unpriced drug.
    let order =
        |mr: &str, pharmacy: &str| json!({ "medication_request": mr, "pharmacy": pharmacy });
    for (body, status) in [
        (order("no-such-id", "pk-long-chau"), 404),
        (order(&theirs, "pk-long-chau"), 403),
        (order(&amoxicillin, "pk-nowhere"), 400),
        (order(&amoxicillin, "pk-an-khang"), 409),
        (json!({ "pharmacy": "pk-long-chau" }), 400),
    ] {
        let (s, b) = send(
            &server,
            "POST",
            &path("/orders"),
            &citizen,
            Some(body.clone()),
            &[],
        )
        .await;
        assert!(
            s == status || (status == 403 && s == 404),
            "{body}: {s} {b}"
        );
    }
    let (s, _) = send(
        &server,
        "POST",
        &path("/orders"),
        &doctor,
        Some(order(&amoxicillin, "pk-long-chau")),
        &[],
    )
    .await;
    assert_eq!(s, 403, "practitioners do not order");

    // Order, pay at the sandbox, confirmed once.
    let (s, b) = send(
        &server,
        "POST",
        &path("/orders"),
        &citizen,
        Some(order(&amoxicillin, "pk-long-chau")),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["order"]["amount"], 240_000);
    assert_eq!(b["order"]["status"], "awaiting-payment");
    let first = b["order"]["id"].as_str().expect("id").to_owned();
    let first_payment = b["order"]["payment"].as_str().expect("payment").to_owned();
    let checkout = b["checkout_url"].as_str().expect("url").to_owned();
    assert!(
        checkout.starts_with(&format!("/payments/sandbox/{first_payment}?ticket=")),
        "{checkout}"
    );
    // Not paid yet: the pharmacy cannot dispense.
    let (s, _) = send(
        &server,
        "POST",
        &path(&format!("/pharmacy/orders/{first}/status")),
        &pharmacy,
        Some(json!({ "status": "dispensed" })),
        &[],
    )
    .await;
    assert_eq!(s, 409);
    pay(&server, &checkout).await;
    let (s, b) = send(
        &server,
        "GET",
        &path(&format!("/orders/{first}")),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "confirmed");
    let (_, b) = send(&server, "POST", &path("/settle"), &citizen, None, &[]).await;
    assert_eq!(b["handled"], 0, "the event was handled once already");
    let (_, b) = send(
        &server,
        "GET",
        &path(&format!("/orders/{first}")),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(b["history"], json!(["awaiting-payment", "confirmed"]));

    // The other citizen neither sees nor cancels it.
    let (s, _) = send(
        &server,
        "GET",
        &path(&format!("/orders/{first}")),
        &stranger,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = send(
        &server,
        "POST",
        &path(&format!("/orders/{first}/cancel")),
        &stranger,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404);
    let (_, b) = send(&server, "GET", &path("/orders"), &stranger, None, &[]).await;
    assert_eq!(b["orders"], json!([]));
    // A citizen cannot advance orders.
    let (s, _) = send(
        &server,
        "POST",
        &path(&format!("/pharmacy/orders/{first}/status")),
        &citizen,
        Some(json!({ "status": "dispensed" })),
        &[],
    )
    .await;
    assert_eq!(s, 403);

    // The pharmacy moves it on, one step at a time.
    let (s, b) = send(
        &server,
        "GET",
        &path("/pharmacy/orders"),
        &pharmacy,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["orders"].as_array().map(Vec::len), Some(1), "{b}");
    let step = |status: &'static str| {
        let url = path(&format!("/pharmacy/orders/{first}/status"));
        let server = &server;
        let pharmacy = &pharmacy;
        async move {
            send(
                server,
                "POST",
                &url,
                pharmacy,
                Some(json!({ "status": status })),
                &[],
            )
            .await
        }
    };
    let (s, _) = step("delivered").await;
    assert_eq!(s, 409, "skipping steps is refused");
    for status in ["dispensed", "out-for-delivery", "delivered"] {
        let (s, b) = step(status).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["status"], status);
    }
    let (s, _) = step("dispensed").await;
    assert_eq!(s, 409, "delivered is final");
    let (s, b) = send(
        &server,
        "POST",
        &path(&format!("/orders/{first}/cancel")),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(intent_state(&server, &first_payment).await, "succeeded");

    // A second order, paid and cancelled before dispensing: refunded in full.
    let (s, b) = send(
        &server,
        "POST",
        &path("/orders"),
        &citizen,
        Some(order(&paracetamol, "pk-an-khang")),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["order"]["amount"], 14_000);
    let second = b["order"]["id"].as_str().expect("id").to_owned();
    let second_payment = b["order"]["payment"].as_str().expect("payment").to_owned();
    pay(&server, b["checkout_url"].as_str().expect("url")).await;
    // Paid, confirmed; another pharmacy's client and another hospital's service cannot touch it.
    for token in [&pharmacy, &elsewhere] {
        let (s, b) = send(
            &server,
            "POST",
            &path(&format!("/pharmacy/orders/{second}/status")),
            token,
            Some(json!({ "status": "dispensed" })),
            &[],
        )
        .await;
        assert_eq!(s, 403, "{b}");
    }
    let (_, b) = send(
        &server,
        "GET",
        &path(&format!("/orders/{second}")),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(b["status"], "confirmed");
    let (s, b) = send(
        &server,
        "POST",
        &path(&format!("/orders/{second}/cancel")),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b["status"].as_str(), b["refunded"].as_i64()),
        (Some("cancelled"), Some(14_000))
    );
    assert_eq!(intent_state(&server, &second_payment).await, "refunded");
    // Cancelling again refunds nothing more; a pharmacy cannot dispense it.
    let (s, b) = send(
        &server,
        "POST",
        &path(&format!("/orders/{second}/cancel")),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!((s, b["refunded"].as_i64()), (200, Some(14_000)), "{b}");
    let (s, _) = send(
        &server,
        "POST",
        &path(&format!("/pharmacy/orders/{second}/status")),
        &pharmacy,
        Some(json!({ "status": "dispensed" })),
        &[],
    )
    .await;
    assert_eq!(s, 403, "not theirs (the order is cancelled, too)");

    // A third order cancelled before paying: the intent is cancelled, nothing refunded.
    let (s, b) = send(
        &server,
        "POST",
        &path("/orders"),
        &citizen,
        Some(order(&paracetamol, "pk-long-chau")),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let third = b["order"]["id"].as_str().expect("id").to_owned();
    let third_payment = b["order"]["payment"].as_str().expect("payment").to_owned();
    let (s, b) = send(
        &server,
        "POST",
        &path(&format!("/orders/{third}/cancel")),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!((s, b["refunded"].as_i64()), (200, Some(0)), "{b}");
    assert_eq!(intent_state(&server, &third_payment).await, "cancelled");

    // The ledger: balanced; the vendor keeps the delivered order only (sandbox, no fee).
    let check = ledger::check(&server.runtime.db.pool).await.expect("check");
    assert!(check.is_consistent(), "{check:?}");
    assert_eq!(posted(&server, "merchant:vendor:epharmacy").await, 240_000);
    assert_eq!(posted(&server, "gateway:sandbox").await, -240_000);

    // The citizen's list: all three orders, in their states.
    let (_, b) = send(&server, "GET", &path("/orders"), &citizen, None, &[]).await;
    let mut states: Vec<(String, String)> = b["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap_or("").to_owned(),
                o["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    states.sort();
    let mut want = vec![
        (first, "delivered".to_owned()),
        (second, "cancelled".to_owned()),
        (third, "cancelled".to_owned()),
    ];
    want.sort();
    assert_eq!(states, want);
}

/// Calls of the plugin at bv-a that reached it (the host's tally).
fn plugin_calls(server: &TestServer) -> u64 {
    server
        .runtime
        .metrics
        .usage(Some("bv-a"))
        .iter()
        .filter(|u| u.plugin == PLUGIN)
        .map(|u| u.calls)
        .sum()
}

/// The reviewed manifest is the plugin's whole HTTP surface: a route it
/// does not declare is 404 and a caller with none of the route's roles 403,
/// both answered by the host before the plugin runs (the plugin's call
/// count stays put). `POST /settle`, which the plugin serves, is declared,
/// and reviewers read the same routes table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_routes_and_roles_are_refused_before_the_plugin_runs() {
    let no_dev_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_dev_plugins.path(), Limits::default()).await;
    activate(
        &server,
        json!({ "pharmacies": [
            { "id": "pk-long-chau", "name": "Nhà thuốc Long Châu", "prices": { "N02BE01": 1_500 } }
        ] }),
    )
    .await;
    let citizen = user(&server, "cd-1", Role::Citizen, None).await;
    let doctor = user(&server, "dr-rt", Role::Practitioner, Some("bv-a")).await;
    let reviewer = user(&server, "rev-rt", Role::Reviewer, None).await;
    for (method, route, token, status, says) in [
        (
            "POST",
            "/refunds",
            &citizen,
            404,
            "declares no route `/refunds`",
        ),
        ("GET", "/admin/export", &citizen, 404, "declares no route"),
        ("DELETE", "/orders", &citizen, 404, "for GET, POST only"),
        (
            "GET",
            "/orders/dh-1/items",
            &citizen,
            404,
            "declares no route",
        ),
        // Not decoded: the plugin would not see `orders` either.
        ("GET", "/%6Frders", &citizen, 404, "declares no route"),
        (
            "GET",
            "/orders",
            &doctor,
            403,
            "serves the roles citizen only",
        ),
        (
            "GET",
            "/prescriptions",
            &doctor,
            403,
            "serves the roles citizen only",
        ),
        (
            "POST",
            "/settle",
            &doctor,
            403,
            "citizen, service, hospital-admin",
        ),
    ] {
        let (s, b) = send(&server, method, &path(route), token, None, &[]).await;
        assert_eq!(s, status, "{method} {route}: {b}");
        let message = b["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{method} {route}: {b}");
    }
    assert_eq!(
        plugin_calls(&server),
        0,
        "no refused call reached the plugin"
    );
    // A declared route, for its role, reaches the plugin.
    let (s, b) = send(&server, "POST", &path("/settle"), &citizen, None, &[]).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["handled"], 0);
    assert_eq!(plugin_calls(&server), 1);
    // Reviewers read the routes the host enforces.
    let (s, b) = send(
        &server,
        "GET",
        "/api/v1/plugin-versions",
        &reviewer,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let routes = b["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["plugin"] == PLUGIN))
        .map(|v| v["routes"].clone())
        .expect("the version");
    assert!(
        routes.as_array().is_some_and(|rs| rs.contains(&json!({
            "path": "/settle", "methods": ["POST"], "roles": ["citizen", "service", "hospital-admin"]
        }))),
        "{routes}"
    );
}
