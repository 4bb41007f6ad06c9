use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, NullArray, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow_schema::{Field, Schema};
use proptest::prelude::*;

use super::*;
use crate::schema::{Catalog, timestamp_type, unknown_table_schema};

/// 2026-11-20T10:00:00.0000001Z in nanoseconds.
const T: i64 = 1_795_168_800_000_000_100;
const GUID: &str = "0f6e1c5a-8a4b-4c1e-9f3d-2b7a6c5d4e3f";

/// Four rows; the columns of a decoded batch (table columns, then the envelope columns).
fn hand_built_batch() -> RecordBatch {
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("Long", Arc::new(Int64Array::from(vec![639_199_803_770_463_703, -5, 0, i64::MIN]))),
        ("Int", Arc::new(Int32Array::from(vec![Some(42), Some(i32::MIN), None, Some(7)]))),
        ("Real", Arc::new(Float64Array::from(vec![Some(1.5), None, Some(-0.25), Some(100.0)]))),
        ("Flag", Arc::new(BooleanArray::from(vec![Some(true), Some(false), None, Some(true)]))),
        ("Timestamp", Arc::new(TimestampNanosecondArray::from(vec![T; 4]).with_timezone("UTC"))),
        ("Text", Arc::new(StringArray::from(vec![Some(""), None, Some("abc"), Some("é")]))),
        ("Type", Arc::new(StringArray::from(vec![Some("DeviceEvent"), Some("x"), None, Some("")]))),
        ("TenantId", Arc::new(StringArray::from(vec![Some(GUID), Some(GUID), Some(GUID), None]))),
        (
            "_EnvelopeTime",
            Arc::new(TimestampNanosecondArray::from(vec![Some(T), None, Some(T), None]).with_timezone("UTC")),
        ),
        ("_Extra", Arc::new(StringArray::from(vec![None, Some(r#"{"a":1}"#), None, None]))),
    ];
    RecordBatch::try_from_iter(columns).unwrap()
}

/// Expected bytes per row, by hand. Column order: TimeGenerated + Long + Int + Real + Flag +
/// Timestamp + Text + Type(_CF) + TenantId(_CF) + EnvelopeTime(_CF) + Extra(_CF).
#[allow(clippy::identity_op, reason = "the `+ 0` terms spell out the null and empty entries")]
const EXPECTED: [u64; 4] = [
    // 28 + "639199803770463703" + "42" + "1.5" + "true" + datetime + "" + "DeviceEvent" + guid + datetime + null
    28 + 18 + 2 + 3 + 4 + 28 + 0 + 11 + 36 + 28 + 0,
    // 28 + "-5" + "-2147483648" + null + "false" + datetime + null + "x" + guid + null + `{"a":1}`
    28 + 2 + 11 + 0 + 5 + 28 + 0 + 1 + 36 + 0 + 7,
    // 28 + "0" + null + "-0.25" + null + datetime + "abc" + null + guid + datetime + null
    28 + 1 + 0 + 5 + 0 + 28 + 3 + 0 + 36 + 28 + 0,
    // 28 + "-9223372036854775808" + "7" + "100.0" + "true" + datetime + "é" (2 bytes) + "" + null + null + null
    28 + 20 + 1 + 5 + 4 + 28 + 2 + 0 + 0 + 0 + 0,
];

#[test]
fn bills_the_hand_computed_bytes_per_row_in_analytics() {
    let batch = hand_built_batch();
    assert_eq!(billed_bytes_per_row(&batch, Tier::Analytics).unwrap(), EXPECTED);
    assert_eq!(EXPECTED, [158, 118, 129, 88]);
    assert_eq!(billed_bytes(&batch, Tier::Analytics).unwrap(), 158 + 118 + 129 + 88);
}

#[test]
fn bills_the_hand_computed_bytes_per_column_and_they_add_up_to_the_rows() {
    let batch = hand_built_batch();
    let bill = bill_by_column(&batch, Tier::Analytics).unwrap();
    assert_eq!(bill.rows, EXPECTED);
    let columns: Vec<(&str, u64)> = bill.columns.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    // The columns of EXPECTED, summed down the four rows.
    assert_eq!(
        columns,
        [
            ("TimeGenerated", 4 * 28),
            ("Long", 18 + 2 + 1 + 20),
            ("Int", 2 + 11 + 1),
            ("Real", 3 + 5 + 5),
            ("Flag", 4 + 5 + 4),
            ("Timestamp", 4 * 28),
            ("Text", 3 + 2),
            ("Type", 11 + 1),
            ("TenantId", 3 * 36),
            ("_EnvelopeTime", 2 * 28),
            ("_Extra", 7),
        ]
    );
    assert_eq!(bill.total(), 493);
    assert_eq!(columns.iter().map(|c| c.1).sum::<u64>(), 493);
    // Auxiliary bills the same columns of ours (renamed) and leaves none out.
    assert_eq!(
        bill_by_column(&batch, Tier::Auxiliary).unwrap().total(),
        billed_bytes(&batch, Tier::Auxiliary).unwrap()
    );
}

#[test]
fn our_type_and_tenant_id_columns_are_renamed_and_billed_in_every_tier() {
    // `Type` → `Type_CF` and `TenantId` → `TenantId_CF`: custom columns, not the standard `Type`
    // and `_TenantId` that Analytics and Basic exclude, so every tier bills the same bytes.
    assert_eq!(sentinel_name("Type"), "Type_CF");
    assert_eq!(sentinel_name("TenantId"), "TenantId_CF");
    let batch = hand_built_batch();
    for tier in Tier::ALL {
        assert_eq!(billed_bytes_per_row(&batch, tier).unwrap(), EXPECTED, "{tier:?}");
    }
    let names: Vec<String> =
        billed_columns(&batch.schema(), Tier::Analytics).unwrap().into_iter().map(|c| c.name).collect();
    assert!(names.contains(&"Type_CF".to_string()) && names.contains(&"TenantId_CF".to_string()));
    assert!(names.contains(&"EnvelopeTime_CF".to_string()) && names.contains(&"Extra_CF".to_string()));
}

#[test]
fn excludes_standard_columns_by_sentinel_name_per_tier() {
    for name in ["_ResourceId", "_SubscriptionId", "_ItemId", "_IsBillable", "_BilledSize", "_TenantId", "Type"] {
        assert!(Tier::Analytics.excludes(name), "{name}");
        assert!(Tier::Basic.excludes(name), "{name}");
    }
    for name in ["_ItemId", "_IsBillable", "_BilledSize"] {
        assert!(Tier::Auxiliary.excludes(name), "{name}");
    }
    for name in ["Type", "_TenantId", "_ResourceId", "_SubscriptionId"] {
        assert!(!Tier::Auxiliary.excludes(name), "auxiliary bills {name}");
    }
    for tier in Tier::ALL {
        for name in ["Type_CF", "TenantId_CF", "TimeGenerated", "Timestamp", "DeviceName"] {
            assert!(!tier.excludes(name), "{tier:?} bills {name}");
        }
    }
}

#[test]
fn auxiliary_bills_the_standard_type_and_tenant_columns_it_adds() {
    assert_eq!(standard_columns_bytes(Tier::Analytics, "DeviceEvents_CL"), 0);
    assert_eq!(standard_columns_bytes(Tier::Basic, "DeviceEvents_CL"), 0);
    // "DeviceEvents_CL" (15) + workspace guid (36)
    assert_eq!(standard_columns_bytes(Tier::Auxiliary, "DeviceEvents_CL"), 15 + 36);
}

#[test]
fn column_names_count_only_when_the_switch_says_so() {
    let batch = hand_built_batch();
    // The documented reading, values only, is the default.
    assert_eq!(billed_bytes_per_row_with(&batch, Tier::Analytics, COLUMN_NAMES_BILLED).unwrap(), EXPECTED);
    let with_names = billed_bytes_per_row_with(&batch, Tier::Analytics, true).unwrap();
    // Row 3 bills TimeGenerated, Long, Int, Real, Flag, Timestamp, Text ("é"); Type is "" and the
    // rest are null: names "TimeGenerated" (13) + "Long" (4) + "Int" (3) + "Real" (4) + "Flag" (4)
    // + "Timestamp" (9) + "Text" (4).
    assert_eq!(with_names[3], EXPECTED[3] + 13 + 4 + 3 + 4 + 4 + 9 + 4);
    // Row 1 adds "Extra_CF" (8) for `{"a":1}` but nothing for the null Real.
    assert_eq!(with_names[1], EXPECTED[1] + 13 + 4 + 3 + 4 + 9 + 7 + 11 + 8);
}

#[test]
fn a_sliced_batch_bills_the_rows_it_holds() {
    let batch = hand_built_batch();
    assert_eq!(billed_bytes_per_row(&batch.slice(1, 2), Tier::Analytics).unwrap(), EXPECTED[1..3]);
    assert_eq!(billed_bytes(&batch.slice(3, 1), Tier::Basic).unwrap(), EXPECTED[3]);
}

#[test]
fn an_empty_batch_bills_nothing_and_a_null_column_adds_nothing() {
    let batch = RecordBatch::new_empty(hand_built_batch().schema());
    assert_eq!(billed_bytes_per_row(&batch, Tier::Analytics).unwrap(), Vec::<u64>::new());
    let nulls = RecordBatch::try_from_iter([("Nothing", Arc::new(NullArray::new(2)) as ArrayRef)]).unwrap();
    assert_eq!(billed_bytes_per_row(&nulls, Tier::Analytics).unwrap(), [28, 28]);
}

#[test]
fn rejects_an_arrow_type_without_a_string_form() {
    let batch = RecordBatch::try_from_iter([("Day", Arc::new(Date32Array::from(vec![1])) as ArrayRef)]).unwrap();
    let err = billed_bytes(&batch, Tier::Analytics).unwrap_err();
    assert!(matches!(&err, BillingError::UnsupportedType { column, .. } if column == "Day"), "{err}");
    assert!(billed_columns(&batch.schema(), Tier::Analytics).is_err());
}

#[test]
fn every_embedded_table_schema_is_billable() {
    let catalog = Catalog::embedded();
    let schemas = catalog.tables().iter().map(|t| t.arrow_schema()).chain([unknown_table_schema()]);
    for schema in schemas {
        let columns = billed_columns(&schema, Tier::Analytics).unwrap();
        assert_eq!(columns[0], BilledColumn { name: "TimeGenerated".to_string(), ty: ColumnType::Datetime });
        assert_eq!(columns.len(), schema.fields().len() + 1);
        let empty = RecordBatch::new_empty(schema);
        assert_eq!(billed_bytes(&empty, Tier::Auxiliary).unwrap(), 0);
    }
    let field = Field::new("Timestamp", timestamp_type(), false);
    let columns = billed_columns(&Schema::new(vec![field]), Tier::Basic).unwrap();
    assert_eq!(columns[1], BilledColumn { name: "Timestamp".to_string(), ty: ColumnType::Datetime });
}

#[test]
fn string_form_table_examples_have_the_stated_lengths() {
    assert_eq!(STRING_FORMS.len(), 8, "one row per column type");
    for form in STRING_FORMS {
        assert_eq!(string_len(form.example), form.bytes, "{:?}", form.ty);
        let computed = match form.ty {
            ColumnType::Long => long_len(form.example.parse().unwrap()),
            ColumnType::Int => int_len(form.example.parse().unwrap()),
            ColumnType::Real => real_len(form.example.parse().unwrap()),
            ColumnType::Bool => bool_len(form.example.parse().unwrap()),
            ColumnType::Datetime => datetime_len(),
            ColumnType::String | ColumnType::Guid | ColumnType::Dynamic => string_len(form.example),
        };
        assert_eq!(computed, form.bytes, "{:?}", form.ty);
    }
    assert_eq!((bool_len(true), bool_len(false)), (4, 5));
}

#[test]
fn datetime_string_form_is_28_bytes_with_seven_fractional_digits() {
    let t = chrono::DateTime::from_timestamp_nanos(T);
    // 100 ns ticks: chrono has no 7-digit fraction specifier.
    let text = format!("{}.{:07}Z", t.format("%Y-%m-%dT%H:%M:%S"), t.timestamp_subsec_nanos() / 100);
    assert_eq!(text, "2026-11-20T10:00:00.0000001Z");
    assert_eq!(text.len() as u64, datetime_len());
    assert_eq!(TIME_GENERATED_BYTES, 28);
}

#[test]
fn digit_counts_at_the_edges() {
    for (v, len) in [(0, 1), (9, 1), (10, 2), (-1, 2), (-10, 3), (639_199_803_770_463_703, 18), (i64::MAX, 19)] {
        assert_eq!(long_len(v), len, "{v}");
    }
    assert_eq!(long_len(i64::MIN), 20);
    assert_eq!(int_len(i32::MIN), 11);
    assert_eq!(int_len(i32::MAX), 10);
}

#[test]
fn real_lengths_follow_ryu() {
    assert_eq!(real_len(1.5), 3);
    assert_eq!(real_len(100.0), 5, "ryu writes 100.0");
    assert_eq!(real_len(-0.25), 5);
    assert_eq!(real_len(1e20), 4, "ryu writes 1e20");
}

#[test]
fn monthly_cost_is_gb_per_day_times_30_44_days_times_price() {
    // 10 GB/day × 30.44 days × $2.30 = $700.12
    assert!((monthly_cost(10.0, 2.30) - 700.12).abs() < 1e-9);
    assert_eq!(monthly_cost(0.0, 5.22), 0.0);
    // 1 GB/day at $5.22/GB: 30.44 × 5.22 = 158.8968
    assert!((monthly_cost(1.0, Prices::default().analytics_per_gb) - 158.8968).abs() < 1e-9);
}

#[test]
fn projects_gb_per_day_from_bytes_over_an_event_time_span() {
    // 0.5 GB in one hour → 12 GB per day
    assert!((projected_gb_per_day(500_000_000, 3600.0) - 12.0).abs() < 1e-12);
    // 10^9 bytes over a day → 1 GB per day
    assert!((projected_gb_per_day(1_000_000_000, 86_400.0) - 1.0).abs() < 1e-12);
    assert_eq!(projected_gb_per_day(1_000, 0.0), 0.0);
    assert_eq!(projected_gb_per_day(1_000, -1.0), 0.0);
    assert_eq!(projected_gb_per_day(1_000, f64::NAN), 0.0);
}

#[test]
fn default_prices_are_the_documented_table() {
    let p = Prices::default();
    assert_eq!(p.as_of, AS_OF);
    assert_eq!(AS_OF, "2026-11");
    assert_eq!(p.currency, "USD");
    assert_eq!(
        (p.analytics_per_gb, p.basic_per_gb, p.auxiliary_per_gb, p.archive_storage_per_gb_month),
        (5.22, 0.50, 0.15, 0.018)
    );
    assert_eq!((p.per_gb(Tier::Analytics), p.per_gb(Tier::Basic), p.per_gb(Tier::Auxiliary)), (5.22, 0.50, 0.15));
}

#[test]
fn config_overrides_any_subset_of_prices_and_rejects_unknown_fields() {
    let p: Prices = serde_json::from_str(r#"{"analytics_per_gb": 2.3, "currency": "EUR"}"#).unwrap();
    assert_eq!(p, Prices { analytics_per_gb: 2.3, currency: "EUR".to_string(), ..Prices::default() });
    let err = serde_json::from_str::<Prices>(r#"{"analytics_per_gib": 2.3}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    let tier: Tier = serde_json::from_str(r#""auxiliary""#).unwrap();
    assert_eq!(tier, Tier::Auxiliary);
}

proptest! {
    #[test]
    fn per_column_bytes_add_up_to_the_billed_bytes_of_every_row(
        rows in proptest::collection::vec(
            (proptest::option::of(".{0,6}"), proptest::option::of(any::<i64>()), proptest::option::of(any::<bool>())),
            0..24,
        )
    ) {
        let text: ArrayRef = Arc::new(StringArray::from(rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>()));
        let long: ArrayRef = Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>()));
        let flag: ArrayRef = Arc::new(BooleanArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>()));
        let batch = RecordBatch::try_from_iter([("Text", text), ("_ResourceId", long), ("Flag", flag)]).unwrap();
        for tier in Tier::ALL {
            let bill = bill_by_column(&batch, tier).unwrap();
            prop_assert_eq!(&bill.rows, &billed_bytes_per_row(&batch, tier).unwrap());
            prop_assert_eq!(bill.columns.iter().map(|c| c.1).sum::<u64>(), bill.total());
        }
    }

    #[test]
    fn long_len_matches_to_string(v in any::<i64>()) {
        prop_assert_eq!(long_len(v), v.to_string().len() as u64);
    }

    #[test]
    fn int_len_matches_to_string(v in any::<i32>()) {
        prop_assert_eq!(int_len(v), v.to_string().len() as u64);
    }

    #[test]
    fn real_len_is_the_ryu_round_trip_length(v in any::<f64>().prop_filter("finite", |v| v.is_finite())) {
        let text = ryu::Buffer::new().format_finite(v).to_string();
        prop_assert_eq!(real_len(v), text.len() as u64);
        prop_assert_eq!(text.parse::<f64>().unwrap(), v);
    }

    #[test]
    fn string_len_is_the_utf8_length(s in ".*") {
        prop_assert_eq!(string_len(&s), s.len() as u64);
    }

    #[test]
    fn a_utf8_column_bills_its_value_lengths(values in proptest::collection::vec(proptest::option::of(".{0,8}"), 0..16)) {
        let array: ArrayRef = Arc::new(StringArray::from(values.clone()));
        let batch = RecordBatch::try_from_iter([("Text", array)]).unwrap();
        let expected: Vec<u64> = values.iter().map(|v| 28 + v.as_deref().map_or(0, string_len)).collect();
        prop_assert_eq!(billed_bytes_per_row(&batch, Tier::Analytics).unwrap(), expected);
    }
}
