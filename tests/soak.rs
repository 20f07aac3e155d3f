//! `vth-soak`: two `runtime serve` processes on one PostgreSQL database under
//! mixed traffic, one of them killed with SIGKILL halfway and restarted 5 s
//! later on the same port and database; then every acknowledged write is
//! checked.
//! Run it through `cargo xtask soak [--minutes N]`, which builds the plugins
//! and the binaries and starts a throw-away PostgreSQL cluster.
//!
//! Arguments: `--minutes N` (default 2), `--runtime PATH` (the `runtime`
//! binary). Environment: `VTH_TEST_POSTGRES_URL` (the cluster's admin URL; a
//! fresh database is created in it). Exit status 1 when an invariant fails.
//!
//! Shape: setup runs in-process against the database (users, tokens, the
//! reference plugins through review, the payment probe activated with a
//! VNPAY-style gateway), then the two nodes start with the same master key
//! and issuer, so every token, join token and sealed secret is valid on
//! both. One client task per kind of traffic sends each request to the next
//! node in turn and retries on the other node, with backoff, as a client
//! behind a load balancer would.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt as _;
use serde_json::{Value, json};
use sqlx::Row as _;
use tokio::process::{Child, Command};
use vtelehealth_runtime::RuntimeOptions;
use vtelehealth_runtime::db::Database;
use vtelehealth_runtime::identity::{IdentityOptions, NewUser, Role};
use vtelehealth_tests::{
    TestServer, plugin_dir, plugin_set, postgres_database, repo_root, test_plugin_dir,
};

const HOSPITAL: &str = "bv-a";
const PROBE: &str = "payment-probe";
/// The payment probe's VNPAY terminal and hash secret (the gateway's side).
const TMN_CODE: &str = "BVA00001";
const HASH_SECRET: &str = "SOAK-VNPAY-HASH-SECRET-2026";
/// Identifier system of the FHIR clients' Patients.
const FHIR_SYSTEM: &str = "urn:vth:soak";
/// One request's time limit; longer counts as a timeout and is retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A client gives up on one step after this long (counted as a failure).
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
/// How long the killed node stays down before its restart (a supervisor's
/// restart delay, e.g. systemd's `RestartSec=5s`).
const RESTART_AFTER: Duration = Duration::from_secs(5);
/// Clients of each kind of traffic (HL7, FHIR, plugins, rooms, payments).
const CLIENTS_PER_KIND: usize = 2;
/// Pause between two operations of one client.
const THINK_TIME: Duration = Duration::from_millis(20);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("soak: FAILED: an invariant does not hold (see above)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("soak: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

struct Args {
    minutes: f64,
    runtime: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut minutes = 2.0;
    let mut runtime = repo_root().join("target/debug/runtime");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--minutes" => {
                let v = args.next().context("--minutes needs a value")?;
                minutes = v.parse().with_context(|| format!("--minutes {v}"))?;
                anyhow::ensure!(minutes > 0.0, "--minutes must be positive");
            }
            "--runtime" => runtime = args.next().context("--runtime needs a path")?.into(),
            other => bail!("unknown argument `{other}` (--minutes N, --runtime PATH)"),
        }
    }
    anyhow::ensure!(
        runtime.is_file(),
        "{} is missing: `cargo build --workspace` (or run `cargo xtask soak`)",
        runtime.display()
    );
    Ok(Args { minutes, runtime })
}

async fn run() -> Result<bool> {
    let args = parse_args()?;
    let db_url = postgres_database().await.context(
        "VTH_TEST_POSTGRES_URL must name a PostgreSQL server (`cargo xtask soak` sets it)",
    )?;
    let work = tempfile::TempDir::new().context("work directory")?;
    let ports = [free_port()?, free_port()?];
    // Both nodes sign tokens as node A's URL: one deployment, one issuer.
    let issuer = format!("http://127.0.0.1:{}", ports[0]);
    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    println!("soak: database {db_url}");
    println!("soak: work directory {}", work.path().display());

    let setup = setup(&db_url, &issuer, work.path(), run_for).await?;
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let node = Node {
            name: ["A", "B"][i],
            port: *port,
            runtime: args.runtime.clone(),
            db_url: db_url.clone(),
            issuer: issuer.clone(),
            dir: work.path().to_path_buf(),
        };
        let child = node.start().await?;
        nodes.push((node, child));
    }
    let ctx = Arc::new(Ctx {
        bases: ports.map(|p| format!("http://127.0.0.1:{p}")),
        client: reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("HTTP client")?,
        tokens: setup,
        next_node: AtomicUsize::new(0),
        sequences: Default::default(),
        phases: Mutex::new(PhaseClock::default()),
        stats: Mutex::new(BTreeMap::new()),
        acked: Mutex::new(Acked::default()),
    });
    warm_up(&ctx).await?;

    let start = Instant::now();
    let end = start + run_for;
    println!(
        "soak: running {:.1} min; node A is killed at {:.1} min",
        args.minutes,
        args.minutes / 2.0
    );
    // CLIENTS_PER_KIND clients of each kind, numbering their operations
    // from one sequence per kind.
    let mut workers = Vec::new();
    for _ in 0..CLIENTS_PER_KIND {
        workers.extend([
            tokio::spawn(client_loop(ctx.clone(), end, 0, hl7_message)),
            tokio::spawn(client_loop(ctx.clone(), end, 1, fhir_create_and_read)),
            tokio::spawn(client_loop(ctx.clone(), end, 2, plugin_calls)),
            tokio::spawn(client_loop(ctx.clone(), end, 3, video_room)),
            tokio::spawn(client_loop(ctx.clone(), end, 4, payment)),
        ]);
    }

    // The kill, halfway (the middle third of the run), then a restart on
    // the same port and database, as a supervisor would.
    tokio::time::sleep_until((start + run_for / 2).into()).await;
    let (node, child) = &mut nodes[0];
    child.kill().await.context("SIGKILL node A")?;
    let killed = Instant::now();
    ctx.phases.lock().map_err(poisoned)?.killed = Some(killed);
    println!(
        "soak: node A killed (SIGKILL) at {:.1} s; restarting it in {} s",
        (killed - start).as_secs_f64(),
        RESTART_AFTER.as_secs()
    );
    tokio::time::sleep(RESTART_AFTER).await;
    *child = node.start().await?;
    let healthy = Instant::now();
    ctx.phases.lock().map_err(poisoned)?.healthy = Some(healthy);
    println!(
        "soak: node A healthy again after {:.1} s",
        (healthy - killed).as_secs_f64()
    );

    for w in workers {
        w.await.context("a client task panicked")?;
    }
    println!(
        "soak: traffic stopped after {:.1} s; checking",
        start.elapsed().as_secs_f64()
    );
    drain_settlements(&ctx).await;

    let report = Report {
        minutes: args.minutes,
        kill_at: (killed - start).as_secs_f64(),
        recovery: (healthy - killed).as_secs_f64(),
    };
    print_table(&ctx, &report)?;
    let db = Database::connect(&db_url)
        .await
        .context("connecting for the checks")?;
    let mut checks = check_writes(&ctx, &db).await?;
    // The CLI reads the database alone: stop the nodes first.
    for (_, child) in &mut nodes {
        let _ = child.kill().await;
    }
    checks.push(audit_verify(&args.runtime, &db_url, work.path()).await);
    println!("\n| invariant | result | detail |\n|---|---|---|");
    for c in &checks {
        let verdict = if c.ok { "PASS" } else { "FAIL" };
        println!("| {} | {verdict} | {} |", c.name, c.detail);
    }
    let ok = checks.iter().all(|c| c.ok);
    if !ok {
        // Keep the nodes' logs for the post-mortem.
        let kept = work.keep();
        println!("soak: logs kept in {}", kept.display());
    }
    Ok(ok)
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> anyhow::Error {
    anyhow::anyhow!("a client task panicked while holding a lock")
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("picking a free port")?;
    Ok(listener.local_addr()?.port())
}

