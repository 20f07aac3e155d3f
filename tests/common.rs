//! The helpers most end-to-end tests share: one server without plugins, one
//! way to make a user with a token, one `send`, and a patient with a
//! laboratory result to read.

use serde_json::{Value, json};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::identity::{NewUser, Role};
use vtelehealth_runtime::records::{BHYT_SYSTEM, CCCD_SYSTEM};

use crate::TestServer;

pub const CITIZEN_ID: &str = "001088054321";
pub const HEALTH_ID: &str = "0198765432";

pub async fn server() -> TestServer {
    let no_plugins = tempfile::TempDir::new().expect("dir");
    TestServer::start(no_plugins.path(), Limits::default()).await
}

pub async fn user(server: &TestServer, name: &str, role: Role, hospital: Option<&str>) -> String {
    let mut u = NewUser::new(name, &format!("Dr. {name}"), role, "password-1");
    u.hospital_id = hospital.map(Into::into);
    // `cd-1` is the patient of the records the tests store; other citizens are strangers.
    if role == Role::Citizen && name == "cd-1" {
        u.national_id = Some(CITIZEN_ID.into());
        u.health_id = Some(HEALTH_ID.into());
    } else if role == Role::Citizen {
        u.national_id = Some("001099000001".into());
    }
    let user = server.runtime.identity.create_user(u).await.expect("user");
    server.runtime.identity.token_for(&user).expect("token")
}

pub async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    send_as(server, method, path, Some(token), body, headers).await
}

/// [`send`] for a caller who may be anonymous (`None`: no bearer token).
/// A body that is not JSON comes back as a JSON string.
pub async fn send_as(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let url = format!("{}{path}", server.base);
    let mut req = server.client.request(method.parse().expect("method"), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(json!(text)))
}

/// Store a patient (with citizen ID and health ID) and a laboratory
/// Observation about them at the doctor's hospital; their ids.
pub async fn patient_with_lab(server: &TestServer, doctor: &str) -> (String, String) {
    let (s, p) = send(
        server,
        "POST",
        "/fhir/R4/Patient",
        doctor,
        Some(json!({
            "resourceType": "Patient",
            "identifier": [
                { "system": CCCD_SYSTEM, "value": CITIZEN_ID },
                { "system": BHYT_SYSTEM, "value": HEALTH_ID }
            ],
            "name": [{ "family": "Trần", "given": ["Văn", "Bình"] }]
        })),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{p}");
    let pid = p["id"].as_str().expect("id").to_owned();
    let (s, o) = send(
        server,
        "POST",
        "/fhir/R4/Observation",
        doctor,
        Some(lab_observation(&pid, "laboratory")),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{o}");
    (pid, o["id"].as_str().expect("id").to_owned())
}

pub fn lab_observation(pid: &str, category: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category }] }],
        "code": { "coding": [{ "system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin" }] },
        "subject": { "reference": format!("Patient/{pid}") },
        "effectiveDateTime": "2026-11-20T08:00:00+07:00",
        "valueQuantity": { "value": 13.5, "unit": "g/dL" }
    })
}
