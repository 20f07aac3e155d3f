//! `runtime`: the VTelehealth host binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::governance::cli::{KeysCommand, PluginCommand};
use vtelehealth_runtime::{Runtime, RuntimeOptions, api, db::Database};

#[derive(Parser)]
#[command(name = "runtime", version, about = "VTelehealth plugin runtime")]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    json_logs: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and the plugins.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", env = "VTH_LISTEN")]
        listen: SocketAddr,
        /// Database: an SQLite file path, sqlite://PATH or postgres://...
        #[arg(long, default_value = "data/vtelehealth.db", env = "VTH_DATABASE")]
        db: String,
        /// With --demo: publish, approve and roll out to every hospital the
        /// plugins in this directory (<id>.wasm with <id>.toml).
        #[arg(long, default_value = "target/plugins", env = "VTH_DEMO_PLUGINS")]
        demo_plugins: PathBuf,
        /// Development only: serve the unreviewed plugins in this directory to
        /// every hospital, without authentication.
        #[arg(long, env = "VTH_DEV_PLUGINS")]
        dev_plugins: Option<PathBuf>,
        /// The deployment's master key (sealed secrets, platform signatures);
        /// created when missing. Every node of a deployment needs the same.
        #[arg(long, default_value = "data/master.key", env = "VTH_MASTER_KEY_FILE")]
        master_key: PathBuf,
        /// Directory for compiled components.
        #[arg(long, default_value = "data/cache", env = "VTH_CACHE_DIR")]
        cache_dir: PathBuf,
        /// Seed demo hospitals and accounts (also offers the sandbox payment
        /// gateway).
        #[arg(long)]
        demo: bool,
        /// Development only: offer the built-in sandbox payment gateway,
        /// which settles payments without money (docs/payments.md).
        #[arg(long, env = "VTH_PAYMENT_SANDBOX")]
        payment_sandbox: bool,
        #[command(flatten)]
        limits: LimitArgs,
        /// Public base URL of this node: the `iss` of its tokens
        /// (default: http://LISTEN).
        #[arg(long, env = "VTH_ISSUER")]
        issuer: Option<String>,
        /// JSON file listing trusted external token issuers (docs/identity.md).
        #[arg(long, env = "VTH_TRUSTED_ISSUERS")]
        trusted_issuers: Option<PathBuf>,
        #[command(flatten)]
        proxies: Box<ProxyArgs>,
        #[command(flatten)]
        video: Box<VideoArgs>,
        /// UDP address of the media relay; also the ICE candidate browsers
        /// are given, so it must be one they reach (port 0 picks one).
        #[arg(long, default_value = "127.0.0.1:0", env = "VTH_MEDIA_ADDR")]
        media_addr: SocketAddr,
        /// Development only: serve GET /video/dev/{room}/ws?name=..&role=..,
        /// which joins a room with no token (docs/video-media.md).
        #[arg(long)]
        video_dev_join: bool,
    },
    /// Check or export the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Vendor signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Build, sign, check and publish plugin bundles.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Check signed imaging documents (BHYT imaging shares).
    ImagingShare {
        #[command(subcommand)]
        command: ImagingShareCommand,
    },
    /// Invite the first operator or a hospital's admin (one-time links).
    Accounts {
        #[command(subcommand)]
        command: vtelehealth_runtime::identity::accounts_cli::AccountsCommand,
    },
    /// The network register: import facilities from CSV, list them.
    Network {
        #[command(subcommand)]
        command: vtelehealth_runtime::network::cli::NetworkCommand,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[arg(long, default_value = "data/vtelehealth.db", env = "VTH_DATABASE")]
        db: String,
    },
}

/// Where clients' addresses come from.
#[derive(clap::Args)]
struct ProxyArgs {
    /// Reverse proxies whose X-Forwarded-For names the client (comma
    /// separated addresses), so login throttling sees real clients.
    #[arg(long, env = "VTH_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<std::net::IpAddr>,
}

#[derive(Subcommand)]
enum ImagingShareCommand {
    /// Verify a document's signature against the hospital's published key;
    /// exit 1 when it does not verify (altered, or another signer).
    Verify {
        /// The signed Bundle (or the JSON answer of the create request).
        file: PathBuf,
        /// The key: a JWK (or JWK Set) file, or the URL of
        /// `/api/v1/hospitals/{hospital}/signing-key`.
        #[arg(long)]
        key: String,
    },
}

