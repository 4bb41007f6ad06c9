//! The run's accounting, per table: every record that comes in is decoded and written,
//! filtered, or dead-lettered, and nothing else. `records_in = written + filtered +
//! dead_lettered` is checked by every test that pushes records through the pipeline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Counters of one table. Unknown tables (not in `table-schemas/`) are counted under their name
/// with `unknown_table` set; records whose table cannot be told at all under `unknown`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStats {
    /// Records seen (including the ones dead-lettered).
    pub records_in: u64,
    /// Records decoded into rows.
    pub decoded: u64,
    /// Rows at least one destination (the archive, Sentinel) took; durable when the run ends
    /// successfully.
    pub delivered: u64,
    /// Rows durable in the Parquet archive.
    pub written_archive: u64,
    /// Rows accepted by Sentinel (in a dry run: stored as request bodies).
    pub sent_sentinel: u64,
    /// Rows kept off the Sentinel path whatever the config says, by reason (`tvm`, and
    /// `unknown_table` when the config would have sent them).
    pub dropped: BTreeMap<String, u64>,
    /// Rows the Sentinel path could not deliver (over the request limit on their own, refused
    /// alone with 413, or in a batch the encoder could not represent). Each is in the dead-letter
    /// files (reason `sentinel_rejected` or `encode_failed`) before its epoch is committed. They
    /// stay counted as `delivered` (the policy took them; the archive usually holds them too),
    /// not in `dead_lettered`, which counts records that reached no destination.
    pub sentinel_rejected: u64,
    /// Values cut at the 64 KB field limit on the Sentinel path.
    pub sentinel_truncated: u64,
    /// Rows no destination took, on purpose (the table's selection and filters).
    pub filtered: u64,
    /// Dead-lettered records, by reason.
    pub dead_lettered: BTreeMap<String, u64>,
    /// Values coerced without loss (number as string, `""` for null, object in a string
    /// column, ...), by column.
    pub coerced: BTreeMap<String, u64>,
    /// Values that could not be coerced without loss: the column is null and the value is kept
    /// in `_Extra`, by column.
    pub kept_in_extra: BTreeMap<String, u64>,
    /// Fields not in the table schema (kept in `_Extra`).
    pub unknown_columns: u64,
    /// The table is not in `table-schemas/`: records are archived whole as raw JSON.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unknown_table: bool,
    /// Bytes of input attributed to this table.
    pub bytes_in: u64,
    /// Bytes of Parquet written for this table.
    pub parquet_bytes: u64,
}

impl TableStats {
    pub fn dead_lettered_total(&self) -> u64 {
        self.dead_lettered.values().sum()
    }

    /// Records that reached their end: delivered to a destination, filtered, or dead-lettered.
    pub fn accounted(&self) -> u64 {
        self.delivered + self.filtered + self.dead_lettered_total()
    }

    pub fn merge(&mut self, other: &Self) {
        self.records_in += other.records_in;
        self.decoded += other.decoded;
        self.delivered += other.delivered;
        self.written_archive += other.written_archive;
        self.sent_sentinel += other.sent_sentinel;
        self.sentinel_rejected += other.sentinel_rejected;
        self.sentinel_truncated += other.sentinel_truncated;
        self.filtered += other.filtered;
        self.unknown_columns += other.unknown_columns;
        self.unknown_table |= other.unknown_table;
        self.bytes_in += other.bytes_in;
        self.parquet_bytes += other.parquet_bytes;
        for (map, from) in [
            (&mut self.dead_lettered, &other.dead_lettered),
            (&mut self.coerced, &other.coerced),
            (&mut self.kept_in_extra, &other.kept_in_extra),
            (&mut self.dropped, &other.dropped),
        ] {
            for (k, v) in from {
                *map.entry(k.clone()).or_default() += v;
            }
        }
    }
}

/// Per-table counters of a run (or of one decoder flush).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounting {
    pub tables: BTreeMap<String, TableStats>,
}

impl Accounting {
    pub fn table(&mut self, table: &str) -> &mut TableStats {
        if !self.tables.contains_key(table) {
            self.tables.insert(table.to_string(), TableStats::default());
        }
        self.tables.get_mut(table).expect("inserted above")
    }

    pub fn merge(&mut self, other: &Self) {
        for (t, s) in &other.tables {
            self.table(t).merge(s);
        }
    }

    /// The sum over all tables.
    pub fn totals(&self) -> TableStats {
        let mut total = TableStats::default();
        for s in self.tables.values() {
            total.merge(s);
        }
        total.unknown_table = false;
        total
    }

    /// Tables whose records are not all accounted for, with (in, accounted).
    pub fn unbalanced(&self) -> Vec<(String, u64, u64)> {
        self.tables
            .iter()
            .filter(|(_, s)| s.records_in != s.accounted())
            .map(|(t, s)| (t.clone(), s.records_in, s.accounted()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_every_counter_and_unbalanced_reports_the_gap() {
        let mut a = Accounting::default();
        let t = a.table("T");
        t.records_in = 5;
        t.delivered = 3;
        t.dead_lettered.insert("no_timestamp".into(), 1);
        let mut b = Accounting::default();
        b.table("T").records_in = 1;
        b.table("T").delivered = 1;
        b.table("T").dead_lettered.insert("no_timestamp".into(), 1);
        a.merge(&b);
        assert_eq!(a.tables["T"].records_in, 6);
        assert_eq!(a.tables["T"].dead_lettered["no_timestamp"], 2);
        assert_eq!(a.unbalanced(), vec![]);
        a.table("T").records_in += 1;
        assert_eq!(a.unbalanced(), vec![("T".to_string(), 7, 6)]);
        assert_eq!(a.totals().records_in, 7);
    }
}
