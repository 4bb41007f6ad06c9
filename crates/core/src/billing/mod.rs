//! The billing model of estimate mode: how many bytes Log Analytics bills for each row we would
//! send, and (in [`prices`]) what those bytes cost.
//!
//! # The rule
//!
//! Microsoft's "Azure Monitor Logs cost calculations and options" (`cost-logs.md`, 12/09/2024)
//! bills data "in GB (10^9 bytes)" and computes the billed size of a record from "a string
//! representation of the column entries that Azure Monitor Logs needs to add in the Log Analytics
//! workspace for that record". Every column counts — `TimeGenerated`, every Defender column and
//! every column we add — except the standard columns of [`Tier::excluded_columns`].
//!
//! # The string form of each type (the one place it is written down)
//!
//! | Type | String form we assume | Example | Bytes |
//! |---|---|---|---|
//! | `long` | decimal digits, `-` when negative | `639199803770463703` | 18 |
//! | `int` | decimal digits, `-` when negative | `-5` | 2 |
//! | `real` | shortest round-trip decimal, as `ryu` writes it | `1.5` | 3 |
//! | `bool` | `true` / `false` | `false` | 5 |
//! | `datetime` | ISO 8601 UTC, 7 fractional digits, `Z` | `2026-11-20T10:00:00.1234567Z` | 28 |
//! | `string` | the UTF-8 bytes | `é` | 2 |
//! | `guid` | the UTF-8 bytes of the text | `3f2504e0-4f89-11d3-9a0c-0305e82c3301` | 36 |
//! | `dynamic` | compact JSON text | `{"a":1}` | 7 |
//! | null, `""` | nothing | | 0 |
//!
//! One function per type computes it: [`long_len`], [`int_len`], [`real_len`], [`bool_len`],
//! [`datetime_len`], [`string_len`] (string, guid and dynamic alike); [`STRING_FORMS`] holds this
//! table for the estimate report. A record is billed the sum over its billed columns, plus
//! [`TIME_GENERATED_BYTES`] for the `TimeGenerated` every row gets.
//!
//! # Assumptions (calibrate against `_BilledSize`)
//!
//! - **Values only, not column names.** The docs speak of the string representation of the column
//!   *entries*; we read that as the values. [`COLUMN_NAMES_BILLED`] is the one switch:
//!   [`billed_bytes_per_row_with`] takes it as a parameter for calibration.
//! - **Null values and empty strings count 0**: a null entry is not stored, and an empty string's
//!   string representation has no bytes.
//! - **`real`**: the shortest decimal that round-trips, written as the `ryu` crate writes it
//!   (`1.5`, `100.0`, `1e20`, `-0.25`). .NET/KQL write integral values without `.0` (`100`) and
//!   exponents as `E+20`, so such values may be off by one or two bytes. NaN and infinities,
//!   which JSON cannot carry, would be `NaN`, `inf`, `-inf`.
//! - **`bool`**: Log Analytics stores booleans as a typed column, not as text; what is billed is
//!   its string representation. KQL's `tostring(true)` is `true`, .NET's `True`: the same length,
//!   4 or 5 bytes, either way.
//! - **`datetime`**: always the round-trip form with 7 fractional digits (100 ns ticks), 28 bytes,
//!   even when the trailing digits are zeros.
//! - **Names**: the batch holds our column names; they are mapped with [`sentinel_name`] before
//!   the exclusion check. Because that rule renames reserved names (`Type` → `Type_CF`,
//!   `TenantId` → `TenantId_CF`) and names starting with `_` (`_Extra` → `Extra_CF`), a column of
//!   ours is a custom column and is billed in every tier. The excluded standard columns are the
//!   ones Log Analytics adds itself; see [`standard_columns_bytes`] for the ones Auxiliary bills.
//! - **Only what is in the batch counts**: bill the batch as it would be sent, after the policy
//!   dropped or added columns (every decoded row carries its `_RecordId`, billed as `RecordId_CF`) and
//!   after values are truncated to 64 KB.
//!
//! Arrow types map to column types as [`ColumnType::arrow_type`] does: `Utf8` covers string, guid
//! and dynamic (the JSON text length is the byte length), `Int64` long, `Int32` int, `Float64`
//! real, `Boolean` bool, `Timestamp` datetime. The computation runs a column at a time over the
//! Arrow arrays: string lengths come from the offsets, integer digit counts from arithmetic.

pub mod prices;

use arrow_array::{
    Array, BooleanArray, Float64Array, Int32Array, Int64Array, LargeStringArray, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Schema};
use serde::{Deserialize, Serialize};

use crate::schema::{ColumnType, sentinel_name};

pub use prices::{AS_OF, DAYS_PER_MONTH, Prices, monthly_cost, projected_gb_per_day};

