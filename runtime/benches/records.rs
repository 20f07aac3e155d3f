//! Health-records benchmarks: creates, reads by id and searches of FHIR
//! resources through the `RecordStore`, on SQLite and on PostgreSQL in the
//! same run with the same method, each beside bare-SQL baselines on the same
//! database (so the cost of validation, search index, history and audit
//! shows).
//!
//! Run with `cargo xtask bench-records` (starts a throw-away PostgreSQL), or
//! `VTH_BENCH_POSTGRES_URL=postgres://… cargo bench -p vtelehealth-runtime
//! --bench records` (a fresh database is made on that server and dropped
//! after). Without a PostgreSQL URL only SQLite runs. `BENCH_RECORDS_STORE`
//! sets the store size searched (default 20000). Method and results:
//! docs/benchmarks.md.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use sqlx::Connection as _;
use vtelehealth_runtime::capabilities::identity::{Hospital, Tier};
use vtelehealth_runtime::capabilities::kv::KvStore;
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::db::Database;
use vtelehealth_runtime::directory::HospitalDirectory;
use vtelehealth_runtime::records::validate;
use vtelehealth_runtime::records::{Actor, RecordStore, ResourceType, SearchQuery};

const PATIENTS: usize = 200;
const CODES: [&str; 5] = ["8867-4", "8480-6", "8462-4", "8310-5", "29463-7"];
/// Concurrent writers or readers in the concurrent variants.
const CONCURRENCY: usize = 8;

/// One benchmark's result on one database.
#[derive(Clone)]
struct Measured {
    median: Duration,
    p95: Duration,
    per_sec: f64,
}

/// Run `ops` operations, `concurrency` at a time; per-operation latency and
/// overall throughput.
async fn measure<F, Fut>(ops: usize, concurrency: usize, op: F) -> Measured
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= ops {
                        return latencies;
                    }
                    let t = Instant::now();
                    op(i).await;
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(ops);
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    let wall = started.elapsed();
    all.sort();
    Measured {
        median: all[all.len() / 2],
        p95: all[all.len() * 95 / 100],
        per_sec: ops as f64 / wall.as_secs_f64(),
    }
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

/// Results by (operation, variant, concurrency), then by database.
#[derive(Default)]
struct Report {
    order: Vec<(String, String, usize)>,
    results: BTreeMap<(String, String, usize), BTreeMap<&'static str, Measured>>,
}

impl Report {
    fn add(&mut self, db: &'static str, op: &str, variant: &str, conc: usize, m: Measured) {
        println!(
            "  {db:<10} {op:<28} {variant:<44} x{conc:<2} median {:>9}  p95 {:>9}  {:>8.0}/s",
            fmt(m.median),
            fmt(m.p95),
            m.per_sec
        );
        let key = (op.to_owned(), variant.to_owned(), conc);
        if !self.results.contains_key(&key) {
            self.order.push(key.clone());
        }
        self.results.entry(key).or_default().insert(db, m);
    }

    fn print(&self, dbs: &[&'static str]) {
        let mut header = "| operation | variant | concurrent |".to_owned();
        let mut rule = "|---|---|---|".to_owned();
        for db in dbs {
            header.push_str(&format!(" {db} median | {db} p95 | {db} per s |"));
            rule.push_str("---|---|---|");
        }
        println!("\n{header}\n{rule}");
        for key in &self.order {
            let mut line = format!("| {} | {} | {} |", key.0, key.1, key.2);
            for db in dbs {
                match self.results.get(key).and_then(|r| r.get(db)) {
                    Some(m) => line.push_str(&format!(
                        " {} | {} | {:.0} |",
                        fmt(m.median),
                        fmt(m.p95),
                        m.per_sec
                    )),
                    None => line.push_str(" | | |"),
                }
            }
            println!("{line}");
        }
    }
}

fn hospital() -> Hospital {
    Hospital {
        id: "bv-a".into(),
        name: "Bệnh viện A".into(),
        tier: Tier::Central,
        province: "Hà Nội".into(),
        ..Default::default()
    }
}

fn actor() -> Actor {
    Actor::staff("bench-practitioner", "bv-a")
}

/// The i-th observation: three codings (LOINC code and a local code, the
/// vital-signs category), a date spread over 2026, a patient.
fn observation(i: usize, patient: &str) -> Map<String, Value> {
    let day = i % 365;
    let (month, dom) = month_day(day);
    let code = CODES[i % CODES.len()];
    let v = json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs"
        }] }],
        "code": { "coding": [
            { "system": "http://loinc.org", "code": code },
            { "system": "https://bv-a.example.vn/ma-xet-nghiem", "code": format!("XN-{code}") }
        ] },
        "subject": { "reference": format!("Patient/{patient}") },
        "effectiveDateTime": format!("2026-{month:02}-{dom:02}T{:02}:{:02}:00+07:00", 7 + i % 12, i % 60),
        "valueQuantity": { "value": 60 + i % 40, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min" }
    });
    object(v)
}

