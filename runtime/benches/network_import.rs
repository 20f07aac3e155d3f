//! The network register's CSV import at national scale: 13,000 facilities
//! (deterministic), into a fresh SQLite file, fresh and re-imported, beside
//! a baseline in the same run: the same rows as plain multi-row INSERTs in
//! one transaction (no checks, no plan). Median of `RUNS` runs.
//!
//! Run with `cargo bench --bench network_import`. Method and results:
//! docs/benchmarks.md, "Network register import".

use std::sync::Arc;
use std::time::{Duration, Instant};

use vtelehealth_runtime::cluster::Bus;
use vtelehealth_runtime::db::Database;
use vtelehealth_runtime::directory::{HospitalDirectory, provinces};
use vtelehealth_runtime::network::{NetworkRegister, csv};

const FACILITIES: usize = 13_000;
const RUNS: usize = 5;
const HEADER: &str = "facility_code,name,tier,level,province,commune,ownership,parent_code,status";

/// One row: (code, name, tier, level, province code, commune, ownership, parent code).
type Row = (
    String,
    String,
    &'static str,
    &'static str,
    &'static str,
    String,
    &'static str,
    String,
);

/// Per province: one provincial hospital, 20 district health centres under
/// it, commune stations under the centres, every 10th a private clinic.
fn rows(suffix: &str) -> Vec<Row> {
    let all = provinces::all();
    let per = FACILITIES.div_ceil(all.len());
    let mut out = Vec::with_capacity(FACILITIES);
    for p in all {
        for i in 0..per {
            if out.len() == FACILITIES {
                break;
            }
            let code = format!("{}{i:03}", p.code);
            let row = match i {
                0 => (
                    code,
                    format!("Bệnh viện Đa khoa tỉnh {}{suffix}", p.name_vi),
                    "provincial",
                    "specialised",
                    p.code,
                    "Phường Trung tâm".to_owned(),
                    "public",
                    String::new(),
                ),
                1..=20 => (
                    code,
                    format!("Trung tâm Y tế khu vực {i}, {}{suffix}", p.name_vi),
                    "district",
                    "basic",
                    p.code,
                    format!("Phường {i}"),
                    "public",
                    format!("{}000", p.code),
                ),
                _ if i % 10 == 0 => (
                    code,
                    format!("Phòng khám Đa khoa số {i}{suffix}"),
                    "district",
                    "basic",
                    p.code,
                    format!("Xã {i}"),
                    "private",
                    String::new(),
                ),
                _ => (
                    code,
                    format!("Trạm Y tế xã số {i}{suffix}"),
                    "commune",
                    "primary",
                    p.code,
                    format!("Xã {i}"),
                    "public",
                    format!("{}{:03}", p.code, 1 + i % 20),
                ),
            };
            out.push(row);
        }
    }
    out
}

fn to_csv(rows: &[Row]) -> String {
    let mut s = String::with_capacity(rows.len() * 120);
    s.push_str(HEADER);
    for (code, name, tier, level, province, commune, ownership, parent) in rows {
        s.push('\n');
        s.push_str(
            &[
                code.as_str(),
                &csv::field(name),
                tier,
                level,
                province,
                &csv::field(commune),
                ownership,
                parent,
                "active",
            ]
            .join(","),
        );
    }
    s
}

async fn fresh() -> (tempfile::TempDir, Database, Arc<NetworkRegister>) {
    let dir = tempfile::TempDir::new().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let db = Database::connect(&url).await.expect("db");
    let hospitals = Arc::new(
        HospitalDirectory::load(db.pool.clone())
            .await
            .expect("directory"),
    );
    let bus = Arc::new(Bus::new(db.clone()));
    let register = NetworkRegister::new(db.clone(), hospitals, bus)
        .await
        .expect("register");
    (dir, db, register)
}

/// The baseline: the same rows as multi-row INSERTs, 500 a statement, one
/// transaction.
async fn baseline(db: &Database, rows: &[Row]) {
    let mut tx = db.begin_write().await.expect("tx");
    for chunk in rows.chunks(500) {
        let mut sql = String::from(
            "INSERT INTO hospitals (id, name, tier, province, facility_code, level, province_code, commune, ownership, parent_id, status, updated_at) VALUES ",
        );
        for (i, _) in chunk.iter().enumerate() {
            let b = i * 12;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${},${},${},${},${},${},${},${},${},${},${},${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 9,
                b + 10,
                b + 11,
                b + 12
            ));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (code, name, tier, level, province, commune, ownership, parent) in chunk {
            q = q
                .bind(format!("kcb-{code}"))
                .bind(name)
                .bind(*tier)
                .bind(
                    provinces::find(province)
                        .map(|p| p.name_vi)
                        .unwrap_or_default(),
                )
                .bind(code)
                .bind(*level)
                .bind(*province)
                .bind(commune)
                .bind(*ownership)
                .bind((!parent.is_empty()).then(|| format!("kcb-{parent}")))
                .bind("active")
                .bind(0_i64);
        }
        q.execute(&mut *tx.tx).await.expect("insert");
    }
    tx.commit().await.expect("commit");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let original = rows("");
    let renamed = rows(" (mới)");
    let (csv_a, csv_b) = (to_csv(&original), to_csv(&renamed));
    println!(
        "network import: {} facilities, {:.1} MB of CSV, {RUNS} runs, SQLite file, 2 worker threads",
        original.len(),
        csv_a.len() as f64 / 1e6
    );
    let mut results: [Vec<Duration>; 6] = Default::default();
    for _ in 0..RUNS {
        let t = Instant::now();
        let parsed = csv::parse(&csv_a).expect("csv");
        results[0].push(t.elapsed());
        assert_eq!(parsed.len(), FACILITIES + 1);

        let (_dir, _db, register) = fresh().await;
        let mut none = |_: usize, _: usize| {};
        let t = Instant::now();
        let dry = register
            .import_csv(&csv_a, true, "bench", &mut none)
            .await
            .expect("dry run");
        results[1].push(t.elapsed());
        assert_eq!(dry.created, FACILITIES);

        let t = Instant::now();
        let r = register
            .import_csv(&csv_a, false, "bench", &mut none)
            .await
            .expect("fresh import");
        results[2].push(t.elapsed());
        assert_eq!(r.created, FACILITIES);

        let t = Instant::now();
        let r = register
            .import_csv(&csv_a, false, "bench", &mut none)
            .await
            .expect("re-import");
        results[3].push(t.elapsed());
        assert_eq!(r.unchanged, FACILITIES);

        let t = Instant::now();
        let r = register
            .import_csv(&csv_b, false, "bench", &mut none)
            .await
            .expect("update");
        results[4].push(t.elapsed());
        assert_eq!(r.updated, FACILITIES);

        let (_dir2, db2, _) = fresh().await;
        let t = Instant::now();
        baseline(&db2, &original).await;
        results[5].push(t.elapsed());
    }
    let names = [
        "parse the CSV only",
        "dry run, empty register (13,000 would be created)",
        "import into an empty register (13,000 created)",
        "re-import the same file (13,000 unchanged)",
        "import with every name changed (13,000 updated)",
        "baseline: multi-row INSERT of the same rows, one transaction",
    ];
    println!("| step | median | min | max |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, r) in names.iter().zip(results) {
        let (min, max) = (
            r.iter().min().copied().unwrap_or_default(),
            r.iter().max().copied().unwrap_or_default(),
        );
        println!("| {name} | {} | {} | {} |", ms(median(r)), ms(min), ms(max));
    }
}
