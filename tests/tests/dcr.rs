//! `defender-ingest schemas dcr`: the generated ARM template of the Sentinel custom tables and
//! data collection rules is internally consistent, respects the Azure limits, and the committed
//! copy under `deploy/sentinel/` is what the binary generates today (schema and deployment never
//! drift).

use std::collections::BTreeMap;

use defender_core::schema::{MAX_SENTINEL_COLUMNS, MAX_SENTINEL_NAME_LEN, RESERVED_SENTINEL_NAMES};
use defender_tests::{repo_root, run_cli};
use serde_json::Value;

const COMMITTED: &str = "deploy/sentinel/defender-sentinel.json";

/// Runs `schemas dcr` with `args` into a fresh folder; returns the file's text.
fn generate(args: &[&str]) -> String {
    generate_and_print(args).0
}

/// Runs `schemas dcr` with `args` into a fresh folder; returns the file's text and the stdout.
fn generate_and_print(args: &[&str]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let mut all = vec!["schemas", "dcr", "--out", out];
    all.extend_from_slice(args);
    let run = run_cli(&all, &[]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.starts_with("wrote "), "{stdout}");
    (std::fs::read_to_string(dir.path().join("defender-sentinel.json")).unwrap(), stdout.into_owned())
}

fn estimate_config() -> String {
    repo_root().join("examples/estimate.toml").to_str().unwrap().to_string()
}

fn resources<'a>(template: &'a Value, ty: &str) -> Vec<&'a Value> {
    template["resources"].as_array().unwrap().iter().filter(|r| r["type"] == ty).collect()
}

/// (name, type) pairs of a `columns` array.
fn columns(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["type"].as_str().unwrap().to_string()))
        .collect()
}

