//! The Azure deployment of the Sentinel side, generated from the table schemas: one ARM template
//! holding the custom tables (`<Table>_CL`) and the data collection rules (DCRs, kind `Direct`)
//! whose streams the Logs Ingestion sink posts to (DESIGN.md §3, contracts.md §d).
//!
//! # What the template holds
//!
//! - parameters `workspaceResourceId` (the Log Analytics workspace) and `location` (default: the
//!   resource group's); the template is deployed into the workspace's resource group, since the
//!   tables are child resources of the workspace;
//! - per table, a `Microsoft.OperationalInsights/workspaces/tables` resource `<Table>_CL` with its
//!   plan and its columns: `TimeGenerated` (datetime) first, then each column by its Sentinel name
//!   ([`sentinel_name`]) and Log Analytics type, then `RecordId_CF` (the `_RecordId` the sink adds
//!   to every row, for deduplication);
//! - as many `Microsoft.Insights/dataCollectionRules` as needed, at most
//!   [`MAX_FLOWS_PER_DCR`] tables each (one stream declaration and one data flow per table), named
//!   `<prefix>-1`, `<prefix>-2`, ... in the order the tables are given;
//! - per DCR, outputs `dcr<N>ImmutableId`, `dcr<N>LogsIngestionEndpoint`, `dcr<N>Streams` and
//!   `dcr<N>Tables` (the Defender names of its tables): what the run config's
//!   `[sentinel.dcrs.<immutable id>]` section takes (`endpoint`, `tables`).
//!
//! # One endpoint per DCR
//!
//! The rules are of kind `Direct` and name no data collection endpoint (DCE, no
//! `dataCollectionEndpointId`): each has its own logs ingestion endpoint,
//! `properties.endpoints.logsIngestion`, which Azure creates only for DCRs of that kind
//! ("Structure of a data collection rule", learn.microsoft.com/azure/azure-monitor/essentials/
//! data-collection-rule-structure) and which is used instead of a DCE ("Data collection
//! endpoints in Azure Monitor", learn.microsoft.com/azure/azure-monitor/essentials/
//! data-collection-endpoint-overview). So each table is sent to its own rule's endpoint:
//! `POST {dcr<N>LogsIngestionEndpoint}/dataCollectionRules/{dcr<N>ImmutableId}/streams/
//! Custom-<Table>_CL?api-version=2023-01-01`.
//!
//! # Invariants
//!
//! - A table's stream `Custom-<Table>_CL` declares exactly the columns the sink sends:
//!   `TimeGenerated`, the columns, `RecordId_CF`. Without a transformation (`source`) the stream
//!   and the table have the same columns and types; with one, the DCR does the filtering, so the
//!   sink sends every column and the stream declares all of them while the table holds only the
//!   selected ones.
//! - Every column is the decoder's (the table's decoded columns and `_EnvelopeTime`,
//!   `_EnvelopeTenantId`, `_TimeReceivedBySvc`, `_Extra`, see [`policy::table_columns`]) or one
//!   of the two the sink adds.
//! - Rejected with a [`DcrError`]: a TVM table, a table given twice, an unknown column, a column
//!   name that is invalid in Log Analytics (over 45 characters, not starting with a letter,
//!   reserved), two columns with the same name, more than 500 columns, a transformation over
//!   15,360 characters.
//! - The output is deterministic: the same input gives the same JSON, key order included.
//!
//! `guid` columns are declared `string` in the stream and in the table: a DCR stream declaration
//! has no `guid` type, and a `source` transformation needs identical types on both sides.

use std::{collections::HashSet, sync::Arc};

use serde_json::{Value, json};

use crate::{
    policy::{self, Pipeline, Stage},
    schema::{ColumnType, MAX_SENTINEL_COLUMNS, TableSchema, invalid_sentinel_name, sentinel_name},
};

/// A Log Analytics table plan (Analytics, Basic, Auxiliary): the billing model's tier.
pub use crate::billing::Tier as Plan;

/// Most data flows in one DCR.
pub const MAX_FLOWS_PER_DCR: usize = 10;
/// Most stream declarations in one DCR.
pub const MAX_STREAMS_PER_DCR: usize = 10;
/// Most characters in one DCR transformation.
pub const MAX_TRANSFORM_CHARS: usize = 15_360;
/// The column every Log Analytics row has; the sink sets it from the event `Timestamp`.
pub const TIME_GENERATED: &str = "TimeGenerated";
pub use crate::schema::COL_RECORD_ID;
/// API version of the `workspaces/tables` resources (the first stable one documenting the
/// Auxiliary plan).
pub const TABLES_API_VERSION: &str = "2025-02-01";
/// API version of the `dataCollectionRules` resources.
pub const DCR_API_VERSION: &str = "2023-03-11";
/// The name of the Log Analytics destination inside every DCR.
pub const DESTINATION: &str = "workspace";

