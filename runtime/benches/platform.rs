//! Platform benchmarks, each beside its baseline in the same run.
//!
//! Run with `cargo bench -p vtelehealth-runtime --bench platform` after
//! `cargo xtask build-plugins`. Method and results: docs/benchmarks.md.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use vtelehealth_runtime::api::Authenticated;
use vtelehealth_runtime::bindings::{Plugin, Request};
use vtelehealth_runtime::capabilities::identity::{CallContext, CallServices, Hospital, Tier};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::engine::PluginEngine;
use vtelehealth_runtime::identity::{Principal, Role};
use vtelehealth_runtime::plugins::{LoadedPlugin, load_plugin};
use vtelehealth_runtime::sandbox::{StoreState, call_http, new_store};
use vtelehealth_runtime::{Runtime, RuntimeOptions, api};
use wasmtime::component::{Component, Linker};

fn plugin_path(id: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins")
        .join(format!("{id}.wasm"));
    assert!(
        path.is_file(),
        "{} missing: run `cargo xtask build-plugins`",
        path.display()
    );
    path
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

/// What `identity` looks up in the benchmarks: the runtime's directories, set in `main`.
static DIRECTORY: OnceLock<CallServices> = OnceLock::new();

fn ctx(plugin: &str) -> Arc<CallContext> {
    Arc::new(CallContext {
        hospital: hospital(),
        plugin_id: plugin.into(),
        request_id: "bench".into(),
        principal: None,
        started: Instant::now(),
        directory: DIRECTORY.get().expect("directory set in main").clone(),
        video: None,
    })
}

fn get_root() -> Request {
    Request {
        method: "GET".into(),
        path: "/".into(),
        query: String::new(),
        headers: vec![],
        body: vec![],
    }
}

/// Per-operation timings: samples of `batch` operations each.
struct Stats {
    median: Duration,
    p90: Duration,
}

fn stats(mut per_op: Vec<Duration>) -> Stats {
    per_op.sort();
    Stats {
        median: per_op[per_op.len() / 2],
        p90: per_op[per_op.len() * 9 / 10],
    }
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else {
        format!("{:.1} µs", ns as f64 / 1000.0)
    }
}

struct Table(Vec<(String, String, String, String)>);

impl Table {
    fn row(&mut self, group: &str, name: &str, s: &Stats) {
        println!(
            "  {group:<28} {name:<52} median {:>10}  p90 {:>10}",
            fmt(s.median),
            fmt(s.p90)
        );
        self.0
            .push((group.into(), name.into(), fmt(s.median), fmt(s.p90)));
    }
}

macro_rules! bench {
    ($samples:expr, $batch:expr, $body:expr) => {
        bench!($samples, $batch, $body, ())
    };
    // `$reset` runs before each batch, untimed.
    ($samples:expr, $batch:expr, $body:expr, $reset:expr) => {{
        let mut per_op = Vec::with_capacity($samples);
        for _ in 0..$samples / 10 {
            $reset;
            $body;
        }
        for _ in 0..$samples {
            $reset;
            let t = Instant::now();
            for _ in 0..$batch {
                $body;
            }
            per_op.push(t.elapsed() / $batch);
        }
        stats(per_op)
    }};
}

async fn instantiation(table: &mut Table, limits: &Limits, runtime: &Runtime) {
    let pooled = PluginEngine::new(limits, None).expect("engine");
    let on_demand = PluginEngine::on_demand(limits).expect("engine");
    for (name, engine) in [
        ("pooling allocator (served)", &pooled),
        ("on-demand allocator (baseline)", &on_demand),
    ] {
        let plugin = load_plugin(engine, &plugin_path("hello")).expect("hello loads");
        let kv = runtime.kv.scope("bv-a", "hello", limits);
        let s = bench!(2000, 10, {
            let mut store = new_store(
                plugin.pre.engine(),
                limits,
                ctx("hello"),
                kv.clone(),
                plugin.granted.clone(),
            );
            let _p: Plugin = plugin
                .pre
                .instantiate_async(&mut store)
                .await
                .expect("instantiate");
        });
        table.row("instantiate hello + store", name, &s);
    }
}

/// A store reused across many calls stands for many requests: restart its
/// call clock, or the per-call deadline and the throttling of long calls
/// would apply to the whole benchmark.
fn fresh_call(store: &mut wasmtime::Store<StoreState>, plugin: &str, limits: &Limits) {
    let state = store.data_mut();
    state.call.ctx = ctx(plugin);
    state.deadline = tokio::time::Instant::from_std(state.call.ctx.started + limits.deadline);
}

async fn export_calls(table: &mut Table, limits: &Limits, runtime: &Runtime, hello: &LoadedPlugin) {
    // The engine's floor: an export that takes and returns nothing.
    let engine = PluginEngine::new(limits, None).expect("engine");
    let noop = Component::new(
        engine.engine(),
        r#"(component
            (core module $m (func (export "noop")))
            (core instance $i (instantiate $m))
            (func (export "noop") (canon lift (core func $i "noop"))))"#,
    )
    .expect("noop component");
    let linker = Linker::new(engine.engine());
    let kv = runtime.kv.scope("bv-a", "hello", limits);
    let mut store = new_store(
        engine.engine(),
        limits,
        ctx("noop"),
        kv.clone(),
        Default::default(),
    );
    let instance = linker
        .instantiate_async(&mut store, &noop)
        .await
        .expect("instantiate");
    let func = instance
        .get_typed_func::<(), ()>(&mut store, "noop")
        .expect("noop export");
    let s = bench!(
        2000,
        100,
        func.call_async(&mut store, ()).await.expect("call"),
        fresh_call(&mut store, "noop", limits)
    );
    table.row("export call", "empty export, no payload (floor)", &s);

    let mut store = new_store(
        hello.pre.engine(),
        limits,
        ctx("hello"),
        kv,
        hello.granted.clone(),
    );
    let plugin: Plugin = hello
        .pre
        .instantiate_async(&mut store)
        .await
        .expect("instantiate");
    let lifecycle = plugin.vtelehealth_platform_lifecycle();
    let s = bench!(
        2000,
        100,
        {
            let _ = lifecycle
                .call_on_activate(&mut store, "{}")
                .await
                .expect("call");
        },
        fresh_call(&mut store, "hello", limits)
    );
    table.row("export call", "hello on-activate(\"{}\") via SDK", &s);
    let handler = plugin.vtelehealth_platform_http_handler();
    let s = bench!(
        2000,
        20,
        {
            let _ = handler
                .call_handle(&mut store, &get_root())
                .await
                .expect("call");
        },
        fresh_call(&mut store, "hello", limits)
    );
    table.row("export call", "hello handle(GET /): identity + JSON", &s);

    // What one HTTP request pays: fresh store and instance, the call, drop.
    let kv = runtime.kv.scope("bv-a", "hello", limits);
    let s = bench!(2000, 10, {
        let r = call_http(hello, limits, ctx("hello"), kv.clone(), get_root())
            .await
            .expect("call");
        assert_eq!(r.status, 200);
    });
    table.row(
        "full plugin call",
        "hello GET /: new instance + call + drop",
        &s,
    );
}