// ------------------------------------------------------------------ setup

/// What the clients present.
struct Tokens {
    /// The hospital's HIS (client credentials): HL7 v2 messages.
    his: String,
    /// A practitioner of the hospital: FHIR, plugins, rooms.
    doctor: String,
    /// A citizen: payments.
    citizen: String,
}

/// Users, tokens and plugins, written in-process into the shared database
/// before the nodes start (the nodes then load them as any node would).
async fn setup(db_url: &str, issuer: &str, work: &Path, run_for: Duration) -> Result<Tokens> {
    let options = RuntimeOptions {
        database_url: db_url.to_owned(),
        master_key_file: Some(work.join("master.key")),
        cache_dir: Some(work.join("cache-setup")),
        identity: IdentityOptions {
            issuer: Some(issuer.to_owned()),
            // Tokens outlive the run: a client refreshing them is not what
            // is measured here.
            access_token_ttl: run_for + Duration::from_secs(3600),
            password_iterations: 1_000,
            ..IdentityOptions::default()
        },
        ..RuntimeOptions::default()
    };
    let server = TestServer::start_with(options, tempfile::TempDir::new()?).await;
    // Only the plugins the traffic uses: those taking payments would need a
    // gateway of their own (the probe gets one below).
    let reference = plugin_set(&plugin_dir(), &["hello", "visit-counter", "his-hl7v2"]);
    vtelehealth_runtime::demo::publish_reference_plugins(&server.runtime, reference.path())
        .await
        .context("publishing the reference plugins")?;
    let his = server.service_token("soak-his", HOSPITAL).await;
    let doctor = user(&server, "soak-doctor", Role::Practitioner, Some(HOSPITAL)).await?;
    let citizen = user(&server, "soak-citizen", Role::Citizen, None).await?;
    activate_payment_probe(&server, issuer).await?;
    Ok(Tokens {
        his,
        doctor,
        citizen,
    })
}

async fn user(
    server: &TestServer,
    name: &str,
    role: Role,
    hospital: Option<&str>,
) -> Result<String> {
    let mut new = NewUser::new(name, name, role, "soak-password-1");
    new.hospital_id = hospital.map(Into::into);
    if role == Role::Citizen {
        new.national_id = Some("001099000777".into());
    }
    let id = &server.runtime.identity;
    let user = id.create_user(new).await.context("creating a user")?;
    id.token_for(&user).context("a token")
}

