//! Where archive files go and what they are called.

use std::sync::Arc;

use arrow_array::{Array, BooleanArray, RecordBatch, TimestampNanosecondArray};
use arrow_select::filter::filter_record_batch;
use defender_core::schema::COL_TIMESTAMP;
use object_store::path::Path;

use super::HourGroup;

const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// One open file: a table, an hour of event time, a source partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FileKey {
    pub table: Arc<str>,
    pub hour: i64,
    pub source: Arc<str>,
}

/// Splits a batch by the hour of its `Timestamp` column (hours since the Unix epoch, UTC).
pub(crate) fn hour_groups(batch: &RecordBatch) -> Vec<HourGroup> {
    let Some(ts) =
        batch.column_by_name(COL_TIMESTAMP).and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
    else {
        return vec![(0, batch.clone())];
    };
    let hour = |i: usize| if ts.is_null(i) { 0 } else { ts.value(i).div_euclid(NANOS_PER_HOUR) };
    let mut hours: Vec<i64> = (0..ts.len()).map(hour).collect();
    hours.sort_unstable();
    hours.dedup();
    if hours.len() <= 1 {
        return hours.into_iter().map(|h| (h, batch.clone())).collect();
    }
    hours
        .into_iter()
        .map(|h| {
            let mask: BooleanArray = (0..ts.len()).map(|i| Some(hour(i) == h)).collect();
            (h, filter_record_batch(batch, &mask).expect("mask has the batch's length"))
        })
        .collect()
}

/// A stable, path-safe name for a source partition: the last component of its source name (a
/// file name, `topic/partition`) and a short hash of the whole name. It does not depend on the
/// partition number, which for files is only the file's place in this run's input list.
pub(crate) fn source_key(source: &str) -> Arc<str> {
    let base = source.rsplit(['/', '\\']).next().unwrap_or(source);
    let clean: String = base
        .chars()
        .take(48)
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '_' })
        .collect();
    // FNV-1a: stable across versions and platforms, unlike std's hasher.
    let hash = source.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{clean}-{:08x}", hash as u32).into()
}

fn date_hour(hour: i64) -> (String, String) {
    let dt = chrono::DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default();
    (dt.format("%Y-%m-%d").to_string(), dt.format("%H").to_string())
}

/// `<prefix>/table=<T>/date=YYYY-MM-DD/hour=HH/<name>`.
pub(crate) fn parquet_path(prefix: &Path, table: &str, hour: i64, name: &str) -> Path {
    let (date, hh) = date_hour(hour);
    let mut parts: Vec<String> = prefix.parts().map(|p| p.as_ref().to_string()).collect();
    parts.extend([format!("table={table}"), format!("date={date}"), format!("hour={hh}"), name.to_string()]);
    Path::from_iter(parts)
}

/// `<prefix>/_deadletter/table=<T>/<name>`.
pub(crate) fn dead_letter_path(prefix: &Path, table: &str, name: &str) -> Path {
    let mut parts: Vec<String> = prefix.parts().map(|p| p.as_ref().to_string()).collect();
    parts.extend(["_deadletter".to_string(), format!("table={table}"), name.to_string()]);
    Path::from_iter(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_hive_layout() {
        let hour = 1_795_168_800 / 3600;
        assert_eq!(
            parquet_path(&Path::from("root/x"), "DeviceInfo", hour, "f.parquet").as_ref(),
            "root/x/table=DeviceInfo/date=2026-11-20/hour=10/f.parquet"
        );
        assert_eq!(dead_letter_path(&Path::default(), "unknown", "f.gz").as_ref(), "_deadletter/table=unknown/f.gz");
    }

    #[test]
    fn source_keys_are_stable_and_path_safe() {
        assert_eq!(source_key("/data/in put/a.json.gz"), source_key("/data/in put/a.json.gz"));
        assert_ne!(source_key("/a/x.json"), source_key("/b/x.json"));
        assert_ne!(source_key("topic/0"), source_key("topic/1"));
        let k = source_key("/data/in put/a b.json");
        assert!(k.starts_with("a_b.json-") && k.len() == "a_b.json-".len() + 8, "{k}");
    }
}
