//! The first checkpoint of a partition, written when this replica claims it and its position is
//! known without reading an event.
//!
//! KEDA's `azure-eventhub` scaler counts a partition with no checkpoint as lagged by all it
//! holds (`pkg/scalers/azure/azure_eventhub_checkpoint.go`), so a replica that reads an idle
//! partition from `latest` would be scaled up for nothing until an event arrives there. Issue 11:
//! "write a checkpoint for every owned partition as soon as its position is known". Known without
//! reading means: start `latest` (the partition's end), or `earliest` on an empty partition (its
//! end too). Both are the last enqueued sequence number and offset of the partition's
//! properties (-1 and "-1" on a partition that never had an event: the offset filter
//! `> '-1'` is the partition's start, and KEDA's lag is -1 - -1 = 0).
//!
//! The race that must not skip an event: events enqueued between reading the properties and
//! opening the receiver. The SDK's processor (0.15 `processor.rs` `dispatch`) claims ownership,
//! then lists the checkpoints, then opens a receiver for each newly owned partition from its
//! checkpoint (exclusive), or from the default start position where there is none. So
//! [`FirstCheckpoints`], the store the processor is given, writes the first checkpoint *inside*
//! that listing and returns it: the receiver then starts exactly after the position written,
//! whatever arrived meanwhile. It does so only for partitions the previous claim did not
//! already hold (a partition read now has its receiver open from its old start; a checkpoint
//! at today's end would pass events that are not durable), and only once per claim: a failed
//! write leaves the partition to its first durable event, as without this.
//!
//! Our partition readers use the inner store, never this one: they list checkpoints after the
//! receiver is open.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use azure_messaging_eventhubs::{
    CheckpointStore, ConsumerClient,
    models::{Checkpoint, Ownership},
};

use crate::StartPosition;

/// A partition's end: its last enqueued sequence number and offset, and whether it is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionEnd {
    pub(crate) sequence_number: i64,
    pub(crate) offset: String,
    pub(crate) is_empty: bool,
}

/// Where the ends come from: the hub's `$management` partition properties.
#[async_trait::async_trait]
pub(crate) trait PartitionEnds: Send + Sync {
    async fn end(&self, partition_id: &str) -> azure_core::Result<PartitionEnd>;
}

#[async_trait::async_trait]
impl PartitionEnds for ConsumerClient {
    async fn end(&self, partition_id: &str) -> azure_core::Result<PartitionEnd> {
        let p = self.get_partition_properties(partition_id).await?;
        Ok(PartitionEnd {
            sequence_number: p.last_enqueued_sequence_number,
            offset: p.last_enqueued_offset,
            is_empty: p.is_empty,
        })
    }
}

/// The processor's checkpoint store: `inner`, plus the first checkpoint of each partition it
/// newly claims for `owner_id` (see the module doc).
pub(crate) struct FirstCheckpoints {
    inner: Arc<dyn CheckpointStore + Send + Sync>,
    ends: Arc<dyn PartitionEnds>,
    owner_id: String,
    start: StartPosition,
    /// Partitions of the last claim reply that the previous one did not hold.
    new: std::sync::Mutex<BTreeSet<String>>,
    /// Partitions of the last claim reply.
    owned: std::sync::Mutex<BTreeSet<String>>,
}

impl FirstCheckpoints {
    pub(crate) fn new(
        inner: Arc<dyn CheckpointStore + Send + Sync>,
        ends: Arc<dyn PartitionEnds>,
        owner_id: String,
        start: StartPosition,
    ) -> Self {
        Self { inner, ends, owner_id, start, new: Default::default(), owned: Default::default() }
    }

