//! The daemon end to end (issue 10, DESIGN §8): the release `defender-ingest run` as its own
//! process, both destinations on (Parquet zstd on local disk, gzip'd bodies to the strict
//! Logs Ingestion server in another process with `--limits-only`), and four measurements:
//!
//! 1. **files** (the baseline): `run --input <corpus>` with the same config;
//! 2. **Kafka**: the same corpus produced beforehand to a fresh topic of the local broker
//!    (tansu, `scripts/test-infra.sh`); the daemon runs until its group's commits reach the end
//!    of every partition. Wall time, the daemon's CPU seconds and peak RSS (`VmHWM`), ratio to 1;
//! 3. **latency at half load**: a fresh topic, produced at half of 2's rate for
//!    [`LATENCY_SECONDS`]; a thread reads the group's commits every [`POLL`] meanwhile, and a
//!    message's latency is from when it was produced to the first commit seen past it (read →
//!    accepted by every sink → committed; commits every 200 ms, archive files roll every
//!    second: the archive's data is durable when its file rolls, so `roll_seconds` bounds this
//!    latency from below). p50 / p99 over every message. The Kafka wall time includes joining
//!    the group (about 3 s on tansu);
//! 4. **RSS while Sentinel is down**: the server answers 503 for its first [`OUTAGE_SECONDS`]
//!    (`--unavailable-for-seconds`) while the corpus is produced at full speed; the daemon's
//!    resident memory is sampled every [`POLL`] (max), then everything drains.
//!
//! Run: `cargo build --release -p defender-ingest -p defender-ingestion-server && bash
//! scripts/test-infra.sh start && source target/test-infra/env && cargo bench -p
//! defender-benches --bench daemon` (about 5 minutes; prints a table). `DI_BENCH_MB` sets the
//! corpus size (default 100). `DI_BENCH_ONLY=files` runs 1 alone; `DI_BENCH_ONLY=outage` runs 4
//! alone and prints the daemon's pid when the outage starts, for a heap profiler to attach
//! (`heaptrack -p <pid>`; give it time with `DI_BENCH_ATTACH_SECONDS`). `DI_BENCH_FLUSH_SECONDS`,
//! `DI_BENCH_ROLL_SECONDS` (default 1 each) and `DI_BENCH_BUDGET_MB` (default the pipeline's)
//! change the daemon's settings.

// A benchmark driving processes: it waits with thread::sleep.
#![allow(clippy::disallowed_methods)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use defender_benches::{SERVER_SECRET, Server, cpu_seconds, memory_mib, read_cpu_seconds, read_memory_mib};
use defender_core::Catalog;
use defender_gen::{GenOptions, Target};
use defender_tests::kafka::{self, Daemon};

const DCR: &str = "dcr-00000000000000000000000000000004";
const TABLES: [&str; 2] = ["DeviceProcessEvents", "DeviceNetworkEvents"];
const PARTITIONS: i32 = 4;
const SECRET_ENV: &str = "DI_BENCH_CLIENT_SECRET";
const LATENCY_SECONDS: u64 = 30;
const OUTAGE_SECONDS: u64 = 60;
const POLL: Duration = Duration::from_millis(100);

/// Event Hubs message bodies, one per Kafka message, spread over the partitions.
fn corpus(catalog: &Catalog, mb: u64) -> Vec<(i32, Vec<u8>)> {
    let options = GenOptions {
        seed: 11,
        tables: TABLES.iter().map(|t| t.to_string()).collect(),
        target: Target::Bytes(mb * 1_000_000),
        ..GenOptions::default()
    };
    let mut bytes = Vec::new();
    defender_gen::generate(catalog, &options, &mut bytes).unwrap();
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| ((i as i32) % PARTITIONS, l.to_vec()))
        .collect()
}

/// The consumer group of a run: its topic's (each run has a fresh topic), so that a run never
/// joins a group an earlier one left members in.
fn group(topic: &str) -> String {
    format!("{topic}-group")
}

/// A setting from the environment (`DI_BENCH_<NAME>`), or its default here.
fn setting(name: &str, default: &str) -> String {
    std::env::var(format!("DI_BENCH_{name}")).unwrap_or_else(|_| default.to_string())
}

