//! End to end: generated traffic for every table → `defender-ingest run` → the Parquet archive
//! on a local directory and on Azurite → read back by pyarrow. Checks row counts per table,
//! column types, exact 18-digit longs, 7-digit timestamps and the accounting against the
//! generator's ledger.

use std::{io::Write, path::Path};

use defender_core::Catalog;
use defender_gen::{GenOptions, Ledger, Target};
use defender_tests::{check_accounting, infra, python, readback, run_cli, run_summary};
use serde_json::Value;

/// Writes two inputs (envelope messages, and gzip'd bare records) covering every table, with
/// quirks and broken records; returns the merged ledger.
fn generate_inputs(dir: &Path, records: u64) -> Ledger {
    let catalog = Catalog::embedded();
    let mut ledger = Ledger::default();
    let mut add = |l: Ledger| {
        ledger.lines += l.lines;
        ledger.bytes += l.bytes;
        for (t, tl) in l.tables {
            let e = ledger.tables.entry(t).or_default();
            e.records += tl.records;
            e.quirky += tl.quirky;
            for (r, n) in tl.bad {
                *e.bad.entry(r).or_default() += n;
            }
        }
    };
    // Every table at least a few times, whatever the volume weights.
    for (i, t) in catalog.tables().iter().enumerate() {
        let opts = GenOptions {
            seed: 100 + i as u64,
            tables: vec![t.table.clone()],
            target: Target::Records(20),
            envelope: true,
            quirks: 0.1,
            bad: 0.05,
            ..GenOptions::default()
        };
        let mut f = std::fs::File::create(dir.join(format!("table-{i:02}.json"))).unwrap();
        add(defender_gen::generate(&catalog, &opts, &mut f).unwrap());
    }
    let mixed = GenOptions {
        seed: 7,
        target: Target::Records(records),
        envelope: false,
        quirks: 0.05,
        bad: 0.02,
        ..GenOptions::default()
    };
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(dir.join("mixed.ndjson.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    add(defender_gen::generate(&catalog, &mixed, &mut gz).unwrap());
    gz.finish().unwrap().flush().unwrap();
    ledger
}

/// pyarrow reads back, per table, exactly the rows the run says it wrote, with the schema's types.
fn check_readback(rb: &Value, summary: &Value) {
    let catalog = Catalog::embedded();
    let read = rb["tables"].as_object().unwrap();
    for (table, s) in summary["tables"].as_object().unwrap() {
        let written = s["written_archive"].as_u64().unwrap();
        if written == 0 {
            assert!(!read.contains_key(table), "{table}: no rows written, no files");
            continue;
        }
        let r = &read[table];
        assert_eq!(r["rows"].as_u64().unwrap(), written, "{table}: rows read back");
        let columns = r["columns"].as_object().unwrap();
        if let Some(schema) = catalog.get(table) {
            for c in schema.decoded_columns() {
                let expected = match c.ty.arrow_type().to_string().as_str() {
                    "Utf8" => "string".to_string(),
                    "Int64" => "int64".to_string(),
                    "Int32" => "int32".to_string(),
                    "Float64" => "double".to_string(),
                    "Boolean" => "bool".to_string(),
                    _ => "timestamp[ns, tz=UTC]".to_string(),
                };
                assert_eq!(columns[&c.name], expected, "{table}.{}", c.name);
            }
            assert_eq!(columns["_Extra"], "string");
        } else {
            assert!(s["unknown_table"].as_bool().unwrap(), "{table} is an unknown table");
            assert_eq!(columns["_Raw"], "string");
        }
    }
}

#[test]
fn every_table_to_a_local_archive_read_back_by_pyarrow() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = generate_inputs(dir.path(), 3000);
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("archive");
    let summary_path = out.path().join("summary.json");
    let input = format!("{}/*.json", dir.path().display());
    let gz = format!("{}/*.ndjson.gz", dir.path().display());
    run_cli(
        &[
            "run",
            "--input",
            &input,
            &gz,
            "--archive",
            archive.to_str().unwrap(),
            "--summary",
            summary_path.to_str().unwrap(),
        ],
        &[],
    );
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    check_accounting(&summary, &ledger);
    assert!(ledger.tables.values().any(|t| !t.bad.is_empty()), "the inputs hold broken records");
    let rb = readback(archive.to_str().unwrap());
    check_readback(&rb, &summary);
    assert!(
        rb["files"].as_array().unwrap().iter().all(|f| {
            let f = f.as_str().unwrap();
            f.starts_with("table=") && f.contains("/date=") && f.contains("/hour=") && f.ends_with(".parquet")
        }),
        "hive layout: {}",
        rb["files"]
    );

    // A replay of the same input rewrites the same files: the archive has no duplicates.
    run_cli(&["run", "--input", &input, &gz, "--archive", archive.to_str().unwrap(), "--json"], &[]);
    let again = readback(archive.to_str().unwrap());
    assert_eq!(again["files"], rb["files"]);
    check_readback(&again, &summary);
}

#[test]
fn longs_and_timestamps_survive_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("fixture.json");
    let rec = |report: &str, ts: &str| {
        format!(
            r#"{{"time":"2026-11-20T10:59:00Z","tenantId":"t","category":"AdvancedHunting-DeviceInfo","properties":{{"Timestamp":"{ts}","DeviceId":"d","ReportId":{report},"OSBuild":"-"}}}}"#
        )
    };
    let lines = [
        rec("639199803770463703", "2026-11-20T10:30:00.1234567Z"),
        rec("-9007199254740993", "2026-11-20T10:31:00.0000001Z"),
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let archive = dir.path().join("archive");
    let out =
        run_cli(&["run", "--input", input.to_str().unwrap(), "--archive", archive.to_str().unwrap(), "--json"], &[]);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["tables"]["DeviceInfo"]["written_archive"], 2);
    assert_eq!(summary["tables"]["DeviceInfo"]["kept_in_extra"]["OSBuild"], 2);
    let rb = readback(archive.to_str().unwrap());
    let t = &rb["tables"]["DeviceInfo"];
    assert_eq!(t["max_abs_long"]["ReportId"].as_u64(), Some(639_199_803_770_463_703));
    assert_eq!(t["rows"], 2);
    let ts: Vec<&str> =
        t["timestamps_sample"]["Timestamp"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(ts, vec!["2026-11-20T10:30:00.123456700Z", "2026-11-20T10:31:00.000000100Z"]);
    assert_eq!(t["null_counts"]["OSBuild"], 2, "the lossy value is null in its column");
}

#[test]
fn every_table_to_azurite_read_back_by_pyarrow() {
    let endpoint = infra("DI_AZURITE_BLOB");
    let url = endpoint.trim_end_matches('/').trim_end_matches("/devstoreaccount1").to_string();
    let container = format!("archive{}", std::process::id());
    python("azurite.py", &["create-container", &endpoint, &container]);
    let dir = tempfile::tempdir().unwrap();
    let ledger = generate_inputs(dir.path(), 1000);
    let out = tempfile::tempdir().unwrap();
    let summary_path = out.path().join("summary.json");
    let archive = format!("az://{container}/defender");
    run_cli(
        &[
            "run",
            "--input",
            &format!("{}/*.json", dir.path().display()),
            &format!("{}/*.ndjson.gz", dir.path().display()),
            "--archive",
            &archive,
            "--summary",
            summary_path.to_str().unwrap(),
        ],
        &[("AZURE_STORAGE_USE_EMULATOR", "true"), ("AZURITE_BLOB_STORAGE_URL", &url)],
    );
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    check_accounting(&summary, &ledger);
    let rb = readback(&archive);
    check_readback(&rb, &summary);
    assert!(rb["files"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().contains("table=DeviceProcessEvents/")));
}

#[test]
fn the_archive_policy_selects_and_filters_rows_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("fixture.json");
    let lines = [
        r#"{"time":"2026-11-20T10:59:00Z","category":"AdvancedHunting-DeviceInfo","properties":{"Timestamp":"2026-11-20T10:30:00Z","DeviceId":"a","OSBuild":22631}}"#,
        r#"{"time":"2026-11-20T10:59:00Z","category":"AdvancedHunting-DeviceInfo","properties":{"Timestamp":"2026-11-20T10:30:00Z","DeviceId":"b","OSBuild":19045}}"#,
        r#"{"time":"2026-11-20T10:59:00Z","category":"AdvancedHunting-AlertInfo","properties":{"Timestamp":"2026-11-20T10:30:00Z","Title":"x"}}"#,
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[tables.AlertInfo]\narchive = false\n\n[tables.DeviceInfo]\narchive_filter = 'where OSBuild > 20000 | project-away OSBuild'\n",
    )
    .unwrap();
    let archive = dir.path().join("archive");
    let summary = run_summary(&config, &input, &archive, &[]);
    let info = &summary["tables"]["DeviceInfo"];
    assert_eq!(
        (info["records_in"].as_u64(), info["written_archive"].as_u64(), info["filtered"].as_u64()),
        (Some(2), Some(1), Some(1))
    );
    let alert = &summary["tables"]["AlertInfo"];
    assert_eq!((alert["written_archive"].as_u64(), alert["filtered"].as_u64()), (Some(0), Some(1)));
    let rb = readback(archive.to_str().unwrap());
    assert_eq!(rb["tables"]["DeviceInfo"]["rows"], 1);
    assert!(rb["tables"]["DeviceInfo"]["columns"].get("OSBuild").is_none(), "projected away in the archive");
    assert!(rb["tables"].get("AlertInfo").is_none(), "not archived");
}
