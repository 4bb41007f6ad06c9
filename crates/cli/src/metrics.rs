//! Every metric `/metrics` serves, in one table ([`METRICS`]: name, kind, labels, help);
//! `docs/METRICS.md` is checked against it by a test, so the two cannot drift.
//!
//! The values go through the `metrics` facade into `metrics-exporter-prometheus`'s recorder,
//! which renders the exposition. Most are mirrored at each scrape from what the run already
//! counts (the last [`Progress`], the Kafka consumer's state, the stages' [`Health`]): counters
//! with `absolute`, gauges with `set`. The batch-time histogram is recorded by the pipeline as
//! each epoch ends (`defender_pipeline::BATCH_SECONDS`).
//!
//! Label sets are bounded: `table` by the catalog plus `[pipeline] max_unknown_tables` (and the
//! overflow table), `reason` by the dead-letter reasons, drop reasons and the known tables'
//! columns, `partition` by the partitions this process holds now (gauges of partitions given
//! back disappear at the next scrape), `stage` and `sink` by the code.

use std::time::Duration;

use defender_core::{TableStats, health::Health};
use defender_pipeline::Progress;
use defender_sources::{eventhubs::EventHubsState, kafka::KafkaState};
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

/// What a metric is, for its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric.
#[derive(Debug)]
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    #[allow(dead_code)] // read by the test that holds docs/METRICS.md to this table
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn def(name: &'static str, kind: Kind, labels: &'static [&'static str], help: &'static str) -> Def {
    Def { name, kind, labels, help }
}

use Kind::{Counter, Gauge, Histogram};

const TABLE: &[&str] = &["table"];
const TABLE_REASON: &[&str] = &["table", "reason"];
const PARTITION: &[&str] = &["partition"];
const NONE: &[&str] = &[];

/// Every metric, in the order `/metrics` and docs/METRICS.md list them.
pub const METRICS: &[Def] = &[
    def("defender_records_in_total", Counter, TABLE, "Records read, per table."),
    def("defender_input_bytes_total", Counter, TABLE, "Input bytes, per table."),
    def("defender_records_delivered_total", Counter, TABLE, "Records at least one destination took."),
    def("defender_records_filtered_total", Counter, TABLE, "Records no destination took (filters)."),
    def("defender_records_dead_lettered_total", Counter, TABLE_REASON, "Records dead-lettered, per table and reason."),
    def("defender_records_dropped_total", Counter, TABLE_REASON, "Records a destination refused by rule, per reason."),
    def("defender_values_coerced_total", Counter, TABLE_REASON, "Values coerced to their column type, per column."),
    def("defender_rows_archived_total", Counter, TABLE, "Rows stored in the Parquet archive."),
    def("defender_archive_bytes_total", Counter, TABLE, "Parquet bytes stored."),
    def("defender_rows_sentinel_total", Counter, TABLE, "Rows the Logs Ingestion API accepted."),
    def(
        "defender_rows_sentinel_rejected_total",
        Counter,
        TABLE,
        "Rows the Sentinel path could not deliver (dead-lettered as sentinel_rejected or encode_failed).",
    ),
    def("defender_values_truncated_total", Counter, TABLE, "Values cut at the 64 KB field limit for Sentinel."),
    def("defender_sentinel_retries_total", Counter, NONE, "Logs Ingestion calls retried after a transient error."),
    def("defender_sentinel_throttled_total", Counter, NONE, "Logs Ingestion calls retried after throttling."),
    def(
        "defender_archive_replayed_rows_total",
        Counter,
        NONE,
        "Rows read again after a restart that the archive already held.",
    ),
    def(
        "defender_sentinel_replayed_rows_total",
        Counter,
        NONE,
        "Rows read again after a restart that Sentinel had already accepted (not sent again).",
    ),
    def(defender_pipeline::BATCH_SECONDS, Histogram, NONE, "Time the sinks took per decoded batch (epoch), seconds."),
    def("defender_durable_offset", Gauge, PARTITION, "Last offset every sink made durable, per partition."),
    def("defender_kafka_consumer_lag", Gauge, PARTITION, "Messages between the committed offset and the end."),
    def("defender_kafka_assigned", Gauge, PARTITION, "1 for each partition this process reads."),
    def("defender_kafka_committed_offset", Gauge, PARTITION, "Last offset committed, per partition."),
    def("defender_kafka_paused", Gauge, NONE, "1 while fetching is paused (pipeline behind)."),
    def("defender_kafka_pauses_total", Counter, NONE, "Times fetching was paused (pipeline behind)."),
    def("defender_kafka_messages_total", Counter, NONE, "Messages handed to the pipeline."),
    def("defender_kafka_broker_up", Gauge, NONE, "1 while a broker connection is up."),
    def("defender_kafka_rebalances_total", Counter, NONE, "Partition assignments received."),
    def("defender_kafka_commit_errors_total", Counter, NONE, "Offset commits that failed."),
    def(
        "defender_eventhubs_assigned",
        Gauge,
        PARTITION,
        "1 for each Event Hubs partition this replica owns and reads.",
    ),
    def(
        "defender_eventhubs_checkpoint_sequence_number",
        Gauge,
        PARTITION,
        "Last sequence number checkpointed, per partition.",
    ),
    def(
        "defender_eventhubs_connected",
        Gauge,
        NONE,
        "1 while the event processor runs (namespace and checkpoint store reached).",
    ),
    def("defender_eventhubs_messages_total", Counter, NONE, "Events handed to the pipeline."),
    def("defender_eventhubs_replayed_total", Counter, NONE, "Events sent again after a link recovery, skipped."),
    def(
        "defender_eventhubs_partition_losses_total",
        Counter,
        NONE,
        "Partitions lost (to another replica, or a failed link).",
    ),
    def("defender_eventhubs_checkpoint_errors_total", Counter, NONE, "Checkpoint writes that failed."),
    def(
        "defender_stage_silent_seconds",
        Gauge,
        &["stage"],
        "Seconds since a pipeline stage (source, decode, route, sentinel, archive, acks) last reported.",
    ),
    def(
        "defender_stage_stalled",
        Gauge,
        &["stage"],
        "1 while a stage works without progress past the liveness threshold (/healthz fails).",
    ),
    def(
        "defender_sink_refused",
        Gauge,
        &["sink"],
        "1 while a destination refuses us permanently and the data is held (/readyz fails).",
    ),
    def("defender_uptime_seconds", Gauge, NONE, "Seconds since the run started."),
];

/// Bucket bounds of the batch-time histogram, seconds.
const BATCH_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The installed recorder.
#[derive(Debug, Clone)]
pub struct Exporter(PrometheusHandle);

impl Exporter {
    /// Installs the process's recorder (once: later calls return the first), with every
    /// metric described.
    pub fn install() -> Self {
        static INSTALLED: std::sync::OnceLock<Exporter> = std::sync::OnceLock::new();
        INSTALLED
            .get_or_init(|| {
                let recorder = PrometheusBuilder::new()
                    // Gauges are set at every scrape: one not set is of a partition given back.
                    .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_millis(500)))
                    .set_buckets_for_metric(Matcher::Full(defender_pipeline::BATCH_SECONDS.into()), BATCH_BUCKETS)
                    .expect("bucket bounds are not empty")
                    .build_recorder();
                let handle = recorder.handle();
                if metrics::set_global_recorder(recorder).is_err() {
                    tracing::warn!("a metrics recorder was already installed: /metrics may be incomplete");
                }
                for d in METRICS {
                    match d.kind {
                        Counter => metrics::describe_counter!(d.name, d.help),
                        Gauge => metrics::describe_gauge!(d.name, d.help),
                        Histogram => metrics::describe_histogram!(d.name, d.help),
                    }
                }
                Exporter(handle)
            })
            .clone()
    }

    /// Keeps the histogram's storage bounded between scrapes; call every few seconds.
    pub fn upkeep(&self) {
        self.0.run_upkeep();
    }

    /// Mirrors the run's state into the recorder and renders the exposition.
    pub fn render(
        &self,
        p: &Progress,
        kafka: Option<&KafkaState>,
        eventhubs: Option<&EventHubsState>,
        health: &Health,
        threshold: Duration,
    ) -> String {
        record(p, kafka, health, threshold);
        if let Some(e) = eventhubs {
            record_eventhubs(e);
        }
        self.0.render()
    }
}