async fn kv_through_plugin(
    table: &mut Table,
    limits: &Limits,
    runtime: &Runtime,
    counter: &LoadedPlugin,
) {
    let kv = runtime.kv.scope("bv-a", "visit-counter", limits);
    let post = Request {
        method: "POST".into(),
        path: "/visits".into(),
        query: String::new(),
        headers: vec![],
        body: vec![],
    };
    let s = bench!(300, 1, {
        let r = call_http(
            counter,
            limits,
            ctx("visit-counter"),
            kv.clone(),
            post.clone(),
        )
        .await
        .expect("call");
        assert_eq!(r.status, 200);
    });
    table.row(
        "kv: record a visit",
        "through the plugin (fresh instance per call)",
        &s,
    );
    let native_kv = runtime.kv.scope("bv-a", "native-counter", limits);
    let mut n = 0u64;
    let s = bench!(300, 1, {
        let current = native_kv.get("visits/count").await.expect("get");
        let next = current
            .as_deref()
            .map_or(0, |b| serde_json::from_slice::<u64>(b).unwrap_or(0))
            + 1;
        let swapped = native_kv
            .put(
                "visits/count",
                &serde_json::to_vec(&next).expect("json"),
                Some(current.as_deref()),
            )
            .await
            .expect("cas");
        assert!(swapped);
        n += 1;
        let key = format!("visits/history/{:020}-{n:020}", u64::MAX - n);
        native_kv
            .put(&key, br#"{"number":1,"at_millis":1}"#, None)
            .await
            .expect("set");
    });
    table.row(
        "kv: record a visit",
        "native Rust, same kv calls (baseline)",
        &s,
    );
}

async fn native_hello(
    State(rt): State<Arc<Runtime>>,
    Path(h): Path<String>,
) -> Json<serde_json::Value> {
    let hospital = rt.hospitals.get(&h).unwrap_or_else(hospital);
    Json(json!({
        "hospital": { "id": hospital.id, "name": hospital.name },
        "vi": format!("Xin chào từ {}!", hospital.name),
        "en": format!("Hello from {}!", hospital.name),
    }))
}

/// Requests per second with `connections` keep-alive connections for `secs`,
/// with `bearer` as the access token when given.
fn load(url: String, bearer: Option<&str>, connections: usize, secs: u64) -> f64 {
    let bearer = bearer.map(|t| format!("Bearer {t}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .build()
            .expect("client");
        let end = Instant::now() + Duration::from_secs(secs);
        let workers = (0..connections).map(|_| {
            let (client, url, bearer) = (client.clone(), url.clone(), bearer.clone());
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < end {
                    let mut req = client.get(&url);
                    if let Some(b) = &bearer {
                        req = req.header("authorization", b);
                    }
                    let resp = req.send().await.expect("request");
                    assert_eq!(resp.status(), 200);
                    resp.bytes().await.expect("body");
                    done += 1;
                }
                done
            })
        });
        let mut total = 0;
        for w in futures::future::join_all(workers).await {
            total += w.expect("worker");
        }
        total as f64 / secs as f64
    })
}

