//! The Python virtualenv of the FHIR interop test (`tests/e2e/interop.rs`):
//! SMART on FHIR's `fhirclient` at the exact versions of
//! `tests/interop/requirements.txt`, in `target/fhir-venv`.
//!
//! Made with `python3 -m venv` and pip from PyPI. A venv whose recorded
//! requirements equal the file's is reused as it is; otherwise it is made
//! anew. `VTH_SKIP_INTEROP=1` skips this step (the test then skips too,
//! outside CI).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::run_command;

/// Where the venv lives, relative to the repository root.
const VENV: &str = "target/fhir-venv";
const REQUIREMENTS: &str = "tests/interop/requirements.txt";
/// A copy of the requirements the venv was made from.
const STAMP: &str = "vth-requirements.txt";
const SKIP_VAR: &str = "VTH_SKIP_INTEROP";

/// Make sure the venv exists with the pinned requirements.
pub fn prepare(root: &Path) -> Result<()> {
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        println!("    {SKIP_VAR}=1: skipping; the fhirclient interop test will be skipped too");
        return Ok(());
    }
    let venv = root.join(VENV);
    let requirements_file = root.join(REQUIREMENTS);
    let requirements = std::fs::read_to_string(&requirements_file)
        .with_context(|| format!("reading {}", requirements_file.display()))?;
    let stamp = venv.join(STAMP);
    if python(&venv).is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == requirements) {
        println!("    {VENV} is up to date ({})", pins(&requirements));
        return Ok(());
    }
    let started = Instant::now();
    if venv.exists() {
        println!("    {VENV} is out of date: making it anew");
        std::fs::remove_dir_all(&venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    let mut make = Command::new("python3");
    make.args(["-m", "venv"]).arg(&venv);
    run_command(make).context(
        "could not make the fhirclient virtualenv: the interop test needs python3 (3.9 or \
         newer) with its `venv` module (on Debian: `apt-get install python3-venv`); set \
         VTH_SKIP_INTEROP=1 to skip that test outside CI",
    )?;
    let mut pip = Command::new(python(&venv));
    pip.args(["-m", "pip", "install", "--disable-pip-version-check"])
        .args(["--no-input", "--progress-bar", "off", "-r"])
        .arg(&requirements_file);
    if let Err(error) = run_command(pip) {
        // A half-made venv must not pass for a ready one next time.
        let _ = std::fs::remove_dir_all(&venv);
        bail!(
            "{error:#}\npip could not install {} from PyPI into {VENV}: is PyPI reachable \
             (PIP_INDEX_URL names a mirror)? Set VTH_SKIP_INTEROP=1 to skip the interop test \
             outside CI",
            pins(&requirements)
        );
    }
    std::fs::write(&stamp, &requirements)
        .with_context(|| format!("writing {}", stamp.display()))?;
    println!(
        "    {VENV} ready in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        pins(&requirements)
    );
    Ok(())
}

fn python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// The `fhirclient==…` line, for messages.
fn pins(requirements: &str) -> String {
    requirements
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("fhirclient"))
        .unwrap_or("fhirclient")
        .to_owned()
}
