use std::{io::Read, sync::Arc};

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow_schema::{DataType, Field, Schema};
use defender_core::{
    ColumnType, TableSchema,
    schema::{Column, sentinel_name},
};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{
    MAX_FIELD_BYTES, SentinelError,
    pack::{Body, PackMode, Packed, Packer, RejectReason},
    rows::{EncodedRows, RowEncoder, truncate, write_datetime, write_str},
};

const REPORT_ID: i64 = 639_199_803_770_463_703;

fn column(name: &str, ty: ColumnType) -> Column {
    Column { name: name.into(), ty, sentinel_name: sentinel_name(name), description: String::new() }
}

fn table(name: &str) -> TableSchema {
    TableSchema {
        table: name.into(),
        tvm: false,
        streaming_api: String::new(),
        source: String::new(),
        columns: vec![
            column("Timestamp", ColumnType::Datetime),
            column("DeviceName", ColumnType::String),
            column("ReportId", ColumnType::Long),
            column("ActionType", ColumnType::String),
            column("Count", ColumnType::Int),
            column("Score", ColumnType::Real),
            column("IsLocal", ColumnType::Bool),
            column("Type", ColumnType::String),
            column("AdditionalFields", ColumnType::Dynamic),
            column("ProcessCreationTime", ColumnType::Datetime),
        ],
    }
}

fn nanos(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_nanos_opt().unwrap()
}

fn ts(values: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(values).with_timezone("UTC"))
}