/// The payment probe (a test plugin) through review, activated at the
/// hospital with a VNPAY-style gateway and its sealed hash secret.
async fn activate_payment_probe(server: &TestServer, issuer: &str) -> Result<()> {
    use base64::Engine as _;
    use vtelehealth_runtime::governance::bundle::Bundle;
    use vtelehealth_runtime::governance::signing::SigningKey;

    let id = &server.runtime.identity;
    id.create_vendor("vtelehealth-tests", "Tests")
        .await
        .context("vendor")?;
    let mut vendor = NewUser::new("soak-vendor", "vendor", Role::VendorUser, "soak-password-1");
    vendor.vendor_id = Some("vtelehealth-tests".into());
    let vendor = id.token_for(&id.create_user(vendor).await?)?;
    let reviewer = user(server, "soak-reviewer", Role::Reviewer, None).await?;
    let admin = user(server, "soak-admin", Role::HospitalAdmin, Some(HOSPITAL)).await?;

    let key = SigningKey::generate().context("signing key")?;
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
    let call = |method: &str, path: &str, token: &str, body: Vec<u8>| {
        let req = server
            .client
            .request(
                method.parse().unwrap_or(reqwest::Method::POST),
                format!("{}{path}", server.base),
            )
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body);
        async move {
            let resp = req.send().await.context("setup request")?;
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            anyhow::ensure!((200..300).contains(&status), "{status}: {body}");
            Ok::<Value, anyhow::Error>(body)
        }
    };
    call(
        "POST",
        "/api/v1/vendor/keys",
        &vendor,
        json!({ "public_key": public }).to_string().into_bytes(),
    )
    .await
    .context("registering the vendor key")?;
    let (wasm, toml) = vtelehealth_tests::component(&test_plugin_dir(), PROBE);
    let mut bundle = Bundle::new(std::fs::read_to_string(toml)?, std::fs::read(wasm)?);
    key.sign(&mut bundle);
    let version = call("POST", "/api/v1/plugin-versions", &vendor, bundle.to_json())
        .await
        .context("submitting the payment probe")?;
    let version = version["id"].as_str().context("version id")?.to_owned();
    call(
        "POST",
        &format!("/api/v1/plugin-versions/{version}/approve"),
        &reviewer,
        json!({ "granted": ["log", "kv", "payment"], "note": "soak" })
            .to_string()
            .into_bytes(),
    )
    .await
    .context("approving the payment probe")?;
    let config = json!({ "payment": { "gateway": "vnpay",
        "vnpay": { "tmn_code": TMN_CODE, "pay_url": "https://pay.example.vn/vpcpay.html",
                   "return_url": format!("{issuer}/api/v1/payments/vnpay/return") } } });
    call(
        "PUT",
        &format!("/api/v1/hospitals/{HOSPITAL}/activations/{PROBE}"),
        &admin,
        json!({ "version_id": version, "config": config,
                "secrets": { "vnpay_hash_secret": HASH_SECRET } })
        .to_string()
        .into_bytes(),
    )
    .await
    .context("activating the payment probe")?;
    Ok(())
}

// ------------------------------------------------------------------ nodes

/// One `runtime serve` process's settings; the same for its restart.
struct Node {
    name: &'static str,
    port: u16,
    runtime: PathBuf,
    db_url: String,
    issuer: String,
    dir: PathBuf,
}

