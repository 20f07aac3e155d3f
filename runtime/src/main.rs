//! `runtime`: the VTelehealth host binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
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
        /// Directory of plugins (<id>.wasm with <id>.toml).
        #[arg(long, default_value = "target/plugins", env = "VTH_PLUGINS")]
        plugins: PathBuf,
        /// Directory for compiled components.
        #[arg(long, default_value = "data/cache", env = "VTH_CACHE_DIR")]
        cache_dir: PathBuf,
        /// Seed demo hospitals.
        #[arg(long)]
        demo: bool,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[arg(long, default_value = "data/vtelehealth.db", env = "VTH_DATABASE")]
        db: String,
    },
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
        Command::Migrate { db } => {
            Database::connect(&database_url(&db)?).await?;
            println!("database schema is up to date");
        }
        Command::Serve {
            listen,
            db,
            plugins,
            cache_dir,
            demo,
        } => {
            let runtime = Runtime::start(RuntimeOptions {
                database_url: database_url(&db)?,
                plugin_dir: Some(plugins.clone()),
                cache_dir: Some(cache_dir),
                demo,
                ..RuntimeOptions::default()
            })
            .await
            .context("starting the runtime")?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            print_banner(&runtime, listen);
            axum::serve(listener, api::app(runtime))
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
