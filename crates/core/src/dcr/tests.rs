use super::*;
use crate::{
    Catalog,
    schema::{Column, ColumnType},
};

fn column(name: &str, ty: ColumnType) -> Column {
    Column { name: name.to_string(), ty, sentinel_name: sentinel_name(name), description: String::new() }
}

fn synthetic(table: &str, columns: Vec<Column>) -> Arc<TableSchema> {
    let mut all = vec![column("Timestamp", ColumnType::Datetime)];
    all.extend(columns);
    Arc::new(TableSchema {
        table: table.to_string(),
        tvm: false,
        streaming_api: "GA".to_string(),
        source: String::new(),
        columns: all,
    })
}

fn names(columns: &[LaColumn]) -> Vec<&str> {
    columns.iter().map(|c| c.name.as_str()).collect()
}

fn dcrs(template: &Value) -> Vec<&Value> {
    let resources = template["resources"].as_array().unwrap();
    resources.iter().filter(|r| r["type"] == "Microsoft.Insights/dataCollectionRules").collect()
}

#[test]
fn splits_25_tables_into_3_dcrs_of_at_most_10_flows() {
    let tables: Vec<DcrTable> = (0..25)
        .map(|i| DcrTable::all_columns(synthetic(&format!("Table{i:02}"), vec![column("A", ColumnType::String)])))
        .collect();
    let t = template(&tables, &DcrOptions::default()).unwrap();
    let dcrs = dcrs(&t);
    assert_eq!(dcrs.len(), 3);
    let flows: Vec<usize> = dcrs.iter().map(|d| d["properties"]["dataFlows"].as_array().unwrap().len()).collect();
    assert_eq!(flows, [10, 10, 5]);
    let streams: Vec<usize> =
        dcrs.iter().map(|d| d["properties"]["streamDeclarations"].as_object().unwrap().len()).collect();
    assert_eq!(streams, [10, 10, 5]);
    assert_eq!(dcrs[0]["name"], "defender-ingest-1");
    assert_eq!(dcrs[2]["name"], "defender-ingest-3");
    assert_eq!(dcrs[0]["kind"], "Direct");
    assert_eq!(dcrs[2]["properties"]["dataFlows"][4]["outputStream"], "Custom-Table24_CL");
    let table_resources = t["resources"].as_array().unwrap().iter().filter(|r| r["type"] != dcrs[0]["type"]).count();
    assert_eq!(table_resources, 25);
    for n in 1..=3 {
        let id = t["outputs"][format!("dcr{n}ImmutableId")]["value"].as_str().unwrap();
        assert!(id.ends_with(".immutableId]") && id.contains(&format!("'defender-ingest-{n}'")), "{id}");
        let endpoint = t["outputs"][format!("dcr{n}LogsIngestionEndpoint")]["value"].as_str().unwrap();
        assert!(endpoint.ends_with(".endpoints.logsIngestion]"), "{endpoint}");
    }
    assert_eq!(t["outputs"]["dcr3Streams"]["value"].as_array().unwrap().len(), 5);
    // What `[sentinel.dcrs.<id>] tables` takes: the Defender names, as `rules` lists them.
    let rules = rules(&tables, &DcrOptions::default());
    assert_eq!(rules.len(), 3);
    assert_eq!(
        rules[2],
        Rule { name: "defender-ingest-3".into(), tables: (20..25).map(|i| format!("Table{i}")).collect() }
    );
    for (i, rule) in rules.iter().enumerate() {
        assert_eq!(t["outputs"][format!("dcr{}Tables", i + 1)]["value"], json!(rule.tables));
        assert_eq!(dcrs[i]["name"], rule.name.as_str());
    }
}

#[test]
fn tvm_tables_are_rejected() {
    let catalog = Catalog::embedded();
    let tvm = catalog.get("DeviceTvmSoftwareInventory").unwrap().clone();
    let err = template(&[DcrTable::all_columns(tvm)], &DcrOptions::default()).unwrap_err();
    assert_eq!(err, DcrError::Tvm { table: "DeviceTvmSoftwareInventory".into() });
    assert!(err.to_string().contains("never sent to Sentinel"), "{err}");
}

