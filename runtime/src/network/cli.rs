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

/// When to print an import's progress: at most every [`Throttle::EVERY`]
/// (a 13,000-row file must not print a line per row), and always the end.
struct Throttle {
    last: std::time::Instant,
    ended: bool,
}

impl Throttle {
    /// Four lines a second at most.
    const EVERY: std::time::Duration = std::time::Duration::from_millis(250);

    fn new(now: std::time::Instant) -> Self {
        Self {
            last: now,
            ended: false,
        }
    }

    /// Whether to print `done` of `total` now.
    fn due(&mut self, now: std::time::Instant, done: usize, total: usize) -> bool {
        if done >= total {
            // The end once (an empty file reports 0 of 0 twice).
            if self.ended {
                return false;
            }
            self.ended = true;
            return true;
        }
        if now.duration_since(self.last) < Self::EVERY {
            return false;
        }
        self.last = now;
        true
    }
}

/// Run `command` against the database at `url`.
pub async fn run(command: NetworkCommand, url: String) -> Result<()> {
    match command {
        NetworkCommand::Import { file, dry_run, .. } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let text = match super::csv::decode_utf8(bytes) {
                Ok(text) => text,
                Err(e) => {
                    eprintln!("{}: {}", file.display(), e.message_vi());
                    bail!("{}: {e}; nothing was imported", file.display());
                }
            };
            let (db, register) = open(&url).await?;
            let mut throttle = Throttle::new(std::time::Instant::now());
            let mut progress = |done: usize, total: usize| {
                if throttle.due(std::time::Instant::now(), done, total) {
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
                    // Vietnamese first, the English in brackets (as the
                    // console shows a refusal).
                    for r in &rows {
                        eprintln!(
                            "dòng {}: {} (line {}: {})",
                            r.line, r.message_vi, r.line, r.message
                        );
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::Throttle;

    #[test]
    fn progress_prints_at_most_four_lines_a_second_and_the_end_once() {
        let start = Instant::now();
        let mut t = Throttle::new(start);
        let total = 13_000;
        // A row every 0.1 ms: 1.3 s of rows, reported after every row.
        let printed: Vec<usize> = (0..=total)
            .filter(|&done| {
                t.due(
                    start + Duration::from_micros(100) * done as u32,
                    done,
                    total,
                )
            })
            .collect();
        assert!(printed.len() <= 1 + 1300 / 250 + 1, "{printed:?}");
        assert_eq!(printed.last(), Some(&total));
        assert!(
            !t.due(start + Duration::from_secs(5), total, total),
            "the end once"
        );
        let mut t = Throttle::new(start);
        assert!(t.due(start, 0, 0), "an empty file");
        assert!(!t.due(start, 0, 0), "once");
    }
}