fn object(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("a JSON object")
}

/// Month and day of month of the `day`-th day (0-based) of 2026.
fn month_day(mut day: usize) -> (usize, usize) {
    const LEN: [usize; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    for (m, len) in LEN.iter().enumerate() {
        if day < *len {
            return (m + 1, day + 1);
        }
        day -= len;
    }
    (12, 31)
}

/// A small deterministic generator, so both databases get the same queries.
fn pick(i: usize, n: usize) -> usize {
    (i.wrapping_mul(2_654_435_761) >> 7) % n
}

struct Target {
    name: &'static str,
    db: Database,
    records: RecordStore,
    patients: Arc<Vec<String>>,
    observations: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn open(name: &'static str, url: &str) -> Target {
    let db = Database::connect(url).await.expect("database opens");
    let hospitals = HospitalDirectory::load(db.pool.clone())
        .await
        .expect("hospitals");
    hospitals.upsert(hospital()).await.expect("hospital");
    // The baseline's table: the same JSON row, no index, history or audit.
    sqlx::raw_sql("CREATE TABLE bench_bare (id TEXT PRIMARY KEY, content TEXT NOT NULL)")
        .execute(&db.pool)
        .await
        .expect("baseline table");
    let records = RecordStore::new(db.clone());
    let mut patients = Vec::new();
    for i in 0..PATIENTS {
        let p = json!({
            "resourceType": "Patient",
            "identifier": [{ "system": "https://vneid.gov.vn/cccd", "value": format!("{:012}", 1_088_000_000 + i) }],
            "name": [{ "family": "Nguyễn", "given": ["Văn", format!("An {i}")] }],
            "gender": "male",
            "birthDate": "1980-01-01"
        });
        let s = records
            .create(&actor(), ResourceType::Patient, object(p))
            .await
            .expect("patient");
        patients.push(s.id);
    }
    Target {
        name,
        db,
        records,
        patients: Arc::new(patients),
        observations: Arc::default(),
    }
}

/// Writes: bare INSERT and kv set (baselines), then the store's create.
async fn writes(t: &Target, report: &mut Report) {
    let sample = {
        let mut o = observation(0, &t.patients[0]);
        o.insert("id".into(), json!(uuid::Uuid::now_v7().to_string()));
        o.insert(
            "meta".into(),
            json!({ "versionId": "1", "lastUpdated": "2026-11-24T00:00:00.000Z" }),
        );
        Value::Object(o).to_string()
    };
    for conc in [1, CONCURRENCY] {
        let (db, text) = (t.db.clone(), sample.clone());
        let m = measure(1000, conc, move |_| {
            let (db, text) = (db.clone(), text.clone());
            async move {
                let mut tx = db.begin_write().await.expect("begin");
                sqlx::query("INSERT INTO bench_bare (id, content) VALUES ($1, $2)")
                    .bind(uuid::Uuid::now_v7().to_string())
                    .bind(text)
                    .execute(&mut *tx.tx)
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
            }
        })
        .await;
        report.add(
            t.name,
            "write",
            "baseline: bare INSERT of the same JSON row",
            conc,
            m,
        );
    }
    let kv = Arc::new(KvStore::new(t.db.clone())).scope("bv-a", "bench", &Limits::default());
    let text = sample.clone();
    let m = measure(1000, 1, move |i| {
        let (kv, text) = (kv.clone(), text.clone());
        async move {
            kv.put(&format!("obs/{}", i % 100), text.as_bytes(), None)
                .await
                .expect("kv set");
        }
    })
    .await;
    report.add(t.name, "write", "baseline: platform kv set", 1, m);

    for (conc, ops) in [(1, 1000), (CONCURRENCY, 2000)] {
        let records = t.records.clone();
        let (patients, created) = (t.patients.clone(), t.observations.clone());
        let offset = created.lock().expect("ids").len();
        let m = measure(ops, conc, move |i| {
            let (records, patients, created) = (records.clone(), patients.clone(), created.clone());
            async move {
                let i = offset + i;
                let o = observation(i, &patients[pick(i, PATIENTS)]);
                let s = records
                    .create(&actor(), ResourceType::Observation, o)
                    .await
                    .expect("create");
                created.lock().expect("ids").push(s.id);
            }
        })
        .await;
        report.add(
            t.name,
            "create Observation",
            "validate + resolve ref + index + history + audit",
            conc,
            m,
        );
    }
}

/// Create observations until the store holds `size` of them.
async fn fill(t: &Target, size: usize) {
    let have = t.observations.lock().expect("ids").len();
    if have >= size {
        return;
    }
    let (records, patients, created) = (
        t.records.clone(),
        t.patients.clone(),
        t.observations.clone(),
    );
    let m = measure(size - have, 4, move |i| {
        let (records, patients, created) = (records.clone(), patients.clone(), created.clone());
        async move {
            let i = have + i;
            let o = observation(i, &patients[pick(i, PATIENTS)]);
            let s = records
                .create(&actor(), ResourceType::Observation, o)
                .await
                .expect("create");
            created.lock().expect("ids").push(s.id);
        }
    })
    .await;
    println!(
        "  {:<10} filled to {size} observations ({:.0} creates/s with 4 writers)",
        t.name, m.per_sec
    );
    if t.name == "PostgreSQL" {
        // What autovacuum would do shortly after a bulk load.
        sqlx::raw_sql("ANALYZE")
            .execute(&t.db.pool)
            .await
            .expect("analyze");
    }
}

/// Reads by id (store and bare SELECT) and the two searches.
async fn reads(t: &Target, report: &mut Report) {
    let ids = Arc::new(t.observations.lock().expect("ids").clone());
    for conc in [1, CONCURRENCY] {
        let (records, ids2) = (t.records.clone(), ids.clone());
        let m = measure(3000, conc, move |i| {
            let (records, ids) = (records.clone(), ids2.clone());
            async move {
                let id = &ids[pick(i, ids.len())];
                records
                    .read(&actor(), ResourceType::Observation, id)
                    .await
                    .expect("read");
            }
        })
        .await;
        report.add(
            t.name,
            "read by id",
            "store: row + owner check + JSON parse",
            conc,
            m,
        );
    }
    let bare: Arc<Vec<String>> = Arc::new(
        sqlx::query_scalar::<_, String>("SELECT id FROM bench_bare")
            .fetch_all(&t.db.pool)
            .await
            .expect("ids"),
    );
    let db = t.db.clone();
    let m = measure(3000, 1, move |i| {
        let (db, bare) = (db.clone(), bare.clone());
        async move {
            let id = &bare[pick(i, bare.len())];
            sqlx::query_scalar::<_, String>("SELECT content FROM bench_bare WHERE id = $1")
                .bind(id)
                .fetch_one(&db.pool)
                .await
                .expect("select");
        }
    })
    .await;
    report.add(
        t.name,
        "read by id",
        "baseline: bare SELECT of the JSON row",
        1,
        m,
    );

    for conc in [1, CONCURRENCY] {
        let (records, patients) = (t.records.clone(), t.patients.clone());
        let m = measure(1000, conc, move |i| {
            let (records, patients) = (records.clone(), patients.clone());
            async move {
                let patient = format!("Patient/{}", patients[pick(i, PATIENTS)]);
                let code = format!("http://loinc.org|{}", CODES[i % CODES.len()]);
                let q =
                    SearchQuery::parse([("patient", patient.as_str()), ("code", code.as_str())])
                        .expect("query");
                let page = records
                    .search(&actor(), ResourceType::Observation, &q)
                    .await
                    .expect("search");
                assert!(page.total > 0);
            }
        })
        .await;
        report.add(
            t.name,
            "search Observation",
            "patient + code (about 20 matches)",
            conc,
            m,
        );
    }
    for conc in [1, CONCURRENCY] {
        let records = t.records.clone();
        let m = measure(300, conc, move |i| {
            let records = records.clone();
            async move {
                let (month, dom) = month_day(pick(i, 358));
                let lo = format!("ge2026-{month:02}-{dom:02}");
                let (month, dom) = month_day(pick(i, 358) + 7);
                let hi = format!("lt2026-{month:02}-{dom:02}");
                let q = SearchQuery::parse([("date", lo.as_str()), ("date", hi.as_str())])
                    .expect("query");
                let page = records
                    .search(&actor(), ResourceType::Observation, &q)
                    .await
                    .expect("search");
                assert!(page.total > 0);
            }
        })
        .await;
        report.add(
            t.name,
            "search Observation",
            "date range of one week, first page of 20",
            conc,
            m,
        );
    }
}

async fn run(t: &Target, report: &mut Report, store_size: usize) {
    println!("{}: writes", t.name);
    writes(t, report).await;
    println!("{}: filling the store", t.name);
    fill(t, store_size).await;
    println!("{}: reads and searches", t.name);
    reads(t, report).await;
}

/// A fresh database on the server of `admin_url`, and its URL.
async fn postgres_database(admin_url: &str) -> (String, String) {
    let name = format!("vth_bench_{}", std::process::id());
    let mut admin = sqlx::postgres::PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {admin_url}: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .expect("create database");
    let _ = admin.close().await;
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    let url = match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    };
    (name, url)
}

async fn drop_database(admin_url: &str, name: &str) {
    if let Ok(mut admin) = sqlx::postgres::PgConnection::connect(admin_url).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
    }
}

