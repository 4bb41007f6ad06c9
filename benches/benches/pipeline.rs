//! End to end (DESIGN §8): generated files → decode → policy → Parquet zstd archive and gzip'd
//! Logs Ingestion bodies sent to the repo's strict server running in *another process* with
//! `--limits-only` (it checks auth, paths, size limits and inflates every body, but does not
//! parse the rows, so its JSON parsing is not what is measured). For 1 and then 2 workers
//! (tokio worker threads, CPU pool and files read at once): decode only (the baseline of each
//! row), archive only, Sentinel only, both. Reports MB/s of input, busy cores (the bench's CPU
//! seconds per wall second) and MB/s per busy core, the server's CPU apart, and peak RSS.
//!
//! Run: `cargo build --release -p defender-ingestion-server && cargo bench -p defender-benches
//! --bench pipeline` (a few minutes; prints a table). `DI_SERVER_BIN` overrides the server's
//! path.

use std::{
    collections::BTreeMap,
    io::BufRead,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Instant,
};

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

/// The server process, and how to reach it.
struct Server {
    child: Child,
    endpoint: String,
    authority: String,
    ca_pem: String,
}

impl Server {
    fn start(dir: &std::path::Path) -> Self {
        let bin = std::env::var_os("DI_SERVER_BIN").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/defender-ingestion-server")
        });
        assert!(bin.exists(), "{} is missing: cargo build --release -p defender-ingestion-server", bin.display());
        let streams: BTreeMap<String, Vec<String>> =
            TABLES.iter().map(|t| (format!("Custom-{t}_CL"), vec![])).collect();
        let streams_file = dir.join("streams.json");
        std::fs::write(&streams_file, serde_json::to_string(&BTreeMap::from([(DCR, streams)])).unwrap()).unwrap();
        let ca = dir.join("ca.pem");
        let mut child = Command::new(bin)
            .args(["--streams", streams_file.to_str().unwrap(), "--tenant", "t", "--client-id", "c"])
            .args(["--client-secret-env", "DI_BENCH_SECRET", "--ca-out", ca.to_str().unwrap()])
            .args(["--allow-unknown-columns", "--limits-only", "--token-lifetime-secs", "86400"])
            .env("DI_BENCH_SECRET", "s")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let ready: serde_json::Value = serde_json::from_str(&line).expect("the server's ready line");
        let (endpoint, authority) = (ready["endpoint"].as_str().unwrap(), ready["authority"].as_str().unwrap());
        Self {
            endpoint: endpoint.into(),
            authority: authority.into(),
            ca_pem: std::fs::read_to_string(&ca).unwrap(),
            child,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) of process `pid` so far ("self" for this one).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Peak resident memory of this process, MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
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
        ..PipelineOptions::default()
    };
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
    let server = Server::start(dir.path());
    let server_pid = server.child.id().to_string();
    let archive = dir.path().join("archive");
    let mb = bytes as f64 / 1e6;
    println!("input: {mb:.0} MB of Event Hubs messages ({}), {} files", TABLES.join(", "), files.len());
    println!(
        "{:<8} {:<42} {:>8} {:>8} {:>6} {:>10} {:>8} {:>11}",
        "workers", "run (best of 2)", "seconds", "MB/s", "ratio", "busy cores", "MB/s/core", "server CPU s"
    );
    let mut rates = BTreeMap::new();
    for workers in [1, 2] {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap();
        let mut baseline = 0.0;
        for (name, sentinel, archive_on) in [
            ("decode only (no destination): baseline", false, false),
            ("archive: Parquet zstd on local disk", false, true),
            ("Sentinel: gzip bodies to the server", true, false),
            ("both destinations", true, true),
        ] {
            let mut best = (f64::MAX, 0.0, 0.0);
            for _ in 0..2 {
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
            let rate = mb / wall;
            if baseline == 0.0 {
                baseline = rate;
            }
            let busy = cpu / wall;
            rates.insert((name, workers), rate);
            println!(
                "{workers:<8} {name:<42} {wall:>8.2} {rate:>8.1} {:>5.2}x {busy:>10.2} {:>8.1} {server_cpu:>11.2}",
                rate / baseline,
                mb / cpu,
            );
        }
    }
    println!("scaling from 1 to 2 workers:");
    for name in ["decode only (no destination): baseline", "both destinations"] {
        println!("  {name:<42} {:.2}x", rates[&(name, 2)] / rates[&(name, 1)]);
    }
    println!("peak RSS of the bench process: {:.0} MiB", peak_rss_mib());
}