/// A trivial route without authentication: the baseline of the token cost.
async fn ping() -> Json<serde_json::Value> {
    Json(json!({ "name": "khách" }))
}

/// The same trivial route behind a verified access token.
async fn whoami(Authenticated(p): Authenticated) -> Json<serde_json::Value> {
    Json(json!({ "name": p.name }))
}

struct HttpFigures {
    plugin: f64,
    native: f64,
    open: f64,
    auth_cached: f64,
    auth_uncached: f64,
}

fn http_throughput(runtime: Arc<Runtime>) -> HttpFigures {
    // Server on one worker thread, load generator on the other core.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("server runtime");
    let listener = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let native = Router::new()
        .route("/native/{hospital}/hello", get(native_hello))
        .route("/native/ping", get(ping))
        .route("/native/whoami", get(whoami));
    let doctor = Principal {
        subject: "bench-doctor".into(),
        name: "BS Bench".into(),
        roles: vec![Role::Practitioner],
        hospital_id: Some("bv-a".into()),
        vendor_id: None,
        national_id: None,
        health_id: None,
        issuer: runtime.identity.issuer().to_owned(),
        client_id: None,
    };
    let token = runtime
        .identity
        .issue_access_token(&doctor, "bench", "openid")
        .expect("token");
    let identity = runtime.clone();
    let app = api::app_with(runtime, native);
    server_rt.spawn(async move { axum::serve(listener, app).await });
    // `BENCH_HTTP_ONLY=plugin`: only the plugin route, 20 s (for a profile).
    let plugin_only = std::env::var("BENCH_HTTP_ONLY").is_ok_and(|v| v == "plugin");
    let plugin = load(
        format!("http://{addr}/hospitals/bv-a/plugins/hello/"),
        None,
        32,
        if plugin_only { 20 } else { 5 },
    );
    if plugin_only {
        server_rt.shutdown_background();
        return HttpFigures {
            plugin,
            native: f64::NAN,
            open: f64::NAN,
            auth_cached: f64::NAN,
            auth_uncached: f64::NAN,
        };
    }
    let native = load(format!("http://{addr}/native/bv-a/hello"), None, 32, 5);
    let open = load(format!("http://{addr}/native/ping"), None, 32, 5);
    let auth_cached = load(format!("http://{addr}/native/whoami"), Some(&token), 32, 5);
    identity.identity.set_token_cache_capacity(0);
    let auth_uncached = load(format!("http://{addr}/native/whoami"), Some(&token), 32, 5);
    server_rt.shutdown_background();
    HttpFigures {
        plugin,
        native,
        open,
        auth_cached,
        auth_uncached,
    }
}

