//! `defender-ingest schemas check|list|dcr`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use anyhow::{Context, bail};
use clap::Subcommand;
use defender_core::{
    Catalog, TableSchema,
    dcr::{self, DcrOptions, DcrTable, Plan},
    policy,
};

use defender_config::Config;

use crate::config;

/// The file `schemas dcr` writes in its output folder.
pub const DCR_FILE: &str = "defender-sentinel.json";

#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Validate the table schemas: the embedded ones, or the files of a folder (--dir) before
    /// they are built in. Checks duplicate and case-colliding names, names over 45 characters,
    /// more than 500 columns, unknown types and Sentinel names.
    Check {
        /// A `table-schemas/` folder to check instead of the embedded schemas.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// List the tables with their column counts.
    List,
    /// Write the ARM template of the Sentinel custom tables (`<Table>_CL`) and data collection
    /// rules (kind Direct, at most 10 tables each) for the tables the config sends to Sentinel
    /// (without --config: every non-TVM table the Streaming API exports). Deploy it into the
    /// resource group of the Log Analytics workspace; each rule has its own logs ingestion
    /// endpoint, and the template's outputs give, per rule, what `[sentinel.dcrs.<immutable id>]`
    /// of the run config takes (printed here with placeholders).
    Dcr(DcrArgs),
}

#[derive(Debug, clap::Args)]
pub struct DcrArgs {
    /// The run config: its tables sent to Sentinel, their `sentinel_filter`s and their `plan`s.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Apply each table's `sentinel_filter` in the DCR (as its `transformKql`) instead of in
    /// defender-ingest: the stream then declares every column and the table the kept ones.
    #[arg(long)]
    filter_in_dcr: bool,
    /// Without --config: the table plan of a table, as TABLE=analytics|basic|auxiliary
    /// (repeatable; default analytics). With --config the plans are the config's
    /// `tables.<Table>.plan`, the ones the sink follows, and this flag is refused. An Auxiliary
    /// table cannot change plan later.
    #[arg(long = "plan", value_name = "TABLE=PLAN")]
    plans: Vec<String>,
    /// The data collection rules are named PREFIX-1, PREFIX-2, ...
    #[arg(long, default_value = "defender-ingest")]
    dcr_prefix: String,
    /// Folder to write `defender-sentinel.json` into.
    #[arg(long, default_value = "deploy/sentinel")]
    out: PathBuf,
}

