//! Helpers of the integration tests: the test infrastructure's addresses (from the environment
//! written by `scripts/test-infra.sh start`), the built binary, and the independent Parquet
//! reader (`tests/python/readback.py`, pyarrow).
//!
//! A test that needs the infrastructure fails with a message saying how to start it: it never
//! passes silently without it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

pub mod eventhubs;
pub mod fuzz;
pub mod kafka;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repository").to_path_buf()
}

/// A variable set by the test infrastructure script, or a panic that says how to get it.
pub fn infra(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: this test needs the test infrastructure. Run `bash scripts/test.sh`, or \
             `bash scripts/test-infra.sh install && bash scripts/test-infra.sh start` and \
             `source target/test-infra/env` before `cargo test`"
        )
    })
}

/// The `defender-ingest` binary of this build (built by `scripts/test.sh` before the tests).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/defender-ingest
    let bin = exe.parent().and_then(Path::parent).expect("target/<profile>").join("defender-ingest");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p defender-ingest` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Runs the binary with `args` and `envs`; panics with its output when it fails.
pub fn run_cli(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let out = Command::new(binary()).args(args).envs(envs.iter().copied()).output().expect("spawn defender-ingest");
    assert!(
        out.status.success(),
        "defender-ingest {args:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `defender-ingest run --config C --input I --archive A --json` with `envs`: the run's summary.
pub fn run_summary(config: &Path, input: &Path, archive: &Path, envs: &[(&str, &str)]) -> Value {
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let (config, input, archive) = (path(config), path(input), path(archive));
    let out = run_cli(&["run", "--config", &config, "--input", &input, "--archive", &archive, "--json"], envs);
    serde_json::from_slice(&out.stdout).expect("run --json prints the summary")
}

/// Runs a Python helper of `tests/python/` with the test venv's interpreter.
pub fn python(script: &str, args: &[&str]) -> String {
    let py = infra("DI_PYTHON");
    let path = repo_root().join("tests/python").join(script);
    let out = Command::new(&py).arg(&path).args(args).output().expect("spawn python");
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Reads every Parquet file under `root` (a directory or `az://container/prefix`) with pyarrow.
pub fn readback(root: &str) -> Value {
    let mut args = vec![root.to_string()];
    if root.starts_with("az://") {
        args.push("--blob-endpoint".into());
        args.push(infra("DI_AZURITE_BLOB"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    serde_json::from_str(&python("readback.py", &args)).expect("readback.py prints JSON")
}

/// Every value of `column` in the archive under `root`, per table (pyarrow).
pub fn readback_values(root: &str, column: &str) -> BTreeMap<String, Vec<Value>> {
    let mut args = vec![root.to_string(), "--values".into(), column.into()];
    if root.starts_with("az://") {
        args.push("--blob-endpoint".into());
        args.push(infra("DI_AZURITE_BLOB"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out: Value = serde_json::from_str(&python("readback.py", &args)).expect("readback.py prints JSON");
    serde_json::from_value(out["values"].clone()).expect("values per table")
}

/// How many times the archive under `root` holds each DeviceInfo `ReportId` (the record ids the
/// streaming tests give their messages' records, from 0).
pub fn archived_report_ids(root: &str) -> BTreeMap<i64, usize> {
    let mut ids = BTreeMap::new();
    for v in readback_values(root, "ReportId").remove("DeviceInfo").unwrap_or_default() {
        *ids.entry(v.as_i64().expect("ReportId is a long")).or_default() += 1;
    }
    ids
}

/// Every id of `0..n` is in `counts` exactly once, and nothing else is: no gap, no overlap.
pub fn assert_exactly_once(counts: &BTreeMap<i64, usize>, n: i64) {
    let missing: Vec<i64> = (0..n).filter(|id| !counts.contains_key(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {n} records never archived, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let twice: Vec<(&i64, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        twice.is_empty(),
        "{} records archived more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
    assert_eq!(counts.len() as i64, n, "no record that was not produced");
}

/// `records` of `table` came in, and the accounting balances for it and in total: records in =
/// archived + filtered + dead-lettered (for runs whose input is not a generator's ledger).
pub fn check_balanced(summary: &Value, table: &str, records: u64) {
    let t = &summary["tables"][table];
    assert_eq!(t["records_in"].as_u64(), Some(records), "{table} records in: {summary}");
    for t in [t, &summary["totals"]] {
        let dead: u64 = t["dead_lettered"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(
            t["records_in"].as_u64().unwrap(),
            t["written_archive"].as_u64().unwrap() + t["filtered"].as_u64().unwrap() + dead,
            "records in = delivered + filtered + dead-lettered: {summary}"
        );
    }
}

/// The summary's per-table accounting matches the ledger exactly and balances.
pub fn check_accounting(summary: &Value, ledger: &defender_gen::Ledger) {
    let tables = summary["tables"].as_object().unwrap();
    let mut expected_in = 0;
    for (table, l) in &ledger.tables {
        let s = &tables.get(table).unwrap_or_else(|| panic!("no accounting for {table}"));
        let dead: BTreeMap<String, u64> =
            s["dead_lettered"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect();
        assert_eq!(s["records_in"].as_u64().unwrap(), l.records, "{table}: records in");
        assert_eq!(dead, l.bad, "{table}: dead letters by reason");
        let bad: u64 = l.bad.values().sum();
        let decoded = l.records - bad;
        if table.starts_with("DeviceTvm") {
            // Archived only when the config names them; always off the Sentinel path.
            assert_eq!(s["written_archive"].as_u64().unwrap(), 0, "{table}: TVM not archived by default");
            assert_eq!(s["filtered"].as_u64().unwrap(), decoded, "{table}: filtered");
            assert_eq!(s["dropped"]["tvm"].as_u64().unwrap_or(0), decoded, "{table}: dropped from the Sentinel path");
        } else {
            assert_eq!(s["written_archive"].as_u64().unwrap(), decoded, "{table}: written");
            assert_eq!(s["filtered"].as_u64().unwrap(), 0);
        }
        expected_in += l.records;
    }
    assert_eq!(tables.len(), ledger.tables.len(), "no table the generator did not write");
    let totals = &summary["totals"];
    let dead: u64 = totals["dead_lettered"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(totals["records_in"].as_u64().unwrap(), expected_in);
    assert_eq!(
        totals["records_in"].as_u64().unwrap(),
        totals["written_archive"].as_u64().unwrap() + totals["filtered"].as_u64().unwrap() + dead
    );
}

/// The `[sentinel]` and `[sentinel.auth]` sections of a config sending to the local Logs
/// Ingestion server at `endpoint` (DCR `dcr`, trusting `ca`), with the client secret in the
/// environment variable `secret_env` and tokens from `authority` (tenant-1, app-1).
pub fn sentinel_toml(endpoint: &str, dcr: &str, ca: &Path, secret_env: &str, authority: &str) -> String {
    format!(
        r#"
[sentinel]
endpoint = "{endpoint}"
dcr_immutable_id = "{dcr}"
ca_file = "{ca}"

[sentinel.auth]
method = "client_secret"
tenant_id = "tenant-1"
client_id = "app-1"
client_secret_env = "{secret_env}"
authority_host = "{authority}"
"#,
        ca = ca.display()
    )
}

/// The stream declarations `schemas dcr` generates for `config`: what the strict server enforces.
pub fn declared_streams(config: &Path, dir: &Path) -> BTreeMap<String, Vec<String>> {
    run_cli(&["schemas", "dcr", "--config", config.to_str().unwrap(), "--out", dir.to_str().unwrap()], &[]);
    let template: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("defender-sentinel.json")).unwrap()).unwrap();
    let mut streams = BTreeMap::new();
    for r in template["resources"].as_array().unwrap() {
        if r["type"] != "Microsoft.Insights/dataCollectionRules" {
            continue;
        }
        for (name, decl) in r["properties"]["streamDeclarations"].as_object().unwrap() {
            let columns =
                decl["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
            streams.insert(name.clone(), columns);
        }
    }
    streams
}