/// Whether column names count towards a record's billed size (see the module documentation).
pub const COLUMN_NAMES_BILLED: bool = false;

/// The column Log Analytics gives every row.
pub const TIME_GENERATED: &str = "TimeGenerated";

/// Billed bytes of `TimeGenerated`, a datetime every row has.
pub const TIME_GENERATED_BYTES: u64 = DATETIME_BYTES;

/// Billed bytes of `RecordId_CF`, the 32 hex digits of every row's `_RecordId` (a column of
/// decoded batches, billed with the others).
pub const RECORD_ID_BYTES: u64 = crate::decode::record_id::RECORD_ID_LEN as u64;

/// Bytes of a datetime's string form, `2026-11-20T10:00:00.1234567Z`.
pub const DATETIME_BYTES: u64 = 28;

/// Bytes of a guid's string form, such as a workspace id (`_TenantId`).
pub const GUID_BYTES: u64 = 36;

/// A Log Analytics table plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Analytics (the default plan; the Sentinel analytics tier).
    #[default]
    Analytics,
    Basic,
    /// Auxiliary (Sentinel data lake, "lake-only").
    Auxiliary,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Analytics, Tier::Basic, Tier::Auxiliary];

    /// The standard columns left out of the billed size, by Sentinel (Log Analytics) name.
    pub fn excluded_columns(self) -> &'static [&'static str] {
        match self {
            Tier::Analytics | Tier::Basic => {
                &["_ResourceId", "_SubscriptionId", "_ItemId", "_IsBillable", "_BilledSize", "_TenantId", "Type"]
            }
            Tier::Auxiliary => &["_ItemId", "_IsBillable", "_BilledSize"],
        }
    }

    /// The plan's name in the run config (`analytics`, `basic`, `auxiliary`).
    pub fn name(self) -> &'static str {
        match self {
            Tier::Analytics => "analytics",
            Tier::Basic => "basic",
            Tier::Auxiliary => "auxiliary",
        }
    }

    /// Whether the column with this Sentinel name is left out of the billed size.
    pub fn excludes(self, sentinel_column: &str) -> bool {
        self.excluded_columns().contains(&sentinel_column)
    }
}

/// A column that counts towards the billed size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BilledColumn {
    /// The Sentinel column name.
    pub name: String,
    pub ty: ColumnType,
}

/// One row of the string-form table, for the estimate report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StringForm {
    pub ty: ColumnType,
    pub form: &'static str,
    pub example: &'static str,
    /// Bytes billed for [`Self::example`].
    pub bytes: u64,
}

/// The string form assumed for each type (the table of the module documentation).
pub const STRING_FORMS: &[StringForm] = &[
    StringForm {
        ty: ColumnType::Long,
        form: "decimal digits, '-' when negative",
        example: "639199803770463703",
        bytes: 18,
    },
    StringForm { ty: ColumnType::Int, form: "decimal digits, '-' when negative", example: "-5", bytes: 2 },
    StringForm { ty: ColumnType::Real, form: "shortest round-trip decimal (ryu)", example: "1.5", bytes: 3 },
    StringForm { ty: ColumnType::Bool, form: "true / false", example: "false", bytes: 5 },
    StringForm {
        ty: ColumnType::Datetime,
        form: "ISO 8601 UTC, 7 fractional digits, 'Z'",
        example: "2026-11-20T10:00:00.1234567Z",
        bytes: DATETIME_BYTES,
    },
    StringForm { ty: ColumnType::String, form: "UTF-8 bytes", example: "é", bytes: 2 },
    StringForm {
        ty: ColumnType::Guid,
        form: "UTF-8 bytes of the text",
        example: "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        bytes: GUID_BYTES,
    },
    StringForm { ty: ColumnType::Dynamic, form: "compact JSON text", example: "{\"a\":1}", bytes: 7 },
];

/// Errors computing billed sizes.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BillingError {
    #[error("column {column} has arrow type {data_type}, which has no billing string form")]
    UnsupportedType { column: String, data_type: DataType },
}

/// Billed bytes of a `long`: its decimal digits, plus one for `-`. Computed, not formatted.
pub fn long_len(value: i64) -> u64 {
    u64::from(value < 0) + decimal_digits(value.unsigned_abs())
}

/// Billed bytes of an `int`: its decimal digits, plus one for `-`.
pub fn int_len(value: i32) -> u64 {
    long_len(i64::from(value))
}

/// Billed bytes of a `real`: the length of its shortest round-trip decimal as `ryu` writes it.
pub fn real_len(value: f64) -> u64 {
    ryu::Buffer::new().format(value).len() as u64
}

