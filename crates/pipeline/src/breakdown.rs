//! The estimate's breakdown of one table: where its billed bytes come from, per column and per
//! value of a grouping column, and the `sentinel_filter` lines that would save the most.
//!
//! # Per column
//!
//! Each column's billed bytes are the billing rule applied to that column alone
//! ([`billing::bill_by_column`]), so the columns add up to the table's billed bytes exactly. The
//! fixed part every row pays is not spread over the data columns: `TimeGenerated` (28 bytes,
//! added by Log Analytics) and `_RecordId` (`RecordId_CF`, 32 bytes, kept by every projection)
//! are lines of their own, marked `fixed`. No `project-away` removes them; a `where` that drops
//! rows does, and a group's figure includes them.
//!
//! # Per group
//!
//! One grouping column per table: [`default_group_column`] (the one place the defaults are
//! written down), replaced by `tables.<Table>.group_by` in the config. Null and `""` are one value,
//! shown as [`EMPTY`] (in KQL a string is never null). Memory is bounded whatever the input: at
//! most [`MAX_TRACKED_VALUES`] distinct values of at most [`MAX_VALUE_LEN`] bytes are tracked per
//! table; rows of any further or longer value are summed under [`OTHER`]. The groups add up to
//! the table exactly either way; the report keeps the [`GROUPS_SHOWN`] heaviest values and sums
//! the rest under [`OTHER`].
//!
//! # Savings
//!
//! For a table sent to Sentinel, from what its current filter sends: a `project-away` of each
//! column not in [`PROTECTED_COLUMNS`] and not fixed, and a `where` dropping each tracked value of
//! the grouping column (when the filter still sends that column, and the value is not all that
//! is sent). Each saving is that change
//! alone on this sample (savings do not add up: a dropped group also took its share of every
//! column). The [`SAVINGS_SHOWN`] largest are kept, at most [`SAVINGS_PER_KIND`] of each kind. Every stage is parsed and type-checked
//! against the table before it is offered; `line` is what to append to `sentinel_filter`.

use std::collections::{BTreeMap, HashMap};

use arrow_array::{Array, BooleanArray, RecordBatch, StringArray};
use defender_core::{
    billing::BatchBill,
    policy::{self, Value},
    schema::{COL_RECORD_ID, ColumnType, TableSchema, sentinel_name},
};
use serde::Serialize;

/// Distinct values of the grouping column tracked per table; rows of later values go to [`OTHER`].
pub const MAX_TRACKED_VALUES: usize = 1000;
/// Longest value tracked, in bytes; rows of longer values go to [`OTHER`].
pub const MAX_VALUE_LEN: usize = 256;
/// Groups reported per table, heaviest first; the rest are summed under [`OTHER`].
pub const GROUPS_SHOWN: usize = 12;
/// Savings reported per table, largest first.
pub const SAVINGS_SHOWN: usize = 5;
/// Savings of one kind (`project-away` or `where`) reported per table, so both kinds show.
pub const SAVINGS_PER_KIND: usize = 3;
/// Savings of all tables reported in the estimate's "where to save" list.
pub const TOP_SAVINGS_SHOWN: usize = 10;
/// The group of the values not shown (or not tracked).
pub const OTHER: &str = "(other)";
/// The group of null and empty values.
pub const EMPTY: &str = "(empty)";

/// Grouping columns of the tables without an `ActionType` (which is the default wherever it
/// exists): the one column whose values name what kind of row it is.
pub const GROUP_COLUMNS: &[(&str, &str)] = &[
    ("AlertEvidence", "EntityType"),
    ("AlertInfo", "DetectionSource"),
    ("DeviceInfo", "OSPlatform"),
    ("DeviceNetworkInfo", "NetworkAdapterType"),
    ("EmailAttachmentInfo", "FileType"),
    ("EmailEvents", "EmailDirection"),
    ("EmailUrlInfo", "UrlLocation"),
];

