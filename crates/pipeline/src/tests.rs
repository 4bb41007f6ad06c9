use std::sync::Arc;

use defender_sinks::{ArchiveConfig, store};
use defender_sources::FileSource;

use super::*;

fn record(report: i64) -> String {
    format!(
        r#"{{"time":"2026-11-20T10:59:00Z","category":"AdvancedHunting-DeviceInfo","properties":{{"Timestamp":"2026-11-20T10:30:00.1234567Z","ReportId":{report}}}}}"#
    )
}

fn write_inputs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let a = dir.join("a.json");
    let b = dir.join("b.json");
    std::fs::write(&a, format!("{}\n{}\nnot json\n", record(1), record(2))).unwrap();
    std::fs::write(&b, format!("{{\"records\":[{},{}]}}\n", record(3), record(4))).unwrap();
    vec![a, b]
}

async fn run_files(
    inputs: Vec<std::path::PathBuf>,
    archive_dir: &std::path::Path,
    flush: FlushRule,
) -> Result<RunReport, PipelineError> {
    let archive = ArchiveSink::new(store::open(archive_dir.to_str().unwrap()).unwrap(), ArchiveConfig::default());
    let source = FileSource::new(inputs);
    let options = PipelineOptions { flush, ..PipelineOptions::default() };
    run(Arc::new(Catalog::embedded()), move |tx, budget| source.run(tx, budget), archive, None, options, |_| {}).await
}

#[tokio::test]
async fn every_record_is_archived_or_dead_lettered_and_every_position_committed() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = write_inputs(dir.path());
    let report = run_files(inputs, &dir.path().join("archive"), FlushRule { max_rows: 1, ..FlushRule::default() })
        .await
        .unwrap();
    let info = &report.accounting.tables["DeviceInfo"];
    assert_eq!((info.records_in, info.decoded, info.written_archive), (4, 4, 4));
    assert!(info.parquet_bytes > 0);
    assert_eq!(report.accounting.tables["unknown"].dead_lettered["malformed_json"], 1);
    assert_eq!(report.accounting.unbalanced(), vec![]);
    assert_eq!(report.committed, BTreeMap::from([(0, 3), (1, 1)]), "last line of each file");
    assert_eq!(report.files.iter().filter(|f| f.contains("_deadletter/")).count(), 1);
    assert_eq!(report.files.iter().filter(|f| f.ends_with(".parquet")).count(), 2, "one per file and hour");
}

#[tokio::test]
async fn commits_nothing_when_the_archive_cannot_store() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = write_inputs(dir.path());
    let root = dir.path().join("archive");
    std::fs::create_dir_all(&root).unwrap();
    // A file where the table's directory must go: every put of that table fails.
    std::fs::write(root.join("table=DeviceInfo"), "in the way").unwrap();
    let err = run_files(inputs, &root, FlushRule::default()).await.unwrap_err();
    assert!(matches!(err, PipelineError::Archive(_)), "{err}");
    assert!(err.to_string().starts_with("cannot store table=DeviceInfo/date=2026-11-20/hour=10/"), "{err}");
}