fn write_config(dir: &Path, name: &str, topic: &str, server: &Server) -> PathBuf {
    // The archive makes data durable when a file rolls: with the default of 300 s, nothing is
    // committed for 5 minutes. One second puts the commit cadence near the pipeline's own.
    let mut rest = format!(
        "[archive]\nurl = \"{}\"\nroll_seconds = {}\n",
        dir.join(format!("{name}-archive")).display(),
        setting("ROLL_SECONDS", "1")
    );
    for t in TABLES {
        rest += &format!("\n[tables.{t}]\nsentinel = true\n");
    }
    rest += &defender_tests::sentinel_toml(&server.endpoint, DCR, &server.ca_file, SECRET_ENV, &server.authority);
    let path = dir.join(format!("{name}.toml"));
    let pipeline = format!(
        "flush_seconds = {}\nbudget_mb = {}\n",
        setting("FLUSH_SECONDS", "1"),
        setting("BUDGET_MB", &defender_config::defaults::budget_mb().to_string())
    );
    let text = kafka::config(topic, &group(topic), &rest).replace("flush_seconds = 1\n", &pipeline);
    std::fs::write(&path, text).unwrap();
    path
}

/// What one daemon run cost.
struct Run {
    wall: f64,
    cpu: f64,
    peak_mib: f64,
}

/// Waits until `group` committed every partition's end; samples the daemon's RSS meanwhile
/// (max, MiB).
fn drain(daemon: &Daemon, group: &str, topic: &str, end: &BTreeMap<i32, i64>, timeout: Duration) -> f64 {
    let deadline = Instant::now() + timeout;
    let mut rss: f64 = 0.0;
    loop {
        rss = rss.max(memory_mib(&daemon.pid().to_string(), "VmRSS"));
        let got = kafka::committed(group, topic, PARTITIONS);
        if end.iter().all(|(p, e)| got.get(p).is_some_and(|c| c >= e)) {
            return rss;
        }
        assert!(Instant::now() < deadline, "{group} committed {got:?} of {end:?}:\n{}", daemon.log_text());
        std::thread::sleep(POLL);
    }
}