/// Columns never suggested for removal: what Defender detections and Sentinel analytics rules
/// (and our own deduplication) commonly rely on. Time and ids: `Timestamp`, `ReportId`,
/// `_RecordId`; the device; account identity (the account itself and the initiating process's);
/// process and file identity (name, path, hashes, id, command line, creation time, parent); the
/// network and mail indicators rules join on (`RemoteIP`, `RemoteUrl`, `NetworkMessageId`,
/// sender and recipient addresses); and `ActionType`, which most rules filter on.
pub const PROTECTED_COLUMNS: &[&str] = &[
    "Timestamp",
    "ReportId",
    COL_RECORD_ID,
    "DeviceId",
    "DeviceName",
    "ActionType",
    // Account identity.
    "AccountName",
    "AccountDomain",
    "AccountSid",
    "AccountUpn",
    "AccountObjectId",
    "AccountDisplayName",
    "InitiatingProcessAccountName",
    "InitiatingProcessAccountDomain",
    "InitiatingProcessAccountSid",
    "InitiatingProcessAccountUpn",
    "InitiatingProcessAccountObjectId",
    // Process and file identity.
    "FileName",
    "FolderPath",
    "SHA1",
    "SHA256",
    "MD5",
    "ProcessId",
    "ProcessCommandLine",
    "ProcessCreationTime",
    "InitiatingProcessFileName",
    "InitiatingProcessFolderPath",
    "InitiatingProcessSHA1",
    "InitiatingProcessSHA256",
    "InitiatingProcessMD5",
    "InitiatingProcessId",
    "InitiatingProcessCommandLine",
    "InitiatingProcessCreationTime",
    "InitiatingProcessParentFileName",
    "InitiatingProcessParentId",
    "InitiatingProcessParentCreationTime",
    // Network and mail indicators.
    "RemoteIP",
    "RemoteUrl",
    "NetworkMessageId",
    "SenderFromAddress",
    "RecipientEmailAddress",
];

/// The default grouping column of `table`: [`GROUP_COLUMNS`], else `ActionType` when it has one.
pub fn default_group_column(table: &TableSchema) -> Option<&'static str> {
    if let Some((_, column)) = GROUP_COLUMNS.iter().find(|(t, _)| *t == table.table) {
        return Some(column);
    }
    table.columns.iter().any(|c| c.name == "ActionType").then_some("ActionType")
}

/// Why a grouping column does not fit its table.
pub fn check_group_column(table: &TableSchema, column: &str) -> Result<(), String> {
    match table.columns.iter().find(|c| c.name == column) {
        None => Err(format!("{} has no column `{column}`", table.table)),
        Some(c) if matches!(c.ty, ColumnType::String) => Ok(()),
        Some(c) => Err(format!("`{column}` has type {}; grouping takes a string column", c.ty.log_analytics_type())),
    }
}

/// What one column contributes to a table's billed bytes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ColumnCost {
    pub column: String,
    pub sentinel_column: String,
    pub billed_bytes: u64,
    pub gb_per_day: f64,
    /// Analytics tier.
    pub cost_per_month: f64,
    /// Of the table's billed bytes, 0 to 1.
    pub share: f64,
    /// Paid by every row whatever the projection (`TimeGenerated`, `_RecordId`).
    pub fixed: bool,
}

/// The rows of one value of the grouping column (or of [`OTHER`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupCost {
    pub value: String,
    pub rows: u64,
    pub billed_bytes: u64,
    pub gb_per_day: f64,
    /// Analytics tier.
    pub cost_per_month: f64,
    pub share: f64,
}

/// A table's rows by the value of its grouping column.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Groups {
    pub column: String,
    /// The heaviest values, heaviest first.
    pub values: Vec<GroupCost>,
    /// Every other value summed (and the rows of values not tracked), when there are any.
    pub rest: Option<GroupCost>,
    /// Distinct values in [`Self::rest`].
    pub rest_values: usize,
    /// Rows whose value was not tracked (beyond [`MAX_TRACKED_VALUES`] or [`MAX_VALUE_LEN`]).
    pub untracked_rows: u64,
}

/// Where one side (the whole table, or what the filter sends) of a table's billed bytes come from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Breakdown {
    pub rows: u64,
    pub billed_bytes: u64,
    /// Every billed column, heaviest first; they add up to [`Self::billed_bytes`].
    pub columns: Vec<ColumnCost>,
    pub groups: Option<Groups>,
}

/// One change to a table's `sentinel_filter` and what it saves on this sample.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Saving {
    pub table: String,
    /// `project-away` or `where`.
    pub change: String,
    pub column: String,
    /// The group value a `where` drops.
    pub value: Option<String>,
    pub billed_bytes: u64,
    pub gb_per_day: f64,
    /// Analytics tier.
    pub cost_per_month: f64,
    /// Of what the table sends now.
    pub share: f64,
    /// The stage alone, e.g. `project-away AdditionalFields`.
    pub kql: String,
    /// What to append to the table's `sentinel_filter`: the stage, after `| ` when there is one.
    pub line: String,
}

/// The breakdown of one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableDetail {
    pub group_column: Option<String>,
    /// The whole table, every column.
    pub before: Breakdown,
    /// What the table's Sentinel filter sends (tables sent to Sentinel only).
    pub after: Option<Breakdown>,
    /// Largest first.
    pub savings: Vec<Saving>,
}

