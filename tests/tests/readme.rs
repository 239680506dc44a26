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

/// The crate names of the README's `cargo add` lines: `(name, dev)`.
fn cargo_add_lines(readme: &str) -> Vec<(String, bool)> {
    readme
        .lines()
        .filter_map(|line| line.strip_prefix("cargo add "))
        .map(|args| {
            let words: Vec<&str> = args.split_whitespace().take_while(|w| *w != "#").collect();
            let dev = words.contains(&"--dev");
            let name = words
                .iter()
                .find(|w| !w.starts_with("--") && !w.contains('/'))
                .map(|w| w.split('@').next().unwrap_or(w).to_owned())
                .unwrap();
            (name, dev)
        })
        .collect()
}

/// The crate names of one `[section]` of a manifest.
fn section_names<'a>(manifest: &'a str, section: &str) -> Vec<&'a str> {
    let Some(body) = manifest
        .split(&format!("[{section}]"))
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
    else {
        return Vec::new();
    };
    let mut names: Vec<&str> = body
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split('=').next().map(str::trim))
        .collect();
    names.sort_unstable();
    names
}

#[test]
fn outside_crate_depends_only_on_what_the_readme_says() {
    let root = repo_root();
    let manifest = std::fs::read_to_string(root.join("tests/outside-crate/Cargo.toml")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let added = cargo_add_lines(&readme);
    for (dev, section) in [(false, "dependencies"), (true, "dev-dependencies")] {
        let mut expected: Vec<&str> = added
            .iter()
            .filter(|(_, d)| *d == dev)
            .map(|(name, _)| name.as_str())
            .collect();
        expected.sort_unstable();
        assert_eq!(
            section_names(&manifest, section),
            expected,
            "[{section}] of tests/outside-crate/Cargo.toml and the README's cargo add lines differ"
        );
    }
    assert!(
        manifest.contains("\n[workspace]"),
        "the outside crate needs its own [workspace] table"
    );
}