/// Checks the invariants every generated template holds; returns the table columns by
/// `<Table>_CL` and the stream columns by `Custom-<Table>_CL`.
#[allow(clippy::type_complexity)]
fn check_template(t: &Value) -> (BTreeMap<String, Vec<(String, String)>>, BTreeMap<String, Vec<(String, String)>>) {
    assert_eq!(t["$schema"], "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#");
    assert!(t["parameters"]["workspaceResourceId"].is_object());
    assert!(t["parameters"]["location"].is_object());
    let mut tables = BTreeMap::new();
    for table in resources(t, "Microsoft.OperationalInsights/workspaces/tables") {
        let schema = &table["properties"]["schema"];
        let name = schema["name"].as_str().unwrap().to_string();
        assert!(name.ends_with("_CL"), "{name}");
        assert!(!name.starts_with("DeviceTvm"), "TVM tables never go to Sentinel: {name}");
        assert!(["Analytics", "Basic", "Auxiliary"].contains(&table["properties"]["plan"].as_str().unwrap()));
        let cols = columns(&schema["columns"]);
        assert_eq!(cols[0], ("TimeGenerated".to_string(), "datetime".to_string()), "{name}");
        assert_eq!(cols.last().unwrap(), &("RecordId_CF".to_string(), "string".to_string()), "{name}");
        assert!(cols.len() <= MAX_SENTINEL_COLUMNS, "{name}: {} columns", cols.len());
        for (c, _) in &cols[1..] {
            assert!(c.len() <= MAX_SENTINEL_NAME_LEN, "{name}.{c} is too long");
            assert!(c.starts_with(|ch: char| ch.is_ascii_alphabetic()), "{name}.{c} starts with a letter");
            assert!(c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{name}.{c}");
            assert!(!RESERVED_SENTINEL_NAMES.iter().any(|r| r.eq_ignore_ascii_case(c)), "{name}.{c} is reserved");
        }
        let mut lower: Vec<String> = cols.iter().map(|(c, _)| c.to_ascii_lowercase()).collect();
        lower.sort();
        lower.dedup();
        assert_eq!(lower.len(), cols.len(), "{name}: duplicate column names");
        assert!(tables.insert(name.clone(), cols).is_none(), "{name} twice");
    }
    let mut streams = BTreeMap::new();
    let dcrs = resources(t, "Microsoft.Insights/dataCollectionRules");
    assert!(!dcrs.is_empty());
    for (i, dcr) in dcrs.iter().enumerate() {
        assert_eq!(dcr["kind"], "Direct");
        let p = &dcr["properties"];
        let flows = p["dataFlows"].as_array().unwrap();
        let decls = p["streamDeclarations"].as_object().unwrap();
        assert!(flows.len() <= 10, "{} data flows", flows.len());
        assert!(decls.len() <= 10, "{} streams", decls.len());
        let la = &p["destinations"]["logAnalytics"][0];
        assert_eq!(la["workspaceResourceId"], "[parameters('workspaceResourceId')]");
        for flow in flows {
            let stream = flow["outputStream"].as_str().unwrap();
            assert_eq!(flow["streams"][0], stream);
            assert_eq!(flow["destinations"][0], la["name"]);
            assert!(flow["transformKql"].as_str().unwrap().starts_with("source"));
            assert!(flow["transformKql"].as_str().unwrap().chars().count() <= 15_360);
            let table = stream.strip_prefix("Custom-").unwrap();
            assert!(tables.contains_key(table), "{stream} goes to a table of the template");
            assert!(decls.contains_key(stream), "{stream} is declared");
        }
        for (stream, decl) in decls {
            assert!(streams.insert(stream.clone(), columns(&decl["columns"])).is_none(), "{stream} twice");
        }
        let n = i + 1;
        for key in [
            format!("dcr{n}ImmutableId"),
            format!("dcr{n}LogsIngestionEndpoint"),
            format!("dcr{n}Streams"),
            format!("dcr{n}Tables"),
        ] {
            assert!(t["outputs"][&key].is_object(), "output {key}");
        }
        // The rule is Direct and names no DCE: its own endpoint is the one to send to.
        assert!(p.get("dataCollectionEndpointId").is_none());
        let endpoint = t["outputs"][format!("dcr{n}LogsIngestionEndpoint")]["value"].as_str().unwrap();
        assert!(endpoint.contains(&format!("'{}'", dcr["name"].as_str().unwrap())), "{endpoint}");
        assert!(endpoint.ends_with(".endpoints.logsIngestion]"), "{endpoint}");
        // `dcr<N>Tables` (what `[sentinel.dcrs.<id>] tables` takes) are the rule's streams' tables.
        let tables: Vec<String> = t["outputs"][format!("dcr{n}Tables")]["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| format!("Custom-{}_CL", v.as_str().unwrap()))
            .collect();
        let flows: Vec<&str> = flows.iter().map(|f| f["outputStream"].as_str().unwrap()).collect();
        assert_eq!(tables, flows, "dcr{n}Tables");
    }
    assert_eq!(streams.len(), tables.len(), "one stream per table");
    (tables, streams)
}

#[test]
fn every_stream_declares_exactly_its_table_columns_within_the_limits() {
    let t: Value = serde_json::from_str(&generate(&["--config", &estimate_config()])).unwrap();
    let (tables, streams) = check_template(&t);
    assert_eq!(
        tables.keys().collect::<Vec<_>>(),
        ["DeviceLogonEvents_CL", "DeviceNetworkEvents_CL", "DeviceProcessEvents_CL", "EmailEvents_CL"]
    );
    for (table, cols) in &tables {
        let stream = &streams[&format!("Custom-{table}")];
        assert_eq!(stream, cols, "{table}: the stream declares the table's columns, names and types");
    }
    // The config's `project-away AdditionalFields` is applied by defender-ingest: the column is
    // neither declared nor created.
    assert!(!tables["DeviceNetworkEvents_CL"].iter().any(|(c, _)| c == "AdditionalFields"));
    assert!(tables["DeviceLogonEvents_CL"].iter().any(|(c, _)| c == "AdditionalFields"));
    assert!(tables["DeviceLogonEvents_CL"].iter().any(|(c, _)| c == "Extra_CF"));
}

#[test]
fn filters_in_the_dcr_make_the_stream_declare_every_column() {
    let t: Value = serde_json::from_str(&generate(&["--config", &estimate_config(), "--filter-in-dcr"])).unwrap();
    let (tables, streams) = check_template(&t);
    let table = &tables["DeviceNetworkEvents_CL"];
    let stream = &streams["Custom-DeviceNetworkEvents_CL"];
    assert_eq!(stream.len(), table.len() + 1);
    assert!(stream.iter().any(|(c, _)| c == "AdditionalFields"));
    assert!(table.iter().all(|c| stream.contains(c)), "the table holds a subset of the stream");
    let dcr = resources(&t, "Microsoft.Insights/dataCollectionRules")[0];
    let flow = dcr["properties"]["dataFlows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["outputStream"] == "Custom-DeviceNetworkEvents_CL")
        .unwrap();
    let kql = flow["transformKql"].as_str().unwrap();
    assert!(kql.starts_with("source | where not(ActionType == \"ConnectionSuccess\" and RemotePort in (80, 443))"));
    assert!(kql.contains("| project TimeGenerated, ") && kql.ends_with(", RecordId_CF"), "{kql}");
    // A table without a filter still takes `source` and equal columns.
    assert_eq!(tables["EmailEvents_CL"], streams["Custom-EmailEvents_CL"]);
}

#[test]
fn without_a_config_every_streamed_non_tvm_table_is_deployed_in_rules_of_at_most_10() {
    let t: Value = serde_json::from_str(&generate(&["--plan", "DeviceInfo=basic"])).unwrap();
    let (tables, streams) = check_template(&t);
    assert_eq!(tables.len(), 21);
    assert_eq!(resources(&t, "Microsoft.Insights/dataCollectionRules").len(), 3);
    for (table, cols) in &tables {
        assert_eq!(&streams[&format!("Custom-{table}")], cols, "{table}");
    }
    let plan = |name: &str| {
        resources(&t, "Microsoft.OperationalInsights/workspaces/tables")
            .into_iter()
            .find(|r| r["properties"]["schema"]["name"] == name)
            .map(|r| r["properties"]["plan"].clone())
            .unwrap()
    };
    assert_eq!(plan("DeviceInfo_CL"), "Basic");
    assert_eq!(plan("DeviceEvents_CL"), "Analytics");
}

#[test]
fn the_committed_template_is_what_the_binary_generates() {
    let fresh = generate(&["--config", &estimate_config()]);
    let committed = std::fs::read_to_string(repo_root().join(COMMITTED)).unwrap();
    assert!(
        committed == fresh,
        "{COMMITTED} is stale: regenerate it from the repository root with \
         `cargo run -p defender-ingest -- schemas dcr --config examples/estimate.toml`"
    );
}

#[test]
fn it_prints_one_config_section_per_rule_for_its_own_endpoint_and_tables() {
    let (text, stdout) = generate_and_print(&[]);
    let t: Value = serde_json::from_str(&text).unwrap();
    let rules = resources(&t, "Microsoft.Insights/dataCollectionRules");
    assert_eq!(rules.len(), 3);
    for (i, rule) in rules.iter().enumerate() {
        let n = i + 1;
        let tables: Vec<String> = t["outputs"][format!("dcr{n}Tables")]["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| format!("{:?}", v.as_str().unwrap()))
            .collect();
        let section = format!(
            "[sentinel.dcrs.<dcr{n}ImmutableId>]   # {}\nendpoint = \"<dcr{n}LogsIngestionEndpoint>\"\ntables = [{}]\n",
            rule["name"].as_str().unwrap(),
            tables.join(", ")
        );
        assert!(stdout.contains(&section), "{section}\nnot in\n{stdout}");
    }
}
