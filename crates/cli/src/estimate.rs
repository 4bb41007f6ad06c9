//! `defender-ingest estimate` and `defender-ingest filter check`: the pipeline over a sample
//! without sinks, reporting rows, columns, billed GB and cost before and after the filters.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf, process::ExitCode, sync::Arc};

use crate::{
    config, detail, html,
    report::human_bytes,
    source::{Mode, Source},
};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use defender_config::Config;
use defender_core::{Catalog, billing::STRING_FORMS};
use defender_pipeline::estimate::{Estimate, TableEstimate};

#[derive(Debug, Args)]
pub struct EstimateArgs {
    /// The config file (TOML): its tables, filters and prices are estimated.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Sample files or globs; replaces `source.files.paths`.
    #[arg(long, num_args = 1.., conflicts_with_all = ["capture", "storage"])]
    input: Vec<String>,
    /// Price history instead of the config's source: --capture/--storage with their window.
    #[command(flatten)]
    history: crate::backfill::HistoryArgs,
    /// Print the estimate as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// With a Kafka or Event Hubs source: read for this many seconds, then report (nothing is
    /// committed or checkpointed).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
    /// With a Kafka or Event Hubs source: stop after about this many records.
    #[arg(long)]
    max_records: Option<u64>,
    /// Also print, per table, where its cost comes from (per column and per group, before and
    /// after the filter) and the `sentinel_filter` lines that would save the most.
    #[arg(long)]
    detail: bool,
    /// Also write a self-contained HTML report with charts to this file.
    #[arg(long)]
    html: Option<PathBuf>,
    /// A CSV exported from a workspace with `Type,_BilledSize` per record (or `table,billed
    /// bytes` per table): reports the estimate's error per table.
    #[arg(long)]
    calibrate: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum FilterCommand {
    /// Apply the config's filters to a sample: per table rows in, rows kept, columns kept, and
    /// billed GB before and after; then, per table sent to Sentinel, the same per column and
    /// per group, and the lines that would save the most.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Sample files or globs.
        #[arg(long, num_args = 1.., required_unless_present = "as_dcr")]
        sample: Vec<String>,
        /// Print each table's Sentinel filter as a DCR `transformKql` instead.
        #[arg(long)]
        as_dcr: bool,
    },
}

/// How much of an endless source an estimate reads.
#[derive(Debug, Clone, Copy, Default)]
struct Bound {
    duration: Option<u64>,
    max_records: Option<u64>,
}

fn run_estimate(config: &Config, bound: Bound) -> anyhow::Result<Estimate> {
    let source = Source::new(config, Mode::Estimate)?;
    if source.is_endless() && bound.duration.is_none() && bound.max_records.is_none() {
        bail!("{} has no end: pass --duration SECONDS and/or --max-records N", source.describe());
    }
    eprintln!("estimating from {}", source.describe());
    let mut options = config.pipeline_options();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    options.stop = stop_rx;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let estimate = runtime.block_on(async move {
        if let Some(secs) = bound.duration {
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
                let _ = stop_tx.send(true);
            });
        }
        defender_pipeline::estimate::estimate(
            Arc::new(Catalog::embedded()),
            move |io| source.run(io),
            options,
            config.archive_config(),
            config.prices.clone(),
            bound.max_records,
            config.group_by(),
        )
        .await
    })?;
    Ok(estimate)
}

