//! Cross-hospital record access end to end: records stay with the hospital
//! that wrote them; another hospital reads them only with the citizen's
//! active consent (for the purpose consented) or an active consultation
//! between the two hospitals; every cross-hospital read is audited and the
//! citizen lists who read their record, when and why. Also FHIR transaction
//! Bundles through `POST /fhir/R4`: all entries or none.

use serde_json::{Value, json};
use vtelehealth_runtime::governance::audit::AuditFilter;
use vtelehealth_runtime::identity::Role;
use vtelehealth_runtime::records::{BHYT_SYSTEM, CCCD_SYSTEM};
use vtelehealth_tests::TestServer;

use vtelehealth_tests::common::{
    CITIZEN_ID, HEALTH_ID, lab_observation, patient_with_lab, send, server, user,
};

fn enc(s: &str) -> String {
    s.replace(':', "%3A")
        .replace('/', "%2F")
        .replace('|', "%7C")
}

async fn audit_count(server: &TestServer, action: &str) -> usize {
    server
        .runtime
        .governance
        .audit
        .list(&AuditFilter {
            action_prefix: Some(action.into()),
            ..Default::default()
        })
        .await
        .expect("audit")
        .len()
}

#[tokio::test]
async fn consent_opens_another_hospitals_records_until_revoked() {
    let server = server().await;
    let doctor_a = user(&server, "bs-a", Role::Practitioner, Some("bv-a")).await;
    let doctor_b = user(&server, "bs-b", Role::Practitioner, Some("bv-b")).await;
    let citizen = user(&server, "cd-1", Role::Citizen, None).await;
    let stranger = user(&server, "cd-2", Role::Citizen, None).await;
    let (_pid, oid) = patient_with_lab(&server, &doctor_a).await;
    let read_path = format!("/fhir/R4/Observation/{oid}");
    let search_path = format!(
        "/fhir/R4/Observation?patient.identifier={}",
        enc(&format!("{CCCD_SYSTEM}|{CITIZEN_ID}"))
    );

    // Without consent: denied and audited; a search finds nothing there.
    let (s, body) = send(&server, "GET", &read_path, &doctor_b, None, &[]).await;
    assert_eq!(s, 403, "{body}");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or("")
            .contains("consent"),
        "{body}"
    );
    assert_eq!(audit_count(&server, "records.access_denied").await, 1);
    let (s, body) = send(&server, "GET", &search_path, &doctor_b, None, &[]).await;
    assert_eq!((s, body["total"].clone()), (200, json!(0)), "{body}");

    // The citizen consents, for treatment, to hospital B reading A's records.
    let (s, consent) = send(
        &server,
        "POST",
        "/api/v1/me/consents",
        &citizen,
        Some(
            json!({ "grantee_hospital": "bv-b", "source_hospital": "bv-a", "expires_in_days": 30 }),
        ),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{consent}");
    assert_eq!(consent["resourceType"], "Consent");
    assert_eq!(consent["status"], "active");
    assert_eq!(consent["provision"]["purpose"][0]["code"], "TREAT");
    let consent_id = consent["id"].as_str().expect("id").to_owned();

    let (s, body) = send(&server, "GET", &read_path, &doctor_b, None, &[]).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = send(&server, "GET", &search_path, &doctor_b, None, &[]).await;
    assert_eq!((s, body["total"].clone()), (200, json!(1)), "{body}");
    // By the health ID too.
    let by_health_id = format!(
        "/fhir/R4/Observation?patient.identifier={}",
        enc(&format!("{BHYT_SYSTEM}|{HEALTH_ID}"))
    );
    let (_, body) = send(&server, "GET", &by_health_id, &doctor_b, None, &[]).await;
    assert_eq!(body["total"], 1, "{body}");
    // The consent is for treatment only.
    let (s, body) = send(
        &server,
        "GET",
        &read_path,
        &doctor_b,
        None,
        &[("x-purpose-of-use", "HPAYMT")],
    )
    .await;
    assert_eq!(s, 403, "{body}");
    let (s, _) = send(
        &server,
        "GET",
        &read_path,
        &doctor_b,
        None,
        &[("x-purpose-of-use", "gossip")],
    )
    .await;
    assert_eq!(s, 400);
    // Reading is not writing: B still cannot update A's record.
    let (_, current) = send(&server, "GET", &read_path, &doctor_a, None, &[]).await;
    let (s, _) = send(
        &server,
        "PUT",
        &read_path,
        &doctor_b,
        Some(current.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 403);

    // An Observation first filed under another patient, then corrected to
    // this citizen: its current version is readable, its history is not.
    let (s, other) = send(&server, "POST", "/fhir/R4/Patient", &doctor_a,
        Some(json!({"resourceType": "Patient", "identifier": [{ "system": CCCD_SYSTEM, "value": "001077000777" }]})), &[]).await;
    assert_eq!(s, 201, "{other}");
    let (s, misfiled) = send(
        &server,
        "POST",
        "/fhir/R4/Observation",
        &doctor_a,
        Some(lab_observation(
            other["id"].as_str().expect("id"),
            "laboratory",
        )),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{misfiled}");
    let mut corrected = misfiled.clone();
    corrected["subject"]["reference"] = current["subject"]["reference"].clone();
    let misfiled_path = format!(
        "/fhir/R4/Observation/{}",
        misfiled["id"].as_str().expect("id")
    );
    let (s, _) = send(
        &server,
        "PUT",
        &misfiled_path,
        &doctor_a,
        Some(corrected),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(&server, "GET", &misfiled_path, &doctor_b, None, &[]).await;
    assert_eq!(s, 200);
    let (s, _) = send(
        &server,
        "GET",
        &format!("{misfiled_path}/_history"),
        &doctor_b,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(
        &server,
        "GET",
        &format!("{misfiled_path}/_history/1"),
        &doctor_b,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 403);

    // Every cross-hospital read is in the audit trail.
    assert_eq!(audit_count(&server, "records.cross_hospital_read").await, 4);

    // The citizen sees who read their record, when and why.
    let (s, log) = send(
        &server,
        "GET",
        "/api/v1/me/record-access",
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{log}");
    let entries = log["entries"].as_array().expect("entries");
    let by_b: Vec<&Value> = entries
        .iter()
        .filter(|e| e["reader_hospital"] == "bv-b")
        .collect();
    assert_eq!(by_b.len(), 4, "{log}");
    assert!(by_b.iter().all(|e| e["reader_name"] == "Dr. bs-b"
        && e["records_of_hospital"] == "bv-a"
        && e["records_of_hospital_name"] == "Bệnh viện A"
        && e["purpose"] == "treatment"
        && e["basis"] == format!("consent:{consent_id}")
        && e["at"].as_str().is_some_and(|t| t.ends_with('Z'))));
    assert!(
        by_b.iter().any(|e| e["interaction"] == "read"
            && e["resources"] == json!([format!("Observation/{oid}")]))
    );
    // A's own doctor reading is listed too, on the own-hospital basis.
    assert!(
        entries
            .iter()
            .any(|e| e["reader_hospital"] == "bv-a" && e["basis"] == "own-hospital"),
        "{log}"
    );
    // Another citizen sees none of it, and cannot revoke this consent.
    let (_, other) = send(
        &server,
        "GET",
        "/api/v1/me/record-access",
        &stranger,
        None,
        &[],
    )
    .await;
    assert_eq!(other["entries"], json!([]));
    let (s, _) = send(
        &server,
        "DELETE",
        &format!("/api/v1/me/consents/{consent_id}"),
        &stranger,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404);
    // Staff cannot manage consents.
    let (s, _) = send(&server, "GET", "/api/v1/me/consents", &doctor_b, None, &[]).await;
    assert_eq!(s, 403);

    // Revoked: denied again at once.
    let (s, revoked) = send(
        &server,
        "DELETE",
        &format!("/api/v1/me/consents/{consent_id}"),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!((s, revoked["status"].clone()), (200, json!("inactive")));
    let (s, _) = send(&server, "GET", &read_path, &doctor_b, None, &[]).await;
    assert_eq!(s, 403);
    let (_, list) = send(&server, "GET", "/api/v1/me/consents", &citizen, None, &[]).await;
    assert_eq!(list["consents"][0]["status"], "inactive");

    // Bad consents are refused.
    for bad in [
        json!({ "grantee_hospital": "nowhere" }),
        json!({ "grantee_hospital": "bv-b", "purposes": ["marketing"] }),
        json!({ "grantee_hospital": "bv-b", "source_hospital": "bv-b" }),
        json!({ "grantee_hospital": "bv-b", "expires_in_days": 0 }),
        json!({ "grantee_hospital": "bv-b", "expires_in_days": 5000 }),
    ] {
        let (s, body) = send(
            &server,
            "POST",
            "/api/v1/me/consents",
            &citizen,
            Some(bad.clone()),
            &[],
        )
        .await;
        assert_eq!(s, 422, "{bad}: {body}");
    }
    assert!(
        server
            .runtime
            .governance
            .audit
            .verify()
            .await
            .expect("verify")
            .ok
    );
}

#[tokio::test]
async fn a_consultation_opens_records_between_its_two_hospitals_only() {
    let server = server().await;
    let doctor_a = user(&server, "bs-a", Role::Practitioner, Some("bv-a")).await;
    let doctor_b = user(&server, "bs-b", Role::Practitioner, Some("bv-b")).await;
    let admin_b = user(&server, "qt-b", Role::HospitalAdmin, Some("bv-b")).await;
    let citizen = user(&server, "cd-1", Role::Citizen, None).await;
    server
        .runtime
        .hospitals
        .upsert(vtelehealth_runtime::capabilities::identity::Hospital {
            id: "bv-c".into(),
            name: "Bệnh viện C".into(),
            tier: vtelehealth_runtime::capabilities::identity::Tier::Provincial,
            province: "Nam Định".into(),
            ..Default::default()
        })
        .await
        .expect("hospital");
    let doctor_c = user(&server, "bs-c", Role::Practitioner, Some("bv-c")).await;
    let (_pid, oid) = patient_with_lab(&server, &doctor_b).await;
    let read_path = format!("/fhir/R4/Observation/{oid}");

    // District hospital B asks central hospital A for a consultation.
    let (s, c) = send(
        &server,
        "POST",
        "/api/v1/consultations",
        &doctor_b,
        Some(json!({ "host_hospital": "bv-a", "patient": { "national_id": CITIZEN_ID }, "reason": "Thiếu máu chưa rõ nguyên nhân" })),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["status"], "requested");
    let id = c["id"].as_str().expect("id").to_owned();

    // Requested is not enough, and only the host accepts.
    let (s, _) = send(&server, "GET", &read_path, &doctor_a, None, &[]).await;
    assert_eq!(s, 403);
    let accept = format!("/api/v1/consultations/{id}/accept");
    let (s, _) = send(&server, "POST", &accept, &admin_b, None, &[]).await;
    assert_eq!(s, 403);
    let (s, _) = send(&server, "POST", &accept, &doctor_c, None, &[]).await;
    assert_eq!(s, 403);
    let (s, c) = send(&server, "POST", &accept, &doctor_a, None, &[]).await;
    assert_eq!((s, c["status"].clone()), (200, json!("active")), "{c}");
    let (s, _) = send(&server, "POST", &accept, &doctor_a, None, &[]).await;
    assert_eq!(s, 409);

    // Active: the host reads B's record about that patient, for treatment.
    let (s, body) = send(&server, "GET", &read_path, &doctor_a, None, &[]).await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = send(
        &server,
        "GET",
        &read_path,
        &doctor_a,
        None,
        &[("x-purpose-of-use", "payment")],
    )
    .await;
    assert_eq!(s, 403);
    // A third hospital of the network does not.
    let (s, _) = send(&server, "GET", &read_path, &doctor_c, None, &[]).await;
    assert_eq!(s, 403);
    let (_, list) = send(
        &server,
        "GET",
        "/api/v1/consultations",
        &doctor_c,
        None,
        &[],
    )
    .await;
    assert_eq!(list["consultations"], json!([]));
    let (_, list) = send(
        &server,
        "GET",
        "/api/v1/consultations",
        &doctor_a,
        None,
        &[],
    )
    .await;
    assert_eq!(list["consultations"][0]["id"], id);

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
            .any(|e| e["reader_hospital"] == "bv-a" && e["basis"] == format!("consultation:{id}")),
        "{log}"
    );

    // Ended: closed again.
    let (s, c) = send(
        &server,
        "POST",
        &format!("/api/v1/consultations/{id}/end"),
        &doctor_b,
        None,
        &[],
    )
    .await;
    assert_eq!((s, c["status"].clone()), (200, json!("ended")));
    let (s, _) = send(&server, "GET", &read_path, &doctor_a, None, &[]).await;
    assert_eq!(s, 403);

    // A consultation naming this citizen's ID with someone else's health ID
    // opens neither: the identifiers contradict the record's patient.
    let (s, c) = send(&server, "POST", "/api/v1/consultations", &doctor_b,
        Some(json!({ "host_hospital": "bv-a", "patient": { "national_id": CITIZEN_ID, "health_id": "0100000009" }, "reason": "x" })), &[]).await;
    assert_eq!(s, 201, "{c}");
    let mixed = c["id"].as_str().expect("id").to_owned();
    let (s, _) = send(
        &server,
        "POST",
        &format!("/api/v1/consultations/{mixed}/accept"),
        &doctor_a,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(&server, "GET", &read_path, &doctor_a, None, &[]).await;
    assert_eq!(s, 403);

    // Bad requests.
    for bad in [
        json!({ "host_hospital": "bv-b", "patient": { "national_id": CITIZEN_ID }, "reason": "x" }),
        json!({ "host_hospital": "bv-a", "patient": {}, "reason": "x" }),
        json!({ "host_hospital": "bv-a", "patient": { "national_id": "123" }, "reason": "x" }),
        json!({ "host_hospital": "bv-a", "patient": { "health_id": HEALTH_ID }, "reason": "  " }),
        json!({ "host_hospital": "nowhere", "patient": { "health_id": HEALTH_ID }, "reason": "x" }),
    ] {
        let (s, body) = send(
            &server,
            "POST",
            "/api/v1/consultations",
            &doctor_b,
            Some(bad.clone()),
            &[],
        )
        .await;
        assert_eq!(s, 422, "{bad}: {body}");
    }
    let (s, _) = send(
        &server,
        "POST",
        "/api/v1/consultations",
        &citizen,
        Some(json!({ "host_hospital": "bv-a", "patient": { "health_id": HEALTH_ID }, "reason": "x" })),
        &[],
    )
    .await;
    assert_eq!(s, 403);
}

fn transaction(mrn: &str, family: &str, obs_subject: &str) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0b8f1c1e-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{ "system": "urn:bv-a:mrn", "value": mrn }, { "system": CCCD_SYSTEM, "value": CITIZEN_ID }],
                    "name": [{ "family": family }]
                },
                "request": { "method": "PUT", "url": format!("Patient?identifier=urn:bv-a:mrn|{mrn}") }
            },
            {
                "fullUrl": "urn:uuid:0b8f1c1e-0000-4000-8000-000000000002",
                "resource": {
                    "resourceType": "Encounter",
                    "status": "in-progress",
                    "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP" },
                    "subject": { "reference": "urn:uuid:0b8f1c1e-0000-4000-8000-000000000001" }
                },
                "request": { "method": "POST", "url": "Encounter" }
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": { "text": "Hb" },
                    "subject": { "reference": obs_subject },
                    "encounter": { "reference": "urn:uuid:0b8f1c1e-0000-4000-8000-000000000002" }
                },
                "request": { "method": "POST", "url": "Observation" }
            }
        ]
    })
}

