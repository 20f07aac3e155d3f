//! VTelehealth host runtime: runs sandboxed Wasm plugins and offers them the
//! platform's capabilities (see `wit/`), nothing else.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use vtelehealth_runtime::{Runtime, RuntimeOptions};
//! let runtime = Runtime::start(RuntimeOptions {
//!     database_url: "sqlite://data/vtelehealth.db".into(),
//!     plugin_dir: Some("target/plugins".into()),
//!     ..RuntimeOptions::default()
//! })
//! .await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, vtelehealth_runtime::api::app(runtime)).await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod audit;
pub mod bindings;
pub mod capabilities;
pub mod cluster;
pub mod config;
pub mod db;
pub mod demo;
pub mod directory;
pub mod engine;
pub mod governance;
pub mod identity;
pub mod imaging;
pub mod manifest;
pub mod metrics;
pub mod network;
pub mod notify;
pub mod outbound;
pub mod payment;
pub mod plugins;
pub mod query;
pub mod records;
pub mod sandbox;
pub mod secrets;
pub mod text_limits;
pub mod time;
pub mod video;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::capabilities::kv::KvStore;
use crate::config::Limits;
use crate::db::Database;
use crate::directory::HospitalDirectory;
use crate::engine::PluginEngine;
use crate::governance::registry::Registry;
use crate::governance::service::Governance;
use crate::identity::{IdentityOptions, IdentityService};
use crate::imaging::ImagingShares;
use crate::metrics::Metrics;
use crate::payment::{Payments, TermsSource};
use crate::plugins::DevPlugins;
use crate::records::RecordStore;
use crate::secrets::MasterKey;
use crate::video::rooms::{VideoBackend, VideoService};
use crate::video::token::TokenSigner;

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Directory(#[from] directory::DirectoryError),
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error(transparent)]
    Plugins(#[from] plugins::LoadError),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    #[error(transparent)]
    Governance(#[from] governance::registry::GovernanceError),
    #[error(transparent)]
    Video(#[from] video::livekit::LiveKitError),
    #[error(transparent)]
    Network(#[from] network::NetworkError),
}

/// How to start a runtime node.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// `sqlite://PATH` or `postgres://...`.
    pub database_url: String,
    /// Development plugins: every `<id>.wasm` + `<id>.toml` in this
    /// directory is served to every hospital without review. Never in
    /// production; tests and plugin authors use it.
    pub plugin_dir: Option<PathBuf>,
    /// The deployment's master key file (created when missing); `None` uses
    /// a throw-away key, so sealed secrets do not survive a restart.
    pub master_key_file: Option<PathBuf>,
    /// Where compiled components are cached; `None` compiles every start.
    pub cache_dir: Option<PathBuf>,
    pub limits: Limits,
    /// Seed the demo hospitals and accounts.
    pub demo: bool,
    /// The built-in provider and the trusted external issuers.
    pub identity: IdentityOptions,
    /// Which server carries video: `None` the embedded one, or a LiveKit cluster.
    pub livekit: Option<video::livekit::LiveKitConfig>,
    /// Development only: offer the built-in sandbox payment gateway (also
    /// offered with `demo`). Without it, a module that takes payments must
    /// name a real gateway in its activation.
    pub payment_sandbox: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            database_url: "sqlite://data/vtelehealth.db".into(),
            plugin_dir: None,
            master_key_file: None,
            cache_dir: None,
            limits: Limits::default(),
            demo: false,
            identity: IdentityOptions::default(),
            livekit: None,
            payment_sandbox: false,
        }
    }
}

/// One runtime node: engine, plugins, capabilities' state, database.
pub struct Runtime {
    pub engine: Arc<PluginEngine>,
    pub plugins: DevPlugins,
    pub hospitals: Arc<HospitalDirectory>,
    pub kv: Arc<KvStore>,
    /// Identity provider, directory of people, token validation.
    pub identity: Arc<IdentityService>,
    /// Reviews, activations, audit trail; what each call may run.
    pub governance: Arc<Governance>,
    /// FHIR R4 health records of every hospital.
    pub records: Arc<RecordStore>,
    /// Signed imaging documents shared with social-insurance assessors.
    pub imaging: Arc<ImagingShares>,
    /// Consultation rooms, join tokens, the waiting room.
    pub video: Arc<VideoService>,
    /// Events between the nodes of the deployment.
    pub bus: Arc<cluster::Bus>,
    /// The network register: facilities' and vendors' status, kept by the ministry.
    pub network: Arc<network::NetworkRegister>,
    /// Notifications plugins send to people.
    pub notifications: Arc<notify::Notifications>,
    /// Payment intents, the ledger and settlement events.
    pub payments: Arc<Payments>,
    pub limits: Limits,
    pub db: Database,
    pub metrics: Metrics,
    /// One permit per pooled instance slot.
    pub call_slots: Arc<Semaphore>,
}

