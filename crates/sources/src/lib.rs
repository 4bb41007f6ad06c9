//! defender-sources: where message bodies come from.
//!
//! Every source produces [`SourceEvent`]s into one bounded channel: chunks of messages of one
//! partition, in offset order, and the end of a partition (a file read to its end). Memory
//! in flight is bounded in bytes by a [`ByteBudget`]: a chunk holds a permit for its bytes until
//! the decoder is done with it, so a slow pipeline stops the source from reading.
//!
//! Sources that can commit (Kafka, Event Hubs) will receive the committable positions the ack
//! tracker computes; the files source has nothing to commit.

pub mod budget;
pub mod files;

use std::sync::Arc;

use bytes::Bytes;

pub use budget::{ByteBudget, BytePermit};
pub use files::{FileSource, MessageReader, SourceError, resolve_inputs};

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

/// What a source sends down the pipeline.
#[derive(Debug)]
pub enum SourceEvent {
    Chunk(Chunk),
    /// No more messages will come from this partition (end of a file).
    PartitionEnd {
        partition: u32,
    },
}
