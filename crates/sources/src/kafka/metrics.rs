//! What the Kafka consumer reports for metrics and readiness: shared between the consumer's
//! thread, which updates it, and the binary's `/metrics` and readiness probes, which read
//! snapshots.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

/// What the consumer reports for metrics and readiness.
#[derive(Debug, Clone, Default)]
pub struct KafkaMetrics(Arc<Mutex<KafkaState>>);

/// A snapshot of [`KafkaMetrics`].
#[derive(Debug, Clone, Default)]
pub struct KafkaState {
    /// Per `topic/partition` currently assigned: messages between the committed offset and the
    /// end of the partition (librdkafka's `consumer_lag`; -1 while unknown).
    pub lag: BTreeMap<String, i64>,
    /// Per `topic/partition`: the last offset committed by this process.
    pub committed: BTreeMap<String, i64>,
    /// The `topic/partition`s this process reads now.
    pub assigned: std::collections::BTreeSet<String>,
    /// At least one broker connection is up (from the last statistics).
    pub broker_up: bool,
    pub rebalances: u64,
    /// Fetching is paused because the pipeline is behind.
    pub paused: bool,
    /// Times fetching was paused.
    pub pauses: u64,
    /// Messages handed to the pipeline.
    pub messages: u64,
    pub commit_errors: u64,
}

impl KafkaMetrics {
    pub fn snapshot(&self) -> KafkaState {
        self.0.lock().expect("kafka metrics poisoned").clone()
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut KafkaState)) {
        f(&mut self.0.lock().expect("kafka metrics poisoned"));
    }
}
