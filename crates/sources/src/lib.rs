//! defender-sources: where message bodies come from.
//!
//! A source is handed a [`SourceIo`] and produces [`SourceEvent`]s into its one bounded channel:
//! chunks of messages of one partition, in offset order; the end of a partition (a file read to
//! its end); and, for sources that share partitions with other processes (Kafka consumer groups,
//! Event Hubs with Blob ownership), partitions assigned and revoked. Memory in flight is
//! bounded in bytes by a [`ByteBudget`]: a chunk holds a permit for its bytes until the decoder
//! is done with it, so a slow pipeline stops the source from reading.
//!
//! Acknowledgements flow back through [`Positions`]: the pipeline records, per partition, the
//! last offset every sink made durable, and a source that can commit (Kafka, Event Hubs)
//! commits from it on its own timer. The files source has nothing to commit.

pub mod backfill;
pub mod budget;
pub mod capture;
pub mod eventhubs;
pub mod files;
pub mod kafka;
pub mod storage;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use defender_core::health::{Beat, Health};
use tokio::sync::{mpsc, watch};

pub use budget::{ByteBudget, BytePermit};
pub use eventhubs::{BlobAuth, EventHubsConfig, EventHubsError, EventHubsSource};
pub use files::{FileSource, MessageReader, SourceError, resolve_inputs};
pub use kafka::{KafkaAuth, KafkaConfig, KafkaError, KafkaSource, StartPosition};

/// What the pipeline gives a source.
#[derive(Debug)]
pub struct SourceIo {
    pub events: mpsc::Sender<SourceEvent>,
    pub budget: ByteBudget,
    /// The last offset of each partition that every sink made durable (set by the pipeline).
    pub positions: Positions,
    /// Becomes `true` when the source should stop reading, hand its partitions back (a
    /// `Revoked` of all of them, so their data is finished and committed) and return.
    pub stop: watch::Receiver<bool>,
    /// The source's liveness: `working` as its loop turns, `waiting` while it waits for room
    /// in the pipeline (see `defender_core::health`).
    pub beat: Beat,
}

impl SourceIo {
    /// A source's I/O around `events`, with a fresh [`Positions`]; the returned sender raises
    /// `stop`.
    pub fn new(events: mpsc::Sender<SourceEvent>, budget: ByteBudget) -> (Self, watch::Sender<bool>) {
        let (stop_tx, stop) = watch::channel(false);
        let beat = Health::default().stage("source");
        (Self { events, budget, positions: Positions::default(), stop, beat }, stop_tx)
    }
}

/// Per partition, the last offset every sink made durable, and the last offset the source
/// committed. Shared between the pipeline, which only ever moves the first forward, and the
/// source, which commits from it and records its commits in the second.
#[derive(Debug, Clone, Default)]
pub struct Positions(Arc<Mutex<Offsets>>);

#[derive(Debug, Default)]
struct Offsets {
    durable: BTreeMap<u32, i64>,
    committed: BTreeMap<u32, i64>,
    /// The last commit of partitions given back since the pipeline last asked.
    revoked: BTreeMap<u32, i64>,
}

impl Positions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Offsets> {
        self.0.lock().expect("offsets poisoned")
    }

    pub fn set_durable(&self, partition: u32, offset: i64) {
        let mut o = self.lock();
        let e = o.durable.entry(partition).or_insert(offset);
        *e = (*e).max(offset);
    }

    pub fn durable(&self, partition: u32) -> Option<i64> {
        self.lock().durable.get(&partition).copied()
    }

    /// The source committed up to `offset` (inclusive).
    pub fn set_committed(&self, partition: u32, offset: i64) {
        self.lock().committed.insert(partition, offset);
    }

    /// Forgets a partition (revoked: its next owner starts from the commit). Its last commit
    /// waits in [`Self::take_revoked`] for the pipeline.
    pub fn remove(&self, partition: u32) -> Option<i64> {
        let mut o = self.lock();
        if let Some(c) = o.committed.remove(&partition) {
            o.revoked.insert(partition, c);
        }
        o.durable.remove(&partition)
    }

    /// The last commit of each partition given back since the previous call (drained), so the
    /// pipeline can clean up what those commits passed.
    pub fn take_revoked(&self) -> BTreeMap<u32, i64> {
        std::mem::take(&mut self.lock().revoked)
    }

    pub fn durable_all(&self) -> BTreeMap<u32, i64> {
        self.lock().durable.clone()
    }

    pub fn committed(&self) -> BTreeMap<u32, i64> {
        self.lock().committed.clone()
    }
}

/// Consecutive messages of one partition.
#[derive(Debug)]
pub struct Chunk {
    /// Stable name of the source partition (a file path, `topic/partition`).
    pub source: Arc<str>,
    pub partition: u32,
    /// (offset, message body), offsets increasing.
    pub messages: Vec<(i64, Bytes)>,
    /// Released when the chunk is dropped.
    pub permit: BytePermit,
}

/// Input of one partition the source could not read as messages (a corrupt Capture block):
/// it takes its place in the partition's offsets and becomes a dead letter
/// (`unreadable_input`, with `detail`), so the rest of the partition and the run go on.
#[derive(Debug)]
pub struct Unreadable {
    pub source: Arc<str>,
    pub partition: u32,
    pub offset: i64,
    /// What could not be read and where (a byte position in the file).
    pub detail: String,
    pub raw: Bytes,
    pub permit: BytePermit,
}

/// What a source sends down the pipeline.
#[derive(Debug)]
pub enum SourceEvent {
    Chunk(Chunk),
    /// Between two chunks of its partition, in offset order.
    Unreadable(Unreadable),
    /// No more messages will come from this partition (end of a file).
    PartitionEnd {
        partition: u32,
    },
    /// This process now reads `partition`, starting after `committed` (None: no commit yet).
    Assigned {
        source: Arc<str>,
        partition: u32,
        committed: Option<i64>,
    },
    /// These partitions are being taken away (a rebalance, or the source stopping): the
    /// pipeline flushes what it holds of them, records in [`Positions`] how far they are durable,
    /// forgets them, and then signals `done`. The source commits and lets them go.
    Revoked {
        partitions: Vec<u32>,
        done: std::sync::mpsc::Sender<()>,
    },
}
