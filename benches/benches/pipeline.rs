//! End to end (DESIGN §8): generated files → decode → policy → Parquet zstd archive and gzip'd
//! Logs Ingestion bodies sent to the repo's strict server running in *another process* with
//! `--limits-only` (it checks auth, paths, size limits and inflates every body, but does not
//! parse the rows, so its JSON parsing is not what is measured). For 1 and then 2 workers
//! (tokio worker threads, CPU pool and files read at once): decode only (the baseline of each
//! row), archive only, Sentinel only, both. Reports MB/s of input, busy cores (the bench's CPU
//! seconds per wall second) and MB/s per busy core, the server's CPU apart, and the peak RSS of
//! each row's runs (VmHWM reset before them; the allocator keeps what earlier rows freed, so
//! for a row's own figure run it alone with `DI_BENCH_ONLY`, as `benches/RESULTS.md` does).
//!
//! Run: `cargo build --release -p defender-ingestion-server && cargo bench -p defender-benches
//! --bench pipeline` (a few minutes; prints a table). `DI_SERVER_BIN` overrides the server's
//! path.
//!
//! For a profile of one run, `DI_BENCH_ONLY=both` (a word of the run's name: `decode`,
//! `archive`, `Sentinel`, `both`) and `DI_BENCH_WORKERS=1` pick it and `DI_BENCH_REPEAT=5` runs it
//! that many times, e.g. under `perf record -e cpu-clock`. `DI_BENCH_BUDGET_MB` sets the in-flight
//! budget (default the pipeline's).

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Instant};

use defender_benches::{SERVER_CLIENT, SERVER_SECRET, SERVER_TENANT, Server, cpu_seconds, memory_mib, reset_peak_rss};
use defender_core::Catalog;
use defender_gen::{GenOptions, Target};
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
    sentinel: Option<&Server>,
    archive_enabled: bool,
    workers: usize,
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
    let options = PipelineOptions {
        policy: Arc::new(Policy::new(catalog, &settings).unwrap()),
        cpu_workers: workers,
        budget_bytes: std::env::var("DI_BENCH_BUDGET_MB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(PipelineOptions::default().budget_bytes, |mb| mb << 20),
        ..PipelineOptions::default()
    };
    let sink = sentinel.map(|server| {
        let mut auth = AuthConfig::client_secret(SERVER_TENANT, SERVER_CLIENT, SERVER_SECRET);
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
    let source = FileSource::new(files.to_vec()).with_parallel(workers);
    let started = Instant::now();
    defender_pipeline::run(catalog.clone(), move |io| source.run(io), archive, sink, options, |_| {}).await.unwrap();
    started.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks
    }
    let catalog = Arc::new(Catalog::embedded());
    let dir = tempfile::tempdir().unwrap();
    let (files, bytes) = corpus(dir.path(), &catalog);
    let server = Server::start(dir.path(), DCR, &TABLES, &[]);
    let server_pid = server.pid();
    let archive = dir.path().join("archive");
    let mb = bytes as f64 / 1e6;
    println!("input: {mb:.0} MB of Event Hubs messages ({}), {} files", TABLES.join(", "), files.len());
    println!(
        "{:<8} {:<42} {:>8} {:>8} {:>6} {:>10} {:>8} {:>11} {:>12}",
        "workers",
        "run (best of 2)",
        "seconds",
        "MB/s",
        "ratio",
        "busy cores",
        "MB/s/core",
        "server CPU s",
        "peak RSS MiB"
    );
    let only = std::env::var("DI_BENCH_ONLY").ok();
    let worker_counts: Vec<usize> = match std::env::var("DI_BENCH_WORKERS") {
        Ok(w) => vec![w.parse().expect("DI_BENCH_WORKERS: a number of workers")],
        Err(_) => vec![1, 2],
    };
    let repeat: usize = std::env::var("DI_BENCH_REPEAT").map_or(2, |r| r.parse().expect("DI_BENCH_REPEAT: a count"));
    let mut rates = BTreeMap::new();
    for workers in worker_counts {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap();
        let mut baseline = 0.0;
        for (name, sentinel, archive_on) in [
            ("decode only (no destination): baseline", false, false),
            ("archive: Parquet zstd on local disk", false, true),
            ("Sentinel: gzip bodies to the server", true, false),
            ("both destinations", true, true),
        ] {
            if only.as_deref().is_some_and(|o| !name.contains(o)) {
                continue;
            }
            let mut best = (f64::MAX, 0.0, 0.0);
            // The peak resident memory of the runs of this row (the corpus is on disk).
            let peak_known = reset_peak_rss();
            for _ in 0..repeat {
                let (cpu, server_cpu) = (cpu_seconds("self"), cpu_seconds(&server_pid));
                let wall = runtime.block_on(once(
                    &catalog,
                    &files,
                    &archive,
                    sentinel.then_some(&server),
                    archive_on,
                    workers,
                ));
                if wall < best.0 {
                    best = (wall, cpu_seconds("self") - cpu, cpu_seconds(&server_pid) - server_cpu);
                }
            }
            let (wall, cpu, server_cpu) = best;
            let peak = if peak_known { format!("{:.0}", memory_mib("self", "VmHWM")) } else { "-".into() };
            let rate = mb / wall;
            if name.starts_with("decode only") {
                baseline = rate;
            }
            // With DI_BENCH_ONLY the baseline may not have run: no ratio then.
            let ratio = if baseline > 0.0 { format!("{:.2}x", rate / baseline) } else { "-".into() };
            let busy = cpu / wall;
            rates.insert((name, workers), rate);
            println!(
                "{workers:<8} {name:<42} {wall:>8.2} {rate:>8.1} {ratio:>6} {busy:>10.2} {:>8.1} {server_cpu:>11.2} {peak:>12}",
                mb / cpu,
            );
        }
    }
    println!("scaling from 1 to 2 workers:");
    for name in ["decode only (no destination): baseline", "both destinations"] {
        if let (Some(two), Some(one)) = (rates.get(&(name, 2)), rates.get(&(name, 1))) {
            println!("  {name:<42} {:.2}x", two / one);
        }
    }
}