impl Node {
    /// Start the process and wait until `/healthz` answers.
    async fn start(&self) -> Result<Child> {
        let log_path = self.dir.join(format!("node-{}.log", self.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut child = Command::new(&self.runtime)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--db", &self.db_url, "--issuer", &self.issuer])
            .arg("--master-key")
            .arg(self.dir.join("master.key"))
            .arg("--cache-dir")
            .arg(self.dir.join(format!("cache-{}", self.name)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.runtime.display()))?;
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(resp) = client.get(&url).send().await
                && resp.status().is_success()
            {
                return Ok(child);
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "node {} exited ({status}); log: {}",
                    self.name,
                    log_path.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} not healthy within 120 s; log: {}",
                    self.name,
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Each plugin once on each node, untimed: the first call compiles it
/// (GETs, so the visit counter does not move).
async fn warm_up(ctx: &Ctx) -> Result<()> {
    for base in &ctx.bases {
        for plugin in ["hello/", "visit-counter/visits"] {
            let resp = ctx
                .client
                .get(format!("{base}/hospitals/{HOSPITAL}/plugins/{plugin}"))
                .bearer_auth(&ctx.tokens.doctor)
                .timeout(Duration::from_secs(120))
                .send()
                .await
                .with_context(|| format!("warming up {plugin} at {base}"))?;
            anyhow::ensure!(
                resp.status().is_success(),
                "{plugin} at {base}: {}",
                resp.status()
            );
        }
    }
    Ok(())
}

// ------------------------------------------------------- clients and retries

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Phase {
    Before,
    During,
    After,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::During => "during",
            Phase::After => "after",
        }
    }
}

#[derive(Default)]
struct PhaseClock {
    killed: Option<Instant>,
    healthy: Option<Instant>,
}

impl PhaseClock {
    /// The phase an operation started in: `during` runs from the kill until
    /// the restarted node answers its health check.
    fn phase(&self, at: Instant) -> Phase {
        match (self.killed, self.healthy) {
            (Some(k), _) if at < k => Phase::Before,
            (None, _) => Phase::Before,
            (Some(_), Some(h)) if at >= h => Phase::After,
            _ => Phase::During,
        }
    }
}

#[derive(Default)]
struct OpStats {
    latencies: Vec<Duration>,
    failed: u64,
    retries: u64,
    /// Attempts whose outcome is unknown (sent, then no clean answer).
    ambiguous: u64,
}

/// Writes the servers acknowledged, to be found afterwards.
#[derive(Default)]
struct Acked {
    hl7: Vec<u64>,
    fhir: Vec<(u64, String)>,
    increments: u64,
    rooms: Vec<(u64, String)>,
    payments: Vec<(String, String)>,
    settled_handled: u64,
}

struct Ctx {
    bases: [String; 2],
    client: reqwest::Client,
    tokens: Tokens,
    next_node: AtomicUsize,
    /// Operation numbers, one sequence per kind of client.
    sequences: [AtomicU64; 5],
    phases: Mutex<PhaseClock>,
    stats: Mutex<BTreeMap<(&'static str, Phase), OpStats>>,
    acked: Mutex<Acked>,
}

impl Ctx {
    fn stat(&self, op: &'static str, at: Instant, f: impl FnOnce(&mut OpStats)) {
        let phase = match self.phases.lock() {
            Ok(p) => p.phase(at),
            Err(_) => return,
        };
        if let Ok(mut stats) = self.stats.lock() {
            f(stats.entry((op, phase)).or_default());
        }
    }

    fn acked(&self, f: impl FnOnce(&mut Acked)) {
        if let Ok(mut a) = self.acked.lock() {
            f(&mut a);
        }
    }
}

/// The outcome of one attempt.
enum Attempt<T> {
    Done(T),
    /// Try again; `ambiguous` when the request may have taken effect.
    Retry {
        why: String,
        ambiguous: bool,
    },
    /// Retrying cannot help (a 4xx the client did not expect).
    Fatal(String),
}

impl<T> Attempt<T> {
    /// A transport error: connection refused means nothing was sent.
    fn transport(e: &reqwest::Error) -> Self {
        Attempt::Retry {
            why: e.to_string(),
            ambiguous: !e.is_connect(),
        }
    }

    /// An HTTP answer that is not the expected one: 5xx and 429 are retried.
    fn status(status: u16, body: &str) -> Self {
        let why = format!("{status}: {}", body.chars().take(200).collect::<String>());
        if status >= 500 || status == 429 {
            Attempt::Retry {
                why,
                ambiguous: true,
            }
        } else {
            Attempt::Fatal(why)
        }
    }
}

/// One timed step of a client: `attempt(base)` on the next node, retried on
/// the other with exponential backoff (100 ms doubling to 2 s) until it is
/// done or [`GIVE_UP_AFTER`] passed. Latency includes the retries; the step,
/// its retries and its latency count in the phase it started in.
async fn step<T, F, Fut>(ctx: &Ctx, op: &'static str, mut attempt: F) -> Option<T>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let started = Instant::now();
    let mut node = ctx.next_node.fetch_add(1, Ordering::Relaxed) % 2;
    let mut backoff = Duration::from_millis(100);
    loop {
        match attempt(ctx.bases[node].clone()).await {
            Attempt::Done(v) => {
                let took = started.elapsed();
                ctx.stat(op, started, |s| s.latencies.push(took));
                return Some(v);
            }
            Attempt::Fatal(why) => {
                eprintln!("soak: {op}: gave up: {why}");
                ctx.stat(op, started, |s| s.failed += 1);
                return None;
            }
            Attempt::Retry { why, ambiguous } => {
                if ambiguous {
                    // Rare outside the kill, and what the checks must cover.
                    eprintln!("soak: {op}: outcome unclear, retrying: {why}");
                }
                ctx.stat(op, started, |s| {
                    s.retries += 1;
                    s.ambiguous += u64::from(ambiguous);
                });
                if started.elapsed() > GIVE_UP_AFTER {
                    eprintln!("soak: {op}: gave up after {GIVE_UP_AFTER:?}: {why}");
                    ctx.stat(op, started, |s| s.failed += 1);
                    return None;
                }
                tokio::time::sleep(backoff + jitter(backoff)).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                node = (node + 1) % 2;
            }
        }
    }
}

/// Up to a quarter of `d`, so retrying clients do not move in lockstep.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d / 4 * (nanos % 1000) / 1000
}

/// Send and read the whole answer as text.
async fn send(req: reqwest::RequestBuilder) -> Result<(u16, String), reqwest::Error> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

/// Run `op(ctx, n)` until `end`, n from the kind's sequence (unique
/// across the clients of that kind).
async fn client_loop<F, Fut>(ctx: Arc<Ctx>, end: Instant, kind: usize, op: F)
where
    F: Fn(Arc<Ctx>, u64) -> Fut,
    Fut: Future<Output = ()>,
{
    while Instant::now() < end {
        let n = ctx.sequences[kind].fetch_add(1, Ordering::Relaxed);
        op(ctx.clone(), n).await;
        tokio::time::sleep(THINK_TIME).await;
    }
}

// ---------------------------------------------------------------- traffic

/// MSA-1 of an ACK.
fn ack_code(ack: &str) -> Option<&str> {
    ack.split(['\r', '\n'])
        .find(|s| s.starts_with("MSA"))
        .and_then(|s| s.split('|').nth(1))
}

/// Medical record number of the n-th HL7 message's patient.
fn mrn(n: u64) -> String {
    format!("SK{n:08}")
}

/// An ADT^A04 of the corpus with its own control ID and patient, so each
/// message's records can be counted; a resend carries the same control ID.
fn hl7_body(n: u64) -> Result<String> {
    let template = std::fs::read_to_string(
        repo_root().join("plugins/his-hl7v2/corpus/adt_a04_v25_cccd_bhxh.hl7"),
    )
    .context("reading the HL7 v2 corpus")?;
    Ok(template
        .replace("A04-0002", &format!("SOAK{n:08}"))
        .replace("BN24005678", &mrn(n))
        .replace("001195012345", &format!("001195{:06}", n % 1_000_000))
        .replace("HN4010123456789", &format!("HN40101{n:08}"))
        .replace("VN24000888", &format!("VN{n:08}")))
}

async fn hl7_message(ctx: Arc<Ctx>, n: u64) {
    let body = match hl7_body(n) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("soak: {e:#}");
            return;
        }
    };
    let done = step(&ctx, "hl7 message", |base| {
        let req = ctx
            .client
            .post(format!(
                "{base}/hospitals/{HOSPITAL}/plugins/his-hl7v2/messages"
            ))
            .bearer_auth(&ctx.tokens.his)
            .header("content-type", "x-application/hl7-v2+er7")
            .body(body.clone());
        async move {
            match send(req).await {
                Ok((200, ack)) if ack_code(&ack) == Some("AA") => Attempt::Done(()),
                // AE/AR: the transaction stored nothing; the HIS resends.
                Ok((200, ack)) => Attempt::Retry {
                    why: ack,
                    ambiguous: false,
                },
                Ok((s, b)) => Attempt::status(s, &b),
                Err(e) => Attempt::transport(&e),
            }
        }
    })
    .await;
    if done.is_some() {
        ctx.acked(|a| a.hl7.push(n));
    }
}

