//! `/healthz`, `/readyz` and `/metrics` of a running pipeline (`[service] listen`).
//!
//! - `/healthz`: the process is alive and its async runtime turns (a heartbeat within
//!   [`STALE`]): Kubernetes restarts the pod otherwise. A sink waiting out an outage is not
//!   unhealthy: the pipeline holds its data and resumes (restarting would only re-read it).
//! - `/readyz`: the config was valid (we are running), the broker is reachable (Kafka source) and
//!   the process is not shutting down. Sinks in a permanent error end the process, so a running
//!   process has none.
//! - `/metrics`: Prometheus text format, from the last progress report and the consumer state.

use std::{
    fmt::Write,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use bytes::Bytes;
use defender_pipeline::Progress;
use defender_sources::kafka::KafkaMetrics;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A pipeline loop that has not reported for this long is not healthy.
pub const STALE: Duration = Duration::from_secs(30);

/// What the endpoints report on, updated by the run.
#[derive(Debug)]
pub struct Status {
    last: Mutex<(Progress, Instant)>,
    heartbeat: Mutex<Instant>,
    kafka: Option<KafkaMetrics>,
    stopping: AtomicBool,
}

impl Status {
    pub fn new(kafka: Option<KafkaMetrics>) -> Arc<Self> {
        Arc::new(Self {
            last: Mutex::new((Progress::default(), Instant::now())),
            heartbeat: Mutex::new(Instant::now()),
            kafka,
            stopping: AtomicBool::new(false),
        })
    }

    pub fn progress(&self, p: &Progress) {
        *self.last.lock().expect("status poisoned") = (p.clone(), Instant::now());
    }

    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn healthy(&self) -> Result<(), String> {
        let age = self.heartbeat.lock().expect("status poisoned").elapsed();
        if age > STALE { Err(format!("runtime silent for {age:.0?}")) } else { Ok(()) }
    }

    fn ready(&self) -> Result<(), String> {
        self.healthy()?;
        if self.stopping.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        if let Some(k) = &self.kafka
            && !k.snapshot().broker_up
        {
            return Err("no kafka broker connection up".into());
        }
        Ok(())
    }

    /// The Prometheus exposition.
    pub fn metrics(&self) -> String {
        let (p, _) = self.last.lock().expect("status poisoned").clone();
        let mut m = Metrics::default();
        let tables = &p.accounting.tables;
        let per_table = |m: &mut Metrics, name: &str, help: &str, f: &dyn Fn(&defender_core::TableStats) -> u64| {
            m.family(name, "counter", help);
            for (t, s) in tables {
                m.sample(name, &[("table", t)], f(s) as f64);
            }
        };
        per_table(&mut m, "defender_records_in_total", "Records read, per table.", &|s| s.records_in);
        per_table(&mut m, "defender_input_bytes_total", "Input bytes, per table.", &|s| s.bytes_in);
        per_table(&mut m, "defender_records_delivered_total", "Records at least one destination took.", &|s| {
            s.delivered
        });
        per_table(&mut m, "defender_records_filtered_total", "Records no destination took (filters).", &|s| s.filtered);
        per_table(&mut m, "defender_rows_archived_total", "Rows stored in the Parquet archive.", &|s| {
            s.written_archive
        });
        per_table(&mut m, "defender_archive_bytes_total", "Parquet bytes stored.", &|s| s.parquet_bytes);
        per_table(&mut m, "defender_rows_sentinel_total", "Rows the Logs Ingestion API accepted.", &|s| {
            s.sent_sentinel
        });
        per_table(&mut m, "defender_rows_sentinel_rejected_total", "Rows refused by the Logs Ingestion API.", &|s| {
            s.sentinel_rejected
        });
        type ByReason = fn(&defender_core::TableStats) -> &std::collections::BTreeMap<String, u64>;
        let by_reason: [(&str, &str, ByReason); 3] = [
            ("defender_records_dead_lettered_total", "Records dead-lettered, per table and reason.", |s| {
                &s.dead_lettered
            }),
            ("defender_records_dropped_total", "Records a destination refused by rule, per reason.", |s| &s.dropped),
            ("defender_values_coerced_total", "Values coerced to their column type, per column.", |s| &s.coerced),
        ];
        for (name, help, get) in by_reason {
            m.family(name, "counter", help);
            for (t, s) in tables {
                for (reason, n) in get(s) {
                    m.sample(name, &[("table", t), ("reason", reason)], *n as f64);
                }
            }
        }
        m.family("defender_sentinel_retries_total", "counter", "Logs Ingestion calls retried after a transient error.");
        m.sample("defender_sentinel_retries_total", &[], p.sinks.sentinel_retries as f64);
        m.family("defender_sentinel_throttled_total", "counter", "Logs Ingestion calls retried after throttling.");
        m.sample("defender_sentinel_throttled_total", &[], p.sinks.sentinel_throttled as f64);
        m.family(
            "defender_archive_replayed_rows_total",
            "counter",
            "Rows read again after a restart that the archive already held.",
        );
        m.sample("defender_archive_replayed_rows_total", &[], p.sinks.archive_replayed_rows as f64);
        m.family(
            "defender_sentinel_replayed_rows_total",
            "counter",
            "Rows read again after a restart that Sentinel had already accepted (not sent again).",
        );
        m.sample("defender_sentinel_replayed_rows_total", &[], p.sinks.sentinel_replayed_rows as f64);
        m.family("defender_batch_seconds", "summary", "Time the sinks took per decoded batch (epoch).");
        m.sample("defender_batch_seconds_sum", &[], p.sinks.epoch_seconds);
        m.sample("defender_batch_seconds_count", &[], p.sinks.epochs as f64);
        m.family("defender_durable_offset", "gauge", "Last offset every sink made durable, per partition.");
        for (partition, offset) in &p.durable {
            m.sample("defender_durable_offset", &[("partition", &partition.to_string())], *offset as f64);
        }
        if let Some(k) = &self.kafka {
            let k = k.snapshot();
            m.family("defender_kafka_consumer_lag", "gauge", "Messages between the committed offset and the end.");
            for (partition, lag) in &k.lag {
                m.sample("defender_kafka_consumer_lag", &[("partition", partition)], *lag as f64);
            }
            m.family("defender_kafka_assigned", "gauge", "1 for each partition this process reads.");
            for partition in &k.assigned {
                m.sample("defender_kafka_assigned", &[("partition", partition)], 1.0);
            }
            m.family("defender_kafka_committed_offset", "gauge", "Last offset committed, per partition.");
            for (partition, offset) in &k.committed {
                m.sample("defender_kafka_committed_offset", &[("partition", partition)], *offset as f64);
            }
            for (name, help, kind, v) in [
                ("defender_kafka_paused", "1 while fetching is paused (pipeline behind).", "gauge", k.paused as u64),
                ("defender_kafka_pauses_total", "Times fetching was paused (pipeline behind).", "counter", k.pauses),
                ("defender_kafka_messages_total", "Messages handed to the pipeline.", "counter", k.messages),
                ("defender_kafka_broker_up", "1 while a broker connection is up.", "gauge", k.broker_up as u64),
                ("defender_kafka_rebalances_total", "Partition assignments received.", "counter", k.rebalances),
                ("defender_kafka_commit_errors_total", "Offset commits that failed.", "counter", k.commit_errors),
            ] {
                m.family(name, kind, help);
                m.sample(name, &[], v as f64);
            }
        }
        m.family("defender_uptime_seconds", "gauge", "Seconds since the run started.");
        m.sample("defender_uptime_seconds", &[], p.elapsed.as_secs_f64());
        m.0
    }
}

#[derive(Default)]
struct Metrics(String);

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.0, "{}{k}=\"{v}\"", if i > 0 { "," } else { "" });
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// Binds `addr` (so a busy port fails the start) and serves the endpoints until the runtime ends.
pub async fn spawn(addr: &str, status: Arc<Status>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("service.listen: cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let beating = status.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            *beating.heartbeat.lock().expect("status poisoned") = Instant::now();
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let status = status.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let status = status.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(&status, &req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    Ok(local)
}

fn respond(status: &Status, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let text = |code: StatusCode, body: String, kind: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(kind));
        r
    };
    let plain = "text/plain; charset=utf-8";
    let probe = |r: Result<(), String>| match r {
        Ok(()) => text(StatusCode::OK, "ok\n".into(), plain),
        Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, why + "\n", plain),
    };
    match req.uri().path() {
        "/healthz" => probe(status.healthy()),
        "/readyz" => probe(status.ready()),
        "/metrics" => text(StatusCode::OK, status.metrics(), "text/plain; version=0.0.4; charset=utf-8"),
        _ => text(StatusCode::NOT_FOUND, "not found: try /healthz, /readyz or /metrics\n".into(), plain),
    }
}
