//! Documentation stays true to the code.

use vtelehealth_tests::repo_root;

/// The plugin guide's example is the hello plugin, which CI compiles.
#[test]
fn plugin_guide_example_is_the_compiled_hello_plugin() {
    let root = repo_root();
    let guide =
        std::fs::read_to_string(root.join("docs/plugin-guide.md")).expect("docs/plugin-guide.md");
    let source = std::fs::read_to_string(root.join("plugins/hello/src/lib.rs"))
        .expect("plugins/hello/src/lib.rs");
    let start = guide
        .find("<!-- example:hello:start -->")
        .expect("guide marks the example start");
    let end = guide
        .find("<!-- example:hello:end -->")
        .expect("guide marks the example end");
    let block = &guide[start..end];
    let code_start = block.find("```rust\n").expect("rust fence") + "```rust\n".len();
    let code_end = block.rfind("```").expect("closing fence");
    assert_eq!(
        &block[code_start..code_end],
        source,
        "docs/plugin-guide.md example differs from plugins/hello/src/lib.rs"
    );
}

/// The table of free-text maxima in `docs/security.md` states the
/// constants of `text_limits`.
#[test]
fn the_documented_text_maxima_are_the_enforced_ones() {
    use vtelehealth_runtime::text_limits as t;
    let doc =
        std::fs::read_to_string(repo_root().join("docs/security.md")).expect("docs/security.md");
    // 16384 as `16,384`.
    let grouped = |n: usize| {
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    let rows = [
        ("approval note", t::NOTE, "characters"),
        ("rejection or revocation reason", t::REASON, "characters"),
        ("display name, a hospital's name", t::NAME, "characters"),
        ("title or specialty", t::TITLE, "characters"),
        ("`HumanName`'s parts", t::NAME, "characters"),
        ("narrative `text.div`", t::FHIR_NARRATIVE, "characters"),
        ("any other string", t::FHIR_STRING, "characters"),
        ("notification's title", t::NOTIFY_TITLE_BYTES, "bytes"),
        ("video room's purpose", t::ROOM_PURPOSE_BYTES, "bytes"),
        ("payment's purpose", t::PAYMENT_TEXT_BYTES, "bytes"),
    ];
    for (what, max, unit) in rows {
        let line = doc
            .lines()
            .find(|l| l.starts_with('|') && l.contains(what))
            .unwrap_or_else(|| panic!("docs/security.md has no row for {what}"));
        let stated = format!("| {} {unit} |", grouped(max));
        assert!(
            line.contains(&stated),
            "{what}: expected {stated} in {line}"
        );
    }
}
