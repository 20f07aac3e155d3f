//! The `records` capability through a real plugin component
//! (`tests/plugins/records-probe`): its data scopes, purposes of use and
//! constraints are enforced on every call, the caller's own rights apply
//! (tenancy, consent), transactions are all-or-nothing and idempotent.

use serde_json::{Value, json};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::identity::Role;
use vtelehealth_runtime::records::{BHYT_SYSTEM, CCCD_SYSTEM};
use vtelehealth_tests::{TestServer, plugin_set, test_plugin_dir};

use vtelehealth_tests::common::{CITIZEN_ID, lab_observation, send, user};

const PROBE: &str = "records-probe";

async fn probe(
    server: &TestServer,
    hospital: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = server.client.request(
        method.parse().expect("method"),
        server.plugin_url(hospital, PROBE, path),
    );
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn message(body: &Value) -> String {
    body["error"]["message"].as_str().unwrap_or("").to_owned()
}

async fn service_token(server: &TestServer, hospital: &str) -> String {
    server
        .service_token(&format!("his-{hospital}"), hospital)
        .await
}

#[tokio::test]
async fn scopes_purposes_and_tenancy_hold_for_every_call() {
    let dir = plugin_set(&test_plugin_dir(), &[PROBE]);
    let server = TestServer::start(dir.path(), Limits::default()).await;
    let doctor_a = user(&server, "bs-a", Role::Practitioner, Some("bv-a")).await;
    let doctor_b = user(&server, "bs-b", Role::Practitioner, Some("bv-b")).await;
    let citizen = user(&server, "cd-1", Role::Citizen, None).await;
    let his_a = service_token(&server, "bv-a").await;

    // system/Patient.cru and system/Observation.c let the HIS write.
    let (s, patient) = probe(
        &server,
        "bv-a",
        "POST",
        "/create",
        Some(&his_a),
        Some(json!({
            "resourceType": "Patient",
            "identifier": [{ "system": CCCD_SYSTEM, "value": CITIZEN_ID }, { "system": BHYT_SYSTEM, "value": "0198765432" }],
            "name": [{ "family": "Đỗ" }]
        })),
    )
    .await;
    assert_eq!(s, 200, "{patient}");
    let pid = patient["id"].as_str().expect("id").to_owned();
    let mut ids = Vec::new();
    for category in ["laboratory", "vital-signs"] {
        let (s, o) = probe(
            &server,
            "bv-a",
            "POST",
            "/create",
            Some(&his_a),
            Some(lab_observation(&pid, category)),
        )
        .await;
        assert_eq!(s, 200, "{o}");
        ids.push(o["id"].as_str().expect("id").to_owned());
    }
    let (lab, vitals) = (&ids[0], &ids[1]);

    // user/Observation.rs?category=laboratory: a practitioner reads the
    // laboratory result, not the vital signs; search sees only laboratory.
    let (s, o) = probe(
        &server,
        "bv-a",
        "GET",
        &format!("/read/Observation/{lab}"),
        Some(&doctor_a),
        None,
    )
    .await;
    assert_eq!(s, 200, "{o}");
    let (s, o) = probe(
        &server,
        "bv-a",
        "GET",
        &format!("/read/Observation/{vitals}"),
        Some(&doctor_a),
        None,
    )
    .await;
    assert_eq!(s, 403, "{o}");
    assert!(
        message(&o).contains("outside the plugin's data scope"),
        "{o}"
    );
    let q = format!("patient=Patient/{pid}");
    let (s, page) = probe(
        &server,
        "bv-a",
        "GET",
        &format!(
            "/search/Observation?q={}",
            q.replace('/', "%2F").replace('=', "%3D")
        ),
        Some(&doctor_a),
        None,
    )
    .await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["resources"][0]["id"], lab.as_str());

    // Purposes not granted, types not covered, callers without the context.
    let (s, o) = probe(
        &server,
        "bv-a",
        "GET",
        &format!("/read/Observation/{lab}?purpose=payment"),
        Some(&doctor_a),
        None,
    )
    .await;
    assert_eq!(s, 403);
    assert!(message(&o).contains("purpose of use `payment`"), "{o}");
    let (s, o) = probe(
        &server,
        "bv-a",
        "GET",
        "/read/MedicationRequest/x",
        Some(&doctor_a),
        None,
    )
    .await;
    assert_eq!(s, 403);
    assert!(message(&o).contains("no data scope"), "{o}");
    let (s, o) = probe(
        &server,
        "bv-a",
        "GET",
        &format!("/read/Observation/{lab}"),
        Some(&his_a),
        None,
    )
    .await;
    assert_eq!(s, 403, "a service has no user/ context: {o}");
    let (s, o) = probe(
        &server,
        "bv-a",
        "GET",
        &format!("/read/Observation/{lab}"),
        None,
        None,
    )
    .await;
    assert_eq!(s, 403);
    assert!(message(&o).contains("anonymous"), "{o}");
    // Writes outside the scopes: user/ scopes here are read-only.
    let (s, _) = probe(&server, "bv-a", "POST", "/create", Some(&doctor_a), Some(json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"reference": format!("Patient/{pid}")}, "medicationCodeableConcept": {"text": "x"}}))).await;
    assert_eq!(s, 403);
    // Invalid resources are refused by the store, as through /fhir/R4.
    let (s, o) = probe(&server, "bv-a", "POST", "/create", Some(&his_a), Some(json!({"resourceType": "Patient", "identifier": [{"system": CCCD_SYSTEM, "value": "12"}]}))).await;
    assert_eq!(s, 400, "{o}");

    // Cross-hospital through the plugin: B's practitioner needs consent.
    let (s, _) = probe(
        &server,
        "bv-b",
        "GET",
        &format!("/read/Observation/{lab}"),
        Some(&doctor_b),
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (s, c) = send(
        &server,
        "POST",
        "/api/v1/me/consents",
        &citizen,
        Some(json!({ "grantee_hospital": "bv-b" })),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{c}");
    let (s, o) = probe(
        &server,
        "bv-b",
        "GET",
        &format!("/read/Observation/{lab}"),
        Some(&doctor_b),
        None,
    )
    .await;
    assert_eq!(s, 200, "{o}");
    // The system/ context never crosses hospitals, consent or not.
    let his_b = service_token(&server, "bv-b").await;
    let (s, _) = probe(
        &server,
        "bv-b",
        "GET",
        &format!("/read/Patient/{pid}"),
        Some(&his_b),
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (_, log) = send(
        &server,
        "GET",
        "/api/v1/me/record-access",
        &citizen,
        None,
        &[],
    )
    .await;
    assert!(
        log["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["plugin"] == PROBE
                && e["reader_hospital"] == "bv-b"
                && e["basis"]
                    .as_str()
                    .is_some_and(|b| b.starts_with("consent:"))),
        "{log}"
    );

    // A citizen acts in patient/ only: never through the plugin's system/
    // or user/ scopes, even for a type patient/ does not cover.
    let (s, o) = probe(
        &server,
        "bv-a",
        "GET",
        &format!("/read/Patient/{pid}"),
        Some(&citizen),
        None,
    )
    .await;
    assert_eq!(s, 403, "{o}");
    let (s, _) = probe(
        &server,
        "bv-a",
        "POST",
        "/create",
        Some(&citizen),
        Some(json!({"resourceType": "Patient", "name": [{"family": "X"}]})),
    )
    .await;
    assert_eq!(s, 403);

    // An update must find the stored version within the scope too.
    let imaging_order = json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "category": [{"coding": [{"code": "imaging"}]}], "subject": {"reference": format!("Patient/{pid}")}});
    let (s, order) = send(
        &server,
        "POST",
        "/fhir/R4/ServiceRequest",
        &doctor_a,
        Some(imaging_order),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{order}");
    let mut relabelled = order.clone();
    relabelled["category"] = json!([{"coding": [{"code": "laboratory"}]}]);
    let (s, o) = probe(
        &server,
        "bv-a",
        "PUT",
        "/update",
        Some(&his_a),
        Some(relabelled),
    )
    .await;
    assert_eq!(s, 403, "{o}");
    assert!(
        message(&o).contains("outside the plugin's data scopes"),
        "{o}"
    );

    // patient/Observation.rs: the citizen reads their own records only.
    let (s, page) = probe(
        &server,
        "bv-a",
        "GET",
        "/search/Observation",
        Some(&citizen),
        None,
    )
    .await;
    assert_eq!((s, page["total"].clone()), (200, json!(2)), "{page}");
    let (s, other) = probe(
        &server,
        "bv-a",
        "POST",
        "/create",
        Some(&his_a),
        Some(json!({"resourceType": "Patient", "name": [{"family": "Khác"}]})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, o) = probe(
        &server,
        "bv-a",
        "POST",
        "/create",
        Some(&his_a),
        Some(lab_observation(
            other["id"].as_str().expect("id"),
            "laboratory",
        )),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = probe(
        &server,
        "bv-a",
        "GET",
        &format!("/read/Observation/{}", o["id"].as_str().expect("id")),
        Some(&citizen),
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (_, page) = probe(
        &server,
        "bv-a",
        "GET",
        "/search/Observation",
        Some(&citizen),
        None,
    )
    .await;
    assert_eq!(page["total"], 2, "{page}");
}

fn his_bundle(mrn: &str, extra: Option<Value>) -> Value {
    let mut entries = vec![
        json!({
            "fullUrl": "urn:uuid:00000000-0000-4000-8000-00000000000a",
            "resource": { "resourceType": "Patient", "identifier": [{ "system": "urn:bv-a:mrn", "value": mrn }], "name": [{ "family": "Hoàng" }] },
            "request": { "method": "PUT", "url": format!("Patient?identifier=urn:bv-a:mrn|{mrn}") }
        }),
        json!({
            "resource": { "resourceType": "Encounter", "status": "in-progress", "class": { "code": "AMB" },
                          "subject": { "reference": "urn:uuid:00000000-0000-4000-8000-00000000000a" } },
            "request": { "method": "POST", "url": "Encounter" }
        }),
    ];
    entries.extend(extra);
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

async fn total(server: &TestServer, token: &str, ty: &str) -> i64 {
    let (_, b) = send(server, "GET", &format!("/fhir/R4/{ty}"), token, None, &[]).await;
    b["total"].as_i64().unwrap_or(-1)
}

#[tokio::test]
async fn plugin_transactions_are_idempotent_and_all_or_nothing() {
    let dir = plugin_set(&test_plugin_dir(), &[PROBE]);
    let server = TestServer::start(dir.path(), Limits::default()).await;
    let doctor_a = user(&server, "bs-a", Role::Practitioner, Some("bv-a")).await;
    let his_a = service_token(&server, "bv-a").await;
    let count = |ty: &'static str| total(&server, &doctor_a, ty);

    let (s, first) = probe(
        &server,
        "bv-a",
        "POST",
        "/transaction?key=MSG-0001",
        Some(&his_a),
        Some(his_bundle("BN-7", None)),
    )
    .await;
    assert_eq!(s, 200, "{first}");
    assert_eq!((count("Patient").await, count("Encounter").await), (1, 1));
    // The same key again: the first response, nothing written.
    let (s, again) = probe(
        &server,
        "bv-a",
        "POST",
        "/transaction?key=MSG-0001",
        Some(&his_a),
        Some(his_bundle("BN-7", None)),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(again, first);
    assert_eq!((count("Patient").await, count("Encounter").await), (1, 1));
    // A new key, same MRN: the patient is updated, a new encounter added.
    let (s, r) = probe(
        &server,
        "bv-a",
        "POST",
        "/transaction?key=MSG-0002",
        Some(&his_a),
        Some(his_bundle("BN-7", None)),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["entry"][0]["response"]["status"], "200 OK");
    assert_eq!((count("Patient").await, count("Encounter").await), (1, 2));

    // A bad entry, or one outside the scopes: nothing stored, key unused.
    let bad_ref = json!({ "resource": { "resourceType": "Observation", "status": "final", "code": { "text": "x" }, "subject": { "reference": "Patient/missing" } },
                          "request": { "method": "POST", "url": "Observation" } });
    let (s, e) = probe(
        &server,
        "bv-a",
        "POST",
        "/transaction?key=MSG-0003",
        Some(&his_a),
        Some(his_bundle("BN-8", Some(bad_ref))),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    let no_scope = json!({ "resource": { "resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": { "reference": "urn:uuid:00000000-0000-4000-8000-00000000000a" } },
                           "request": { "method": "POST", "url": "ServiceRequest" } });
    let (s, e) = probe(
        &server,
        "bv-a",
        "POST",
        "/transaction?key=MSG-0003",
        Some(&his_a),
        Some(his_bundle("BN-8", Some(no_scope))),
    )
    .await;
    assert_eq!(s, 403, "{e}");
    assert!(message(&e).contains("Bundle.entry[2]"), "{e}");
    assert_eq!((count("Patient").await, count("Encounter").await), (1, 2));
    // The key of a refused message is still free for the corrected one.
    let (s, r) = probe(
        &server,
        "bv-a",
        "POST",
        "/transaction?key=MSG-0003",
        Some(&his_a),
        Some(his_bundle("BN-8", None)),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!((count("Patient").await, count("Encounter").await), (2, 3));
}

/// Opening a consultation through `records` needs its own grant: a plugin
/// with data scopes alone is refused and nothing is recorded.
#[tokio::test]
async fn consultations_need_the_records_consultation_grant() {
    let dir = plugin_set(&test_plugin_dir(), &[PROBE]);
    let server = TestServer::start(dir.path(), Limits::default()).await;
    let doctor_b = user(&server, "bs-b", Role::Practitioner, Some("bv-b")).await;
    let doctor_a = user(&server, "bs-a", Role::Practitioner, Some("bv-a")).await;
    let (s, r) = probe(
        &server,
        "bv-a",
        "POST",
        &format!("/consult?national_id={CITIZEN_ID}"),
        Some(&doctor_a),
        None,
    )
    .await;
    assert_eq!(s, 403, "{r}");
    assert!(message(&r).contains("records:consultation"), "{r}");
    for token in [&doctor_a, &doctor_b] {
        let (s, l) = send(&server, "GET", "/api/v1/consultations", token, None, &[]).await;
        assert_eq!((s, &l["consultations"]), (200, &json!([])), "{l}");
    }
}
