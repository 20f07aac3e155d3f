//! A throw-away PostgreSQL cluster for the scale-out tests.
//!
//! `cargo xtask test` finds the server binaries (PATH, then
//! `/usr/lib/postgresql/*/bin`), installs Debian's `postgresql` when they are
//! missing and we are root (as in CI), starts a cluster in a temporary
//! directory that listens on a Unix socket only, and hands the tests
//! `VTH_TEST_POSTGRES_URL`. The cluster is stopped and its directory removed
//! when the [`Cluster`] is dropped, also when the tests fail.
//!
//! `initdb` refuses to run as root, so as root the cluster belongs to the
//! `postgres` user and its commands run through `runuser -u postgres --`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::{describe, run_command};

/// The variable the tests read (see `tests/lib.rs`, `postgres_database`).
pub const URL_VAR: &str = "VTH_TEST_POSTGRES_URL";
/// Set to `1` to run the tests without PostgreSQL (outside CI).
const SKIP_VAR: &str = "VTH_SKIP_POSTGRES";
/// The Debian package that provides the server.
const PACKAGE: &str = "postgresql";
const BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// A running throw-away cluster; dropping it stops the server and deletes
/// its directory.
pub struct Cluster {
    /// Holds `data/`, `sock/` and `postgres.log`.
    dir: PathBuf,
    bin: PathBuf,
    /// Run the server's commands as `postgres` (we are root).
    as_postgres: bool,
    url: String,
}

impl Cluster {
    /// `postgres://…` for the cluster's superuser over its Unix socket.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        server_command(&self.bin.join(program), self.as_postgres)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let started = Instant::now();
        println!(
            "==> stopping PostgreSQL and removing {}",
            self.dir.display()
        );
        if self.data().join("postmaster.pid").exists() {
            let mut stop = self.command("pg_ctl");
            stop.arg("stop").arg("-D").arg(self.data()).args([
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "-s",
            ]);
            if let Err(error) = run_command(stop) {
                eprintln!("xtask: warning: could not stop PostgreSQL: {error:#}");
            }
        }
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            eprintln!(
                "xtask: warning: could not remove {}: {error}",
                self.dir.display()
            );
        }
        println!(
            "    PostgreSQL stopped in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// Start a cluster for the tests, or `None` when the tests should use what
/// the environment already says (an external server in `VTH_TEST_POSTGRES_URL`,
/// or `VTH_SKIP_POSTGRES=1`).
pub fn start() -> Result<Option<Cluster>> {
    if let Some(url) = std::env::var_os(URL_VAR).filter(|u| !u.is_empty()) {
        println!(
            "    {URL_VAR} is already set ({}): the tests use that server",
            url.display()
        );
        return Ok(None);
    }
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        println!("    {SKIP_VAR}=1: skipping; the PostgreSQL tests will be skipped too");
        return Ok(None);
    }
    let started = Instant::now();
    let root = is_root()?;
    let bin = match find_binaries() {
        Some(bin) => bin,
        None if root => {
            install()?;
            find_binaries().with_context(|| {
                format!(
                    "`{PACKAGE}` was installed but {} are still not found",
                    BINARIES.join("/")
                )
            })?
        }
        None => bail!(
            "PostgreSQL is needed for the scale-out tests and {} were not found on PATH or in \
             /usr/lib/postgresql/*/bin: install the `{PACKAGE}` package (as root: \
             `apt-get install -y {PACKAGE}`), or set {SKIP_VAR}=1 to skip those tests",
            BINARIES.join("/")
        ),
    };
    println!("    server binaries: {}", bin.display());

    let dir = std::env::temp_dir().join(format!("vth-pg-{}-{}", std::process::id(), nonce()));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cluster = Cluster {
        url: format!(
            "postgres://postgres@localhost/postgres?host={}",
            dir.join("sock").display()
        ),
        dir,
        bin,
        as_postgres: root,
    };
    // From here on, dropping `cluster` cleans up whatever was made.
    std::fs::create_dir(cluster.dir.join("sock")).context("creating the socket directory")?;
    if root {
        let mut chown = Command::new("chown");
        chown.args(["-R", "postgres:postgres"]).arg(&cluster.dir);
        run_command(chown).context("giving the cluster directory to the `postgres` user")?;
    }

    let mut initdb = cluster.command("initdb");
    initdb
        .arg("-D")
        .arg(cluster.data())
        .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
        .args(["--locale=C", "--no-instructions"])
        .env("LC_ALL", "C");
    quiet(initdb).context("initdb failed")?;

    let options = format!(
        "-k {} -c listen_addresses='' -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=300",
        cluster.dir.join("sock").display()
    );
    let mut pg_ctl = cluster.command("pg_ctl");
    pg_ctl
        .arg("start")
        .arg("-D")
        .arg(cluster.data())
        .arg("-l")
        .arg(cluster.dir.join("postgres.log"))
        .arg("-o")
        .arg(&options)
        .args(["-w", "-t", "60", "-s"]);
    if let Err(error) = run_command(pg_ctl) {
        bail!(
            "{error:#}\nlast lines of the server log:\n{}",
            cluster.log_tail()
        );
    }
    wait_ready(&cluster)?;
    println!(
        "    PostgreSQL ready in {:.1} s: {URL_VAR}={}",
        started.elapsed().as_secs_f64(),
        cluster.url()
    );
    Ok(Some(cluster))
}

/// `pg_ctl -w` waits for the postmaster; `pg_isready` (when present)
/// confirms the socket accepts connections.
fn wait_ready(cluster: &Cluster) -> Result<()> {
    let isready = cluster.bin.join("pg_isready");
    if !isready.is_file() {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = Command::new(&isready)
            .arg("-q")
            .arg("-h")
            .arg(cluster.dir.join("sock"))
            .args(["-U", "postgres"])
            .status()
            .context("running pg_isready")?;
        if status.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "PostgreSQL did not accept connections within 30 s; server log:\n{}",
                cluster.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The directory holding all of initdb, pg_ctl and postgres: PATH first,
/// then the newest `/usr/lib/postgresql/<version>/bin`.
fn find_binaries() -> Option<PathBuf> {
    let has_all = |dir: &Path| BINARIES.iter().all(|b| dir.join(b).is_file());
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(dir) = on_path.into_iter().find(|d| has_all(d)) {
        // Debian links them into PATH; the real directory also has pg_isready.
        let real = dir
            .join("pg_ctl")
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .filter(|d| has_all(d));
        return Some(real.unwrap_or(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_all(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// `apt-get update && apt-get install -y postgresql`, non-interactive.
fn install() -> Result<()> {
    println!("    PostgreSQL not found; installing Debian's `{PACKAGE}` (we are root)");
    for args in [
        &["update"][..],
        &["install", "-y", "--no-install-recommends", PACKAGE],
    ] {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        run_command(cmd).with_context(|| format!("installing `{PACKAGE}` failed"))?;
    }
    Ok(())
}

fn is_root() -> Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("running `id -u`")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// `program` as the `postgres` user when we are root.
fn server_command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Run a chatty command, showing its output only when it fails.
fn quiet(mut cmd: Command) -> Result<()> {
    println!("$ {}", describe(&cmd));
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{}`", cmd.get_program().display()))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\n{}{}",
            describe(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn nonce() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() % 1_000_000_000)
}