/// A Patient created with a conditional update in a transaction (the FHIR
/// API's idempotent create: a resend updates the same resource), then read
/// back from whichever node is next.
async fn fhir_create_and_read(ctx: Arc<Ctx>, n: u64) {
    let value = format!("fhir-{n}");
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [{
            "fullUrl": format!("urn:uuid:00000000-0000-4000-8000-{n:012}"),
            "resource": {
                "resourceType": "Patient",
                "identifier": [{ "system": FHIR_SYSTEM, "value": value }],
                "name": [{ "family": "Nguyễn", "given": ["Soak"] }],
                "gender": "female", "birthDate": "1990-01-01"
            },
            "request": { "method": "PUT", "url": format!("Patient?identifier={FHIR_SYSTEM}|{value}") }
        }]
    })
    .to_string();
    let created = step(&ctx, "fhir create", |base| {
        let req = ctx
            .client
            .post(format!("{base}/fhir/R4"))
            .bearer_auth(&ctx.tokens.doctor)
            .header("content-type", "application/fhir+json")
            .body(bundle.clone());
        async move {
            match send(req).await {
                Ok((200, body)) => match location_id(&body) {
                    Some(id) => Attempt::Done(id),
                    None => Attempt::Fatal(format!("no location in {body}")),
                },
                Ok((s, b)) => Attempt::status(s, &b),
                Err(e) => Attempt::transport(&e),
            }
        }
    })
    .await;
    let Some(id) = created else { return };
    ctx.acked(|a| a.fhir.push((n, id.clone())));
    step(&ctx, "fhir read", |base| {
        let req = ctx
            .client
            .get(format!("{base}/fhir/R4/Patient/{id}"))
            .bearer_auth(&ctx.tokens.doctor);
        let value = value.clone();
        async move {
            match send(req).await {
                Ok((200, body)) if body.contains(&value) => Attempt::Done(()),
                Ok((200, body)) => Attempt::Fatal(format!("another Patient: {body}")),
                Ok((s, b)) => Attempt::status(s, &b),
                Err(e) => Attempt::transport(&e),
            }
        }
    })
    .await;
}

/// `Patient/{id}` of the first entry of a transaction-response.
fn location_id(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let location = v["entry"][0]["response"]["location"].as_str()?;
    let mut parts = location.split('/');
    (parts.next()? == "Patient").then_some(())?;
    parts.next().map(str::to_owned)
}

/// A kv increment through visit-counter (not idempotent: a retry after an
/// unclear answer may count twice, which the check allows for) and a read
/// through hello.
async fn plugin_calls(ctx: Arc<Ctx>, _: u64) {
    let incremented = step(&ctx, "kv increment", |base| {
        let req = ctx
            .client
            .post(format!(
                "{base}/hospitals/{HOSPITAL}/plugins/visit-counter/visits"
            ))
            .bearer_auth(&ctx.tokens.doctor);
        async move {
            match send(req).await {
                Ok((200, _)) => Attempt::Done(()),
                Ok((s, b)) => Attempt::status(s, &b),
                Err(e) => Attempt::transport(&e),
            }
        }
    })
    .await;
    if incremented.is_some() {
        ctx.acked(|a| a.increments += 1);
    }
    step(&ctx, "plugin hello", |base| {
        let req = ctx
            .client
            .get(format!("{base}/hospitals/{HOSPITAL}/plugins/hello/"))
            .bearer_auth(&ctx.tokens.doctor);
        async move {
            match send(req).await {
                Ok((200, _)) => Attempt::Done(()),
                Ok((s, b)) => Attempt::status(s, &b),
                Err(e) => Attempt::transport(&e),
            }
        }
    })
    .await;
}

/// Create a room on one node, join it (join token, signalling WebSocket,
/// admitted as chair) on the next, end it.
async fn video_room(ctx: Arc<Ctx>, n: u64) {
    let purpose = format!("soak room {n}");
    let body = json!({ "purpose": purpose, "requesting_hospital": "bv-b", "max_participants": 5 })
        .to_string();
    let room = step(&ctx, "room create", |base| {
        let req = ctx
            .client
            .post(format!("{base}/api/v1/video/rooms"))
            .bearer_auth(&ctx.tokens.doctor)
            .header("content-type", "application/json")
            .body(body.clone());
        async move {
            match send(req).await {
                Ok((201, body)) => match serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_owned))
                {
                    Some(id) => Attempt::Done(id),
                    None => Attempt::Fatal(format!("no room id in {body}")),
                },
                Ok((s, b)) => Attempt::status(s, &b),
                Err(e) => Attempt::transport(&e),
            }
        }
    })
    .await;
    let Some(room) = room else { return };
    ctx.acked(|a| a.rooms.push((n, room.clone())));
    step(&ctx, "room join", |base| join(&ctx, base, room.clone())).await;
    step(&ctx, "room end", |base| {
        let req = ctx
            .client
            .post(format!("{base}/api/v1/video/rooms/{room}/end"))
            .bearer_auth(&ctx.tokens.doctor);
        async move {
            match send(req).await {
                // Already ended by an earlier attempt whose answer was lost.
                Ok((200 | 409 | 410, _)) => Attempt::Done(()),
                Ok((s, b)) => Attempt::status(s, &b),
                Err(e) => Attempt::transport(&e),
            }
        }
    })
    .await;
}

