//! The Kafka side of the integration tests: topics and traffic on the real broker (tansu, from
//! `scripts/test-infra.sh`), and the daemon under test as a child process with its probes.

// Synchronous test code, never on a tokio worker: it waits with thread::sleep.
#![allow(clippy::disallowed_methods)]

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    producer::{BaseProducer, BaseRecord, Producer},
};
use serde_json::Value;

use crate::{binary, infra};

/// The broker's address (`DI_KAFKA_BOOTSTRAP`).
pub fn bootstrap() -> String {
    infra("DI_KAFKA_BOOTSTRAP")
}

/// A topic name no other test uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Creates `topic` with `partitions` partitions.
pub fn create_topic(topic: &str, partitions: i32) {
    create_topic_at(&bootstrap(), topic, partitions);
}

/// Creates `topic` on the broker at `bootstrap`.
pub fn create_topic_at(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = rt
        .block_on(admin.create_topics(&[new], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))))
        .expect("create_topics");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
    }
}

/// Produces `(partition, body)` messages and waits until the broker has them all.
pub fn produce(topic: &str, messages: &[(i32, Vec<u8>)]) {
    produce_at(&bootstrap(), topic, messages);
}

/// Produces to the broker at `bootstrap`.
pub fn produce_at(bootstrap: &str, topic: &str, messages: &[(i32, Vec<u8>)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer");
    for (partition, body) in messages {
        let mut record = BaseRecord::<(), [u8]>::to(topic).partition(*partition).payload(body.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(
                        matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)),
                        "produce: {e}"
                    );
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("every message acknowledged by the broker");
}

/// The end offset (next offset to be written) of each partition of a fresh topic after
/// `messages` were produced to it. (tansu's high watermarks count batches, not messages: tests
/// count what they produced instead of asking the broker.)
pub fn ends_after(messages: &[(i32, Vec<u8>)], partitions: i32) -> BTreeMap<i32, i64> {
    let mut ends: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    for (p, _) in messages {
        *ends.get_mut(p).expect("partition of the topic") += 1;
    }
    ends
}

/// The offsets `group` committed for `topic` (next offset to read; partitions without a commit
/// are left out).
pub fn committed(group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    committed_at(&bootstrap(), group, topic, partitions)
}

/// [`committed`] on the broker at `bootstrap`.
pub fn committed_at(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(n) => Some((e.partition(), n)),
            _ => None,
        })
        .collect()
}

/// Waits until `group` committed `end` (next offsets to read) on every partition of `topic`.
pub fn wait_committed(group: &str, topic: &str, end: &BTreeMap<i32, i64>, timeout: Duration) {
    wait_committed_at(&bootstrap(), group, topic, end, timeout);
}

/// [`wait_committed`] on the broker at `bootstrap`.
pub fn wait_committed_at(bootstrap: &str, group: &str, topic: &str, end: &BTreeMap<i32, i64>, timeout: Duration) {
    let partitions = end.len() as i32;
    let end: BTreeMap<i32, i64> = end.iter().filter(|(_, o)| **o > 0).map(|(p, o)| (*p, *o)).collect();
    let deadline = Instant::now() + timeout;
    loop {
        let got = committed_at(bootstrap, group, topic, partitions);
        if got == end {
            return;
        }
        assert!(Instant::now() < deadline, "group {group} committed {got:?}, the partitions end at {end:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A config of a daemon reading `topic` with `group` from the test broker (plaintext), with
/// short timeouts for tests. `rest` is appended (archive, tables, sentinel...).
pub fn config(topic: &str, group: &str, rest: &str) -> String {
    config_at(&bootstrap(), topic, group, rest)
}

/// [`config`] for the broker at `bootstrap`.
pub fn config_at(bootstrap: &str, topic: &str, group: &str, rest: &str) -> String {
    format!(
        r#"
[source.kafka]
bootstrap = "{bootstrap}"
topics = ["{topic}"]
group = "{group}"
plaintext = true
commit_interval_ms = 200
session_timeout_ms = 6000

[pipeline]
flush_seconds = 1

{rest}
"#
    )
}

/// A tansu broker of the test's own (memory storage), to freeze and thaw.
pub struct Broker {
    child: Child,
    pub bootstrap: String,
}

impl Broker {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(infra("DI_TANSU"))
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tansu");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, bootstrap: format!("127.0.0.1:{port}") }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): the broker stops answering, then resumes with its
    /// state intact, as a service restart does to its clients.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { "-STOP" } else { "-CONT" };
        assert!(Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap().success());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `defender-ingest run` as a child process, with its probes on a free local port.
pub struct Daemon {
    child: Child,
    pub port: u16,
    pub summary: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `run --config <config> --listen ... --summary ...`; its stderr goes to `<dir>/<name>.log`.
    pub fn start(config: &Path, dir: &Path, name: &str, envs: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let summary = dir.join(format!("{name}.summary.json"));
        let log = dir.join(format!("{name}.log"));
        let _ = std::fs::remove_file(&summary);
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = Command::new(binary())
            .args(["run", "--config", config.to_str().unwrap(), "--json", "--log-format", "text"])
            .args(["--listen", &format!("127.0.0.1:{port}"), "--summary", summary.to_str().unwrap()])
            .envs(envs.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("DI_DAEMON_LOG").unwrap_or(
                    "warn,defender_sources=info,defender_pipeline=info,defender_sinks=info,defender_ingest=info".into(),
                ),
            )
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn defender-ingest");
        Self { child, port, summary, log }
    }

    /// GET `path` on the probe port: (status, body); None while nothing listens.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
        Some((status, body))
    }

    /// Waits until `/readyz` answers 200 (the broker is reachable).
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.get("/readyz").map(|r| r.0) != Some(200) {
            assert!(self.child.try_wait().unwrap().is_none(), "daemon exited early:\n{}", self.log_text());
            assert!(Instant::now() < deadline, "not ready after {timeout:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One metric's samples: labels text → value.
    pub fn metric(&self, name: &str) -> BTreeMap<String, f64> {
        let (_, body) = self.get("/metrics").expect("metrics answer");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                let (n, labels) = key.split_once('{').map_or((key, ""), |(n, l)| (n, l.trim_end_matches('}')));
                (n == name).then(|| (labels.to_string(), value.parse().unwrap()))
            })
            .collect()
    }

    /// The exit status, if the daemon has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait on the daemon")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits (bounded) for the exit: the exit status and the summary it wrote.
    pub fn terminate(mut self, timeout: Duration) -> (std::process::ExitStatus, Value) {
        let ok = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().unwrap();
        assert!(ok.success(), "kill -TERM");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("no exit {timeout:?} after SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let summary = std::fs::read_to_string(&self.summary)
            .unwrap_or_else(|e| panic!("no summary ({e}), exit {status}:\n{}", self.log_text()));
        (status, serde_json::from_str(&summary).expect("summary JSON"))
    }

    /// SIGKILL: no chance to drain or commit.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().unwrap();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // The test failed: its temporary directory goes away, so show the daemon's log.
            eprintln!("---- log of the daemon ({}) ----\n{}", self.log.display(), self.log_text());
        }
    }
}
