use std::sync::Arc;

use defender_sinks::{ArchiveConfig, store};
use defender_sources::{FileSource, SourceEvent, SourceIo};

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
    run(Arc::new(Catalog::embedded()), move |io| source.run(io), archive, None, options, |_| {}).await
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
    assert_eq!(report.dead_letter_files, 1);
    assert_eq!(report.parquet_files, 2, "one per file and hour");
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

const DCR: &str = "dcr-00000000000000000000000000000002";
const STREAM: &str = "Custom-DeviceInfo_CL";

/// The strict Logs Ingestion server with the DeviceInfo stream (any columns), and a sink that
/// sends DeviceInfo there, retrying at most every second.
async fn sentinel_server(
    catalog: &Arc<Catalog>,
) -> (defender_ingestion_server::TestServer, defender_sinks::sentinel::SentinelSink) {
    use defender_ingestion_server::{ServerConfig, TestServer};
    use defender_sinks::sentinel::{AuthConfig, SentinelConfig, SentinelSink};
    let streams = BTreeMap::from([(DCR.to_string(), BTreeMap::from([(STREAM.to_string(), vec![])]))]);
    let mut server_config = ServerConfig::new(streams, "t", "c", "s");
    server_config.reject_unknown_columns = false;
    let server = TestServer::start(server_config).await.unwrap();
    let mut auth = AuthConfig::client_secret("t", "c", "s");
    if let AuthConfig::ClientSecret { authority_host, .. } = &mut auth {
        *authority_host = server.authority.clone();
    }
    let mut config = SentinelConfig::new(server.endpoint.clone(), auth).with_table("DeviceInfo", DCR, None);
    config.extra_root_pem = Some(server.ca_pem.clone());
    config.retry.max = Duration::from_secs(1);
    let sink = SentinelSink::new(config, catalog.clone()).unwrap();
    (server, sink)
}

/// `files` generated DeviceInfo inputs of about `bytes` each (bare records), and their size.
fn device_info_inputs(
    catalog: &Catalog,
    dir: &std::path::Path,
    files: u64,
    bytes: u64,
) -> (Vec<std::path::PathBuf>, u64) {
    use defender_gen::{GenOptions, Target};
    let (mut inputs, mut total) = (Vec::new(), 0);
    for i in 0..files {
        let path = dir.join(format!("in-{i:02}.json"));
        let options = GenOptions {
            seed: i,
            tables: vec!["DeviceInfo".into()],
            target: Target::Bytes(bytes),
            envelope: false,
            ..GenOptions::default()
        };
        let mut f = std::fs::File::create(&path).unwrap();
        defender_gen::generate(catalog, &options, &mut f).unwrap();
        total += std::fs::metadata(&path).unwrap().len();
        inputs.push(path);
    }
    (inputs, total)
}

/// DeviceInfo to Sentinel (and, as every table, to the archive).
fn device_info_to_sentinel(catalog: &Catalog) -> Arc<Policy> {
    use crate::policy::TableSettings;
    let settings = BTreeMap::from([(
        "DeviceInfo".to_string(),
        TableSettings { sentinel: Some(true), ..TableSettings::default() },
    )]);
    Arc::new(Policy::new(catalog, &settings).unwrap())
}

