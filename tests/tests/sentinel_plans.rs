//! Table plans end to end (issue 15): a config that sends DeviceNetworkEvents to an Auxiliary
//! table and DeviceProcessEvents to an Analytics one. `schemas dcr --config` creates both tables
//! with those plans; the strict local Logs Ingestion server, given that template, refuses what
//! the service refuses for Auxiliary (calls spanning 30 minutes or more, nested JSON into
//! non-dynamic columns); `run` over a sample spanning hours of event time gets every row through
//! with no refused call; `estimate` prices each table at its plan.

use std::path::Path;

use defender_core::Catalog;
use defender_gen::{GenOptions, Target};
use defender_ingestion_server::{ServerConfig, TablePlan, TestServer};
use defender_tests::{declared_streams, run_cli};
use serde_json::Value;

const DCR: &str = "dcr-00000000000000000000000000000015";
const SECRET_ENV: &str = "DI_TEST_PLANS_SECRET";
const NETWORK: &str = "Custom-DeviceNetworkEvents_CL";
const PROCESS: &str = "Custom-DeviceProcessEvents_CL";

fn config(endpoint: &str, authority: &str, ca: &Path) -> String {
    r#"
[tables.default]
sentinel = false

[tables.DeviceNetworkEvents]
sentinel = true
plan = "auxiliary"

[tables.DeviceProcessEvents]
sentinel = true

[pipeline]
flush_rows = 100000
flush_seconds = 60
"#
    .to_string()
        + &defender_tests::sentinel_toml(endpoint, DCR, ca, SECRET_ENV, authority)
}

fn nanos(v: &Value) -> i64 {
    let t = v.as_str().unwrap();
    defender_core::policy::parse_datetime(t).unwrap_or_else(|| panic!("not a datetime: {t}"))
}

