//! `defender-ingest`: parses the command line and the config, starts logging, runs a command.
//! Everything else lives in the library crates.

mod backfill;
mod config;
mod detail;
mod estimate;
mod generate;
mod html;
mod metrics;
mod report;
mod run;
mod schemas;
mod serve;
mod source;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Microsoft Defender XDR raw events (the Advanced Hunting tables exported by the Streaming API)
/// to Microsoft Sentinel and to a Parquet archive you own: every record validated against its
/// table's schema, nothing silently dropped, every record accounted for.
#[derive(Debug, Parser)]
#[command(name = "defender-ingest", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log format on stderr: `auto` is human-readable on a terminal and JSON otherwise.
    #[arg(long, global = true, default_value = "auto", value_parser = ["auto", "text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline: read Defender events (files to their end, or Event Hubs through its
    /// Kafka endpoint or over AMQP until SIGTERM), decode and validate them, send the chosen tables to
    /// Sentinel, write the Parquet archive and dead letters, commit what is durable, and print
    /// the accounting per table.
    Run(run::RunArgs),
    /// Estimate before switching anything on: run a sample through the decoder and the config's
    /// selection and filters, and report per table the events/s, the GB/day Sentinel would bill
    /// before and after the filters, the cost per month per tier, and the Parquet footprint.
    Estimate(estimate::EstimateArgs),
    /// Read history into the archive (and Sentinel, as configured): Event Hubs Capture Avro
    /// files or the Streaming API's storage-account export, with the same selection, filters
    /// and accounting as `run`; resumable (progress is kept with the archive).
    Backfill(backfill::BackfillArgs),
    /// Check the config's filters on a sample (rows and columns kept, billed GB saved), or print
    /// them as DCR transformations.
    #[command(subcommand)]
    Filter(estimate::FilterCommand),
    /// Write synthetic, realistic Streaming API traffic (Event Hubs message bodies or bare
    /// records, one per line) for demos, tests and benchmarks.
    Generate(generate::GenerateArgs),
    /// Validate a config file without connecting to anything.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Inspect and validate the table schemas embedded in this binary.
    #[command(subcommand)]
    Schemas(schemas::SchemasCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Estimate(args) => estimate::estimate(args),
        Command::Backfill(args) => backfill::backfill(args),
        Command::Filter(cmd) => estimate::filter(cmd),
        Command::Generate(args) => generate::generate(args),
        Command::Config(cmd) => config::command(cmd),
        Command::Schemas(cmd) => schemas::schemas(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Warnings from everything, and what our own crates say about the run's life (partitions
/// assigned and revoked, progress of a daemon, shutdown). `RUST_LOG` replaces it.
const DEFAULT_LOG: &str = "warn,defender_ingest=info,defender_sources=info,defender_pipeline=info,defender_sinks=info";

fn init_logging(format: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| DEFAULT_LOG.into());
    let json = format == "json" || (format == "auto" && !std::io::stderr().is_terminal());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json { builder.json().init() } else { builder.init() }
}
