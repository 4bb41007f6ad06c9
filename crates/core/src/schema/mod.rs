//! Table schemas: the columns and Advanced Hunting types of every Defender table, their Arrow
//! shape, and their Sentinel column names.
//!
//! The source of truth is `table-schemas/*.json` (one file per table), embedded at build time.
//! Invariants checked by [`Catalog::check`] (and `defender-ingest schemas check`): names unique
//! and not colliding case-insensitively, Sentinel names valid (start with a letter, at most 45
//! alphanumeric or `_` characters, not reserved), at most 500 columns, known types only.

mod check;
mod sentinel;

use std::{collections::HashMap, sync::Arc};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

pub use check::{Problem, check_tables};
pub use sentinel::{
    MAX_SENTINEL_COLUMNS, MAX_SENTINEL_NAME_LEN, RESERVED_SENTINEL_NAMES, invalid_sentinel_name, sentinel_name,
};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_schemas.rs"));
}

/// Column added by the decoder: the envelope `time` (when Defender received the event).
pub const COL_ENVELOPE_TIME: &str = "_EnvelopeTime";
/// Column added by the decoder: the envelope `tenantId`.
pub const COL_ENVELOPE_TENANT: &str = "_EnvelopeTenantId";
/// Column added by the decoder: the undocumented envelope `_TimeReceivedBySvc`.
pub const COL_TIME_RECEIVED: &str = "_TimeReceivedBySvc";
/// Column added by the decoder: a JSON object holding unknown columns and values that could not be
/// coerced to their column's type without loss (keyed by column name), or null.
pub const COL_EXTRA: &str = "_Extra";
/// The event-time column every Defender table has.
pub const COL_TIMESTAMP: &str = "Timestamp";
/// Column added by the decoder to every row: a deterministic id of the record computed from the
/// bytes it arrived as (see `decode::record_id`); Sentinel's `RecordId_CF`.
pub const COL_RECORD_ID: &str = "_RecordId";
/// Unknown tables: the record's `category`.
pub const COL_CATEGORY: &str = "_Category";
/// Unknown tables: the whole record as compact JSON text.
pub const COL_RAW: &str = "_Raw";
/// The prefix of every Streaming API `category`.
pub const CATEGORY_PREFIX: &str = "AdvancedHunting-";

/// An Advanced Hunting column type, as written in the table documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Long,
    Int,
    Real,
    #[serde(alias = "boolean")]
    Bool,
    Datetime,
    Guid,
    Dynamic,
}

impl ColumnType {
    /// The Arrow type a column of this type is decoded into.
    ///
    /// Datetimes keep Defender's 7 fractional digits (100 ns ticks), hence nanoseconds; dynamic
    /// values are compact JSON text; guids are text.
    pub fn arrow_type(self) -> DataType {
        match self {
            Self::String | Self::Guid | Self::Dynamic => DataType::Utf8,
            Self::Long => DataType::Int64,
            Self::Int => DataType::Int32,
            Self::Real => DataType::Float64,
            Self::Bool => DataType::Boolean,
            Self::Datetime => timestamp_type(),
        }
    }

    /// The type name Log Analytics uses for a custom table column of this type.
    pub fn log_analytics_type(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Guid => "guid",
            Self::Dynamic => "dynamic",
            Self::Long => "long",
            Self::Int => "int",
            Self::Real => "real",
            Self::Bool => "boolean",
            Self::Datetime => "datetime",
        }
    }
}

/// Arrow type of every datetime column: UTC nanoseconds.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// One column of a table file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// The column's name in the Sentinel `<Table>_CL` table (see [`sentinel_name`]).
    pub sentinel_name: String,
    #[serde(default)]
    pub description: String,
}

/// One `table-schemas/<Table>.json` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSchema {
    pub table: String,
    /// A Defender Vulnerability Management table: never sent to Sentinel.
    #[serde(default)]
    pub tvm: bool,
    /// What Microsoft documents about the table's Streaming API availability.
    #[serde(default)]
    pub streaming_api: String,
    /// Where the column list was read from.
    #[serde(default)]
    pub source: String,
    pub columns: Vec<Column>,
}

impl TableSchema {
    /// The Streaming API `category` of this table.
    pub fn category(&self) -> String {
        format!("{CATEGORY_PREFIX}{}", self.table)
    }

