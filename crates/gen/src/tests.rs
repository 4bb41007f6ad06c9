use std::{collections::BTreeSet, time::Duration};

use defender_core::{Decoder, FlushRule};
use serde_json::Value;

use super::*;

fn catalog() -> Catalog {
    Catalog::embedded()
}

fn gen_bytes(opts: &GenOptions) -> (Vec<u8>, Ledger) {
    let mut out = Vec::new();
    let ledger = generate(&catalog(), opts, &mut out).unwrap();
    assert_eq!(ledger.bytes, out.len() as u64);
    (out, ledger)
}

fn lines(out: &[u8]) -> Vec<&str> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "every line ends with a newline");
    text.lines().collect()
}

/// Bare records of one table.
fn records_of(table: &str, n: u64, seed: u64) -> Vec<String> {
    let opts = GenOptions {
        seed,
        tables: vec![table.to_string()],
        target: Target::Records(n),
        envelope: false,
        ..GenOptions::default()
    };
    let (out, _) = gen_bytes(&opts);
    lines(&out).into_iter().map(str::to_string).collect()
}

fn is_defender_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 28
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[27] == b'Z'
        && b[20..27].iter().all(u8::is_ascii_digit)
}

#[test]
fn same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let mut opts = GenOptions { target: Target::Records(400), quirks: 0.2, bad: 0.05, ..GenOptions::default() };
    let (a, la) = gen_bytes(&opts);
    let (b, lb) = gen_bytes(&opts);
    assert_eq!(a, b);
    assert_eq!(la, lb);
    opts.seed = 2;
    let (c, _) = gen_bytes(&opts);
    assert_ne!(a, c);
}

#[test]
fn every_line_is_json_when_nothing_is_broken() {
    for envelope in [true, false] {
        let opts = GenOptions { target: Target::Records(2000), envelope, quirks: 0.3, ..GenOptions::default() };
        let (out, ledger) = gen_bytes(&opts);
        let mut records = 0;
        for line in lines(&out) {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            records += match v.get("records") {
                Some(Value::Array(r)) if envelope => r.len(),
                _ => 1,
            };
        }
        assert_eq!(records as u64, ledger.records());
        assert_eq!(ledger.records(), 2000);
        if !envelope {
            assert_eq!(ledger.lines, 2000, "one record per line");
        }
    }
}

#[test]
fn every_table_uses_only_its_schema_columns() {
    let catalog = catalog();
    for t in catalog.tables() {
        let names: BTreeSet<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        for line in records_of(&t.table, 40, 3) {
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["category"], t.category());
            assert_eq!(v["operationName"], "Publish");
            assert!(is_defender_time(v["time"].as_str().unwrap()), "{}", v["time"]);
            assert!(is_defender_time(v["_TimeReceivedBySvc"].as_str().unwrap()));
            let props = v["properties"].as_object().unwrap();
            let keys: BTreeSet<&str> = props.keys().map(String::as_str).collect();
            assert_eq!(keys, names, "{}: every column present, no other", t.table);
            if let Some(ts) = props.get("Timestamp") {
                let ts = ts.as_str().unwrap();
                assert!(is_defender_time(ts), "{ts}");
                assert!(v["time"].as_str().unwrap() >= ts, "time lags Timestamp");
            }
            assert!(v["_TimeReceivedBySvc"].as_str() < v["time"].as_str());
        }
    }
}

#[test]
fn quirk_free_records_decode_without_coercion() {
    let opts = GenOptions { target: Target::Records(3000), ..GenOptions::default() };
    let (out, ledger) = gen_bytes(&opts);
    let acc = decode(&out);
    for (table, s) in &acc.tables {
        assert_eq!(s.records_in, ledger.tables[table].records, "{table}");
        assert_eq!(s.decoded, s.records_in, "{table}");
        assert!(s.coerced.is_empty(), "{table}: {:?}", s.coerced);
        assert!(s.kept_in_extra.is_empty(), "{table}: {:?}", s.kept_in_extra);
        assert_eq!(s.unknown_columns, 0, "{table}");
    }
}

fn decode(out: &[u8]) -> defender_core::Accounting {
    let rule = FlushRule { max_rows: usize::MAX, max_bytes: usize::MAX, max_age: Duration::MAX };
    let mut d = Decoder::new(&catalog(), "gen-test".into(), 0, rule);
    for (i, line) in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        d.decode(line, i as i64);
    }
    d.flush().map(|o| o.accounting).unwrap_or_default()
}

#[test]
fn the_decoder_accounts_exactly_what_the_ledger_says() {
    for (envelope, seed) in [(true, 11), (false, 12), (true, 13)] {
        let opts = GenOptions {
            seed,
            target: Target::Records(4000),
            envelope,
            quirks: 0.2,
            bad: 0.1,
            records_per_message: 20,
            ..GenOptions::default()
        };
        let (out, ledger) = gen_bytes(&opts);
        let acc = decode(&out);
        let tables: BTreeSet<&String> = acc.tables.keys().collect();
        assert_eq!(tables, ledger.tables.keys().collect(), "same tables");
        for (table, l) in &ledger.tables {
            let s = &acc.tables[table];
            assert_eq!(s.records_in, l.records, "{table}: records");
            assert_eq!(s.dead_lettered, l.bad, "{table}: dead letters");
            assert_eq!(s.decoded, l.records - l.bad.values().sum::<u64>(), "{table}: decoded");
        }
        let reasons: BTreeSet<&String> = ledger.tables.values().flat_map(|t| t.bad.keys()).collect();
        assert_eq!(reasons.len(), 5, "every reason of the mode shows up: {reasons:?}");
        assert!(ledger.tables.values().map(|t| t.quirky).sum::<u64>() > 500);
        let coerced: u64 = acc.tables.values().flat_map(|s| s.coerced.values()).sum();
        let kept: u64 = acc.tables.values().flat_map(|s| s.kept_in_extra.values()).sum();
        let unknown_columns: u64 = acc.tables.values().map(|s| s.unknown_columns).sum();
        assert!(coerced > 50 && kept > 50 && unknown_columns > 20, "{coerced} {kept} {unknown_columns}");
        assert!(ledger.tables.keys().any(|t| catalog().get(t).is_none() && t != "unknown"), "an unknown table appears");
    }
}

