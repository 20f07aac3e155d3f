//! The `/fhir/R4` records API end to end, through HTTP with real tokens:
//! create, read, vread, update with version checks, history, search and
//! paging; bad input refused with an OperationOutcome and nothing written;
//! another hospital's staff denied and audited.

use serde_json::{Value, json};
use vtelehealth_runtime::governance::audit::AuditFilter;
use vtelehealth_runtime::identity::{NewUser, Role};
use vtelehealth_runtime::records::{BHYT_SYSTEM, CCCD_SYSTEM};
use vtelehealth_tests::TestServer;

const FHIR: &str = "application/fhir+json";

use vtelehealth_tests::common::server;

async fn token(server: &TestServer, username: &str, role: Role, hospital: Option<&str>) -> String {
    let mut u = NewUser::new(username, username, role, "password-1");
    u.hospital_id = hospital.map(Into::into);
    if role == Role::Citizen {
        u.national_id = Some("001088099999".into());
    }
    let user = server.runtime.identity.create_user(u).await.expect("user");
    server.runtime.identity.token_for(&user).expect("token")
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// The first issue of an OperationOutcome: (code, diagnostics).
    fn issue(&self) -> (String, String) {
        assert_eq!(
            self.body["resourceType"], "OperationOutcome",
            "{}",
            self.body
        );
        let issue = &self.body["issue"][0];
        (
            issue["code"].as_str().unwrap_or_default().to_owned(),
            issue["diagnostics"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
    if_match: Option<&str>,
) -> Reply {
    let url = if path.starts_with("http") {
        path.to_owned()
    } else {
        format!("{}/fhir/R4{path}", server.base)
    };
    let mut req = server.client.request(method.parse().expect("method"), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", FHIR).body(b);
    }
    if let Some(m) = if_match {
        req = req.header("if-match", m);
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with(FHIR), "{method} {path}: content type `{ct}`");
    Reply {
        status,
        headers,
        body: resp.json().await.unwrap_or(Value::Null),
    }
}

async fn create(server: &TestServer, token: &str, resource: Value) -> Reply {
    let ty = resource["resourceType"].as_str().expect("type").to_owned();
    call(
        server,
        "POST",
        &format!("/{ty}"),
        Some(token),
        Some(resource.to_string()),
        None,
    )
    .await
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [
            { "system": CCCD_SYSTEM, "value": "001088012345" },
            { "system": BHYT_SYSTEM, "value": "0123456789" }
        ],
        "name": [{ "family": "Nguyễn", "given": ["Thị", "Hoa"] }],
        "gender": "female",
        "birthDate": "1988-04-12"
    })
}

fn observation(patient: &str, encounter: &str, code: &str, when: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": code }] },
        "subject": { "reference": patient },
        "encounter": { "reference": encounter },
        "effectiveDateTime": when,
        "valueQuantity": { "value": 72, "unit": "/min" }
    })
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn enc(s: &str) -> String {
    s.replace(':', "%3A")
        .replace('/', "%2F")
        .replace('|', "%7C")
}

