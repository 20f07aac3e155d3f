//! HL7 v2 messages per second through the `his-hl7v2` plugin, beside the same
//! parser and mapping (`plugins/hl7v2`) run natively in the host, in one run.
//!
//! Two measures over the corpus's nine good messages, each message with a
//! fresh control ID (so idempotency never short-circuits a write):
//! - translate: parse + map to a FHIR transaction Bundle, no storage
//!   (plugin: `POST /translate` through `call_http`; native: `hl7v2::translate`);
//! - ingest: translate, then write the Bundle in one records transaction
//!   with the message's idempotency key, on SQLite (plugin: `POST /messages`,
//!   ACK included; native: `hl7v2::receive` + `RecordStore::transaction`).
//!
//! Run with `cargo bench -p vtelehealth-runtime --bench hl7` after
//! `cargo xtask build-plugins`. Method and results: docs/benchmarks.md.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vtelehealth_runtime::bindings::{Header, Request};
use vtelehealth_runtime::capabilities::identity::{CallContext, Hospital, Tier};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::identity::{Principal, Role};
use vtelehealth_runtime::plugins::load_plugin;
use vtelehealth_runtime::records::transaction::{self, IdempotencyKey};
use vtelehealth_runtime::records::{Actor, ActorKind};
use vtelehealth_runtime::sandbox::call_http;
use vtelehealth_runtime::{Runtime, RuntimeOptions};

const HOSPITAL: &str = "bv-bench";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The corpus's good messages (those the corpus expects to be accepted).
fn messages() -> Vec<(String, String)> {
    let corpus = root().join("plugins/his-hl7v2/corpus");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(corpus.join("expected.json")).expect("expected.json"),
    )
    .expect("json");
    let mut out = Vec::new();
    for (file, want) in expected["files"].as_object().expect("files") {
        if want["ack"] == "AA" {
            let text = std::fs::read_to_string(corpus.join(file)).expect("message");
            out.push((file.clone(), text));
        }
    }
    out
}

/// The message with MSH-10 (the control ID) replaced by `control`.
fn with_control_id(message: &str, control: &str) -> String {
    let sep = message.chars().nth(3).unwrap_or('|');
    let end = message.find(['\r', '\n']).unwrap_or(message.len());
    let mut fields: Vec<&str> = message[..end].split(sep).collect();
    if fields.len() > 9 {
        fields[9] = control;
    }
    format!("{}{}", fields.join(&sep.to_string()), &message[end..])
}

fn principal() -> Principal {
    Principal {
        subject: "client:his-bench".into(),
        name: "HIS".into(),
        roles: vec![Role::Service],
        hospital_id: Some(HOSPITAL.into()),
        vendor_id: None,
        national_id: None,
        health_id: None,
        issuer: "bench".into(),
        client_id: Some("his-bench".into()),
    }
}

fn request(path: &str, body: &str) -> Request {
    Request {
        method: "POST".into(),
        path: path.into(),
        query: String::new(),
        headers: vec![Header {
            name: "content-type".into(),
            value: "x-application/hl7-v2+er7".into(),
        }],
        body: body.as_bytes().to_vec(),
    }
}

struct Run {
    per_second: f64,
    median: Duration,
    p95: Duration,
}

fn summarize(mut per_message: Vec<Duration>, total: Duration) -> Run {
    let n = per_message.len();
    per_message.sort();
    Run {
        per_second: n as f64 / total.as_secs_f64(),
        median: per_message[n / 2],
        p95: per_message[n * 95 / 100],
    }
}

fn line(what: &str, r: &Run) {
    println!(
        "  {what:<44} {:>9.0} msg/s   median {:>8.1} µs   p95 {:>8.1} µs",
        r.per_second,
        r.median.as_secs_f64() * 1e6,
        r.p95.as_secs_f64() * 1e6
    );
}

