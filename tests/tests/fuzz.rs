//! The fuzz harness (`defender_tests::fuzz`) for a short, fixed budget: a fixed seed for a fixed
//! number of inputs (the same inputs on every run), then a few seconds from a seed taken from the
//! clock and printed, so CI keeps trying new inputs. Any finding fails the test with its detail;
//! `cargo run --release -p defender-tests --bin fuzz -- --seed <seed>` reproduces it.

use std::time::Duration;

use defender_tests::fuzz::{self, FuzzOptions, Summary};

fn assert_nothing_found(summary: &Summary) {
    println!("{}", summary.line());
    let dir = defender_tests::repo_root().join("target/fuzz-findings");
    if !summary.findings.is_empty() {
        let written = fuzz::write_findings(&dir, summary).unwrap_or_default();
        let details: Vec<String> =
            summary.findings.iter().take(5).map(|f| format!("{}: {}", f.kind, f.detail)).collect();
        panic!("{} findings (inputs under {written:?}):\n{}", summary.findings.len(), details.join("\n"));
    }
    assert!(summary.pipeline_runs > 0 && summary.records > 0, "the harness ran nothing");
}

#[test]
fn fixed_seed_inputs_neither_panic_nor_lose_a_record() {
    let options = FuzzOptions {
        seed: 20_261_120,
        max_inputs: 1500,
        duration: Duration::from_secs(120),
        ..FuzzOptions::default()
    };
    assert_nothing_found(&fuzz::run(&options, |_| {}));
}

#[test]
fn clock_seeded_inputs_neither_panic_nor_lose_a_record() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    println!(
        "fuzz seed {seed} (repeat with: cargo run --release -p defender-tests --bin fuzz -- --seed {seed} --seconds 10)"
    );
    let options = FuzzOptions { seed, duration: Duration::from_secs(8), ..FuzzOptions::default() };
    assert_nothing_found(&fuzz::run(&options, |_| {}));
}
