//! Backfill throughput (issue 12): the same records read from Event Hubs Capture Avro files
//! (codec deflate) and from storage-export `PT1H.json` blobs, each against the files source
//! on the same bytes (the baseline, measured in the same run). Every run decodes and writes
//! the Parquet archive (zstd) to local disk, as a backfill does; no Sentinel.
//!
//! Corpus: 100 MB of generated Event Hubs messages (DeviceProcessEvents + DeviceNetworkEvents)
//! written as NDJSON (4 files) and as 16 Capture files of deflate blocks of 500 events each
//! (Capture's EventData schema, written by a minimal Avro writer below); and 100 MB of bare
//! records as NDJSON and as 16 CRLF `PT1H.json` blobs. MB/s is of decoded input (message or
//! line bytes), so the Capture row pays for reading the container and inflating.
//!
//! Run: `cargo bench -p defender-benches --bench backfill` (a few minutes; prints a table).

use std::{io::Write, path::Path, sync::Arc, time::Instant};

use defender_core::Catalog;
use defender_gen::{GenOptions, Target};
use defender_pipeline::{PipelineOptions, Policy};
use defender_sinks::{ArchiveConfig, ArchiveSink, store};
use defender_sources::{
    FileSource,
    backfill::{self, BackfillSource, Job, Kind, Selection},
};

const TABLES: [&str; 2] = ["DeviceProcessEvents", "DeviceNetworkEvents"];
const FILES: usize = 16;
const EVENTS_PER_BLOCK: usize = 500;

const SCHEMA: &str = r#"{"type":"record","name":"EventData","namespace":"Microsoft.ServiceBus.Messaging","fields":[{"name":"SequenceNumber","type":"long"},{"name":"Offset","type":"string"},{"name":"EnqueuedTimeUtc","type":"string"},{"name":"SystemProperties","type":{"type":"map","values":["long","double","string","bytes"]}},{"name":"Properties","type":{"type":"map","values":["long","double","string","bytes","null"]}},{"name":"Body","type":["null","bytes"]}]}"#;

fn long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// One Capture file of `bodies` (deflate blocks of `EVENTS_PER_BLOCK`), sequence numbers from `seq`.
fn capture_file(bodies: &[&[u8]], seq: i64) -> Vec<u8> {
    const SYNC: [u8; 16] = *b"defender-ingest!";
    let mut f = b"Obj\x01".to_vec();
    long(&mut f, 2);
    bytes(&mut f, b"avro.schema");
    bytes(&mut f, SCHEMA.as_bytes());
    bytes(&mut f, b"avro.codec");
    bytes(&mut f, b"deflate");
    long(&mut f, 0);
    f.extend_from_slice(&SYNC);
    for (b, block) in bodies.chunks(EVENTS_PER_BLOCK).enumerate() {
        let mut plain = Vec::new();
        for (i, body) in block.iter().enumerate() {
            let n = seq + (b * EVENTS_PER_BLOCK + i) as i64;
            long(&mut plain, n);
            bytes(&mut plain, (n * 1000).to_string().as_bytes());
            bytes(&mut plain, b"12/1/2026 10:00:00 AM");
            long(&mut plain, 0);
            long(&mut plain, 0);
            long(&mut plain, 1);
            bytes(&mut plain, body);
        }
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&plain).unwrap();
        let data = e.finish().unwrap();
        long(&mut f, block.len() as i64);
        bytes(&mut f, &data);
        f.extend_from_slice(&SYNC);
    }
    f
}

