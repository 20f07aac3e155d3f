//! Finding a Rust toolchain that can build for `wasm32-unknown-unknown`
//! (see /work/shared/TOOLCHAIN.md for the verified recipe).
//!
//! 1. rustup: the target is installed, or `rustup target add` installs it.
//! 2. Debian fallback: `rustc-web`/`cargo-web`/`rust-web-src` (Rust with its std source) and
//!    `lld-16`, building std for Wasm with `-Zbuild-std` (via `RUSTC_BOOTSTRAP=1`) and
//!    linking with `wasm-ld-16`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, anyhow, bail};

pub const TARGET: &str = "wasm32-unknown-unknown";

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_STD_SRC: &str = "/usr/lib/rustlib/src/rust/library";
const DEBIAN_LINKER: &str = "wasm-ld-16";
const DEBIAN_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "lld-16"];

/// Command-line options shared by the commands that build plugins.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Options {
    /// Skip the rustup route and build with Debian's Rust and -Zbuild-std.
    #[arg(long)]
    pub build_std: bool,
}

/// How the guest workspace gets built.
#[derive(Debug)]
pub enum Route {
    /// The rustup toolchain with its `wasm32-unknown-unknown` target.
    Rustup,
    /// Debian's Rust building std from source.
    DebianBuildStd,
}

impl Route {
    /// A `cargo build` command for this route, without the crate selection.
    pub fn cargo_build(&self) -> Command {
        match self {
            Route::Rustup => {
                let mut cmd = Command::new(crate::cargo());
                cmd.args(["build", "--release", "--target", TARGET]);
                cmd
            }
            Route::DebianBuildStd => {
                let mut cmd = Command::new(DEBIAN_CARGO);
                // Keep these constant between builds: changing the linker rebuilds std.
                cmd.env("RUSTC", DEBIAN_RUSTC)
                    .env("RUSTC_BOOTSTRAP", "1")
                    .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", DEBIAN_LINKER)
                    .args(["build", "-Zbuild-std=std,panic_abort", "--release"])
                    .args(["--target", TARGET]);
                cmd
            }
        }
    }

    /// The target directory for this route, apart from the host's so that two compilers
    /// never share one.
    pub fn target_dir(&self, root: &Path) -> PathBuf {
        match self {
            Route::Rustup => root.join("target/wasm"),
            Route::DebianBuildStd => root.join("target/wasm-build-std"),
        }
    }
}

/// Find (or install) a toolchain for wasm32, printing which route is used and why.
pub fn ensure(options: &Options) -> Result<Route> {
    if options.build_std {
        println!("      --build-std given: skipping rustup");
        return debian().map_err(|e| anyhow!("the Debian build-std route failed: {e:#}"));
    }
    let rustup_problem = match rustup() {
        Ok(how) => {
            println!("      route: rustup, target {TARGET} {how}");
            return Ok(Route::Rustup);
        }
        Err(problem) => problem,
    };
    println!("      rustup route unavailable: {rustup_problem:#}");
    println!("      trying the Debian fallback (rustc-web + -Zbuild-std)");
    debian().map_err(|e| {
        anyhow!(
            "no way to build for {TARGET}:\n  rustup: {rustup_problem:#}\n  Debian fallback: {e:#}"
        )
    })
}

/// The rustup route: `Ok` with how the target came to be there.
fn rustup() -> Result<&'static str> {
    let output = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| anyhow!("`rustup` could not be run ({e}); is rustup installed?"))?;
    if !output.status.success() {
        bail!(
            "`rustup target list --installed` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    if String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok("(already installed)");
    }
    println!("      $ rustup target add {TARGET}");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .map_err(|e| anyhow!("`rustup target add {TARGET}` could not be run: {e}"))?;
    if !status.success() {
        bail!(
            "the target {TARGET} is not installed and `rustup target add {TARGET}` failed ({status})"
        );
    }
    Ok("(installed now with rustup target add)")
}

/// The Debian route: install the packages when a piece is missing.
fn debian() -> Result<Route> {
    let missing = debian_missing();
    if !missing.is_empty() {
        println!("      missing: {}", missing.join(", "));
        let mut update = Command::new("apt-get");
        update.arg("update");
        crate::run_command(update)
            .map_err(|e| anyhow!("apt-get update failed (are you root?): {e:#}"))?;
        let mut install = Command::new("apt-get");
        install.args(["install", "-y"]).args(DEBIAN_PACKAGES);
        crate::run_command(install).map_err(|e| {
            anyhow!(
                "apt-get install {} failed (are you root, on Debian bookworm with bookworm-security?): {e:#}",
                DEBIAN_PACKAGES.join(" ")
            )
        })?;
        let still = debian_missing();
        if !still.is_empty() {
            bail!("still missing after apt-get install: {}", still.join(", "));
        }
    }
    println!(
        "      route: Debian {DEBIAN_RUSTC} with -Zbuild-std (RUSTC_BOOTSTRAP=1), linker {DEBIAN_LINKER}"
    );
    Ok(Route::DebianBuildStd)
}

fn debian_missing() -> Vec<String> {
    let mut missing = Vec::new();
    for (path, package) in [
        (DEBIAN_RUSTC, "rustc-web"),
        (DEBIAN_CARGO, "cargo-web"),
        (DEBIAN_STD_SRC, "rust-web-src"),
    ] {
        if !Path::new(path).exists() {
            missing.push(format!("{path} (package {package})"));
        }
    }
    if !on_path(DEBIAN_LINKER) {
        missing.push(format!("{DEBIAN_LINKER} (package lld-16)"));
    }
    missing
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
