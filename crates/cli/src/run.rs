//! `defender-ingest run`.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::{Context, bail};
use clap::Args;
use defender_core::Catalog;
use defender_pipeline::Progress;
use defender_pipeline::SentinelPath;
use defender_sinks::{
    ArchiveSink,
    sentinel::{DryRunSink, SentinelSink},
    store,
};
use tokio::sync::watch;

use defender_config::SentinelTarget;

use crate::{
    config, report,
    serve::{self, Status},
    source::{Mode, Source},
};

/// Where a run's results go (`run` and `backfill` alike).
#[derive(Debug, Args)]
pub struct Outputs {
    /// Archive location: a path, file://, az://container/prefix or
    /// abfss://filesystem@account.dfs.core.windows.net/prefix; replaces `archive.url`.
    #[arg(long)]
    pub archive: Option<String>,
    /// Write the run's accounting (per table and totals) to this file as JSON.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Print the accounting as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (TOML). Not needed when both --input and --archive are given.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Input files or globs (NDJSON of Event Hubs message bodies or bare records, gzip or not);
    /// replaces `source.files.paths`.
    #[arg(long, num_args = 1..)]
    input: Vec<String>,
    #[command(flatten)]
    out: Outputs,
    /// Serve /healthz, /readyz and /metrics on this address (e.g. 0.0.0.0:9464); replaces
    /// `service.listen`.
    #[arg(long)]
    listen: Option<String>,
}

/// How often a run without a terminal logs its progress.
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
pub(crate) async fn signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = config::resolve(args.config.as_deref(), &args.input, args.out.archive.as_deref(), true)?;
    let archive = config.archive.as_ref().expect("resolve checks the archive");
    let catalog = Arc::new(Catalog::embedded());
    let sentinel = sentinel_path(&config, &catalog)?;
    let source = Source::new(&config, Mode::Run)?;
    let location = store::open(&archive.url)?;
    let archive_display = location.display.clone();
    let sink = ArchiveSink::new(location, config.archive_config());
    let mut options = config.pipeline_options();
    // A daemon holds its data while Sentinel refuses it (not ready) rather than exit into a
    // restart loop; a run over files fails, so its user hears of it.
    options.hold_when_refused = source.is_endless();
    eprintln!("reading {} into {archive_display}", source.describe());
    let history_job = match &source {
        Source::History(h) => Some(h.job()),
        _ => None,
    };

    let show_progress = std::io::stderr().is_terminal() && !args.out.json;
    let endless = source.is_endless();
    let threshold = std::time::Duration::from_secs(config.service.liveness_threshold_seconds);
    let status = Status::new(source.kafka_metrics(), source.eventhubs_metrics(), options.health.clone(), threshold);
    let status_in_progress = status.clone();
    let mut last_log = std::time::Instant::now();
    let progress = move |p: &Progress| {
        status_in_progress.progress(p);
        if show_progress {
            eprint!(
                "\r{} records in, {} rows archived, {} read, {:.0?}   ",
                p.records_in,
                p.rows_archived,
                report::human_bytes(p.bytes_in),
                p.elapsed
            );
        } else if endless && last_log.elapsed() >= LOG_EVERY {
            last_log = std::time::Instant::now();
            tracing::info!(
                records_in = p.records_in,
                rows_archived = p.rows_archived,
                bytes_in = p.bytes_in,
                "progress"
            );
        }
    };
    let listen = args.listen.clone().or_else(|| config.service.listen.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        options.stop = stop_rx;
        if let Some(addr) = &listen {
            let bound = serve::spawn(addr, status.clone()).await?;
            tracing::info!(address = %bound, "serving /healthz, /readyz and /metrics");
        }
        tokio::spawn(async move {
            signal().await;
            tracing::info!("stopping: finishing in-flight data, committing, then exiting");
            status.stopping();
            let _ = stop_tx.send(true);
            signal().await;
            tracing::warn!("second signal: exiting without finishing (uncommitted data is read again)");
            std::process::exit(130);
        });
        let run = defender_pipeline::run(catalog, move |io| source.run(io), sink, sentinel, options, progress).await;
        // History: what the run reports committed is durable in every sink, the final save.
        if let (Ok(run), Some(job)) = (&run, history_job.as_ref().and_then(|j| j.get())) {
            job.save(&run.committed).await?;
        }
        anyhow::Ok(run)
    });
    if show_progress {
        eprintln!();
    }
    let run = result??;
    finish(&run, &archive_display, args.out.summary.as_deref(), args.out.json)
}

/// Where the config sends Sentinel's rows: a dry run's directory, the live API, or nowhere.
pub(crate) fn sentinel_path(
    config: &defender_config::Config,
    catalog: &Arc<Catalog>,
) -> anyhow::Result<Option<SentinelPath>> {
    Ok(match (config.sentinel_target(catalog)?, config.policy().any_sentinel()) {
        (Some(SentinelTarget::DryRun { dir, pack, plans }), _) => {
            let location = store::open(&dir)?;
            eprintln!("sentinel (dry run): request bodies to {}", location.display);
            Some(SentinelPath::DryRun(DryRunSink::new(location, catalog.clone(), pack).with_plans(plans)))
        }
        (Some(SentinelTarget::Live(live)), _) => {
            let c = config::sentinel_config(*live)?;
            let to: Vec<String> = c.endpoints().iter().map(|(dcr, endpoint)| format!("{dcr} at {endpoint}")).collect();
            eprintln!("sentinel: sending {} table(s) to {}", c.tables.len(), to.join(", "));
            Some(SentinelPath::Live(SentinelSink::new(c, catalog.clone())?))
        }
        (None, true) => bail!(
            "the config sends tables to Sentinel (`sentinel = true`) but has no [sentinel] section: add one with \
             `endpoint`, `dcr_immutable_id` and [sentinel.auth] to send, or `dry_run_dir = \"DIR\"` to store the \
             request bodies the Logs Ingestion API would receive; or set `sentinel = false`"
        ),
        (None, false) => None,
    })
}

/// Writes the run's accounting (summary file, JSON or table); exit 1 if it does not balance.
pub(crate) fn finish(
    run: &defender_pipeline::RunReport,
    archive_display: &str,
    summary_path: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let summary = report::Summary::new(run, archive_display);
    if let Some(path) = summary_path {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("cannot write summary {}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", report::table(&summary));
    }
    let unbalanced = run.accounting.unbalanced();
    if !unbalanced.is_empty() {
        eprintln!("error: records not accounted for: {unbalanced:?}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