    /// The columns the decoder fills: the table's columns in file order, preceded by a
    /// `Timestamp` (datetime) column for the tables that have none (several TVM snapshot tables):
    /// every row has an event time, which partitions the archive and becomes `TimeGenerated`.
    pub fn decoded_columns(&self) -> Vec<Column> {
        let mut columns = self.columns.clone();
        if self.column(COL_TIMESTAMP).is_none() {
            columns.insert(
                0,
                Column {
                    name: COL_TIMESTAMP.to_string(),
                    ty: ColumnType::Datetime,
                    sentinel_name: COL_TIMESTAMP.to_string(),
                    description: "Event time: the envelope `time` (the table has no Timestamp column)".to_string(),
                },
            );
        }
        columns
    }

    /// The Arrow schema the decoder produces: [`Self::decoded_columns`], then
    /// `_EnvelopeTime`, `_EnvelopeTenantId`, `_TimeReceivedBySvc`, `_Extra`, `_RecordId`.
    /// `Timestamp` is never null (the decoder falls back to the envelope time); the decoder
    /// fills `_RecordId` for every row.
    pub fn arrow_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .decoded_columns()
            .iter()
            .map(|c| Field::new(&c.name, c.ty.arrow_type(), c.name != COL_TIMESTAMP))
            .collect();
        fields.push(Field::new(COL_ENVELOPE_TIME, timestamp_type(), true));
        fields.push(Field::new(COL_ENVELOPE_TENANT, DataType::Utf8, true));
        fields.push(Field::new(COL_TIME_RECEIVED, timestamp_type(), true));
        fields.push(Field::new(COL_EXTRA, DataType::Utf8, true));
        // Nullable for batches built by hand (tests, tools); the decoder fills every row.
        fields.push(Field::new(COL_RECORD_ID, DataType::Utf8, true));
        Arc::new(Schema::new(fields))
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// The Arrow schema of records whose table we do not know: kept whole as JSON text.
pub fn unknown_table_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(COL_TIMESTAMP, timestamp_type(), false),
        Field::new(COL_CATEGORY, DataType::Utf8, false),
        Field::new(COL_ENVELOPE_TIME, timestamp_type(), true),
        Field::new(COL_ENVELOPE_TENANT, DataType::Utf8, true),
        Field::new(COL_RAW, DataType::Utf8, false),
        Field::new(COL_RECORD_ID, DataType::Utf8, true),
    ]))
}

/// Errors loading table schema files.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{file}: {source}")]
    Parse {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file}: the file name must be `{table}.json`")]
    FileName { file: String, table: String },
    #[error("table {table} is defined twice")]
    Duplicate { table: String },
}

/// Every known table, by name.
#[derive(Debug, Clone)]
pub struct Catalog {
    tables: Vec<Arc<TableSchema>>,
    by_name: HashMap<String, usize>,
}

impl Catalog {
    /// The tables embedded at build time from `table-schemas/`.
    ///
    /// # Panics
    /// Never for a build that passed `schemas check` (a test loads the embedded set).
    pub fn embedded() -> Self {
        Self::from_files(embedded::EMBEDDED.iter().map(|(f, t)| (*f, *t)))
            .expect("embedded table schemas are valid (checked by a test)")
    }

    /// The raw embedded files, for `schemas check` and docs.
    pub fn embedded_files() -> &'static [(&'static str, &'static str)] {
        embedded::EMBEDDED
    }

    /// Parses table files given as (file name, contents).
    pub fn from_files<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, SchemaError> {
        let mut tables = Vec::new();
        let mut by_name = HashMap::new();
        for (file, text) in files {
            let schema: TableSchema =
                serde_json::from_str(text).map_err(|source| SchemaError::Parse { file: file.to_string(), source })?;
            let stem = file.rsplit('/').next().unwrap_or(file).trim_end_matches(".json");
            if stem != schema.table {
                return Err(SchemaError::FileName { file: file.to_string(), table: schema.table });
            }
            if by_name.insert(schema.table.clone(), tables.len()).is_some() {
                return Err(SchemaError::Duplicate { table: schema.table });
            }
            tables.push(Arc::new(schema));
        }
        Ok(Self { tables, by_name })
    }

    pub fn tables(&self) -> &[Arc<TableSchema>] {
        &self.tables
    }

    pub fn get(&self, table: &str) -> Option<&Arc<TableSchema>> {
        self.by_name.get(table).map(|&i| &self.tables[i])
    }

    /// Looks a table up by its Streaming API category (`AdvancedHunting-<Table>`).
    pub fn by_category(&self, category: &str) -> Option<&Arc<TableSchema>> {
        self.get(category.strip_prefix(CATEGORY_PREFIX)?)
    }

    /// Validates every table (see [`check_tables`]).
    pub fn check(&self) -> Vec<Problem> {
        check_tables(&self.tables)
    }
}

#[cfg(test)]
mod tests;
