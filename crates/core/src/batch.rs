//! What flows between stages: table batches carrying the source positions they cover, and the
//! one flush rule every batching stage uses.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use arrow_array::RecordBatch;

/// Where a message came from: a partition of a source (a Kafka partition, an input file) and
/// the offset of the message inside it (a Kafka offset, a line number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub partition: u32,
    pub offset: i64,
}

/// Rows of one table decoded from one source partition, covering messages
/// `first_offset..=last_offset` of it.
#[derive(Debug, Clone)]
pub struct TableBatch {
    /// Table name (for unknown tables: the name taken from the category).
    pub table: Arc<str>,
    /// Not in `table-schemas/`: the rows are whole raw records (see `schema::unknown_table_schema`).
    pub unknown_table: bool,
    /// Stable name of the source partition (e.g. a file path or `topic/partition`), used to
    /// derive output file names.
    pub source: Arc<str>,
    pub partition: u32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// Bytes of input these rows were decoded from (approximate when a message holds records of
    /// several tables: its bytes are shared out by record).
    pub raw_bytes: u64,
    pub batch: RecordBatch,
}

impl TableBatch {
    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }
}

/// When a stage emits what it has gathered: as soon as any limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushRule {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
}

impl FlushRule {
    pub fn should_flush(&self, rows: usize, bytes: usize, opened: Instant, now: Instant) -> bool {
        rows > 0 && (rows >= self.max_rows || bytes >= self.max_bytes || now.duration_since(opened) >= self.max_age)
    }
}

impl Default for FlushRule {
    fn default() -> Self {
        Self { max_rows: 65_536, max_bytes: 32 << 20, max_age: Duration::from_secs(5) }
    }
}
