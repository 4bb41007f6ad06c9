//! `estimate` and `filter check` as a user runs them: billed bytes against a hand computation,
//! the saving of a DeviceNetworkEvents filter, the per-column and per-group breakdown adding up
//! with savings that parse, and the HTML report rendered by headless Chromium with its charts
//! visible.

use std::{path::Path, process::Command};

use defender_core::Catalog;
use defender_gen::{GenOptions, Target};
use defender_tests::{infra, python, run_cli};
use serde_json::Value;

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn billed_bytes_match_a_hand_computation() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        &dir.path().join("fixture.json"),
        concat!(
            r#"{"time":"2026-11-20T10:59:00Z","tenantId":"t1","category":"AdvancedHunting-DeviceInfo","properties":{"Timestamp":"2026-11-20T10:30:00.1234567Z","DeviceId":"abc","ReportId":639199803770463703,"OSBuild":22631,"IsAzureADJoined":true,"MachineGroup":null}}"#,
            "\n",
            r#"{"time":"2026-11-20T11:00:00Z","category":"AdvancedHunting-DeviceInfo","properties":{"Timestamp":"2026-11-20T10:31:00Z","DeviceName":"wks-1.corp","OSBuild":"-"}}"#,
            "\n"
        ),
    );
    let config = write(
        &dir.path().join("c.toml"),
        "[tables.DeviceInfo]\nsentinel = true\nsentinel_filter = 'where OSBuild > 20000 | project DeviceId, ReportId, Timestamp'\n",
    );
    let out = run_cli(&["estimate", "--config", &config, "--input", &input, "--json"], &[]);
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = e["tables"].as_array().unwrap().iter().find(|t| t["table"] == "DeviceInfo").unwrap();
    // Record 1: Timestamp 28 + DeviceId "abc" 3 + ReportId 18 digits + OSBuild "22631" 5
    //   + IsAzureADJoined "true" 4 + _EnvelopeTime 28 + _EnvelopeTenantId "t1" 2 + TimeGenerated 28
    //   + RecordId_CF 32 hex digits = 148 (MachineGroup null and _Extra null: 0).
    // Record 2: Timestamp 28 + DeviceName "wks-1.corp" 10 + OSBuild null (the "-" is kept in _Extra)
    //   + _Extra `{"OSBuild":"-"}` 15 + _EnvelopeTime 28 + TimeGenerated 28 + RecordId_CF 32 = 141.
    assert_eq!(t["billed_bytes_before"], 148 + 141);
    // After the filter: record 1 only (OSBuild of record 2 is null: the comparison is false),
    // DeviceId 3 + ReportId 18 + Timestamp 28 + TimeGenerated 28 + RecordId_CF 32 = 109.
    assert_eq!(t["billed_bytes_after"], 109);
    assert_eq!(t["rows_kept"], 1);
    assert_eq!(t["columns_kept"], 3);
    // The same, per column: the two records' bytes of each column (Sentinel names) add up to
    // 148 + 141, and after the filter to 109.
    let columns = |side: &str| -> Vec<(String, u64)> {
        let mut c: Vec<(String, u64)> = t["detail"][side]["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["sentinel_column"].as_str().unwrap().to_string(), c["billed_bytes"].as_u64().unwrap()))
            .filter(|c| c.1 > 0) // every column of the table is listed, the empty ones with 0
            .collect();
        c.sort();
        c
    };
    let expect = |c: &[(&str, u64)]| -> Vec<(String, u64)> {
        let mut c: Vec<(String, u64)> = c.iter().map(|(n, b)| (n.to_string(), *b)).collect();
        c.sort();
        c
    };
    assert_eq!(
        columns("before"),
        expect(&[
            ("RecordId_CF", 64),
            ("TimeGenerated", 56),
            ("Timestamp", 56),
            ("EnvelopeTime_CF", 56),
            ("ReportId", 18),
            ("Extra_CF", 15),
            ("DeviceName", 10),
            ("OSBuild", 5),
            ("IsAzureADJoined", 4),
            ("DeviceId", 3),
            ("EnvelopeTenantId_CF", 2),
        ])
    );
    assert_eq!(
        columns("after"),
        expect(&[("RecordId_CF", 32), ("TimeGenerated", 28), ("Timestamp", 28), ("ReportId", 18), ("DeviceId", 3)])
    );
    // Grouped by OSPlatform (DeviceInfo's default), null in both: one group of the whole table.
    let groups = &t["detail"]["before"]["groups"];
    assert_eq!(groups["column"], "OSPlatform");
    assert_eq!(groups["values"][0]["value"], "(empty)");
    assert_eq!(
        (groups["values"][0]["rows"].as_u64(), groups["values"][0]["billed_bytes"].as_u64()),
        (Some(2), Some(289))
    );
    assert_eq!(t["detail"]["after"]["groups"]["values"][0]["billed_bytes"], 109);
    // Two minutes of event time (10:30:00.1234567 to 10:31:00 is 59.8765433 s).
    assert!((e["event_span_seconds"].as_f64().unwrap() - 59.876_543_3).abs() < 1e-6);
}