async fn join(ctx: &Ctx, base: String, room: String) -> Attempt<()> {
    let req = ctx
        .client
        .post(format!("{base}/api/v1/video/rooms/{room}/token"))
        .bearer_auth(&ctx.tokens.doctor)
        .header("content-type", "application/json")
        .body("{}");
    let token: Value = match send(req).await {
        Ok((200, body)) => serde_json::from_str(&body).unwrap_or(Value::Null),
        Ok((s, b)) => return Attempt::status(s, &b),
        Err(e) => return Attempt::transport(&e),
    };
    let Some(path) = token["signalling_url"].as_str() else {
        return Attempt::Fatal(format!("no signalling_url in {token}"));
    };
    let url = format!("{}{path}", base.replacen("http://", "ws://", 1));
    let connected =
        tokio::time::timeout(REQUEST_TIMEOUT, tokio_tungstenite::connect_async(url)).await;
    let mut ws = match connected {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => {
            return Attempt::Retry {
                why: format!("signalling: {e}"),
                ambiguous: false,
            };
        }
        Err(_) => {
            return Attempt::Retry {
                why: "signalling: connect timed out".into(),
                ambiguous: false,
            };
        }
    };
    // A chair is admitted on arrival: the first text message says so.
    let first = tokio::time::timeout(REQUEST_TIMEOUT, async {
        while let Some(msg) = ws.next().await {
            if let Ok(tokio_tungstenite::tungstenite::Message::Text(t)) = msg {
                return serde_json::from_str::<Value>(t.as_str()).ok();
            }
        }
        None
    })
    .await;
    let _ = ws.close(None).await;
    match first {
        Ok(Some(m)) if m["type"] == "admitted" => Attempt::Done(()),
        Ok(other) => Attempt::Retry {
            why: format!("signalling said {other:?}"),
            ambiguous: false,
        },
        Err(_) => Attempt::Retry {
            why: "signalling: no message within the timeout".into(),
            ambiguous: false,
        },
    }
}

/// Create an intent (idempotency key), check out, then the gateway's signed
/// IPN to whichever node is next (the gateway retries as well), then the
/// plugin handles its settlement events.
async fn payment(ctx: Arc<Ctx>, n: u64) {
    let key = format!("soak-pay-{n}");
    let amount = 100_000 + i64::try_from(n % 1000).unwrap_or(0);
    let intents = |path: String| format!("/hospitals/{HOSPITAL}/plugins/{PROBE}{path}");
    let order = json!({ "amount": amount, "currency": "VND", "payer": "soak-citizen",
                        "merchant": "vendor", "purpose": "Phí khám từ xa", "key": key })
    .to_string();
    let created = step(&ctx, "payment create", |base| {
        let req = ctx
            .client
            .post(format!("{base}{}", intents("/intents".into())))
            .bearer_auth(&ctx.tokens.citizen)
            .header("content-type", "application/json")
            .body(order.clone());
        async move {
            match send(req).await {
                Ok((200, body)) => match serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_owned))
                {
                    Some(id) => Attempt::Done(id),
                    None => Attempt::Fatal(format!("no intent id in {body}")),
                },
                Ok((s, b)) => Attempt::status(s, &b),
                Err(e) => Attempt::transport(&e),
            }
        }
    })
    .await;
    let Some(id) = created else { return };
    let checked_out = step(&ctx, "payment checkout", |base| {
        let checkout = ctx
            .client
            .post(format!(
                "{base}{}",
                intents(format!("/intents/{id}/checkout"))
            ))
            .bearer_auth(&ctx.tokens.citizen);
        let get = ctx
            .client
            .get(format!("{base}{}", intents(format!("/intents/{id}"))))
            .bearer_auth(&ctx.tokens.citizen);
        async move {
            match send(checkout).await {
                Ok((200, _)) => Attempt::Done(()),
                // An earlier attempt may have checked out already.
                Ok((409, b)) => match send(get).await {
                    Ok((200, intent)) if intent.contains("\"pending\"") => Attempt::Done(()),
                    _ => Attempt::Fatal(format!("checkout refused: {b}")),
                },
                Ok((s, b)) => Attempt::status(s, &b),
                Err(e) => Attempt::transport(&e),
            }
        }
    })
    .await;
    if checked_out.is_none() {
        return;
    }
    let query = gateway_query(
        &[
            ("vnp_Amount", (amount * 100).to_string()),
            ("vnp_BankCode", "NCB".to_owned()),
            ("vnp_ResponseCode", "00".to_owned()),
            ("vnp_TmnCode", TMN_CODE.to_owned()),
            ("vnp_TransactionNo", (20_000_000 + n).to_string()),
            ("vnp_TransactionStatus", "00".to_owned()),
            ("vnp_TxnRef", id.clone()),
        ],
        HASH_SECRET,
    );
    let confirmed = step(&ctx, "gateway IPN", |base| {
        let req = ctx
            .client
            .get(format!("{base}/api/v1/payments/vnpay/ipn?{query}"));
        async move {
            match send(req).await {
                Ok((200, body)) => {
                    let code = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v["RspCode"].as_str().map(str::to_owned));
                    match code.as_deref() {
                        // 02: a repeated notice, already confirmed.
                        Some("00" | "02") => Attempt::Done(()),
                        Some("99") => Attempt::Retry {
                            why: body,
                            ambiguous: true,
                        },
                        _ => Attempt::Fatal(format!("IPN answered {body}")),
                    }
                }
                Ok((s, b)) => Attempt::status(s, &b),
                Err(e) => Attempt::transport(&e),
            }
        }
    })
    .await;
    if confirmed.is_some() {
        ctx.acked(|a| a.payments.push((key.clone(), id.clone())));
    }
    settle(&ctx).await;
}

/// The plugin handles its pending settlement events; how many it handled.
async fn settle(ctx: &Ctx) -> Option<u64> {
    let handled = step(ctx, "settle", |base| {
        let req = ctx
            .client
            .post(format!(
                "{base}/hospitals/{HOSPITAL}/plugins/{PROBE}/settle"
            ))
            .bearer_auth(&ctx.tokens.citizen);
        async move {
            match send(req).await {
                Ok((200, body)) => Attempt::Done(
                    serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v["handled"].as_u64())
                        .unwrap_or(0),
                ),
                Ok((s, b)) => Attempt::status(s, &b),
                Err(e) => Attempt::transport(&e),
            }
        }
    })
    .await?;
    ctx.acked(|a| a.settled_handled += handled);
    Some(handled)
}

