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