const NETWORK_FILTER: &str = r#"
# Everything to Sentinel by default: TVM tables must still stay off that path.
[tables.default]
sentinel = true

[tables.DeviceNetworkEvents]
sentinel = true
sentinel_filter = '''
where not(ActionType == "ConnectionSuccess" and RemotePort in (80, 443))
| project-away AdditionalFields
'''
"#;

fn network_sample(dir: &Path) -> String {
    let options = GenOptions {
        seed: 11,
        tables: vec!["DeviceNetworkEvents".into(), "DeviceProcessEvents".into()],
        target: Target::Records(1500),
        ..GenOptions::default()
    };
    let tvm = GenOptions {
        tables: vec!["DeviceTvmSoftwareInventory".into()],
        target: Target::Records(20),
        ..options.clone()
    };
    let path = dir.join("sample.json");
    let mut f = std::fs::File::create(&path).unwrap();
    defender_gen::generate(&Catalog::embedded(), &options, &mut f).unwrap();
    defender_gen::generate(&Catalog::embedded(), &tvm, &mut f).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_network_filter_shows_its_saving_in_filter_check_and_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let sample = network_sample(dir.path());
    let config = write(&dir.path().join("c.toml"), NETWORK_FILTER);
    let out = run_cli(&["estimate", "--config", &config, "--input", &sample, "--json"], &[]);
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tables = e["tables"].as_array().unwrap();
    let net = tables.iter().find(|t| t["table"] == "DeviceNetworkEvents").unwrap();
    let (before, after) = (net["billed_bytes_before"].as_u64().unwrap(), net["billed_bytes_after"].as_u64().unwrap());
    assert!(after < before, "the filter saves: {after} < {before}");
    assert!(net["rows_kept"].as_u64().unwrap() < net["records"].as_u64().unwrap());
    assert_eq!(net["columns_kept"].as_u64().unwrap() + 1, net["columns_in"].as_u64().unwrap(), "AdditionalFields away");
    let tvm = tables.iter().find(|t| t["table"] == "DeviceTvmSoftwareInventory").unwrap();
    assert_eq!(tvm["billed_bytes_after"], 0, "TVM never reaches the Sentinel path");
    assert_eq!(tvm["sentinel_refused"], "tvm");
    assert!(e["saving_per_month"].as_f64().unwrap() > 0.0);

    let out = run_cli(&["filter", "check", "--config", &config, "--sample", &sample], &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.starts_with("DeviceNetworkEvents")).unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1], net["records"].to_string(), "rows in");
    assert_eq!(cols[2], net["rows_kept"].to_string(), "rows kept");
    assert!(
        text.lines()
            .any(|l| l.starts_with("DeviceTvmSoftwareInventory") && l.ends_with("(TVM: never sent to Sentinel)"))
    );

    // As a DCR transformation: on the Sentinel-named stream, keeping TimeGenerated and RecordId_CF.
    let out = run_cli(&["filter", "check", "--config", &config, "--as-dcr"], &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    let kql = text.strip_prefix("DeviceNetworkEvents:\n  ").unwrap().trim_end();
    assert!(
        kql.starts_with(
            "source | where not(ActionType == \"ConnectionSuccess\" and RemotePort in (80, 443)) | project TimeGenerated, Timestamp, DeviceId,"
        ),
        "{kql}"
    );
    assert!(kql.ends_with(", Extra_CF, RecordId_CF"), "{kql}");
    assert!(!kql.contains("AdditionalFields"), "{kql}");
}