/// A long 429 storm on the Sentinel path stops the source instead of buffering: while the sink
/// waits, the bytes read stay within the byte budgets, one chunk and the queued epochs; once the
/// storm ends, everything lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_stops_reading_instead_of_buffering() {
    use std::sync::atomic::{AtomicU64, Ordering};

    use defender_ingestion_server::Fault;

    let catalog = Arc::new(Catalog::embedded());
    let (server, sentinel) = sentinel_server(&catalog).await;
    for _ in 0..6 {
        server.inject(Fault::Status { status: 429, retry_after: Some(1) });
    }
    let dir = tempfile::tempdir().unwrap();
    let (inputs, total) = device_info_inputs(&catalog, dir.path(), 24, 400_000);
    let archive =
        ArchiveSink::new(store::open(dir.path().join("archive").to_str().unwrap()).unwrap(), ArchiveConfig::default());
    let budget_bytes = 256 << 10;
    let options = PipelineOptions {
        flush: FlushRule { max_rows: 100, ..FlushRule::default() },
        policy: device_info_to_sentinel(&catalog),
        budget_bytes,
        tick: Duration::from_millis(100),
        ..PipelineOptions::default()
    };

    // Count what the source hands over, through a one-slot forwarder.
    let read = Arc::new(AtomicU64::new(0));
    let counter = read.clone();
    let source = FileSource::new(inputs);
    let pipeline = tokio::spawn(run(
        catalog.clone(),
        move |io: SourceIo| {
            let (inner_tx, mut inner_rx) = mpsc::channel::<SourceEvent>(1);
            let tx = io.events.clone();
            tokio::spawn(async move {
                while let Some(event) = inner_rx.recv().await {
                    if let SourceEvent::Chunk(c) = &event {
                        counter.fetch_add(c.messages.iter().map(|m| m.1.len() as u64 + 1).sum(), Ordering::SeqCst);
                    }
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            });
            source.run(SourceIo { events: inner_tx, ..io })
        },
        archive,
        Some(SentinelPath::Live(sentinel)),
        options,
        |_| {},
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = read.load(Ordering::SeqCst);
    // Both budgets + the chunk being read + one in the forwarder + decoded epochs queued (6 ×
    // 100 rows of ~3 KB): a few MB at most, against ~9.6 MB of input.
    eprintln!("read during the storm: {during} of {total}");
    assert!(during < 5 << 20, "read {during} of {total} bytes while the sink was throttled");
    assert!(server.requests().iter().all(|r| r.status == 429), "still in the storm after 3 s");
    let report = pipeline.await.unwrap().unwrap();
    assert_eq!(read.load(Ordering::SeqCst), total, "everything read once the storm passed");
    let info = &report.accounting.tables["DeviceInfo"];
    assert_eq!(info.sent_sentinel, info.decoded);
    assert_eq!(server.accepted(DCR, STREAM).len() as u64, info.decoded);
    server.stop().await;
}

/// A Sentinel outage does not stop the archive: while every call is answered 503, the archive
/// goes on storing files (within the in-flight budget), and nothing is committed that Sentinel
/// has not accepted. Once the service is back, everything lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_outage_does_not_stop_the_archive_and_commits_nothing_it_has_not_accepted() {
    use defender_ingestion_server::Fault;

    let catalog = Arc::new(Catalog::embedded());
    let (server, sentinel) = sentinel_server(&catalog).await;
    for _ in 0..100_000 {
        server.inject(Fault::Status { status: 503, retry_after: None });
    }
    let dir = tempfile::tempdir().unwrap();
    let (inputs, _) = device_info_inputs(&catalog, dir.path(), 4, 300_000);
    let archive_dir = dir.path().join("archive");
    let config = ArchiveConfig { roll_age: Duration::from_millis(200), ..ArchiveConfig::default() };
    let archive = ArchiveSink::new(store::open(archive_dir.to_str().unwrap()).unwrap(), config);
    let options = PipelineOptions {
        flush: FlushRule { max_rows: 100, ..FlushRule::default() },
        policy: device_info_to_sentinel(&catalog),
        budget_bytes: 16 << 20,
        tick: Duration::from_millis(100),
        ..PipelineOptions::default()
    };
    let positions = Arc::new(std::sync::Mutex::new(None));
    let seen = positions.clone();
    let source = FileSource::new(inputs);
    let pipeline = tokio::spawn(run(
        catalog.clone(),
        move |io: SourceIo| {
            *seen.lock().unwrap() = Some(io.positions.clone());
            source.run(io)
        },
        archive,
        Some(SentinelPath::Live(sentinel)),
        options,
        |_| {},
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let stored = loop {
        // Both destinations at work: files stored, and Sentinel called (and refused).
        let stored = files_under(&archive_dir, ".parquet").len();
        if stored >= 2 && !server.requests().is_empty() {
            break stored;
        }
        assert!(tokio::time::Instant::now() < deadline, "the archive stored nothing during the outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert!(!statuses.is_empty() && statuses.iter().all(|s| *s == 503), "the outage lasted: {statuses:?}");
    let durable = positions.lock().unwrap().as_ref().unwrap().durable_all();
    assert!(durable.is_empty(), "{stored} files stored, and nothing Sentinel refused is committable: {durable:?}");
    server.clear_faults();
    let report = pipeline.await.unwrap().unwrap();
    let info = &report.accounting.tables["DeviceInfo"];
    assert_eq!((info.sent_sentinel, info.written_archive), (info.decoded, info.decoded));
    assert_eq!(server.accepted(DCR, STREAM).len() as u64, info.decoded);
    assert!(report.accounting.unbalanced().is_empty());
    assert_eq!(report.committed.len(), 4, "every file's last line committed: {:?}", report.committed);
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_partition_is_made_durable_before_the_source_lets_it_go() {
    use defender_sources::{BytePermit, Chunk};
    let dir = tempfile::tempdir().unwrap();
    let archive =
        ArchiveSink::new(store::open(dir.path().join("archive").to_str().unwrap()).unwrap(), ArchiveConfig::default());
    let seen = Arc::new(std::sync::Mutex::new(None));
    let seen_in_source = seen.clone();
    let source = move |io: SourceIo| async move {
        let messages = (10..13).map(|o| (o, bytes::Bytes::from(record(o)))).collect();
        let chunk = Chunk { source: "hub/7".into(), partition: 7, messages, permit: BytePermit::none() };
        io.events.send(SourceEvent::Chunk(chunk)).await.unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        io.events.send(SourceEvent::Revoked { partitions: vec![7], done: done_tx }).await.unwrap();
        // Wait as the Kafka consumer thread does, then read what may be committed.
        let durable = io.positions.clone();
        let got = tokio::task::spawn_blocking(move || {
            done_rx.recv_timeout(Duration::from_secs(10)).ok().map(|()| durable.durable(7))
        })
        .await
        .unwrap();
        *seen_in_source.lock().unwrap() = got;
        // Read again after the commit, as a new owner would: positions repeat without an error.
        let messages = vec![(13, bytes::Bytes::from(record(13)))];
        let chunk = Chunk { source: "hub/7".into(), partition: 7, messages, permit: BytePermit::none() };
        io.events.send(SourceEvent::Chunk(chunk)).await.unwrap();
        Ok(())
    };
    let options = PipelineOptions { flush: FlushRule { max_rows: 1000, ..FlushRule::default() }, ..Default::default() };
    let report = run(Arc::new(Catalog::embedded()), source, archive, None, options, |_| {}).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), Some(Some(12)), "the revoke waited until offsets 10..=12 were durable");
    assert_eq!(report.committed.get(&7), Some(&13));
    let t = report.accounting.totals();
    assert_eq!((t.records_in, t.written_archive, t.filtered, t.dead_lettered_total()), (4, 4, 0, 0));
    assert!(report.accounting.unbalanced().is_empty());
}

/// Runs `inputs` with `settings` into an archive and a dry-run Sentinel path under `dir`.
async fn run_dry(
    dir: &std::path::Path,
    inputs: Vec<std::path::PathBuf>,
    settings: BTreeMap<String, crate::policy::TableSettings>,
) -> RunReport {
    use defender_sinks::sentinel::{DryRunSink, PackMode};
    let catalog = Arc::new(Catalog::embedded());
    let policy = Arc::new(Policy::new(&catalog, &settings).unwrap());
    let archive =
        ArchiveSink::new(store::open(dir.join("archive").to_str().unwrap()).unwrap(), ArchiveConfig::default());
    let dry = DryRunSink::new(
        store::open(dir.join("sentinel").to_str().unwrap()).unwrap(),
        catalog.clone(),
        PackMode::default(),
    );
    let options = PipelineOptions { policy, ..PipelineOptions::default() };
    let source = FileSource::new(inputs);
    run(catalog, move |io| source.run(io), archive, Some(SentinelPath::DryRun(dry)), options, |_| {}).await.unwrap()
}

/// Every file under `dir` whose name ends with `suffix`, recursively.
fn files_under(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn gunzip(path: &std::path::Path) -> String {
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap()),
        &mut text,
    )
    .unwrap();
    text
}

/// The poison records that once stopped the run: a bare `DeviceInfo` category beside real
/// DeviceInfo records (same archive key and schema before), and a 300-character category (a
/// path segment too long for a local disk). The run ends, each lands apart, all accounted.
#[tokio::test]
async fn records_with_poison_categories_never_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let bare = record(5).replace("AdvancedHunting-DeviceInfo", "DeviceInfo");
    let long = record(6).replace("AdvancedHunting-DeviceInfo", &format!("AdvancedHunting-{}", "L".repeat(300)));
    let case = record(7).replace("AdvancedHunting-DeviceInfo", "AdvancedHunting-DEVICEINFO");
    let input = dir.path().join("poison.json");
    std::fs::write(&input, [record(1), bare, record(2), long, case, record(3)].join("\n")).unwrap();
    let report = run_files(vec![input], &dir.path().join("archive"), FlushRule::default()).await.unwrap();
    assert_eq!(report.accounting.unbalanced(), vec![]);
    let info = &report.accounting.tables["DeviceInfo"];
    assert_eq!((info.records_in, info.written_archive), (3, 3));
    let unknown: Vec<_> = report.accounting.tables.iter().filter(|(_, s)| s.unknown_table).collect();
    assert_eq!(unknown.len(), 3, "{unknown:?}");
    assert!(unknown.iter().all(|(n, s)| n.starts_with("_Other-") && n.len() <= 64 && s.written_archive == 1));
    assert_eq!(report.accounting.totals().written_archive, 6);
    assert_eq!(files_under(&dir.path().join("archive"), ".parquet").len(), 4);
}

/// A row no Logs Ingestion call can carry (over 1 MiB of JSON even alone) is dead-lettered with
/// its reason before its epoch is committed; its neighbours are sent; the archive keeps it.
#[tokio::test]
async fn a_row_sentinel_cannot_carry_is_dead_lettered_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(60_000);
    // 20 string columns of 60 KB: each under the 64 KB field limit, 1.2 MB together.
    let fields: Vec<String> = [
        "DeviceId",
        "DeviceName",
        "ClientVersion",
        "PublicIP",
        "OSArchitecture",
        "OSPlatform",
        "JoinType",
        "AadDeviceId",
        "RegistryDeviceTag",
        "OSVersion",
        "OnboardingStatus",
        "DeviceCategory",
        "DeviceType",
        "DeviceSubtype",
        "Model",
        "Vendor",
        "OSDistribution",
        "OSVersionInfo",
        "SensorHealthState",
        "ExposureLevel",
    ]
    .iter()
    .map(|f| format!(r#""{f}":"{big}""#))
    .collect();
    let huge = format!(
        r#"{{"time":"2026-11-20T10:59:00Z","category":"AdvancedHunting-DeviceInfo","properties":{{"Timestamp":"2026-11-20T10:30:00Z",{}}}}}"#,
        fields.join(",")
    );
    let input = dir.path().join("in.json");
    std::fs::write(&input, [record(1), huge, record(2)].join("\n")).unwrap();
    let settings = BTreeMap::from([(
        "DeviceInfo".to_string(),
        crate::policy::TableSettings { sentinel: Some(true), ..Default::default() },
    )]);
    let report = run_dry(dir.path(), vec![input], settings).await;
    let info = &report.accounting.tables["DeviceInfo"];
    assert_eq!((info.records_in, info.written_archive, info.sent_sentinel, info.sentinel_rejected), (3, 3, 2, 1));
    assert_eq!(report.accounting.unbalanced(), vec![]);
    assert_eq!(report.committed.get(&0), Some(&3), "line numbers count from 1");
    let letters = files_under(&dir.path().join("archive/_deadletter"), ".ndjson.gz");
    assert_eq!(letters.len(), 1, "{letters:?}");
    let text = gunzip(&letters[0]);
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len() as u64, info.sentinel_rejected, "the counter and the dead letters agree");
    assert_eq!(lines[0]["reason"], "sentinel_rejected");
    assert!(lines[0]["detail"].as_str().unwrap().contains("limit"), "{}", lines[0]["detail"]);
    assert_eq!(
        (lines[0]["position"]["offset"].as_i64(), lines[0]["position"]["last_offset"].as_i64()),
        (Some(1), Some(3))
    );
    let row: serde_json::Value = serde_json::from_str(lines[0]["raw"].as_str().unwrap()).unwrap();
    assert_eq!(row["RecordId_CF"].as_str().unwrap().len(), 32, "the row as the API would have received it");
}

/// Two events that look the same after the Sentinel filter's `project` keep distinct ids, the
/// same as the archive's `_RecordId` for the same record, and the same on a replay.
#[tokio::test]
async fn record_ids_survive_projection_and_match_the_archive() {
    let settings = || {
        BTreeMap::from([(
            "DeviceInfo".to_string(),
            crate::policy::TableSettings {
                sentinel: Some(true),
                sentinel_filter: Some(("project DeviceName".to_string(), 1, 1)),
                ..Default::default()
            },
        )])
    };
    let sent_ids = |dir: &std::path::Path| -> Vec<String> {
        let mut ids: Vec<String> = files_under(&dir.join("sentinel"), ".json.gz")
            .iter()
            .flat_map(|f| serde_json::from_str::<Vec<serde_json::Value>>(&gunzip(f)).unwrap())
            .map(|row| {
                assert_eq!(row.as_object().unwrap().len(), 2, "TimeGenerated and the id only: {row}");
                row["RecordId_CF"].as_str().unwrap().to_string()
            })
            .collect();
        ids.sort();
        ids
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for d in [&a, &b] {
        let input = d.path().join("in.json");
        std::fs::write(&input, format!("{}\n{}\n", record(1), record(2))).unwrap();
        let report = run_dry(d.path(), vec![input], settings()).await;
        assert_eq!(report.accounting.tables["DeviceInfo"].sent_sentinel, 2);
    }
    let ids = sent_ids(a.path());
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1], "distinct events, distinct ids, whatever the projection");
    assert_eq!(ids, sent_ids(b.path()), "the same input gives the same ids");
    let parquet = files_under(&a.path().join("archive"), ".parquet");
    let file = std::fs::File::open(&parquet[0]).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024).unwrap();
    let mut archived: Vec<String> = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = batch.column_by_name("_RecordId").expect("the archive stores _RecordId");
        let col = col.as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
        archived.extend(col.iter().map(|v| v.unwrap().to_string()));
    }
    archived.sort();
    assert_eq!(archived, ids, "the Parquet copy and Sentinel join on the id");
}

#[test]
fn stages_look_for_aged_work_every_tick_or_twice_per_shorter_age() {
    use std::time::Duration;
    let tick = Duration::from_secs(1);
    assert_eq!(super::timer_period(Duration::from_secs(300), tick), tick);
    assert_eq!(super::timer_period(Duration::from_secs(1), tick), Duration::from_millis(500));
    assert_eq!(super::timer_period(Duration::from_millis(250), tick), Duration::from_millis(125));
    assert_eq!(super::timer_period(Duration::ZERO, tick), Duration::from_millis(10));
    assert_eq!(super::timer_period(Duration::from_secs(1), Duration::from_millis(5)), Duration::from_millis(5));
}