async fn count(server: &TestServer, token: &str, ty: &str) -> i64 {
    let (_, b) = send(server, "GET", &format!("/fhir/R4/{ty}"), token, None, &[]).await;
    b["total"].as_i64().unwrap_or(-1)
}

#[tokio::test]
async fn transactions_write_all_entries_or_none() {
    let server = server().await;
    let doctor_a = user(&server, "bs-a", Role::Practitioner, Some("bv-a")).await;
    let doctor_b = user(&server, "bs-b", Role::Practitioner, Some("bv-b")).await;
    let patient_ref = "urn:uuid:0b8f1c1e-0000-4000-8000-000000000001";

    let (s, r) = send(
        &server,
        "POST",
        "/fhir/R4",
        &doctor_a,
        Some(transaction("BN-1", "Lê", patient_ref)),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["type"], "transaction-response");
    let statuses: Vec<&str> = r["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["201 Created"; 3]);
    let location = r["entry"][0]["response"]["location"]
        .as_str()
        .expect("location");
    let pid = location.split('/').nth(1).expect("id").to_owned();
    // References between entries were rewritten to the stored ids.
    let (_, obs) = send(
        &server,
        "GET",
        &format!("/fhir/R4/Observation?patient=Patient/{pid}"),
        &doctor_a,
        None,
        &[],
    )
    .await;
    assert_eq!(obs["total"], 1, "{obs}");
    assert!(
        obs["entry"][0]["resource"]["encounter"]["reference"]
            .as_str()
            .is_some_and(|r| r.starts_with("Encounter/"))
    );

    // The same MRN again updates the patient instead of duplicating it.
    let (s, r) = send(
        &server,
        "POST",
        "/fhir/R4",
        &doctor_a,
        Some(transaction("BN-1", "Lê Thị", patient_ref)),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(r["entry"][0]["response"]["etag"], "W/\"2\"");
    assert_eq!(count(&server, &doctor_a, "Patient").await, 1);
    // Hospital B's same MRN is B's own patient, not A's.
    let (s, r) = send(
        &server,
        "POST",
        "/fhir/R4",
        &doctor_b,
        Some(transaction("BN-1", "Phạm", patient_ref)),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["entry"][0]["response"]["status"], "201 Created");

    // Two conditional updates of one identifier in one Bundle: one patient.
    let mut twice = transaction("BN-3", "Đinh", patient_ref);
    let mut second = twice["entry"][0].clone();
    second["fullUrl"] = json!("urn:uuid:0b8f1c1e-0000-4000-8000-000000000009");
    second["resource"]["name"] = json!([{ "family": "Đinh Văn" }]);
    twice["entry"].as_array_mut().expect("entries").push(second);
    let before = count(&server, &doctor_a, "Patient").await;
    let (s, r) = send(&server, "POST", "/fhir/R4", &doctor_a, Some(twice), &[]).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(count(&server, &doctor_a, "Patient").await, before + 1);
    assert_eq!(r["entry"][3]["response"]["status"], "200 OK", "{r}");

    // One bad entry: nothing of the Bundle is stored.
    let before = (
        count(&server, &doctor_a, "Patient").await,
        count(&server, &doctor_a, "Encounter").await,
        count(&server, &doctor_a, "Observation").await,
    );
    for (bad, status) in [
        (transaction("BN-2", "Võ", "Patient/does-not-exist"), 422),
        (
            {
                let mut t = transaction("BN-2", "Võ", patient_ref);
                t["entry"][1]["resource"]["status"] = json!(null);
                t
            },
            400,
        ),
        (
            {
                let mut t = transaction("BN-2", "Võ", patient_ref);
                t["entry"][2]["resource"]["resourceType"] = json!("Claim");
                t
            },
            400,
        ),
        (json!({ "resourceType": "Bundle", "type": "batch" }), 400),
    ] {
        let (s, body) = send(&server, "POST", "/fhir/R4", &doctor_a, Some(bad), &[]).await;
        assert_eq!(s, status, "{body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }
    let after = (
        count(&server, &doctor_a, "Patient").await,
        count(&server, &doctor_a, "Encounter").await,
        count(&server, &doctor_a, "Observation").await,
    );
    assert_eq!(before, after);
}
