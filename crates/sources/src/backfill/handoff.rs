//! The hand-off from a Capture backfill to the live stream (`backfill --then-checkpoint`):
//! per Event Hubs partition, the last event the backfill archived, so the live source starts
//! exactly after it.
//!
//! [`captured_positions`] reads them from a finished job; [`write_checkpoints`] is the seam
//! where a live source's starting point is written:
//! - the AMQP source (`[source.eventhubs]`, Blob checkpoints in the layout Microsoft's SDKs and
//!   KEDA read) plugs its checkpoint writer in here; it takes the positions as they are (an
//!   SDK checkpoint holds a partition's `sequencenumber` and `offset`);
//! - the Kafka endpoint is refused: Microsoft's documentation does not say how Kafka offsets
//!   relate to Event Hubs sequence numbers (its Kafka concept table maps Kafka's offset to the
//!   Event Hubs offset, which is a byte position), so a consumer-group offset derived from a
//!   sequence number could start the daemon with a gap or an overlap.

use std::collections::BTreeMap;

use super::{Input, Job};

/// The last event archived of one Event Hubs partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedPosition {
    /// From Capture's default naming `{Namespace}/{EventHub}/{PartitionId}/...` (empty when the
    /// location is below them).
    pub namespace: String,
    pub event_hub: String,
    pub partition_id: String,
    pub sequence_number: i64,
    /// The event's Event Hubs `Offset`, as Capture wrote it.
    pub offset: String,
}

/// Where the live source starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveSource {
    /// Event Hubs through its Kafka endpoint: topic = event hub, and the consumer group.
    Kafka { group: String },
    /// Event Hubs over AMQP, checkpoints in Blob (not built yet).
    EventHubs,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandoffError {
    #[error(
        "partition {0}: not every capture file of it is done (interrupted or failed): run the backfill to its end first"
    )]
    NotDone(String),
    #[error("no capture file carried a SequenceNumber: nothing to hand off")]
    Nothing,
    #[error(
        "the Kafka endpoint's offsets are not documented to be Event Hubs sequence numbers, so no consumer-group \
         offset is written (see the README, Backfill): start the daemon with `source.kafka.start` at the time after \
         the last archived event, and let the archive's record ids absorb the overlap"
    )]
    KafkaUndocumented,
    #[error("the Event Hubs (AMQP) source's checkpoint writer is not built yet")]
    EventHubsNotYet,
}

/// `{Namespace}/{EventHub}/{PartitionId}` of a Capture file's relative name (the 6 time parts
/// and the file come after them).
fn partition_of(name: &str) -> (String, String, String) {
    let parts: Vec<&str> = name.split('/').collect();
    let at = |back: usize| parts.len().checked_sub(back).and_then(|i| parts.get(i)).unwrap_or(&"").to_string();
    (at(9), at(8), at(7))
}

/// Per partition, the last event of a job whose every input is done; an input of a partition
/// not done is an error (the hand-off would leave a gap).
pub fn captured_positions(job: &Job, inputs: &[Input]) -> Result<Vec<CapturedPosition>, HandoffError> {
    let state = job.state();
    let mut out: BTreeMap<(String, String, String), CapturedPosition> = BTreeMap::new();
    for input in inputs {
        let key = partition_of(&input.name);
        let progress = state.files.get(&*input.name).cloned().unwrap_or_default();
        if !progress.done {
            return Err(HandoffError::NotDone(format!("{}/{}/{}", key.0, key.1, key.2)));
        }
        let Some((sequence_number, offset)) = progress.last_event else { continue };
        let (namespace, event_hub, partition_id) = key.clone();
        let p = CapturedPosition { namespace, event_hub, partition_id, sequence_number, offset };
        match out.get(&key) {
            Some(before) if before.sequence_number >= sequence_number => {}
            _ => {
                out.insert(key, p);
            }
        }
    }
    if out.is_empty() {
        return Err(HandoffError::Nothing);
    }
    Ok(out.into_values().collect())
}

/// The seam: makes `live` start after `positions` (one per partition).
pub async fn write_checkpoints(live: &LiveSource, positions: &[CapturedPosition]) -> Result<(), HandoffError> {
    let _ = positions;
    match live {
        LiveSource::Kafka { .. } => Err(HandoffError::KafkaUndocumented),
        LiveSource::EventHubs => Err(HandoffError::EventHubsNotYet),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_comes_from_captures_default_naming() {
        let p = partition_of("ns/hub/3/2024/05/01/10/00/00.avro");
        assert_eq!(p, ("ns".into(), "hub".into(), "3".into()));
        assert_eq!(partition_of("3/2024/05/01/10/00/00.avro").2, "3", "a location at the hub");
    }
}