async fn run_imaging_share(command: ImagingShareCommand) -> anyhow::Result<()> {
    let ImagingShareCommand::Verify { file, key } = command;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let doc = match doc.get("document") {
        Some(inner) => inner.clone(),
        None => doc,
    };
    let jwk: serde_json::Value = if key.starts_with("https://") || key.starts_with("http://") {
        reqwest::get(&key)
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("fetching {key}"))?
            .json()
            .await
            .with_context(|| format!("{key} did not answer JSON"))?
    } else {
        let text = std::fs::read_to_string(&key).with_context(|| format!("reading {key}"))?;
        serde_json::from_str(&text).with_context(|| format!("{key} is not JSON"))?
    };
    let keys = match jwk.get("keys").and_then(|k| k.as_array()) {
        Some(set) => set.clone(),
        None => vec![jwk],
    };
    let mut last = None;
    for k in &keys {
        match vtelehealth_runtime::imaging::verify(&doc, k) {
            Ok(kid) => {
                println!("signature valid: signed by key {kid}");
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => anyhow::bail!("signature NOT valid: {e}"),
        None => anyhow::bail!("no key in {key}"),
    }
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain and check it against the signed
    /// checkpoints; exit 1 and name the entries when an entry was edited or
    /// deleted, even if the chain was rebuilt afterwards.
    Verify {
        #[arg(long, default_value = "data/vtelehealth.db", env = "VTH_DATABASE")]
        db: String,
        /// The deployment's master key, from which the checkpoint key is
        /// derived (read only, never created).
        #[arg(long, default_value = "data/master.key", env = "VTH_MASTER_KEY_FILE")]
        master_key: PathBuf,
        /// The checkpoint key's public key (base64, as exported), instead of
        /// the master key.
        #[arg(long)]
        public_key: Option<String>,
        /// Checkpoints exported earlier and kept elsewhere: each must still
        /// be in the database and match the chain.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
    },
    /// Signed checkpoints of the chain's head.
    Checkpoints {
        #[command(subcommand)]
        command: CheckpointsCommand,
    },
    /// Print entries as JSON, or as a FHIR Bundle of AuditEvent resources.
    Export {
        #[arg(long, default_value = "data/vtelehealth.db", env = "VTH_DATABASE")]
        db: String,
        /// `json` or `fhir`.
        #[arg(long, default_value = "fhir")]
        format: String,
        /// Only actions starting with this, e.g. `plugin.`.
        #[arg(long)]
        action: Option<String>,
        /// Only this hospital's entries.
        #[arg(long)]
        hospital: Option<String>,
        #[arg(long, default_value_t = 10_000)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum CheckpointsCommand {
    /// Print every checkpoint with the public key that verifies them, to
    /// store outside the database.
    Export {
        #[arg(long, default_value = "data/vtelehealth.db", env = "VTH_DATABASE")]
        db: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The master key, which names the checkpoint key in the export.
        #[arg(long, default_value = "data/master.key", env = "VTH_MASTER_KEY_FILE")]
        master_key: PathBuf,
    },
    /// Sign a checkpoint of the chain's head now.
    Create {
        #[arg(long, default_value = "data/vtelehealth.db", env = "VTH_DATABASE")]
        db: String,
        #[arg(long, default_value = "data/master.key", env = "VTH_MASTER_KEY_FILE")]
        master_key: PathBuf,
    },
}

async fn run_audit(command: AuditCommand) -> anyhow::Result<()> {
    use base64::Engine as _;
    use vtelehealth_runtime::audit::{
        AuditFilter, AuditLog, Checkpoint, CheckpointCheck, export_checkpoints,
    };
    use vtelehealth_runtime::secrets::MasterKey;
    match command {
        AuditCommand::Verify {
            db,
            master_key,
            public_key,
            checkpoints,
        } => {
            let audit = AuditLog::new(Database::connect(&database_url(&db)?).await?);
            let public_key = match public_key {
                Some(b64) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .context("--public-key is not base64")?,
                ),
                None if master_key.is_file() => Some(
                    MasterKey::load(&master_key)?
                        .audit_checkpoint_signer()?
                        .public_key()
                        .to_vec(),
                ),
                None => None,
            };
            let exported = match &checkpoints {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let file: serde_json::Value = serde_json::from_str(&text)
                        .with_context(|| format!("{} is not JSON", path.display()))?;
                    serde_json::from_value::<Vec<Checkpoint>>(
                        file.get("checkpoints").cloned().unwrap_or_default(),
                    )
                    .with_context(|| format!("{} holds no exported checkpoints", path.display()))?
                }
                None => Vec::new(),
            };
            let report = audit
                .verify_with(&CheckpointCheck {
                    public_key,
                    exported,
                })
                .await?;
            if report.ok {
                let checked = audit.checkpoints().await?.len();
                println!(
                    "audit trail intact: {} entries, hash chain and head verified, {checked} signed checkpoints match",
                    report.entries
                );
                Ok(())
            } else {
                anyhow::bail!(
                    "audit trail BROKEN ({} entries): {}",
                    report.entries,
                    report.problem.unwrap_or_default()
                )
            }
        }
        AuditCommand::Checkpoints {
            command:
                CheckpointsCommand::Export {
                    db,
                    out,
                    master_key,
                },
        } => {
            let audit = AuditLog::new(Database::connect(&database_url(&db)?).await?);
            let signer = MasterKey::load(&master_key)?.audit_checkpoint_signer()?;
            let text = serde_json::to_string_pretty(&export_checkpoints(
                &signer,
                &audit.checkpoints().await?,
            ))?;
            match out {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => println!("{text}"),
            }
            Ok(())
        }
        AuditCommand::Checkpoints {
            command: CheckpointsCommand::Create { db, master_key },
        } => {
            let audit = AuditLog::new(Database::connect(&database_url(&db)?).await?);
            let signer = MasterKey::load(&master_key)?.audit_checkpoint_signer()?;
            let checkpoint = audit.checkpoint(&signer).await?;
            println!("{}", serde_json::to_string_pretty(&checkpoint)?);
            Ok(())
        }
        AuditCommand::Export {
            db,
            format,
            action,
            hospital,
            limit,
        } => {
            let audit = AuditLog::new(Database::connect(&database_url(&db)?).await?);
            let entries = audit
                .list(&AuditFilter {
                    action_prefix: action,
                    hospital_id: hospital,
                    limit: Some(limit),
                    ..AuditFilter::default()
                })
                .await?;
            let out = match format.as_str() {
                "json" => serde_json::json!({ "entries": entries }),
                "fhir" => serde_json::json!({
                    "resourceType": "Bundle",
                    "type": "collection",
                    "total": entries.len(),
                    "entry": entries.iter().map(|e| serde_json::json!({ "resource": e.to_fhir() })).collect::<Vec<_>>(),
                }),
                other => anyhow::bail!("unknown format `{other}` (json or fhir)"),
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
    }
}

/// Sandbox limits per plugin call (docs/operations.md lists them).
#[derive(clap::Args)]
struct LimitArgs {
    /// Wall-clock deadline of one plugin call, host calls included.
    #[arg(long, default_value_t = 2000, env = "VTH_DEADLINE_MS")]
    deadline_ms: u64,
    /// Linear memory of one plugin instance.
    #[arg(long, default_value_t = 64, env = "VTH_MEMORY_MIB")]
    memory_mib: usize,
    /// Largest response body a plugin may return.
    #[arg(long, default_value_t = 8, env = "VTH_MAX_RESPONSE_MIB")]
    max_response_mib: usize,
    /// Largest request body forwarded to a plugin.
    #[arg(long, default_value_t = 8, env = "VTH_MAX_REQUEST_MIB")]
    max_request_mib: usize,
    /// Key-value quota of each (hospital, plugin) pair.
    #[arg(long, default_value_t = 100, env = "VTH_KV_QUOTA_MIB")]
    kv_quota_mib: u64,
    /// Plugin calls running at once on this node (pooled instance slots).
    #[arg(long, default_value_t = 256, env = "VTH_MAX_CONCURRENT_CALLS")]
    max_concurrent_calls: u32,
}

impl LimitArgs {
    fn limits(&self) -> anyhow::Result<Limits> {
        anyhow::ensure!(self.deadline_ms > 0, "--deadline-ms must be positive");
        anyhow::ensure!(
            (1..=4096).contains(&self.memory_mib),
            "--memory-mib must be 1 to 4096"
        );
        anyhow::ensure!(
            self.max_concurrent_calls > 0,
            "--max-concurrent-calls must be positive"
        );
        Ok(Limits {
            deadline: Duration::from_millis(self.deadline_ms),
            memory_bytes: self.memory_mib << 20,
            max_response_bytes: self.max_response_mib << 20,
            max_request_bytes: self.max_request_mib << 20,
            kv_quota_bytes: self.kv_quota_mib << 20,
            max_concurrent_calls: self.max_concurrent_calls,
            ..Limits::default()
        })
    }
}

/// Which server carries consultation video (docs/video.md).
#[derive(clap::Args)]
struct VideoArgs {
    /// `embedded` (this runtime relays media) or `livekit` (a LiveKit cluster).
    #[arg(long, default_value = "embedded", env = "VTH_VIDEO_BACKEND")]
    video_backend: String,
    /// The LiveKit server URL clients connect to, e.g. wss://sfu.example.vn.
    #[arg(long, env = "VTH_LIVEKIT_URL")]
    livekit_url: Option<String>,
    #[arg(long, env = "VTH_LIVEKIT_API_KEY")]
    livekit_api_key: Option<String>,
    /// The API secret (at least 32 bytes); prefer the environment variable.
    #[arg(long, env = "VTH_LIVEKIT_API_SECRET", hide_env_values = true)]
    livekit_api_secret: Option<String>,
}

impl VideoArgs {
    fn livekit(self) -> anyhow::Result<Option<vtelehealth_runtime::video::livekit::LiveKitConfig>> {
        match self.video_backend.as_str() {
            "embedded" => Ok(None),
            "livekit" => {
                let (Some(url), Some(api_key), Some(api_secret)) = (
                    self.livekit_url,
                    self.livekit_api_key,
                    self.livekit_api_secret,
                ) else {
                    anyhow::bail!(
                        "--video-backend livekit needs --livekit-url, --livekit-api-key and --livekit-api-secret"
                    );
                };
                Ok(Some(vtelehealth_runtime::video::livekit::LiveKitConfig {
                    url,
                    api_key,
                    api_secret,
                }))
            }
            other => anyhow::bail!("unknown --video-backend `{other}` (embedded or livekit)"),
        }
    }
}

/// Accept a bare SQLite path as well as a URL.
fn database_url(db: &str) -> anyhow::Result<String> {
    if db.contains("://") || db.starts_with("sqlite:") {
        return Ok(db.to_owned());
    }
    let path = PathBuf::from(db);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Ok(format!("sqlite://{db}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if cli.json_logs {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    match cli.command {
        Command::Audit { command } => run_audit(command).await?,
        Command::ImagingShare { command } => run_imaging_share(command).await?,
        Command::Keys { command } => vtelehealth_runtime::governance::cli::run_keys(command)?,
        Command::Plugin { command } => {
            vtelehealth_runtime::governance::cli::run_plugin(command).await?
        }
        Command::Accounts { command } => {
            use vtelehealth_runtime::identity::accounts_cli::AccountsCommand as A;
            let db = match &command {
                A::AddOperator { db, .. }
                | A::AddReviewer { db, .. }
                | A::InviteHospitalAdmin { db, .. } => db.clone(),
            };
            vtelehealth_runtime::identity::accounts_cli::run(command, database_url(&db)?).await?
        }
        Command::Network { command } => {
            let url = database_url(command.db())?;
            vtelehealth_runtime::network::cli::run(command, url).await?
        }
        Command::Migrate { db } => {
            Database::connect(&database_url(&db)?).await?;
            println!("database schema is up to date");
        }
        Command::Serve {
            listen,
            db,
            demo_plugins,
            dev_plugins,
            master_key,
            cache_dir,
            demo,
            limits,
            issuer,
            trusted_issuers,
            proxies,
            video,
            media_addr,
            video_dev_join,
            payment_sandbox,
        } => {
            let trusted_issuers = match trusted_issuers {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    vtelehealth_runtime::identity::parse_trusted_issuers(&text)
                        .with_context(|| format!("checking {}", path.display()))?
                }
                None => Vec::new(),
            };
            let runtime = Runtime::start(RuntimeOptions {
                database_url: database_url(&db)?,
                plugin_dir: dev_plugins,
                master_key_file: Some(master_key),
                cache_dir: Some(cache_dir),
                demo,
                limits: limits.limits()?,
                identity: vtelehealth_runtime::identity::IdentityOptions {
                    issuer: Some(issuer.unwrap_or_else(|| format!("http://{listen}"))),
                    trusted_issuers,
                    login: vtelehealth_runtime::identity::LoginLimits {
                        trusted_proxies: proxies.trusted_proxies,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                livekit: video.livekit()?,
                payment_sandbox,
            })
            .await
            .context("starting the runtime")?;
            if demo {
                let published =
                    vtelehealth_runtime::demo::publish_reference_plugins(&runtime, &demo_plugins)
                        .await
                        .context("publishing the reference plugins")?;
                tracing::info!(plugins = ?published, "reference plugins reviewed and rolled out");
            }
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            print_banner(&runtime, listen);
            // The embedded relay carries the rooms' media unless LiveKit does.
            let relay = if runtime.video.is_embedded() {
                let relay = vtelehealth_runtime::video::sfu::MediaRelay::start(media_addr)
                    .await
                    .context("starting the media relay")?;
                runtime
                    .video
                    .set_media_plane(std::sync::Arc::new(relay.clone()));
                Some(relay)
            } else {
                None
            };
            let extra = if let (true, Some(relay)) = (video_dev_join, relay) {
                tracing::warn!(media = %relay.local_addr(),
                    "--video-dev-join: anyone can join any room at /rooms/{{room}}?dev=1&name=..&role=..");
                vtelehealth_runtime::api::video_dev::routes(relay)
            } else {
                axum::Router::new()
            };
            // Connection info: the login throttle keys on the client's address.
            let app =
                api::app_with(runtime, extra).into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
        }
    }
    Ok(())
}

fn print_banner(runtime: &Runtime, listen: SocketAddr) {
    let base = format!("http://{listen}");
    println!("\nVTelehealth runtime listening on {base}");
    println!("  health:    curl {base}/healthz");
    println!("  metrics:   curl {base}/metrics");
    println!("  plugins:   curl {base}/api/v1/plugins");
    println!("  hospitals: curl {base}/api/v1/hospitals");
    println!("  identity:  curl {base}/.well-known/openid-configuration");
    // The consoles log in with redirects to the issuer: open them there.
    println!(
        "  consoles:  {}/console/  (open in a browser; see docs/consoles.md)",
        runtime.identity.issuer()
    );
    if runtime.hospitals.get("bach-mai").is_some() {
        use vtelehealth_runtime::identity::{DEMO_SERVICE_CLIENT, demo_accounts};
        let (client, secret, _) = DEMO_SERVICE_CLIENT;
        println!("  demo token (HIS service of bach-mai):");
        println!(
            "    curl -u {client}:{secret} -d grant_type=client_credentials {base}/oidc/token"
        );
        println!("  demo accounts (browser login at /oidc/authorize; see docs/identity.md):");
        for a in demo_accounts() {
            println!(
                "    {:<16} {:<16} {:<15} {}",
                a.username,
                a.password,
                a.role.as_str(),
                a.hospital_id.or(a.vendor_id).unwrap_or("")
            );
        }
    }
    if runtime.hospitals.get("bach-mai").is_some() {
        use vtelehealth_runtime::identity::DEMO_SERVICE_CLIENT;
        let (client, secret, _) = DEMO_SERVICE_CLIENT;
        println!("  call a plugin as Bạch Mai's HIS service:");
        println!(
            "    TOKEN=$(curl -s -u {client}:{secret} -d grant_type=client_credentials {base}/oidc/token | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')"
        );
        println!(
            "    curl -H \"Authorization: Bearer $TOKEN\" {base}/hospitals/bach-mai/plugins/hello/"
        );
        println!(
            "    curl -X POST -H \"Authorization: Bearer $TOKEN\" {base}/hospitals/bach-mai/plugins/visit-counter/visits"
        );
        println!(
            "    curl -X POST -H \"Authorization: Bearer $TOKEN\" -H \"Content-Type: x-application/hl7-v2+er7\" --data-binary @plugins/his-hl7v2/corpus/adt_a04_v25_cccd_bhxh.hl7 {base}/hospitals/bach-mai/plugins/his-hl7v2/messages"
        );
        println!("    curl -H \"Authorization: Bearer $TOKEN\" '{base}/fhir/R4/Patient?_count=5'");
        println!(
            "  review queue and audit (reviewer token): {base}/api/v1/plugin-versions, {base}/api/v1/audit"
        );
    }
    let hospital = runtime.hospitals.list().into_iter().next();
    for status in runtime.plugins.statuses() {
        match (&hospital, status.status) {
            (Some(h), "ready") => println!(
                "  plugin {:<14} curl {base}/hospitals/{}/plugins/{}/",
                status.id, h.id, status.id
            ),
            (_, "ready") => println!(
                "  plugin {:<14} ready (no hospital yet: start with --demo)",
                status.id
            ),
            _ => println!(
                "  plugin {:<14} FAILED: {}",
                status.id,
                status.error.unwrap_or_default()
            ),
        }
    }
    println!();
}