/// Billed bytes of a `bool`: `true` is 4, `false` 5.
pub fn bool_len(value: bool) -> u64 {
    if value { 4 } else { 5 }
}

/// Billed bytes of a `datetime`: always [`DATETIME_BYTES`] (the value does not matter).
pub fn datetime_len() -> u64 {
    DATETIME_BYTES
}

/// Billed bytes of a `string`, `guid` or `dynamic` (compact JSON text): its UTF-8 length.
pub fn string_len(value: &str) -> u64 {
    value.len() as u64
}

fn decimal_digits(value: u64) -> u64 {
    value.checked_ilog10().map_or(1, |log| u64::from(log) + 1)
}

/// The column type an Arrow type is billed as (see the module documentation), if any.
fn billed_type(data_type: &DataType) -> Option<ColumnType> {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 => Some(ColumnType::String),
        DataType::Int64 => Some(ColumnType::Long),
        DataType::Int32 => Some(ColumnType::Int),
        DataType::Float64 => Some(ColumnType::Real),
        DataType::Boolean => Some(ColumnType::Bool),
        DataType::Timestamp(_, _) => Some(ColumnType::Datetime),
        _ => None,
    }
}

/// The columns of `schema` billed in `tier`, by Sentinel name, after `TimeGenerated`.
///
/// Columns of Arrow type `Null` hold no value and are left out.
pub fn billed_columns(schema: &Schema, tier: Tier) -> Result<Vec<BilledColumn>, BillingError> {
    let mut columns = vec![BilledColumn { name: TIME_GENERATED.to_string(), ty: ColumnType::Datetime }];
    for field in schema.fields() {
        if field.data_type() == &DataType::Null {
            continue;
        }
        let ty = billed_type(field.data_type()).ok_or_else(|| unsupported(field.name(), field.data_type()))?;
        let name = sentinel_name(field.name());
        if !tier.excludes(&name) {
            columns.push(BilledColumn { name, ty });
        }
    }
    Ok(columns)
}

/// Billed bytes of every row of a decoded batch, for `tier`.
///
/// The batch's column names are ours; they are mapped with [`sentinel_name`] before the exclusion
/// check. Each row also gets [`TIME_GENERATED_BYTES`].
pub fn billed_bytes_per_row(batch: &RecordBatch, tier: Tier) -> Result<Vec<u64>, BillingError> {
    billed_bytes_per_row_with(batch, tier, COLUMN_NAMES_BILLED)
}

/// Sum of [`billed_bytes_per_row`].
pub fn billed_bytes(batch: &RecordBatch, tier: Tier) -> Result<u64, BillingError> {
    Ok(billed_bytes_per_row(batch, tier)?.iter().sum())
}

/// [`billed_bytes_per_row`] with the column-name assumption given: when `column_names_billed`,
/// every non-empty entry also costs the length of its Sentinel column name.
pub fn billed_bytes_per_row_with(
    batch: &RecordBatch,
    tier: Tier,
    column_names_billed: bool,
) -> Result<Vec<u64>, BillingError> {
    let name_cost = |name: &str| if column_names_billed { name.len() as u64 } else { 0 };
    let mut rows = vec![TIME_GENERATED_BYTES + name_cost(TIME_GENERATED); batch.num_rows()];
    let schema = batch.schema();
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        let name = sentinel_name(field.name());
        if tier.excludes(&name) || array.data_type() == &DataType::Null {
            continue;
        }
        add_column(&mut rows, array.as_ref(), field.name(), name_cost(&name))?;
    }
    Ok(rows)
}

/// The billed bytes of a batch split two ways: per row and per column (see [`bill_by_column`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchBill {
    /// Billed bytes of each row, as [`billed_bytes_per_row`] computes them.
    pub rows: Vec<u64>,
    /// Billed bytes of each billed column over all rows: `TimeGenerated` first, then the batch's
    /// columns in batch order, by their batch (our) name. Excluded and `Null` columns are absent.
    pub columns: Vec<(String, u64)>,
}

impl BatchBill {
    /// The batch's billed bytes: the sum of [`Self::rows`], which equals the sum of
    /// [`Self::columns`].
    pub fn total(&self) -> u64 {
        self.rows.iter().sum()
    }
}