/// One table to deploy.
#[derive(Debug, Clone)]
pub struct DcrTable {
    pub schema: Arc<TableSchema>,
    /// The columns kept (the decoder's names, in output order), `None` for all of them.
    pub columns: Option<Vec<String>>,
    pub plan: Plan,
    /// The DCR transformation (`transformKql`), `None` for `source`. When set, the sink sends
    /// every column and the transformation selects rows and columns.
    pub transform: Option<String>,
}

impl DcrTable {
    /// Every column, no transformation, the Analytics plan.
    pub fn all_columns(schema: Arc<TableSchema>) -> Self {
        Self { schema, columns: None, plan: Plan::Analytics, transform: None }
    }
}

/// Settings of the generated template.
#[derive(Debug, Clone)]
pub struct DcrOptions {
    /// DCRs are named `<prefix>-1`, `<prefix>-2`, ...
    pub name_prefix: String,
    /// Default value of the `workspaceResourceId` parameter; `None` makes it required.
    pub workspace_resource_id: Option<String>,
    /// Default value of the `location` parameter; `None` for the resource group's location.
    pub location: Option<String>,
}

impl Default for DcrOptions {
    fn default() -> Self {
        Self { name_prefix: "defender-ingest".to_string(), workspace_resource_id: None, location: None }
    }
}

/// A table that cannot be deployed as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcrError {
    #[error("no table to deploy: nothing is sent to Sentinel")]
    NoTables,
    #[error(
        "{table} is a Defender Vulnerability Management (TVM) table: Microsoft Sentinel does not support TVM tables, \
         so they are never sent to Sentinel"
    )]
    Tvm { table: String },
    #[error("{table} is given twice")]
    DuplicateTable { table: String },
    #[error("table name `{name}` is invalid: at most 63 letters, digits or `_` (with `_CL`)")]
    TableName { name: String },
    #[error("{table}: `{column}` is not a column of the table")]
    UnknownColumn { table: String, column: String },
    #[error("{table}: column `{column}` {reason}")]
    ColumnName { table: String, column: String, reason: &'static str },
    #[error("{table}: column `{column}` appears twice (Log Analytics names compare without case)")]
    DuplicateColumn { table: String, column: String },
    #[error("{table}: {count} columns, over the limit of {MAX_SENTINEL_COLUMNS} columns per Log Analytics table")]
    TooManyColumns { table: String, count: usize },
    #[error(
        "{table}: the transformation has {chars} characters, over the limit of {MAX_TRANSFORM_CHARS} per DCR \
         transformation"
    )]
    TransformTooLong { table: String, chars: usize },
}

/// A column as Log Analytics sees it: its Sentinel name and type name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaColumn {
    pub name: String,
    pub ty: &'static str,
}

/// One table, checked: what its table resource, stream and data flow hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTable {
    /// `<Table>_CL`.
    pub table_name: String,
    /// `Custom-<Table>_CL`: the stream the sink posts to, and the data flow's output stream.
    pub stream: String,
    /// The table resource's columns.
    pub table_columns: Vec<LaColumn>,
    /// The stream declaration's columns: what the sink sends.
    pub stream_columns: Vec<LaColumn>,
    pub transform: String,
    pub plan: Plan,
}

/// The type a column is declared with, in the stream and in the table (see the module docs).
pub fn declared_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Guid => ColumnType::String.log_analytics_type(),
        ty => ty.log_analytics_type(),
    }
}

/// The ARM value of a table plan.
pub fn arm_plan(plan: Plan) -> &'static str {
    match plan {
        Plan::Analytics => "Analytics",
        Plan::Basic => "Basic",
        Plan::Auxiliary => "Auxiliary",
    }
}