fn main() {
    let data = tempfile::TempDir::new().expect("temp dir");
    let limits = Limits::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let runtime = rt.block_on(async {
        let runtime = Runtime::start(RuntimeOptions {
            database_url: format!("sqlite://{}", data.path().join("bench.db").display()),
            plugin_dir: Some(plugin_path("hello").parent().expect("dir").to_path_buf()),
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
            .upsert(hospital())
            .await
            .expect("hospital");
        runtime
    });
    let _ = DIRECTORY.set(runtime.directory());
    let hello = load_plugin(&runtime.engine, &plugin_path("hello")).expect("hello");
    let counter =
        load_plugin(&runtime.engine, &plugin_path("visit-counter")).expect("visit-counter");
    let mut table = Table(vec![]);
    println!(
        "VTelehealth platform benchmarks ({} CPUs)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // `BENCH_HTTP_ONLY=1` skips to the HTTP run (for profiling it alone);
    // `BENCH_HTTP_ONLY=plugin` runs only its plugin route.
    let http_only = std::env::var_os("BENCH_HTTP_ONLY").is_some();
    rt.block_on(async {
        if http_only {
            return;
        }
        instantiation(&mut table, &limits, &runtime).await;
        export_calls(&mut table, &limits, &runtime, &hello).await;
        kv_through_plugin(&mut table, &limits, &runtime, &counter).await;
    });
    drop(rt);
    let f = http_throughput(runtime);
    let (plugin_rps, native_rps) = (f.plugin, f.native);
    println!(
        "  HTTP GET hello, 32 connections, 5 s each: plugin {plugin_rps:.0} req/s, native axum {native_rps:.0} req/s, ratio {:.2}",
        plugin_rps / native_rps
    );
    println!("\n| benchmark | variant | median | p90 |\n|---|---|---|---|");
    for (g, n, m, p) in &table.0 {
        println!("| {g} | {n} | {m} | {p} |");
    }
    println!("| HTTP GET hello, 32 connections | through the plugin | {plugin_rps:.0} req/s | |");
    println!(
        "| HTTP GET hello, 32 connections | native axum handler (baseline) | {native_rps:.0} req/s | |"
    );
    println!(
        "| HTTP GET hello | plugin / native | {:.2} | |",
        plugin_rps / native_rps
    );
    println!(
        "| HTTP GET trivial route, 32 connections | no authentication (baseline) | {:.0} req/s | |",
        f.open
    );
    println!(
        "| HTTP GET trivial route, 32 connections | bearer token, verified-token cache | {:.0} req/s | |",
        f.auth_cached
    );
    println!(
        "| HTTP GET trivial route, 32 connections | bearer token, every signature verified | {:.0} req/s | |",
        f.auth_uncached
    );
    println!(
        "| HTTP GET trivial route | cached / no authentication | {:.2} | |",
        f.auth_cached / f.open
    );
    println!(
        "| HTTP GET trivial route | uncached / no authentication | {:.2} | |",
        f.auth_uncached / f.open
    );
}
