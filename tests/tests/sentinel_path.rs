//! The Sentinel path of `run` (stored as request bodies by the dry-run sink) carries exactly the
//! rows and columns the filter keeps, the same rows `estimate` counts, while the archive keeps
//! everything; TVM tables never reach it.

use std::{collections::BTreeSet, io::Read, path::Path};

use defender_core::Catalog;
use defender_gen::{GenOptions, Target};
use defender_tests::{readback, run_cli, run_summary};
use serde_json::Value;

const CONFIG: &str = r#"
[tables.default]
sentinel = true          # everything, so TVM has to be refused by the pipeline itself

[tables.DeviceNetworkEvents]
sentinel = true
sentinel_filter = '''
where not(ActionType == "ConnectionSuccess" and RemotePort in (80, 443))
| project-away AdditionalFields
'''

[tables.DeviceTvmSoftwareInventory]
archive = true           # TVM reaches the archive only when asked

[sentinel]
dry_run_dir = "SENTINEL_DIR"
"#;

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

/// Every row of every body stored for `stream`.
fn sent_rows(sentinel: &Path, stream: &str) -> Vec<serde_json::Map<String, Value>> {
    let mut rows = Vec::new();
    for f in files_under(&sentinel.join(stream)) {
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&f).unwrap()).read_to_string(&mut text).unwrap();
        assert!(text.len() <= 1_048_576, "{}: over 1 MiB of JSON", f.display());
        let Value::Array(body) = serde_json::from_str(&text).unwrap() else { panic!("a body is a JSON array") };
        rows.extend(body.into_iter().map(|r| r.as_object().unwrap().clone()));
    }
    rows
}

#[test]
fn the_filter_sends_exactly_its_rows_and_columns_while_the_archive_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::embedded();
    let input = dir.path().join("sample.json");
    let mut f = std::fs::File::create(&input).unwrap();
    let net = GenOptions {
        seed: 21,
        tables: vec!["DeviceNetworkEvents".into()],
        target: Target::Records(2000),
        envelope: false,
        ..GenOptions::default()
    };
    let tvm =
        GenOptions { tables: vec!["DeviceTvmSoftwareInventory".into()], target: Target::Records(30), ..net.clone() };
    defender_gen::generate(&catalog, &net, &mut f).unwrap();
    defender_gen::generate(&catalog, &tvm, &mut f).unwrap();
    drop(f);

    // What the filter must keep, computed from the input independently of our decoder and filter.
    let mut expected: Vec<(String, i64)> = Vec::new();
    let mut network_records = 0u64;
    for line in std::fs::read_to_string(&input).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        if r["category"] != "AdvancedHunting-DeviceNetworkEvents" {
            continue;
        }
        network_records += 1;
        let p = &r["properties"];
        let web = p["ActionType"] == "ConnectionSuccess" && matches!(p["RemotePort"].as_i64(), Some(80 | 443));
        if !web {
            expected.push((p["DeviceId"].as_str().unwrap().to_string(), p["ReportId"].as_i64().unwrap()));
        }
    }
    expected.sort();
    assert!(
        !expected.is_empty() && (expected.len() as u64) < network_records,
        "the sample has rows on both sides of the filter"
    );

    let sentinel = dir.path().join("sentinel");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, CONFIG.replace("SENTINEL_DIR", sentinel.to_str().unwrap())).unwrap();
    let archive = dir.path().join("archive");
    let summary = run_summary(&config, &input, &archive, &[]);

    // Exactly those rows on the Sentinel path...
    let rows = sent_rows(&sentinel, "Custom-DeviceNetworkEvents_CL");
    let mut got: Vec<(String, i64)> =
        rows.iter().map(|r| (r["DeviceId"].as_str().unwrap().to_string(), r["ReportId"].as_i64().unwrap())).collect();
    got.sort();
    assert_eq!(got, expected);
    // ... with exactly those columns: every column of the table but AdditionalFields, by their
    // Sentinel names, plus TimeGenerated and RecordId_CF (null values are left out of a row).
    let schema = catalog.get("DeviceNetworkEvents").unwrap();
    let allowed: BTreeSet<String> = schema
        .decoded_columns()
        .iter()
        .filter(|c| c.name != "AdditionalFields")
        .map(|c| c.sentinel_name.clone())
        .chain(
            [
                "TimeGenerated",
                "RecordId_CF",
                "EnvelopeTime_CF",
                "EnvelopeTenantId_CF",
                "TimeReceivedBySvc_CF",
                "Extra_CF",
            ]
            .map(String::from),
        )
        .collect();
    for r in &rows {
        assert!(!r.contains_key("AdditionalFields"));
        assert!(r.contains_key("TimeGenerated"));
        // 32 hex digits: what estimate bills per row for it (billing::RECORD_ID_BYTES).
        assert_eq!(r["RecordId_CF"].as_str().unwrap().len(), 32);
        let keys: BTreeSet<String> = r.keys().cloned().collect();
        assert!(keys.is_subset(&allowed), "unexpected columns: {:?}", keys.difference(&allowed).collect::<Vec<_>>());
    }
    let stats = &summary["tables"]["DeviceNetworkEvents"];
    assert_eq!(stats["sent_sentinel"].as_u64().unwrap(), expected.len() as u64);
    assert_eq!(stats["delivered"].as_u64().unwrap(), network_records, "the archive takes every row");

    // TVM never reaches the Sentinel path, even under a default that sends everything.
    assert!(files_under(&sentinel).iter().all(|f| !f.to_str().unwrap().contains("DeviceTvm")));
    assert_eq!(summary["tables"]["DeviceTvmSoftwareInventory"]["sent_sentinel"], 0);
    assert_eq!(summary["tables"]["DeviceTvmSoftwareInventory"]["dropped"]["tvm"], 30);

    // The archive keeps everything, AdditionalFields included.
    let rb = readback(archive.to_str().unwrap());
    assert_eq!(rb["tables"]["DeviceNetworkEvents"]["rows"].as_u64().unwrap(), network_records);
    assert_eq!(rb["tables"]["DeviceNetworkEvents"]["columns"]["AdditionalFields"], "string");
    assert_eq!(rb["tables"]["DeviceTvmSoftwareInventory"]["rows"], 30);

    // estimate and filter check count the same rows.
    let out =
        run_cli(&["estimate", "--config", config.to_str().unwrap(), "--input", input.to_str().unwrap(), "--json"], &[]);
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = e["tables"].as_array().unwrap().iter().find(|t| t["table"] == "DeviceNetworkEvents").unwrap();
    assert_eq!(t["rows_kept"].as_u64().unwrap(), expected.len() as u64);
}
