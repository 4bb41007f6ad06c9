//! Files being filled: Parquet encoded in memory, gzip NDJSON dead letters.

use std::{io::Write, time::Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use defender_core::DeadLetter;
use flate2::{Compression, write::GzEncoder};
use parquet::arrow::ArrowWriter;

use super::{ArchiveConfig, ArchiveError, encoding::writer_properties};

/// What a finished file hands back: bytes, first and last offsets, rows, the ids of the pieces.
pub(crate) type Finished = (Vec<u8>, i64, i64, u64, Vec<u64>);

struct Span {
    first: i64,
    last: i64,
    rows: u64,
    pieces: Vec<u64>,
}

impl Span {
    fn new() -> Self {
        Self { first: i64::MAX, last: i64::MIN, rows: 0, pieces: Vec::new() }
    }

    fn add(&mut self, id: u64, first: i64, last: i64, rows: u64) {
        self.first = self.first.min(first);
        self.last = self.last.max(last);
        self.rows += rows;
        self.pieces.push(id);
    }
}

/// Counts the bytes written to it and keeps none.
#[derive(Debug, Default)]
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Encodes batches exactly as the archive would, keeping only the byte count: what estimate
/// mode reports as the Parquet footprint (no guessed compression ratio).
pub struct ParquetSizer {
    table: String,
    writer: ArrowWriter<Counter>,
}

impl std::fmt::Debug for ParquetSizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSizer").field("table", &self.table).finish()
    }
}

impl ParquetSizer {
    /// A sizer of files whose first rows are `first` (their encodings are chosen from it).
    pub fn new(table: &str, first: &RecordBatch, config: &ArchiveConfig) -> Result<Self, ArchiveError> {
        let props = writer_properties(table, config, first)?;
        let writer = ArrowWriter::try_new(Counter::default(), first.schema(), Some(props))
            .map_err(|source| ArchiveError::Encode { table: table.to_string(), source })?;
        Ok(Self { table: table.to_string(), writer })
    }

    pub fn add(&mut self, batch: &RecordBatch) -> Result<(), ArchiveError> {
        self.writer.write(batch).map_err(|source| ArchiveError::Encode { table: self.table.clone(), source })
    }

    /// The size of the finished file.
    pub fn finish(self) -> Result<u64, ArchiveError> {
        let table = self.table;
        Ok(self.writer.into_inner().map_err(|source| ArchiveError::Encode { table, source })?.0)
    }
}

pub(crate) struct ParquetFile {
    table: String,
    pub(crate) schema: SchemaRef,
    writer: ArrowWriter<Vec<u8>>,
    span: Span,
    pub(crate) opened: Instant,
}

impl ParquetFile {
    /// A file whose first rows are `first` (its encodings are chosen from them).
    pub(crate) fn new(table: &str, first: &RecordBatch, config: &ArchiveConfig) -> Result<Self, ArchiveError> {
        let props = writer_properties(table, config, first)?;
        let schema = first.schema();
        let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
            .map_err(|source| ArchiveError::Encode { table: table.to_string(), source })?;
        Ok(Self { table: table.to_string(), schema, writer, span: Span::new(), opened: Instant::now() })
    }

    /// Appends rows of the file's schema (the caller checks it: a writer that failed half-way
    /// through a row group cannot be trusted, so a failure here is [`ArchiveError::Writer`]).
    pub(crate) fn append(&mut self, id: u64, first: i64, last: i64, rows: &RecordBatch) -> Result<(), ArchiveError> {
        debug_assert_eq!(rows.schema(), self.schema);
        self.writer.write(rows).map_err(|source| ArchiveError::Writer { table: self.table.clone(), source })?;
        self.span.add(id, first, last, rows.num_rows() as u64);
        Ok(())
    }

    /// Encoded bytes so far plus the row group being built.
    pub(crate) fn size(&self) -> usize {
        self.writer.bytes_written() + self.writer.in_progress_size()
    }

    pub(crate) fn finish(self) -> Result<Finished, ArchiveError> {
        let table = self.table;
        let bytes = self.writer.into_inner().map_err(|source| ArchiveError::Encode { table, source })?;
        Ok((bytes, self.span.first, self.span.last, self.span.rows, self.span.pieces))
    }
}

pub(crate) struct DeadLetterFile {
    encoder: GzEncoder<Vec<u8>>,
    span: Span,
    pub(crate) opened: Instant,
}

impl DeadLetterFile {
    pub(crate) fn new() -> Self {
        Self { encoder: GzEncoder::new(Vec::new(), Compression::default()), span: Span::new(), opened: Instant::now() }
    }

    pub(crate) fn append(&mut self, id: u64, first: i64, last: i64, letters: &[&DeadLetter]) -> std::io::Result<()> {
        for l in letters {
            self.encoder.write_all(l.to_json_line().as_bytes())?;
            self.encoder.write_all(b"\n")?;
        }
        self.span.add(id, first, last, letters.len() as u64);
        Ok(())
    }

    pub(crate) fn size(&self) -> usize {
        self.encoder.get_ref().len()
    }

    pub(crate) fn finish(self) -> std::io::Result<Finished> {
        let bytes = self.encoder.finish()?;
        Ok((bytes, self.span.first, self.span.last, self.span.rows, self.span.pieces))
    }
}
