use std::time::{Duration, Instant};

use arrow_array::{Array, BooleanArray, Int32Array, Int64Array, StringArray, TimestampNanosecondArray};
use proptest::prelude::*;

use super::*;
use crate::schema::{COL_ENVELOPE_TENANT, COL_ENVELOPE_TIME, COL_EXTRA, COL_RAW, COL_TIME_RECEIVED};

fn decoder() -> Decoder {
    Decoder::new(&Catalog::embedded(), "test".into(), 0, FlushRule::default())
}

fn decode_all(lines: &[&str]) -> DecoderOutput {
    let mut d = decoder();
    for (i, l) in lines.iter().enumerate() {
        d.decode(l.as_bytes(), i as i64);
    }
    d.flush().expect("something was decoded")
}

fn batch<'a>(out: &'a DecoderOutput, table: &str) -> &'a RecordBatch {
    &out.batches.iter().find(|b| &*b.table == table).unwrap_or_else(|| panic!("no batch for {table}")).batch
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name).unwrap_or_else(|| panic!("no column {name}")).as_any().downcast_ref::<T>().unwrap()
}

use arrow_array::RecordBatch;

const NET: &str = r#"{"time":"2026-11-20T10:15:31.1234567Z","tenantId":"t1","operationName":"Publish","category":"AdvancedHunting-DeviceNetworkEvents","_TimeReceivedBySvc":"2026-11-20T10:15:30.9876543Z","properties":{"Timestamp":"2026-11-20T10:00:00.0000001Z","DeviceId":"abc","RemotePort":443,"LocalPort":"51000","RemoteIP":"10.0.0.1","MachineGroup":null,"AdditionalFields":{"a":[1,2]}}}"#;