pub fn estimate(args: EstimateArgs) -> anyhow::Result<ExitCode> {
    let config = if args.history.located() {
        let mut config = match &args.config {
            Some(path) => config::load(path)?,
            None => Config::default(),
        };
        args.history.apply(&mut config)?;
        config
    } else {
        let mut config = config::resolve(args.config.as_deref(), &args.input, None, false)?;
        args.history.apply(&mut config)?;
        config
    };
    let estimate = run_estimate(&config, Bound { duration: args.duration, max_records: args.max_records })?;
    if let Some(path) = &args.html {
        std::fs::write(path, html::report(&estimate)).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&estimate)?);
    } else {
        print!("{}", text(&estimate));
        if args.detail {
            print!("{}", detail::text(&estimate, false));
        }
    }
    if let Some(path) = &args.calibrate {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        print!("{}", calibration_report(&estimate, &parse_calibration(&text)?));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn filter(cmd: FilterCommand) -> anyhow::Result<ExitCode> {
    let FilterCommand::Check { config, sample, as_dcr } = cmd;
    if as_dcr {
        // As a DCR would run it: on the stream the sink sends (Sentinel column names), keeping
        // TimeGenerated and RecordId_CF (`schemas dcr --filter-in-dcr` deploys the same text).
        let config = config::load(&config)?;
        let catalog = Catalog::embedded();
        for (table, entry) in &config.tables {
            let (Some(filter), Some(schema)) = (&entry.sentinel_filter, catalog.get(table)) else { continue };
            let parsed = defender_core::policy::parse(filter.get_ref()).map_err(|e| anyhow::anyhow!("{table}: {e}"))?;
            let checked = parsed.check(schema).map_err(|e| anyhow::anyhow!("{table}: {e}"))?;
            let input: Vec<String> = defender_core::policy::table_columns(schema).into_iter().map(|(n, _)| n).collect();
            let input: Vec<&str> = input.iter().map(String::as_str).collect();
            let kql = defender_core::dcr::transform_kql(&parsed, &checked.output_columns(&input));
            println!("{table}:\n  {kql}\n");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let config = config::resolve(Some(&config), &sample, None, false)?;
    let estimate = run_estimate(&config, Bound::default())?;
    let mut out = format!(
        "{:<40} {:>10} {:>10} {:>12} {:>9} {:>14} {:>14}\n",
        "table", "rows in", "rows kept", "columns kept", "plan", "billed GB before", "billed GB after"
    );
    for t in estimate.tables.iter().chain([&estimate.totals]) {
        let columns = if t.sentinel { format!("{}/{}", t.columns_kept, t.columns_in) } else { "-".to_string() };
        let _ = writeln!(
            out,
            "{:<40} {:>10} {:>10} {:>12} {:>9} {:>14.6} {:>14.6}{}",
            t.table,
            t.records - t.dead_lettered,
            t.rows_kept,
            columns,
            plan(t),
            t.billed_bytes_before as f64 / 1e9,
            t.billed_bytes_at_plan as f64 / 1e9,
            refused(t)
        );
    }
    let _ =
        writeln!(out, "\nbefore: every column at Analytics; after: what the filters keep, billed at each table's plan");
    print!("{out}");
    print!("{}", detail::text(&estimate, true));
    Ok(ExitCode::SUCCESS)
}

fn refused(t: &TableEstimate) -> &'static str {
    match t.sentinel_refused.as_deref() {
        Some("tvm") => "  (TVM: never sent to Sentinel)",
        Some(_) => "  (unknown table: archive only)",
        None if !t.sentinel => "  (not sent to Sentinel)",
        None => "",
    }
}

/// The plan a table is billed at, `-` when not sent to Sentinel.
fn plan(t: &TableEstimate) -> &'static str {
    t.plan.map_or("-", |p| p.name())
}

fn money(v: f64) -> String {
    format!("{v:.2}")
}

/// The terminal report.
pub fn text(e: &Estimate) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<36} {:>9} {:>8} {:>9} {:>10} {:>11} {:>11} {:>12} {:>12} {:>10} {:>10} {:>11}",
        "table",
        "plan",
        "records",
        "rec/s",
        "raw",
        "GB/d before",
        "GB/d after",
        "$/mo before",
        "$/mo after",
        "$/mo basic",
        "$/mo aux",
        "parquet GB/d"
    );
    for t in e.tables.iter().chain([&e.totals]) {
        let c = &t.cost_per_month;
        let _ = writeln!(
            out,
            "{:<36} {:>9} {:>8} {:>9.1} {:>10} {:>11.4} {:>11.4} {:>12} {:>12} {:>10} {:>10} {:>11.4}{}",
            t.table,
            plan(t),
            t.records,
            t.records_per_second,
            human_bytes(t.raw_bytes),
            t.gb_per_day_before,
            t.gb_per_day_after,
            money(c.analytics_before),
            money(c.at_plan),
            money(c.basic_after),
            money(c.auxiliary_after),
            t.parquet_gb_per_day,
            refused(t)
        );
    }
    let p = &e.prices;
    let _ = writeln!(
        out,
        "\nsample: {:.1} s of event time; projected per day from it. Sentinel filters save {} {}/month (analytics \
         tier); table plans save {} {}/month more. $/mo before: every column at Analytics; after: filtered, at each \
         table's plan.",
        e.event_span_seconds,
        money(e.saving_per_month),
        p.currency,
        money(e.plan_saving_per_month),
        p.currency
    );
    let _ = writeln!(
        out,
        "archive: {} of Parquet for this sample, {} {}/month per month of data kept",
        human_bytes(e.totals.parquet_bytes),
        money(e.totals.cost_per_month.archive),
        p.currency
    );
    let _ = writeln!(
        out,
        "prices ({}, as of {}, illustrative list prices: override in [prices]): analytics {}/GB, basic {}/GB, auxiliary {}/GB, archive {}/GB-month",
        p.currency, p.as_of, p.analytics_per_gb, p.basic_per_gb, p.auxiliary_per_gb, p.archive_storage_per_gb_month
    );
    let forms: Vec<String> =
        STRING_FORMS.iter().map(|f| format!("{:?}: {} ({} B)", f.ty, f.example, f.bytes)).collect();
    let _ = writeln!(out, "billed size = string form of each non-empty value + TimeGenerated; {}", forms.join(", "));
    out
}

