//! `runtime network`: import facilities from a CSV file and list them.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::{CHANNEL, CLI_ACTOR, FacilityQuery, NetworkError, NetworkRegister, Notice};
use crate::cluster::Bus;
use crate::db::Database;
use crate::directory::HospitalDirectory;

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Import facilities from a CSV file (docs/operations.md, "The network
    /// register"): all rows or none; exit 1 naming the bad rows' lines.
    Import {
        file: PathBuf,
        /// Report what would change without changing anything.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, default_value = "data/vtelehealth.db", env = "VTH_DATABASE")]
        db: String,
    },
    /// List registered facilities.
    Facilities {
        /// Province code or name.
        #[arg(long)]
        province: Option<String>,
        /// Part of the name, code or commune.
        #[arg(long)]
        q: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, default_value = "data/vtelehealth.db", env = "VTH_DATABASE")]
        db: String,
    },
}

impl NetworkCommand {
    /// The `--db` given.
    pub fn db(&self) -> &str {
        match self {
            Self::Import { db, .. } | Self::Facilities { db, .. } => db,
        }
    }
}

async fn open(url: &str) -> Result<(Database, Arc<NetworkRegister>)> {
    let db = Database::connect(url).await?;
    let hospitals = Arc::new(HospitalDirectory::load(db.pool.clone()).await?);
    let bus = Arc::new(Bus::new(db.clone()));
    let register = NetworkRegister::new(db.clone(), hospitals, bus).await?;
    Ok((db, register))
}

/// Run `command` against the database at `url`.
pub async fn run(command: NetworkCommand, url: String) -> Result<()> {
    match command {
        NetworkCommand::Import { file, dry_run, .. } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let text = String::from_utf8(bytes)
                .with_context(|| format!("{} is not UTF-8 text", file.display()))?;
            let (db, register) = open(&url).await?;
            let mut last = std::time::Instant::now();
            let mut progress = |done: usize, total: usize| {
                // At most a few lines a second, and the last one.
                if done == total || last.elapsed().as_millis() >= 250 {
                    last = std::time::Instant::now();
                    let _ = writeln!(std::io::stderr(), "Đang nhập… {done}/{total} rows");
                }
            };
            match register
                .import_csv(&text, dry_run, CLI_ACTOR, &mut progress)
                .await
            {
                Ok(report) => {
                    println!(
                        "{}: {} created, {} updated, {} unchanged",
                        if dry_run {
                            "dry run, nothing changed"
                        } else {
                            "imported"
                        },
                        report.created,
                        report.updated,
                        report.unchanged
                    );
                    for c in &report.changes {
                        println!(
                            "  line {}: {} {} {} ({}){}",
                            c.line,
                            match c.action {
                                super::Action::Created => "created",
                                super::Action::Updated => "updated",
                                super::Action::Unchanged => "unchanged",
                            },
                            c.facility_code,
                            c.name,
                            c.id,
                            if c.fields.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", c.fields.join(", "))
                            }
                        );
                    }
                    let changed = report.created + report.updated;
                    if changed > report.changes.len() {
                        println!("  … and {} more", changed - report.changes.len());
                    }
                    if !dry_run && changed > 0 {
                        // Running nodes re-read the register.
                        let payload = serde_json::to_string(&Notice::All)?;
                        if let Err(e) = Bus::notify_now(&db, CHANNEL, &payload).await {
                            eprintln!(
                                "warning: running nodes were not told ({e}); they see the import after a restart"
                            );
                        }
                    }
                    Ok(())
                }
                Err(NetworkError::BadRows(rows)) => {
                    for r in &rows {
                        eprintln!("line {}: {}", r.line, r.message);
                    }
                    bail!(
                        "{} bad row(s) in {}; nothing was imported",
                        rows.len(),
                        file.display()
                    )
                }
                Err(e) => Err(e.into()),
            }
        }
        NetworkCommand::Facilities {
            province, q, limit, ..
        } => {
            let (_, register) = open(&url).await?;
            let (page, total) = register.facilities(&FacilityQuery {
                q,
                province,
                limit: Some(limit),
                ..FacilityQuery::default()
            })?;
            for h in &page {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    h.facility_code.as_deref().unwrap_or("-"),
                    h.id,
                    h.name,
                    h.tier.as_str(),
                    h.province,
                    h.status.as_str()
                );
            }
            eprintln!("{} of {total} facilities", page.len());
            Ok(())
        }
    }
}