    /// The first checkpoint of `partition_id`, written; `None` when its position is not known
    /// without reading or it could not be written.
    async fn first(&self, namespace: &str, hub: &str, group: &str, partition_id: &str) -> Option<Checkpoint> {
        let end = match tokio::time::timeout(Duration::from_secs(30), self.ends.end(partition_id)).await {
            Ok(Ok(end)) => end,
            Ok(Err(e)) => {
                tracing::warn!(partition = %partition_id, error = %e, "cannot read the partition's end: no first checkpoint");
                return None;
            }
            Err(_) => {
                tracing::warn!(partition = %partition_id, "reading the partition's end timed out: no first checkpoint");
                return None;
            }
        };
        let known = match self.start {
            StartPosition::Latest => true,
            StartPosition::Earliest => end.is_empty,
            StartPosition::Timestamp(_) => false,
        };
        if !known {
            return None;
        }
        let cp = Checkpoint {
            fully_qualified_namespace: namespace.to_string(),
            event_hub_name: hub.to_string(),
            consumer_group: group.to_string(),
            partition_id: partition_id.to_string(),
            offset: Some(end.offset),
            sequence_number: Some(end.sequence_number),
        };
        match tokio::time::timeout(Duration::from_secs(30), self.inner.update_checkpoint(cp.clone())).await {
            Ok(Ok(())) => {
                tracing::info!(partition = %partition_id, sequence_number = end.sequence_number,
                    "first checkpoint at the partition's end: reading starts after it");
                Some(cp)
            }
            Ok(Err(e)) => {
                tracing::warn!(partition = %partition_id, error = %e, "first checkpoint failed (the first durable event writes one)");
                None
            }
            Err(_) => {
                tracing::warn!(partition = %partition_id, "first checkpoint timed out (the first durable event writes one)");
                None
            }
        }
    }
}

#[async_trait::async_trait]
impl CheckpointStore for FirstCheckpoints {
    async fn claim_ownership(&self, ownerships: &[Ownership]) -> azure_core::Result<Vec<Ownership>> {
        let claimed = self.inner.claim_ownership(ownerships).await?;
        let now: BTreeSet<String> = claimed
            .iter()
            .filter(|o| o.owner_id.as_deref() == Some(self.owner_id.as_str()))
            .map(|o| o.partition_id.clone())
            .collect();
        let mut owned = self.owned.lock().expect("owned");
        *self.new.lock().expect("new") = now.difference(&owned).cloned().collect();
        *owned = now;
        Ok(claimed)
    }