/// Per table: (records, billed bytes) from a workspace export.
pub fn parse_calibration(text: &str) -> anyhow::Result<BTreeMap<String, (u64, u64)>> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut cols = line.split(',').map(|c| c.trim().trim_matches('"'));
        let (Some(table), Some(bytes)) = (cols.next(), cols.next()) else {
            bail!("calibration line {}: expected `table,billed bytes`", i + 1);
        };
        let Ok(bytes) = bytes.parse::<f64>() else {
            if i == 0 {
                continue; // a header
            }
            bail!("calibration line {}: `{bytes}` is not a number of bytes", i + 1);
        };
        let table = table.trim_end_matches("_CL").to_string();
        let e = out.entry(table).or_default();
        e.0 += 1;
        e.1 += bytes as u64;
    }
    Ok(out)
}

/// Our mean billed size per record against the workspace's, per table.
pub fn calibration_report(e: &Estimate, theirs: &BTreeMap<String, (u64, u64)>) -> String {
    let mut out = format!("\n{:<36} {:>16} {:>16} {:>8}\n", "calibration", "their B/record", "our B/record", "error");
    for (table, (n, bytes)) in theirs {
        let Some(t) = e.tables.iter().find(|t| &t.table == table) else {
            let _ = writeln!(out, "{table:<36} {:>16.1} {:>16} {:>8}", *bytes as f64 / *n as f64, "not in sample", "-");
            continue;
        };
        let rows = t.records - t.dead_lettered;
        let ours = if rows == 0 { 0.0 } else { t.billed_bytes_before as f64 / rows as f64 };
        let theirs = *bytes as f64 / *n as f64;
        let error = (ours - theirs) / theirs * 100.0;
        let _ = writeln!(out, "{table:<36} {theirs:>16.1} {ours:>16.1} {error:>7.1}%");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_csv_takes_records_or_totals_and_strips_cl() {
        let csv = "Type,_BilledSize\nDeviceInfo_CL,100\nDeviceInfo_CL,300\n\"DeviceEvents\",50\n";
        let got = parse_calibration(csv).unwrap();
        assert_eq!(got["DeviceInfo"], (2, 400));
        assert_eq!(got["DeviceEvents"], (1, 50));
        assert_eq!(
            parse_calibration("a,b\nx,zz\n").unwrap_err().to_string(),
            "calibration line 2: `zz` is not a number of bytes"
        );
    }
}
