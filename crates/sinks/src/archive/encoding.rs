//! Writer properties of archive files: zstd, Parquet 2 pages, and per column an encoding chosen
//! from the file's first rows.
//!
//! parquet-rs dictionary-encodes every column by default and keeps doing so until a column
//! chunk's dictionary passes 1 MiB. Columns whose values hardly repeat (times to the 100 ns,
//! process ids, `ProcessUniqueId`, `_RecordId`) then hold a dictionary as large as the data
//! plus an index per value, which zstd cannot take back: on 100 MB of generated
//! DeviceProcessEvents such columns were about half of the file (benches/RESULTS.md, archive
//! size). So a column whose first rows are mostly distinct is written without a dictionary:
//! timestamps as `DELTA_BINARY_PACKED`, other integers `PLAIN`, strings as
//! `DELTA_LENGTH_BYTE_ARRAY` (the lengths delta-packed, the bytes left to zstd), each the
//! smallest of the encodings measured on that kind of column. Every reader we check with (pyarrow,
//! DuckDB) and Spark read both encodings; nothing newer than Parquet 2.0's encodings is used
//! (no `BYTE_STREAM_SPLIT` for integers, which older readers refuse).

use std::{collections::HashSet, hash::Hash};

use arrow_array::{Array, ArrayRef, RecordBatch, cast::AsArray, types::Int32Type};
use arrow_schema::DataType;
use parquet::{
    basic::{Compression as PqCompression, Encoding, ZstdLevel},
    file::properties::{WriterProperties, WriterVersion},
    schema::types::ColumnPath,
};

use super::{ArchiveConfig, ArchiveError};

/// How large a column chunk's dictionary may grow before the column falls back to plain
/// values: command lines repeat, but their distinct values pass parquet-rs's 1 MiB default
/// within a file (8 MiB made those columns 20-25% smaller, benches/RESULTS.md). The dictionary
/// is counted in the open file's size, so `max_buffered_bytes` bounds it.
const DICTIONARY_BYTES: usize = 8 << 20;
/// Values of a column looked at to choose its encoding.
const SAMPLE: usize = 4096;
/// Fewer non-null values than this in the sample tell nothing: the default (dictionary) stays.
const MIN_SAMPLE: usize = 64;
/// A column whose sampled values are more than this fraction distinct gets no dictionary.
const DISTINCT: f64 = 0.5;

/// Writer properties of a file of `table` whose first rows are `first`.
pub(crate) fn writer_properties(
    table: &str,
    config: &ArchiveConfig,
    first: &RecordBatch,
) -> Result<WriterProperties, ArchiveError> {
    let level = ZstdLevel::try_new(config.zstd_level)
        .map_err(|source| ArchiveError::Encode { table: table.to_string(), source })?;
    let mut builder = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_2_0)
        .set_compression(PqCompression::ZSTD(level))
        .set_max_row_group_row_count(Some(config.row_group_rows))
        .set_dictionary_page_size_limit(DICTIONARY_BYTES)
        .set_created_by(concat!("defender-ingest ", env!("CARGO_PKG_VERSION")).to_string());
    for (field, column) in first.schema().fields().iter().zip(first.columns()) {
        if let Some(encoding) = without_dictionary(column) {
            let path = ColumnPath::from(field.name().as_str());
            builder = builder.set_column_dictionary_enabled(path.clone(), false).set_column_encoding(path, encoding);
        }
    }
    Ok(builder.build())
}

/// The encoding of a column better written without a dictionary, or None to keep the default.
fn without_dictionary(column: &ArrayRef) -> Option<Encoding> {
    let (distinct, encoding) = match column.data_type() {
        // A timestamp of any unit is an i64 of that unit. Times are near one another (rows of
        // one file span about an hour): their deltas pack small. Other integers (ids, report
        // ids) are spread: their plain bytes compress better than their deltas.
        DataType::Int64 | DataType::Timestamp(_, _) => {
            let data = column.to_data();
            let nulls = data.nulls();
            let values = data.buffer::<i64>(0).iter().enumerate();
            let values = values.map(|(i, v)| nulls.is_none_or(|n| n.is_valid(i)).then_some(*v));
            let encoding = match column.data_type() {
                DataType::Timestamp(_, _) => Encoding::DELTA_BINARY_PACKED,
                _ => Encoding::PLAIN,
            };
            (distinct_ratio(values), encoding)
        }
        DataType::Int32 => (distinct_ratio(column.as_primitive::<Int32Type>().iter()), Encoding::PLAIN),
        DataType::Utf8 => (distinct_ratio(column.as_string::<i32>().iter()), Encoding::DELTA_LENGTH_BYTE_ARRAY),
        DataType::LargeUtf8 => (distinct_ratio(column.as_string::<i64>().iter()), Encoding::DELTA_LENGTH_BYTE_ARRAY),
        _ => return None,
    };
    distinct.filter(|d| *d > DISTINCT).map(|_| encoding)
}

/// The fraction of distinct values among the first [`SAMPLE`] non-null ones, or None when
/// there are fewer than [`MIN_SAMPLE`].
fn distinct_ratio<T: Hash + Eq>(values: impl Iterator<Item = Option<T>>) -> Option<f64> {
    let mut seen = HashSet::new();
    let mut n = 0usize;
    for v in values.flatten().take(SAMPLE) {
        seen.insert(v);
        n += 1;
    }
    (n >= MIN_SAMPLE).then(|| seen.len() as f64 / n as f64)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray, TimestampNanosecondArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns.into_iter().map(|(_, a)| a).collect()).unwrap()
    }

    #[test]
    fn distinct_columns_lose_their_dictionary_repeating_ones_keep_it() {
        let n = 1000;
        let b = batch(vec![
            ("Unique", Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("id-{i}")))) as ArrayRef),
            ("Repeated", Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("host-{}", i % 7))))),
            (
                "Time",
                Arc::new(TimestampNanosecondArray::from_iter_values((0..n).map(|i| i * 100)).with_timezone("UTC")),
            ),
            ("Pid", Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 3)))),
            ("ReportId", Arc::new(Int64Array::from_iter_values((0..n).map(|i| i * 7919)))),
            ("Sparse", Arc::new(StringArray::from_iter((0..n).map(|i| (i < 10).then(|| format!("x{i}")))))),
        ]);
        let props = writer_properties("T", &ArchiveConfig::default(), &b).unwrap();
        let dict = |c: &str| props.dictionary_enabled(&ColumnPath::from(c));
        let enc = |c: &str| props.encoding(&ColumnPath::from(c));
        assert!(!dict("Unique") && enc("Unique") == Some(Encoding::DELTA_LENGTH_BYTE_ARRAY));
        assert!(!dict("Time") && enc("Time") == Some(Encoding::DELTA_BINARY_PACKED));
        assert!(!dict("ReportId") && enc("ReportId") == Some(Encoding::PLAIN));
        assert!(dict("Repeated") && enc("Repeated").is_none());
        assert!(dict("Pid") && dict("Sparse"), "repeating, and too few values to tell");
    }
}