/// Generates 100 MB (`envelope`: messages, else bare records) as NDJSON under `dir/files` and
/// as history under `dir/history`; returns the bytes of lines.
fn corpus(dir: &Path, catalog: &Catalog, envelope: bool) -> u64 {
    let options = GenOptions {
        seed: 12,
        tables: TABLES.iter().map(|t| t.to_string()).collect(),
        target: Target::Bytes(100_000_000),
        envelope,
        ..GenOptions::default()
    };
    let mut all = Vec::new();
    defender_gen::generate(catalog, &options, &mut all).unwrap();
    let lines: Vec<&[u8]> = all.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let bytes = lines.iter().map(|l| l.len() as u64).sum();
    std::fs::create_dir_all(dir.join("files")).unwrap();
    for (i, chunk) in lines.chunks(lines.len().div_ceil(4)).enumerate() {
        std::fs::write(dir.join(format!("files/{i}.json")), chunk.join(&b'\n')).unwrap();
    }
    for (i, chunk) in lines.chunks(lines.len().div_ceil(FILES)).enumerate() {
        let (path, data) = if envelope {
            let path = format!("history/ns/hub/{}/2026/12/01/{:02}/00/00.avro", i % 4, i / 4);
            (path, capture_file(chunk, (i * chunk.len()) as i64))
        } else {
            let table = if i % 2 == 0 { "deviceprocessevents" } else { "devicenetworkevents" };
            let path = format!(
                "history/insights-logs-advancedhunting-{table}/tenantId=t/y=2026/m=12/d=01/h={i:02}/m=00/PT1H.json"
            );
            let mut data = Vec::new();
            for l in chunk {
                data.extend_from_slice(l);
                data.extend_from_slice(b"\r\n");
            }
            (path, data)
        };
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    bytes
}

fn options(catalog: &Catalog, workers: usize) -> PipelineOptions {
    PipelineOptions {
        policy: Arc::new(Policy::new(catalog, &Default::default()).unwrap()),
        cpu_workers: workers,
        ..PipelineOptions::default()
    }
}

async fn files(catalog: &Arc<Catalog>, dir: &Path, archive: &Path, workers: usize) -> f64 {
    let _ = std::fs::remove_dir_all(archive);
    let mut inputs: Vec<_> = std::fs::read_dir(dir.join("files")).unwrap().map(|e| e.unwrap().path()).collect();
    inputs.sort();
    let source = FileSource::new(inputs).with_parallel(workers);
    let sink = ArchiveSink::new(store::open(archive.to_str().unwrap()).unwrap(), ArchiveConfig::default());
    let started = Instant::now();
    let opts = options(catalog, workers);
    defender_pipeline::run(catalog.clone(), move |io| source.run(io), sink, None, opts, |_| {}).await.unwrap();
    started.elapsed().as_secs_f64()
}

async fn history(catalog: &Arc<Catalog>, kind: Kind, dir: &Path, archive: &Path, workers: usize) -> f64 {
    let _ = std::fs::remove_dir_all(archive);
    let input = store::open(dir.join("history").to_str().unwrap()).unwrap();
    let started = Instant::now();
    let inputs = backfill::list(kind, input.store.as_ref(), &input.prefix, &Selection::default()).await.unwrap();
    let job = Job::ephemeral(kind, &input.display).await.unwrap();
    let source = BackfillSource::new(kind, input.store.clone(), inputs, job).with_parallel(workers);
    let sink = ArchiveSink::new(store::open(archive.to_str().unwrap()).unwrap(), ArchiveConfig::default());
    let opts = options(catalog, workers);
    defender_pipeline::run(catalog.clone(), move |io| source.run(io), sink, None, opts, |_| {}).await.unwrap();
    started.elapsed().as_secs_f64()
}

/// One row of the table: a run of the pipeline, returning its wall time.
type Run<'a> = Box<dyn Fn() -> f64 + 'a>;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks
    }
    let catalog = Arc::new(Catalog::embedded());
    let dir = tempfile::tempdir().unwrap();
    let (messages, bare) = (dir.path().join("messages"), dir.path().join("bare"));
    let message_bytes = corpus(&messages, &catalog, true);
    let bare_bytes = corpus(&bare, &catalog, false);
    let archive = dir.path().join("archive");
    println!(
        "input: {:.0} MB of messages, {:.0} MB of bare records ({})",
        message_bytes as f64 / 1e6,
        bare_bytes as f64 / 1e6,
        TABLES.join(", ")
    );
    println!(
        "{:<8} {:<52} {:>8} {:>8} {:>6}",
        "workers", "run (best of 2), archive to local disk", "seconds", "MB/s", "ratio"
    );
    for workers in [1, 2] {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap();
        let best = |f: &dyn Fn() -> f64| (0..2).map(|_| f()).fold(f64::MAX, f64::min);
        let rows: [(&str, u64, Run); 4] = [
            (
                "files source, messages (baseline)",
                message_bytes,
                Box::new(|| runtime.block_on(files(&catalog, &messages, &archive, workers))),
            ),
            (
                "Capture Avro, deflate",
                message_bytes,
                Box::new(|| runtime.block_on(history(&catalog, Kind::Capture, &messages, &archive, workers))),
            ),
            (
                "files source, bare records (baseline)",
                bare_bytes,
                Box::new(|| runtime.block_on(files(&catalog, &bare, &archive, workers))),
            ),
            (
                "storage export PT1H.json",
                bare_bytes,
                Box::new(|| runtime.block_on(history(&catalog, Kind::Storage, &bare, &archive, workers))),
            ),
        ];
        let mut baseline = 0.0;
        for (i, (name, bytes, run)) in rows.iter().enumerate() {
            let wall = best(run.as_ref());
            let rate = *bytes as f64 / 1e6 / wall;
            if i % 2 == 0 {
                baseline = rate;
            }
            println!("{workers:<8} {name:<52} {wall:>8.2} {rate:>8.1} {:>5.2}x", rate / baseline);
        }
    }
}
