//! Validation of the table schema files (`defender-ingest schemas check`).

use std::{collections::HashMap, fmt, sync::Arc};

use super::{
    COL_TIMESTAMP, ColumnType, MAX_SENTINEL_COLUMNS, MAX_SENTINEL_NAME_LEN, TableSchema,
    sentinel::invalid_sentinel_name, sentinel_name,
};

/// One thing wrong with one table file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub table: String,
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(c) => write!(f, "{}.{}: {}", self.table, c, self.message),
            None => write!(f, "{}: {}", self.table, self.message),
        }
    }
}

/// Checks every table: duplicate or case-colliding names (Defender and Sentinel names), names
/// longer than 45 characters, more than 500 columns, invalid Sentinel names, Sentinel names
/// that do not follow the rule, a missing or mistyped `Timestamp`. Unknown types are rejected
/// when the file is parsed.
pub fn check_tables(tables: &[Arc<TableSchema>]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for t in tables {
        let mut problem = |column: Option<&str>, message: String| {
            problems.push(Problem { table: t.table.clone(), column: column.map(str::to_string), message })
        };
        // Four internal columns and TimeGenerated (+ _RecordId) are added on the Sentinel side.
        let total = t.columns.len() + 6;
        if total > MAX_SENTINEL_COLUMNS {
            problem(None, format!("{total} columns with the ones we add, over the limit of {MAX_SENTINEL_COLUMNS}"));
        }
        if t.table.len() + 3 > MAX_SENTINEL_NAME_LEN || !t.table.bytes().all(|b| b.is_ascii_alphanumeric()) {
            problem(None, "table name must be alphanumeric and at most 42 characters (45 with `_CL`)".into());
        }
        match t.column(COL_TIMESTAMP) {
            Some(c) if c.ty == ColumnType::Datetime => {}
            Some(_) => problem(Some(COL_TIMESTAMP), "must be of type datetime".into()),
            // Snapshot tables (TVM): the decoder adds a Timestamp from the envelope time.
            None => {}
        }
        let mut seen: HashMap<String, &str> = HashMap::new();
        let mut seen_sentinel: HashMap<String, &str> = HashMap::new();
        for c in &t.columns {
            if c.name.len() > MAX_SENTINEL_NAME_LEN {
                problem(Some(&c.name), format!("name is longer than {MAX_SENTINEL_NAME_LEN} characters"));
            }
            if c.name.starts_with('_') {
                problem(Some(&c.name), "names starting with `_` are reserved for the columns we add".into());
            }
            if let Some(prev) = seen.insert(c.name.to_ascii_lowercase(), &c.name) {
                problem(Some(&c.name), format!("collides with column `{prev}` (names compare without case)"));
            }
            let expected = sentinel_name(&c.name);
            if c.sentinel_name != expected {
                problem(Some(&c.name), format!("sentinel_name is `{}`, the rule gives `{expected}`", c.sentinel_name));
            }
            if let Some(why) = invalid_sentinel_name(&c.sentinel_name) {
                problem(Some(&c.name), format!("sentinel_name `{}` {why}", c.sentinel_name));
            }
            if let Some(prev) = seen_sentinel.insert(c.sentinel_name.to_ascii_lowercase(), &c.name) {
                problem(Some(&c.name), format!("Sentinel name collides with the one of column `{prev}`"));
            }
        }
    }
    problems
}
