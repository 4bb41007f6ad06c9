//! Event Hubs through its Kafka endpoint (or any Kafka broker), as a consumer group member.
//!
//! One librdkafka consumer, polled on a thread of its own: librdkafka is a foreign thread, and
//! its rebalance callbacks run inside `poll`, where they must be able to wait for the pipeline.
//!
//! - **Partitions** are named `topic/partition` and numbered `topic index << 16 | partition` for
//!   the pipeline (Event Hubs has at most a few thousand partitions per hub).
//! - **Acknowledgement**: nothing is committed automatically (auto commit and auto offset store
//!   are off). The pipeline records in [`Positions`] the last offset of each partition that every
//!   sink made durable; this loop commits `offset + 1` on a timer (Event Hubs throttles commits
//!   to a few per second per partition), and synchronously when partitions are revoked or the
//!   source stops.
//! - **Revocation** (rebalance or stop): before `poll` returns from the revoke callback, the
//!   pipeline is told (`SourceEvent::Revoked`) to flush what it holds of those partitions; once it
//!   has made it durable (or `revoke_timeout` passed: then the source fails and the process
//!   restarts from the last commit) the final offsets are committed and the partitions let go.
//!   Messages fetched but not yet handed to the pipeline are dropped: the next owner reads them
//!   again from the commit.
//! - **Backpressure without missing polls**: `max.poll.interval.ms` counts time between polls,
//!   so this loop never blocks on the pipeline. When the byte budget is spent or the pipeline's
//!   channel is full it *pauses* every assigned partition (librdkafka stops fetching) and goes on
//!   calling `poll` every [`POLL`], which keeps group membership, rebalances and token refresh
//!   alive while memory stays flat; it resumes when the pipeline has taken what was held back.
//!   The only waits longer than a poll are bounded: a revocation (`revoke_timeout`) and the
//!   final drain on stop (`shutdown_grace`).
//!
//! The module's files: `config.rs` (settings, the librdkafka configuration), `context.rs` (the
//! loop's state and librdkafka's callbacks: assignment, revocation, commits), `metrics.rs`
//! (what the consumer reports), and here the poll loop.
//!
//! [`Positions`]: crate::Positions

mod config;
mod context;
mod metrics;

use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
};

pub use config::{KafkaAuth, KafkaConfig, StartPosition, TokenProvider};
use context::Ctx;
pub use metrics::{KafkaMetrics, KafkaState};

use crate::{SourceError, SourceIo};

/// How long one `poll` waits for a message.
pub const POLL: Duration = Duration::from_millis(100);
/// Timeout of the broker round trips made inside callbacks (committed offsets, lookups).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the Kafka source.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka configuration: {0}")]
    Config(String),
    #[error("kafka: {0}")]
    Client(String),
    #[error("partitions {partitions:?} were revoked but the pipeline did not make them durable within {timeout:?}")]
    RevokeTimeout { partitions: Vec<String>, timeout: Duration },
}

/// The Kafka source.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    config: KafkaConfig,
    metrics: KafkaMetrics,
}

impl KafkaSource {
    pub fn new(config: KafkaConfig) -> Self {
        Self { config, metrics: KafkaMetrics::default() }
    }

    pub fn metrics(&self) -> KafkaMetrics {
        self.metrics.clone()
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Reads until `io.stop` is raised (or the pipeline goes away), then hands every partition
    /// back through the pipeline, commits and leaves the group.
    pub async fn run(self, io: SourceIo) -> Result<(), SourceError> {
        tokio::task::spawn_blocking(move || self.run_blocking(io))
            .await
            .map_err(|e| SourceError::Kafka(KafkaError::Client(format!("consumer thread: {e}"))))?
            .map_err(SourceError::Kafka)
    }

    fn run_blocking(self, io: SourceIo) -> Result<(), KafkaError> {
        let ctx = Ctx::new(&self.config, &io, self.metrics.clone());
        let consumer = self.config.consumer(ctx)?;
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        if self.config.group {
            consumer.subscribe(&topics).map_err(|e| KafkaError::Client(e.to_string()))?;
        } else {
            assign_all(&consumer, &self.config)?;
        }
        tracing::info!(topics = ?self.config.topics, group = %self.config.group_id,
            bootstrap = %self.config.bootstrap, "kafka source started");
        let mut last_commit = Instant::now();
        let mut last_flush = Instant::now();
        loop {
            // The loop turns at least every POLL: a consumer thread stuck anywhere stops this.
            io.beat.working();
            if *io.stop.borrow() || io.events.is_closed() {
                break;
            }
            if let Some(e) = consumer.context().take_failure() {
                return Err(e);
            }
            let ctx = consumer.context();
            let flowing = ctx.pump(false);
            ctx.set_paused(&consumer, !flowing);
            match consumer.poll(POLL) {
                Some(Ok(m)) => {
                    let key = ctx.key(m.topic(), m.partition());
                    let body = Bytes::copy_from_slice(m.payload().unwrap_or_default());
                    ctx.push(key, m.offset(), body);
                }
                Some(Err(e)) => tracing::warn!(error = %e, "kafka consumer error (librdkafka retries)"),
                None => {}
            }
            // Partial chunks go out when the partitions are idle, and at least every poll
            // interval while they are busy (latency), not only when a chunk fills.
            if last_flush.elapsed() >= POLL {
                ctx.pump(true);
                last_flush = Instant::now();
            }
            if self.config.group && last_commit.elapsed() >= self.config.commit_interval {
                ctx.commit(&consumer, None, CommitMode::Async);
                last_commit = Instant::now();
            }
        }
        // Stop: hand everything back (the pipeline drains it), commit, leave the group.
        let ctx = consumer.context();
        let all = ctx.assigned_keys();
        let result = ctx.revoke(&consumer, &all, self.config.shutdown_grace);
        if self.config.group {
            consumer.unsubscribe();
        }
        tracing::info!("kafka source stopped");
        result
    }
}

/// Estimate mode: every partition of every topic, from the start position, without a group.
fn assign_all(consumer: &BaseConsumer<Ctx>, config: &KafkaConfig) -> Result<(), KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for topic in &config.topics {
        let md = consumer
            .fetch_metadata(Some(topic), CALL_TIMEOUT)
            .map_err(|e| KafkaError::Client(format!("metadata of {topic}: {e}")))?;
        for t in md.topics() {
            if let Some(e) = t.error() {
                return Err(KafkaError::Client(format!("topic {topic}: {e:?}")));
            }
            for p in t.partitions() {
                let offset = match config.start {
                    StartPosition::Earliest => Offset::Beginning,
                    StartPosition::Latest => Offset::End,
                    StartPosition::Timestamp(ms) => Offset::Offset(ms),
                };
                tpl.add_partition_offset(topic, p.id(), offset).map_err(|e| KafkaError::Client(e.to_string()))?;
            }
        }
    }
    if let StartPosition::Timestamp(_) = config.start {
        tpl = consumer.offsets_for_times(tpl, CALL_TIMEOUT).map_err(|e| KafkaError::Client(e.to_string()))?;
    }
    consumer.assign(&tpl).map_err(|e| KafkaError::Client(e.to_string()))?;
    let ctx = consumer.context();
    for e in tpl.elements() {
        ctx.assigned(e.topic(), e.partition(), None);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
