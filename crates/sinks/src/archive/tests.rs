use std::{io::Read, sync::Arc};

use arrow_array::{Array, Int64Array};
use defender_core::{Catalog, Decoder, FlushRule, decode::DecoderOutput};
use fs_util::collect_files;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::store;

mod fs_util {
    use std::path::{Path, PathBuf};

    /// Every file under `dir`, relative, sorted.
    pub fn collect_files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() { stack.push(p) } else { out.push(p.strip_prefix(dir).unwrap().to_path_buf()) }
            }
        }
        out.sort();
        out
    }
}

fn record(hour: u32, report: i64) -> String {
    format!(
        r#"{{"time":"2026-11-20T{hour:02}:59:00Z","category":"AdvancedHunting-DeviceInfo","properties":{{"Timestamp":"2026-11-20T{hour:02}:30:00.1234567Z","ReportId":{report}}}}}"#
    )
}

fn decode(lines: &[String], first_offset: i64) -> DecoderOutput {
    let mut d = Decoder::new(&Catalog::embedded(), "/in/sample.json".into(), 0, FlushRule::default());
    for (i, l) in lines.iter().enumerate() {
        d.decode(l.as_bytes(), first_offset + i as i64);
    }
    d.flush().unwrap()
}

async fn sink(dir: &std::path::Path, config: ArchiveConfig) -> ArchiveSink {
    ArchiveSink::new(store::open(dir.to_str().unwrap()).unwrap(), config)
}

fn read_parquet(path: &std::path::Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap().map(Result::unwrap).collect()
}

#[tokio::test]
async fn batches_become_durable_only_when_their_files_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sink(dir.path(), ArchiveConfig::default()).await;
    let out = decode(&[record(9, 639_199_803_770_463_703), record(10, 2), record(10, 3)], 0);
    let durable = s.write(&out.batches[0]).await.unwrap();
    assert!(durable.is_empty(), "nothing stored yet");
    assert!(collect_files(dir.path()).is_empty());
    let durable = s.close().await.unwrap();
    assert_eq!(
        durable,
        vec![Durable { table: "DeviceInfo".into(), partition: 0, epoch: 2, rows: 3, dead_letters: false }]
    );
    let files = collect_files(dir.path());
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let key = source_key("/in/sample.json");
    assert_eq!(
        names,
        vec![
            format!("table=DeviceInfo/date=2026-11-20/hour=09/{key}-{:020}-{:020}.parquet", 0, 2),
            format!("table=DeviceInfo/date=2026-11-20/hour=10/{key}-{:020}-{:020}.parquet", 0, 2),
        ]
    );
    let rows = read_parquet(&dir.path().join(&files[0]));
    let ids = rows[0].column_by_name("ReportId").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!(ids.value(0), 639_199_803_770_463_703);
    assert_eq!(read_parquet(&dir.path().join(&files[1]))[0].num_rows(), 2);
    let stored = s.take_stored();
    assert_eq!(stored.iter().map(|s| s.rows).sum::<u64>(), 3);
}

#[tokio::test]
async fn a_replay_rewrites_the_same_file_names() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let mut s = sink(dir.path(), ArchiveConfig::default()).await;
        let out = decode(&[record(9, 1), record(9, 2)], 100);
        s.write(&out.batches[0]).await.unwrap();
        s.close().await.unwrap();
    }
    let files = collect_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(read_parquet(&dir.path().join(&files[0]))[0].num_rows(), 2);
}

#[tokio::test]
async fn files_roll_by_size_and_gather_consecutive_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sink(dir.path(), ArchiveConfig { roll_bytes: 1, ..ArchiveConfig::default() }).await;
    let a = decode(&[record(9, 1)], 0);
    let durable = s.write(&a.batches[0]).await.unwrap();
    assert_eq!(durable.len(), 1, "rolled at once: over roll_bytes");

    let mut s = sink(dir.path(), ArchiveConfig::default()).await;
    let b = decode(&[record(11, 1)], 10);
    let c = decode(&[record(11, 2)], 11);
    assert!(s.write(&b.batches[0]).await.unwrap().is_empty());
    assert!(s.write(&c.batches[0]).await.unwrap().is_empty());
    let durable = s.close().await.unwrap();
    assert_eq!(durable.iter().map(|d| d.epoch).collect::<Vec<_>>(), vec![10, 11]);
    let hour11: Vec<_> =
        collect_files(dir.path()).into_iter().filter(|p| p.to_str().unwrap().contains("hour=11")).collect();
    assert_eq!(hour11.len(), 1);
    assert!(hour11[0].to_str().unwrap().ends_with(&format!("{:020}-{:020}.parquet", 10, 11)));
}

#[tokio::test]
async fn dead_letters_are_gzip_ndjson_with_reason_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sink(dir.path(), ArchiveConfig::default()).await;
    let out = decode(&["not json".to_string(), record(9, 1)], 5);
    let source: Arc<str> = "/in/sample.json".into();
    assert!(s.write_dead_letters(&source, 0, out.last_offset, &out.dead_letters).await.unwrap().is_empty());
    let durable = s.close().await.unwrap();
    assert_eq!(durable, vec![Durable { table: "unknown".into(), partition: 0, epoch: 6, rows: 1, dead_letters: true }]);
    let files = collect_files(dir.path());
    assert_eq!(files.len(), 1);
    assert!(files[0].starts_with("_deadletter/table=unknown"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(dir.path().join(&files[0])).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(line["reason"], "malformed_json");
    assert_eq!(line["position"]["offset"], 5);
    assert_eq!(line["source"], "/in/sample.json");
    assert_eq!(line["raw"], "not json");
}
