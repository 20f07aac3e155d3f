//! Project automation, run as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! - `build-plugins`: build the guest workspace for `wasm32-unknown-unknown` and turn every
//!   plugin into a Wasm component with its manifest, under `target/plugins/` (reference
//!   plugins) and `target/test-plugins/` (test-only plugins).
//! - `test`: build the plugins, prepare the FHIR client's virtualenv for the interop test
//!   (see `fhir_venv.rs`), start a throw-away PostgreSQL cluster (see `postgres.rs`), find or
//!   install headless Chromium for the browser video tests (see `chromium.rs`), then
//!   `cargo test --workspace` (extra arguments forwarded).
//! - `run`: build the plugins, then start the server on them with demo data.
//! - `fuzz [TARGET ...] [--seconds N]`: fuzz the parsers that face the outside (the `fuzz/`
//!   crate's `vth-fuzz`); `test` runs every target for a short smoke time.
//! - `bench-records`: start a throw-away PostgreSQL cluster, then run the records benchmark
//!   (`runtime/benches/records.rs`) on SQLite and on it.
//! - `soak [--minutes N] [--release]`: on demand, not in CI. Build the plugins and the
//!   workspace, start a throw-away PostgreSQL cluster, then run `vth-soak` (`tests/soak.rs`):
//!   two `runtime serve` processes on one database under mixed traffic, one killed with
//!   SIGKILL halfway and restarted; it checks that every acknowledged write is there exactly
//!   once, the ledger and the settlement outbox, and `runtime audit verify`, and prints
//!   errors, retries and latency before, during and after the kill (docs/benchmarks.md).

mod chromium;
mod fhir_venv;
mod manifest;
mod plugins;
mod postgres;
mod toolchain;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "VTelehealth project automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the guest workspace for wasm32 and write the plugin components and manifests
    /// to target/plugins/ and target/test-plugins/.
    BuildPlugins(toolchain::Options),
    /// Build the plugins, prepare the FHIR interop venv and PostgreSQL, then run
    /// `cargo test --workspace [ARGS]`.
    Test {
        #[command(flatten)]
        toolchain: toolchain::Options,
        /// Extra arguments for `cargo test` (put them after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the plugins, then run the server on them with demo data.
    Run {
        #[command(flatten)]
        toolchain: toolchain::Options,
        /// Extra arguments for `runtime serve` (put them after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Fuzz the parsers that face the outside (HL7 v2, manifests, bundles, FHIR, gateway
    /// notifications, OIDC requests, JWTs) for N seconds each; findings go to
    /// target/fuzz/findings/.
    Fuzz {
        /// Targets (all when none).
        targets: Vec<String>,
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Build optimised (more inputs per second; a release build takes a while).
        #[arg(long)]
        release: bool,
    },
    /// Start a throw-away PostgreSQL, then run the records benchmark on SQLite and on it
    /// (release build; results to copy into docs/benchmarks.md).
    BenchRecords,
    /// Two runtime processes on one throw-away PostgreSQL under mixed traffic, one killed
    /// (SIGKILL) halfway and restarted; checks every acknowledged write and reports latency.
    Soak {
        #[command(flatten)]
        toolchain: toolchain::Options,
        /// Length of the run.
        #[arg(long, default_value_t = 2.0)]
        minutes: f64,
        /// Build and run optimised binaries (default: the debug build).
        #[arg(long)]
        release: bool,
    },
}

/// How `cargo xtask run` starts the server; the one place to adjust when the runtime's CLI
/// changes. Paths are relative to the repository root.
const RUNTIME_PACKAGE: &str = "vtelehealth-runtime";
const RUNTIME_BIN: &str = "runtime";
const RUNTIME_SERVE_ARGS: &[&str] = &[
    "serve",
    "--demo-plugins",
    "target/plugins",
    "--db",
    "data/vtelehealth.db",
    "--demo",
];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::BuildPlugins(options) => plugins::build(&repo_root(), &options),
        Cmd::Test { toolchain, args } => test(&toolchain, &args),
        Cmd::Run { toolchain, args } => run(&toolchain, &args),
        Cmd::Fuzz {
            targets,
            seconds,
            release,
        } => fuzz(&targets, seconds, release),
        Cmd::BenchRecords => bench_records(),
        Cmd::Soak {
            toolchain,
            minutes,
            release,
        } => soak(&toolchain, minutes, release),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The repository root: the parent of this crate's directory.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// One step of a composite command (`test`, `run`), printed as `==> [i/n] name`.
struct Step<'a> {
    name: &'static str,
    run: Box<dyn FnOnce() -> Result<()> + 'a>,
}

