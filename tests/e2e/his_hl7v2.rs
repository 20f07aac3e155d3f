//! The `his-hl7v2` adapter plugin end to end: a hospital's HIS pushes the
//! HL7 v2 corpus (`plugins/his-hl7v2/corpus/`) through the real component
//! with its client-credentials token; each message gets the expected ACK,
//! good ones store exactly the expected records, broken ones store nothing,
//! and a resent message (same control ID) writes nothing twice.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::Row;
use vtelehealth_runtime::RuntimeOptions;
use vtelehealth_runtime::capabilities::identity::{Hospital, Tier};
use vtelehealth_runtime::identity::{IdentityOptions, Role};
use vtelehealth_tests::{TestServer, plugin_dir, plugin_set, repo_root};

use vtelehealth_tests::common::user;

const PLUGIN: &str = "his-hl7v2";

async fn server() -> TestServer {
    let plugins = plugin_set(&plugin_dir(), &[PLUGIN]);
    let data = tempfile::TempDir::new().expect("dir");
    let options = RuntimeOptions {
        database_url: format!("sqlite://{}", data.path().join("hl7.db").display()),
        plugin_dir: Some(plugins.path().to_path_buf()),
        cache_dir: Some(data.path().join("cache")),
        identity: IdentityOptions {
            password_iterations: 1_000,
            ..IdentityOptions::default()
        },
        ..RuntimeOptions::default()
    };
    let server = TestServer::start_with(options, data).await;
    // Plugins are loaded at start; the directory may go.
    drop(plugins);
    server
}

/// A hospital of its own with its HIS service client; the client's token.
async fn hospital_with_his(server: &TestServer, id: &str) -> String {
    let rt = &server.runtime;
    rt.hospitals
        .upsert(Hospital {
            id: id.into(),
            name: format!("Bệnh viện {id}"),
            tier: Tier::Provincial,
            province: "Thái Bình".into(),
            ..Default::default()
        })
        .await
        .expect("hospital");
    server.service_token(&format!("his-{id}"), id).await
}