#[test]
fn a_column_name_over_45_characters_is_rejected_with_its_reason() {
    let long = "A".repeat(46);
    let schema = synthetic("T1", vec![column(&long, ColumnType::String)]);
    let err = resolve(&DcrTable::all_columns(schema)).unwrap_err();
    assert_eq!(err.to_string(), format!("T1_CL: column `{long}` is longer than 45 characters"));
    let ok = synthetic("T1", vec![column(&"A".repeat(45), ColumnType::String)]);
    assert!(resolve(&DcrTable::all_columns(ok)).is_ok());
    let odd = synthetic("T1", vec![column("a-b", ColumnType::String)]);
    assert_eq!(
        resolve(&DcrTable::all_columns(odd)).unwrap_err().to_string(),
        "T1_CL: column `a-b` holds a character other than a letter, digit or underscore"
    );
}

#[test]
fn more_than_500_columns_are_rejected() {
    // Timestamp + n + TimeGenerated + 4 decoder columns + RecordId_CF.
    let table = |n: usize| synthetic("Wide", (0..n).map(|i| column(&format!("C{i}"), ColumnType::Long)).collect());
    assert_eq!(resolve(&DcrTable::all_columns(table(493))).unwrap().table_columns.len(), 500);
    let err = resolve(&DcrTable::all_columns(table(494))).unwrap_err();
    assert_eq!(err, DcrError::TooManyColumns { table: "Wide_CL".into(), count: 501 });
    assert_eq!(err.to_string(), "Wide_CL: 501 columns, over the limit of 500 columns per Log Analytics table");
}

#[test]
fn reserved_and_internal_names_are_renamed_by_the_rule() {
    let schema = synthetic("T1", vec![column("TenantId", ColumnType::String), column("Id", ColumnType::Guid)]);
    let r = resolve(&DcrTable::all_columns(schema)).unwrap();
    assert_eq!(
        names(&r.table_columns),
        [
            "TimeGenerated",
            "Timestamp",
            "TenantId_CF",
            "Id_CF",
            "EnvelopeTime_CF",
            "EnvelopeTenantId_CF",
            "TimeReceivedBySvc_CF",
            "Extra_CF",
            "RecordId_CF"
        ]
    );
    let types: Vec<&str> = r.table_columns.iter().map(|c| c.ty).collect();
    assert_eq!(
        types,
        ["datetime", "datetime", "string", "string", "datetime", "string", "datetime", "string", "string"]
    );
    assert_eq!(r.stream_columns, r.table_columns);
    assert_eq!((r.table_name.as_str(), r.stream.as_str(), r.transform.as_str()), ("T1_CL", "Custom-T1_CL", "source"));
}

#[test]
fn only_the_projected_columns_are_declared() {
    let catalog = Catalog::embedded();
    let schema = catalog.get("DeviceNetworkEvents").unwrap().clone();
    let columns = vec!["Timestamp".to_string(), "DeviceName".to_string(), "RemotePort".to_string(), "_Extra".into()];
    let t = DcrTable { schema: schema.clone(), columns: Some(columns), plan: Plan::Basic, transform: None };
    let r = resolve(&t).unwrap();
    let expected = ["TimeGenerated", "Timestamp", "DeviceName", "RemotePort", "Extra_CF", "RecordId_CF"];
    assert_eq!(names(&r.table_columns), expected);
    assert_eq!(r.stream_columns, r.table_columns, "the sink sends what the table holds");
    assert_eq!(r.table_columns[3], LaColumn { name: "RemotePort".into(), ty: "int" });

    let tpl = template(std::slice::from_ref(&t), &DcrOptions::default()).unwrap();
    let table = &tpl["resources"][0];
    assert_eq!(table["properties"]["plan"], "Basic");
    assert_eq!(table["properties"]["schema"]["columns"].as_array().unwrap().len(), expected.len());

    let unknown = DcrTable { columns: Some(vec!["Nope".into()]), ..t };
    assert_eq!(
        resolve(&unknown).unwrap_err(),
        DcrError::UnknownColumn { table: "DeviceNetworkEvents_CL".into(), column: "Nope".into() }
    );
}

