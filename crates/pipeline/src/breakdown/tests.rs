use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use defender_core::{
    Catalog,
    billing::{Tier, bill_by_column},
};

use super::*;

const ID: &str = "0123456789abcdef0123456789abcdef";

/// Three DeviceNetworkEvents rows, by hand (TimeGenerated 28 B each, `_RecordId` 32):
/// 1. ConnectionSuccess (17) + 443 (3) + `{"a":1}` (7) + 32 + 28 = 87
/// 2. ConnectionSuccess (17) + 80 (2) + null (0) + 32 + 28 = 79
/// 3. null ActionType (0) + 8080 (4) + `{}` (2) + 32 + 28 = 66
fn fixture() -> RecordBatch {
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("ActionType", Arc::new(StringArray::from(vec![Some("ConnectionSuccess"), Some("ConnectionSuccess"), None]))),
        ("RemotePort", Arc::new(Int32Array::from(vec![443, 80, 8080]))),
        ("AdditionalFields", Arc::new(StringArray::from(vec![Some(r#"{"a":1}"#), None, Some("{}")]))),
        ("_RecordId", Arc::new(StringArray::from(vec![ID; 3]))),
    ];
    RecordBatch::try_from_iter(columns).unwrap()
}

fn table() -> Arc<TableSchema> {
    Catalog::embedded().get("DeviceNetworkEvents").unwrap().clone()
}

/// GB/day = bytes (so every figure is checkable by hand), at 1 per GB.
fn finish(acc: DetailAcc, filtered: bool) -> TableDetail {
    acc.finish(&table(), filtered, &|b| b as f64, 1.0)
}

fn columns(b: &Breakdown) -> Vec<(&str, u64, bool)> {
    b.columns.iter().map(|c| (c.column.as_str(), c.billed_bytes, c.fixed)).collect()
}

fn groups(b: &Breakdown) -> Vec<(&str, u64, u64)> {
    let g = b.groups.as_ref().unwrap();
    g.values.iter().chain(&g.rest).map(|g| (g.value.as_str(), g.rows, g.billed_bytes)).collect()
}

#[test]
fn columns_and_groups_of_a_hand_computed_fixture_add_up_to_the_table() {
    let batch = fixture();
    let filter =
        policy::parse("where RemotePort != 80 | project-away AdditionalFields").unwrap().check(&table()).unwrap();
    let (sent, mask) = filter.apply_with_mask(&batch).unwrap();
    let before = bill_by_column(&batch, Tier::Analytics).unwrap();
    let after = bill_by_column(&sent, Tier::Analytics).unwrap();
    assert_eq!((before.total(), after.total()), (87 + 79 + 66, 80 + 64));
    let mut acc = DetailAcc::new(Some("ActionType".into()));
    acc.add(&batch, &before, Some((&after, mask.as_ref(), &sent)));
    let d = finish(acc, true);

    assert_eq!(d.before.billed_bytes, 232);
    assert_eq!(
        columns(&d.before),
        [
            ("_RecordId", 96, true),
            ("TimeGenerated", 84, true),
            ("ActionType", 34, false),
            ("AdditionalFields", 9, false),
            ("RemotePort", 9, false),
        ]
    );
    assert_eq!(d.before.columns.iter().map(|c| c.billed_bytes).sum::<u64>(), 232);
    assert_eq!(d.before.columns[0].sentinel_column, "RecordId_CF");
    assert_eq!(d.before.columns[1].sentinel_column, "TimeGenerated", "Log Analytics' own column, not renamed");
    assert!((d.before.columns[2].share - 34.0 / 232.0).abs() < 1e-12);
    assert!((d.before.columns[2].cost_per_month - 34.0 * 30.44).abs() < 1e-9);
    assert_eq!(groups(&d.before), [("ConnectionSuccess", 2, 87 + 79), (EMPTY, 1, 66)]);

    // After `where RemotePort != 80 | project-away AdditionalFields`: rows 1 and 3, 80 + 64.
    let a = d.after.as_ref().unwrap();
    assert_eq!((a.rows, a.billed_bytes), (2, 144));
    assert_eq!(
        columns(a),
        [("_RecordId", 64, true), ("TimeGenerated", 56, true), ("ActionType", 17, false), ("RemotePort", 7, false)]
    );
    assert_eq!(groups(a), [("ConnectionSuccess", 1, 80), (EMPTY, 1, 64)]);

    // Savings on what is sent, largest first; ActionType is protected, the fixed columns too.
    let s: Vec<(&str, u64)> = d.savings.iter().map(|s| (s.line.as_str(), s.billed_bytes)).collect();
    assert_eq!(
        s,
        [
            ("| where ActionType != \"ConnectionSuccess\"", 80),
            ("| where isnotempty(ActionType)", 64),
            ("| project-away RemotePort", 7),
        ]
    );
    assert_eq!(d.savings[1].value.as_deref(), Some(EMPTY));
    assert!((d.savings[0].share - 80.0 / 144.0).abs() < 1e-12);
}

#[test]
fn each_saving_saves_what_it_says_when_applied() {
    let batch = fixture();
    let bill = bill_by_column(&batch, Tier::Analytics).unwrap();
    let mut acc = DetailAcc::new(Some("ActionType".into()));
    acc.add(&batch, &bill, Some((&bill, None, &batch)));
    let d = finish(acc, false);
    assert!(!d.savings.is_empty());
    for s in &d.savings {
        assert_eq!(s.line, s.kql, "no filter yet: the line is the stage");
        let filter = policy::parse(&s.line).unwrap().check(&table()).unwrap();
        let saved = bill.total() - bill_by_column(&filter.apply(&batch).unwrap(), Tier::Analytics).unwrap().total();
        assert_eq!(saved, s.billed_bytes, "{}", s.line);
    }
}

#[test]
fn a_value_with_quotes_is_a_valid_kql_literal() {
    let value = r#"Odd "quoted" \ value"#;
    let batch = RecordBatch::try_from_iter([
        ("ActionType", Arc::new(StringArray::from(vec![value, "x"])) as ArrayRef),
        ("_RecordId", Arc::new(StringArray::from(vec![ID; 2])) as ArrayRef),
    ])
    .unwrap();
    let bill = bill_by_column(&batch, Tier::Analytics).unwrap();
    let mut acc = DetailAcc::new(Some("ActionType".into()));
    acc.add(&batch, &bill, Some((&bill, None, &batch)));
    let d = finish(acc, false);
    let s = &d.savings[0];
    let kept = policy::parse(&s.line).unwrap().check(&table()).unwrap().apply(&batch).unwrap();
    let kept = kept.column_by_name("ActionType").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!((kept.len(), kept.value(0)), (1, "x"), "{}", s.line);
}

#[test]
fn distinct_values_beyond_the_bound_are_summed_and_the_groups_still_add_up() {
    let n = MAX_TRACKED_VALUES + 500;
    let mut values: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
    values.push("x".repeat(MAX_VALUE_LEN + 1));
    let batch = RecordBatch::try_from_iter([("ActionType", Arc::new(StringArray::from(values)) as ArrayRef)]).unwrap();
    let bill = bill_by_column(&batch, Tier::Analytics).unwrap();
    let mut acc = DetailAcc::new(Some("ActionType".into()));
    acc.add(&batch, &bill, None);
    assert_eq!(acc.names.len(), MAX_TRACKED_VALUES, "memory stays bounded");
    let d = finish(acc, false);
    let g = d.before.groups.as_ref().unwrap();
    assert_eq!(g.values.len(), GROUPS_SHOWN);
    assert_eq!(g.untracked_rows, 501);
    assert_eq!(g.rest_values, MAX_TRACKED_VALUES - GROUPS_SHOWN);
    let rows: u64 = g.values.iter().chain(&g.rest).map(|g| g.rows).sum();
    let bytes: u64 = g.values.iter().chain(&g.rest).map(|g| g.billed_bytes).sum();
    assert_eq!((rows, bytes), (n as u64 + 1, bill.total()));
    assert!(g.values.windows(2).all(|w| w[0].billed_bytes >= w[1].billed_bytes), "heaviest first");
    assert!(d.savings.is_empty(), "not sent to Sentinel: nothing to save");
}

#[test]
fn every_default_group_column_fits_its_table_and_protected_columns_exist() {
    let catalog = Catalog::embedded();
    for t in catalog.tables() {
        if let Some(c) = default_group_column(t) {
            check_group_column(t, c).unwrap_or_else(|e| panic!("{}: {e}", t.table));
        }
    }
    assert_eq!(default_group_column(catalog.get("DeviceEvents").unwrap()), Some("ActionType"));
    assert_eq!(default_group_column(catalog.get("EmailEvents").unwrap()), Some("EmailDirection"));
    assert_eq!(default_group_column(catalog.get("DeviceFileCertificateInfo").unwrap()), None);
    for c in PROTECTED_COLUMNS.iter().filter(|c| **c != COL_RECORD_ID) {
        assert!(catalog.tables().iter().any(|t| t.columns.iter().any(|x| x.name == *c)), "{c} is a column somewhere");
    }
    let err = check_group_column(catalog.get("DeviceNetworkEvents").unwrap(), "RemotePort").unwrap_err();
    assert_eq!(err, "`RemotePort` has type int; grouping takes a string column");
}