#[test]
fn decodes_envelope_fields_and_coerces_lossless_values() {
    let out = decode_all(&[NET]);
    let b = batch(&out, "DeviceNetworkEvents");
    assert_eq!(b.num_rows(), 1);
    assert_eq!(col::<TimestampNanosecondArray>(b, "Timestamp").value(0), 1_795_168_800_000_000_100);
    assert_eq!(col::<TimestampNanosecondArray>(b, COL_ENVELOPE_TIME).value(0), 1_795_169_731_123_456_700);
    assert_eq!(col::<TimestampNanosecondArray>(b, COL_TIME_RECEIVED).value(0), 1_795_169_730_987_654_300);
    assert_eq!(col::<StringArray>(b, COL_ENVELOPE_TENANT).value(0), "t1");
    assert_eq!(col::<Int32Array>(b, "RemotePort").value(0), 443);
    assert_eq!(col::<Int32Array>(b, "LocalPort").value(0), 51000);
    assert_eq!(col::<StringArray>(b, "AdditionalFields").value(0), r#"{"a":[1,2]}"#);
    assert!(col::<StringArray>(b, "MachineGroup").is_null(0));
    assert!(col::<StringArray>(b, "ActionType").is_null(0), "absent columns are null");
    assert!(col::<StringArray>(b, COL_EXTRA).is_null(0));
    let stats = &out.accounting.tables["DeviceNetworkEvents"];
    assert_eq!((stats.records_in, stats.decoded), (1, 1));
    assert_eq!(stats.coerced.get("LocalPort"), Some(&1));
    assert_eq!(stats.coerced.get("AdditionalFields"), Some(&1), "an object in a string column is coerced");
    assert_eq!(stats.bytes_in, NET.len() as u64);
}

#[test]
fn keeps_18_digit_longs_exact() {
    let rec = r#"{"time":"2026-11-20T10:15:31Z","category":"AdvancedHunting-DeviceInfo","properties":{"Timestamp":"2026-11-20T10:00:00Z","ReportId":639199803770463703,"OSBuild":"639199803770463704"}}"#;
    let out = decode_all(&[rec]);
    let b = batch(&out, "DeviceInfo");
    assert_eq!(col::<Int64Array>(b, "ReportId").value(0), 639_199_803_770_463_703);
    assert_eq!(col::<Int64Array>(b, "OSBuild").value(0), 639_199_803_770_463_704);
}

#[test]
fn lossy_values_become_null_and_are_kept_in_extra() {
    let rec = r#"{"records":[{"time":"2026-11-20T10:15:31Z","category":"AdvancedHunting-DeviceNetworkEvents","properties":{"Timestamp":"2026-11-20T10:00:00Z","RemotePort":"-","LocalPort":"","NewCol":{"x":1},"ActionType":"ConnectionSuccess"},"Surprise":7}]}"#;
    let out = decode_all(&[rec]);
    let b = batch(&out, "DeviceNetworkEvents");
    assert!(col::<Int32Array>(b, "RemotePort").is_null(0));
    assert!(col::<Int32Array>(b, "LocalPort").is_null(0));
    assert_eq!(col::<StringArray>(b, "ActionType").value(0), "ConnectionSuccess");
    assert_eq!(
        col::<StringArray>(b, COL_EXTRA).value(0),
        r#"{"RemotePort":"-","NewCol":{"x":1},"envelope.Surprise":7}"#
    );
    let stats = &out.accounting.tables["DeviceNetworkEvents"];
    assert_eq!(stats.kept_in_extra.get("RemotePort"), Some(&1));
    assert_eq!(stats.coerced.get("LocalPort"), Some(&1), "\"\" for a null number is lossless");
    assert_eq!(stats.unknown_columns, 1);
}

#[test]
fn bool_and_int_coercions() {
    let rec = r#"{"time":"2026-11-20T10:15:31Z","category":"AdvancedHunting-DeviceInfo","properties":{"Timestamp":"2026-11-20T10:00:00Z","IsAzureADJoined":"True","OSBuild":22631.0}}"#;
    let out = decode_all(&[rec]);
    let b = batch(&out, "DeviceInfo");
    assert!(col::<BooleanArray>(b, "IsAzureADJoined").value(0));
    assert_eq!(col::<Int64Array>(b, "OSBuild").value(0), 22631);
    let rec = r#"{"time":"2026-11-20T10:15:31Z","category":"AdvancedHunting-DeviceInfo","properties":{"Timestamp":"2026-11-20T10:00:00Z","IsAzureADJoined":"yes","OSBuild":1.5}}"#;
    let out = decode_all(&[rec]);
    let b = batch(&out, "DeviceInfo");
    assert!(b.column_by_name("IsAzureADJoined").unwrap().is_null(0));
    assert!(b.column_by_name("OSBuild").unwrap().is_null(0));
    assert_eq!(col::<StringArray>(b, COL_EXTRA).value(0), r#"{"IsAzureADJoined":"yes","OSBuild":1.5}"#);
}

#[test]
fn falls_back_to_envelope_time_and_keeps_the_bad_timestamp() {
    let rec = r#"{"time":"2026-11-20T10:15:31Z","category":"AdvancedHunting-AlertInfo","properties":{"Timestamp":"soon","Title":"x"}}"#;
    let out = decode_all(&[rec]);
    let b = batch(&out, "AlertInfo");
    assert_eq!(col::<TimestampNanosecondArray>(b, "Timestamp").value(0), 1_795_169_731_000_000_000);
    assert_eq!(col::<StringArray>(b, COL_EXTRA).value(0), r#"{"Timestamp":"soon"}"#);
}

#[test]
fn dead_letters_structurally_broken_records_with_reason_and_position() {
    let lines = [
        r#"{"records":[1,{"category":"AdvancedHunting-AlertInfo"},{"properties":{}},{"category":"AdvancedHunting-AlertInfo","properties":{"Title":"no time"}}]}"#,
        r#"{"records":[{"time":"#,
        "[1,2]",
    ];
    let out = decode_all(&lines);
    let reasons: Vec<(&str, &str, i64, Option<u32>)> =
        out.dead_letters.iter().map(|d| (&*d.table, d.reason.as_str(), d.position.offset, d.record_index)).collect();
    assert_eq!(
        reasons,
        vec![
            ("unknown", "not_an_object", 0, Some(0)),
            ("AlertInfo", "missing_properties", 0, Some(1)),
            ("unknown", "missing_category", 0, Some(2)),
            ("AlertInfo", "no_timestamp", 0, Some(3)),
            ("unknown", "malformed_json", 1, None),
            ("unknown", "not_a_message", 2, None),
        ]
    );
    assert_eq!(out.dead_letters[1].raw, br#"{"category":"AdvancedHunting-AlertInfo"}"#);
    assert_eq!(out.dead_letters[4].raw, lines[1].as_bytes());
    assert!(out.batches.is_empty());
    assert_eq!(out.accounting.unbalanced(), vec![], "every record is dead-lettered, so accounted");
    assert_eq!(out.accounting.tables["unknown"].records_in, 4);
    assert_eq!(out.accounting.tables["AlertInfo"].records_in, 2);
    assert_eq!(out.accounting.tables["AlertInfo"].dead_lettered_total(), 2);
}

#[test]
fn unknown_tables_are_kept_raw_under_their_name() {
    let rec = r#"{"time":"2026-11-20T10:15:31Z","category":"AdvancedHunting-CloudStorageAggregatedEvents","properties":{"Timestamp":"2026-11-20T10:00:00Z","X":1}}"#;
    let out = decode_all(&[rec, rec]);
    let b = out.batches.iter().find(|b| &*b.table == "CloudStorageAggregatedEvents").unwrap();
    assert!(b.unknown_table);
    assert_eq!(b.batch.num_rows(), 2);
    assert_eq!(col::<StringArray>(&b.batch, COL_RAW).value(0), rec);
    let stats = &out.accounting.tables["CloudStorageAggregatedEvents"];
    assert!(stats.unknown_table);
    assert_eq!((stats.records_in, stats.decoded), (2, 2));
}

#[test]
fn flush_cuts_epochs_covering_every_offset() {
    let mut d = Decoder::new(&Catalog::embedded(), "s".into(), 3, FlushRule { max_rows: 2, ..FlushRule::default() });
    assert!(d.flush().is_none());
    d.decode(NET.as_bytes(), 10);
    assert!(!d.should_flush(Instant::now()));
    d.decode(b"garbage", 11);
    assert!(d.should_flush(Instant::now()));
    let out = d.flush().unwrap();
    assert_eq!((out.partition, out.first_offset, out.last_offset), (3, 10, 11));
    assert_eq!(out.batches[0].rows(), 1);
    assert_eq!(out.dead_letters.len(), 1);
    d.decode(NET.as_bytes(), 12);
    assert!(d.should_flush(Instant::now() + Duration::from_secs(6)), "age limit");
    let out = d.flush().unwrap();
    assert_eq!((out.first_offset, out.last_offset), (12, 12));
}

fn record_strategy() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just("null".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| f.to_string()),
        "[a-zA-Z0-9 \\-:.]{0,12}".prop_map(|s| format!("{s:?}")),
        Just("{\"k\":[1,\"x\"]}".to_string()),
        Just("true".to_string()),
    ];
    let column = prop_oneof![
        Just("RemotePort"),
        Just("LocalPort"),
        Just("RemoteIP"),
        Just("Timestamp"),
        Just("AdditionalFields"),
        Just("InitiatingProcessId"),
        Just("ReportId"),
        Just("Whatever"),
    ];
    proptest::collection::vec((column, value), 0..8).prop_map(|kv| {
        let props: Vec<String> = kv.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
        format!(
            r#"{{"time":"2026-11-20T10:15:31Z","category":"AdvancedHunting-DeviceNetworkEvents","properties":{{{}}}}}"#,
            props.join(",")
        )
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_are_accounted(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut d = decoder();
        d.decode(&bytes, 0);
        let out = d.flush().unwrap();
        let t = out.accounting.totals();
        prop_assert_eq!(t.records_in, t.decoded + t.dead_lettered_total());
    }

    #[test]
    fn arbitrary_records_decode_to_one_row_each(rec in record_strategy()) {
        let out = decode_all(&[&rec]);
        let stats = &out.accounting.tables["DeviceNetworkEvents"];
        prop_assert_eq!(stats.records_in, 1);
        prop_assert_eq!(stats.decoded, 1, "an envelope time is present: never a dead letter");
        let b = batch(&out, "DeviceNetworkEvents");
        prop_assert_eq!(b.num_rows(), 1);
        // Every lossy value is in _Extra, which is valid JSON.
        let extra = col::<StringArray>(b, COL_EXTRA);
        if !extra.is_null(0) {
            let v: serde_json::Value = serde_json::from_str(extra.value(0)).unwrap();
            let lossy: u64 = stats.kept_in_extra.values().sum();
            prop_assert!(v.as_object().unwrap().len() as u64 >= lossy.min(1));
        }
    }

    #[test]
    fn numbers_sent_as_strings_decode_like_numbers(n in any::<i32>()) {
        let as_num = format!(r#"{{"time":"2026-11-20T10:15:31Z","category":"AdvancedHunting-DeviceNetworkEvents","properties":{{"Timestamp":"2026-11-20T10:00:00Z","RemotePort":{n}}}}}"#);
        let as_str = format!(r#"{{"time":"2026-11-20T10:15:31Z","category":"AdvancedHunting-DeviceNetworkEvents","properties":{{"Timestamp":"2026-11-20T10:00:00Z","RemotePort":"{n}"}}}}"#);
        let a = decode_all(&[&as_num]);
        let b = decode_all(&[&as_str]);
        prop_assert_eq!(col::<Int32Array>(batch(&a, "DeviceNetworkEvents"), "RemotePort").value(0), n);
        prop_assert_eq!(col::<Int32Array>(batch(&b, "DeviceNetworkEvents"), "RemotePort").value(0), n);
        prop_assert!(col::<StringArray>(batch(&b, "DeviceNetworkEvents"), COL_EXTRA).is_null(0));
    }
}

fn info(category: &str, report: i64) -> String {
    format!(
        r#"{{"time":"2026-11-20T10:59:00Z","category":"{category}","properties":{{"Timestamp":"2026-11-20T10:30:00Z","DeviceName":"pc","ReportId":{report}}}}}"#
    )
}

#[test]
fn bare_names_and_case_variants_of_known_tables_are_unknown_tables_of_their_own() {
    let long = format!("AdvancedHunting-{}", "x".repeat(300));
    let lines = [
        info("AdvancedHunting-DeviceInfo", 1),
        info("DeviceInfo", 2),
        info("AdvancedHunting-deviceinfo", 3),
        info("AdvancedHunting-unknown", 4),
        info(&long, 5),
        info("AdvancedHunting-Weird/../name", 6),
        info("AdvancedHunting-BrandNewTable", 7),
    ];
    let out = decode_all(&lines.iter().map(String::as_str).collect::<Vec<_>>());
    let names: Vec<&str> = out.batches.iter().map(|b| &*b.table).collect();
    assert_eq!(names.len(), 7, "{names:?}");
    assert_eq!(names[0], "DeviceInfo");
    assert!(!out.batches[0].unknown_table && out.batches[1..].iter().all(|b| b.unknown_table));
    assert!(names.contains(&"BrandNewTable"), "a plain new category keeps its name: {names:?}");
    for (b, n) in out.batches.iter().zip(&names).skip(1) {
        assert!(n.len() <= 64 && n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'), "{n}");
        assert_eq!(b.batch.schema(), crate::schema::unknown_table_schema(), "{n}");
        if *n != "BrandNewTable" {
            assert!(n.starts_with("_Other-"), "{n}");
        }
    }
    assert!(names.iter().any(|n| n.starts_with("_Other-AdvancedHunting-xxx")), "a readable prefix: {names:?}");
    assert!(out.accounting.tables.values().all(|s| s.records_in == 1 && s.decoded == 1), "{:?}", out.accounting);
}

#[test]
fn unknown_tables_past_the_limit_share_one_overflow_table() {
    let names = Arc::new(UnknownTableNames::new(&Catalog::embedded(), 2));
    let mut d = decoder().with_unknown_names(names.clone());
    let mut other = decoder().with_unknown_names(names.clone());
    d.decode(info("AdvancedHunting-New1", 1).as_bytes(), 0);
    other.decode(info("AdvancedHunting-New2", 1).as_bytes(), 0);
    for (i, n) in (3..20).enumerate() {
        d.decode(info(&format!("AdvancedHunting-New{n}"), 1).as_bytes(), i as i64 + 1);
    }
    d.decode(info("AdvancedHunting-New1", 2).as_bytes(), 40);
    let out = d.flush().unwrap();
    let rows = |t: &str| out.batches.iter().find(|b| &*b.table == t).map_or(0, TableBatch::rows);
    assert_eq!((rows("New1"), rows(unknown::OVERFLOW_TABLE)), (2, 17));
    assert_eq!(names.len(), 2, "the process-wide set stays bounded");
    assert_eq!(out.accounting.tables.len(), 2);
    assert_eq!(out.accounting.tables[unknown::OVERFLOW_TABLE].decoded, 17);
}

fn ids(out: &DecoderOutput, table: &str) -> Vec<String> {
    let b = batch(out, table);
    let ids = col::<StringArray>(b, crate::schema::COL_RECORD_ID);
    (0..ids.len()).map(|i| ids.value(i).to_string()).collect()
}

#[test]
fn record_ids_come_from_the_bytes_received() {
    // Two events that differ only in a column a `project` would drop, in one message and as
    // bare lines; the same input again; the id is the hash of exactly the element's bytes.
    let (a, b) = (info("AdvancedHunting-DeviceInfo", 1), info("AdvancedHunting-DeviceInfo", 2));
    let body = format!("{{\"records\": [{a} , {b}]}}");
    let first = decode_all(&[&body, &a]);
    let again = decode_all(&[&body, &a]);
    let got = ids(&first, "DeviceInfo");
    assert_eq!(got, ids(&again, "DeviceInfo"), "a replay gives the same ids");
    assert_ne!(got[0], got[1], "distinct events, distinct ids");
    let expected = record_id::record_id("AdvancedHunting-DeviceInfo", a.as_bytes());
    assert_eq!(got[0].as_bytes(), expected, "the element's bytes as received");
    assert_eq!(got[2], got[0], "the same record as a bare line has the same id");
    // Unknown tables carry it too.
    let out = decode_all(&[&info("AdvancedHunting-Brand_New", 1)]);
    assert_eq!(ids(&out, "Brand_New")[0].len(), 32);
}