/// One side's running sums.
#[derive(Debug, Default)]
struct Side {
    rows: u64,
    columns: BTreeMap<String, u64>,
    /// Rows and bytes per tracked value (by slot), and of the untracked values.
    groups: Vec<(u64, u64)>,
    untracked: (u64, u64),
}

const UNTRACKED: u32 = u32::MAX;

impl Side {
    fn add(&mut self, bill: &BatchBill, slots: Option<&[u32]>) {
        self.rows += bill.rows.len() as u64;
        for (name, bytes) in &bill.columns {
            match self.columns.get_mut(name) {
                Some(sum) => *sum += bytes,
                None => {
                    self.columns.insert(name.clone(), *bytes);
                }
            }
        }
        let Some(slots) = slots else { return };
        debug_assert_eq!(slots.len(), bill.rows.len());
        for (&slot, &bytes) in slots.iter().zip(&bill.rows) {
            let g = if slot == UNTRACKED {
                &mut self.untracked
            } else {
                let i = slot as usize;
                if self.groups.len() <= i {
                    self.groups.resize(i + 1, (0, 0));
                }
                &mut self.groups[i]
            };
            g.0 += 1;
            g.1 += bytes;
        }
    }
}

/// Accumulates one table's breakdown over its batches; memory bounded by its columns and
/// [`MAX_TRACKED_VALUES`].
#[derive(Debug, Default)]
pub(crate) struct DetailAcc {
    group_column: Option<String>,
    values: HashMap<String, u32>,
    names: Vec<String>,
    before: Side,
    after: Option<Side>,
    /// Whether the grouping column reaches Sentinel (a `where` on it can follow the filter).
    group_sent: bool,
}

impl DetailAcc {
    pub(crate) fn new(group_column: Option<String>) -> Self {
        Self { group_column, ..Self::default() }
    }

    /// The group slot of every row of `batch`, if it has the grouping column as text.
    fn slots(&mut self, batch: &RecordBatch) -> Option<Vec<u32>> {
        let column = batch.column_by_name(self.group_column.as_deref()?)?;
        let strings = column.as_any().downcast_ref::<StringArray>()?;
        let mut slots = Vec::with_capacity(strings.len());
        for i in 0..strings.len() {
            let value = if strings.is_null(i) { "" } else { strings.value(i) };
            let slot = match self.values.get(value) {
                Some(&slot) => slot,
                None if value.len() <= MAX_VALUE_LEN && self.names.len() < MAX_TRACKED_VALUES => {
                    let slot = self.names.len() as u32;
                    self.values.insert(value.to_string(), slot);
                    self.names.push(value.to_string());
                    slot
                }
                None => UNTRACKED,
            };
            slots.push(slot);
        }
        Some(slots)
    }

    /// Adds one batch: its bill, and (for tables sent to Sentinel) the bill of what the filter
    /// sends, the row mask it applied (`None`: every row) and the sent batch.
    pub(crate) fn add(
        &mut self,
        batch: &RecordBatch,
        before: &BatchBill,
        after: Option<(&BatchBill, Option<&BooleanArray>, &RecordBatch)>,
    ) {
        let slots = self.slots(batch);
        self.before.add(before, slots.as_deref());
        if let Some((bill, mask, sent)) = after {
            let kept: Option<Vec<u32>> = match (&slots, mask) {
                (Some(s), Some(m)) => {
                    Some(s.iter().zip(m.values().iter()).filter(|(_, k)| *k).map(|(s, _)| *s).collect())
                }
                (s, None) => s.clone(),
                (None, _) => None,
            };
            self.after.get_or_insert_with(Side::default).add(bill, kept.as_deref());
            self.group_sent = self.group_column.as_deref().is_some_and(|c| sent.column_by_name(c).is_some());
        }
    }