async fn push(
    server: &TestServer,
    hospital: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    let mut req = server
        .client
        .post(server.plugin_url(hospital, PLUGIN, "/messages"))
        .header("content-type", "x-application/hl7-v2+er7")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("sent");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

/// The field `n` of the first segment `id` of an ER7 message, with the
/// field separator its MSH declares.
fn field(message: &str, id: &str, n: usize) -> String {
    let sep = message.chars().nth(3).unwrap_or('|');
    message
        .split(['\r', '\n'])
        .find(|s| s.starts_with(id))
        .and_then(|s| s.split(sep).nth(n))
        .unwrap_or_default()
        .to_owned()
}

async fn stored(server: &TestServer, hospital: &str) -> BTreeMap<String, i64> {
    let rows = sqlx::query(
        "SELECT resource_type, COUNT(*) AS n FROM fhir_resources WHERE hospital_id = $1 GROUP BY resource_type",
    )
    .bind(hospital)
    .fetch_all(&server.runtime.db.pool)
    .await
    .expect("count");
    rows.iter()
        .map(|r| {
            (
                r.try_get::<String, _>("resource_type").expect("type"),
                r.try_get::<i64, _>("n").expect("n"),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_corpus_gets_its_acks_and_exactly_its_records() {
    let server = server().await;
    let corpus = repo_root().join("plugins/his-hl7v2/corpus");
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(corpus.join("expected.json")).expect("expected.json"),
    )
    .expect("json");
    let files = expected["files"].as_object().expect("files");
    assert!(files.len() >= 20, "the corpus shrank");
    for (i, (file, want)) in files.iter().enumerate() {
        // Each message at a hospital of its own, so its records are countable.
        let hospital = format!("hl7-{i}");
        let token = hospital_with_his(&server, &hospital).await;
        let body = std::fs::read(corpus.join(file)).expect("message");
        let (status, ack) = push(&server, &hospital, Some(&token), body.clone()).await;
        assert_eq!(status, 200, "{file}: {ack}");
        assert!(ack.starts_with("MSH"), "{file}: not an ACK: {ack}");
        let code = field(&ack, "MSA", 1);
        assert_eq!(code, want["ack"].as_str().expect("ack"), "{file}: {ack}");
        if let Some(control) = want["control_id"].as_str() {
            assert_eq!(field(&ack, "MSA", 2), control, "{file}: {ack}");
        }
        if let Some(location) = want["error_location"].as_str() {
            assert!(ack.contains(location), "{file}: no {location} in {ack}");
        }
        let want_records: BTreeMap<String, i64> = want["resources"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(stored(&server, &hospital).await, want_records, "{file}");
        if code == "AA" {
            // Resent (the HIS did not see the ACK): accepted, nothing new.
            let (status, again) = push(&server, &hospital, Some(&token), body).await;
            assert_eq!(
                (status, field(&again, "MSA", 1)),
                (200, "AA".into()),
                "{file}"
            );
            assert_eq!(
                stored(&server, &hospital).await,
                want_records,
                "{file}: resent"
            );
        }
    }
}

#[tokio::test]
async fn updates_follow_the_patient_and_callers_are_checked() {
    let server = server().await;
    let token = hospital_with_his(&server, "bv-a").await;
    let corpus = repo_root().join("plugins/his-hl7v2/corpus");
    let read = |f: &str| std::fs::read(corpus.join(f)).expect("message");

    // Admission, then a demographics update of the same patient (same MRN).
    for f in [
        "adt_a01_v23.hl7",
        "adt_a08_update.hl7",
        "adt_a03_discharge.hl7",
    ] {
        let (_, ack) = push(&server, "bv-a", Some(&token), read(f)).await;
        assert_eq!(field(&ack, "MSA", 1), "AA", "{f}: {ack}");
    }
    let counts = stored(&server, "bv-a").await;
    let same_patient = counts.get("Patient") == Some(&1);
    // The corpus's ADT messages are about one MRN only if they say so.
    let mrns: std::collections::BTreeSet<String> = [
        "adt_a01_v23.hl7",
        "adt_a08_update.hl7",
        "adt_a03_discharge.hl7",
    ]
    .iter()
    .map(|f| {
        let text = String::from_utf8(read(f)).expect("utf-8");
        field(&text, "PID", 3)
            .split('^')
            .next()
            .unwrap_or_default()
            .to_owned()
    })
    .collect();
    assert_eq!(
        same_patient,
        mrns.len() == 1,
        "{counts:?} for MRNs {mrns:?}"
    );

    // The route is for the hospital's services: not anonymous, not a
    // practitioner, not another hospital's HIS.
    let (status, _) = push(&server, "bv-a", None, read("orm_o01.hl7")).await;
    assert_eq!(status, 401);
    let doctor = user(&server, "bs-hl7", Role::Practitioner, Some("bv-a")).await;
    let (status, _) = push(&server, "bv-a", Some(&doctor), read("orm_o01.hl7")).await;
    assert_eq!(status, 403);
    let other = hospital_with_his(&server, "bv-b").await;
    let (status, _) = push(&server, "bv-a", Some(&other), read("orm_o01.hl7")).await;
    assert_eq!(status, 403);
    assert_eq!(
        stored(&server, "bv-a").await,
        counts,
        "refused calls store nothing"
    );
}

/// A 2,000,000-character patient name from a HIS is refused at the records
/// capability (names are at most 200 characters): the ACK says why, and
/// nothing of the message is stored.
#[tokio::test]
async fn a_two_million_character_patient_name_is_refused_and_stores_nothing() {
    let server = server().await;
    let token = hospital_with_his(&server, "bv-long").await;
    let corpus = repo_root().join("plugins/his-hl7v2/corpus");
    let message = std::fs::read_to_string(corpus.join("adt_a01_v23.hl7")).expect("message");
    assert!(message.contains("NGUYỄN^VĂN AN"), "the corpus changed");
    let long = message.replace(
        "NGUYỄN^VĂN AN",
        &format!("{}^VĂN AN", "N".repeat(2_000_000)),
    );
    let (status, ack) = push(&server, "bv-long", Some(&token), long.into_bytes()).await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(field(&ack, "MSA", 1), "AE", "{ack}");
    assert!(ack.contains("200 characters"), "{ack}");
    assert_eq!(stored(&server, "bv-long").await, BTreeMap::new());
    // The same message with its real name goes through.
    let (_, ack) = push(&server, "bv-long", Some(&token), message.into_bytes()).await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
}
