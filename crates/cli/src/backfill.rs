//! `defender-ingest backfill`: history from Event Hubs Capture files or the storage-account
//! export through the same pipeline as `run`, resumable (see `defender_sources::backfill`).

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::{Context, bail};
use clap::Args;
use defender_core::Catalog;
use defender_pipeline::Progress;
use defender_sinks::{ArchiveSink, store};
use defender_sources::backfill::{self, BackfillSource, Job, Selection, handoff};
use tokio::sync::watch;

use crate::{config, report, run, source};

/// `--capture`/`--storage` and their window: the history `backfill` reads and `estimate` prices.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Event Hubs Capture files (`.avro`): a directory, az://container/prefix or abfss:// URL
    /// (credentials as for the archive).
    /// Without --capture and --storage: the config's [source.capture] or [source.storage].
    #[arg(long, conflicts_with = "storage")]
    pub capture: Option<String>,
    /// The Streaming API's storage-account export (`insights-logs-advancedhunting-<table>/
    /// .../PT1H.json`): a directory or URL holding the containers (or one container).
    #[arg(long)]
    pub storage: Option<String>,
    /// Only files whose path time is at or after this (UTC: 2024-05-01 or 2024-05-01T10:00:00Z;
    /// storage: hours ending after it).
    #[arg(long)]
    pub from: Option<String>,
    /// Only files whose path time is before this (UTC).
    #[arg(long)]
    pub to: Option<String>,
    /// Storage export: only these tables (their containers), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
}

impl HistoryArgs {
    /// Whether a history location was given on the command line.
    pub fn located(&self) -> bool {
        self.capture.is_some() || self.storage.is_some()
    }