    async fn list_checkpoints(
        &self,
        namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> azure_core::Result<Vec<Checkpoint>> {
        let mut found = self.inner.list_checkpoints(namespace, event_hub_name, consumer_group).await?;
        let new = std::mem::take(&mut *self.new.lock().expect("new"));
        for id in new {
            if found.iter().any(|c| c.partition_id == id) {
                continue;
            }
            if let Some(cp) = self.first(namespace, event_hub_name, consumer_group, &id).await {
                found.push(cp);
            }
        }
        Ok(found)
    }

    async fn list_ownerships(
        &self,
        namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> azure_core::Result<Vec<Ownership>> {
        self.inner.list_ownerships(namespace, event_hub_name, consumer_group).await
    }

    async fn update_checkpoint(&self, checkpoint: Checkpoint) -> azure_core::Result<()> {
        self.inner.update_checkpoint(checkpoint).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A store in memory: claims always succeed, checkpoints are kept by partition.
    #[derive(Default)]
    struct Memory(Mutex<Vec<Checkpoint>>);

    #[async_trait::async_trait]
    impl CheckpointStore for Memory {
        async fn claim_ownership(&self, o: &[Ownership]) -> azure_core::Result<Vec<Ownership>> {
            Ok(o.to_vec())
        }
        async fn list_checkpoints(&self, _: &str, _: &str, _: &str) -> azure_core::Result<Vec<Checkpoint>> {
            Ok(self.0.lock().unwrap().clone())
        }
        async fn list_ownerships(&self, _: &str, _: &str, _: &str) -> azure_core::Result<Vec<Ownership>> {
            Ok(Vec::new())
        }
        async fn update_checkpoint(&self, c: Checkpoint) -> azure_core::Result<()> {
            let mut all = self.0.lock().unwrap();
            all.retain(|o| o.partition_id != c.partition_id);
            all.push(c);
            Ok(())
        }
    }

    /// Partition `p` ends at sequence number `p * 10 - 1`; partition 0 is empty.
    struct Ends;

    #[async_trait::async_trait]
    impl PartitionEnds for Ends {
        async fn end(&self, id: &str) -> azure_core::Result<PartitionEnd> {
            let p: i64 = id.parse().unwrap();
            Ok(PartitionEnd { sequence_number: p * 10 - 1, offset: (p * 100 - 1).to_string(), is_empty: p == 0 })
        }
    }

    fn claim(owner: &str, ids: &[&str]) -> Vec<Ownership> {
        ids.iter()
            .map(|id| Ownership { partition_id: id.to_string(), owner_id: Some(owner.into()), ..Default::default() })
            .collect()
    }

    /// (partition, sequence number, offset) of what the processor is given.
    async fn listed(store: &FirstCheckpoints) -> Vec<(String, Option<i64>, Option<String>)> {
        let mut v: Vec<_> = store
            .list_checkpoints("ns", "hub", "cg")
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.partition_id, c.sequence_number, c.offset))
            .collect();
        v.sort();
        v
    }

    fn store(inner: Arc<Memory>, start: StartPosition) -> FirstCheckpoints {
        FirstCheckpoints::new(inner, Arc::new(Ends), "me".into(), start)
    }

    #[tokio::test]
    async fn latest_writes_the_end_of_each_newly_claimed_partition_once_and_keeps_existing_ones() {
        let inner = Arc::new(Memory::default());
        inner
            .update_checkpoint(Checkpoint { partition_id: "2".into(), sequence_number: Some(5), ..Default::default() })
            .await
            .unwrap();
        let s = store(inner.clone(), StartPosition::Latest);
        // Another owner's partition 3 in the reply is not ours to checkpoint.
        let mut o = claim("me", &["0", "1", "2"]);
        o.extend(claim("other", &["3"]));
        s.claim_ownership(&o).await.unwrap();
        let want = vec![
            ("0".to_string(), Some(-1), Some("-1".to_string())),
            ("1".to_string(), Some(9), Some("99".to_string())),
            ("2".to_string(), Some(5), None),
        ];
        assert_eq!(listed(&s).await, want);
        assert_eq!(inner.0.lock().unwrap().len(), 3, "written to the store, not only returned");
        // Partition 1 read since and not yet durable: a later cycle must not move it to today's
        // end, nor write one for a partition held since the last claim.
        inner.0.lock().unwrap().retain(|c| c.partition_id != "1");
        s.claim_ownership(&claim("me", &["0", "1", "2"])).await.unwrap();
        assert_eq!(listed(&s).await.len(), 2, "nothing written for partition 1, held since the last claim");
        // Lost, then claimed again: new again.
        s.claim_ownership(&claim("me", &["0", "2"])).await.unwrap();
        s.claim_ownership(&claim("me", &["0", "1", "2"])).await.unwrap();
        assert_eq!(listed(&s).await, want);
    }

    #[tokio::test]
    async fn earliest_writes_only_empty_partitions_and_an_enqueued_time_none() {
        let inner = Arc::new(Memory::default());
        let s = store(inner.clone(), StartPosition::Earliest);
        s.claim_ownership(&claim("me", &["0", "1"])).await.unwrap();
        assert_eq!(listed(&s).await, vec![("0".to_string(), Some(-1), Some("-1".to_string()))]);
        let inner = Arc::new(Memory::default());
        let s = store(inner.clone(), StartPosition::Timestamp(0));
        s.claim_ownership(&claim("me", &["0", "1"])).await.unwrap();
        assert_eq!(listed(&s).await, vec![]);
    }
}