fn record(p: &Progress, kafka: Option<&KafkaState>, health: &Health, threshold: Duration) {
    type Count = fn(&TableStats) -> u64;
    let per_table: [(&'static str, Count); 9] = [
        ("defender_records_in_total", |s| s.records_in),
        ("defender_input_bytes_total", |s| s.bytes_in),
        ("defender_records_delivered_total", |s| s.delivered),
        ("defender_records_filtered_total", |s| s.filtered),
        ("defender_rows_archived_total", |s| s.written_archive),
        ("defender_archive_bytes_total", |s| s.parquet_bytes),
        ("defender_rows_sentinel_total", |s| s.sent_sentinel),
        ("defender_rows_sentinel_rejected_total", |s| s.sentinel_rejected),
        ("defender_values_truncated_total", |s| s.sentinel_truncated),
    ];
    type ByReason = fn(&TableStats) -> &std::collections::BTreeMap<String, u64>;
    let by_reason: [(&'static str, ByReason); 3] = [
        ("defender_records_dead_lettered_total", |s| &s.dead_lettered),
        ("defender_records_dropped_total", |s| &s.dropped),
        ("defender_values_coerced_total", |s| &s.coerced),
    ];
    for (table, s) in &p.accounting.tables {
        for (name, get) in per_table {
            counter!(name, "table" => table.to_string()).absolute(get(s));
        }
        for (name, get) in by_reason {
            for (reason, n) in get(s) {
                counter!(name, "table" => table.to_string(), "reason" => reason.clone()).absolute(*n);
            }
        }
    }
    let sinks = &p.sinks;
    counter!("defender_sentinel_retries_total").absolute(sinks.sentinel_retries);
    counter!("defender_sentinel_throttled_total").absolute(sinks.sentinel_throttled);
    counter!("defender_archive_replayed_rows_total").absolute(sinks.archive_replayed_rows);
    counter!("defender_sentinel_replayed_rows_total").absolute(sinks.sentinel_replayed_rows);
    for (partition, offset) in &p.durable {
        gauge!("defender_durable_offset", "partition" => partition.to_string()).set(*offset as f64);
    }
    if let Some(k) = kafka {
        for (partition, lag) in &k.lag {
            gauge!("defender_kafka_consumer_lag", "partition" => partition.clone()).set(*lag as f64);
        }
        for partition in &k.assigned {
            gauge!("defender_kafka_assigned", "partition" => partition.clone()).set(1.0);
        }
        for (partition, offset) in &k.committed {
            gauge!("defender_kafka_committed_offset", "partition" => partition.clone()).set(*offset as f64);
        }
        gauge!("defender_kafka_paused").set(f64::from(u8::from(k.paused)));
        gauge!("defender_kafka_broker_up").set(f64::from(u8::from(k.broker_up)));
        counter!("defender_kafka_pauses_total").absolute(k.pauses);
        counter!("defender_kafka_messages_total").absolute(k.messages);
        counter!("defender_kafka_rebalances_total").absolute(k.rebalances);
        counter!("defender_kafka_commit_errors_total").absolute(k.commit_errors);
    }
    for s in health.stages() {
        let stalled = s.stalled(threshold);
        gauge!("defender_stage_silent_seconds", "stage" => s.name).set(s.silent.as_secs_f64());
        gauge!("defender_stage_stalled", "stage" => s.name).set(f64::from(u8::from(stalled)));
    }
    let refused = health.refused();
    for name in health.conditions() {
        let refused = refused.iter().any(|(n, ..)| *n == name);
        gauge!("defender_sink_refused", "sink" => name).set(f64::from(u8::from(refused)));
    }
    gauge!("defender_uptime_seconds").set(p.elapsed.as_secs_f64());
}

fn record_eventhubs(e: &EventHubsState) {
    for partition in &e.assigned {
        gauge!("defender_eventhubs_assigned", "partition" => partition.clone()).set(1.0);
    }
    for (partition, seq) in &e.committed {
        gauge!("defender_eventhubs_checkpoint_sequence_number", "partition" => partition.clone()).set(*seq as f64);
    }
    gauge!("defender_eventhubs_connected").set(f64::from(u8::from(e.connected)));
    counter!("defender_eventhubs_messages_total").absolute(e.messages);
    counter!("defender_eventhubs_replayed_total").absolute(e.replayed);
    counter!("defender_eventhubs_partition_losses_total").absolute(e.losses);
    counter!("defender_eventhubs_checkpoint_errors_total").absolute(e.checkpoint_errors);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/METRICS.md lists exactly the metrics of [`METRICS`], each with its kind and labels.
    #[test]
    fn the_metrics_document_lists_every_metric_with_its_kind_and_labels() {
        let doc = include_str!("../../../docs/METRICS.md");
        let rows: Vec<Vec<String>> = doc
            .lines()
            .filter(|l| l.starts_with("| `defender_"))
            .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().replace('`', "")).collect())
            .collect();
        let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        let expected: Vec<&str> = METRICS.iter().map(|d| d.name).collect();
        assert_eq!(names, expected, "docs/METRICS.md and METRICS list different metrics (or in another order)");
        for (row, d) in rows.iter().zip(METRICS) {
            let kind = format!("{:?}", d.kind).to_lowercase();
            assert_eq!(row[1], kind, "{}: kind", d.name);
            let labels = if d.labels.is_empty() { "-".to_string() } else { d.labels.join(", ") };
            assert_eq!(row[2], labels, "{}: labels", d.name);
        }
    }

    #[test]
    fn names_are_prometheus_names_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for d in METRICS {
            assert!(d.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{}", d.name);
            assert_eq!(d.kind == Counter, d.name.ends_with("_total"), "{}: counters end in _total", d.name);
            assert!(seen.insert(d.name), "{} twice", d.name);
        }
    }
}
