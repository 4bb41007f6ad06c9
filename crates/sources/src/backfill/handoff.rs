//! The hand-off from a Capture backfill to the live stream (`backfill --then-checkpoint`):
//! per Event Hubs partition, the last event the backfill archived, so the live source starts
//! exactly after it.
//!
//! [`check_hub`] refuses, before anything is read, Capture files of another namespace or event
//! hub than the live source's; [`captured_positions`] reads the last events from a finished
//! job; [`write_checkpoints`] makes the live source start after them:
//! - the AMQP source (`[source.eventhubs]`): a Blob checkpoint per partition (`sequencenumber`
//!   and `offset` metadata of the last captured event) through the store the daemon uses
//!   ([`EventHubsConfig::store`], lower-cased names), which is what the daemon, Microsoft's SDKs
//!   and KEDA read. A checkpoint already past the captured event is left alone: moving it back
//!   would read (and send to Sentinel) again what the live source already delivered;
//! - the Kafka endpoint is refused: Microsoft's documentation does not say how Kafka offsets
//!   relate to Event Hubs sequence numbers (its Kafka concept table maps Kafka's offset to the
//!   Event Hubs offset, which is a byte position), so a consumer-group offset derived from a
//!   sequence number could start the daemon with a gap or an overlap.

use std::collections::BTreeMap;

use azure_messaging_eventhubs::{CheckpointStore, models::Checkpoint};

use super::{Input, Job};
use crate::EventHubsConfig;

/// The last event archived of one Event Hubs partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedPosition {
    /// From Capture's default naming `{Namespace}/{EventHub}/{PartitionId}/...`: the namespace
    /// *name* (the first label of its fqdn) and the event hub.
    pub namespace: String,
    pub event_hub: String,
    pub partition_id: String,
    pub sequence_number: i64,
    /// The event's Event Hubs `Offset`, as Capture wrote it.
    pub offset: String,
}

/// Where the live source starts.
#[derive(Debug, Clone)]
pub enum LiveSource {
    /// Event Hubs through its Kafka endpoint: topic = event hub, and the consumer group.
    Kafka { group: String },
    /// Event Hubs over AMQP, checkpoints in Blob.
    EventHubs(Box<EventHubsConfig>),
}

/// What [`write_checkpoints`] did for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The checkpoint now names the captured event.
    Written,
    /// The partition's checkpoint was already at or past the captured event: left as it was.
    Ahead { sequence_number: i64 },
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
    #[error(
        "capture file `{file}`: its path does not show Capture's `{{Namespace}}/{{EventHub}}/{{PartitionId}}/...`, so \
         it cannot be checked to be of the live event hub: give a --capture location above `{{Namespace}}/`"
    )]
    UnknownHub { file: String },
    #[error(
        "capture file `{file}` is of event hub `{captured}`, the live source reads `{live}` (namespace name/event hub, \
         compared case-insensitively): its positions mean nothing there"
    )]
    OtherHub { file: String, captured: String, live: String },
    #[error("the checkpoint store: {0}")]
    Store(String),
}

/// `{Namespace}/{EventHub}/{PartitionId}` of a Capture file's path (the 6 time parts and the
/// file come after them); empty parts when the path is shorter.
fn partition_of(path: &str) -> (String, String, String) {
    let parts: Vec<&str> = path.split('/').collect();
    let at = |back: usize| parts.len().checked_sub(back).and_then(|i| parts.get(i)).unwrap_or(&"").to_string();
    (at(9), at(8), at(7))
}

/// The namespace name of a fully qualified namespace (`contoso.servicebus.windows.net` →
/// `contoso`): what Capture writes as `{Namespace}`.
fn namespace_name(fqdn: &str) -> &str {
    fqdn.split('.').next().unwrap_or(fqdn)
}

/// Refuses `inputs` that are not all of the live source's namespace and event hub (Capture
/// paths name them); the Kafka endpoint has no namespace to compare and passes.
pub fn check_hub(live: &LiveSource, inputs: &[Input]) -> Result<(), HandoffError> {
    let LiveSource::EventHubs(c) = live else { return Ok(()) };
    let want = format!("{}/{}", namespace_name(&c.namespace), c.event_hub);
    for input in inputs {
        let (namespace, hub, _) = partition_of(input.path.as_ref());
        if namespace.is_empty() || hub.is_empty() {
            return Err(HandoffError::UnknownHub { file: input.name.to_string() });
        }
        let captured = format!("{namespace}/{hub}");
        if !captured.eq_ignore_ascii_case(&want) {
            return Err(HandoffError::OtherHub { file: input.name.to_string(), captured, live: want });
        }
    }
    Ok(())
}