fn run_steps(steps: Vec<Step<'_>>) -> Result<()> {
    let total = steps.len();
    for (i, step) in steps.into_iter().enumerate() {
        println!("==> [{}/{total}] {}", i + 1, step.name);
        (step.run)().with_context(|| format!("step `{}` failed", step.name))?;
    }
    Ok(())
}

fn test(options: &toolchain::Options, args: &[String]) -> Result<()> {
    let root = repo_root();
    // Lives until the end of this function, so the cluster is stopped and
    // removed after the tests, also when they fail.
    let cluster: RefCell<Option<postgres::Cluster>> = RefCell::new(None);
    let chromium: RefCell<Option<PathBuf>> = RefCell::new(None);
    run_steps(vec![
        Step {
            name: "build plugins",
            run: Box::new(|| plugins::build(&root, options)),
        },
        Step {
            name: "Python venv with fhirclient for the FHIR interop test",
            run: Box::new(|| fhir_venv::prepare(&root)),
        },
        Step {
            name: "PostgreSQL for the scale-out tests",
            run: Box::new(|| {
                *cluster.borrow_mut() = postgres::start()?;
                Ok(())
            }),
        },
        Step {
            name: "headless Chromium for the browser video tests",
            run: Box::new(|| {
                *chromium.borrow_mut() = Some(chromium::prepare()?);
                Ok(())
            }),
        },
        Step {
            name: "native tests of the guest libraries (HL7 v2 parser and its corpus, the plugin SDK)",
            run: Box::new(|| {
                let mut cmd = Command::new(cargo());
                // The guest workspace's own target directory keeps its
                // native build apart from the host's and the Wasm one.
                cmd.current_dir(root.join("plugins"))
                    .args([
                        "test",
                        "-p",
                        "hl7v2",
                        "-p",
                        "vtelehealth-plugin-sdk",
                        "--target-dir",
                    ])
                    .arg(root.join("target/guest-native"));
                run_command(cmd)
            }),
        },
        Step {
            name: "cargo test --workspace",
            run: Box::new(|| {
                let mut cmd = Command::new(cargo());
                cmd.current_dir(&root)
                    .args(["test", "--workspace"])
                    .args(args);
                if let Some(cluster) = cluster.borrow().as_ref() {
                    cmd.env(postgres::URL_VAR, cluster.url());
                }
                if let Some(path) = chromium.borrow().as_ref() {
                    cmd.env(chromium::PATH_VAR, path);
                }
                run_command(cmd)
            }),
        },
        Step {
            name: "fuzz smoke: every fuzz target for a few seconds",
            run: Box::new(|| fuzz(&[], FUZZ_SMOKE_SECONDS, false)),
        },
        Step {
            name: "the end-to-end suite again, on PostgreSQL",
            run: Box::new(|| {
                let Some(cluster) = cluster.borrow().as_ref().map(|c| c.url().to_owned()) else {
                    println!("skipped: no PostgreSQL cluster (VTH_SKIP_POSTGRES)");
                    return Ok(());
                };
                if !args.is_empty() {
                    println!(
                        "skipped: test arguments were given; run the full suite to include it"
                    );
                    return Ok(());
                }
                let mut cmd = Command::new(cargo());
                cmd.current_dir(&root)
                    // One test at a time: each test starts its own servers, and
                    // ten of them at once on two cores starve PostgreSQL's
                    // row-lock holders (see docs/operations.md).
                    .args([
                        "test",
                        "-p",
                        "vtelehealth-tests",
                        "--test",
                        "e2e",
                        "--",
                        "--test-threads=1",
                    ])
                    .env(postgres::URL_VAR, cluster)
                    .env("VTH_E2E_ON_POSTGRES", "1");
                if let Some(path) = chromium.borrow().as_ref() {
                    cmd.env(chromium::PATH_VAR, path);
                }
                run_command(cmd)
            }),
        },
    ])
}

/// Seconds each fuzz target runs in `cargo xtask test`: a smoke run that
/// replays the seeds and regression inputs and tries a few thousand mutants.
const FUZZ_SMOKE_SECONDS: u64 = 4;