#[tokio::test]
async fn records_are_created_read_versioned_and_searched() {
    let server = server().await;
    let doctor = token(&server, "doctor.a", Role::Practitioner, Some("bv-a")).await;

    // Create a patient: 201, Location, ETag, server-set meta.
    let p = create(&server, &doctor, patient()).await;
    assert_eq!(p.status, 201, "{}", p.body);
    let pid = p.body["id"].as_str().expect("id").to_owned();
    assert_eq!(p.header("etag"), "W/\"1\"");
    assert!(
        p.header("location")
            .ends_with(&format!("/fhir/R4/Patient/{pid}/_history/1")),
        "{}",
        p.header("location")
    );
    assert_eq!(p.body["meta"]["versionId"], "1");
    assert!(p.body["meta"]["lastUpdated"].as_str().is_some());
    let patient_ref = format!("Patient/{pid}");

    let e = create(
        &server,
        &doctor,
        json!({
            "resourceType": "Encounter", "status": "finished",
            "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" },
            "subject": { "reference": patient_ref },
            "period": { "start": "2026-03-01T08:00:00+07:00", "end": "2026-03-01T09:00:00+07:00" }
        }),
    )
    .await;
    assert_eq!(e.status, 201, "{}", e.body);
    let encounter_ref = format!("Encounter/{}", e.body["id"].as_str().expect("id"));

    // Five observations over five days; one with another code.
    let mut obs_ids = Vec::new();
    for day in 1..=5 {
        let code = if day == 5 { "8480-6" } else { "8867-4" };
        let o = create(
            &server,
            &doctor,
            observation(
                &patient_ref,
                &encounter_ref,
                code,
                &format!("2026-03-0{day}T08:30:00+07:00"),
            ),
        )
        .await;
        assert_eq!(o.status, 201, "{}", o.body);
        obs_ids.push(o.body["id"].as_str().expect("id").to_owned());
    }

    // Read and vread.
    let r = call(
        &server,
        "GET",
        &format!("/Patient/{pid}"),
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["name"][0]["family"], "Nguyễn");
    assert_eq!(r.header("etag"), "W/\"1\"");

    // Update with the right version, then with a stale one.
    let mut changed = r.body.clone();
    changed["telecom"] = json!([{ "system": "phone", "value": "0912345678" }]);
    let u = call(
        &server,
        "PUT",
        &format!("/Patient/{pid}"),
        Some(&doctor),
        Some(changed.to_string()),
        Some("W/\"1\""),
    )
    .await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.body["meta"]["versionId"], "2");
    assert_eq!(u.header("etag"), "W/\"2\"");
    let stale = call(
        &server,
        "PUT",
        &format!("/Patient/{pid}"),
        Some(&doctor),
        Some(changed.to_string()),
        Some("W/\"1\""),
    )
    .await;
    assert_eq!(stale.status, 412);
    let (code, message) = stale.issue();
    assert_eq!(code, "conflict");
    assert!(message.contains("version 2, not 1"), "{message}");
    // Without If-Match the update applies.
    let u3 = call(
        &server,
        "PUT",
        &format!("/Patient/{pid}"),
        Some(&doctor),
        Some(changed.to_string()),
        None,
    )
    .await;
    assert_eq!(u3.status, 200);
    assert_eq!(u3.body["meta"]["versionId"], "3");

    // Two concurrent updates from the same version: exactly one wins.
    let put = |body: Value| {
        let (server, doctor, pid) = (&server, &doctor, &pid);
        async move {
            call(
                server,
                "PUT",
                &format!("/Patient/{pid}"),
                Some(doctor),
                Some(body.to_string()),
                Some("W/\"3\""),
            )
            .await
            .status
        }
    };
    let mut racing = u3.body.clone();
    racing["gender"] = json!("other");
    let (a, b) = tokio::join!(put(u3.body.clone()), put(racing));
    let mut statuses = [a, b];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 412]);
    let r = call(
        &server,
        "GET",
        &format!("/Patient/{pid}"),
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(r.body["meta"]["versionId"], "4");
    assert!(
        r.header("last-modified").ends_with(" GMT"),
        "{}",
        r.header("last-modified")
    );

    let v1 = call(
        &server,
        "GET",
        &format!("/Patient/{pid}/_history/1"),
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(v1.status, 200);
    assert_eq!(v1.body["meta"]["versionId"], "1");
    assert!(v1.body.get("telecom").is_none());
    let missing = call(
        &server,
        "GET",
        &format!("/Patient/{pid}/_history/9"),
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(missing.status, 404);

    let h = call(
        &server,
        "GET",
        &format!("/Patient/{pid}/_history"),
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(h.status, 200);
    assert_eq!(h.body["type"], "history");
    assert_eq!(h.body["total"], 4);
    let versions: Vec<_> = h.body["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["resource"]["meta"]["versionId"].clone())
        .collect();
    assert_eq!(versions, [json!("4"), json!("3"), json!("2"), json!("1")]);

    // Search by patient (both styles), identifier, code, date and paging.
    let s = call(
        &server,
        "GET",
        &format!("/Observation?patient={pid}"),
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(s.status, 200);
    assert_eq!(s.body["type"], "searchset");
    assert_eq!(s.body["total"], 5);
    assert_eq!(ids(&s.body), obs_ids);
    let s = call(
        &server,
        "GET",
        &format!("/Encounter?subject={}", enc(&patient_ref)),
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(s.body["total"], 1);

    let s = call(
        &server,
        "GET",
        &format!(
            "/Patient?identifier={}",
            enc(&format!("{CCCD_SYSTEM}|001088012345"))
        ),
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(ids(&s.body), vec![pid.clone()]);
    let s = call(
        &server,
        "GET",
        "/Patient?identifier=0123456789",
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(ids(&s.body), vec![pid.clone()]);
    let s = call(
        &server,
        "GET",
        &format!(
            "/Patient?identifier={}",
            enc(&format!("{BHYT_SYSTEM}|0000000000"))
        ),
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(s.body["total"], 0);

    let s = call(
        &server,
        "GET",
        &format!("/Observation?code={}", enc("http://loinc.org|8480-6")),
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(ids(&s.body), vec![obs_ids[4].clone()]);
    let s = call(
        &server,
        "GET",
        "/Observation?code=8867-4",
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(s.body["total"], 4);

    let s = call(
        &server,
        "GET",
        "/Observation?date=ge2026-03-02&date=le2026-03-04",
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(ids(&s.body), obs_ids[1..4].to_vec());
    let s = call(
        &server,
        "GET",
        "/Observation?date=2026-03-05",
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(ids(&s.body), vec![obs_ids[4].clone()]);
    let s = call(
        &server,
        "GET",
        "/Encounter?date=2026-03",
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(s.body["total"], 1);
    let s = call(
        &server,
        "GET",
        "/Patient?date=lt1980",
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(s.body["total"], 0);

    // _lastUpdated: everything was written after a minute ago, nothing after now.
    let since = enc("ge2020-01-01T00:00:00Z");
    let s = call(
        &server,
        "GET",
        &format!("/Observation?_lastUpdated={since}"),
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(s.body["total"], 5);
    let s = call(
        &server,
        "GET",
        "/Observation?_lastUpdated=gt2100-01-01",
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(s.body["total"], 0);

    // Paging follows the next links through every result once.
    let mut url = format!("{}/fhir/R4/Observation?patient={pid}&_count=2", server.base);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = call(&server, "GET", &url, Some(&doctor), None, None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(page.body["total"], 5);
        seen.extend(ids(&page.body));
        pages += 1;
        let next = page.body["link"]
            .as_array()
            .expect("links")
            .iter()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_owned);
        match next {
            Some(n) => url = n,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, obs_ids);

    // Writes are in the audit trail.
    let created = server
        .runtime
        .governance
        .audit
        .list(&AuditFilter {
            action_prefix: Some("records.".into()),
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(
        created
            .iter()
            .filter(|e| e.action == "records.created")
            .count(),
        7
    );
    assert_eq!(
        created
            .iter()
            .filter(|e| e.action == "records.updated")
            .count(),
        3
    );
}

/// How many resources of every kind are stored, history included.
async fn stored_rows(server: &TestServer) -> (i64, i64, i64) {
    let pool = &server.runtime.db.pool;
    let count = |table: &'static str| async move {
        let row: (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(pool)
                .await
                .expect("count");
        row.0
    };
    (
        count("fhir_resources").await,
        count("fhir_history").await,
        count("fhir_search_index").await,
    )
}

#[tokio::test]
async fn bad_records_are_refused_and_nothing_is_written() {
    let server = server().await;
    let doctor = token(&server, "doctor.a", Role::Practitioner, Some("bv-a")).await;
    let p = create(&server, &doctor, patient()).await;
    assert_eq!(p.status, 201);
    let pid = p.body["id"].as_str().expect("id").to_owned();
    let before = stored_rows(&server).await;

    let post = |path: &'static str, body: String| {
        let (server, doctor) = (&server, &doctor);
        async move { call(server, "POST", path, Some(doctor), Some(body), None).await }
    };
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        ("/Observation", "{\"resourceType\": \"Observation\",".into(), 400, "structure", "not valid JSON"),
        ("/Observation", "[]".into(), 400, "structure", "JSON object"),
        ("/Banana", json!({"resourceType": "Banana"}).to_string(), 400, "not-supported", "`Banana`"),
        ("/Observation", json!({"resourceType": "Patient"}).to_string(), 400, "invalid", "URL names Observation"),
        ("/Observation", json!({"resourceType": "Observation", "status": "final", "subject": {"reference": format!("Patient/{pid}")}}).to_string(),
            400, "required", "Observation.code is required"),
        ("/Encounter", json!({"resourceType": "Encounter", "status": "planned"}).to_string(), 400, "required", "Encounter.class is required"),
        ("/Patient", json!({"resourceType": "Patient", "identifier": [{"system": CCCD_SYSTEM, "value": "12345"}]}).to_string(),
            400, "invalid", "12 digits"),
        ("/Patient", json!({"resourceType": "Patient", "identifier": [{"system": BHYT_SYSTEM, "value": "HS4010123456789"}]}).to_string(),
            400, "invalid", "10 digits"),
        ("/Observation", observation("Patient/does-not-exist", &format!("Patient/{pid}"), "8867-4", "2026-03-01").to_string(),
            422, "not-found", "Patient/does-not-exist does not exist"),
        ("/Observation", observation(&format!("Patient/{pid}"), "Encounter/nope", "8867-4", "2026-03-01").to_string(),
            422, "not-found", "Encounter/nope does not exist"),
    ];
    for (path, body, status, code, text) in cases {
        let r = post(path, body.clone()).await;
        assert_eq!(r.status, status, "{path} {body}: {}", r.body);
        let (c, message) = r.issue();
        assert_eq!(c, code, "{path} {body}: {message}");
        assert!(
            message.contains(text),
            "{path} {body}: `{message}` lacks `{text}`"
        );
    }
    // A bad update leaves the resource as it was.
    let bad = json!({"resourceType": "Patient", "id": pid, "identifier": [{"system": CCCD_SYSTEM, "value": "x"}]});
    let r = call(
        &server,
        "PUT",
        &format!("/Patient/{pid}"),
        Some(&doctor),
        Some(bad.to_string()),
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    let other = json!({"resourceType": "Patient", "id": "someone-else"});
    let r = call(
        &server,
        "PUT",
        &format!("/Patient/{pid}"),
        Some(&doctor),
        Some(other.to_string()),
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.issue().1.contains("differs from the URL"));
    let r = call(
        &server,
        "PUT",
        "/Patient/nobody",
        Some(&doctor),
        Some(json!({"resourceType": "Patient", "id": "nobody"}).to_string()),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        stored_rows(&server).await,
        before,
        "a refused write stored something"
    );

    // A body that is not FHIR JSON, and an If-Match that is not a version.
    let r = server
        .client
        .post(format!("{}/fhir/R4/Patient", server.base))
        .bearer_auth(&doctor)
        .header("content-type", "application/xml")
        .body("<Patient xmlns=\"http://hl7.org/fhir\"/>")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 415);
    let r = call(
        &server,
        "PUT",
        &format!("/Patient/{pid}"),
        Some(&doctor),
        Some(json!({"resourceType": "Patient", "id": pid}).to_string()),
        Some("latest"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.issue().1.contains("If-Match"));
    assert_eq!(
        stored_rows(&server).await,
        before,
        "a refused write stored something"
    );

    // Bad searches and reads.
    let r = call(
        &server,
        "GET",
        "/Observation?colour=blue",
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.issue().1.contains("`colour`"));
    let r = call(
        &server,
        "GET",
        "/Observation?date=ge-yesterday",
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    let r = call(
        &server,
        "GET",
        "/Observation?_count=1000",
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    let r = call(
        &server,
        "GET",
        "/Observation/nope",
        Some(&doctor),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.issue().0, "not-found");
    let r = call(&server, "GET", "/Banana/1", Some(&doctor), None, None).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn another_hospitals_staff_are_denied_and_audited() {
    let server = server().await;
    let doctor_a = token(&server, "doctor.a", Role::Practitioner, Some("bv-a")).await;
    let doctor_b = token(&server, "doctor.b", Role::Practitioner, Some("bv-b")).await;
    let admin_b = token(&server, "admin.b", Role::HospitalAdmin, Some("bv-b")).await;
    let citizen = token(&server, "citizen", Role::Citizen, None).await;
    let reviewer = token(&server, "reviewer", Role::Reviewer, None).await;

    let p = create(&server, &doctor_a, patient()).await;
    let pid = p.body["id"].as_str().expect("id").to_owned();

    for t in [&doctor_b, &admin_b] {
        let r = call(
            &server,
            "GET",
            &format!("/Patient/{pid}"),
            Some(t),
            None,
            None,
        )
        .await;
        assert_eq!(r.status, 403);
        let (code, message) = r.issue();
        assert_eq!(code, "forbidden");
        assert!(message.contains("another hospital"), "{message}");
    }
    let r = call(
        &server,
        "GET",
        &format!("/Patient/{pid}/_history/1"),
        Some(&doctor_b),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    let r = call(
        &server,
        "GET",
        &format!("/Patient/{pid}/_history"),
        Some(&doctor_b),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    let r = call(
        &server,
        "PUT",
        &format!("/Patient/{pid}"),
        Some(&doctor_b),
        Some(json!({"resourceType": "Patient", "id": pid}).to_string()),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    // Hospital B's searches see none of hospital A's records, and B cannot
    // point its records at A's patient.
    let r = call(
        &server,
        "GET",
        &format!(
            "/Patient?identifier={}",
            enc(&format!("{CCCD_SYSTEM}|001088012345"))
        ),
        Some(&doctor_b),
        None,
        None,
    )
    .await;
    assert_eq!(r.body["total"], 0);
    let o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": format!("Patient/{pid}")}});
    let r = create(&server, &doctor_b, o).await;
    assert_eq!(r.status, 422);

    let denied = server
        .runtime
        .governance
        .audit
        .list(&AuditFilter {
            action_prefix: Some("records.access_denied".into()),
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(denied.len(), 5, "{denied:?}");
    assert!(
        denied
            .iter()
            .all(|e| e.target == format!("Patient/{pid}")
                && e.hospital_id.as_deref() == Some("bv-a"))
    );
    assert!(
        denied
            .iter()
            .all(|e| e.details["caller_hospital"] == "bv-b")
    );

    // Only hospital staff use the records API for now; no token is 401.
    for t in [&citizen, &reviewer] {
        let r = call(
            &server,
            "GET",
            &format!("/Patient/{pid}"),
            Some(t),
            None,
            None,
        )
        .await;
        assert_eq!(r.status, 403);
    }
    let r = call(&server, "GET", &format!("/Patient/{pid}"), None, None, None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.issue().0, "login");
    let r = call(
        &server,
        "GET",
        &format!("/Patient/{pid}"),
        Some("not-a-token"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn the_capability_statement_lists_the_types_and_a_service_can_write() {
    let server = server().await;
    let r = call(&server, "GET", "/metadata", None, None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["resourceType"], "CapabilityStatement");
    assert_eq!(r.body["fhirVersion"], "4.0.1");
    let types: Vec<_> = r.body["rest"][0]["resource"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|x| x["type"].as_str())
        .collect();
    assert_eq!(types.len(), 12);
    assert!(types.contains(&"ImagingStudy") && types.contains(&"Consent"));

    // A HIS service account (client credentials) writes its hospital's records.
    server
        .runtime
        .identity
        .register_service_client("his-a", "HIS A", "bv-a", "his-a-secret-0123456789")
        .await
        .expect("client");
    let resp = server
        .client
        .post(format!("{}/oidc/token", server.base))
        .basic_auth("his-a", Some("his-a-secret-0123456789"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    let body: Value = resp.json().await.expect("json");
    let his = body["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let r = create(&server, &his, patient()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(
        &server,
        "POST",
        "/Patient",
        Some(&his),
        Some("not json".into()),
        None,
    )
    .await;
    assert_eq!(r.status, 400);
}
