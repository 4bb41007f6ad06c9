//! What the Event Hubs source reports for metrics and readiness: shared between its tasks, which
//! update it, and the binary's `/metrics` and readiness probes, which read snapshots.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

/// What the source reports.
#[derive(Debug, Clone, Default)]
pub struct EventHubsMetrics(Arc<Mutex<EventHubsState>>);

/// A snapshot of [`EventHubsMetrics`].
#[derive(Debug, Clone, Default)]
pub struct EventHubsState {
    /// The `<hub>/<partition>`s this replica owns and reads now.
    pub assigned: BTreeSet<String>,
    /// Per `<hub>/<partition>`: the last sequence number checkpointed by this replica.
    pub committed: BTreeMap<String, i64>,
    /// The processor is running (the namespace and the checkpoint store were reachable).
    pub connected: bool,
    /// Events handed to the pipeline.
    pub messages: u64,
    /// Events the service sent again after a link recovery, skipped.
    pub replayed: u64,
    /// Partitions lost (to another replica, or a failed link).
    pub losses: u64,
    pub checkpoint_errors: u64,
    /// Events without a sequence number or offset (never from a real namespace), skipped.
    pub malformed: u64,
}

impl EventHubsMetrics {
    pub fn snapshot(&self) -> EventHubsState {
        self.0.lock().expect("event hubs metrics poisoned").clone()
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut EventHubsState)) {
        f(&mut self.0.lock().expect("event hubs metrics poisoned"));
    }
}
