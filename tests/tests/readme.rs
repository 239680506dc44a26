//! The README's quick start is the code that `scripts/check-quick-start.sh` builds as an outside
//! crate: the Rust code blocks announced by `<!-- tests/outside-crate/src/main.rs -->`, joined by
//! one blank line, are that file, byte for byte.

use soma_system_tests::repo_root;

const MARKER: &str = "<!-- tests/outside-crate/src/main.rs -->";

/// The code blocks of `markdown` that follow a line equal to [`MARKER`], without their fences.
fn marked_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if line.trim() != MARKER {
            continue;
        }
        assert_eq!(
            lines.next(),
            Some("```rust"),
            "{MARKER} must be followed by a ```rust block"
        );
        let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        blocks.push(block.join("\n"));
    }
    blocks
}

#[test]
fn readme_quick_start_is_the_outside_crate() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let main = std::fs::read_to_string(root.join("tests/outside-crate/src/main.rs")).unwrap();
    let blocks = marked_blocks(&readme);
    assert!(blocks.len() >= 2, "README.md lost its {MARKER} blocks");
    let expected = blocks.join("\n\n") + "\n";
    assert!(
        main == expected,
        "tests/outside-crate/src/main.rs and the README's quick start differ: copy one onto \
         the other.\n--- README ---\n{expected}\n--- main.rs ---\n{main}"
    );
}

#[test]
fn outside_crate_depends_only_on_what_the_readme_says() {
    let manifest =
        std::fs::read_to_string(repo_root().join("tests/outside-crate/Cargo.toml")).unwrap();
    let section = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .unwrap();
    let names: Vec<&str> = section
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split('=').next().map(str::trim))
        .collect();
    assert_eq!(names, ["axum", "soma-observability", "tokio"], "{manifest}");
    assert!(
        manifest.contains("\n[workspace]"),
        "the outside crate needs its own [workspace] table"
    );
}
