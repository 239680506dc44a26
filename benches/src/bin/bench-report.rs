//! Prints the latest criterion medians as Markdown tables, with the overhead over bare axum.
//!
//! ```text
//! cargo run -p soma-benches --bin bench-report [-- <criterion dir>]
//! ```
//!
//! The default directory is the workspace's `target/criterion` (or `$CARGO_TARGET_DIR/criterion`).

use std::path::{Path, PathBuf};

const STACKS: [&str; 8] = [
    "bare",
    "noop_layer",
    "metrics",
    "traces_unsampled",
    "traces_sampled",
    "axum_prometheus",
    "otel_tower_metrics",
    "otel_tower_unsampled",
];

/// The median of one benchmark, in nanoseconds.
fn median(dir: &Path, id: &str) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(id).join("new/estimates.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn main() {
    let dir = std::env::args().nth(1).map_or_else(
        || {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(
                    || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
                    PathBuf::from,
                )
                .join("criterion")
        },
        PathBuf::from,
    );
    println!("In process, median ns/request (overhead over bare):\n");
    println!("| stack | `/hello` | `/users/{{id}}` (JSON) |");
    println!("|---|---|---|");
    for stack in STACKS {
        let mut row = format!("| {stack} |");
        for route in ["hello", "users"] {
            let cell = match (
                median(&dir, &format!("{route}/{stack}")),
                median(&dir, &format!("{route}/bare")),
            ) {
                (Some(ns), Some(bare)) if stack != "bare" => {
                    format!(" {ns:.0} (+{:.0}) |", ns - bare)
                }
                (Some(ns), _) => format!(" {ns:.0} |"),
                (None, _) => " - |".to_owned(),
            };
            row.push_str(&cell);
        }
        println!("{row}");
    }
    println!("\n`/metrics` rendering, median:\n");
    println!("| registry | time |");
    println!("|---|---|");
    for (label, id) in [
        ("reference-sized service", "render/service".to_owned()),
        (
            "no instrument: `target_info` and process metrics (part of every render)",
            "render/empty".to_owned(),
        ),
        ("100 series", "render/series/100".to_owned()),
        ("1 000 series", "render/series/1000".to_owned()),
        ("10 000 series", "render/series/10000".to_owned()),
    ] {
        let cell = median(&dir, &id).map_or_else(
            || "-".to_owned(),
            |ns| {
                if ns < 1e6 {
                    format!("{:.1} µs", ns / 1e3)
                } else {
                    format!("{:.2} ms", ns / 1e6)
                }
            },
        );
        println!("| {label} | {cell} |");
    }
    println!(
        "\nSpan export without the network (`export` bench, batches of 1 024 spans), median:\n"
    );
    println!("| step | per span | spans/s on one core |");
    println!("|---|---|---|");
    for step in ["clone_batch", "convert", "encode", "http_path", "grpc_path"] {
        if let Some(ns) = median(&dir, &format!("export/{step}")) {
            let per_span = ns / 1024.0;
            println!("| {step} | {per_span:.0} ns | {:.0} |", 1e9 / per_span);
        }
    }
}
