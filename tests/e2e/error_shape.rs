//! Every error is in the documented shape, in English and Vietnamese:
//! `{"error":{"code","message","message_vi"}}` on the JSON API, an
//! OperationOutcome (with a Vietnamese translation) under `/fhir/`,
//! including the framework's own rejections. And free text has bounds.

use serde_json::{Value, json};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::governance::registry::Decision;
use vtelehealth_runtime::identity::Role;
use vtelehealth_tests::{TestServer, plugin_dir};

use vtelehealth_tests::common::user;

/// Send raw bytes; status, headers and the body as JSON (`Null` otherwise).
async fn raw(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    // A client of its own: the server closes a connection whose oversized
    // body it did not read.
    let mut req = reqwest::Client::new()
        .request(
            method.parse().expect("method"),
            format!("{}{path}", server.base),
        )
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

fn content_type(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The JSON API's shape, with `code`.
fn assert_api_error(status: u16, headers: &reqwest::header::HeaderMap, body: &Value, code: &str) {
    assert!(
        content_type(headers).starts_with("application/json"),
        "{status} {headers:?} {body}"
    );
    assert_eq!(body["error"]["code"], code, "{status} {body}");
    for k in ["message", "message_vi"] {
        assert!(
            body["error"][k].as_str().is_some_and(|m| !m.is_empty()),
            "{status} {body}"
        );
    }
}

/// An OperationOutcome whose issue has `code` and a Vietnamese translation.
fn assert_outcome(status: u16, headers: &reqwest::header::HeaderMap, body: &Value, code: &str) {
    assert!(
        content_type(headers).starts_with("application/fhir+json"),
        "{status} {headers:?} {body}"
    );
    assert_eq!(body["resourceType"], "OperationOutcome", "{status} {body}");
    let issue = &body["issue"][0];
    assert_eq!(issue["code"], code, "{status} {body}");
    assert!(issue["diagnostics"].is_string(), "{body}");
    let translation = &issue["_diagnostics"]["extension"][0];
    assert_eq!(
        translation["url"],
        "http://hl7.org/fhir/StructureDefinition/translation"
    );
    assert_eq!(translation["extension"][0]["valueCode"], "vi", "{body}");
    assert!(
        translation["extension"][1]["valueString"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let server = TestServer::start(&plugin_dir(), Limits::default()).await;
    let doctor = user(&server, "bs-shape", Role::Practitioner, Some("bv-a")).await;

    let (status, headers, body) = raw(&server, "GET", "/nowhere", None, None, vec![]).await;
    assert_eq!(status, 404);
    assert_api_error(status, &headers, &body, "not_found");

    let (status, headers, body) = raw(&server, "PATCH", "/api/v1/me", None, None, vec![]).await;
    assert_eq!(status, 405);
    assert_api_error(status, &headers, &body, "method_not_allowed");
    assert!(headers.contains_key("allow"), "{headers:?}");

    let (status, headers, body) = raw(
        &server,
        "GET",
        "/fhir/R4/Patient/x/y/z",
        Some(&doctor),
        None,
        vec![],
    )
    .await;
    assert_eq!(status, 404);
    assert_outcome(status, &headers, &body, "not-found");

    let (status, headers, body) = raw(
        &server,
        "DELETE",
        "/fhir/R4/Patient",
        Some(&doctor),
        None,
        vec![],
    )
    .await;
    assert_eq!(status, 405);
    assert_outcome(status, &headers, &body, "not-supported");
}

#[tokio::test]
async fn the_frameworks_rejections_answer_in_the_error_shape() {
    let server = TestServer::start(&plugin_dir(), Limits::default()).await;
    let citizen = user(&server, "cd-shape", Role::Citizen, None).await;
    let doctor = user(&server, "bs-shape", Role::Practitioner, Some("bv-a")).await;
    let consents = "/api/v1/me/consents";
    let json = Some("application/json");

    let (status, headers, body) = raw(
        &server,
        "POST",
        consents,
        Some(&citizen),
        json,
        b"{\"".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert_api_error(status, &headers, &body, "bad_request");

    let valid = json!({ "grantee_hospital": "bv-b" })
        .to_string()
        .into_bytes();
    let (status, headers, body) = raw(
        &server,
        "POST",
        consents,
        Some(&citizen),
        Some("text/plain"),
        valid,
    )
    .await;
    assert_eq!(status, 415);
    assert_api_error(status, &headers, &body, "unsupported_media_type");

    let wrong_type = json!({ "grantee_hospital": 7 }).to_string().into_bytes();
    let (status, headers, body) =
        raw(&server, "POST", consents, Some(&citizen), json, wrong_type).await;
    assert_eq!(status, 422);
    assert_api_error(status, &headers, &body, "invalid");

    // Over the JSON API's 2 MiB body limit.
    let huge = format!("{{\"grantee_hospital\":\"{}\"}}", "x".repeat(3 << 20));
    let (status, headers, body) = raw(
        &server,
        "POST",
        consents,
        Some(&citizen),
        json,
        huge.clone().into_bytes(),
    )
    .await;
    assert_eq!(status, 413);
    assert_api_error(status, &headers, &body, "payload_too_large");

    let (status, headers, body) = raw(
        &server,
        "GET",
        "/api/v1/me/record-access?limit=many",
        Some(&citizen),
        None,
        vec![],
    )
    .await;
    assert_eq!(status, 400);
    assert_api_error(status, &headers, &body, "bad_request");

    // Nothing was granted by any of them.
    let (status, _, body) = raw(&server, "GET", consents, Some(&citizen), None, vec![]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["consents"], json!([]), "{body}");

    // The same on FHIR routes, as OperationOutcomes.
    let fhir = Some("application/fhir+json");
    let (status, headers, body) = raw(
        &server,
        "POST",
        "/fhir/R4/Patient",
        Some(&doctor),
        fhir,
        huge.into_bytes(),
    )
    .await;
    assert_eq!(status, 413);
    assert_outcome(status, &headers, &body, "too-costly");
    let (status, headers, body) = raw(
        &server,
        "POST",
        "/fhir/R4/Patient",
        Some(&doctor),
        fhir,
        b"{\"resourceType\":".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert_outcome(status, &headers, &body, "structure");
}

/// A 40,000-character approval note is refused with 422, naming the field
/// and its maximum, and nothing is decided or audited.
#[tokio::test]
async fn a_40000_character_approval_note_is_refused_and_nothing_recorded() {
    use vtelehealth_runtime::demo::{REFERENCE_VENDOR, publish_reference_plugins};
    let no_dev_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_dev_plugins.path(), Limits::default()).await;
    let rt = server.runtime.clone();
    publish_reference_plugins(&rt, &plugin_dir())
        .await
        .expect("published");
    // A fresh submission of hello, to decide on.
    let approved = rt
        .governance
        .registry
        .activation("bv-a", "hello")
        .await
        .expect("activation")
        .expect("hello active")
        .version_id;
    let version = rt.governance.version(&approved).await.expect("version");
    let bumped = version
        .manifest
        .replace("version = \"0.1.0\"", "version = \"0.1.1\"");
    assert_ne!(bumped, version.manifest, "hello is at 0.1.0");
    let key = vtelehealth_runtime::governance::signing::SigningKey::generate().expect("key");
    rt.governance
        .registry
        .add_vendor_key(
            "test:seed",
            REFERENCE_VENDOR.0,
            &key.key_id(),
            &key.public_key(),
        )
        .await
        .expect("vendor key");
    let (wasm, _) = vtelehealth_tests::component(&plugin_dir(), "hello");
    let mut bundle = vtelehealth_runtime::governance::bundle::Bundle::new(
        bumped,
        std::fs::read(wasm).expect("component"),
    );
    key.sign(&mut bundle);
    let submitted = match rt
        .governance
        .submit("test:seed", REFERENCE_VENDOR.0, bundle)
        .await
    {
        Ok((v, _)) => v.id,
        Err(e) => panic!("submission: {e:?}"),
    };
    let reviewer = user(&server, "reviewer-shape", Role::Reviewer, None).await;
    let audit_before = rt.governance.audit.verify().await.expect("verify").entries;

    let note = "Đ".repeat(40_000);
    let (status, headers, body) = raw(
        &server,
        "POST",
        &format!("/api/v1/plugin-versions/{submitted}/approve"),
        Some(&reviewer),
        Some("application/json"),
        json!({ "note": note }).to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_api_error(status, &headers, &body, "too_long");
    assert_eq!(body["error"]["field"], "note", "{body}");
    assert_eq!(body["error"]["limit"]["characters"], 2000, "{body}");
    assert!(
        body["error"]["message_vi"]
            .as_str()
            .is_some_and(|m| m.contains("2000 ký tự")),
        "{body}"
    );
    // So is a reason, and through the service itself, not only the API.
    let refused = rt
        .governance
        .decide(
            "test:seed",
            &submitted,
            Decision::Reject {
                reason: "x".repeat(2_001),
            },
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let version = rt.governance.version(&submitted).await.expect("version");
    assert_eq!(
        serde_json::to_value(version.state).expect("state"),
        "submitted"
    );
    let audit_after = rt.governance.audit.verify().await.expect("verify").entries;
    assert_eq!(audit_before, audit_after, "nothing audited");

    // At the maximum, with Vietnamese letters, it goes through.
    let (status, body) = vtelehealth_tests::common::send(
        &server,
        "POST",
        &format!("/api/v1/plugin-versions/{submitted}/approve"),
        &reviewer,
        Some(json!({ "note": "Đ".repeat(2_000) })),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// A FHIR string over its maximum is refused with an OperationOutcome that
/// names the element, on create and inside a transaction; nothing stored.
#[tokio::test]
async fn an_oversized_fhir_string_is_refused_with_an_operation_outcome() {
    let server = TestServer::start(&plugin_dir(), Limits::default()).await;
    let doctor = user(&server, "bs-long", Role::Practitioner, Some("bv-a")).await;
    let fhir = Some("application/fhir+json");
    let patient = json!({
        "resourceType": "Patient",
        "name": [{ "family": "Nguyễn".repeat(40), "given": ["An"] }]
    });
    let (status, headers, body) = raw(
        &server,
        "POST",
        "/fhir/R4/Patient",
        Some(&doctor),
        fhir,
        patient.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_outcome(status, &headers, &body, "too-long");
    assert_eq!(
        body["issue"][0]["expression"][0], "Patient.name[0].family",
        "{body}"
    );
    let observation = json!({
        "resourceType": "Observation", "status": "final",
        "code": { "text": "ghi chú" },
        "valueString": "a".repeat(16_385)
    });
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [{ "resource": observation, "request": { "method": "POST", "url": "Observation" } }]
    });
    let (status, headers, body) = raw(
        &server,
        "POST",
        "/fhir/R4",
        Some(&doctor),
        fhir,
        bundle.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_outcome(status, &headers, &body, "too-long");
    for ty in ["Patient", "Observation"] {
        let (status, _, body) = raw(
            &server,
            "GET",
            &format!("/fhir/R4/{ty}"),
            Some(&doctor),
            None,
            vec![],
        )
        .await;
        assert_eq!((status, &body["total"]), (200, &json!(0)), "{ty}: {body}");
    }
}

/// The token endpoint keeps OAuth's own error shape (RFC 6749 §5.2), also
/// for a body the framework cannot read.
#[tokio::test]
async fn the_token_endpoint_answers_unreadable_bodies_in_the_oauth_shape() {
    let server = TestServer::start(&plugin_dir(), Limits::default()).await;
    for (sent_type, body) in [
        (Some("application/json"), b"{\"grant_type\":1}".to_vec()),
        (None, b"grant_type=client_credentials".to_vec()),
    ] {
        let (status, headers, body) =
            raw(&server, "POST", "/oidc/token", None, sent_type, body).await;
        assert_eq!(status, 400, "{sent_type:?}: {body}");
        assert!(
            content_type(&headers).starts_with("application/json"),
            "{headers:?}"
        );
        assert_eq!(body["error"], "invalid_request", "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
}
