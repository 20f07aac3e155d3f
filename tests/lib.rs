//! Shared helpers for the end-to-end tests: a real server on loopback with
//! real plugin components built by `cargo xtask build-plugins`.

pub mod browser;
pub mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::TempDir;
use vtelehealth_runtime::capabilities::identity::{Hospital, Tier};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::{Runtime, RuntimeOptions, api};

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Directory of the reference plugins' components.
pub fn plugin_dir() -> PathBuf {
    built_dir("plugins")
}

/// Directory of the test-only (hostile) components.
pub fn test_plugin_dir() -> PathBuf {
    built_dir("test-plugins")
}

fn built_dir(name: &str) -> PathBuf {
    let dir = repo_root().join("target").join(name);
    assert!(
        dir.is_dir(),
        "{} is missing: build the plugins first with `cargo xtask build-plugins` (or run `cargo xtask test`)",
        dir.display()
    );
    dir
}

/// The component and manifest of one built plugin.
pub fn component(dir: &Path, id: &str) -> (PathBuf, PathBuf) {
    let wasm = dir.join(format!("{id}.wasm"));
    assert!(
        wasm.is_file(),
        "{} is missing: run `cargo xtask build-plugins`",
        wasm.display()
    );
    (wasm, dir.join(format!("{id}.toml")))
}

/// Copy the named plugins from `from` into a fresh directory.
pub fn plugin_set(from: &Path, ids: &[&str]) -> TempDir {
    let dir = TempDir::new().expect("temp dir");
    for id in ids {
        let (wasm, toml) = component(from, id);
        std::fs::copy(&wasm, dir.path().join(format!("{id}.wasm"))).expect("copy component");
        std::fs::copy(&toml, dir.path().join(format!("{id}.toml"))).expect("copy manifest");
    }
    dir
}

/// Two hospitals every test can use.
pub fn test_hospitals() -> [Hospital; 2] {
    [
        Hospital {
            id: "bv-a".into(),
            name: "Bệnh viện A".into(),
            tier: Tier::Central,
            province: "Hà Nội".into(),
            ..Default::default()
        },
        Hospital {
            id: "bv-b".into(),
            name: "Bệnh viện B".into(),
            tier: Tier::District,
            province: "Thái Bình".into(),
            ..Default::default()
        },
    ]
}

/// A runtime serving on a loopback port, with its own SQLite file. The
/// server runs on its own two-worker runtime, as `runtime serve` does, so a
/// test's client never shares a thread with the plugins it calls.
pub struct TestServer {
    pub base: String,
    pub addr: SocketAddr,
    pub runtime: Arc<Runtime>,
    pub client: reqwest::Client,
    _data: TempDir,
    server_rt: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    /// Start with the plugins in `plugin_dir` and `limits`.
    pub async fn start(plugin_dir: &Path, limits: Limits) -> Self {
        let data = TempDir::new().expect("temp dir");
        let options = RuntimeOptions {
            database_url: format!("sqlite://{}", data.path().join("test.db").display()),
            plugin_dir: Some(plugin_dir.to_path_buf()),
            cache_dir: Some(data.path().join("cache")),
            limits,
            demo: false,
            identity: Default::default(),
            master_key_file: None,
            livekit: None,
            // The payment tests pay through the development gateway.
            payment_sandbox: true,
        };
        Self::start_with(options, data).await
    }

    /// Start with explicit options; `data` lives as long as the server.
    /// Without an explicit issuer, the built-in identity provider's issuer
    /// is the server's own URL.
    /// With `VTH_E2E_ON_POSTGRES=1`, an SQLite database is replaced by a fresh
    /// PostgreSQL one, so the whole suite runs on both engines.
    pub async fn start_with(options: RuntimeOptions, data: TempDir) -> Self {
        Self::start_with_routes(options, data, async { axum::Router::new() }).await
    }

    /// Like [`Self::start_with`], serving `extra` routes too (through
    /// `api::app_with`); `extra` is built on the server's own runtime, so
    /// sockets and tasks it starts live there.
    pub async fn start_with_routes<F>(mut options: RuntimeOptions, data: TempDir, extra: F) -> Self
    where
        F: std::future::Future<Output = axum::Router<Arc<Runtime>>> + Send + 'static,
    {
        if std::env::var_os("VTH_E2E_ON_POSTGRES").is_some()
            && options.database_url.starts_with("sqlite:")
        {
            options.database_url = postgres_database().await.expect(
                "VTH_E2E_ON_POSTGRES needs VTH_TEST_POSTGRES_URL (`cargo xtask test` sets it)",
            );
        }
        let server_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        let (runtime, addr) = server_rt
            .spawn(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind loopback");
                let addr = listener.local_addr().expect("local addr");
                if options.identity.issuer.is_none() {
                    options.identity.issuer = Some(format!("http://{addr}"));
                }
                let runtime = Runtime::start(options).await.expect("runtime starts");
                for h in test_hospitals() {
                    runtime.hospitals.upsert(h).await.expect("seed hospital");
                }
                // With connection info, as `runtime serve` (login throttling).
                let app = api::app_with(runtime.clone(), extra.await)
                    .into_make_service_with_connect_info::<SocketAddr>();
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app).await;
                });
                (runtime, addr)
            })
            .await
            .expect("server task");
        Self {
            base: format!("http://{addr}"),
            addr,
            runtime,
            client: reqwest::Client::new(),
            _data: data,
            server_rt: Some(server_rt),
        }
    }

    /// Register a service client (client credentials) of `hospital`, such
    /// as its HIS, and return an access token for it.
    pub async fn service_token(&self, client_id: &str, hospital: &str) -> String {
        let id = &self.runtime.identity;
        id.register_service_client(client_id, "HIS", hospital, "a-long-service-secret")
            .await
            .expect("service client");
        let client = id
            .client(client_id)
            .await
            .expect("client")
            .expect("registered");
        id.tokens_for_client(&client, "openid")
            .expect("token")
            .access_token
    }

    /// URL of a plugin path at a hospital.
    pub fn plugin_url(&self, hospital: &str, plugin: &str, path: &str) -> String {
        format!("{}/hospitals/{hospital}/plugins/{plugin}{path}", self.base)
    }

    /// GET a URL, returning status and JSON body (`Null` when not JSON).
    pub async fn get_json(&self, url: &str) -> (u16, serde_json::Value) {
        let resp = self.client.get(url).send().await.expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(rt) = self.server_rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A fresh, uniquely named PostgreSQL database for one test, as a URL, when
/// `VTH_TEST_POSTGRES_URL` names a server (`cargo xtask test` starts one and
/// sets it). Without it: `None` after a one-line skip notice, except under
/// `CI`, where the PostgreSQL tests must run and a missing URL panics.
pub async fn postgres_database() -> Option<String> {
    use sqlx::Connection as _;
    use std::io::Write as _;
    use std::sync::atomic::{AtomicU32, Ordering};

    let admin_url = match std::env::var("VTH_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but VTH_TEST_POSTGRES_URL is not: the PostgreSQL tests must run in CI \
                 (`cargo xtask test` starts a server and sets it)"
            );
            // Straight to stderr, past the test harness's output capture.
            let _ = writeln!(
                std::io::stderr(),
                "skipping a PostgreSQL test: VTH_TEST_POSTGRES_URL is not set (`cargo xtask test` sets it)"
            );
            return None;
        }
    };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "vth_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = sqlx::postgres::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to VTH_TEST_POSTGRES_URL={admin_url}: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    let _ = admin.close().await;
    Some(with_database(&admin_url, &name))
}

/// `url` (`postgres://user@host/db?params`) naming database `name` instead.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}
