//! Imaging shares for the BHYT assessment end to end: a practitioner
//! stores the records through `/fhir/R4`, shares a signed document with one
//! assessor; that assessor reads and verifies it with the hospital's
//! published key, and nobody else reads it.

use serde_json::{Value, json};
use sqlx::Row;
use vtelehealth_runtime::governance::audit::AuditFilter;
use vtelehealth_runtime::identity::{NewUser, Role};
use vtelehealth_runtime::imaging::{VerifyError, verify};
use vtelehealth_runtime::records::{BHYT_SYSTEM, CCCD_SYSTEM};
use vtelehealth_tests::TestServer;

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const PACS: &str = "https://pacs.bv-a.example/dicomweb";

use vtelehealth_tests::common::server;

/// A user's subject and token.
async fn user(
    server: &TestServer,
    name: &str,
    role: Role,
    hospital: Option<&str>,
) -> (String, String) {
    let mut u = NewUser::new(name, name, role, "password-1");
    u.hospital_id = hospital.map(Into::into);
    let user = server.runtime.identity.create_user(u).await.expect("user");
    let token = server.runtime.identity.token_for(&user).expect("token");
    (user.id, token)
}

async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    vtelehealth_tests::common::send_as(server, method, path, token, body, &[]).await
}

/// Store a resource through `/fhir/R4`; its id.
async fn store(server: &TestServer, token: &str, resource: Value) -> String {
    let ty = resource["resourceType"].as_str().expect("type").to_owned();
    let (status, body) = send(
        server,
        "POST",
        &format!("/fhir/R4/{ty}"),
        Some(token),
        Some(resource),
    )
    .await;
    assert_eq!(status, 201, "{ty}: {body}");
    body["id"].as_str().expect("id").to_owned()
}

/// A Patient, an ImagingStudy (CT, with `endpoint` when given) and its
/// DiagnosticReport; their ids.
pub(crate) async fn imaging_records(
    server: &TestServer,
    token: &str,
    health_id: Option<&str>,
    endpoint: Option<Value>,
) -> (String, String, String) {
    let mut identifiers = vec![json!({ "system": CCCD_SYSTEM, "value": "001088012345" })];
    if let Some(h) = health_id {
        identifiers.push(json!({ "system": BHYT_SYSTEM, "value": h }));
    }
    let patient = store(
        server,
        token,
        json!({
            "resourceType": "Patient", "identifier": identifiers,
            "name": [{ "family": "Trần", "given": ["Văn", "Nam"] }], "gender": "male", "birthDate": "1970-05-20"
        }),
    )
    .await;
    let mut study = json!({
        "resourceType": "ImagingStudy",
        "status": "available",
        "subject": { "reference": format!("Patient/{patient}") },
        "started": "2026-03-02T09:15:00+07:00",
        "identifier": [{ "system": "urn:dicom:uid", "value": "urn:oid:1.2.840.113619.2.55.3.1234" }],
        "modality": [{ "system": DCM, "code": "CT" }],
        "numberOfSeries": 1,
        "numberOfInstances": 120,
        "series": [{
            "uid": "1.2.840.113619.2.55.3.1234.1",
            "number": 1,
            "modality": { "system": DCM, "code": "CT" },
            "description": "CT ngực không tiêm thuốc cản quang",
            "numberOfInstances": 120,
            "bodySite": { "system": "http://snomed.info/sct", "code": "51185008", "display": "Thorax" }
        }]
    });
    if let Some(e) = endpoint {
        study["contained"] = json!([e]);
        study["endpoint"] = json!([{ "reference": format!("#{}", e["id"].as_str().expect("id")) }]);
    }
    let study = store(server, token, study).await;
    let report = store(
        server,
        token,
        json!({
            "resourceType": "DiagnosticReport",
            "status": "final",
            "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD" }] }],
            "code": { "coding": [{ "system": "http://loinc.org", "code": "24627-2", "display": "Chest CT" }] },
            "subject": { "reference": format!("Patient/{patient}") },
            "effectiveDateTime": "2026-03-02T09:15:00+07:00",
            "imagingStudy": [{ "reference": format!("ImagingStudy/{study}") }],
            "conclusion": "Nốt mờ thùy trên phổi phải, đường kính 8 mm."
        }),
    )
    .await;
    (patient, study, report)
}

pub(crate) fn share_body(claim: &str, assessor: &str, report: &str, study: &str) -> Value {
    json!({
        "claim_id": claim, "assessor": assessor,
        "diagnostic_report": report, "imaging_study": study,
        "dicomweb_base_url": PACS
    })
}