/// After the traffic: settle until nothing is left to hand out.
async fn drain_settlements(ctx: &Ctx) {
    for _ in 0..20 {
        if settle(ctx).await == Some(0) {
            return;
        }
    }
}

/// `application/x-www-form-urlencoded` as the gateway encodes (see
/// `tests/e2e/payment.rs`).
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A notice signed as a VNPAY-style gateway signs it: parameters sorted by
/// name, form-encoded, HMAC-SHA512 under the hash secret, hex.
fn gateway_query(fields: &[(&str, String)], secret: &str) -> String {
    let mut sorted = fields.to_vec();
    sorted.sort();
    let data = sorted
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA512, secret.as_bytes());
    let hash: String = aws_lc_rs::hmac::sign(&key, data.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{data}&vnp_SecureHash={hash}")
}

// ---------------------------------------------------------------- results

struct Report {
    minutes: f64,
    kill_at: f64,
    recovery: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    let ms = sorted[i].as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn print_table(ctx: &Ctx, report: &Report) -> Result<()> {
    let stats = ctx.stats.lock().map_err(poisoned)?;
    println!(
        "\nsoak: {:.1} min, node A killed at {:.1} s, healthy again {:.1} s later\n",
        report.minutes, report.kill_at, report.recovery
    );
    println!("| operation | phase | ok | failed | retries | of which unclear | p50 | p99 |");
    println!("|---|---|---|---|---|---|---|---|");
    for ((op, phase), s) in stats.iter() {
        let mut sorted = s.latencies.clone();
        sorted.sort();
        println!(
            "| {op} | {} | {} | {} | {} | {} | {} | {} |",
            phase.label(),
            sorted.len(),
            s.failed,
            s.retries,
            s.ambiguous,
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.99)
        );
    }
    Ok(())
}

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

fn ambiguous_of(ctx: &Ctx, op: &str) -> u64 {
    ctx.stats
        .lock()
        .map(|s| {
            s.iter()
                .filter(|((o, _), _)| *o == op)
                .map(|(_, v)| v.ambiguous)
                .sum()
        })
        .unwrap_or(0)
}

/// Every acknowledged write is in the database exactly once.
async fn check_writes(ctx: &Ctx, db: &Database) -> Result<Vec<Check>> {
    let pool = &db.pool;
    let acked = std::mem::take(&mut *ctx.acked.lock().map_err(poisoned)?);
    let mut checks = Vec::new();

    // Patients by identifier value: HL7 MRNs and the FHIR clients' values.
    let rows = sqlx::query(
        "SELECT content FROM fhir_resources WHERE hospital_id = $1 AND resource_type = 'Patient'",
    )
    .bind(HOSPITAL)
    .fetch_all(pool)
    .await
    .context("reading Patients")?;
    let mut by_identifier: HashMap<String, Vec<String>> = HashMap::new();
    for row in rows {
        let content: String = row.try_get("content")?;
        let patient: Value = serde_json::from_str(&content).context("a stored Patient")?;
        let id = patient["id"].as_str().unwrap_or_default().to_owned();
        for ident in patient["identifier"].as_array().into_iter().flatten() {
            if let Some(v) = ident["value"].as_str() {
                by_identifier
                    .entry(v.to_owned())
                    .or_default()
                    .push(id.clone());
            }
        }
    }
    let count = |v: &str| by_identifier.get(v).map_or(0, Vec::len);

    let wrong: Vec<String> = acked
        .hl7
        .iter()
        .map(|n| mrn(*n))
        .filter(|m| count(m) != 1)
        .map(|m| format!("{m}×{}", count(&m)))
        .collect();
    let dupes = by_identifier
        .iter()
        .filter(|(k, v)| k.starts_with("SK") && v.len() > 1)
        .count();
    checks.push(Check {
        name: "HL7 messages accepted (AA) stored exactly once",
        ok: wrong.is_empty() && dupes == 0,
        detail: format!(
            "{} acknowledged; {} not exactly once {}; {dupes} duplicated patients",
            acked.hl7.len(),
            wrong.len(),
            sample(&wrong)
        ),
    });

    let wrong: Vec<String> = acked
        .fhir
        .iter()
        .filter(|(n, id)| {
            let ids = by_identifier.get(&format!("fhir-{n}"));
            ids.is_none_or(|ids| ids.len() != 1 || ids[0] != *id)
        })
        .map(|(n, _)| format!("fhir-{n}×{}", count(&format!("fhir-{n}"))))
        .collect();
    checks.push(Check {
        name: "FHIR creates acknowledged stored exactly once",
        ok: wrong.is_empty(),
        detail: format!(
            "{} acknowledged; {} not exactly once {}",
            acked.fhir.len(),
            wrong.len(),
            sample(&wrong)
        ),
    });

    // kv: the counter against the acknowledged increments; an attempt with
    // an unclear outcome may have counted once more.
    let value: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT value FROM kv_entries WHERE hospital_id = $1 AND plugin_id = 'visit-counter' AND key = 'visits/count'",
    )
    .bind(HOSPITAL)
    .fetch_optional(pool)
    .await
    .context("reading the visit counter")?;
    let counter: u64 = value
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let expected = acked.increments;
    let unclear = ambiguous_of(ctx, "kv increment");
    checks.push(Check {
        name: "kv increments = acknowledged increments",
        ok: (expected..=expected + unclear).contains(&counter),
        detail: format!("counter {counter}, acknowledged {expected}, {unclear} unclear attempts"),
    });

    let rooms = sqlx::query("SELECT purpose, id FROM video_rooms WHERE purpose LIKE 'soak room %'")
        .fetch_all(pool)
        .await
        .context("reading rooms")?;
    let mut room_ids: HashMap<String, Vec<String>> = HashMap::new();
    for r in rooms {
        room_ids
            .entry(r.try_get("purpose")?)
            .or_default()
            .push(r.try_get("id")?);
    }
    let missing = acked
        .rooms
        .iter()
        .filter(|(n, id)| {
            room_ids
                .get(&format!("soak room {n}"))
                .is_none_or(|ids| !ids.contains(id))
        })
        .count();
    let extra: usize = room_ids.values().map(|v| v.len().saturating_sub(1)).sum();
    let unclear = ambiguous_of(ctx, "room create");
    checks.push(Check {
        name: "rooms acknowledged present (duplicates only from unclear creates)",
        ok: missing == 0 && extra as u64 <= unclear,
        detail: format!(
            "{} acknowledged, {missing} missing, {extra} extra rooms, {unclear} unclear creates",
            acked.rooms.len()
        ),
    });

    checks.extend(check_payments(pool, &acked).await?);
    Ok(checks)
}

