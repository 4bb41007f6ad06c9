//! Event Hubs over AMQP (`azure_messaging_eventhubs`), as one replica of a consumer group.
//!
//! - **Ownership** is the SDK's [`EventProcessor`]: its load balancer claims partitions in the
//!   Blob checkpoint store (ETag-guarded `ownership/<partition>` blobs), renews them every
//!   `load_balancing_interval`, takes over claims older than `partition_expiration` (a dead
//!   replica's), and opens each owned partition with an owner-level (epoch) receiver, so that the
//!   service disconnects any older reader. No coordination of our own: the blobs are the ones
//!   the other SDKs share ([`store`]).
//! - **Partitions** are named `<event hub>/<partition id>`; the pipeline numbers them by the
//!   partition id (Event Hubs ids are `0..n`). **Positions are the partition's sequence
//!   numbers**, which increase by one per event and never repeat.
//! - **One task per owned partition** ([`partition`]): `Assigned` (with the checkpoint's
//!   sequence number), then chunks of events, cut by size or age. A spent byte budget or a full
//!   channel makes the task wait before it asks the receiver for more; the receiver's link
//!   credit (`prefetch`) bounds what the SDK holds meanwhile, and the link stays attached: the
//!   connection's own task keeps it alive while we wait.
//! - **Checkpoints only from [`Positions`]**: on a timer, when a partition is lost (after the
//!   pipeline's `Revoked` is done) and on stop. A checkpoint holds the sequence number and offset
//!   of the last event every sink made durable; the offset of each event handed over is kept
//!   until a checkpoint passes it. The one exception names no event read: a partition newly
//!   claimed without a checkpoint, whose position is known without reading (`latest`, or
//!   `earliest` when it is empty), gets a first checkpoint at its end before its receiver opens,
//!   and the receiver starts right after it, so that KEDA sees it caught up ([`first`]).
//! - **Losing a partition** (stolen by another replica, the receiver closed by the processor,
//!   or a link that the SDK could not recover) is a `Revoked` of it: the pipeline finishes what
//!   it holds, the checkpoint is written, and the partition client is closed so that the
//!   processor may open it again (from that checkpoint) if it still owns it.
//! - **Estimate mode** reads every partition with a plain [`ConsumerClient`] receiver (no owner
//!   level, no ownership, no checkpoint).
//!
//! Files: `config.rs` (settings, clients), `sas.rs` (SAS tokens from a connection string),
//! `store.rs` (the lower-cased checkpoint store), `first.rs` (first checkpoints), `partition.rs`
//! (a partition's reader) and here the processor's loop.
//!
//! [`EventProcessor`]: azure_messaging_eventhubs::EventProcessor
//! [`ConsumerClient`]: azure_messaging_eventhubs::ConsumerClient
//! [`Positions`]: crate::Positions

mod config;
mod first;
mod metrics;
mod partition;
mod sas;
pub mod store;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use azure_messaging_eventhubs::{
    CheckpointStore, EventProcessor, OpenReceiverOptions, ProcessorStrategy,
    models::{Checkpoint, Ownership, StartPositions},
};
use tokio::task::JoinSet;

/// For the binary's Entra credentials.
pub use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
pub use azure_core::{
    Error as AzureError, Result as AzureResult, error::ErrorKind as AzureErrorKind, http::Url, time::OffsetDateTime,
};
pub use config::{BlobAuth, EventHubsConfig, defaults};
pub use metrics::{EventHubsMetrics, EventHubsState};
use partition::{Part, Reader};
pub use sas::{ConnectionString, SasCredential};

use crate::{SourceError, SourceIo};

/// Errors of the Event Hubs source. Messages never carry a key, a token or a SAS.
#[derive(Debug, thiserror::Error)]
pub enum EventHubsError {
    #[error("event hubs configuration: {0}")]
    Config(String),
    #[error("event hubs: {0}")]
    Client(String),
    #[error("partitions {partitions:?} were lost but the pipeline did not make them durable within {timeout:?}")]
    RevokeTimeout { partitions: Vec<String>, timeout: Duration },
}

/// The Event Hubs source.
#[derive(Debug, Clone)]
pub struct EventHubsSource {
    config: EventHubsConfig,
    metrics: EventHubsMetrics,
}

/// What every partition reader shares.
pub(crate) struct Shared {
    pub(crate) config: EventHubsConfig,
    pub(crate) store: Option<Arc<dyn CheckpointStore + Send + Sync>>,
    pub(crate) positions: crate::Positions,
    pub(crate) metrics: EventHubsMetrics,
    /// The partitions read now, by the pipeline's number.
    pub(crate) parts: std::sync::Mutex<BTreeMap<u32, Part>>,
    /// One checkpoint write at a time: a timer's and a revocation's must not cross (the older
    /// one landing last would move the checkpoint back).
    pub(crate) checkpointing: tokio::sync::Mutex<()>,
}

