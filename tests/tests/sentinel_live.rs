//! `defender-ingest run` sending to the strict local Logs Ingestion server (TLS, real client
//! credentials token flow), with the DCR streams taken from `schemas dcr` for the same config:
//! every selected row exactly once without faults, at least once under every injected fault,
//! and the accounting shown.

use std::{collections::BTreeMap, path::Path};

use defender_core::Catalog;
use defender_gen::{GenOptions, Target};
use defender_ingestion_server::{Fault, ServerConfig, TestServer};
use defender_tests::{declared_streams, run_cli};
use serde_json::Value;

const DCR: &str = "dcr-00000000000000000000000000000001";
const SECRET_ENV: &str = "DI_TEST_SENTINEL_SECRET";

fn config(endpoint: &str, authority: &str, ca: &Path) -> String {
    r#"
[tables.default]
sentinel = false

[tables.DeviceNetworkEvents]
sentinel = true
sentinel_filter = '''
where not(ActionType == "ConnectionSuccess" and RemotePort in (80, 443))
| project-away AdditionalFields
'''

[tables.DeviceProcessEvents]
sentinel = true
"#
    .to_string()
        + &defender_tests::sentinel_toml(endpoint, DCR, ca, SECRET_ENV, authority)
}

struct Setup {
    _dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    server: TestServer,
    config: std::path::PathBuf,
    input: std::path::PathBuf,
    archive: std::path::PathBuf,
    /// (DeviceId, ReportId) of the DeviceNetworkEvents rows the filter keeps, from the raw input.
    expected_network: Vec<(String, i64)>,
    process_records: usize,
    /// The stream declarations `schemas dcr` generates for the config.
    streams: BTreeMap<String, Vec<String>>,
    ca: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sample.json");
    let options = GenOptions {
        seed: 5,
        tables: vec!["DeviceNetworkEvents".into(), "DeviceProcessEvents".into()],
        target: Target::Records(1200),
        envelope: false,
        ..GenOptions::default()
    };
    defender_gen::generate(&Catalog::embedded(), &options, &mut std::fs::File::create(&input).unwrap()).unwrap();
    let mut expected_network = Vec::new();
    let mut process_records = 0;
    for line in std::fs::read_to_string(&input).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let p = &r["properties"];
        match r["category"].as_str().unwrap() {
            "AdvancedHunting-DeviceProcessEvents" => process_records += 1,
            _ if !(p["ActionType"] == "ConnectionSuccess" && matches!(p["RemotePort"].as_i64(), Some(80 | 443))) => {
                expected_network.push((p["DeviceId"].as_str().unwrap().to_string(), p["ReportId"].as_i64().unwrap()))
            }
            _ => {}
        }
    }
    expected_network.sort();

    // Declare the streams from a config that names the final endpoint later: the streams do not
    // depend on it.
    let ca = dir.path().join("ca.pem");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, self::config("https://127.0.0.1:1", "https://127.0.0.1:1", &ca)).unwrap();
    let streams = declared_streams(&config, &dir.path().join("deploy"));
    assert_eq!(streams.len(), 2, "one stream per selected table");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = runtime
        .block_on(TestServer::start(ServerConfig::new(
            BTreeMap::from([(DCR.to_string(), streams.clone())]),
            "tenant-1",
            "app-1",
            "s3cret",
        )))
        .unwrap();
    std::fs::write(&ca, &server.ca_pem).unwrap();
    std::fs::write(&config, self::config(&server.endpoint, &server.authority, &ca)).unwrap();
    let archive = dir.path().join("archive");
    Setup { _dir: dir, runtime, server, config, input, archive, expected_network, process_records, streams, ca }
}