async fn check_payments(pool: &sqlx::AnyPool, acked: &Acked) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    let rows = sqlx::query(
        "SELECT idempotency_key, id, state FROM payment_intents WHERE hospital_id = $1 AND plugin_id = $2",
    )
    .bind(HOSPITAL)
    .bind(PROBE)
    .fetch_all(pool)
    .await
    .context("reading intents")?;
    let mut by_key: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for r in &rows {
        by_key
            .entry(r.try_get("idempotency_key")?)
            .or_default()
            .push((r.try_get("id")?, r.try_get("state")?));
    }
    let wrong: Vec<String> = acked
        .payments
        .iter()
        .filter(|(key, id)| {
            by_key
                .get(key)
                .is_none_or(|v| v.len() != 1 || v[0].0 != *id || v[0].1 != "succeeded")
        })
        .map(|(key, _)| key.clone())
        .collect();
    checks.push(Check {
        name: "payments confirmed: one intent each, succeeded",
        ok: wrong.is_empty(),
        detail: format!(
            "{} confirmed, {} intents in all; wrong: {} {}",
            acked.payments.len(),
            rows.len(),
            wrong.len(),
            sample(&wrong)
        ),
    });

    let ledger = vtelehealth_runtime::payment::ledger::check(pool)
        .await
        .context("checking the ledger")?;
    checks.push(Check {
        name: "payment ledger balances",
        ok: ledger.is_consistent(),
        detail: format!(
            "{} accounts, {} postings, posted sum {}, pending sum {}, {} mismatched",
            ledger.accounts,
            ledger.postings,
            ledger.posted_sum,
            ledger.pending_sum,
            ledger.mismatched.len()
        ),
    });

    // The outbox: one succeeded event per succeeded intent, every event
    // delivered, and the plugin handled each exactly once (its kv guard
    // per event id, its counter per kind).
    let events = sqlx::query(
        "SELECT event_id, intent_id, kind, delivered_at FROM payment_outbox WHERE hospital_id = $1 AND plugin_id = $2",
    )
    .bind(HOSPITAL)
    .bind(PROBE)
    .fetch_all(pool)
    .await
    .context("reading the outbox")?;
    let mut succeeded_per_intent: HashMap<String, usize> = HashMap::new();
    let mut undelivered = 0;
    for e in &events {
        let kind: String = e.try_get("kind")?;
        if kind == "payment.succeeded" {
            *succeeded_per_intent
                .entry(e.try_get("intent_id")?)
                .or_default() += 1;
        }
        undelivered += usize::from(e.try_get::<Option<i64>, _>("delivered_at")?.is_none());
    }
    let succeeded_intents: Vec<String> = by_key
        .values()
        .flatten()
        .filter(|(_, state)| state == "succeeded")
        .map(|(id, _)| id.clone())
        .collect();
    let not_once = succeeded_intents
        .iter()
        .filter(|id| succeeded_per_intent.get(*id) != Some(&1))
        .count();
    let guards: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM kv_entries WHERE hospital_id = $1 AND plugin_id = $2 AND key LIKE 'event/%'",
    )
    .bind(HOSPITAL)
    .bind(PROBE)
    .fetch_one(pool)
    .await
    .context("reading the plugin's event guards")?;
    let counted: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT value FROM kv_entries WHERE hospital_id = $1 AND plugin_id = $2 AND key = 'count/payment.succeeded'",
    )
    .bind(HOSPITAL)
    .bind(PROBE)
    .fetch_optional(pool)
    .await
    .context("reading the plugin's counter")?;
    let counted: usize = counted
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let delivered_succeeded = succeeded_per_intent.values().sum::<usize>();
    checks.push(Check {
        name: "outbox delivered every settlement exactly once",
        ok: not_once == 0
            && undelivered == 0
            && guards as usize == events.len()
            && counted == delivered_succeeded,
        detail: format!(
            "{} events ({} succeeded intents, {not_once} without exactly one event), \
             {undelivered} undelivered, plugin guards {guards}, plugin counted {counted}",
            events.len(),
            succeeded_intents.len()
        ),
    });
    Ok(checks)
}

/// `runtime audit verify`, the operators' CLI, on the shared database.
async fn audit_verify(runtime: &Path, db_url: &str, work: &Path) -> Check {
    let out = Command::new(runtime)
        .args(["audit", "verify", "--db", db_url, "--master-key"])
        .arg(work.join("master.key"))
        .env("RUST_LOG", "warn")
        .output()
        .await;
    match out {
        Ok(out) => Check {
            name: "`runtime audit verify`",
            ok: out.status.success(),
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .replace('|', "/"),
        },
        Err(e) => Check {
            name: "`runtime audit verify`",
            ok: false,
            detail: format!("could not run {}: {e}", runtime.display()),
        },
    }
}

/// The first few items of a list, for a report line.
fn sample(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
    format!(
        "({}{})",
        shown.join(", "),
        if items.len() > 5 { ", …" } else { "" }
    )
}