    /// The table's breakdown. `per_day` turns billed bytes into GB/day, `price` is per GB on the
    /// analytics tier; `filtered` says whether the table has a `sentinel_filter` already.
    pub(crate) fn finish(
        self,
        table: &TableSchema,
        filtered: bool,
        per_day: &dyn Fn(u64) -> f64,
        price: f64,
    ) -> TableDetail {
        let cost = |bytes: u64| {
            let gb = per_day(bytes);
            (gb, defender_core::billing::monthly_cost(gb, price))
        };
        let before = breakdown(&self.before, self.group_column.as_deref(), &self.names, &cost);
        let after = self.after.as_ref().map(|s| breakdown(s, self.group_column.as_deref(), &self.names, &cost));
        let mut savings = Vec::new();
        if let Some((side, b)) = self.after.as_ref().zip(after.as_ref()) {
            let mut candidates: Vec<(String, String, Option<String>, u64)> = Vec::new();
            for c in b.columns.iter().filter(|c| !c.fixed && c.billed_bytes > 0) {
                if !PROTECTED_COLUMNS.contains(&c.column.as_str()) {
                    candidates.push((format!("project-away {}", c.column), c.column.clone(), None, c.billed_bytes));
                }
            }
            if let (Some(column), true) = (&self.group_column, self.group_sent) {
                // A `where` dropping every row sent is not a filter but `sentinel = false`.
                let rows = side.rows;
                for (slot, &(_, bytes)) in side.groups.iter().enumerate().filter(|(_, g)| g.1 > 0 && g.0 < rows) {
                    let value = &self.names[slot];
                    let kql = if value.is_empty() {
                        format!("where isnotempty({column})")
                    } else {
                        format!("where {column} != {}", Value::Str(value.clone()))
                    };
                    candidates.push((kql, column.clone(), Some(value.clone()), bytes));
                }
            }
            candidates.sort_by(|a, b| b.3.cmp(&a.3).then_with(|| a.0.cmp(&b.0)));
            let mut per_kind = [0; 2];
            for (kql, column, value, bytes) in candidates {
                let kind = usize::from(value.is_some());
                if savings.len() == SAVINGS_SHOWN || per_kind[kind] == SAVINGS_PER_KIND {
                    continue;
                }
                // Offered only when it parses and fits the table, as the config will check it.
                if policy::parse(&kql).ok().and_then(|p| p.check(table).ok()).is_none() {
                    continue;
                }
                per_kind[kind] += 1;
                let (gb_per_day, cost_per_month) = cost(bytes);
                let change = if value.is_some() { "where" } else { "project-away" };
                savings.push(Saving {
                    table: table.table.clone(),
                    change: change.to_string(),
                    column,
                    value: value.map(|v| if v.is_empty() { EMPTY.to_string() } else { v }),
                    billed_bytes: bytes,
                    gb_per_day,
                    cost_per_month,
                    share: share(bytes, b.billed_bytes),
                    line: if filtered { format!("| {kql}") } else { kql.clone() },
                    kql,
                });
            }
        }
        TableDetail { group_column: self.group_column, before, after, savings }
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

fn breakdown(side: &Side, group_column: Option<&str>, names: &[String], cost: &dyn Fn(u64) -> (f64, f64)) -> Breakdown {
    let total: u64 = side.columns.values().sum();
    let mut columns: Vec<ColumnCost> = side
        .columns
        .iter()
        .map(|(name, &bytes)| {
            let (gb_per_day, cost_per_month) = cost(bytes);
            let time_generated = name == defender_core::billing::TIME_GENERATED;
            ColumnCost {
                column: name.clone(),
                // Log Analytics' own column keeps its name.
                sentinel_column: if time_generated { name.clone() } else { sentinel_name(name) },
                billed_bytes: bytes,
                gb_per_day,
                cost_per_month,
                share: share(bytes, total),
                fixed: time_generated || name == COL_RECORD_ID,
            }
        })
        .collect();
    columns.sort_by(|a, b| b.billed_bytes.cmp(&a.billed_bytes).then_with(|| a.column.cmp(&b.column)));
    let group = |value: String, (rows, bytes): (u64, u64)| {
        let (gb_per_day, cost_per_month) = cost(bytes);
        GroupCost { value, rows, billed_bytes: bytes, gb_per_day, cost_per_month, share: share(bytes, total) }
    };
    let groups = group_column.map(|column| {
        let mut values: Vec<(usize, (u64, u64))> =
            side.groups.iter().copied().enumerate().filter(|(_, g)| g.0 > 0).collect();
        values.sort_by(|a, b| b.1.1.cmp(&a.1.1).then_with(|| names[a.0].cmp(&names[b.0])));
        let rest_values = values.len().saturating_sub(GROUPS_SHOWN);
        let mut rest = side.untracked;
        for (_, (rows, bytes)) in values.iter().skip(GROUPS_SHOWN) {
            rest.0 += rows;
            rest.1 += bytes;
        }
        let shown = values
            .iter()
            .take(GROUPS_SHOWN)
            .map(|(slot, g)| {
                let name = &names[*slot];
                group(if name.is_empty() { EMPTY.to_string() } else { name.clone() }, *g)
            })
            .collect();
        Groups {
            column: column.to_string(),
            values: shown,
            rest: (rest.0 > 0).then(|| group(OTHER.to_string(), rest)),
            rest_values,
            untracked_rows: side.untracked.0,
        }
    });
    Breakdown { rows: side.rows, billed_bytes: total, columns, groups }
}

#[cfg(test)]
mod tests;