fn sum(items: &Value, key: &str) -> u64 {
    items.as_array().unwrap().iter().map(|v| v[key].as_u64().unwrap()).sum()
}

#[test]
fn detail_adds_up_per_column_and_per_group_and_every_saving_parses_after_the_config_filter() {
    let dir = tempfile::tempdir().unwrap();
    let sample = network_sample(dir.path());
    let config = write(&dir.path().join("c.toml"), NETWORK_FILTER);
    let out = run_cli(&["estimate", "--config", &config, "--input", &sample, "--json"], &[]);
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    let catalog = Catalog::embedded();
    let mut checked = 0;
    for t in e["tables"].as_array().unwrap() {
        let d = &t["detail"];
        let (before, after) = (&d["before"], &d["after"]);
        assert_eq!(
            sum(&before["columns"], "billed_bytes"),
            t["billed_bytes_before"].as_u64().unwrap(),
            "{}",
            t["table"]
        );
        let g = &before["groups"];
        if !g.is_null() {
            let all = [
                g["values"].as_array().unwrap().clone(),
                g["rest"].as_object().map(|r| vec![Value::Object(r.clone())]).unwrap_or_default(),
            ]
            .concat();
            let all = Value::Array(all);
            assert_eq!(sum(&all, "billed_bytes"), t["billed_bytes_before"].as_u64().unwrap(), "{}", t["table"]);
            assert_eq!(sum(&all, "rows"), t["records"].as_u64().unwrap() - t["dead_lettered"].as_u64().unwrap());
        }
        if !after.is_null() {
            assert_eq!(sum(&after["columns"], "billed_bytes"), t["billed_bytes_after"].as_u64().unwrap());
            let ga = &after["groups"];
            let rest = ga["rest"]["billed_bytes"].as_u64().unwrap_or(0);
            assert_eq!(sum(&ga["values"], "billed_bytes") + rest, t["billed_bytes_after"].as_u64().unwrap());
        }
        let table = t["table"].as_str().unwrap();
        let existing = if table == "DeviceNetworkEvents" {
            "where not(ActionType == \"ConnectionSuccess\" and RemotePort in (80, 443))\n| project-away AdditionalFields\n"
        } else {
            ""
        };
        for s in d["savings"].as_array().into_iter().flatten() {
            let line = s["line"].as_str().unwrap();
            let text = format!("{existing}{line}");
            let pipeline = defender_core::policy::parse(&text).unwrap_or_else(|e| panic!("{table}: {text}: {e}"));
            pipeline.check(catalog.get(table).unwrap()).unwrap_or_else(|e| panic!("{table}: {text}: {e}"));
            if s["change"] == "project-away" {
                let column = s["column"].as_str().unwrap();
                assert!(!defender_pipeline::breakdown::PROTECTED_COLUMNS.contains(&column), "{line}");
            }
            assert!(s["billed_bytes"].as_u64().unwrap() > 0 && s["cost_per_month"].as_f64().unwrap() > 0.0);
            checked += 1;
        }
    }
    assert!(checked >= 6, "both Sentinel tables have savings: {checked}");
    let top = e["top_savings"].as_array().unwrap();
    assert!(!top.is_empty() && top.windows(2).all(|w| w[0]["billed_bytes"].as_u64() >= w[1]["billed_bytes"].as_u64()));

    // `filter check` shows the same per column and per group, before and after, for the tables
    // sent to Sentinel, and what to paste.
    let out = run_cli(&["filter", "check", "--config", &config, "--sample", &sample], &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\nDeviceNetworkEvents: ") && text.contains("  by ActionType "), "{text}");
    let first = &top[0];
    assert!(text.contains(first["line"].as_str().unwrap()), "{text}");
    assert!(!text.contains("\nDeviceTvmSoftwareInventory: "), "not sent to Sentinel: {text}");
    let out = run_cli(&["estimate", "--config", &config, "--input", &sample, "--detail"], &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\nDeviceTvmSoftwareInventory: ") && text.contains("not sent to Sentinel"), "{text}");
}

#[test]
fn the_html_report_renders_with_its_charts_in_headless_chromium() {
    let chromium = infra("DI_CHROMIUM");
    let dir = tempfile::tempdir().unwrap();
    let sample = network_sample(dir.path());
    let config = write(&dir.path().join("c.toml"), NETWORK_FILTER);
    let html = dir.path().join("report.html");
    run_cli(&["estimate", "--config", &config, "--input", &sample, "--html", html.to_str().unwrap()], &[]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains(r#"<svg id="gb-per-day""#) && page.contains(r#"<svg id="cost-per-tier""#));
    assert!(page.contains(r#"<table id="where-to-save">"#), "where to save");
    assert!(page.contains(r#"<svg id="columns-DeviceNetworkEvents" class="column-shares""#));
    assert!(page.contains(r#"<svg id="groups-DeviceNetworkEvents""#));
    assert!(page.contains("| where ActionType != &quot;"), "a line to paste");
    assert!(
        !page.contains("<script") && !page.contains("http://")
            || page.matches("http://").all(|_| page.contains("xmlns=\"http://www.w3.org/2000/svg\""))
    );

    let shot = dir.path().join("report.png");
    let profile = dir.path().join("profile");
    let status = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.display()),
            "--window-size=1200,3000",
            &format!("--screenshot={}", shot.display()),
            &format!("file://{}", html.display()),
        ])
        .output()
        .expect("run chromium");
    assert!(shot.is_file(), "chromium made no screenshot: {}", String::from_utf8_lossy(&status.stderr));
    let stats: Value = serde_json::from_str(&python(
        "png_stats.py",
        &[shot.to_str().unwrap(), "#1f6feb", "#b0b7c3", "#2da44e", "#0969da", "#d4a72c"],
    ))
    .unwrap();
    assert!(stats["non_white_fraction"].as_f64().unwrap() > 0.02, "not blank: {stats}");
    // The first three: the table and tier charts; then the heaviest column's share and the
    // group bars of the table breakdowns.
    for color in ["#1f6feb", "#b0b7c3", "#2da44e", "#0969da", "#d4a72c"] {
        assert!(stats["colors"][color].as_u64().unwrap() > 100, "bars of {color} are drawn: {stats}");
    }
}

#[test]
fn calibrate_reports_the_error_per_table_against_a_workspace_export() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        &dir.path().join("fixture.json"),
        r#"{"time":"2026-11-20T10:59:00Z","tenantId":"t1","category":"AdvancedHunting-DeviceInfo","properties":{"Timestamp":"2026-11-20T10:30:00.1234567Z","DeviceId":"abc","ReportId":639199803770463703,"OSBuild":22631,"IsAzureADJoined":true}}"#,
    );
    // Our estimate for that record is 148 bytes (see billed_bytes_match_a_hand_computation); the
    // workspace says 160 and 136 for two records: a mean of 148, so an error of 0.0 %, and a table
    // the sample does not hold is named as such.
    let csv = write(
        &dir.path().join("billed.csv"),
        "Type,_BilledSize\nDeviceInfo_CL,160\nDeviceInfo_CL,136\nEmailEvents_CL,900\n",
    );
    let out = run_cli(&["estimate", "--input", &input, "--calibrate", &csv], &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |t: &str| {
        text.lines()
            .find(|l| l.starts_with(t) && l.contains('%') || l.starts_with(t) && l.contains("not in sample"))
            .unwrap()
            .to_string()
    };
    let info: Vec<String> = line("DeviceInfo").split_whitespace().map(str::to_string).collect();
    assert_eq!(info, vec!["DeviceInfo", "148.0", "148.0", "0.0%"]);
    assert!(line("EmailEvents").contains("not in sample"));
}