fn files_run(dir: &Path, server: &Server, messages: &[(i32, Vec<u8>)]) -> Run {
    let input = dir.join("corpus.json");
    let mut text = Vec::new();
    for (_, m) in messages {
        text.extend_from_slice(m);
        text.push(b'\n');
    }
    std::fs::write(&input, text).unwrap();
    let config = write_config(dir, "files", "unused", server);
    let started = Instant::now();
    let child = Command::new(defender_tests::binary())
        .args(["run", "--config", config.to_str().unwrap(), "--input", input.to_str().unwrap()])
        .env(SECRET_ENV, SERVER_SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (mut cpu, mut peak) = (0.0, 0.0);
    // The child's figures as late as they can be read: until it is reaped, its /proc entry
    // keeps its CPU time (memory goes when it becomes a zombie).
    let mut child = child;
    loop {
        cpu = read_cpu_seconds(&pid).unwrap_or(cpu);
        peak = read_memory_mib(&pid, "VmHWM").unwrap_or(peak);
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the files run failed: {status}");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Run { wall: started.elapsed().as_secs_f64(), cpu, peak_mib: peak }
}

fn kafka_run(dir: &Path, server: &Server, messages: &[(i32, Vec<u8>)]) -> Run {
    let topic = kafka::unique("bench");
    kafka::create_topic(&topic, PARTITIONS);
    kafka::produce(&topic, messages);
    let config = write_config(dir, "kafka", &topic, server);
    let started = Instant::now();
    let mut daemon = Daemon::start(&config, dir, "kafka", &[(SECRET_ENV, SERVER_SECRET)]);
    daemon.wait_ready(Duration::from_secs(60));
    drain(&daemon, &group(&topic), &topic, &kafka::ends_after(messages, PARTITIONS), Duration::from_secs(900));
    let wall = started.elapsed().as_secs_f64();
    let pid = daemon.pid().to_string();
    let run = Run { wall, cpu: cpu_seconds(&pid), peak_mib: memory_mib(&pid, "VmHWM") };
    daemon.terminate(Duration::from_secs(60));
    run
}

/// When the group's commits were read, and what they were.
type Sample = (Instant, BTreeMap<i32, i64>);

/// Produce → committed at `rate` bytes per second: p50, p99, and the daemon's epoch times.
fn latency(dir: &Path, server: &Server, messages: &[(i32, Vec<u8>)], rate: f64) -> Latency {
    let topic = kafka::unique("latency");
    kafka::create_topic(&topic, PARTITIONS);
    let config = write_config(dir, "latency", &topic, server);
    let mut daemon = Daemon::start(&config, dir, "latency", &[(SECRET_ENV, SERVER_SECRET)]);
    daemon.wait_ready(Duration::from_secs(60));
    // The group's commits, sampled every POLL by a thread of their own while we produce.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (samples, stop, topic) = (samples.clone(), stop.clone(), topic.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let committed = kafka::committed(&group(&topic), &topic, PARTITIONS);
                samples.lock().unwrap().push((Instant::now(), committed));
                std::thread::sleep(POLL);
            }
        })
    };
    // (partition, offset) → when it was produced; produced in small groups on a clock.
    let mut produced: BTreeMap<(i32, i64), Instant> = BTreeMap::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let started = Instant::now();
    let (mut sent_bytes, mut i) = (0.0, 0);
    while started.elapsed() < Duration::from_secs(LATENCY_SECONDS) {
        let due = started.elapsed().as_secs_f64() * rate;
        let mut group = Vec::new();
        while sent_bytes < due {
            let (p, body) = &messages[i % messages.len()];
            sent_bytes += body.len() as f64;
            group.push((*p, body.clone()));
            i += 1;
        }
        if !group.is_empty() {
            kafka::produce(&topic, &group);
            let at = Instant::now();
            for (p, _) in &group {
                let o = next.entry(*p).or_insert(0);
                produced.insert((*p, *o), at);
                *o += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let end: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, next.get(&p).copied().unwrap_or(0))).collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !samples
        .lock()
        .unwrap()
        .last()
        .is_some_and(|(_, c)| end.iter().all(|(p, e)| *e == 0 || c.get(p).is_some_and(|c| c >= e)))
    {
        assert!(Instant::now() < deadline, "latency run did not drain:\n{}", daemon.log_text());
        std::thread::sleep(POLL);
    }
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    // A message's latency: from its produce to the first sample whose commit passed it.
    let samples = samples.lock().unwrap();
    let mut latencies = Vec::new();
    for ((p, o), at) in &produced {
        if let Some((t, _)) = samples.iter().find(|(_, c)| c.get(p).is_some_and(|c| c > o)) {
            latencies.push(t.saturating_duration_since(*at).as_secs_f64());
        }
    }
    assert_eq!(latencies.len(), produced.len(), "every message committed");
    let epochs = daemon.get("/metrics").map(|(_, body)| epoch_seconds(&body)).unwrap_or_default();
    daemon.terminate(Duration::from_secs(60));
    latencies.sort_by(f64::total_cmp);
    let q = |f: f64| latencies[((latencies.len() as f64 * f) as usize).min(latencies.len() - 1)];
    Latency { p50: q(0.5), p99: q(0.99), messages: latencies.len(), epochs }
}

/// Produced → committed at half load, and the daemon's own part of it.
struct Latency {
    p50: f64,
    p99: f64,
    messages: usize,
    /// From the daemon's `defender_batch_seconds` (an epoch's cut → durable in every sink):
    /// (epochs, mean seconds, the bucket bounds with the share of epochs at or below each).
    epochs: (u64, f64, Vec<(String, f64)>),
}

/// The batch-time histogram of a Prometheus exposition: count, mean, cumulative shares.
fn epoch_seconds(exposition: &str) -> (u64, f64, Vec<(String, f64)>) {
    let name = "defender_batch_seconds";
    let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let find = |suffix: &str| exposition.lines().find(|l| l.starts_with(&format!("{name}{suffix} "))).map(value);
    let count = find("_count").unwrap_or(0.0);
    let sum = find("_sum").unwrap_or(0.0);
    let buckets = exposition
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}_bucket{{le=\"")))
        .filter_map(|rest| rest.split_once('"').map(|(le, _)| (le.to_string(), value(rest) / count.max(1.0))))
        .collect();
    (count as u64, sum / count.max(1.0), buckets)
}