impl Runtime {
    /// Open the database, build the engine and load the plugins.
    pub async fn start(options: RuntimeOptions) -> Result<Arc<Self>, StartError> {
        let db = Database::connect(&options.database_url).await?;
        let hospitals = Arc::new(HospitalDirectory::load(db.pool.clone()).await?);
        if options.demo {
            for h in directory::demo_hospitals() {
                hospitals.upsert(h).await?;
            }
        }
        let identity = Arc::new(IdentityService::new(db.clone(), options.identity.clone()).await?);
        if options.demo {
            identity.seed_demo().await?;
        }
        // The web consoles log in through this public client (PKCE).
        let console_callback = format!("{}/console/callback", identity.issuer());
        identity
            .register_public_client(
                api::console::CLIENT_ID,
                "VTelehealth consoles",
                &[&console_callback],
            )
            .await?;
        let engine = Arc::new(PluginEngine::new(
            &options.limits,
            options.cache_dir.clone(),
        )?);
        let plugins = DevPlugins::default();
        if let Some(dir) = &options.plugin_dir {
            tracing::warn!(dir = %dir.display(), "serving unreviewed development plugins to every hospital");
            plugins.load_dir(&engine, dir).await?;
        }
        let master = match &options.master_key_file {
            Some(path) => MasterKey::load_or_create(path)?,
            None => MasterKey::ephemeral()?,
        };
        let document_keys = master.document_keys();
        let video_signer = TokenSigner::new(identity.issuer(), &master.video_token_seed()?)?;
        let video_backend = match options.livekit.clone() {
            Some(config) => VideoBackend::LiveKit(video::livekit::LiveKit::new(config)?),
            None => VideoBackend::Embedded,
        };
        let payment_sandbox = options.demo || options.payment_sandbox;
        let sandbox_tickets = if payment_sandbox {
            tracing::warn!(
                "the sandbox payment gateway is on: payments settle without money (development only)"
            );
            Some(payment::gateway::SandboxTickets::new(
                &master.payment_sandbox_key()?,
            ))
        } else {
            None
        };
        let kv = Arc::new(KvStore::new(db.clone()));
        let governance = Arc::new(
            Governance::new(Registry::new(db.clone()), master, engine.clone())
                .await?
                .allow_payment_sandbox(payment_sandbox)
                .with_kv(kv.clone()),
        );
        governance.spawn_epoch_watcher();
        governance.spawn_audit_tasks(audit::CHECKPOINT_INTERVAL);
        let records = Arc::new(RecordStore::new(db.clone()));
        let mut payments = Payments::new(db.clone(), TermsSource::Activations(governance.clone()));
        if let Some(tickets) = sandbox_tickets {
            payments = payments.with_sandbox(tickets);
        }
        let payments = Arc::new(payments);
        payments.spawn_expiry(std::time::Duration::from_secs(30));
        let bus = Arc::new(cluster::Bus::new(db.clone()));
        bus.start(&[
            video::rooms::NOTIFY_CHANNEL,
            notify::CHANNEL,
            network::CHANNEL,
        ])
        .await;
        let network =
            network::NetworkRegister::new(db.clone(), hospitals.clone(), bus.clone()).await?;
        network.start_cluster_events();
        let notifications = Arc::new(notify::Notifications::new(db.clone(), bus.clone()));
        // Pages are re-sent and escalated when nobody calls the plugin.
        notifications.spawn_page_sweeper(notify::PAGE_SWEEP_EVERY);
        let video = Arc::new(VideoService::new(db.clone(), video_signer, video_backend));
        video.start_cluster_events(bus.clone());
        Ok(Arc::new(Self {
            payments,
            engine,
            plugins,
            hospitals,
            kv,
            imaging: Arc::new(ImagingShares::new(
                db.clone(),
                records.clone(),
                document_keys,
            )),
            video,
            bus,
            network,
            notifications,
            records,
            identity,
            governance,
            call_slots: Arc::new(Semaphore::new(options.limits.max_concurrent_calls as usize)),
            limits: options.limits,
            db,
            metrics: Metrics::default(),
        }))
    }

    /// What plugins look up through `identity`: hospitals and practitioners.
    pub fn directory(&self) -> capabilities::identity::CallServices {
        capabilities::identity::CallServices::new(self.hospitals.clone(), self.identity.clone())
            .with_payments(self.payments.clone())
            .with_notifications(self.notifications.clone())
    }
}