#[test]
fn a_transformation_is_kept_and_the_stream_declares_every_column() {
    let catalog = Catalog::embedded();
    let schema = catalog.get("DeviceNetworkEvents").unwrap().clone();
    let text = "where not(ActionType == \"ConnectionSuccess\" and RemotePort in (80, 443)) | project-away Additional*";
    let pipeline = policy::parse(text).unwrap();
    let filter = pipeline.check(&schema).unwrap();
    let all: Vec<String> = policy::table_columns(&schema).into_iter().map(|(n, _)| n).collect();
    let input: Vec<&str> = all.iter().map(String::as_str).collect();
    let output = filter.output_columns(&input);
    assert_eq!(output.len(), all.len() - 1);
    let kql = transform_kql(&pipeline, &output);
    assert!(
        kql.starts_with(
            "source | where not(ActionType == \"ConnectionSuccess\" and RemotePort in (80, 443)) | project TimeGenerated, Timestamp, "
        ),
        "{kql}"
    );
    assert!(kql.ends_with(", Extra_CF, RecordId_CF"), "{kql}");
    assert!(!kql.contains("AdditionalFields"), "{kql}");

    let t = DcrTable { schema, columns: Some(output), plan: Plan::Analytics, transform: Some(kql.clone()) };
    let r = resolve(&t).unwrap();
    assert_eq!(r.transform, kql);
    assert_eq!(r.stream_columns.len(), r.table_columns.len() + 1);
    assert!(r.stream_columns.iter().any(|c| c.name == "AdditionalFields"));
    assert!(!r.table_columns.iter().any(|c| c.name == "AdditionalFields"));
    let tpl = template(&[t], &DcrOptions::default()).unwrap();
    assert_eq!(dcrs(&tpl)[0]["properties"]["dataFlows"][0]["transformKql"], kql.as_str());

    let too_long = DcrTable { transform: Some("x".repeat(MAX_TRANSFORM_CHARS + 1)), ..r_table() };
    assert_eq!(
        resolve(&too_long).unwrap_err().to_string(),
        "T1_CL: the transformation has 15361 characters, over the limit of 15360 per DCR transformation"
    );
    let at_limit = DcrTable { transform: Some("x".repeat(MAX_TRANSFORM_CHARS)), ..r_table() };
    assert!(resolve(&at_limit).is_ok());
}

fn r_table() -> DcrTable {
    DcrTable::all_columns(synthetic("T1", vec![column("A", ColumnType::String)]))
}

#[test]
fn where_columns_take_their_sentinel_names_and_filters_without_projection_keep_every_column() {
    let schema = synthetic("T1", vec![column("TenantId", ColumnType::String)]);
    let pipeline = policy::parse("where TenantId == \"x\" or isnotempty(_Extra)").unwrap();
    pipeline.check(&schema).unwrap();
    assert_eq!(transform_kql(&pipeline, &[]), "source | where TenantId_CF == \"x\" or isnotempty(Extra_CF)");
    assert_eq!(transform_kql(&Pipeline::default(), &[]), "source");
}

#[test]
fn duplicate_and_empty_selections_are_rejected() {
    let t = r_table();
    assert_eq!(
        template(&[t.clone(), t], &DcrOptions::default()).unwrap_err(),
        DcrError::DuplicateTable { table: "T1".into() }
    );
    assert_eq!(template(&[], &DcrOptions::default()).unwrap_err(), DcrError::NoTables);
    let clash = synthetic("T1", vec![column("RecordId_CF", ColumnType::String)]);
    assert_eq!(
        resolve(&DcrTable::all_columns(clash)).unwrap_err(),
        DcrError::DuplicateColumn { table: "T1_CL".into(), column: "RecordId_CF".into() }
    );
}

#[test]
fn the_template_is_deterministic_and_references_the_parameters() {
    let catalog = Catalog::embedded();
    let tables: Vec<DcrTable> = catalog
        .tables()
        .iter()
        .filter(|t| !t.tvm && t.streaming_api == "GA")
        .map(|t| DcrTable::all_columns(t.clone()))
        .collect();
    let options = DcrOptions { name_prefix: "di".into(), ..DcrOptions::default() };
    let a = serde_json::to_string_pretty(&template(&tables, &options).unwrap()).unwrap();
    let b = serde_json::to_string_pretty(&template(&tables, &options).unwrap()).unwrap();
    assert_eq!(a, b);
    let t: Value = serde_json::from_str(&a).unwrap();
    assert_eq!(t["$schema"], "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#");
    assert_eq!(t["parameters"]["location"]["defaultValue"], "[resourceGroup().location]");
    let dcr = dcrs(&t)[0];
    assert_eq!(dcr["name"], "di-1");
    assert_eq!(dcr["location"], "[parameters('location')]");
    let la = &dcr["properties"]["destinations"]["logAnalytics"][0];
    assert_eq!(la["workspaceResourceId"], "[parameters('workspaceResourceId')]");
    assert_eq!(dcr["properties"]["dataFlows"][0]["destinations"][0], la["name"]);
    assert_eq!(dcrs(&t).len(), tables.len().div_ceil(MAX_FLOWS_PER_DCR));
}