/// Checks one table and computes its columns (see the module docs).
pub fn resolve(t: &DcrTable) -> Result<ResolvedTable, DcrError> {
    let schema = &t.schema;
    let table = schema.table.clone();
    if schema.tvm {
        return Err(DcrError::Tvm { table });
    }
    let table_name = format!("{table}_CL");
    if table_name.len() > 63 || !table_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(DcrError::TableName { name: table_name });
    }
    let all = policy::table_columns(schema);
    let selected: Vec<(String, ColumnType)> = match &t.columns {
        None => all.clone(),
        Some(names) => names
            .iter()
            .map(|n| {
                all.iter()
                    .find(|(c, _)| c == n)
                    .cloned()
                    .ok_or_else(|| DcrError::UnknownColumn { table: table_name.clone(), column: n.clone() })
            })
            .collect::<Result<_, _>>()?,
    };
    let with_ours = |cols: &[(String, ColumnType)]| -> Result<Vec<LaColumn>, DcrError> {
        let mut out =
            vec![LaColumn { name: TIME_GENERATED.to_string(), ty: ColumnType::Datetime.log_analytics_type() }];
        out.extend(cols.iter().map(|(n, ty)| LaColumn { name: sentinel_name(n), ty: declared_type(*ty) }));
        out.push(LaColumn { name: sentinel_name(COL_RECORD_ID), ty: ColumnType::String.log_analytics_type() });
        let mut seen = HashSet::new();
        for c in &out[1..] {
            if let Some(reason) = invalid_sentinel_name(&c.name) {
                return Err(DcrError::ColumnName { table: table_name.clone(), column: c.name.clone(), reason });
            }
            if !seen.insert(c.name.to_ascii_lowercase()) {
                return Err(DcrError::DuplicateColumn { table: table_name.clone(), column: c.name.clone() });
            }
        }
        if out.len() > MAX_SENTINEL_COLUMNS {
            return Err(DcrError::TooManyColumns { table: table_name.clone(), count: out.len() });
        }
        Ok(out)
    };
    let table_columns = with_ours(&selected)?;
    let stream_columns = if t.transform.is_some() { with_ours(&all)? } else { table_columns.clone() };
    let transform = t.transform.clone().unwrap_or_else(|| "source".to_string());
    let chars = transform.chars().count();
    if chars > MAX_TRANSFORM_CHARS {
        return Err(DcrError::TransformTooLong { table: table_name, chars });
    }
    Ok(ResolvedTable {
        stream: format!("Custom-{table_name}"),
        table_name,
        table_columns,
        stream_columns,
        transform,
        plan: t.plan,
    })
}

/// A filter pipeline as the transformation of a stream that carries every column under its
/// Sentinel name: column names renamed with [`sentinel_name`], and all `project` /
/// `project-away` stages (wildcards included) replaced by one final
/// `project TimeGenerated, <output columns>, RecordId_CF` so the columns the sink adds survive.
/// The result is the same: `where` stages only use columns present in the input, and projection
/// is applied once at the end (see [`policy`]).
///
/// `output_columns` are the filter's output columns (the decoder's names), as given by
/// [`policy::Filter::output_columns`].
pub fn transform_kql(pipeline: &Pipeline, output_columns: &[String]) -> String {
    let mut stages: Vec<Stage> = Vec::new();
    let mut projects = false;
    for stage in &pipeline.stages {
        match stage {
            Stage::Where(e) => {
                let mut e = e.clone();
                rename(&mut e);
                stages.push(Stage::Where(e));
            }
            Stage::Project(_) | Stage::ProjectAway(_) => projects = true,
        }
    }
    if projects {
        let name = |n: String| policy::Name { name: n, pos: policy::Pos::default() };
        let mut names = vec![name(TIME_GENERATED.to_string())];
        names.extend(output_columns.iter().map(|c| name(sentinel_name(c))));
        names.push(name(sentinel_name(COL_RECORD_ID)));
        stages.push(Stage::Project(names));
    }
    Pipeline { stages }.to_kql()
}

fn rename(e: &mut policy::Expr) {
    use policy::Expr;
    match e {
        Expr::And(l, r) | Expr::Or(l, r) => {
            rename(l);
            rename(r);
        }
        Expr::Not(inner) => rename(inner),
        Expr::Cmp { col, .. }
        | Expr::Str { col, .. }
        | Expr::In { col, .. }
        | Expr::HasAny { col, .. }
        | Expr::MatchesRegex { col, .. }
        | Expr::Between { col, .. }
        | Expr::Func { col, .. } => col.name = sentinel_name(&col.name),
    }
}

fn table_id(table_name: &str) -> String {
    format!(
        "[resourceId('Microsoft.OperationalInsights/workspaces/tables', variables('workspaceName'), '{table_name}')]"
    )
}

fn columns_json(columns: &[LaColumn]) -> Value {
    Value::Array(columns.iter().map(|c| json!({ "name": c.name, "type": c.ty })).collect())
}

/// One data collection rule of the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `<prefix>-<N>`, `N` from 1: the `dcr<N>...` outputs are this rule's.
    pub name: String,
    /// Its tables (Defender names), in the order given.
    pub tables: Vec<String>,
}

/// Tables per rule: one stream declaration and one data flow each.
const TABLES_PER_DCR: usize =
    if MAX_FLOWS_PER_DCR < MAX_STREAMS_PER_DCR { MAX_FLOWS_PER_DCR } else { MAX_STREAMS_PER_DCR };

