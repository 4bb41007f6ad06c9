//! End to end (DESIGN §8): generated files → decode → policy → Parquet zstd archive and gzip'd
//! Logs Ingestion bodies sent to the strict local server, against a decode-only run of the same
//! pipeline (no sink work) measured in the same process. Reports MB/s of input.
//!
//! Run: `cargo bench -p defender-benches --bench pipeline` (about a minute; prints a table).

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Instant};

use defender_core::Catalog;
use defender_gen::{GenOptions, Target};
use defender_ingestion_server::{ServerConfig, TestServer};
use defender_pipeline::{PipelineOptions, Policy, SentinelPath, policy::TableSettings};
use defender_sinks::{
    ArchiveConfig, ArchiveSink,
    sentinel::{AuthConfig, SentinelConfig, SentinelSink},
    store,
};
use defender_sources::FileSource;

const DCR: &str = "dcr-00000000000000000000000000000003";
const TABLES: [&str; 2] = ["DeviceProcessEvents", "DeviceNetworkEvents"];

fn corpus(dir: &std::path::Path, catalog: &Catalog) -> (Vec<PathBuf>, u64) {
    let mut files = Vec::new();
    let mut bytes = 0;
    for i in 0..4 {
        let path = dir.join(format!("corpus-{i}.json"));
        let options = GenOptions {
            seed: 40 + i,
            tables: TABLES.iter().map(|t| t.to_string()).collect(),
            target: Target::Bytes(50_000_000),
            ..GenOptions::default()
        };
        defender_gen::generate(catalog, &options, &mut std::fs::File::create(&path).unwrap()).unwrap();
        bytes += std::fs::metadata(&path).unwrap().len();
        files.push(path);
    }
    (files, bytes)
}

async fn once(
    catalog: &Arc<Catalog>,
    files: &[PathBuf],
    archive_dir: &std::path::Path,
    sentinel: Option<&TestServer>,
    archive_enabled: bool,
) -> f64 {
    let mut settings = BTreeMap::new();
    for t in TABLES {
        let s = TableSettings {
            archive: Some(archive_enabled),
            sentinel: Some(sentinel.is_some()),
            ..TableSettings::default()
        };
        settings.insert(t.to_string(), s);
    }
    let options =
        PipelineOptions { policy: Arc::new(Policy::new(catalog, &settings).unwrap()), ..PipelineOptions::default() };
    let sink = sentinel.map(|server| {
        let mut auth = AuthConfig::client_secret("t", "c", "s");
        if let AuthConfig::ClientSecret { authority_host, .. } = &mut auth {
            *authority_host = server.authority.clone();
        }
        let mut config = SentinelConfig::new(server.endpoint.clone(), auth);
        for t in TABLES {
            config = config.with_table(t, DCR, None);
        }
        config.extra_root_pem = Some(server.ca_pem.clone());
        SentinelPath::Live(SentinelSink::new(config, catalog.clone()).unwrap())
    });
    let _ = std::fs::remove_dir_all(archive_dir);
    let archive = ArchiveSink::new(store::open(archive_dir.to_str().unwrap()).unwrap(), ArchiveConfig::default());
    let source = FileSource::new(files.to_vec());
    let started = Instant::now();
    defender_pipeline::run(catalog.clone(), move |io| source.run(io), archive, sink, options, |_| {}).await.unwrap();
    started.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let catalog = Arc::new(Catalog::embedded());
    let dir = tempfile::tempdir().unwrap();
    let (files, bytes) = corpus(dir.path(), &catalog);
    let streams = TABLES.iter().map(|t| (format!("Custom-{t}_CL"), vec![])).collect();
    let mut server_config = ServerConfig::new(BTreeMap::from([(DCR.to_string(), streams)]), "t", "c", "s");
    server_config.reject_unknown_columns = false;
    let server = runtime.block_on(TestServer::start(server_config)).unwrap();
    let archive = dir.path().join("archive");
    let mb = bytes as f64 / 1e6;
    println!("input: {mb:.0} MB of Event Hubs messages ({})", TABLES.join(", "));
    println!("{:<44} {:>8} {:>10} {:>8}", "run (best of 3)", "seconds", "MB/s", "ratio");
    let mut baseline = 0.0;
    for (name, sentinel, archive_on) in [
        ("decode only (no destination): baseline", false, false),
        ("archive: Parquet zstd on local disk", false, true),
        ("Sentinel: gzip bodies to the local server", true, false),
        ("both destinations", true, true),
    ] {
        let best = (0..3)
            .map(|_| runtime.block_on(once(&catalog, &files, &archive, sentinel.then_some(&server), archive_on)))
            .fold(f64::MAX, f64::min);
        let rate = mb / best;
        if baseline == 0.0 {
            baseline = rate;
        }
        println!("{name:<44} {best:>8.2} {rate:>10.1} {:>7.2}x", rate / baseline);
    }
}
