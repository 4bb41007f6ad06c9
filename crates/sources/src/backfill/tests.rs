use std::collections::BTreeMap;

use object_store::local::LocalFileSystem;
use tokio::sync::mpsc;

use super::*;

fn write(dir: &std::path::Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Runs the source over `dir` (the pipeline's part played here: every offset sent is durable
/// at once), then saves as the CLI does; returns (name, offset, line) of every message.
async fn backfill(
    dir: &std::path::Path,
    archive: &std::path::Path,
    selection: &Selection,
) -> Vec<(String, i64, String)> {
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap());
    let archive: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(archive).unwrap());
    let inputs = list(Kind::Storage, store.as_ref(), &Path::default(), selection).await.unwrap();
    let job = Job::open(Kind::Storage, "test", archive, &Path::default()).await.unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    let (io, _stop) = SourceIo::new(tx, crate::ByteBudget::new(1 << 20));
    // The pipeline's part: what it received is durable (else the source waits for it).
    let positions = io.positions.clone();
    let source = BackfillSource::new(Kind::Storage, store, inputs, job.clone()).with_parallel(2);
    let reading = tokio::spawn(source.run(io));
    let (mut names, mut got, mut durable) = (BTreeMap::new(), Vec::new(), BTreeMap::new());
    while let Some(event) = rx.recv().await {
        match event {
            SourceEvent::Assigned { source, partition, .. } => {
                names.insert(partition, source.to_string());
            }
            SourceEvent::Chunk(c) => {
                for (o, b) in c.messages {
                    got.push((names[&c.partition].clone(), o, String::from_utf8(b.to_vec()).unwrap()));
                    durable.insert(c.partition, o);
                    positions.set_durable(c.partition, o);
                }
            }
            _ => {}
        }
    }
    reading.await.unwrap().unwrap();
    job.save(&durable).await.unwrap();
    got.sort();
    got
}

#[tokio::test]
async fn storage_blobs_resume_after_their_durable_line_and_take_only_complete_lines() {
    let (dir, archive) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let blob = "insights-logs-advancedhunting-deviceinfo/tenantId=t/y=2024/m=05/d=01/h=10/m=00/PT1H.json";
    let other = "insights-logs-advancedhunting-deviceevents/tenantId=t/y=2024/m=05/d=01/h=11/m=00/PT1H.json";
    write(dir.path(), blob, "{\"a\":1}\r\n{\"a\":2}\r\n{\"a\":");
    write(dir.path(), other, "{\"e\":1}\r\n");
    let all = Selection::default();
    let first = backfill(dir.path(), archive.path(), &all).await;
    let deviceinfo: Vec<_> = first.iter().filter(|m| m.0 == blob).map(|m| (m.1, m.2.as_str())).collect();
    assert_eq!(deviceinfo, vec![(0, "{\"a\":1}"), (9, "{\"a\":2}")]);
    assert_eq!(first.len(), 3);

    // The blob grows: the rest of the half-written line, and one more.
    write(dir.path(), blob, "{\"a\":1}\r\n{\"a\":2}\r\n{\"a\":3}\r\n{\"a\":4}\r\n");
    let second = backfill(dir.path(), archive.path(), &all).await;
    let got: Vec<_> = second.iter().map(|m| (m.0.as_str(), m.1, m.2.as_str())).collect();
    assert_eq!(got, vec![(blob, 18, "{\"a\":3}"), (blob, 27, "{\"a\":4}")]);

    // Selection by table and by hour.
    let (fresh, _) = (tempfile::tempdir().unwrap(), ());
    let tables = Selection { tables: vec!["DeviceEvents".into()], ..Default::default() };
    assert_eq!(backfill(dir.path(), fresh.path(), &tables).await.len(), 1);
    let fresh = tempfile::tempdir().unwrap();
    let t = |h| NaiveDate::from_ymd_opt(2024, 5, 1).unwrap().and_hms_opt(h, 30, 0).unwrap().and_utc();
    let window = Selection { from: Some(t(10)), to: Some(t(10)), ..Default::default() };
    let got = backfill(dir.path(), fresh.path(), &window).await;
    assert!(got.iter().all(|m| m.0 == blob) && got.len() == 4, "{got:?}");
}

