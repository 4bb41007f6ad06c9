//! A fuzz harness on stable Rust: mutated real-shaped inputs ([`mutate`]) through the decoder
//! alone ([`decode`]) and, batch by batch, through the whole in-process pipeline
//! ([`pipeline`]), asserting no panic and exact accounting.
//!
//! Run by `tests/tests/fuzz.rs` (a short, fixed budget in CI) and by the `fuzz` binary
//! (`cargo run --release -p defender-tests --bin fuzz -- --seconds 600`); see the README's
//! FUZZING section. A failing input is kept in a [`Finding`] (and written to a file by the
//! binary); `fuzz --replay <file or dir>` runs it again.

pub mod decode;
pub mod mutate;
pub mod pipeline;

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use defender_core::{Accounting, Catalog};

/// How long and from where to fuzz.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    pub seed: u64,
    /// Stop after this long...
    pub duration: Duration,
    /// ...or after this many inputs, whichever comes first.
    pub max_inputs: u64,
    /// Inputs per pipeline run (every input goes through the decoder check first).
    pub pipeline_batch: usize,
    /// Stop at the first finding.
    pub stop_at_first: bool,
}

impl Default for FuzzOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            duration: Duration::from_secs(10),
            max_inputs: u64::MAX,
            pipeline_batch: 64,
            stop_at_first: false,
        }
    }
}

/// What went wrong, with the inputs that show it.
#[derive(Debug, Clone)]
pub struct Finding {
    /// `decoder panic`, `decoder`, `pipeline panic`, `pipeline`.
    pub kind: &'static str,
    pub detail: String,
    /// One input (decoder findings) or the messages of a pipeline run, in order.
    pub inputs: Vec<Vec<u8>>,
}

/// Counters of a fuzz run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub seed: u64,
    pub inputs: u64,
    pub input_bytes: u64,
    /// Records counted by the decoder, of which decoded and dead-lettered.
    pub records: u64,
    pub decoded: u64,
    pub dead_lettered: u64,
    pub pipeline_runs: u64,
    pub pipeline_inputs: u64,
    pub findings: Vec<Finding>,
    pub elapsed: Duration,
}

impl Summary {
    pub fn line(&self) -> String {
        format!(
            "fuzz summary: seed={} seconds={:.0} inputs={} input_bytes={} records={} decoded={} dead_lettered={} \
             pipeline_runs={} pipeline_inputs={} findings={}",
            self.seed,
            self.elapsed.as_secs_f64(),
            self.inputs,
            self.input_bytes,
            self.records,
            self.decoded,
            self.dead_lettered,
            self.pipeline_runs,
            self.pipeline_inputs,
            self.findings.len()
        )
    }
}

/// The decoder and pipeline checks, fed input by input.
pub struct Harness {
    catalog: Arc<Catalog>,
    decoder: decode::DecodeCheck,
    policies: [Arc<defender_pipeline::Policy>; 2],
    offset: i64,
    batch: Vec<Vec<u8>>,
    batch_accounting: Accounting,
    batch_size: usize,
    pub summary: Summary,
}

impl Harness {
    pub fn new(seed: u64, batch_size: usize) -> Self {
        let catalog = Arc::new(Catalog::embedded());
        let policies = pipeline::policies(&catalog).expect("the fuzz policy is valid");
        Self {
            decoder: decode::DecodeCheck::new(catalog.clone()),
            catalog,
            policies,
            offset: 0,
            batch: Vec::new(),
            batch_accounting: Accounting::default(),
            batch_size,
            summary: Summary { seed, ..Summary::default() },
        }
    }

    /// Checks one input with the decoder; every `batch_size` inputs, runs the pipeline over them.
    pub fn feed(&mut self, input: Vec<u8>) {
        self.summary.inputs += 1;
        self.summary.input_bytes += input.len() as u64;
        let offset = self.offset;
        self.offset += 1;
        match catch_unwind(AssertUnwindSafe(|| self.decoder.check(&input, offset))) {
            Ok(Ok(accounting)) => {
                let totals = accounting.totals();
                self.summary.records += totals.records_in;
                self.summary.decoded += totals.decoded;
                self.summary.dead_lettered += totals.dead_lettered_total();
                if self.batch_size > 0 {
                    self.batch_accounting.merge(&accounting);
                    self.batch.push(input);
                    if self.batch.len() >= self.batch_size {
                        self.run_pipeline();
                    }
                }
            }
            Ok(Err(detail)) => self.found("decoder", detail, vec![input]),
            Err(panic) => {
                self.decoder.reset();
                self.found("decoder panic", panic_text(&panic), vec![input]);
            }
        }
    }

    /// Runs the pipeline over the inputs gathered so far (if any).
    pub fn run_pipeline(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let inputs = std::mem::take(&mut self.batch);
        let expected = std::mem::take(&mut self.batch_accounting);
        let policy = &self.policies[(self.summary.pipeline_runs % 2) as usize];
        self.summary.pipeline_runs += 1;
        self.summary.pipeline_inputs += inputs.len() as u64;
        match catch_unwind(AssertUnwindSafe(|| pipeline::check(&self.catalog, policy, &inputs, &expected))) {
            Ok(Ok(())) => {}
            Ok(Err(detail)) => self.found("pipeline", detail, inputs),
            Err(panic) => self.found("pipeline panic", panic_text(&panic), inputs),
        }
    }

    fn found(&mut self, kind: &'static str, detail: String, inputs: Vec<Vec<u8>>) {
        self.summary.findings.push(Finding { kind, detail, inputs });
    }
}

/// Fuzzes for `options.duration` (or `max_inputs`); `progress` is called about every 10 s.
pub fn run(options: &FuzzOptions, mut progress: impl FnMut(&Summary)) -> Summary {
    let started = Instant::now();
    let catalog = Catalog::embedded();
    let mut mutator = mutate::Mutator::new(&catalog, options.seed);
    let mut harness = Harness::new(options.seed, options.pipeline_batch);
    let mut last_report = started;
    while started.elapsed() < options.duration && harness.summary.inputs < options.max_inputs {
        harness.feed(mutator.next_input());
        if options.stop_at_first && !harness.summary.findings.is_empty() {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            harness.summary.elapsed = started.elapsed();
            progress(&harness.summary);
        }
    }
    harness.run_pipeline();
    harness.summary.elapsed = started.elapsed();
    harness.summary
}

/// Writes each finding's inputs under `dir` (`finding-<n>/input-<i>.json` and `detail.txt`).
pub fn write_findings(dir: &Path, summary: &Summary) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    for (n, f) in summary.findings.iter().enumerate() {
        let d = dir.join(format!("finding-{}-{n:03}", summary.seed));
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join("detail.txt"), format!("{}: {}\n", f.kind, f.detail))?;
        for (i, input) in f.inputs.iter().enumerate() {
            std::fs::write(d.join(format!("input-{i:04}.json")), input)?;
        }
        written.push(d);
    }
    Ok(written)
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
