//! The daemon's guarantees under failure, against the real broker, the strict Logs Ingestion
//! server and the Parquet archive read back by pyarrow: kill -9 at random moments loses nothing
//! and archives nothing twice; a sink failing after the other succeeded commits nothing; a
//! Sentinel outage of a minute holds memory flat and recovers.

// Synchronous test code, never on a tokio worker: it waits with thread::sleep.
#![allow(clippy::disallowed_methods)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use defender_ingestion_server::{Fault, ServerConfig, TestServer};

use defender_tests::{
    archived_report_ids, assert_exactly_once, declared_streams, infra,
    kafka::{self, Daemon},
    readback_values,
};

const PARTITIONS: i32 = 4;
const DCR: &str = "dcr-00000000000000000000000000000002";
const STREAM: &str = "Custom-DeviceInfo_CL";
const SECRET_ENV: &str = "DI_TEST_KAFKA_SENTINEL_SECRET";
const SECRET: &str = "k4fka-s3cret";
const RECORDS_PER_MESSAGE: i64 = 10;

/// Messages `from..to` of the test traffic: DeviceInfo records with unique ReportIds
/// (`message * 10 + i`), event times over two hours (several archive files per partition),
/// partition = message % 4.
fn messages(from: i64, to: i64) -> Vec<(i32, Vec<u8>)> {
    (from..to)
        .map(|m| {
            let records: Vec<String> = (0..RECORDS_PER_MESSAGE)
                .map(|i| {
                    let id = m * RECORDS_PER_MESSAGE + i;
                    let (min, sec) = ((id / 60) % 120, id % 60);
                    format!(
                        r#"{{"time":"2026-11-20T12:00:00Z","tenantId":"t","operationName":"Publish","category":"AdvancedHunting-DeviceInfo","properties":{{"Timestamp":"2026-11-20T{:02}:{:02}:{sec:02}Z","DeviceId":"dev-{}","DeviceName":"host-{}","ReportId":{id}}}}}"#,
                        10 + min / 60,
                        min % 60,
                        id % 17,
                        id % 17
                    )
                })
                .collect();
            ((m % PARTITIONS as i64) as i32, format!(r#"{{"records":[{}]}}"#, records.join(",")).into_bytes())
        })
        .collect()
}

struct Setup {
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    server: TestServer,
    topic: String,
    group: String,
    config: PathBuf,
    archive: PathBuf,
}

fn sentinel_section(endpoint: &str, authority: &str, ca: &Path) -> String {
    r#"
[tables.DeviceInfo]
sentinel = true
"#
    .to_string()
        + &defender_tests::sentinel_toml(endpoint, DCR, ca, SECRET_ENV, authority)
}

fn setup() -> Setup {
    setup_with("")
}

/// [`setup`] with `pipeline` added to the config's `[pipeline]` section.
fn setup_with(pipeline: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let topic = kafka::unique("recovery");
    let group = kafka::unique("group");
    kafka::create_topic(&topic, PARTITIONS);
    let archive = dir.path().join("archive");
    let ca = dir.path().join("ca.pem");
    let config = dir.path().join("daemon.toml");
    let write_config = |endpoint: &str, authority: &str| {
        let rest = format!(
            "[archive]\nurl = \"{}\"\nroll_seconds = 1\n{}",
            archive.display(),
            sentinel_section(endpoint, authority, &ca)
        );
        let text =
            kafka::config(&topic, &group, &rest).replacen("[pipeline]\n", &format!("[pipeline]\n{pipeline}\n"), 1);
        std::fs::write(&config, text).unwrap();
    };
    // The stream the strict server enforces is the one `schemas dcr` declares for this config.
    write_config("https://127.0.0.1:1", "https://127.0.0.1:1");
    let streams = declared_streams(&config, &dir.path().join("deploy"));
    assert!(streams.contains_key(STREAM), "{streams:?}");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = runtime
        .block_on(TestServer::start(ServerConfig::new(
            BTreeMap::from([(DCR.to_string(), streams)]),
            "tenant-1",
            "app-1",
            SECRET,
        )))
        .unwrap();
    std::fs::write(&ca, &server.ca_pem).unwrap();
    write_config(&server.endpoint, &server.authority);
    Setup { dir, runtime, server, topic, group, config, archive }
}

impl Setup {
    fn start(&self, name: &str) -> Daemon {
        Daemon::start(&self.config, self.dir.path(), name, &[(SECRET_ENV, SECRET)])
    }

    /// ReportIds in the archive, each with how often it is there.
    fn archived(&self) -> BTreeMap<i64, usize> {
        archived_report_ids(self.archive.to_str().unwrap())
    }

    /// ReportIds the Logs Ingestion server accepted (at least once each).
    fn accepted(&self) -> BTreeSet<i64> {
        self.server.accepted(DCR, STREAM).iter().map(|r| r["ReportId"].as_i64().unwrap()).collect()
    }
}

/// A deterministic sequence of waits for the kills (xorshift).
fn waits(seed: u64, n: usize, min_ms: u64, max_ms: u64) -> Vec<Duration> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            Duration::from_millis(min_ms + s % (max_ms - min_ms).max(1))
        })
        .collect()
}