/// Per partition, the last event of a job whose every input is done; an input of a partition
/// not done is an error (the hand-off would leave a gap).
pub fn captured_positions(job: &Job, inputs: &[Input]) -> Result<Vec<CapturedPosition>, HandoffError> {
    let state = job.state();
    let mut out: BTreeMap<(String, String, String), CapturedPosition> = BTreeMap::new();
    for input in inputs {
        let key = partition_of(input.path.as_ref());
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

/// Makes `live` start after `positions` (one per partition); says per partition what was done.
pub async fn write_checkpoints(
    live: &LiveSource,
    positions: &[CapturedPosition],
) -> Result<Vec<(CapturedPosition, Outcome)>, HandoffError> {
    match live {
        LiveSource::Kafka { .. } => Err(HandoffError::KafkaUndocumented),
        LiveSource::EventHubs(c) => {
            let store = c.store().map_err(|e| HandoffError::Store(e.to_string()))?;
            write_to(store.as_ref(), c, positions).await
        }
    }
}

/// [`write_checkpoints`] into `store`, for the hub and consumer group of `c`.
async fn write_to(
    store: &(dyn CheckpointStore + Send + Sync),
    c: &EventHubsConfig,
    positions: &[CapturedPosition],
) -> Result<Vec<(CapturedPosition, Outcome)>, HandoffError> {
    // The SDK's errors name the blob, never the SAS (it is in the client's URL query).
    let failed = |what: &str, e: azure_core::Error| {
        HandoffError::Store(format!("{what}: {}", e.to_string().split('?').next().unwrap_or_default()))
    };
    let existing: BTreeMap<String, i64> = store
        .list_checkpoints(&c.namespace, &c.event_hub, &c.consumer_group)
        .await
        .map_err(|e| failed("cannot list the checkpoints", e))?
        .into_iter()
        .filter_map(|cp| Some((cp.partition_id, cp.sequence_number?)))
        .collect();
    let mut out = Vec::new();
    for p in positions {
        if let Some(&ahead) = existing.get(&p.partition_id).filter(|s| **s >= p.sequence_number) {
            out.push((p.clone(), Outcome::Ahead { sequence_number: ahead }));
            continue;
        }
        let checkpoint = Checkpoint {
            fully_qualified_namespace: c.namespace.clone(),
            event_hub_name: c.event_hub.clone(),
            consumer_group: c.consumer_group.clone(),
            partition_id: p.partition_id.clone(),
            offset: Some(p.offset.clone()),
            sequence_number: Some(p.sequence_number),
        };
        store
            .update_checkpoint(checkpoint)
            .await
            .map_err(|e| failed(&format!("cannot write the checkpoint of partition {}", p.partition_id), e))?;
        out.push((p.clone(), Outcome::Written));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_comes_from_captures_default_naming() {
        let p = partition_of("ns/hub/3/2024/05/01/10/00/00.avro");
        assert_eq!(p, ("ns".into(), "hub".into(), "3".into()));
        assert_eq!(partition_of("3/2024/05/01/10/00/00.avro").2, "3", "a location at the hub");
        assert_eq!(partition_of("3/2024/05/01/10/00/00.avro").0, "", "no namespace in the path");
    }

    fn live(namespace: &str, hub: &str) -> LiveSource {
        use crate::eventhubs::{BlobAuth, ConnectionString, SasCredential};
        let cs =
            ConnectionString::parse(&format!("Endpoint=sb://{namespace}/;SharedAccessKeyName=k;SharedAccessKey=a2V5"))
                .unwrap();
        let credential = std::sync::Arc::new(SasCredential::new(&cs, namespace, hub));
        let url = "http://127.0.0.1:9/c".parse().unwrap();
        LiveSource::EventHubs(Box::new(EventHubsConfig::new(
            namespace,
            hub,
            credential,
            url,
            BlobAuth::Sas("s".into()),
        )))
    }

    fn inputs(paths: &[&str]) -> Vec<Input> {
        paths.iter().map(|p| Input { name: (*p).into(), path: (*p).into(), size: 1, time: None }).collect()
    }

    #[test]
    fn only_capture_files_of_the_live_namespace_and_hub_are_handed_off() {
        let live = live("Contoso.servicebus.windows.net", "Defender");
        let ok =
            inputs(&["contoso/defender/0/2024/05/01/10/00/00.avro", "CONTOSO/DEFENDER/1/2024/05/01/10/00/00.avro"]);
        assert_eq!(check_hub(&live, &ok), Ok(()), "case-insensitive, the namespace's first label");
        let other = inputs(&["fabrikam/defender/0/2024/05/01/10/00/00.avro"]);
        assert!(
            matches!(check_hub(&live, &other), Err(HandoffError::OtherHub { captured, .. }) if captured == "fabrikam/defender")
        );
        let short = inputs(&["0/2024/05/01/10/00/00.avro"]);
        assert!(matches!(check_hub(&live, &short), Err(HandoffError::UnknownHub { .. })));
        assert_eq!(
            check_hub(&LiveSource::Kafka { group: "g".into() }, &other),
            Ok(()),
            "Kafka is refused later, with its reason"
        );
    }

    #[test]
    fn captures_namespace_is_the_first_label_of_the_fqdn() {
        assert_eq!(namespace_name("Contoso.servicebus.windows.net"), "Contoso");
        assert_eq!(namespace_name("contoso"), "contoso");
    }
}