/// Peak RSS (MiB) of the daemon while Sentinel answers 503 and the corpus arrives at full speed.
fn outage(dir: &Path, messages: &[(i32, Vec<u8>)]) -> (f64, f64) {
    let outage_dir = dir.join("outage");
    std::fs::create_dir_all(&outage_dir).unwrap();
    let server = Server::start(&outage_dir, DCR, &TABLES, &["--unavailable-for-seconds", &OUTAGE_SECONDS.to_string()]);
    let topic = kafka::unique("outage");
    kafka::create_topic(&topic, PARTITIONS);
    let config = write_config(&outage_dir, "outage", &topic, &server);
    let started = Instant::now();
    let mut daemon = Daemon::start(&config, &outage_dir, "outage", &[(SECRET_ENV, SERVER_SECRET)]);
    daemon.wait_ready(Duration::from_secs(60));
    println!("outage: daemon pid {}", daemon.pid());
    // DI_BENCH_ATTACH_SECONDS: time for a profiler to attach before the corpus arrives.
    let attach = std::env::var("DI_BENCH_ATTACH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(attach));
    kafka::produce(&topic, messages);
    let mut during: f64 = 0.0;
    while started.elapsed() < Duration::from_secs(OUTAGE_SECONDS) {
        during = during.max(memory_mib(&daemon.pid().to_string(), "VmRSS"));
        std::thread::sleep(POLL);
    }
    let after =
        drain(&daemon, &group(&topic), &topic, &kafka::ends_after(messages, PARTITIONS), Duration::from_secs(900));
    daemon.terminate(Duration::from_secs(60));
    (during, after)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks
    }
    let mb: u64 = std::env::var("DI_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let catalog = Catalog::embedded();
    let tmp = tempfile::tempdir().unwrap();
    // DI_BENCH_KEEP: the daemons' logs and configs stay for a look afterwards.
    let (_guard, dir) = if std::env::var_os("DI_BENCH_KEEP").is_some() {
        let path = tmp.keep();
        eprintln!("keeping {}", path.display());
        (None, path)
    } else {
        let path = tmp.path().to_path_buf();
        (Some(tmp), path)
    };
    let messages = corpus(&catalog, mb);
    let bytes: usize = messages.iter().map(|(_, m)| m.len()).sum();
    let input_mb = bytes as f64 / 1e6;
    println!("input: {input_mb:.0} MB in {} messages ({}), {PARTITIONS} partitions", messages.len(), TABLES.join(", "));
    let only = std::env::var("DI_BENCH_ONLY").ok();
    if only.as_deref() == Some("outage") {
        return outage_row(&dir, &messages, input_mb);
    }
    let server = Server::start(&dir, DCR, &TABLES, &[]);

    let files = files_run(&dir, &server, &messages);
    if only.as_deref() == Some("files") {
        let r = &files;
        let (busy, per_core) = (r.cpu / r.wall, input_mb / r.cpu);
        println!(
            "files: {:.2} s, {:.1} MB/s, busy {busy:.2} cores, {per_core:.1} MB/s per busy core, peak RSS {:.0} MiB",
            r.wall,
            input_mb / r.wall,
            r.peak_mib
        );
        return;
    }
    let kafka_path = kafka_run(&dir, &server, &messages);
    println!("| path | seconds | MB/s | ratio | busy cores | MB/s per busy core | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|");
    for (name, r) in [("files (baseline)", &files), ("Kafka (local broker)", &kafka_path)] {
        println!(
            "| {name} | {:.2} | {:.1} | {:.2}× | {:.2} | {:.1} | {:.0} |",
            r.wall,
            input_mb / r.wall,
            files.wall / r.wall,
            r.cpu / r.wall,
            input_mb / r.cpu,
            r.peak_mib
        );
    }
    let half = bytes as f64 / kafka_path.wall / 2.0;
    let l = latency(&dir, &server, &messages, half);
    println!(
        "latency at half load ({:.1} MB/s, {LATENCY_SECONDS} s, {} messages), produced → committed: p50 {:.2} s, p99 {:.2} s",
        half / 1e6,
        l.messages,
        l.p50,
        l.p99
    );
    let (epochs, mean, buckets) = &l.epochs;
    let shares: Vec<String> = buckets.iter().map(|(le, share)| format!("≤{le} s: {:.0}%", share * 100.0)).collect();
    println!("  of which epoch cut → durable in every sink ({epochs} epochs): mean {mean:.2} s; {}", shares.join(", "));
    outage_row(&dir, &messages, input_mb);
}

fn outage_row(dir: &Path, messages: &[(i32, Vec<u8>)], input_mb: f64) {
    let (during, after) = outage(dir, messages);
    println!(
        "RSS while Sentinel answers 503 for {OUTAGE_SECONDS} s and {input_mb:.0} MB arrive: max {during:.0} MiB; \
         max while draining afterwards {after:.0} MiB"
    );
}