fn strs(values: Vec<Option<&str>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

const NAME0: &str = "dev \"quoted\" \\ line1\nline2\ttab é 😀 \u{1}";

/// Row 0: every kind of value; row 1: nulls, NaN, text that is not JSON in a dynamic column,
/// a time before 1970.
fn batch(t: &TableSchema) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        ts(vec![Some(nanos("2026-11-20T10:30:00.123456789Z")), Some(-100)]),
        strs(vec![Some(NAME0), None]),
        Arc::new(Int64Array::from(vec![Some(REPORT_ID), None])),
        strs(vec![None, Some("")]),
        Arc::new(Int32Array::from(vec![Some(-42), None])),
        Arc::new(Float64Array::from(vec![Some(0.1), Some(f64::NAN)])),
        Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
        strs(vec![Some("Process"), None]),
        strs(vec![Some(r#"{"a":1,"b":[true,null],"c":"x"}"#), Some("not json {")]),
        ts(vec![None, Some(nanos("2024-02-29T23:59:59.0000001Z"))]),
        ts(vec![Some(nanos("2026-11-20T10:30:01Z")), None]),
        strs(vec![Some("tenant-1"), None]),
        ts(vec![None, None]),
        strs(vec![Some(r#"{"RemotePort":"-"}"#), None]),
        // `_RecordId` not filled: the encoder hashes the row (see `uses_the_decoders_record_id`).
        strs(vec![None, None]),
    ];
    RecordBatch::try_new(t.arrow_schema(), columns).unwrap()
}

#[test]
fn uses_the_decoders_record_id_written_last_whatever_the_projection() {
    let t = table("DeviceInfo");
    let full = batch(&t);
    let id = "0123456789abcdef0123456789abcdef";
    let mut columns = full.columns().to_vec();
    *columns.last_mut().unwrap() = strs(vec![Some(id), Some("not an id")]);
    let with_id = RecordBatch::try_new(full.schema(), columns).unwrap();
    let last = with_id.num_columns() - 1;
    for b in [with_id.clone(), with_id.project(&[1, last]).unwrap()] {
        let out = encode(&t, &b, 0);
        let row = parse(out.row(0));
        assert_eq!(row["RecordId_CF"], id);
        assert_eq!(row.keys().next_back().map(String::as_str), Some("RecordId_CF"));
        assert_eq!(row.keys().filter(|k| k.contains("RecordId")).count(), 1);
        // A value that is not an id is not trusted: the row's hash instead.
        let other = parse(out.row(1));
        assert_ne!(other["RecordId_CF"], "not an id");
        assert_eq!(other["RecordId_CF"].as_str().unwrap().len(), 32);
    }
}

fn encode(t: &TableSchema, batch: &RecordBatch, now: i64) -> EncodedRows {
    let mut enc = RowEncoder::new(t, &batch.schema()).unwrap();
    let mut out = EncodedRows::new();
    enc.encode_at(batch, &mut out, now).unwrap();
    out
}

fn parse(row: &[u8]) -> serde_json::Map<String, Value> {
    match serde_json::from_slice(row).unwrap() {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn encodes_every_type_by_its_sentinel_name() {
    let t = table("DeviceInfo");
    let b = batch(&t);
    let mut enc = RowEncoder::new(&t, &b.schema()).unwrap();
    let mut out = EncodedRows::new();
    let stats = enc.encode_at(&b, &mut out, 0).unwrap();
    assert_eq!((stats.rows, stats.bytes, stats.non_finite, stats.clock_time), (2, out.total_bytes(), 1, 0));
    assert!(stats.truncated.is_empty());

    let row = parse(out.row(0));
    let keys: Vec<&str> = row.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "TimeGenerated",
            "Timestamp",
            "DeviceName",
            "ReportId",
            "Count",
            "Score",
            "IsLocal",
            "Type_CF",
            "AdditionalFields",
            "EnvelopeTime_CF",
            "EnvelopeTenantId_CF",
            "Extra_CF",
            "RecordId_CF",
        ]
    );
    assert_eq!(row["TimeGenerated"], "2026-11-20T10:30:00.1234567Z");
    assert_eq!(row["Timestamp"], "2026-11-20T10:30:00.1234567Z");
    assert_eq!(row["DeviceName"], NAME0);
    assert_eq!(row["ReportId"].as_i64(), Some(REPORT_ID));
    assert_eq!(row["Count"], -42);
    assert_eq!(row["Score"], 0.1);
    assert_eq!(row["IsLocal"], true);
    assert_eq!(row["Type_CF"], "Process");
    assert_eq!(row["AdditionalFields"], json!({"a": 1, "b": [true, null], "c": "x"}));
    assert_eq!(row["EnvelopeTime_CF"], "2026-11-20T10:30:01.0000000Z");
    assert_eq!(row["EnvelopeTenantId_CF"], "tenant-1");
    assert_eq!(row["Extra_CF"], json!({"RemotePort": "-"}));
    let id = row["RecordId_CF"].as_str().unwrap();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
    // Exact integer text, never through f64.
    let text = std::str::from_utf8(out.row(0)).unwrap();
    assert!(text.contains(r#","ReportId":639199803770463703,"#), "{text}");
    assert!(text.starts_with(r#"{"TimeGenerated":"2026-11-20T10:30:00.1234567Z","Timestamp":"#), "{text}");
}

#[test]
fn omits_nulls_and_non_finite_reals_and_sends_invalid_dynamic_text_as_a_string() {
    let t = table("DeviceInfo");
    let out = encode(&t, &batch(&t), 0);
    let row = parse(out.row(1));
    let keys: Vec<&str> = row.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "TimeGenerated",
            "Timestamp",
            "ActionType",
            "IsLocal",
            "AdditionalFields",
            "ProcessCreationTime",
            "RecordId_CF"
        ]
    );
    assert_eq!(row["TimeGenerated"], "1969-12-31T23:59:59.9999999Z");
    assert_eq!(row["ActionType"], "");
    assert_eq!(row["IsLocal"], false);
    assert_eq!(row["AdditionalFields"], "not json {");
    assert_eq!(row["ProcessCreationTime"], "2024-02-29T23:59:59.0000001Z");
    assert!(!std::str::from_utf8(out.row(1)).unwrap().contains("null"));
}

/// Found by the fuzz harness: an `_Extra` holding a 1,000-deep array was embedded as raw JSON
/// (serde_json ignores a value without its recursion limit), so the body was unreadable to the
/// service (and to our local server: serde_json stops at 128 levels), a 400 that stops the sink.
#[test]
fn sends_dynamic_json_nested_deeper_than_the_limit_as_a_string() {
    use super::rows::MAX_DYNAMIC_DEPTH;
    let t = table("DeviceInfo");
    let nested = |depth: usize| format!(r#"{}"x[{{\"]"{}"#, "[".repeat(depth), "]".repeat(depth));
    let mut columns = batch(&t).columns().to_vec();
    let (within, over) = (nested(MAX_DYNAMIC_DEPTH), nested(MAX_DYNAMIC_DEPTH + 1));
    let deep = nested(1000);
    columns[8] = strs(vec![Some(&within), Some(&over)]);
    columns[13] = strs(vec![Some(&deep), None]);
    let b = RecordBatch::try_new(t.arrow_schema(), columns).unwrap();
    let out = encode(&t, &b, 0);
    let (row0, row1) = (parse(out.row(0)), parse(out.row(1)));
    assert!(row0["AdditionalFields"].is_array(), "{MAX_DYNAMIC_DEPTH} levels are embedded");
    assert_eq!(row1["AdditionalFields"], over.as_str(), "one more is sent as text");
    assert_eq!(row0["Extra_CF"], deep.as_str());
}

#[test]
fn time_generated_falls_back_to_envelope_time_then_to_the_clock() {
    let t = table("DeviceInfo");
    let full = batch(&t);
    // Without Timestamp (projected away): the envelope time, part of the id.
    let no_ts = full.project(&[1, 2, 10]).unwrap();
    let out = encode(&t, &no_ts, 0);
    assert_eq!(parse(out.row(0))["TimeGenerated"], "2026-11-20T10:30:01.0000000Z");
    // Row 1 has no envelope time either: the clock, and the id ignores it.
    let (a, b) = (encode(&t, &no_ts, 0), encode(&t, &no_ts, nanos("2030-01-01T00:00:00Z")));
    assert_eq!(parse(a.row(1))["TimeGenerated"], "1970-01-01T00:00:00.0000000Z");
    assert_eq!(parse(b.row(1))["TimeGenerated"], "2030-01-01T00:00:00.0000000Z");
    assert_eq!(parse(a.row(1))["RecordId_CF"], parse(b.row(1))["RecordId_CF"]);
    let mut enc = RowEncoder::new(&t, &no_ts.schema()).unwrap();
    assert_eq!(enc.encode_at(&no_ts, &mut EncodedRows::new(), 0).unwrap().clock_time, 1);
}

#[test]
fn record_id_is_deterministic_and_changes_with_table_and_values() {
    let t = table("DeviceInfo");
    let b = batch(&t);
    let id = |rows: &EncodedRows, i: usize| parse(rows.row(i))["RecordId_CF"].clone();
    let first = encode(&t, &b, 0);
    let again = encode(&t, &b, 12_345); // another encoder, another clock
    assert_eq!(first.row(0), again.row(0));
    assert_eq!(first.row(1), again.row(1));
    assert_ne!(id(&first, 0), id(&first, 1));
    // Another table, same values.
    let other = encode(&table("DeviceEvents"), &b, 0);
    assert_ne!(id(&first, 0), id(&other, 0));
    // One value changed by one unit.
    let mut columns = b.columns().to_vec();
    columns[2] = Arc::new(Int64Array::from(vec![Some(REPORT_ID + 1), None]));
    let changed = encode(&t, &RecordBatch::try_new(b.schema(), columns).unwrap(), 0);
    assert_ne!(id(&first, 0), id(&changed, 0));
    assert_eq!(id(&first, 1), id(&changed, 1));
}

#[test]
fn truncates_values_over_64_kb_on_a_char_boundary_and_counts_them() {
    let t = table("DeviceInfo");
    let b = batch(&t);
    // 1 + 2 × 40,000 bytes: byte 65,536 falls inside an `é`, so the cut is at 65,535.
    let long = format!("a{}", "é".repeat(40_000));
    let long_json = format!(r#"{{"k":"{}"}}"#, "x".repeat(MAX_FIELD_BYTES));
    let mut columns = b.columns().to_vec();
    columns[1] = strs(vec![Some(&long), Some(&long)]);
    columns[8] = strs(vec![Some(&long_json), None]);
    let b = RecordBatch::try_new(b.schema(), columns).unwrap();
    let mut enc = RowEncoder::new(&t, &b.schema()).unwrap();
    let mut out = EncodedRows::new();
    let stats = enc.encode_at(&b, &mut out, 0).unwrap();
    assert_eq!(stats.truncated, vec![("DeviceName".to_string(), 2), ("AdditionalFields".to_string(), 1)]);
    assert_eq!(stats.truncated_total(), 3);
    let row = parse(out.row(0));
    let name = row["DeviceName"].as_str().unwrap();
    assert_eq!(name.len(), 65_535);
    assert!(long.starts_with(name));
    // A cut dynamic value is no longer JSON: sent as a string.
    assert_eq!(row["AdditionalFields"].as_str().unwrap(), &long_json[..MAX_FIELD_BYTES]);
    assert_eq!(truncate("short"), ("short", false));
    let exact = "é".repeat(MAX_FIELD_BYTES / 2);
    assert_eq!(truncate(&exact), (exact.as_str(), false));
}

#[test]
fn rejects_unsupported_types_duplicate_names_and_other_schemas() {
    let t = table("DeviceInfo");
    let schema = Schema::new(vec![Field::new("Blob", DataType::Binary, true)]);
    assert!(matches!(RowEncoder::new(&t, &schema), Err(SentinelError::UnsupportedType { .. })));
    // `Type` is renamed to `Type_CF`; a column already named so collides with it.
    let schema =
        Schema::new(vec![Field::new("Type", DataType::Utf8, true), Field::new("Type_CF", DataType::Utf8, true)]);
    assert!(
        matches!(RowEncoder::new(&t, &schema), Err(SentinelError::DuplicateName { name, .. }) if name == "Type_CF")
    );
    let b = batch(&t);
    let mut enc = RowEncoder::new(&t, &b.project(&[0, 1]).unwrap().schema()).unwrap();
    let err = enc.encode_at(&b, &mut EncodedRows::new(), 0).unwrap_err();
    assert!(matches!(err, SentinelError::SchemaMismatch { .. }), "{err}");
}

#[test]
fn datetimes_have_seven_fractional_digits() {
    let fmt = |n: i64| {
        let mut buf = Vec::new();
        write_datetime(&mut buf, (n.div_euclid(1_000_000_000), n.rem_euclid(1_000_000_000) as u32));
        String::from_utf8(buf).unwrap()
    };
    assert_eq!(fmt(0), "1970-01-01T00:00:00.0000000Z");
    assert_eq!(fmt(-1), "1969-12-31T23:59:59.9999999Z");
    assert_eq!(fmt(nanos("2000-02-29T12:34:56.7654321Z")), "2000-02-29T12:34:56.7654321Z");
    assert_eq!(fmt(nanos("2100-03-01T00:00:00Z")), "2100-03-01T00:00:00.0000000Z");
    assert_eq!(fmt(i64::MAX), "2262-04-11T23:47:16.8547758Z");
    assert_eq!(fmt(i64::MIN), "1677-09-21T00:12:43.1452241Z");
}

proptest! {
    #[test]
    fn datetimes_match_chrono(n in any::<i64>()) {
        let mut buf = Vec::new();
        write_datetime(&mut buf, (n.div_euclid(1_000_000_000), n.rem_euclid(1_000_000_000) as u32));
        let nine = chrono::DateTime::from_timestamp_nanos(n).format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
        prop_assert_eq!(String::from_utf8(buf).unwrap(), format!("{}Z", &nine[..nine.len() - 2]));
    }

    #[test]
    fn strings_round_trip_through_json(s in any::<String>()) {
        let mut buf = Vec::new();
        write_str(&mut buf, &s);
        prop_assert_eq!(serde_json::from_slice::<String>(&buf).unwrap(), s);
    }
}

// ---- packing ----

/// Rows `{"i":<i>,"p":"<filler>"}` of exactly `size` bytes (at least 20); the filler is random
/// letters (compresses about 1.7×) or, with `repetitive`, one letter.
fn rows_of(sizes: &[usize], repetitive: bool) -> EncodedRows {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut rows = EncodedRows::new();
    for (i, &size) in sizes.iter().enumerate() {
        let head = format!(r#"{{"i":{i},"p":""#);
        let fill = size.saturating_sub(head.len() + 2);
        let mut row = head.into_bytes();
        for _ in 0..fill {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            row.push(if repetitive { b'a' } else { b'a' + (seed >> 59) as u8 % 26 });
        }
        row.extend_from_slice(b"\"}");
        rows.push(&row, 0);
    }
    rows
}

fn gunzip(body: &Body) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&body.gzip[..]).read_to_end(&mut out).unwrap();
    out
}

/// Every body within the mode's limits, a JSON array of exactly its rows; bodies and rejected
/// rows together cover every row once, in order.
fn check_packed(rows: &EncodedRows, packed: &Packed, mode: PackMode) {
    let mut next = 0;
    let (mut bodies, mut rejected) = (packed.bodies.iter().peekable(), packed.rejected.iter().peekable());
    while next < rows.len() {
        if let Some(r) = rejected.next_if(|r| r.row == next) {
            assert!(!r.reason.to_string().is_empty());
            next += 1;
            continue;
        }
        let body = bodies.next().unwrap_or_else(|| panic!("row {next} is in no body"));
        assert_eq!(body.first_row, next);
        assert!(body.rows > 0);
        let json = gunzip(body);
        assert_eq!(json.len(), body.uncompressed_len);
        let mut expected = b"[".to_vec();
        for i in body.range() {
            expected.extend_from_slice(rows.row(i));
            expected.push(b',');
        }
        *expected.last_mut().unwrap() = b']';
        assert_eq!(json, expected);
        let parsed: Vec<Value> = serde_json::from_slice(&json).unwrap();
        assert_eq!(parsed.len(), body.rows);
        match mode {
            PackMode::Uncompressed { max_bytes } => assert!(json.len() <= max_bytes),
            PackMode::Compressed { max_wire_bytes, max_decompressed } => {
                assert!(body.gzip.len() <= max_wire_bytes, "{} > {max_wire_bytes}", body.gzip.len());
                assert!(json.len() <= max_decompressed);
            }
        }
        next = body.range().end;
    }
    assert!(bodies.next().is_none() && rejected.next().is_none());
}

#[test]
fn sdk_mode_keeps_each_json_array_within_one_mebibyte_and_every_row_in_order() {
    let rows = rows_of(&[970; 5_000], false);
    let packer = Packer::new(PackMode::default(), 6);
    let packed = packer.pack(&rows);
    check_packed(&rows, &packed, PackMode::SDK);
    assert!(packed.rejected.is_empty());
    assert_eq!(packed.bodies.len(), 5); // 4,850,000 bytes of rows in ≤ 1,048,576-byte arrays
    assert!(packed.bodies[0].uncompressed_len > 1_040_000);
}

#[test]
fn compressed_mode_never_exceeds_its_wire_limit_or_decompressed_cap() {
    let default = rows_of(&[1_000; 3_000], false);
    let packed = Packer::new(PackMode::COMPRESSED, 6).pack(&default);
    check_packed(&default, &packed, PackMode::COMPRESSED);
    // Bodies fill up to the wire limit (within a row or two), not far below it.
    let (last, full) = packed.bodies.split_last().unwrap();
    assert!(
        !full.is_empty() && full.iter().all(|b| b.gzip.len() > 990_000),
        "{:?}",
        packed.bodies.iter().map(|b| b.gzip.len()).collect::<Vec<_>>()
    );
    assert!(last.gzip.len() <= 1_000_000);
    let sizes: Vec<usize> = (0..600).map(|i| 40 + i * 7 % 900).collect();
    for repetitive in [false, true] {
        let rows = rows_of(&sizes, repetitive);
        for mode in [
            PackMode::Compressed { max_wire_bytes: 4_000, max_decompressed: 1 << 20 },
            PackMode::Compressed { max_wire_bytes: 100_000, max_decompressed: 20_000 },
            PackMode::Compressed { max_wire_bytes: 1_200, max_decompressed: 1 << 20 },
        ] {
            for level in [0, 1, 9] {
                let packed = Packer::new(mode, level).pack(&rows);
                check_packed(&rows, &packed, mode);
                assert!(packed.rejected.is_empty(), "{mode:?} {level}");
            }
        }
    }
    // The cap binds for repetitive rows: bodies fill up to it, not to the wire limit.
    let rows = rows_of(&sizes, true);
    let mode = PackMode::Compressed { max_wire_bytes: 100_000, max_decompressed: 20_000 };
    let packed = Packer::new(mode, 6).pack(&rows);
    assert!(packed.bodies.iter().all(|b| b.uncompressed_len > 19_000 || b.range().end == rows.len()));
}

#[test]
fn an_oversize_row_is_rejected_with_a_reason_and_its_neighbours_are_sent() {
    let rows = rows_of(&[100, 100, 3_000, 100], false);
    let mode = PackMode::Uncompressed { max_bytes: 1_000 };
    let packed = Packer::new(mode, 6).pack(&rows);
    check_packed(&rows, &packed, mode);
    assert_eq!(packed.rejected.len(), 1);
    assert_eq!(packed.rejected[0].row, 2);
    assert_eq!(packed.rejected[0].reason, RejectReason::TooLarge { bytes: 3_000, limit: 1_000 });
    assert_eq!(packed.bodies.iter().map(Body::range).collect::<Vec<_>>(), [0..2, 3..4]);

    // Compressed: random text over the wire limit, and a row over the decompressed cap.
    let rows = rows_of(&[100, 5_000, 100, 30_000], false);
    let mode = PackMode::Compressed { max_wire_bytes: 2_000, max_decompressed: 20_000 };
    let packed = Packer::new(mode, 6).pack(&rows);
    check_packed(&rows, &packed, mode);
    let reasons: Vec<_> = packed.rejected.iter().map(|r| (r.row, r.reason.clone())).collect();
    assert!(matches!(reasons[0], (1, RejectReason::TooLargeCompressed { bytes: 5_000, limit: 2_000, .. })));
    assert_eq!(reasons[1], (3, RejectReason::OverDecompressedCap { bytes: 30_000, limit: 20_000 }));
    assert!(packed.rejected[1].reason.to_string().contains("30000 bytes"));
}

#[test]
fn a_large_row_that_compresses_under_the_wire_limit_is_sent_alone() {
    let rows = rows_of(&[100, 50_000, 100], true);
    let mode = PackMode::Compressed { max_wire_bytes: 2_000, max_decompressed: 1 << 20 };
    let packed = Packer::new(mode, 6).pack(&rows);
    check_packed(&rows, &packed, mode);
    assert!(packed.rejected.is_empty());
    assert!(packed.bodies.iter().any(|b| b.range() == (1..2)));
}

#[test]
fn split_halves_a_body_for_413() {
    let rows = rows_of(&[200; 9], false);
    let packer = Packer::new(PackMode::default(), 6);
    let packed = packer.pack(&rows);
    assert_eq!(packed.bodies.len(), 1);
    let (left, right) = packer.split(&rows, &packed.bodies[0]).unwrap();
    assert_eq!((left.range(), right.range()), (0..4, 4..9));
    let halves = Packed { bodies: vec![left.clone(), right], rejected: vec![] };
    check_packed(&rows, &halves, PackMode::default());
    let (one, _) = packer.split(&rows, &left).unwrap();
    let (single, _) = packer.split(&rows, &one).unwrap();
    assert_eq!(single.rows, 1);
    assert!(packer.split(&rows, &single).is_none());
}

#[test]
fn encoded_batches_pack_into_json_arrays_of_the_same_rows() {
    let t = table("DeviceInfo");
    let rows = encode(&t, &batch(&t), 0);
    let packed = Packer::new(PackMode::default(), 6).pack(&rows);
    check_packed(&rows, &packed, PackMode::SDK);
    let parsed: Vec<Value> = serde_json::from_slice(&gunzip(&packed.bodies[0])).unwrap();
    assert_eq!(Value::Object(parse(rows.row(0))), parsed[0]);
    assert!(Packer::new(PackMode::default(), 6).pack(&EncodedRows::new()).bodies.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn packing_keeps_every_row_once_in_order_within_limits(
        sizes in prop::collection::vec(20usize..3_000, 0..150),
        repetitive in any::<bool>(),
        compressed in any::<bool>(),
        limit in 500usize..20_000,
        cap in 500usize..40_000,
        level in 0u32..10,
    ) {
        let rows = rows_of(&sizes, repetitive);
        let mode = if compressed {
            PackMode::Compressed { max_wire_bytes: limit, max_decompressed: cap }
        } else {
            PackMode::Uncompressed { max_bytes: limit }
        };
        let packed = Packer::new(mode, level).pack(&rows);
        check_packed(&rows, &packed, mode);
        if let PackMode::Uncompressed { max_bytes } = mode {
            for r in &packed.rejected {
                prop_assert!(rows.row(r.row).len() + 2 > max_bytes);
            }
        }
    }
}

mod plans;
