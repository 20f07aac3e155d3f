//! Signed bundles and submission checks on the real plugin components.

use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::engine::PluginEngine;
use vtelehealth_runtime::governance::bundle::Bundle;
use vtelehealth_runtime::governance::checks::{CHECKS, CheckReport, check_submission};
use vtelehealth_runtime::governance::signing::{SigningKey, VendorKey};
use vtelehealth_tests::{component, plugin_dir, test_plugin_dir};

fn engine() -> PluginEngine {
    PluginEngine::new(&Limits::default(), None).expect("engine")
}

/// The built plugin `id` from `dir` as an unsigned bundle.
fn bundle_of(dir: &std::path::Path, id: &str) -> Bundle {
    let (wasm, toml) = component(dir, id);
    Bundle::new(
        std::fs::read_to_string(toml).expect("manifest"),
        std::fs::read(wasm).expect("component"),
    )
}

fn assert_only_failure(report: &CheckReport, failed: &str) {
    assert!(!report.passed, "{report}");
    for check in &report.checks {
        assert_eq!(check.passed, check.name != failed, "{report}");
        assert!(!check.skipped, "{report}");
    }
}

#[test]
fn a_signed_reference_plugin_passes_every_check() {
    let key = SigningKey::generate().expect("key");
    let keys = [VendorKey::new("vtelehealth", key.public_key())];
    let mut bundle = bundle_of(&plugin_dir(), "visit-counter");
    key.sign(&mut bundle);
    // Through the file format, as the server receives it.
    let bundle = Bundle::from_json(&bundle.to_json()).expect("bundle file");
    let report = check_submission(&engine(), &bundle, &keys);
    assert!(report.passed, "{report}");
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, CHECKS);
    let signature = report.get("signature").expect("signature");
    assert!(signature.detail.contains(&key.key_id()), "{report}");
    let imports = &report.get("imports").expect("imports").detail;
    assert!(imports.contains("kv"), "{imports}");
    // Stored as JSON and shown to reviewers.
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["passed"], true);
    assert_eq!(json["checks"].as_array().map(Vec::len), Some(CHECKS.len()));
}

#[test]
fn tampering_and_missing_or_foreign_signatures_fail_only_the_signature() {
    let engine = engine();
    let ours = SigningKey::generate().expect("key");
    let theirs = SigningKey::generate().expect("key");
    let keys = [
        VendorKey::new("vtelehealth", ours.public_key()),
        VendorKey::new("globex", theirs.public_key()),
    ];
    let mut signed = bundle_of(&plugin_dir(), "hello");
    ours.sign(&mut signed);
    assert!(check_submission(&engine, &signed, &keys).passed);

    // A manifest edited after signing (here: one more capability requested).
    let mut tampered = signed.clone();
    tampered.manifest = tampered
        .manifest
        .replace(r#"["log", "identity"]"#, r#"["log", "identity", "kv"]"#);
    assert_ne!(tampered.manifest, signed.manifest);
    let report = check_submission(&engine, &tampered, &keys);
    assert_only_failure(&report, "signature");
    assert!(
        report
            .get("signature")
            .expect("sig")
            .detail
            .contains("manifest was changed")
    );

    // A component swapped after signing.
    let mut tampered = signed.clone();
    tampered.component = bundle_of(&plugin_dir(), "visit-counter").component;
    let report = check_submission(&engine, &tampered, &keys);
    assert!(
        report
            .get("signature")
            .expect("sig")
            .detail
            .contains("component was changed"),
        "{report}"
    );

    // Signed by another vendor's registered key.
    let mut foreign = bundle_of(&plugin_dir(), "hello");
    theirs.sign(&mut foreign);
    let report = check_submission(&engine, &foreign, &keys);
    assert_only_failure(&report, "signature");
    assert!(
        report
            .get("signature")
            .expect("sig")
            .detail
            .contains("globex"),
        "{report}"
    );

    // Unsigned.
    let report = check_submission(&engine, &bundle_of(&plugin_dir(), "hello"), &keys);
    assert_only_failure(&report, "signature");
    assert!(
        report
            .get("signature")
            .expect("sig")
            .detail
            .contains("not signed")
    );

    // Signed, but the vendor's key was revoked: the registry no longer passes it.
    let report = check_submission(&engine, &signed, &keys[1..]);
    assert_only_failure(&report, "signature");
}

#[test]
fn an_import_that_is_not_requested_is_refused() {
    let key = SigningKey::generate().expect("key");
    let keys = [VendorKey::new("vtelehealth-tests", key.public_key())];
    let mut bundle = bundle_of(&test_plugin_dir(), "hostile-nogrant");
    key.sign(&mut bundle);
    let report = check_submission(&engine(), &bundle, &keys);
    let imports = report.get("imports").expect("imports");
    assert!(!imports.passed, "{report}");
    assert!(imports.detail.contains("does not request `kv`"), "{report}");
    let exports = report.get("exports").expect("exports");
    assert!(
        exports.skipped && exports.detail.contains("imports"),
        "{report}"
    );
    assert!(report.get("signature").expect("sig").passed, "{report}");
}

#[test]
fn a_core_module_is_not_a_component() {
    let key = SigningKey::generate().expect("key");
    let keys = [VendorKey::new("vtelehealth", key.public_key())];
    let mut bundle = bundle_of(&plugin_dir(), "hello");
    bundle.component = b"\0asm\x01\0\0\0".to_vec();
    key.sign(&mut bundle);
    let report = check_submission(&engine(), &bundle, &keys);
    assert!(
        !report.get("component").expect("component").passed,
        "{report}"
    );
    for name in ["wit-version", "imports", "exports"] {
        assert!(report.get(name).expect(name).skipped, "{report}");
    }
    assert!(report.get("config-schema").expect("config").passed);
}