#[test]
fn messages_respect_the_byte_and_record_caps() {
    for (cap, per) in [(1_000_000, 50), (20_000, 1000), (6_000, 3)] {
        let opts = GenOptions {
            target: Target::Bytes(3_000_000),
            max_message_bytes: cap,
            records_per_message: per,
            quirks: 0.1,
            bad: 0.02,
            ..GenOptions::default()
        };
        let (out, ledger) = gen_bytes(&opts);
        assert!(ledger.bytes >= 3_000_000 && ledger.bytes < 3_000_000 + cap as u64 + 1);
        for line in lines(&out) {
            assert!(line.len() <= cap, "{} > {cap}", line.len());
            if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(line) {
                assert!(m["records"].as_array().unwrap().len() <= per);
            }
        }
    }
}

#[test]
fn a_cap_smaller_than_any_record_is_an_error() {
    let opts = GenOptions { max_message_bytes: 200, ..GenOptions::default() };
    let err = generate(&catalog(), &opts, &mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let opts = GenOptions { tables: vec!["NoSuchTable".into()], ..GenOptions::default() };
    assert!(generate(&catalog(), &opts, &mut Vec::new()).unwrap_err().to_string().contains("NoSuchTable"));
}

fn mean_size(table: &str) -> f64 {
    let lines = records_of(table, 2000, 5);
    lines.iter().map(|l| l.len() as f64).sum::<f64>() / lines.len() as f64
}

/// Mean sizes of whole serialised records. The column names and the envelope alone weigh about
/// 2.1 KB (DeviceProcessEvents, 69 columns) and 1.5 KB (DeviceNetworkEvents, 46 columns), so
/// with realistic values (six digests, five datetimes, two command lines) the means land near
/// 3.6 KB and 2.5 KB.
#[test]
fn record_sizes_are_realistic() {
    let process = mean_size("DeviceProcessEvents");
    assert!((3.0 * 1024.0..=4.0 * 1024.0).contains(&process), "DeviceProcessEvents mean {process:.0} B");
    let network = mean_size("DeviceNetworkEvents");
    assert!((2.0 * 1024.0..=3.0 * 1024.0).contains(&network), "DeviceNetworkEvents mean {network:.0} B");
    assert!(network < process);
}

#[test]
fn device_info_report_ids_exceed_two_to_the_53() {
    let big = records_of("DeviceInfo", 50, 9)
        .iter()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let id = v["properties"]["ReportId"].as_u64().unwrap();
            // Written exactly, as a JSON integer.
            l.contains(&format!("\"ReportId\":{id},")) && id > 1 << 53
        })
        .count();
    assert_eq!(big, 50);
}

#[test]
fn device_records_carry_machine_group_and_consistent_processes() {
    for line in records_of("DeviceProcessEvents", 300, 21) {
        let v: Value = serde_json::from_str(&line).unwrap();
        let p = &v["properties"];
        assert!(p.get("MachineGroup").is_some());
        assert_eq!(p["DeviceId"].as_str().unwrap().len(), 40);
        let file = p["FileName"].as_str().unwrap();
        assert!(p["FolderPath"].as_str().unwrap().ends_with(file), "{line}");
        assert!(matches!(p["SHA256"].as_str().unwrap().len(), 0 | 64), "not every SHA256 is computed");
        assert_eq!(p["SHA1"].as_str().unwrap().len(), 40);
        assert!(p["AccountSid"].as_str().unwrap().starts_with("S-1-"));
        assert_eq!(p["ActionType"], "ProcessCreated");
    }
    let actions: BTreeSet<String> = records_of("DeviceNetworkEvents", 500, 22)
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["properties"]["ActionType"].as_str().unwrap().to_string())
        .collect();
    assert!(actions.contains("ConnectionSuccess") && actions.contains("InboundConnectionAccepted"), "{actions:?}");
}

#[test]
fn a_mixed_stream_is_dominated_by_device_events() {
    let opts = GenOptions { target: Target::Records(20_000), ..GenOptions::default() };
    let (_, ledger) = gen_bytes(&opts);
    let n = |t: &str| ledger.tables.get(t).map_or(0, |l| l.records);
    assert!(n("DeviceNetworkEvents") > n("DeviceProcessEvents"));
    assert!(n("DeviceProcessEvents") > 10 * n("EmailEvents"));
    assert!(n("EmailEvents") > n("DeviceTvmSoftwareInventory"));
    for t in catalog().tables().iter().filter(|t| !t.tvm) {
        assert!(n(&t.table) > 0, "{} appears in 20k records", t.table);
    }
}
