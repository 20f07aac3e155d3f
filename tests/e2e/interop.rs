//! Interoperability with a standard FHIR client: the SMART on FHIR Python
//! client (`fhirclient`, strict R4 models) runs `tests/interop/fhirclient_check.py`
//! against a real server. `cargo xtask test` prepares its virtualenv.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;

use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::identity::{NewUser, Role};
use vtelehealth_tests::{TestServer, repo_root};

/// The virtualenv `cargo xtask test` makes (xtask/src/fhir_venv.rs).
fn venv_python() -> PathBuf {
    repo_root().join("target/fhir-venv/bin/python")
}

#[tokio::test]
async fn fhirclient_reads_and_writes_our_records() {
    let python = venv_python();
    if !python.is_file() {
        let message = format!(
            "{} is missing: run `cargo xtask test`, which prepares the fhirclient virtualenv",
            python.display()
        );
        // CI runs xtask, so there a missing venv is a failure, never a skip.
        assert!(std::env::var_os("CI").is_none(), "{message}");
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPING the fhirclient interop test: {message}"
        );
        return;
    }
    let no_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_plugins.path(), Limits::default()).await;
    let mut user = NewUser::new(
        "interop.doctor",
        "Interop",
        Role::Practitioner,
        "password-1",
    );
    user.hospital_id = Some("bv-a".into());
    let user = server
        .runtime
        .identity
        .create_user(user)
        .await
        .expect("user");
    let token = server.runtime.identity.token_for(&user).expect("token");

    let script = repo_root().join("tests/interop/fhirclient_check.py");
    let base = format!("{}/fhir/R4", server.base);
    // The script blocks; run it off the test's runtime so the server's
    // runtime (its own threads) is all it needs.
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .env("VTH_FHIR_BASE", base)
            .env("VTH_FHIR_TOKEN", token)
            .env("PYTHONIOENCODING", "utf-8")
            .output()
    })
    .await
    .expect("join")
    .expect("the venv's python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown with `--nocapture`: which checks ran.
    println!("{stdout}");
    assert!(
        output.status.success(),
        "fhirclient_check.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("all fhirclient interop checks passed"),
        "{stdout}"
    );
}