fn run(s: &Setup) -> Value {
    let out = run_cli(
        &[
            "run",
            "--config",
            s.config.to_str().unwrap(),
            "--input",
            s.input.to_str().unwrap(),
            "--archive",
            s.archive.to_str().unwrap(),
            "--json",
        ],
        &[(SECRET_ENV, "s3cret")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("s3cret"), "the secret never appears in the output");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn network_rows(s: &Setup) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> = s
        .server
        .accepted(DCR, "Custom-DeviceNetworkEvents_CL")
        .iter()
        .map(|r| (r["DeviceId"].as_str().unwrap().to_string(), r["ReportId"].as_i64().unwrap()))
        .collect();
    rows.sort();
    rows
}

#[test]
fn every_selected_row_is_delivered_exactly_once_without_faults() {
    let s = setup();
    let summary = run(&s);
    assert_eq!(network_rows(&s), s.expected_network, "exactly the filtered rows, once each");
    let process = s.server.accepted(DCR, "Custom-DeviceProcessEvents_CL");
    assert_eq!(process.len(), s.process_records);
    assert!(s.server.requests().iter().all(|r| r.status == 204 && r.gzip), "no call refused, all gzip'd");
    let t = &summary["tables"];
    assert_eq!(t["DeviceNetworkEvents"]["sent_sentinel"].as_u64().unwrap(), s.expected_network.len() as u64);
    assert_eq!(t["DeviceProcessEvents"]["sent_sentinel"].as_u64().unwrap(), s.process_records as u64);
    assert_eq!(summary["totals"]["records_in"], summary["totals"]["delivered"], "nothing filtered or dead");
    let network = s.server.accepted(DCR, "Custom-DeviceNetworkEvents_CL");
    assert!(network.iter().all(|r| !r.contains_key("AdditionalFields")), "projected away on the Sentinel path");
    assert!(process.iter().all(|r| r.contains_key("ProcessCommandLine")), "whole rows where no filter projects");
    s.runtime.block_on(s.server.stop());
}

#[test]
fn every_selected_row_lands_at_least_once_under_every_fault() {
    let s = setup();
    for fault in [
        Fault::Status { status: 429, retry_after: Some(1) },
        Fault::Status { status: 429, retry_after: Some(1) },
        Fault::Status { status: 503, retry_after: None },
        Fault::Status { status: 500, retry_after: None },
        Fault::Drop,
        Fault::AcceptThenDrop,
        Fault::Slow(std::time::Duration::from_millis(500)),
    ] {
        s.server.inject(fault);
    }
    // (A revoked token mid-run — 401, one refresh — is covered by the sink's own end-to-end tests.)
    let summary = run(&s);
    let mut got = network_rows(&s);
    got.dedup();
    assert_eq!(got, s.expected_network, "every filtered row at least once, no other row");
    let statuses: Vec<u16> = s.server.requests().iter().map(|r| r.status).collect();
    for status in [429, 503, 500, 0, 204] {
        assert!(statuses.contains(&status), "{status} was seen: {statuses:?}");
    }
    // Duplicates come only from the unknown outcome (AcceptThenDrop), and carry the same id.
    let all = s.server.accepted(DCR, "Custom-DeviceNetworkEvents_CL");
    let process = s.server.accepted(DCR, "Custom-DeviceProcessEvents_CL");
    let ids: std::collections::BTreeSet<&str> =
        all.iter().chain(&process).map(|r| r["RecordId_CF"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), s.expected_network.len() + s.process_records, "one id per record");
    let t = &summary["tables"];
    assert_eq!(t["DeviceNetworkEvents"]["sent_sentinel"].as_u64().unwrap(), s.expected_network.len() as u64);
    s.runtime.block_on(s.server.stop());
}

/// Two DCRs of kind Direct, each with its own logs ingestion endpoint (two servers; one token
/// for both), configured as `schemas dcr` says: `[sentinel.dcrs.<id>]` with `endpoint` and
/// `tables`, no `[sentinel] endpoint`. Each table's rows reach its own DCR's endpoint only.
#[test]
fn with_a_dcr_per_table_each_tables_rows_reach_its_own_dcrs_endpoint() {
    const DCR2: &str = "dcr-00000000000000000000000000000002";
    const PROCESS: &str = "Custom-DeviceProcessEvents_CL";
    const NETWORK: &str = "Custom-DeviceNetworkEvents_CL";
    let s = setup();
    let process_streams = BTreeMap::from([(PROCESS.to_string(), s.streams[PROCESS].clone())]);
    let second = s
        .runtime
        .block_on(TestServer::start_trusting(
            ServerConfig::new(BTreeMap::from([(DCR2.to_string(), process_streams)]), "tenant-1", "app-1", "s3cret"),
            &s.server,
        ))
        .unwrap();
    std::fs::write(&s.ca, format!("{}{}", s.server.ca_pem, second.ca_pem)).unwrap();
    let one_endpoint = config(&s.server.endpoint, &s.server.authority, &s.ca);
    let per_dcr = one_endpoint
        .replace(&format!("endpoint = \"{}\"\ndcr_immutable_id = \"{DCR}\"\n", s.server.endpoint), "")
        .replace(
            "[sentinel.auth]",
            &format!(
                "[sentinel.dcrs.{DCR}]\nendpoint = \"{}\"\ntables = [\"DeviceNetworkEvents\"]\n\n\
                 [sentinel.dcrs.{DCR2}]\nendpoint = \"{}\"\ntables = [\"DeviceProcessEvents\"]\n\n[sentinel.auth]",
                s.server.endpoint, second.endpoint
            ),
        );
    assert!(!per_dcr.contains("dcr_immutable_id"), "{per_dcr}");
    std::fs::write(&s.config, per_dcr).unwrap();

    let summary = run(&s);
    assert_eq!(network_rows(&s), s.expected_network, "DeviceNetworkEvents at the first DCR's endpoint, once each");
    assert_eq!(second.accepted(DCR2, PROCESS).len(), s.process_records, "DeviceProcessEvents at the second's");
    assert!(s.server.accepted(DCR, PROCESS).is_empty(), "no process row at the first endpoint");
    assert!(s.server.requests().iter().all(|r| r.status == 204 && r.dcr == DCR && r.stream == NETWORK));
    assert!(second.requests().iter().all(|r| r.status == 204 && r.dcr == DCR2 && r.stream == PROCESS));
    assert!(!second.requests().is_empty());
    let t = &summary["tables"];
    assert_eq!(t["DeviceNetworkEvents"]["sent_sentinel"].as_u64().unwrap(), s.expected_network.len() as u64);
    assert_eq!(t["DeviceProcessEvents"]["sent_sentinel"].as_u64().unwrap(), s.process_records as u64);
    s.runtime.block_on(second.stop());
    s.runtime.block_on(s.server.stop());
}