#[test]
fn auxiliary_and_analytics_tables_from_one_config_deploy_run_and_estimate_at_their_plans() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sample.json");
    // About 2,400 records at 0.25 per second of event time: close to three hours, in one batch.
    let options = GenOptions {
        seed: 15,
        tables: vec!["DeviceNetworkEvents".into(), "DeviceProcessEvents".into()],
        target: Target::Records(2_400),
        envelope: false,
        events_per_second: 0.25,
        ..GenOptions::default()
    };
    defender_gen::generate(&Catalog::embedded(), &options, &mut std::fs::File::create(&input).unwrap()).unwrap();
    let (mut counts, mut times) = ([0u64; 2], Vec::new());
    for line in std::fs::read_to_string(&input).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        counts[usize::from(r["category"] == "AdvancedHunting-DeviceProcessEvents")] += 1;
        times.push(nanos(&r["properties"]["Timestamp"]));
    }
    let span_hours = (times.iter().max().unwrap() - times.iter().min().unwrap()) as f64 / 3.6e12;
    assert!(span_hours > 2.0, "a sample spanning hours: {span_hours:.2} h");
    let [network, process] = counts;

    // schemas dcr --config: both tables, with their plans (the endpoint does not matter to it).
    let (ca, config_path) = (dir.path().join("ca.pem"), dir.path().join("c.toml"));
    std::fs::write(&config_path, config("https://127.0.0.1:1", "https://127.0.0.1:1", &ca)).unwrap();
    let deploy = dir.path().join("deploy");
    let streams = declared_streams(&config_path, &deploy);
    let template: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy.join("defender-sentinel.json")).unwrap()).unwrap();
    let plan_of = |table: &str| {
        template["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["properties"]["schema"]["name"] == table)
            .map(|r| r["properties"]["plan"].as_str().unwrap().to_string())
    };
    assert_eq!(plan_of("DeviceNetworkEvents_CL").as_deref(), Some("Auxiliary"));
    assert_eq!(plan_of("DeviceProcessEvents_CL").as_deref(), Some("Analytics"));
    assert_eq!(streams.len(), 2);
    // One source of truth: --plan cannot contradict the config.
    let refused = std::process::Command::new(defender_tests::binary())
        .args(["schemas", "dcr", "--config", config_path.to_str().unwrap(), "--plan", "DeviceNetworkEvents=basic"])
        .args(["--out", dir.path().join("other").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--plan with --config"));

    // The strict server knows each stream's plan from the template.
    let server_config = ServerConfig::new(
        std::collections::BTreeMap::from([(DCR.to_string(), streams)]),
        "tenant-1",
        "app-1",
        "s3cret",
    )
    .with_template(&template)
    .unwrap();
    assert_eq!(server_config.rules[NETWORK].plan, TablePlan::Auxiliary);
    assert_eq!(server_config.rules[PROCESS].plan, TablePlan::Analytics);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = runtime.block_on(TestServer::start(server_config)).unwrap();
    std::fs::write(&ca, &server.ca_pem).unwrap();
    std::fs::write(&config_path, config(&server.endpoint, &server.authority, &ca)).unwrap();

    let (c, i, a) = (config_path.to_str().unwrap(), input.to_str().unwrap(), dir.path().join("archive"));
    let out = run_cli(
        &["run", "--config", c, "--input", i, "--archive", a.to_str().unwrap(), "--json"],
        &[(SECRET_ENV, "s3cret")],
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let requests = server.requests();
    let refused: Vec<_> = requests.iter().filter(|r| r.status != 204).collect();
    assert!(refused.is_empty(), "no call refused: {refused:?}");
    let network_calls: Vec<_> = requests.iter().filter(|r| r.stream == NETWORK).collect();
    assert!(network_calls.len() >= 5, "hours of Auxiliary rows in calls under 30 minutes: {}", network_calls.len());
    assert_eq!(server.accepted(DCR, NETWORK).len() as u64, network, "every network row once");
    assert_eq!(server.accepted(DCR, PROCESS).len() as u64, process, "every process row once");
    assert!(
        server.accepted(DCR, NETWORK).iter().all(|r| r["TimeGenerated"].as_str().unwrap().len() == 27),
        "Auxiliary TimeGenerated to the microsecond"
    );
    // Accounting: every record in is delivered, filtered or dead-lettered, per table.
    for (table, n) in [("DeviceNetworkEvents", network), ("DeviceProcessEvents", process)] {
        let t = &summary["tables"][table];
        let dead: u64 = t["dead_lettered"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(t["records_in"].as_u64().unwrap(), n, "{table}");
        assert_eq!(t["delivered"].as_u64().unwrap() + t["filtered"].as_u64().unwrap() + dead, n, "{table}");
        assert_eq!(t["sent_sentinel"].as_u64().unwrap(), n, "{table}: all sent");
    }
    runtime.block_on(server.stop());

    // estimate: each table at its plan; all-Analytics stays the baseline.
    let out = run_cli(&["estimate", "--config", c, "--input", i, "--json"], &[]);
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    let table = |name: &str| e["tables"].as_array().unwrap().iter().find(|t| t["table"] == name).unwrap().clone();
    let (net, proc_) = (table("DeviceNetworkEvents"), table("DeviceProcessEvents"));
    assert_eq!(net["plan"], "auxiliary");
    assert_eq!(proc_["plan"], "analytics");
    let cost = |t: &Value, k: &str| t["cost_per_month"][k].as_f64().unwrap();
    assert_eq!(cost(&net, "at_plan"), cost(&net, "auxiliary_after"), "network billed at Auxiliary");
    assert_eq!(cost(&proc_, "at_plan"), cost(&proc_, "analytics_after"), "process billed at Analytics");
    assert!(cost(&net, "at_plan") < cost(&net, "analytics_after") / 10.0, "Auxiliary costs far less");
    assert!(
        net["billed_bytes_at_plan"].as_u64().unwrap() > net["billed_bytes_after"].as_u64().unwrap(),
        "Auxiliary also bills Type and _TenantId"
    );
    let plan_saving = e["plan_saving_per_month"].as_f64().unwrap();
    let expected = cost(&net, "analytics_after") - cost(&net, "at_plan");
    assert!((plan_saving - expected).abs() < 1e-6, "{plan_saving} vs {expected}");
    let text = String::from_utf8(run_cli(&["estimate", "--config", c, "--input", i], &[]).stdout).unwrap();
    assert!(text.contains("table plans save"), "{text}");
    let row = text.lines().find(|l| l.starts_with("DeviceNetworkEvents ")).unwrap();
    assert!(row.contains("auxiliary"), "{row}");
}