#[test]
fn kill_9_at_random_moments_twenty_times_loses_nothing_and_archives_nothing_twice() {
    let s = setup();
    // Commits every 3 s: a wide window between a file stored and the commit that covers it,
    // where a crash leaves rows archived past the commit.
    let config = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, config.replace("commit_interval_ms = 200", "commit_interval_ms = 3000")).unwrap();
    let mut produced = Vec::new();
    let mut next = 0;
    // Each kill comes at a random moment after the daemon got its partitions: while it reads,
    // decodes, stores files, sends to Sentinel or commits.
    for (round, wait) in waits(0x5eed, 20, 0, 6000).into_iter().enumerate() {
        // Traffic keeps arriving between the crashes.
        let batch = messages(next, next + 60);
        next += 60;
        kafka::produce(&s.topic, &batch);
        produced.extend(batch);
        let daemon = s.start(&format!("kill-{round:02}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while daemon.get("/metrics").is_none() || daemon.metric("defender_kafka_assigned").is_empty() {
            assert!(Instant::now() < deadline, "no partitions after 60 s:\n{}", daemon.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(wait);
        daemon.kill9();
    }
    // The killed daemons did real work: they committed some of it.
    let before = kafka::committed(&s.group, &s.topic, PARTITIONS);
    assert!(before.values().sum::<i64>() > 0, "no daemon committed anything before being killed");
    let logs: String =
        (0..20).map(|r| std::fs::read_to_string(s.dir.path().join(format!("kill-{r:02}.log"))).unwrap()).collect();
    let replays = logs.matches("already archived").count();
    eprintln!(
        "committed before the last run: {before:?}; restarts that found rows archived past the commit: {replays}"
    );
    assert!(replays > 0, "no kill left rows archived past the commit: the replay path was not exercised");
    // A last, clean run catches up, commits everything and stops on SIGTERM.
    let mut daemon = s.start("final");
    daemon.wait_ready(Duration::from_secs(60));
    let end = kafka::ends_after(&produced, PARTITIONS);
    kafka::wait_committed(&s.group, &s.topic, &end, Duration::from_secs(300));
    let (status, summary) = daemon.terminate(Duration::from_secs(60));
    assert!(status.success(), "{status}");
    let t = &summary["totals"];
    let dead: u64 = t["dead_lettered"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(
        t["records_in"].as_u64().unwrap(),
        t["delivered"].as_u64().unwrap() + t["filtered"].as_u64().unwrap() + dead
    );

    let ids = next * RECORDS_PER_MESSAGE;
    assert_exactly_once(&s.archived(), ids);
    let accepted = s.accepted();
    let missing: Vec<i64> = (0..ids).filter(|id| !accepted.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} records never reached Sentinel, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Sentinel bills every duplicate: what it accepted past the last commit is recorded and not
    // sent again, so duplicates come only from calls in flight at a kill (an epoch per
    // partition at most), not from the commit lag (3 s of traffic per kill).
    let arrivals = s.server.accepted(DCR, STREAM).len() as i64;
    let replayed: i64 = logs.matches("sentinel accepted before").count() as i64;
    eprintln!("Sentinel: {arrivals} rows accepted for {ids} records ({} duplicates); {replayed} skips", arrivals - ids);
    assert!(arrivals - ids <= ids / 4, "{} duplicate rows in Sentinel for {ids} records", arrivals - ids);
    s.runtime.block_on(s.server.stop());
}

#[test]
fn a_sink_failing_after_the_other_succeeded_commits_nothing() {
    let s = setup();
    // The archive's container does not exist, so its first file cannot be stored (Azurite
    // answers 404), while Sentinel accepts every call before that.
    let config = std::fs::read_to_string(&s.config).unwrap();
    let broken = config.replace(s.archive.to_str().unwrap(), "az://no-such-container/defender");
    assert_ne!(broken, config);
    std::fs::write(&s.config, broken).unwrap();
    kafka::produce(&s.topic, &messages(0, 40));
    let blob = infra("DI_AZURITE_BLOB");
    let azurite = blob.trim_end_matches("/devstoreaccount1");
    let envs = [(SECRET_ENV, SECRET), ("AZURE_STORAGE_USE_EMULATOR", "true"), ("AZURITE_BLOB_STORAGE_URL", azurite)];
    let mut daemon = Daemon::start(&s.config, s.dir.path(), "archive-broken", &envs);
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = daemon.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "the daemon keeps running without its archive:\n{}", daemon.log_text());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "an archive that cannot store ends the run with an error");
    assert!(daemon.log_text().contains("no-such-container"), "the error names the path:\n{}", daemon.log_text());
    assert!(!s.accepted().is_empty(), "Sentinel had accepted rows before the archive failed");
    assert_eq!(kafka::committed(&s.group, &s.topic, PARTITIONS), BTreeMap::new(), "nothing committed");
    s.runtime.block_on(s.server.stop());
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A Sentinel outage long enough, with enough traffic (many times the source's byte budget of
/// 2 MiB), that every bounded queue fills: fetching pauses (the metric moves), the consumer
/// stops handing messages over while traffic keeps arriving, and resident memory stays bounded.
/// When the service is back, everything is delivered once.
#[test]
fn a_sentinel_outage_fills_the_budget_pauses_fetching_and_keeps_memory_bounded() {
    const BUDGET: u64 = 2 << 20;
    let s = setup_with("budget_mb = 2");
    let mut daemon = s.start("outage");
    daemon.wait_ready(Duration::from_secs(60));
    let rss_before = rss_kib(daemon.pid());
    // 503 for every call until the faults are cleared.
    for _ in 0..100_000 {
        s.server.inject(Fault::Status { status: 503, retry_after: Some(1) });
    }
    let metric = |name: &str| daemon.metric(name).values().sum::<f64>() as u64;
    let (mut produced, mut produced_bytes) = (Vec::new(), 0u64);
    let mut samples = Vec::new(); // (rss KiB, messages handed over, pauses)
    let started = Instant::now();
    let mut next = 0;
    while started.elapsed() < Duration::from_secs(40) {
        let batch = messages(next, next + 600);
        next += 600;
        produced_bytes += batch.iter().map(|(_, m)| m.len() as u64).sum::<u64>();
        kafka::produce(&s.topic, &batch);
        produced.extend(batch);
        std::thread::sleep(Duration::from_secs(2));
        samples.push((
            rss_kib(daemon.pid()),
            metric("defender_kafka_messages_total"),
            metric("defender_kafka_pauses_total"),
        ));
    }
    eprintln!("produced {produced_bytes} bytes; (RSS KiB, messages handed, pauses) every 2 s: {samples:?}");
    let statuses: Vec<u16> = s.server.requests().iter().map(|r| r.status).collect();
    assert!(!statuses.is_empty() && statuses.iter().all(|s| *s == 503), "the outage lasted: {statuses:?}");
    assert!(produced_bytes > 8 * BUDGET, "traffic of many budgets: {produced_bytes}");
    let (last_rss, handed, pauses) = *samples.last().unwrap();
    assert!(pauses >= 1, "fetching paused: {samples:?}");
    // The source stopped reading: over the last 10 s nothing more was handed over, although
    // most of the traffic is still waiting in the hub.
    let tail = &samples[samples.len() - 5..];
    assert!(tail.iter().all(|t| t.1 == handed), "messages still handed over during the outage: {samples:?}");
    assert!(handed < produced.len() as u64 / 2, "{handed} of {} messages handed over", produced.len());
    // Memory: bounded by the queues, not by the traffic.
    let max_rss = samples.iter().map(|t| t.0).max().unwrap();
    assert!(max_rss <= rss_before + 96 * 1024, "RSS grew from {rss_before} KiB to {max_rss} KiB");
    assert!(last_rss <= max_rss);
    s.server.clear_faults();
    let end = kafka::ends_after(&produced, PARTITIONS);
    kafka::wait_committed(&s.group, &s.topic, &end, Duration::from_secs(300));
    let (status, summary) = daemon.terminate(Duration::from_secs(60));
    assert!(status.success());
    let ids = next * RECORDS_PER_MESSAGE;
    assert_eq!(s.accepted().len() as i64, ids, "every record reached Sentinel after the outage");
    assert_eq!(s.archived().len() as i64, ids, "every record archived");
    assert_eq!(summary["totals"]["records_in"].as_i64(), Some(ids));
    s.runtime.block_on(s.server.stop());
}

/// The broker stops answering for half a minute mid-stream (frozen: tansu keeps messages only in
/// memory, so a restarted process would come back empty, which Event Hubs never does) and comes
/// back: the daemon survives, reports not ready meanwhile, and then delivers everything once.
#[test]
fn a_broker_outage_mid_stream_loses_nothing() {
    let broker = kafka::Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let topic = kafka::unique("outage");
    let group = kafka::unique("group");
    kafka::create_topic_at(&broker.bootstrap, &topic, PARTITIONS);
    let archive = dir.path().join("archive");
    let config = dir.path().join("daemon.toml");
    let rest = format!("[archive]\nurl = \"{}\"\nroll_seconds = 1\n", archive.display());
    std::fs::write(&config, kafka::config_at(&broker.bootstrap, &topic, &group, &rest)).unwrap();

    let mut produced = messages(0, 200);
    kafka::produce_at(&broker.bootstrap, &topic, &produced);
    let mut daemon = Daemon::start(&config, dir.path(), "daemon", &[]);
    daemon.wait_ready(Duration::from_secs(60));
    let end = kafka::ends_after(&produced, PARTITIONS);
    kafka::wait_committed_at(&broker.bootstrap, &group, &topic, &end, Duration::from_secs(120));

    broker.freeze(true);
    let frozen = Instant::now();
    let mut unready = false;
    while frozen.elapsed() < Duration::from_secs(30) {
        assert!(daemon.try_wait().is_none(), "the daemon died with the broker:\n{}", daemon.log_text());
        unready |= daemon.get("/readyz").is_some_and(|(status, _)| status == 503);
        assert_eq!(daemon.get("/healthz").map(|r| r.0), Some(200), "alive while the broker is away");
        std::thread::sleep(Duration::from_millis(500));
    }
    broker.freeze(false);
    eprintln!("/readyz said 503 while the broker was frozen: {unready}");

    let more = messages(200, 400);
    kafka::produce_at(&broker.bootstrap, &topic, &more);
    produced.extend(more);
    let end = kafka::ends_after(&produced, PARTITIONS);
    kafka::wait_committed_at(&broker.bootstrap, &group, &topic, &end, Duration::from_secs(180));
    let (status, summary) = daemon.terminate(Duration::from_secs(60));
    assert!(status.success(), "{status}");
    assert_eq!(summary["totals"]["records_in"].as_i64().unwrap(), 400 * RECORDS_PER_MESSAGE);

    let mut ids = BTreeMap::<i64, usize>::new();
    for v in readback_values(archive.to_str().unwrap(), "ReportId").remove("DeviceInfo").unwrap_or_default() {
        *ids.entry(v.as_i64().unwrap()).or_default() += 1;
    }
    assert_eq!(ids.len() as i64, 400 * RECORDS_PER_MESSAGE, "every record archived");
    assert!(ids.values().all(|n| *n == 1), "none twice");
}

/// Polls `/healthz` and `/readyz` every 200 ms for `during` (or until `until` holds), asserting
/// the daemon stays alive and live; returns the last `/readyz` answer.
fn watch_probes(daemon: &mut Daemon, during: Duration, until: impl Fn(&(u16, String)) -> bool) -> (u16, String) {
    let started = Instant::now();
    loop {
        assert!(daemon.try_wait().is_none(), "the daemon exited:\n{}", daemon.log_text());
        let health = daemon.get("/healthz").expect("/healthz answers");
        assert_eq!(health.0, 200, "liveness failed: {}\n{}", health.1, daemon.log_text());
        let ready = daemon.get("/readyz").expect("/readyz answers");
        if until(&ready) || started.elapsed() >= during {
            return ready;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Liveness holds through an idle hub, a Sentinel outage and a permanent refusal, each longer
/// than the (2 s) threshold: a restart would fix none of them. The refusal (403) makes the
/// daemon not ready, with the reason, while it holds the data; once Sentinel accepts again it
/// is ready and everything is delivered once.
#[test]
fn probes_stay_live_through_an_outage_and_a_refusal_and_the_refusal_is_not_ready() {
    let s = setup();
    let config = std::fs::read_to_string(&s.config).unwrap();
    let config = config.replacen("[sentinel]\n", "[sentinel]\nretry_max_seconds = 1\n", 1)
        + "\n[service]\nliveness_threshold_seconds = 2\n";
    std::fs::write(&s.config, config).unwrap();
    let mut daemon = s.start("probes");
    daemon.wait_ready(Duration::from_secs(60));
    let is_ready = |r: &(u16, String)| r.0 == 200;

    // Idle: nothing to read for twice the threshold.
    assert_eq!(watch_probes(&mut daemon, Duration::from_secs(4), |_| false).0, 200, "ready while idle");

    // An outage: every call answered 503 while traffic arrives.
    for _ in 0..100_000 {
        s.server.inject(Fault::Status { status: 503, retry_after: None });
    }
    let mut produced = messages(0, 100);
    kafka::produce(&s.topic, &produced);
    let ready = watch_probes(&mut daemon, Duration::from_secs(6), |_| false);
    assert_eq!(ready.0, 200, "an outage is not a refusal: {}", ready.1);
    let statuses: Vec<u16> = s.server.requests().iter().map(|r| r.status).collect();
    assert!(statuses.len() >= 3 && statuses.iter().all(|s| *s == 503), "the outage lasted: {statuses:?}");
    assert!(s.accepted().is_empty());

    // A refusal: 403 for every call (a role assignment missing).
    s.server.clear_faults();
    for _ in 0..100_000 {
        s.server.inject(Fault::Status { status: 403, retry_after: None });
    }
    let more = messages(100, 200);
    kafka::produce(&s.topic, &more);
    produced.extend(more);
    let ready = watch_probes(&mut daemon, Duration::from_secs(30), |r| r.0 == 503);
    assert_eq!(ready.0, 503, "a refusal makes the daemon not ready");
    assert!(ready.1.contains("sentinel refuses us") && ready.1.contains("403"), "the reason is given: {}", ready.1);
    let refused = daemon.metric("defender_sink_refused");
    assert_eq!(refused.get("sink=\"sentinel\""), Some(&1.0), "{refused:?}");
    // Held, not failed: still live and not ready for longer than the threshold.
    assert_eq!(watch_probes(&mut daemon, Duration::from_secs(4), is_ready).0, 503);
    assert_eq!(
        kafka::committed(&s.group, &s.topic, PARTITIONS),
        BTreeMap::new(),
        "nothing Sentinel refused is committed"
    );

    // Fixed on the Azure side: ready again without a restart, and everything delivered.
    s.server.clear_faults();
    assert_eq!(watch_probes(&mut daemon, Duration::from_secs(30), is_ready).0, 200, "ready once Sentinel accepts");
    let end = kafka::ends_after(&produced, PARTITIONS);
    kafka::wait_committed(&s.group, &s.topic, &end, Duration::from_secs(120));
    assert_eq!(daemon.metric("defender_sink_refused").get("sink=\"sentinel\""), Some(&0.0));
    let (status, summary) = daemon.terminate(Duration::from_secs(60));
    assert!(status.success(), "{status}");
    let ids = 200 * RECORDS_PER_MESSAGE;
    let t = &summary["tables"]["DeviceInfo"];
    assert_eq!(t["records_in"].as_i64(), Some(ids), "{summary}");
    let dead: i64 = t["dead_lettered"].as_object().unwrap().values().map(|v| v.as_i64().unwrap()).sum();
    let (delivered, filtered) = (t["delivered"].as_i64().unwrap(), t["filtered"].as_i64().unwrap());
    assert_eq!((delivered, filtered, dead), (ids, 0, 0), "in = delivered + filtered + dead-lettered: {summary}");
    assert_eq!(s.accepted().len() as i64, ids, "every record reached Sentinel");
    assert_eq!(s.archived().len() as i64, ids, "every record archived");
    s.runtime.block_on(s.server.stop());
}

/// The archive's store accepts connections and never answers: the stage talking to it stops
/// making progress, and `/healthz` (and so `/readyz`) fails within the threshold, naming it.
#[test]
fn a_stage_stuck_on_a_silent_store_fails_liveness() {
    let s = setup();
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blackhole.local_addr().unwrap().port();
    let config = std::fs::read_to_string(&s.config).unwrap();
    let config = config.replace(&format!("\"{}\"", s.archive.display()), "\"az://archive/defender\"")
        + "\n[service]\nliveness_threshold_seconds = 2\n";
    std::fs::write(&s.config, config).unwrap();
    kafka::produce(&s.topic, &messages(0, 20));
    let azurite = format!("http://127.0.0.1:{port}");
    let envs = [(SECRET_ENV, SECRET), ("AZURE_STORAGE_USE_EMULATOR", "true"), ("AZURITE_BLOB_STORAGE_URL", &azurite)];
    let mut daemon = Daemon::start(&s.config, s.dir.path(), "stuck", &envs);
    let deadline = Instant::now() + Duration::from_secs(60);
    let health = loop {
        assert!(daemon.try_wait().is_none(), "the daemon exited:\n{}", daemon.log_text());
        if let Some(h) = daemon.get("/healthz").filter(|h| h.0 == 503) {
            break h;
        }
        assert!(Instant::now() < deadline, "liveness never failed:\n{}", daemon.log_text());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(health.1.contains("has made no progress for") && health.1.contains("threshold 2s"), "{}", health.1);
    assert_eq!(daemon.get("/readyz").map(|r| r.0), Some(503));
    let stalled = daemon.metric("defender_stage_stalled");
    assert!(stalled.values().any(|v| *v == 1.0), "{stalled:?}");
    assert_eq!(kafka::committed(&s.group, &s.topic, PARTITIONS), BTreeMap::new());
    drop(blackhole);
    daemon.kill9();
    s.runtime.block_on(s.server.stop());
}