pub fn schemas(cmd: SchemasCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SchemasCommand::Check { dir } => check(dir),
        SchemasCommand::List => {
            let catalog = Catalog::embedded();
            println!("{:<42} {:>7}  notes", "table", "columns");
            for t in catalog.tables() {
                let note = if t.tvm { "TVM: never sent to Sentinel" } else { t.streaming_api.as_str() };
                println!("{:<42} {:>7}  {note}", t.table, t.columns.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        SchemasCommand::Dcr(args) => dcr_template(&args),
    }
}

fn dcr_template(args: &DcrArgs) -> anyhow::Result<ExitCode> {
    let catalog = Catalog::embedded();
    let config = args.config.as_deref().map(config::load).transpose()?;
    if config.is_some() && !args.plans.is_empty() {
        bail!(
            "--plan with --config: the plans come from the config (`plan` in [tables.<Table>]), so that the tables \
             are created with the plan the sink follows and the estimate bills; set them there"
        );
    }
    let mut plans = parse_plans(&args.plans)?;
    let mut tables = Vec::new();
    for schema in catalog.tables() {
        let Some(table) = dcr_table(&catalog, config.as_ref(), schema, args.filter_in_dcr)? else { continue };
        let plan = plans.remove(&schema.table).unwrap_or(table.plan);
        tables.push(DcrTable { plan, ..table });
    }
    if let Some(table) = plans.keys().next() {
        bail!("--plan {table}=...: {table} is not a table sent to Sentinel (see `defender-ingest schemas list`)");
    }
    tables.sort_by(|a, b| a.schema.table.cmp(&b.schema.table));
    let options = DcrOptions { name_prefix: args.dcr_prefix.clone(), ..DcrOptions::default() };
    let template = dcr::template(&tables, &options)?;
    let path = write_template(&args.out, &template)?;
    let rules = dcr::rules(&tables, &options);
    println!("wrote {}: {} tables, {} data collection rule(s)", path.display(), tables.len(), rules.len());
    for t in &tables {
        let how = if t.transform.is_some() { "filter in the DCR" } else { "source" };
        println!("  {}_CL  {}  {how}", t.schema.table, dcr::arm_plan(t.plan));
    }
    println!(
        "\nEach rule has its own logs ingestion endpoint. Once deployed, put each rule's outputs in the run config:"
    );
    print!("{}", config_sections(&rules));
    Ok(ExitCode::SUCCESS)
}

/// What the run config needs for `rules` once deployed: one `[sentinel.dcrs.<id>]` per rule,
/// with the placeholders named after the template's outputs. The rules are of kind Direct:
/// each has its own logs ingestion endpoint, which its tables must be sent to.
fn config_sections(rules: &[dcr::Rule]) -> String {
    let mut out = String::new();
    for (i, rule) in rules.iter().enumerate() {
        let n = i + 1;
        let tables: Vec<String> = rule.tables.iter().map(|t| format!("{t:?}")).collect();
        out.push_str(&format!(
            "\n[sentinel.dcrs.<dcr{n}ImmutableId>]   # {}\nendpoint = \"<dcr{n}LogsIngestionEndpoint>\"\ntables = [{}]\n",
            rule.name,
            tables.join(", ")
        ));
    }
    out
}

/// The table to deploy for `schema`, if it goes to Sentinel: every non-TVM table the Streaming
/// API exports without a config, else the tables whose Sentinel route is enabled, with the
/// columns their Sentinel filter keeps (and, with `filter_in_dcr`, the filter as transformation).
fn dcr_table(
    catalog: &Catalog,
    config: Option<&Config>,
    schema: &Arc<TableSchema>,
    filter_in_dcr: bool,
) -> anyhow::Result<Option<DcrTable>> {
    let all = DcrTable::all_columns(schema.clone());
    let Some(config) = config else {
        return Ok((!schema.tvm && schema.streaming_api == "GA").then_some(all));
    };
    let routes = config.policy().routes(catalog, &schema.table);
    let route = routes.sentinel;
    if !route.enabled {
        return Ok(None);
    }
    let all = DcrTable { plan: routes.plan, ..all };
    let Some(filter) = route.filter else { return Ok(Some(all)) };
    let names: Vec<String> = policy::table_columns(schema).into_iter().map(|(n, _)| n).collect();
    let input: Vec<&str> = names.iter().map(String::as_str).collect();
    let output = filter.output_columns(&input);
    let columns = (output != names).then_some(output.clone());
    let transform = if filter_in_dcr {
        let text = config.tables.get(&schema.table).and_then(|e| e.sentinel_filter.as_ref());
        let text = text.context("a Sentinel route with a filter has its filter text")?;
        let pipeline =
            policy::parse(text.get_ref()).with_context(|| format!("tables.{}.sentinel_filter", schema.table))?;
        Some(dcr::transform_kql(&pipeline, &output))
    } else {
        None
    };
    Ok(Some(DcrTable { columns, transform, ..all }))
}

/// `--plan TABLE=PLAN` values, by table.
fn parse_plans(values: &[String]) -> anyhow::Result<BTreeMap<String, Plan>> {
    let mut plans = BTreeMap::new();
    for v in values {
        let Some((table, plan)) = v.split_once('=') else {
            bail!("--plan {v}: expected TABLE=analytics|basic|auxiliary");
        };
        let plan = match plan.to_ascii_lowercase().as_str() {
            "analytics" => Plan::Analytics,
            "basic" => Plan::Basic,
            "auxiliary" => Plan::Auxiliary,
            other => bail!("--plan {v}: unknown plan `{other}`, expected analytics, basic or auxiliary"),
        };
        if plans.insert(table.to_string(), plan).is_some() {
            bail!("--plan {v}: {table} is given twice");
        }
    }
    Ok(plans)
}

/// Writes `<out>/defender-sentinel.json`: pretty JSON and a trailing newline.
fn write_template(out: &Path, template: &serde_json::Value) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let path = out.join(DCR_FILE);
    let mut text = serde_json::to_string_pretty(template)?;
    text.push('\n');
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn check(dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let catalog = match &dir {
        None => Catalog::embedded(),
        Some(dir) => {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "json") {
                    let text =
                        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                    files.push((path.display().to_string(), text));
                }
            }
            files.sort();
            Catalog::from_files(files.iter().map(|(f, t)| (f.as_str(), t.as_str())))?
        }
    };
    let problems = catalog.check();
    let columns: usize = catalog.tables().iter().map(|t| t.columns.len()).sum();
    if problems.is_empty() {
        let tvm = catalog.tables().iter().filter(|t| t.tvm).count();
        println!("ok: {} tables ({tvm} TVM), {columns} columns", catalog.tables().len());
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            println!("{p}");
        }
        println!("{} problem(s)", problems.len());
        Ok(ExitCode::from(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use defender_config::SentinelTarget;

    #[test]
    fn the_printed_sections_with_the_outputs_pasted_make_a_config_sending_each_table_to_its_rule() {
        let catalog = Catalog::embedded();
        let tables: Vec<DcrTable> = catalog
            .tables()
            .iter()
            .filter(|t| !t.tvm && t.streaming_api == "GA")
            .map(|t| DcrTable::all_columns(t.clone()))
            .collect();
        let rules = dcr::rules(&tables, &DcrOptions::default());
        assert!(rules.len() >= 2, "several rules");
        let mut sections = config_sections(&rules);
        for n in 1..=rules.len() {
            sections = sections.replace(&format!("<dcr{n}ImmutableId>"), &format!("dcr-{n:032x}")).replace(
                &format!("<dcr{n}LogsIngestionEndpoint>"),
                &format!("https://defender-ingest-{n}.eastus-1.ingest.monitor.azure.com"),
            );
        }
        let sent: String = tables.iter().map(|t| format!("[tables.{}]\nsentinel = true\n", t.schema.table)).collect();
        let text = format!("{sent}\n[sentinel]\n{sections}\n[sentinel.auth]\nmethod = \"azure_cli\"\n");
        let config = Config::parse(&text).unwrap();
        let Some(SentinelTarget::Live(live)) = config.sentinel_target(&catalog).unwrap() else { panic!("live") };
        let live = crate::config::sentinel_config(*live).unwrap();
        for (i, rule) in rules.iter().enumerate() {
            let n = i + 1;
            for table in &rule.tables {
                let dcr = &live.tables[table].dcr_immutable_id;
                assert_eq!(dcr, &format!("dcr-{n:032x}"), "{table}");
                assert_eq!(
                    live.endpoint_for(dcr),
                    format!("https://defender-ingest-{n}.eastus-1.ingest.monitor.azure.com")
                );
            }
        }
        let sent: usize = rules.iter().map(|r| r.tables.len()).sum();
        assert_eq!(live.tables.len(), sent, "every table of a rule, and no other");
    }
}