#[test]
fn capture_paths_carry_their_time() {
    let rel: Vec<String> = "ns/hub/0/2024/05/01/10/05/00.avro".split('/').map(String::from).collect();
    assert_eq!(capture_time(&rel).unwrap().to_rfc3339(), "2024-05-01T10:05:00+00:00");
    let rel: Vec<String> = "x/y=2024/m=05/d=01/h=23/m=00/PT1H.json".split('/').map(String::from).collect();
    assert_eq!(storage_time(&rel).unwrap().to_rfc3339(), "2024-05-01T23:00:00+00:00");
}

#[tokio::test]
async fn a_polling_source_reads_what_grew_as_the_same_partition_and_stops_when_asked() {
    let (dir, archive) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let blob = "insights-logs-advancedhunting-deviceinfo/tenantId=t/y=2024/m=05/d=01/h=10/m=00/PT1H.json";
    write(dir.path(), blob, "{\"a\":1}\r\n{\"a\":");
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let archive: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(archive.path()).unwrap());
    let all = Selection::default();
    let inputs = list(Kind::Storage, store.as_ref(), &Path::default(), &all).await.unwrap();
    let job = Job::open(Kind::Storage, "test", archive, &Path::default()).await.unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    let (io, stop) = SourceIo::new(tx, crate::ByteBudget::new(1 << 20));
    let positions = io.positions.clone();
    let source = BackfillSource::new(Kind::Storage, store, inputs, job.clone()).polling(
        Path::default(),
        all,
        Duration::from_millis(20),
    );
    let reading = tokio::spawn(source.run(io));
    let (mut got, mut assigned) = (Vec::new(), Vec::new());
    receive(&mut rx, &positions, &mut got, &mut assigned, 1).await;
    // The half line is completed and a line added; a new blob appears.
    // Replaced at once (a listing never sees it half written, which would be one more pass).
    let grown = dir.path().join("grown.tmp");
    std::fs::write(&grown, "{\"a\":1}\r\n{\"a\":2}\r\n{\"a\":3}\r\n").unwrap();
    std::fs::rename(&grown, dir.path().join(blob)).unwrap();
    receive(&mut rx, &positions, &mut got, &mut assigned, 3).await;
    let other = "insights-logs-advancedhunting-deviceinfo/tenantId=t/y=2024/m=05/d=01/h=11/m=00/PT1H.json";
    let new = dir.path().join("new.tmp");
    std::fs::write(&new, "{\"b\":1}\r\n").unwrap();
    std::fs::create_dir_all(dir.path().join(other).parent().unwrap()).unwrap();
    std::fs::rename(&new, dir.path().join(other)).unwrap();
    receive(&mut rx, &positions, &mut got, &mut assigned, 4).await;
    let lines: Vec<_> = got.iter().map(|(p, o, l)| (*p, *o, l.as_str())).collect();
    assert_eq!(lines, [(0, 0, "{\"a\":1}"), (0, 9, "{\"a\":2}"), (0, 18, "{\"a\":3}"), (1, 0, "{\"b\":1}")]);
    // The grown blob was assigned again as partition 0 after its durable line; the unchanged
    // one was not read again when the new blob was.
    assert_eq!(assigned, [(0, None), (0, Some(0)), (1, None)]);
    stop.send(true).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), reading).await.expect("stops when asked");
    ended.unwrap().unwrap();
}

/// Receives events until `got` holds `n` lines (each made durable at once, the pipeline's
/// part), recording the partitions assigned.
async fn receive(
    rx: &mut mpsc::Receiver<SourceEvent>,
    positions: &crate::Positions,
    got: &mut Vec<(u32, i64, String)>,
    assigned: &mut Vec<(u32, Option<i64>)>,
    n: usize,
) {
    let wait = async {
        while got.len() < n {
            match rx.recv().await.expect("the polling source goes on") {
                SourceEvent::Assigned { partition, committed, .. } => assigned.push((partition, committed)),
                SourceEvent::Chunk(c) => {
                    for (o, b) in c.messages {
                        got.push((c.partition, o, String::from_utf8(b.to_vec()).unwrap()));
                        positions.set_durable(c.partition, o);
                    }
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait).await.expect("lines within 30 s");
}
