//! Headless Chromium for the browser video tests: Debian's `chromium`
//! package, installed with apt-get when missing (as root), its path passed to
//! the tests in `VTH_CHROMIUM`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run_command;

/// The variable the tests read (`tests/browser.rs`).
pub const PATH_VAR: &str = "VTH_CHROMIUM";
const PACKAGE: &str = "chromium";
const CANDIDATES: &[&str] = &["/usr/bin/chromium", "/usr/bin/chromium-browser"];

/// The Chromium binary, installing Debian's package when none is found.
pub fn prepare() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(PATH_VAR).map(PathBuf::from) {
        if path.is_file() {
            println!("    {PATH_VAR}={} (already set)", path.display());
            return Ok(path);
        }
        bail!("{PATH_VAR}={} is not a file", path.display());
    }
    if let Some(path) = find() {
        println!("    found {}", path.display());
        return Ok(path);
    }
    if !is_root()? {
        bail!(
            "Chromium is needed for the browser video tests and none was found at {}: install \
             Debian's `{PACKAGE}` package (as root: `apt-get install -y {PACKAGE}`) or set {PATH_VAR}",
            CANDIDATES.join(", ")
        );
    }
    println!("    Chromium not found; installing Debian's `{PACKAGE}` (we are root)");
    for args in [
        &["update"][..],
        &["install", "-y", "--no-install-recommends", PACKAGE],
    ] {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        run_command(cmd).with_context(|| format!("installing `{PACKAGE}` failed"))?;
    }
    find().with_context(|| format!("`{PACKAGE}` was installed but no Chromium binary was found"))
}

fn find() -> Option<PathBuf> {
    CANDIDATES
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .map(Path::to_path_buf)
}

fn is_root() -> Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("running `id -u`")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}
