//! `defender-ingestion-server`: runs the local Logs Ingestion API server and token endpoint
//! until SIGTERM or ctrl-c. Prints `{"endpoint","authority","ca"}` as one JSON line on stdout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use defender_ingestion_server::{Fault, ServerConfig, TestServer};

/// Strict local Azure Monitor Logs Ingestion API server and OAuth2 token endpoint (for tests).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// JSON file: {"<dcr immutable id>": {"<stream>": ["Column", ...]}}.
    #[arg(long)]
    streams: PathBuf,
    /// Tenant id served by the token endpoint.
    #[arg(long)]
    tenant: String,
    /// The client id the token endpoint accepts.
    #[arg(long)]
    client_id: String,
    /// Name of the environment variable holding the client secret.
    #[arg(long)]
    client_secret_env: String,
    /// Where to write the PEM of the certificate to trust.
    #[arg(long)]
    ca_out: PathBuf,
    /// Request body limit on the wire, in bytes.
    #[arg(long, default_value_t = defender_ingestion_server::DEFAULT_MAX_WIRE_BYTES)]
    max_wire_bytes: usize,
    /// Cap on a gzip body's decompressed size, in bytes.
    #[arg(long, default_value_t = defender_ingestion_server::DEFAULT_MAX_DECOMPRESSED_BYTES)]
    max_decompressed_bytes: usize,
    /// Lifetime of issued tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_lifetime_secs: u64,
    /// Accept rows with undeclared columns instead of answering 400.
    #[arg(long)]
    allow_unknown_columns: bool,
    /// The ARM template `defender-ingest schemas dcr` wrote: each stream's table plan, column
    /// types and transformation, whose rules the server then enforces (Auxiliary tables).
    #[arg(long)]
    template: Option<PathBuf>,
    /// The table plan of a stream, as STREAM=Analytics|Basic|Auxiliary (repeatable; over the
    /// template's). Without the template's column types, nested JSON is not checked.
    #[arg(long = "plan", value_name = "STREAM=PLAN")]
    plans: Vec<String>,
    /// Benchmarks: check auth, path and size limits and inflate the body, but neither parse nor
    /// keep the rows.
    #[arg(long)]
    limits_only: bool,
    /// Benchmarks: answer every ingestion request with 503 (no `Retry-After`) for this many
    /// seconds after start, as a Sentinel outage does, then serve normally.
    #[arg(long, value_name = "SECONDS")]
    unavailable_for_seconds: Option<u64>,
}

/// Faults queued for `--unavailable-for-seconds`: more requests than a client makes in an
/// outage of a few minutes; whatever is left is cleared when the outage ends.
const OUTAGE_FAULTS: usize = 200_000;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.streams).with_context(|| format!("reading {}", args.streams.display()))?;
    let streams: BTreeMap<String, BTreeMap<String, Vec<String>>> =
        serde_json::from_str(&text).context("parsing the streams file")?;
    let secret = std::env::var(&args.client_secret_env)
        .with_context(|| format!("environment variable {} is not set", args.client_secret_env))?;
    let mut config = ServerConfig::new(streams, args.tenant, args.client_id, secret);
    config.max_wire_bytes = args.max_wire_bytes;
    config.max_decompressed_bytes = args.max_decompressed_bytes;
    config.token_lifetime = Duration::from_secs(args.token_lifetime_secs);
    config.reject_unknown_columns = !args.allow_unknown_columns;
    config.limits_only = args.limits_only;
    if let Some(path) = &args.template {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let template: serde_json::Value = serde_json::from_str(&text).context("parsing the template")?;
        config = config.with_template(&template).map_err(anyhow::Error::msg).context("the template")?;
    }
    for p in &args.plans {
        let (stream, plan) = p.split_once('=').with_context(|| format!("--plan {p}: expected STREAM=PLAN"))?;
        let plan = plan.parse().map_err(anyhow::Error::msg).with_context(|| format!("--plan {p}"))?;
        config.rules.entry(stream.to_string()).or_default().plan = plan;
    }

    let server = TestServer::start(config).await.context("starting the server")?;
    std::fs::write(&args.ca_out, &server.ca_pem).with_context(|| format!("writing {}", args.ca_out.display()))?;
    let ready = serde_json::json!({
        "endpoint": server.endpoint,
        "authority": server.authority,
        "ca": args.ca_out,
    });
    if args.unavailable_for_seconds.is_some() {
        for _ in 0..OUTAGE_FAULTS {
            server.inject(Fault::Status { status: 503, retry_after: None });
        }
    }
    println!("{ready}");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let outage = tokio::time::sleep(Duration::from_secs(args.unavailable_for_seconds.unwrap_or(0)));
    tokio::pin!(outage);
    let mut in_outage = args.unavailable_for_seconds.is_some();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = &mut outage, if in_outage => {
                server.clear_faults();
                in_outage = false;
            }
        }
    }
    server.stop().await;
    Ok(())
}