/// The resource of the document's first entry of `ty`.
fn entry<'a>(doc: &'a Value, ty: &str) -> &'a Value {
    doc["entry"]
        .as_array()
        .and_then(|es| es.iter().find(|e| e["resource"]["resourceType"] == ty))
        .map(|e| &e["resource"])
        .unwrap_or_else(|| panic!("no {ty} entry in {doc}"))
}

async fn audit(server: &TestServer, action: &str) -> Vec<(String, String)> {
    server
        .runtime
        .governance
        .audit
        .list(&AuditFilter {
            action_prefix: Some(action.into()),
            ..AuditFilter::default()
        })
        .await
        .expect("audit")
        .into_iter()
        .map(|e| (e.actor, e.target))
        .collect()
}

async fn share_count(server: &TestServer) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM imaging_shares")
        .fetch_one(&server.runtime.db.pool)
        .await
        .expect("count")
        .try_get("n")
        .expect("n")
}

#[tokio::test]
async fn an_assessor_reads_and_verifies_only_what_was_shared_with_them() {
    let server = server().await;
    let (_, doctor_a) = user(&server, "bs.a", Role::Practitioner, Some("bv-a")).await;
    let (_, doctor_b) = user(&server, "bs.b", Role::Practitioner, Some("bv-b")).await;
    let (x, assessor_x) = user(&server, "gd.x", Role::Assessor, None).await;
    let (y, assessor_y) = user(&server, "gd.y", Role::Assessor, None).await;
    let (_, study, report) = imaging_records(&server, &doctor_a, Some("0101234567"), None).await;

    // Hospital A shares the study and its report with assessor X.
    let (status, created) = send(
        &server,
        "POST",
        "/api/v1/hospitals/bv-a/imaging-shares",
        Some(&doctor_a),
        Some(share_body("HS-2026-000123", &x, &report, &study)),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let url = created["url"].as_str().expect("url").to_owned();
    assert!(
        url.ends_with(&format!("/api/v1/imaging-shares/{id}")),
        "{url}"
    );
    assert_eq!(audit(&server, "imaging_share.created").await.len(), 1);

    // X reads it and verifies it with the key A publishes (no token needed).
    let path = format!("/api/v1/imaging-shares/{id}");
    let (status, doc) = send(&server, "GET", &path, Some(&assessor_x), None).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc, created["document"]);
    let (status, key) = send(
        &server,
        "GET",
        "/api/v1/hospitals/bv-a/signing-key",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    assert_eq!(
        verify(&doc, &key).expect("the signature verifies"),
        key["kid"].as_str().expect("kid")
    );
    assert_eq!(doc["signature"]["sigFormat"], "application/jose");
    assert_eq!(
        doc["signature"]["type"][0]["code"],
        "1.2.840.10065.1.12.1.1"
    );
    assert_eq!(doc["signature"]["who"]["reference"], "Organization/bv-a");

    // What the document holds: a document Bundle, Composition first.
    assert_eq!(doc["type"], "document");
    assert!(
        doc["identifier"]["value"]
            .as_str()
            .is_some_and(|v| v.starts_with("urn:uuid:"))
    );
    assert!(doc["timestamp"].as_str().is_some());
    let first = &doc["entry"][0]["resource"];
    assert_eq!(first["resourceType"], "Composition");
    assert_eq!(
        first["title"],
        "Kết quả chẩn đoán hình ảnh / Imaging results"
    );
    assert_eq!(first["author"][0]["reference"], "Organization/bv-a");
    let sections: Vec<&str> = first["section"]
        .as_array()
        .expect("sections")
        .iter()
        .filter_map(|s| s["entry"][0]["reference"].as_str())
        .collect();
    assert_eq!(
        sections,
        [
            format!("DiagnosticReport/{report}"),
            format!("ImagingStudy/{study}")
        ]
    );
    let patient = entry(&doc, "Patient");
    assert!(
        patient["identifier"]
            .as_array()
            .expect("identifiers")
            .iter()
            .any(|i| i["system"] == BHYT_SYSTEM && i["value"] == "0101234567"),
        "{patient}"
    );
    let imaging = entry(&doc, "ImagingStudy");
    assert_eq!(imaging["id"], study.as_str());
    assert_eq!(imaging["series"][0]["modality"]["code"], "CT");
    assert_eq!(imaging["series"][0]["uid"], "1.2.840.113619.2.55.3.1234.1");
    let endpoint = entry(&doc, "Endpoint");
    assert_eq!(endpoint["connectionType"]["code"], "dicom-wado-rs");
    assert_eq!(endpoint["address"], PACS);
    assert_eq!(
        imaging["endpoint"][0]["reference"],
        format!("Endpoint/{}", endpoint["id"].as_str().expect("id"))
    );
    assert_eq!(entry(&doc, "DiagnosticReport")["id"], report.as_str());
    assert!(
        audit(&server, "imaging_share.read")
            .await
            .iter()
            .any(|(actor, _)| *actor == x)
    );

    // A changed conclusion, or another hospital's key, fails verification.
    let mut tampered = doc.clone();
    for e in tampered["entry"].as_array_mut().expect("entries") {
        if e["resource"]["resourceType"] == "DiagnosticReport" {
            e["resource"]["conclusion"] = json!("Không có bất thường.");
        }
    }
    assert!(matches!(
        verify(&tampered, &key),
        Err(VerifyError::BadSignature)
    ));
    let (_, key_b) = send(
        &server,
        "GET",
        "/api/v1/hospitals/bv-b/signing-key",
        None,
        None,
    )
    .await;
    assert!(verify(&doc, &key_b).is_err());
    let (status, _) = send(
        &server,
        "GET",
        "/api/v1/hospitals/no-such/signing-key",
        None,
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Assessor Y may not read X's share; the refusal is on the audit trail.
    let (status, body) = send(&server, "GET", &path, Some(&assessor_y), None).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        audit(&server, "imaging_share.access_denied")
            .await
            .contains(&(y.clone(), format!("imaging-share:{id}"))),
    );
    let (status, _) = send(
        &server,
        "GET",
        "/api/v1/imaging-shares/no-such-share",
        Some(&assessor_x),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Each assessor's list holds their own shares only.
    let (status, for_y) = send(
        &server,
        "POST",
        "/api/v1/hospitals/bv-a/imaging-shares",
        Some(&doctor_a),
        Some(share_body("HS-2026-000124", &y, &report, &study)),
    )
    .await;
    assert_eq!(status, 201, "{for_y}");
    for (token, own, claim) in [
        (&assessor_x, &id, "HS-2026-000123"),
        (
            &assessor_y,
            &for_y["id"].as_str().expect("id").to_owned(),
            "HS-2026-000124",
        ),
    ] {
        let (status, list) =
            send(&server, "GET", "/api/v1/imaging-shares", Some(token), None).await;
        assert_eq!(status, 200, "{list}");
        let shares = list["shares"].as_array().expect("shares");
        assert_eq!(shares.len(), 1, "{list}");
        assert_eq!(shares[0]["id"], own.as_str());
        assert_eq!(shares[0]["claim_id"], claim);
        assert_eq!(shares[0]["hospital"], "bv-a");
        assert_eq!(shares[0]["status"], "active");
        assert!(shares[0]["created_at"].is_string() && shares[0]["expires_at"].is_string());
    }

    // Assessors have no access to the records themselves.
    for token in [&assessor_x, &assessor_y] {
        let (status, _) = send(
            &server,
            "GET",
            &format!("/fhir/R4/ImagingStudy/{study}"),
            Some(token),
            None,
        )
        .await;
        assert_eq!(status, 403);
    }

    // Hospital B's practitioner neither shares A's records nor reads A's share.
    let before = share_count(&server).await;
    let (status, body) = send(
        &server,
        "POST",
        "/api/v1/hospitals/bv-a/imaging-shares",
        Some(&doctor_b),
        Some(share_body("HS-B-1", &x, &report, &study)),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = send(
        &server,
        "POST",
        "/api/v1/hospitals/bv-b/imaging-shares",
        Some(&doctor_b),
        Some(share_body("HS-B-2", &x, &report, &study)),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(share_count(&server).await, before);
    let (status, _) = send(&server, "GET", &path, Some(&doctor_b), None).await;
    assert_eq!(status, 403);
    let (status, _) = send(
        &server,
        "DELETE",
        &format!("/api/v1/hospitals/bv-a/imaging-shares/{id}"),
        Some(&doctor_b),
        None,
    )
    .await;
    assert_eq!(status, 403);

    // Revoked: 410 for the assessor, and the list says so.
    let (status, body) = send(
        &server,
        "DELETE",
        &format!("/api/v1/hospitals/bv-a/imaging-shares/{id}"),
        Some(&doctor_a),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "revoked");
    let (status, body) = send(&server, "GET", &path, Some(&assessor_x), None).await;
    assert_eq!(status, 410, "{body}");
    let (_, list) = send(
        &server,
        "GET",
        "/api/v1/imaging-shares",
        Some(&assessor_x),
        None,
    )
    .await;
    assert_eq!(list["shares"][0]["status"], "revoked");
    assert_eq!(audit(&server, "imaging_share.revoked").await.len(), 1);

    // Expired: 410 too.
    let y_path = format!(
        "/api/v1/imaging-shares/{}",
        for_y["id"].as_str().expect("id")
    );
    sqlx::query("UPDATE imaging_shares SET expires_at = 1 WHERE id = $1")
        .bind(for_y["id"].as_str().expect("id"))
        .execute(&server.runtime.db.pool)
        .await
        .expect("expire");
    let (status, _) = send(&server, "GET", &y_path, Some(&assessor_y), None).await;
    assert_eq!(status, 410);
}

#[tokio::test]
async fn shares_need_a_health_id_a_series_and_an_endpoint() {
    let server = server().await;
    let (_, doctor) = user(&server, "bs.a", Role::Practitioner, Some("bv-a")).await;
    let (x, _) = user(&server, "gd.x", Role::Assessor, None).await;
    let (reviewer, _) = user(&server, "reviewer", Role::Reviewer, None).await;
    let post = |body: Value| {
        let server = &server;
        let doctor = doctor.clone();
        async move {
            send(
                server,
                "POST",
                "/api/v1/hospitals/bv-a/imaging-shares",
                Some(&doctor),
                Some(body),
            )
            .await
        }
    };

    // No health ID on the Patient: 422, nothing stored or audited.
    let (_, study, report) = imaging_records(&server, &doctor, None, None).await;
    let (status, body) = post(share_body("HS-1", &x, &report, &study)).await;
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("health ID") && message.contains(BHYT_SYSTEM),
        "{message}"
    );
    assert_eq!(share_count(&server).await, 0);
    assert!(audit(&server, "imaging_share.created").await.is_empty());

    // No endpoint anywhere: 422; a contained Endpoint is enough.
    let (_, study, report) = imaging_records(&server, &doctor, Some("0101234567"), None).await;
    let mut body = share_body("HS-2", &x, &report, &study);
    body.as_object_mut()
        .expect("object")
        .remove("dicomweb_base_url");
    let (status, reply) = post(body.clone()).await;
    assert_eq!(status, 422, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("endpoint"),
        "{reply}"
    );
    let contained = json!({
        "resourceType": "Endpoint", "id": "pacs", "status": "active",
        "connectionType": { "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "dicom-wado-rs" },
        "payloadType": [{ "text": "DICOM WADO-RS" }], "address": PACS
    });
    let (_, study2, report2) =
        imaging_records(&server, &doctor, Some("0101234568"), Some(contained)).await;
    let mut ok = share_body("HS-3", "gd.x", &report2, &study2);
    ok.as_object_mut()
        .expect("object")
        .remove("dicomweb_base_url");
    let (status, reply) = post(ok).await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(
        reply["assessor"],
        x.as_str(),
        "a username names the assessor too"
    );
    assert_eq!(
        entry(&reply["document"], "ImagingStudy")["contained"][0]["address"],
        PACS
    );

    // A report about another patient, a non-assessor, an unknown record,
    // a bad body: refused, nothing stored.
    let (status, _) = post(share_body("HS-4", &x, &report, &study2)).await;
    assert_eq!(status, 422);
    let (status, _) = post(share_body("HS-5", &reviewer, &report, &study)).await;
    assert_eq!(status, 422);
    // A hospital's own staff with the assessor role (its admin may grant
    // it) is not a social-insurance assessor: no share goes to them.
    let (local, _) = user(&server, "gd.noibo", Role::Assessor, Some("bv-a")).await;
    let (status, reply) = post(share_body("HS-5b", &local, &report2, &study2)).await;
    assert_eq!(status, 422, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not a social-insurance assessor"),
        "{reply}"
    );
    let (status, _) = post(share_body("HS-6", &x, "no-such-report", &study)).await;
    assert_eq!(status, 422);
    let (status, _) = post(json!({ "claim_id": "HS-7" })).await;
    assert_eq!(status, 400);
    let mut bad_url = share_body("HS-8", &x, &report, &study);
    bad_url["dicomweb_base_url"] = json!("ftp://pacs");
    let (status, _) = post(bad_url).await;
    assert_eq!(status, 422);
    assert_eq!(share_count(&server).await, 1);
}