fn main() {
    let store_size: usize = std::env::var("BENCH_RECORDS_STORE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let postgres = ["VTH_BENCH_POSTGRES_URL", "VTH_TEST_POSTGRES_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()));
    // Two workers, as `runtime serve` on this machine's two cores.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "VTelehealth records benchmarks ({} CPUs, store of {store_size} observations over {PATIENTS} patients)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut report = Report::default();

    // Validation alone, no database: the CPU part of a create.
    let sample = observation(1, "0190aaaa-0000-7000-8000-000000000000");
    let m = rt.block_on(measure(20_000, 1, move |_| {
        let o = sample.clone();
        async move {
            validate::validate(ResourceType::Observation, &o).expect("valid");
        }
    }));
    println!(
        "  validation alone (no database): median {}  p95 {}",
        fmt(m.median),
        fmt(m.p95)
    );

    let data = tempfile::TempDir::new().expect("temp dir");
    let mut dbs = vec!["SQLite"];
    rt.block_on(async {
        let url = format!("sqlite://{}", data.path().join("records.db").display());
        let sqlite = open("SQLite", &url).await;
        run(&sqlite, &mut report, store_size).await;
        sqlite.db.pool.close().await;
    });
    match &postgres {
        Some(admin_url) => {
            dbs.push("PostgreSQL");
            rt.block_on(async {
                let (name, url) = postgres_database(admin_url).await;
                let pg = open("PostgreSQL", &url).await;
                run(&pg, &mut report, store_size).await;
                pg.db.pool.close().await;
                drop_database(admin_url, &name).await;
            });
        }
        None => println!(
            "PostgreSQL skipped: set VTH_BENCH_POSTGRES_URL (or run `cargo xtask bench-records`)"
        ),
    }
    report.print(&dbs);
    println!(
        "\nvalidate an Observation + its index entries, no database: median {}, p95 {}",
        fmt(m.median),
        fmt(m.p95)
    );
}