/// [`billed_bytes_per_row`] and, from the same computation, each column's share of it.
///
/// The billing rule is applied column by column, so the per-column sums add up to the batch's
/// billed bytes exactly. The fixed per-row part, [`TIME_GENERATED_BYTES`] for the
/// `TimeGenerated` every row gets, is a column of its own ([`TIME_GENERATED`]), not spread over
/// the others; so is `_RecordId` (billed as `RecordId_CF`) when the batch has it.
pub fn bill_by_column(batch: &RecordBatch, tier: Tier) -> Result<BatchBill, BillingError> {
    let name_cost = |name: &str| if COLUMN_NAMES_BILLED { name.len() as u64 } else { 0 };
    let per_row = TIME_GENERATED_BYTES + name_cost(TIME_GENERATED);
    let mut rows = vec![per_row; batch.num_rows()];
    let mut columns = vec![(TIME_GENERATED.to_string(), per_row * batch.num_rows() as u64)];
    let mut scratch = vec![0u64; batch.num_rows()];
    let schema = batch.schema();
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        let name = sentinel_name(field.name());
        if tier.excludes(&name) || array.data_type() == &DataType::Null {
            continue;
        }
        scratch.fill(0);
        add_column(&mut scratch, array.as_ref(), field.name(), name_cost(&name))?;
        let mut sum = 0;
        for (row, bytes) in rows.iter_mut().zip(&scratch) {
            *row += bytes;
            sum += bytes;
        }
        columns.push((field.name().clone(), sum));
    }
    Ok(BatchBill { rows, columns })
}

/// Adds the billed bytes of one column to `rows`: `name_bytes` is added for every entry that
/// bills at least one byte.
fn add_column(rows: &mut [u64], array: &dyn Array, column: &str, name_bytes: u64) -> Result<(), BillingError> {
    let data_type = array.data_type();
    match data_type {
        DataType::Utf8 => {
            let offsets = downcast::<StringArray>(array).value_offsets();
            add_lengths(rows, array, name_bytes, |i| (offsets[i + 1] - offsets[i]) as u64);
        }
        DataType::LargeUtf8 => {
            let offsets = downcast::<LargeStringArray>(array).value_offsets();
            add_lengths(rows, array, name_bytes, |i| (offsets[i + 1] - offsets[i]) as u64);
        }
        DataType::Int64 => {
            let values = downcast::<Int64Array>(array).values();
            add_lengths(rows, array, name_bytes, |i| long_len(values[i]));
        }
        DataType::Int32 => {
            let values = downcast::<Int32Array>(array).values();
            add_lengths(rows, array, name_bytes, |i| int_len(values[i]));
        }
        DataType::Float64 => {
            let values = downcast::<Float64Array>(array).values();
            let mut buffer = ryu::Buffer::new();
            add_lengths(rows, array, name_bytes, |i| buffer.format(values[i]).len() as u64);
        }
        DataType::Boolean => {
            let values = downcast::<BooleanArray>(array).values();
            add_lengths(rows, array, name_bytes, |i| bool_len(values.value(i)));
        }
        DataType::Timestamp(_, _) => add_lengths(rows, array, name_bytes, |_| datetime_len()),
        _ => return Err(unsupported(column, data_type)),
    }
    Ok(())
}

/// Adds `len_of(i) + name_bytes` to `rows[i]` for every valid entry with a non-zero length.
fn add_lengths(rows: &mut [u64], array: &dyn Array, name_bytes: u64, mut len_of: impl FnMut(usize) -> u64) {
    match array.nulls().filter(|nulls| nulls.null_count() > 0) {
        None => {
            for (i, row) in rows.iter_mut().enumerate() {
                let len = len_of(i);
                *row += if len > 0 { len + name_bytes } else { 0 };
            }
        }
        Some(nulls) => {
            for (i, row) in rows.iter_mut().enumerate() {
                if nulls.is_valid(i) {
                    let len = len_of(i);
                    *row += if len > 0 { len + name_bytes } else { 0 };
                }
            }
        }
    }
}

fn downcast<T: 'static>(array: &dyn Array) -> &T {
    array.as_any().downcast_ref::<T>().expect("the arrow data type was matched before the downcast")
}

fn unsupported(column: &str, data_type: &DataType) -> BillingError {
    BillingError::UnsupportedType { column: column.to_string(), data_type: data_type.clone() }
}

/// Billed bytes per row of the standard columns Log Analytics adds itself and bills in `tier`.
///
/// Only Auxiliary bills any: `Type` (the table name, e.g. `DeviceEvents_CL`) and `_TenantId` (the
/// workspace id, a guid of [`GUID_BYTES`]). `_ResourceId` and `_SubscriptionId` are assumed empty
/// for rows sent through the Logs Ingestion API (an assumption to calibrate). Not included in
/// [`billed_bytes_per_row`], which sees only the batch: add it per row for an Auxiliary estimate.
pub fn standard_columns_bytes(tier: Tier, sentinel_table: &str) -> u64 {
    match tier {
        Tier::Analytics | Tier::Basic => 0,
        Tier::Auxiliary => string_len(sentinel_table) + GUID_BYTES,
    }
}

#[cfg(test)]
mod tests;
