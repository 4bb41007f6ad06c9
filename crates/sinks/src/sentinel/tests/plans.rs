//! Auxiliary tables: values shaped as the plan takes them, calls within the 30-minute window.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use defender_core::billing::Tier;
use proptest::prelude::*;
use serde_json::Value;

use super::{batch, check_packed, gunzip, nanos, parse, strs, table, ts};
use crate::sentinel::{
    pack::{AUXILIARY_MAX_SPAN, PackMode, Packed, Packer},
    rows::{EncodedRows, RowEncoder},
};

const MINUTE: i64 = 60_000_000_000;

fn encode_as(plan: Tier, b: &RecordBatch) -> EncodedRows {
    let t = table("DeviceInfo");
    let mut enc = RowEncoder::new(&t, &b.schema()).unwrap().with_table_plan(plan);
    let mut out = EncodedRows::new();
    enc.encode_at(b, &mut out, 0).unwrap();
    out
}

#[test]
fn auxiliary_rows_take_json_only_into_dynamic_columns_and_time_generated_to_the_microsecond() {
    let b = batch(&table("DeviceInfo"));
    let aux = encode_as(Tier::Auxiliary, &b);
    let row = parse(aux.row(0));
    assert_eq!(row["TimeGenerated"], "2026-11-20T10:30:00.123456Z");
    assert_eq!(aux.time(0), nanos("2026-11-20T10:30:00.123456Z"), "the time as written");
    assert_eq!(row["Extra_CF"], Value::String(r#"{"RemotePort":"-"}"#.into()), "a string column: JSON as text");
    assert!(row["AdditionalFields"].is_object(), "a dynamic column takes the object");
    assert_eq!(row["EnvelopeTime_CF"], "2026-11-20T10:30:01.0000000Z", "other datetimes as before");
    for plan in [Tier::Analytics, Tier::Basic] {
        let rows = encode_as(plan, &b);
        let row = parse(rows.row(0));
        assert_eq!(row["TimeGenerated"], "2026-11-20T10:30:00.1234567Z", "{plan:?}");
        assert!(row["Extra_CF"].is_object(), "{plan:?}: unchanged");
        assert_eq!(rows.time(0), nanos("2026-11-20T10:30:00.1234567Z"));
    }
}

/// `times` (nanoseconds) as the `Timestamp` of the test table's rows, every other column null.
fn timed_batch(times: &[i64]) -> RecordBatch {
    let t = table("DeviceInfo");
    let schema = t.arrow_schema();
    let n = times.len();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if i == 0 {
                ts(times.iter().copied().map(Some).collect())
            } else if f.name() == "DeviceName" {
                let names: Vec<String> = (0..n).map(|i| format!("row-{i}")).collect();
                Arc::new(arrow_array::StringArray::from(names)) as ArrayRef
            } else {
                arrow_array::new_null_array(f.data_type(), n)
            }
        })
        .collect();
    let _ = strs; // (the shared helpers build the other tests' batches)
    RecordBatch::try_new(schema, columns).unwrap()
}

/// Every body's rows span less than 30 minutes of `TimeGenerated`, read back from the JSON.
fn check_windows(packed: &Packed) {
    for body in &packed.bodies {
        let rows: Vec<Value> = serde_json::from_slice(&gunzip(body)).unwrap();
        let times: Vec<i64> = rows.iter().map(|r| nanos(r["TimeGenerated"].as_str().unwrap())).collect();
        let span = times.iter().max().unwrap() - times.iter().min().unwrap();
        assert!(span < 30 * MINUTE, "a body spans {} s", span / 1_000_000_000);
    }
}

#[test]
fn an_auxiliary_batch_spanning_hours_goes_in_calls_of_under_30_minutes_and_far_rows_get_through() {
    let start = nanos("2026-11-20T00:00:00Z");
    // Six hours, one row every 20 s, out of order (a lagging partition, a backfill)...
    let mut times: Vec<i64> = (0..1080).map(|i| start + (i * 7919 % 1080) * 20_000_000_000).collect();
    // ... and rows far in the past and the future.
    let (past, future) = (nanos("2024-01-01T00:00:00Z"), nanos("2026-11-25T00:00:00Z"));
    times.extend([past, future, start + 29 * MINUTE + 59_999_999_999]);
    let b = timed_batch(&times);
    for mode in [PackMode::SDK, PackMode::COMPRESSED, PackMode::Uncompressed { max_bytes: 16 * 1024 }] {
        let (rows, order) = encode_as(Tier::Auxiliary, &b).sorted_by_time();
        let packer = Packer::new(mode, 6).for_plan(Tier::Auxiliary);
        assert_eq!(packer.time_window(), Some(AUXILIARY_MAX_SPAN));
        let packed = packer.pack(&rows);
        check_packed(&rows, &packed, mode);
        check_windows(&packed);
        assert!(packed.rejected.is_empty());
        // Each row once, whatever the order it came in.
        let mut names: Vec<usize> = order.clone();
        names.sort_unstable();
        assert_eq!(names, (0..times.len()).collect::<Vec<_>>());
        // 6 hours in windows of under 30 minutes: at least 12 calls, plus one each for the far rows.
        assert!(packed.bodies.len() >= 14, "{} bodies", packed.bodies.len());
        for far in [past, future] {
            let body = packed.bodies.iter().find(|bd| bd.range().any(|i| rows.time(i) == far)).unwrap();
            assert_eq!(body.rows, 1, "a row far from the others is sent in a call of its own");
        }
        if mode == PackMode::SDK {
            assert!(packed.bodies.len() <= 16, "sorted rows make few calls: {}", packed.bodies.len());
        }
    }
    // The Analytics plan has no window: one call (the rows fit in 1 MiB).
    let rows = encode_as(Tier::Analytics, &b);
    assert_eq!(Packer::new(PackMode::SDK, 6).for_plan(Tier::Analytics).pack(&rows).bodies.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the times and their order (sorted or not), every body of a windowed packer spans
    /// less than the window, and every row is in exactly one body, in order.
    #[test]
    fn windowed_bodies_never_span_the_window(
        offsets in prop::collection::vec(0i64..(6 * 60), 1..200),
        sort in any::<bool>(),
        compressed in any::<bool>(),
        window_minutes in 1u64..60,
    ) {
        let start = nanos("2026-11-20T00:00:00Z");
        let times: Vec<i64> = offsets.iter().map(|m| start + m * MINUTE + m % 7).collect();
        let rows = encode_as(Tier::Auxiliary, &timed_batch(&times));
        let rows = if sort { rows.sorted_by_time().0 } else { rows };
        let mode = if compressed { PackMode::COMPRESSED } else { PackMode::SDK };
        let window = std::time::Duration::from_secs(window_minutes * 60);
        let packed = Packer::new(mode, 1).with_time_window(Some(window)).pack(&rows);
        check_packed(&rows, &packed, mode);
        for body in &packed.bodies {
            let ts: Vec<i64> = body.range().map(|i| rows.time(i)).collect();
            let span = ts.iter().max().unwrap() - ts.iter().min().unwrap();
            prop_assert!((span as u128) < window.as_nanos());
        }
    }
}