fn main() {
    let rounds: usize = std::env::var("BENCH_HL7_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let data = tempfile::TempDir::new().expect("temp dir");
    let limits = Limits::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let runtime = rt.block_on(async {
        let runtime = Runtime::start(RuntimeOptions {
            database_url: format!("sqlite://{}", data.path().join("hl7.db").display()),
            plugin_dir: None,
            cache_dir: None,
            limits: limits.clone(),
            demo: false,
            identity: Default::default(),
            master_key_file: None,
            livekit: None,
            payment_sandbox: false,
        })
        .await
        .expect("runtime");
        runtime
            .hospitals
            .upsert(Hospital {
                id: HOSPITAL.into(),
                name: "Bệnh viện đo hiệu năng".into(),
                tier: Tier::Provincial,
                province: "Hà Nội".into(),
                ..Default::default()
            })
            .await
            .expect("hospital");
        runtime
    });
    let plugin = load_plugin(
        &runtime.engine,
        &root().join("target/plugins/his-hl7v2.wasm"),
    )
    .expect("his-hl7v2 loads: run `cargo xtask build-plugins`");
    let hospital = runtime.hospitals.get(HOSPITAL).expect("hospital");
    let messages = messages();
    let ctx = hl7v2::MappingContext::new(HOSPITAL);
    println!(
        "HL7 v2 through the his-hl7v2 plugin vs the same parser natively ({} CPUs, {} messages x {rounds} rounds)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        messages.len()
    );
    let call_ctx = || {
        Arc::new(CallContext {
            hospital: hospital.clone(),
            plugin_id: "his-hl7v2".into(),
            request_id: "bench".into(),
            principal: Some(principal()),
            started: Instant::now(),
            directory: runtime.directory(),
            video: None,
        })
    };
    let mut counter = 0u64;
    let mut next_id = |round: usize, i: usize| {
        counter += 1;
        format!("B{round}-{i}-{counter}")
    };

    // Translate only: parse and map, nothing stored.
    let mut native = Vec::new();
    let mut plugin_times = Vec::new();
    let (mut native_total, mut plugin_total) = (Duration::ZERO, Duration::ZERO);
    rt.block_on(async {
        for round in 0..rounds {
            for (i, (file, text)) in messages.iter().enumerate() {
                let text = with_control_id(text, &next_id(round, i));
                let t = Instant::now();
                let bundle = hl7v2::translate(&text, &ctx);
                let d = t.elapsed();
                assert!(bundle.is_ok(), "{file}: native translate failed");
                native.push(d);
                native_total += d;

                let kv = runtime.kv.scope(HOSPITAL, "his-hl7v2", &limits);
                let t = Instant::now();
                let r = call_http(
                    &plugin,
                    &limits,
                    call_ctx(),
                    kv,
                    request("/translate", &text),
                )
                .await
                .expect("plugin call");
                let d = t.elapsed();
                assert_eq!(
                    r.status,
                    200,
                    "{file}: {}",
                    String::from_utf8_lossy(&r.body)
                );
                plugin_times.push(d);
                plugin_total += d;
            }
        }
    });
    let (n, p) = (
        summarize(native, native_total),
        summarize(plugin_times, plugin_total),
    );
    println!("translate (parse + map to a FHIR Bundle):");
    line("native (hl7v2 crate in the host)", &n);
    line("his-hl7v2 plugin (POST /translate)", &p);
    println!(
        "  plugin / native throughput: {:.2}x",
        p.per_second / n.per_second
    );

    // Ingest: translate and store in one transaction, with the ACK.
    let actor = Actor {
        kind: ActorKind::System,
        ..Actor::staff("client:his-bench", HOSPITAL)
    };
    let mut native = Vec::new();
    let mut plugin_times = Vec::new();
    let (mut native_total, mut plugin_total) = (Duration::ZERO, Duration::ZERO);
    let ingest_rounds = (rounds / 4).max(5);
    rt.block_on(async {
        for round in 0..ingest_rounds {
            for (i, (file, text)) in messages.iter().enumerate() {
                let text = with_control_id(text, &next_id(round + rounds, i));
                let t = Instant::now();
                let hl7v2::Received::Mapped { message, bundle } =
                    hl7v2::receive(text.as_bytes(), &ctx, "20261124080000+0700")
                else {
                    panic!("{file}: refused natively");
                };
                let entries = transaction::parse(&bundle).expect("bundle");
                let key = IdempotencyKey {
                    owner: "native".into(),
                    key: hl7v2::idempotency_key(&message),
                };
                runtime
                    .records
                    .transaction(&actor, entries, Some(&key))
                    .await
                    .expect("native store");
                let target = hl7v2::AckTarget::from_message(&message);
                let ack = hl7v2::ack(&target, None, "20261124080000+0700");
                let d = t.elapsed();
                assert!(ack.contains("AA"), "{file}");
                native.push(d);
                native_total += d;

                let text = with_control_id(&text, &next_id(round + 2 * rounds, i));
                let kv = runtime.kv.scope(HOSPITAL, "his-hl7v2", &limits);
                let t = Instant::now();
                let r = call_http(
                    &plugin,
                    &limits,
                    call_ctx(),
                    kv,
                    request("/messages", &text),
                )
                .await
                .expect("plugin call");
                let d = t.elapsed();
                let ack = String::from_utf8_lossy(&r.body);
                assert!(
                    ack.contains("MSA|AA") || ack.contains("AA"),
                    "{file}: {ack}"
                );
                plugin_times.push(d);
                plugin_total += d;
            }
        }
    });
    let (n, p) = (
        summarize(native, native_total),
        summarize(plugin_times, plugin_total),
    );
    println!("ingest (translate + one records transaction on SQLite + ACK):");
    line("native (hl7v2 crate + RecordStore in the host)", &n);
    line("his-hl7v2 plugin (POST /messages)", &p);
    println!(
        "  plugin / native throughput: {:.2}x",
        p.per_second / n.per_second
    );
}
