//! The fuzz harness as a program (see `defender_tests::fuzz` and the README's FUZZING section).
//!
//! ```text
//! fuzz [--seconds N] [--seed S] [--inputs N] [--pipeline-batch N] [--out DIR]
//! fuzz --replay FILE|DIR     (a finding's input, or a finding's directory of pipeline inputs)
//! ```
//!
//! Prints progress every 10 s, each finding (its inputs written under `--out`, default
//! `target/fuzz-findings`), and a final `fuzz summary:` line. Exits 1 when anything was found.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use defender_tests::fuzz::{self, FuzzOptions, Harness};

fn main() -> ExitCode {
    let mut options = FuzzOptions { seed: 0, duration: Duration::from_secs(60), ..FuzzOptions::default() };
    let mut seed = None;
    let mut out = PathBuf::from("target/fuzz-findings");
    let mut replay = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        let number = |v: String| v.parse::<u64>().unwrap_or_else(|_| usage(&format!("not a number: {v}")));
        match arg.as_str() {
            "--seconds" => options.duration = Duration::from_secs(number(value())),
            "--seed" => seed = Some(number(value())),
            "--inputs" => options.max_inputs = number(value()),
            "--pipeline-batch" => options.pipeline_batch = number(value()) as usize,
            "--out" => out = PathBuf::from(value()),
            "--replay" => replay = Some(PathBuf::from(value())),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let summary = match replay {
        Some(path) => replay_inputs(&path, options.pipeline_batch),
        None => {
            // Without --seed, a seed from the clock, printed so the run can be repeated.
            options.seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
            });
            println!(
                "fuzz: seed={} seconds={} pipeline_batch={}",
                options.seed,
                options.duration.as_secs(),
                options.pipeline_batch
            );
            fuzz::run(&options, |s| println!("{}", s.line()))
        }
    };
    for f in &summary.findings {
        println!("FINDING {}: {}", f.kind, f.detail);
    }
    if !summary.findings.is_empty() {
        match fuzz::write_findings(&out, &summary) {
            Ok(dirs) => dirs.iter().for_each(|d| println!("inputs written to {}", d.display())),
            Err(e) => eprintln!("fuzz: cannot write the findings under {}: {e}", out.display()),
        }
    }
    println!("{}", summary.line());
    if summary.findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Runs a finding's inputs again: one file, or every `input-*.json` of a directory, in order.
fn replay_inputs(path: &std::path::Path, batch: usize) -> fuzz::Summary {
    let mut files = if path.is_dir() {
        std::fs::read_dir(path)
            .unwrap_or_else(|e| usage(&format!("cannot read {}: {e}", path.display())))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("input-")))
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    let mut harness = Harness::new(0, batch);
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_else(|e| usage(&format!("cannot read {}: {e}", f.display())));
        harness.feed(bytes);
    }
    harness.run_pipeline();
    harness.summary
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("fuzz: {problem}");
    }
    eprintln!(
        "usage: fuzz [--seconds N] [--seed S] [--inputs N] [--pipeline-batch N] [--out DIR]\n       fuzz --replay FILE|DIR"
    );
    std::process::exit(2)
}