/// The rules [`template`] makes of `tables` (unchecked: see [`template`] for the errors).
pub fn rules(tables: &[DcrTable], options: &DcrOptions) -> Vec<Rule> {
    tables
        .chunks(TABLES_PER_DCR)
        .enumerate()
        .map(|(i, chunk)| Rule {
            name: format!("{}-{}", options.name_prefix, i + 1),
            tables: chunk.iter().map(|t| t.schema.table.clone()).collect(),
        })
        .collect()
}

/// The ARM deployment template of `tables` (see the module docs).
pub fn template(tables: &[DcrTable], options: &DcrOptions) -> Result<Value, DcrError> {
    if tables.is_empty() {
        return Err(DcrError::NoTables);
    }
    let mut seen = HashSet::new();
    let mut resolved = Vec::with_capacity(tables.len());
    for t in tables {
        if !seen.insert(t.schema.table.as_str()) {
            return Err(DcrError::DuplicateTable { table: t.schema.table.clone() });
        }
        resolved.push(resolve(t)?);
    }

    let mut resources: Vec<Value> = resolved
        .iter()
        .map(|r| {
            json!({
                "type": "Microsoft.OperationalInsights/workspaces/tables",
                "apiVersion": TABLES_API_VERSION,
                "name": format!("[format('{{0}}/{{1}}', variables('workspaceName'), '{}')]", r.table_name),
                "properties": {
                    "plan": arm_plan(r.plan),
                    "schema": { "name": r.table_name, "columns": columns_json(&r.table_columns) },
                },
            })
        })
        .collect();

    let mut outputs = serde_json::Map::new();
    for (i, (chunk, rule)) in resolved.chunks(TABLES_PER_DCR).zip(rules(tables, options)).enumerate() {
        let n = i + 1;
        let name = rule.name;
        let streams: serde_json::Map<String, Value> =
            chunk.iter().map(|r| (r.stream.clone(), json!({ "columns": columns_json(&r.stream_columns) }))).collect();
        let flows: Vec<Value> = chunk
            .iter()
            .map(|r| {
                json!({
                    "streams": [r.stream],
                    "destinations": [DESTINATION],
                    "transformKql": r.transform,
                    "outputStream": r.stream,
                })
            })
            .collect();
        let names: Vec<&str> = chunk.iter().map(|r| r.table_name.as_str()).collect();
        resources.push(json!({
            "type": "Microsoft.Insights/dataCollectionRules",
            "apiVersion": DCR_API_VERSION,
            "name": name,
            "location": "[parameters('location')]",
            "kind": "Direct",
            "dependsOn": chunk.iter().map(|r| table_id(&r.table_name)).collect::<Vec<_>>(),
            "properties": {
                "description": format!("Defender XDR Advanced Hunting events to {}", names.join(", ")),
                "streamDeclarations": streams,
                "destinations": {
                    "logAnalytics": [{ "workspaceResourceId": "[parameters('workspaceResourceId')]", "name": DESTINATION }],
                },
                "dataFlows": flows,
            },
        }));
        let reference =
            format!("reference(resourceId('Microsoft.Insights/dataCollectionRules', '{name}'), '{DCR_API_VERSION}')");
        outputs.insert(
            format!("dcr{n}ImmutableId"),
            json!({ "type": "string", "value": format!("[{reference}.immutableId]") }),
        );
        outputs.insert(
            format!("dcr{n}LogsIngestionEndpoint"),
            json!({ "type": "string", "value": format!("[{reference}.endpoints.logsIngestion]") }),
        );
        let streams: Vec<&str> = chunk.iter().map(|r| r.stream.as_str()).collect();
        outputs.insert(format!("dcr{n}Streams"), json!({ "type": "array", "value": streams }));
        outputs.insert(format!("dcr{n}Tables"), json!({ "type": "array", "value": rule.tables }));
    }

    let mut workspace = json!({
        "type": "string",
        "metadata": { "description": "Resource id of the Log Analytics workspace (Microsoft Sentinel); deploy this template into its resource group" },
    });
    if let Some(id) = &options.workspace_resource_id {
        workspace["defaultValue"] = json!(id);
    }
    let location = options.location.clone().unwrap_or_else(|| "[resourceGroup().location]".to_string());
    Ok(json!({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "metadata": {
            "description": "Microsoft Sentinel custom tables and data collection rules for defender-ingest. Generated by \
                            `defender-ingest schemas dcr` from the table schemas: do not edit by hand.",
        },
        "parameters": {
            "workspaceResourceId": workspace,
            "location": {
                "type": "string",
                "defaultValue": location,
                "metadata": { "description": "Region of the data collection rules: the workspace's region" },
            },
        },
        "variables": { "workspaceName": "[last(split(parameters('workspaceResourceId'), '/'))]" },
        "resources": resources,
        "outputs": outputs,
    }))
}

#[cfg(test)]
mod tests;