impl EventHubsSource {
    pub fn new(config: EventHubsConfig) -> Self {
        Self { config, metrics: EventHubsMetrics::default() }
    }

    pub fn config(&self) -> &EventHubsConfig {
        &self.config
    }

    pub fn metrics(&self) -> EventHubsMetrics {
        self.metrics.clone()
    }

    /// Reads until `io.stop` is raised (or the pipeline goes away), then hands every partition
    /// back through the pipeline and checkpoints it.
    ///
    /// The source runs on a thread of its own, on a single-threaded runtime: the SDK's
    /// partition client streams are not `Send` (`PartitionClient::stream_events` returns a
    /// `Pin<Box<dyn Stream + '_>>`), so every reader is a local task there. The AMQP connection's
    /// own tasks run there too; the pipeline is reached through its channel and budget, which
    /// work across runtimes.
    pub async fn run(self, io: SourceIo) -> Result<(), SourceError> {
        let thread = tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| EventHubsError::Client(format!("source runtime: {e}")))?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                if self.config.processor { self.run_processor(io).await } else { self.run_estimate(io).await }
            })
        });
        thread
            .await
            .map_err(|e| EventHubsError::Client(format!("source thread: {e}")))
            .and_then(|r| r)
            .map_err(SourceError::EventHubs)
    }

    fn shared(&self, io: &SourceIo, store: Option<Arc<dyn CheckpointStore + Send + Sync>>) -> Arc<Shared> {
        Arc::new(Shared {
            config: self.config.clone(),
            store,
            positions: io.positions.clone(),
            metrics: self.metrics.clone(),
            parts: Default::default(),
            checkpointing: Default::default(),
        })
    }

    async fn run_processor(self, io: SourceIo) -> Result<(), EventHubsError> {
        let mut config = self.config.clone();
        if config.owner_id.is_empty() {
            config.owner_id = azure_core::Uuid::new_v4().to_string();
        }
        let c = &config;
        let owner_id = c.owner_id.clone();
        let store: Arc<dyn CheckpointStore + Send + Sync> = c.store()?;
        let consumer = c.consumer().await?;
        let keys = partition_keys(&consumer).await?;
        // The processor's store writes each newly claimed partition's first checkpoint where
        // its position is known (first.rs); a client of its own reads the partitions' ends.
        let ends = Arc::new(c.consumer().await?);
        let first = Arc::new(first::FirstCheckpoints::new(store.clone(), ends, owner_id.clone(), c.start));
        let processor = EventProcessor::builder()
            .with_load_balancing_strategy(ProcessorStrategy::Balanced)
            .with_update_interval(to_sdk(c.load_balancing_interval))
            .with_partition_expiration_duration(to_sdk(c.partition_expiration))
            .with_start_positions(StartPositions { default: c.sdk_start(), ..Default::default() })
            .with_prefetch(c.prefetch.max(1))
            .build(consumer, first)
            .await
            .map_err(|e| EventHubsError::Client(format!("cannot start the event processor: {e}")))?;
        let shared = self.shared(&io, Some(store.clone()));
        self.metrics.update(|m| m.connected = true);
        tracing::info!(namespace = %c.namespace, event_hub = %c.event_hub, consumer_group = %c.consumer_group,
            owner_id = %owner_id, "event hubs source started");
        let mut runner = {
            let p = processor.clone();
            tokio::spawn(async move { p.run().await })
        };
        let mut readers: JoinSet<Result<(), EventHubsError>> = JoinSet::new();
        let mut stop = io.stop.clone();
        let mut ticker = tokio::time::interval(c.checkpoint_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failure = None;
        loop {
            io.beat.working();
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                biased;
                r = stop.changed() => if r.is_err() { break },
                () = io.events.closed() => break,
                Some(done) = readers.join_next(), if !readers.is_empty() => {
                    if let Some(e) = reader_failure(done) {
                        failure = Some(e);
                        break;
                    }
                }
                _ = ticker.tick() => {
                    let owned: Vec<u32> = shared.parts.lock().expect("parts").keys().copied().collect();
                    for key in owned {
                        partition::checkpoint(&shared, key).await;
                    }
                }
                r = &mut runner => {
                    // The processor stops at the first failed cycle (storage or service
                    // unreachable): the source fails, the process restarts from the checkpoints.
                    let e = match r {
                        Ok(Ok(())) => "the event processor stopped".to_string(),
                        Ok(Err(e)) => format!("the event processor failed: {e}"),
                        Err(e) => format!("the event processor task: {e}"),
                    };
                    failure = Some(EventHubsError::Client(e));
                    break;
                }
                client = processor.next_partition_client() => {
                    let client = client.map_err(|e| EventHubsError::Client(format!("next partition: {e}")))?;
                    let id = client.get_partition_id().to_string();
                    let Some(&key) = keys.get(&id) else {
                        tracing::warn!(partition = %id, "a partition the event hub did not list: not read");
                        continue;
                    };
                    let reader = Reader::new(shared.clone(), &io, key, id);
                    readers.spawn_local(reader.run(client));
                }
            }
        }
        // Stop (or failure): every reader hands its partition back and checkpoints it; the
        // processor stops claiming, and our claims are given up so that other replicas take
        // the partitions without waiting for them to expire.
        let _ = processor.shutdown().await;
        runner.abort();
        let grace = c.shutdown_grace + c.revoke_timeout.min(Duration::from_secs(5));
        let drained = tokio::time::timeout(grace, async {
            while let Some(done) = readers.join_next().await {
                if let Some(e) = reader_failure(done) {
                    failure.get_or_insert(e);
                }
            }
        })
        .await;
        if drained.is_err() {
            readers.abort_all();
            failure.get_or_insert(EventHubsError::RevokeTimeout { partitions: vec!["all".into()], timeout: grace });
        }
        if failure.is_none() {
            relinquish(&*store, c, &owner_id).await;
        }
        self.metrics.update(|m| m.connected = false);
        tracing::info!("event hubs source stopped");
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Estimate: every partition from the start position, no owner level, no checkpoint.
    async fn run_estimate(self, io: SourceIo) -> Result<(), EventHubsError> {
        let consumer = Arc::new(self.config.consumer().await?);
        let keys = partition_keys(&consumer).await?;
        let shared = self.shared(&io, None);
        let mut readers: JoinSet<Result<(), EventHubsError>> = JoinSet::new();
        for (id, key) in keys {
            let receiver = consumer
                .open_receiver_on_partition(
                    id.clone(),
                    Some(OpenReceiverOptions {
                        start_position: Some(self.config.sdk_start()),
                        prefetch: Some(self.config.prefetch.max(1)),
                        ..Default::default()
                    }),
                )
                .await
                .map_err(|e| EventHubsError::Client(format!("cannot open partition {id}: {e}")))?;
            let reader = Reader::new(shared.clone(), &io, key, id);
            readers.spawn_local(reader.run_receiver(receiver));
        }
        let mut failure = None;
        while let Some(done) = readers.join_next().await {
            if let Some(e) = reader_failure(done) {
                failure.get_or_insert(e);
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn reader_failure(done: Result<Result<(), EventHubsError>, tokio::task::JoinError>) -> Option<EventHubsError> {
    match done {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(EventHubsError::Client(format!("partition reader: {e}"))),
    }
}

/// The pipeline's number of each partition id: the id itself when numeric (Event Hubs ids are
/// `0..n`), otherwise its place in the hub's list.
async fn partition_keys(
    consumer: &azure_messaging_eventhubs::ConsumerClient,
) -> Result<BTreeMap<String, u32>, EventHubsError> {
    let props = consumer
        .get_eventhub_properties()
        .await
        .map_err(|e| EventHubsError::Client(format!("cannot read the event hub's partitions: {e}")))?;
    Ok(props.partition_ids.iter().enumerate().map(|(i, id)| (id.clone(), id.parse().unwrap_or(i as u32))).collect())
}

/// Gives up our ownership claims (an empty owner, as the other SDKs relinquish), ETag-guarded
/// so that a claim another replica made meanwhile is left alone.
async fn relinquish(store: &(dyn CheckpointStore + Send + Sync), c: &EventHubsConfig, owner_id: &str) {
    let owned = match store.list_ownerships(&c.namespace, &c.event_hub, &c.consumer_group).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list ownership to relinquish it (it expires)");
            return;
        }
    };
    let mine: Vec<Ownership> = owned
        .into_iter()
        .filter(|o| o.owner_id.as_deref() == Some(owner_id))
        .map(|o| Ownership { owner_id: Some(String::new()), ..o })
        .collect();
    if mine.is_empty() {
        return;
    }
    match store.claim_ownership(&mine).await {
        Ok(given) => tracing::info!(partitions = given.len(), "ownership relinquished"),
        Err(e) => tracing::warn!(error = %e, "cannot relinquish ownership (it expires)"),
    }
}

/// The checkpoint of `partition_id` in the store, if any.
pub(crate) async fn read_checkpoint(shared: &Shared, partition_id: &str) -> Option<Checkpoint> {
    let store = shared.store.as_ref()?;
    let c = &shared.config;
    match store.list_checkpoints(&c.namespace, &c.event_hub, &c.consumer_group).await {
        Ok(all) => all.into_iter().find(|cp| cp.partition_id == partition_id),
        Err(e) => {
            tracing::warn!(error = %e, partition = %partition_id, "cannot read the checkpoint");
            None
        }
    }
}

fn to_sdk(d: Duration) -> azure_core::time::Duration {
    azure_core::time::Duration::try_from(d).unwrap_or(azure_core::time::Duration::seconds(30))
}

#[cfg(test)]
mod tests;