    /// Makes the flags `config`'s history source: --capture or --storage replaces the config's
    /// source (with the window of the flags only); without them, --from, --to and --tables
    /// override those of the config's [source.capture] or [source.storage]. Checked as the
    /// config is, errors naming the flags.
    pub fn apply(&self, config: &mut defender_config::Config) -> anyhow::Result<()> {
        use defender_config::history::{CaptureSection, StorageSection};
        let window_given = self.from.is_some() || self.to.is_some() || !self.tables.is_empty();
        if self.located() {
            config.source = Default::default();
        }
        let tables = (!self.tables.is_empty()).then(|| self.tables.clone());
        let source = &mut config.source;
        match (&self.capture, &self.storage) {
            (Some(location), _) => {
                source.capture =
                    Some(CaptureSection { location: location.clone(), from: None, to: None, parallel: None })
            }
            (None, Some(location)) => {
                let location = location.clone();
                source.storage = Some(StorageSection {
                    location,
                    from: None,
                    to: None,
                    tables: vec![],
                    parallel: None,
                    poll_interval_seconds: None,
                })
            }
            (None, None) if window_given && source.capture.is_none() && source.storage.is_none() => {
                bail!(
                    "--from, --to and --tables go with --capture or --storage (or a config's [source.capture] or [source.storage])"
                )
            }
            (None, None) => {}
        }
        if let Some(c) = &mut source.capture {
            if tables.is_some() {
                bail!("--tables picks storage-export containers: it goes with --storage");
            }
            c.from = self.from.clone().or(c.from.take());
            c.to = self.to.clone().or(c.to.take());
        }
        if let Some(s) = &mut source.storage {
            s.from = self.from.clone().or(s.from.take());
            s.to = self.to.clone().or(s.to.take());
            if let Some(t) = tables {
                s.tables = t;
            }
        }
        // The window's checks, with the flags' names.
        source.history().map_err(|e| {
            anyhow::anyhow!("{}", e.to_string().replace("source.capture.", "--").replace("source.storage.", "--"))
        })?;
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    history: HistoryArgs,
    /// Files read at once (default: the decode workers).
    #[arg(long)]
    parallel: Option<usize>,
    /// Seconds between two saves of the job's progress while reading.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    save_interval: f64,
    /// Off a terminal: seconds between two JSON progress lines on stderr.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    progress_interval: f64,
    /// After a complete Capture backfill, make the live source of this config file start
    /// exactly after the last archived event of each partition (see the README: Backfill).
    #[arg(long, value_name = "LIVE_CONFIG", requires = "capture")]
    then_checkpoint: Option<PathBuf>,
    /// The config file (TOML): archive, selection, filters, Sentinel.
    #[arg(long, short)]
    config: Option<PathBuf>,
    // --archive (which also keeps the job's progress), --summary and --json, as for `run`.
    #[command(flatten)]
    out: run::Outputs,
}

/// The command line as typed, quoted for a POSIX shell: what to run again to resume.
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b)) {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Shows how far the backfill is: an indicatif bar on a terminal, else a JSON line on stderr
/// every `every`.
struct Reporter {
    job: Job,
    files: usize,
    bytes: u64,
    bar: Option<indicatif::ProgressBar>,
    every: std::time::Duration,
    last: Option<std::time::Instant>,
}

impl Reporter {
    fn new(job: Job, files: usize, bytes: u64, terminal: bool, every: std::time::Duration) -> Self {
        let bar = terminal.then(|| {
            let bar = indicatif::ProgressBar::new(bytes);
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} ETA {eta}",
            )
            .expect("a valid template");
            bar.set_style(style);
            bar
        });
        Self { job, files, bytes, bar, every, last: None }
    }

    fn update(&mut self, p: &Progress) {
        let read = self.job.read_progress();
        let secs = p.elapsed.as_secs_f64().max(0.001);
        let rate = p.records_in as f64 / secs;
        if let Some(bar) = &self.bar {
            bar.set_position(read.bytes);
            bar.set_message(format!("{}/{} files, {} records ({rate:.0}/s)", read.files, self.files, p.records_in));
            return;
        }
        if self.last.is_some_and(|l| l.elapsed() < self.every) {
            return;
        }
        self.last = Some(std::time::Instant::now());
        let bytes_rate = read.bytes.saturating_sub(read.skipped) as f64 / secs;
        let left = self.bytes.saturating_sub(read.bytes) as f64;
        let eta = (bytes_rate > 0.0).then(|| (left / bytes_rate).round());
        let line = serde_json::json!({
            "progress": "backfill", "files": self.files, "files_done": read.files,
            "bytes": self.bytes, "bytes_done": read.bytes, "records_in": p.records_in,
            "rows_archived": p.rows_archived, "records_per_second": rate.round(),
            "eta_seconds": eta, "elapsed_seconds": p.elapsed.as_secs_f64(),
        });
        eprintln!("{line}");
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// The live source `--then-checkpoint` names: its `[source.eventhubs]` (checkpoints through the
/// store and credentials the daemon uses) or `[source.kafka]` (refused once the backfill is done,
/// after the last events are printed: see [`handoff`]).
fn live_source(path: &std::path::Path) -> anyhow::Result<handoff::LiveSource> {
    let live = config::load(path)?;
    if let Some(e) = &live.source.eventhubs {
        let c = source::eventhubs_config(&live, e, source::Mode::Run)
            .with_context(|| format!("--then-checkpoint {}", path.display()))?;
        return Ok(handoff::LiveSource::EventHubs(Box::new(c)));
    }
    match &live.source.kafka {
        Some(k) => Ok(handoff::LiveSource::Kafka { group: k.group.clone() }),
        None => {
            bail!("--then-checkpoint {}: expected a live source, [source.eventhubs] or [source.kafka]", path.display())
        }
    }
}

/// Prints, per partition, the last archived event, then hands it to the live source's
/// checkpoint writer and prints what it did.
async fn hand_off(job: &Job, inputs: &[backfill::Input], live: &handoff::LiveSource) -> anyhow::Result<()> {
    let positions = handoff::captured_positions(job, inputs)?;
    for p in &positions {
        let line = serde_json::json!({
            "handoff": "capture", "namespace": p.namespace, "event_hub": p.event_hub, "partition_id": p.partition_id,
            "sequence_number": p.sequence_number, "offset": p.offset,
        });
        eprintln!("{line}");
    }
    for (p, outcome) in handoff::write_checkpoints(live, &positions).await? {
        let mut line = serde_json::json!({
            "checkpoint": "eventhubs", "partition_id": p.partition_id,
            "sequence_number": p.sequence_number, "offset": p.offset,
        });
        line["result"] = match outcome {
            handoff::Outcome::Written => "written".into(),
            handoff::Outcome::Ahead { sequence_number } => {
                line["existing_sequence_number"] = sequence_number.into();
                "kept: the existing checkpoint is already past the captured event".into()
            }
        };
        eprintln!("{line}");
    }
    Ok(())
}

pub fn backfill(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => config::load(path)?,
        None => defender_config::Config::default(),
    };
    // The flags, or else the config's [source.capture] / [source.storage] (flags win).
    args.history.apply(&mut config)?;
    let configured = config.source.history()?.context(
        "give one of --capture LOCATION or --storage LOCATION (or a --config with [source.capture] or [source.storage])",
    )?;
    let (kind, location) = (configured.kind, configured.location.clone());
    if !location.contains("://") && !std::path::Path::new(&location).is_dir() {
        bail!("--{} `{location}` is not a directory", kind.as_str());
    }
    if let Some(url) = &args.out.archive {
        match &mut config.archive {
            Some(a) => a.url = url.clone(),
            None => config.archive = Some(defender_config::ArchiveSection::with_url(url)),
        }
    }
    let archive = config.archive.as_ref().context("no archive: pass --archive or a --config with [archive]")?;
    let selection = Selection { from: configured.from, to: configured.to, tables: configured.tables.clone() };
    let catalog = Arc::new(Catalog::embedded());
    let sentinel = run::sentinel_path(&config, &catalog)?;
    let input = store::open(&location).map_err(|e| anyhow::anyhow!("--{}: {e}", kind.as_str()))?;
    let archive_location = store::open(&archive.url)?;
    let archive_display = archive_location.display.clone();
    let sink = ArchiveSink::new(archive_location.clone(), config.archive_config());
    let mut options = config.pipeline_options();
    let parallel = args.parallel.or(configured.parallel);
    let parallel = parallel.unwrap_or(config.pipeline.cpu_workers).max(1);
    let live = args.then_checkpoint.as_deref().map(live_source).transpose()?;
    let terminal = std::io::stderr().is_terminal();
    if !(args.progress_interval.is_finite() && args.progress_interval > 0.0) {
        bail!("--progress-interval: expected a number of seconds above 0");
    }
    let every = std::time::Duration::from_secs_f64(args.progress_interval);
    if !(args.save_interval.is_finite() && args.save_interval > 0.0) {
        bail!("--save-interval: expected a number of seconds above 0");
    }
    let save_every = std::time::Duration::from_secs_f64(args.save_interval);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let live_hub = live.as_ref();
    let result = runtime.block_on(async move {
        let inputs = backfill::list(kind, input.store.as_ref(), &input.prefix, &selection).await?;
        // Refused before anything is read: a hand-off to another event hub cannot be right.
        if let Some(live) = live_hub {
            handoff::check_hub(live, &inputs)?;
        }
        let listed = inputs.clone();
        let job = Job::open(kind, &input.display, archive_location.store.clone(), &archive_location.prefix).await?;
        let before = job.counts();
        let total = inputs.len();
        let bytes: u64 = inputs.iter().map(|i| i.size).sum();
        eprintln!(
            "backfill: {total} {} file(s) ({}) from {} into {archive_display}; progress in {} ({} file(s) done before)",
            kind.as_str(),
            report::human_bytes(bytes),
            input.display,
            job.path(),
            before.done
        );
        let source = BackfillSource::new(kind, input.store.clone(), inputs, job.clone())
            .with_parallel(parallel)
            .with_save_interval(save_every);
        let (stop_tx, stop_rx) = watch::channel(false);
        options.stop = stop_rx;
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stopped.clone();
        tokio::spawn(async move {
            run::signal().await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            eprintln!("\nstopping: finishing what is in flight and saving progress");
            let _ = stop_tx.send(true);
            run::signal().await;
            std::process::exit(130);
        });
        let reporter = Arc::new(std::sync::Mutex::new(Reporter::new(job.clone(), total, bytes, terminal, every)));
        let updates = reporter.clone();
        let progress = move |p: &Progress| updates.lock().expect("reporter poisoned").update(p);
        let run = defender_pipeline::run(catalog, move |io| source.run(io), sink, sentinel, options, progress).await;
        reporter.lock().expect("reporter poisoned").finish();
        let run = run?;
        // Everything the run reports committed is durable in every sink: the final save.
        job.save(&run.committed).await?;
        anyhow::Ok((run, job, stopped, listed))
    });
    let (run, job, stopped, listed) = result?;
    let code = run::finish(&run, &store::redact(&archive.url), args.out.summary.as_deref(), args.out.json)?;
    // The hand-off, after the accounting: only a backfill that read everything hands off.
    if let Some(live) = live.filter(|_| !stopped.load(std::sync::atomic::Ordering::SeqCst) && code == ExitCode::SUCCESS)
    {
        runtime.block_on(hand_off(&job, &listed, &live))?;
    }
    let counts = job.counts();
    if stopped.load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!(
            "interrupted: progress saved in {} ({} file(s) done); to resume, run the same command again:\n  {}",
            job.path(),
            counts.done,
            command_line()
        );
        return Ok(ExitCode::from(130));
    }
    Ok(code)
}
