use super::*;

#[test]
fn embedded_catalog_has_every_table_and_passes_check() {
    let catalog = Catalog::embedded();
    assert_eq!(catalog.tables().len(), 36);
    assert_eq!(catalog.tables().iter().filter(|t| t.tvm).count(), 12);
    let problems = catalog.check();
    assert!(problems.is_empty(), "{problems:?}");
    for t in catalog.tables() {
        if t.table.starts_with("Device") {
            assert!(t.column("MachineGroup").is_some(), "{} accepts MachineGroup", t.table);
        }
    }
    assert!(catalog.by_category("AdvancedHunting-DeviceInfo").is_some());
    assert!(catalog.by_category("DeviceInfo").is_none());
}

#[test]
fn arrow_types_follow_the_mapping() {
    let catalog = Catalog::embedded();
    let info = catalog.get("DeviceInfo").unwrap();
    let schema = info.arrow_schema();
    assert_eq!(schema.field_with_name("ReportId").unwrap().data_type(), &DataType::Int64);
    assert_eq!(schema.field_with_name("Timestamp").unwrap().data_type(), &timestamp_type());
    assert!(!schema.field_with_name("Timestamp").unwrap().is_nullable());
    assert_eq!(schema.field_with_name("IsAzureADJoined").unwrap().data_type(), &DataType::Boolean);
    assert_eq!(schema.field_with_name(COL_EXTRA).unwrap().data_type(), &DataType::Utf8);
    assert_eq!(ColumnType::Int.arrow_type(), DataType::Int32);
    assert_eq!(ColumnType::Real.arrow_type(), DataType::Float64);
    assert_eq!(ColumnType::Dynamic.arrow_type(), DataType::Utf8);
}

fn table(columns: &[(&str, &str, &str)]) -> String {
    let cols: Vec<String> =
        columns.iter().map(|(n, t, s)| format!(r#"{{"name":"{n}","type":"{t}","sentinel_name":"{s}"}}"#)).collect();
    let mut all = vec![r#"{"name":"Timestamp","type":"datetime","sentinel_name":"Timestamp"}"#.to_string()];
    all.extend(cols);
    format!(r#"{{"table":"T","columns":[{}]}}"#, all.join(","))
}

fn problems(columns: &[(&str, &str, &str)]) -> Vec<String> {
    let text = table(columns);
    let catalog = Catalog::from_files([("T.json", text.as_str())]).unwrap();
    catalog.check().iter().map(ToString::to_string).collect()
}

#[test]
fn check_finds_case_collisions_long_names_and_bad_sentinel_names() {
    assert_eq!(
        problems(&[("LogonId", "long", "LogonId"), ("LogonID", "long", "LogonID")]),
        vec![
            "T.LogonID: collides with column `LogonId` (names compare without case)",
            "T.LogonID: Sentinel name collides with the one of column `LogonId`"
        ]
    );
    let long = "A".repeat(46);
    let p = problems(&[(&long, "string", &long)]);
    assert!(p[0].ends_with("name is longer than 45 characters"), "{p:?}");
    assert_eq!(
        problems(&[("Type", "string", "Type")]),
        vec![
            "T.Type: sentinel_name is `Type`, the rule gives `Type_CF`",
            "T.Type: sentinel_name `Type` is reserved by Log Analytics"
        ]
    );
    assert!(problems(&[("Type", "string", "Type_CF")]).is_empty());
}

#[test]
fn check_counts_columns_against_the_limit() {
    let names: Vec<String> = (0..495).map(|i| format!("C{i}")).collect();
    let cols: Vec<(&str, &str, &str)> = names.iter().map(|n| (n.as_str(), "string", n.as_str())).collect();
    let p = problems(&cols);
    assert_eq!(p, vec!["T: 502 columns with the ones we add, over the limit of 500"]);
}

#[test]
fn unknown_types_and_wrong_file_names_are_load_errors() {
    let text = table(&[("X", "decimal", "X")]);
    let err = Catalog::from_files([("T.json", text.as_str())]).unwrap_err().to_string();
    assert!(err.contains("unknown variant `decimal`"), "{err}");
    let text = table(&[]);
    let err = Catalog::from_files([("U.json", text.as_str())]).unwrap_err().to_string();
    assert_eq!(err, "U.json: the file name must be `T.json`");
}
