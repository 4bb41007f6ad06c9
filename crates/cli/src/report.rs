//! The run's accounting, as JSON (`--summary`, `--json`) and as a terminal table.

use std::{collections::BTreeMap, fmt::Write};

use defender_core::TableStats;
use defender_pipeline::RunReport;
use serde::Serialize;

/// What `--summary` writes.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub archive: String,
    pub elapsed_seconds: f64,
    pub tables: BTreeMap<String, TableStats>,
    pub totals: TableStats,
    pub parquet_files: u64,
    pub dead_letter_files: u64,
    /// Per source partition (input file number): the last offset (line) wholly archived.
    pub committed: BTreeMap<u32, i64>,
}

impl Summary {
    pub fn new(run: &RunReport, archive: &str) -> Self {
        Self {
            archive: archive.to_string(),
            elapsed_seconds: run.elapsed.as_secs_f64(),
            tables: run.accounting.tables.clone(),
            totals: run.accounting.totals(),
            parquet_files: run.parquet_files,
            dead_letter_files: run.dead_letter_files,
            committed: run.committed.clone(),
        }
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// The columns of the terminal table: each header with the counter it shows, in one list so a
/// header and its values cannot drift apart.
type Column = (&'static str, fn(&TableStats) -> String);

const COLUMNS: [Column; 9] = [
    ("records in", |t| t.records_in.to_string()),
    ("archived", |t| t.written_archive.to_string()),
    ("sent to Sentinel", |t| t.sent_sentinel.to_string()),
    ("filtered", |t| t.filtered.to_string()),
    ("dead-lettered", |t| t.dead_lettered_total().to_string()),
    ("coerced", |t| t.coerced.values().sum::<u64>().to_string()),
    ("kept in _Extra", |t| t.kept_in_extra.values().sum::<u64>().to_string()),
    ("bytes in", |t| human_bytes(t.bytes_in)),
    ("parquet", |t| human_bytes(t.parquet_bytes)),
];

/// A fixed-width table: one line per table, then the totals. Every value sits right-aligned
/// under its own header.
pub fn table(s: &Summary) -> String {
    let mut out = String::new();
    let width = s.tables.keys().map(String::len).max().unwrap_or(5).max(6);
    let _ = write!(out, "{:<width$}", "table");
    for (h, _) in COLUMNS {
        let w = h.len().max(10);
        let _ = write!(out, "  {h:>w$}");
    }
    out.push('\n');
    let mut line = |name: &str, t: &TableStats| {
        let _ = write!(out, "{name:<width$}");
        for (h, value) in COLUMNS {
            let w = h.len().max(10);
            let _ = write!(out, "  {:>w$}", value(t));
        }
        if t.unknown_table {
            out.push_str(" (unknown table: raw JSON)");
        }
        out.push('\n');
    };
    for (name, t) in &s.tables {
        line(name, t);
    }
    line("total", &s.totals);
    let _ = writeln!(
        out,
        "\n{} parquet file(s) and {} dead-letter file(s) in {} ({:.1} s)",
        s.parquet_files, s.dead_letter_files, s.archive, s.elapsed_seconds
    );
    for (what, counts) in
        [("dead letters by reason", &s.totals.dead_lettered), ("kept off the Sentinel path", &s.totals.dropped)]
    {
        if !counts.is_empty() {
            let list: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(out, "{what}: {}", list.join(", "));
        }
    }
    out
}