fn fuzz(targets: &[String], seconds: u64, release: bool) -> Result<()> {
    let root = repo_root();
    // Built with the whole workspace selected, so features unify as in
    // `cargo test --workspace` and the dependencies are not built twice.
    let mut build = Command::new(cargo());
    build
        .current_dir(&root)
        .args(["build", "--workspace", "--bin", "vth-fuzz"]);
    if release {
        build.arg("--release");
    }
    run_command(build)?;
    let profile = if release { "release" } else { "debug" };
    let mut cmd = Command::new(root.join("target").join(profile).join("vth-fuzz"));
    cmd.current_dir(&root)
        .args(targets)
        .args(["--seconds", &seconds.to_string()]);
    run_command(cmd)
}

fn bench_records() -> Result<()> {
    let root = repo_root();
    let cluster: RefCell<Option<postgres::Cluster>> = RefCell::new(None);
    run_steps(vec![
        Step {
            name: "PostgreSQL for the benchmark",
            run: Box::new(|| {
                *cluster.borrow_mut() = postgres::start()?;
                Ok(())
            }),
        },
        Step {
            name: "cargo bench --bench records",
            run: Box::new(|| {
                let mut cmd = Command::new(cargo());
                cmd.current_dir(&root)
                    .args(["bench", "-p", RUNTIME_PACKAGE, "--bench", "records"]);
                // Without our cluster, an already set VTH_TEST_POSTGRES_URL is used.
                if let Some(cluster) = cluster.borrow().as_ref() {
                    cmd.env("VTH_BENCH_POSTGRES_URL", cluster.url());
                }
                run_command(cmd)
            }),
        },
    ])
}

fn soak(options: &toolchain::Options, minutes: f64, release: bool) -> Result<()> {
    let root = repo_root();
    let profile = if release { "release" } else { "debug" };
    let cluster: RefCell<Option<postgres::Cluster>> = RefCell::new(None);
    run_steps(vec![
        Step {
            name: "build plugins",
            run: Box::new(|| plugins::build(&root, options)),
        },
        Step {
            name: "build the runtime and the soak client",
            run: Box::new(|| {
                // The whole workspace, as `cargo test` builds it, so nothing is rebuilt twice.
                let mut cmd = Command::new(cargo());
                cmd.current_dir(&root).args(["build", "--workspace"]);
                if release {
                    cmd.arg("--release");
                }
                run_command(cmd)
            }),
        },
        Step {
            name: "PostgreSQL for the two nodes",
            run: Box::new(|| {
                *cluster.borrow_mut() = postgres::start()?;
                Ok(())
            }),
        },
        Step {
            name: "soak: two nodes, one killed halfway",
            run: Box::new(|| {
                let bin = root.join("target").join(profile);
                let mut cmd = Command::new(bin.join("vth-soak"));
                cmd.current_dir(&root)
                    .args(["--minutes", &minutes.to_string(), "--runtime"])
                    .arg(bin.join(RUNTIME_BIN));
                match cluster.borrow().as_ref() {
                    Some(cluster) => {
                        cmd.env(postgres::URL_VAR, cluster.url());
                    }
                    // `start` found VTH_TEST_POSTGRES_URL set (used as is) or was told to skip.
                    None if std::env::var_os(postgres::URL_VAR).is_some() => {}
                    None => bail!("the soak needs PostgreSQL; unset VTH_SKIP_POSTGRES"),
                }
                run_command(cmd)
            }),
        },
    ])
}

fn run(options: &toolchain::Options, args: &[String]) -> Result<()> {
    let root = repo_root();
    run_steps(vec![
        Step {
            name: "build plugins",
            run: Box::new(|| plugins::build(&root, options)),
        },
        Step {
            name: "run the server",
            run: Box::new(|| {
                std::fs::create_dir_all(root.join("data")).context("creating data/")?;
                let mut cmd = Command::new(cargo());
                cmd.current_dir(&root)
                    .args(["run", "-p", RUNTIME_PACKAGE, "--bin", RUNTIME_BIN, "--"])
                    .args(RUNTIME_SERVE_ARGS)
                    .args(args);
                run_command(cmd)
            }),
        },
    ])
}

/// The cargo that runs this xtask (set by cargo), else `cargo` from PATH.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Print the command as `$ ...`, run it, and fail when it fails.
pub(crate) fn run_command(mut cmd: Command) -> Result<()> {
    println!("$ {}", describe(&cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", cmd.get_program().display()))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(&cmd));
    }
    Ok(())
}

/// A command as a shell-like line, with the environment it sets.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.display(), v?.display())))
        .collect();
    parts.push(cmd.get_program().display().to_string());
    parts.extend(cmd.get_args().map(|a| a.display().to_string()));
    parts.join(" ")
}
