//! Which source position may be committed.
//!
//! The decoder cuts each source partition into consecutive *epochs* (one per flush), each
//! covering every message up to its last offset. An epoch is split into parts (one per table
//! batch per sink, plus its dead letters); when every part is durable the epoch is done. The
//! tracker commits the end of the longest run of done epochs from the start: it never commits
//! past an epoch that is not done, never goes backwards, and rejects epochs registered out of
//! order.

use std::collections::{BTreeMap, VecDeque};

/// A misuse of the tracker: a bug in the caller, reported instead of corrupting commits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("epoch ending at offset {offset} registered after the one ending at {previous}: positions must grow")]
    Backwards { offset: i64, previous: i64 },
    #[error("ack for partition {partition} offset {offset}, which has no outstanding epoch")]
    Unknown { partition: u32, offset: i64 },
}

#[derive(Debug, Default)]
struct PartitionAcks {
    /// (last offset of the epoch, parts still outstanding), in offset order.
    epochs: VecDeque<(i64, u32)>,
    last_registered: Option<i64>,
    committed: Option<i64>,
}

/// Per-partition ack bookkeeping.
#[derive(Debug, Default)]
pub struct AckTracker {
    partitions: BTreeMap<u32, PartitionAcks>,
}

impl AckTracker {
    /// Registers an epoch of `partition` ending at `last_offset`, done when `parts` acks arrive
    /// (0 parts: done at once).
    pub fn register(&mut self, partition: u32, last_offset: i64, parts: u32) -> Result<(), AckError> {
        let p = self.partitions.entry(partition).or_default();
        if let Some(previous) = p.last_registered
            && last_offset <= previous
        {
            return Err(AckError::Backwards { offset: last_offset, previous });
        }
        p.last_registered = Some(last_offset);
        p.epochs.push_back((last_offset, parts));
        Ok(())
    }

    /// One part of the epoch of `partition` ending at `last_offset` is durable.
    pub fn ack(&mut self, partition: u32, last_offset: i64) -> Result<(), AckError> {
        let unknown = AckError::Unknown { partition, offset: last_offset };
        let p = self.partitions.get_mut(&partition).ok_or(unknown.clone())?;
        let i = p.epochs.binary_search_by_key(&last_offset, |e| e.0).map_err(|_| unknown.clone())?;
        let e = &mut p.epochs[i];
        e.1 = e.1.checked_sub(1).ok_or(unknown)?;
        Ok(())
    }

    /// Advances and returns the committable position of `partition`: the last offset of the
    /// longest run of done epochs (Kafka commits `offset + 1`).
    pub fn committable(&mut self, partition: u32) -> Option<i64> {
        let p = self.partitions.get_mut(&partition)?;
        while let Some(&(offset, 0)) = p.epochs.front() {
            p.committed = Some(offset);
            p.epochs.pop_front();
        }
        p.committed
    }

    /// Forgets `partition` (revoked: its next reader starts again from the commit, with positions
    /// that may repeat ones seen here). Returns how many of its epochs were not done.
    pub fn forget(&mut self, partition: u32) -> usize {
        self.partitions.remove(&partition).map_or(0, |p| p.epochs.iter().filter(|e| e.1 > 0).count())
    }

    /// Epochs registered and not yet done, over all partitions.
    pub fn outstanding(&self) -> usize {
        self.partitions.values().map(|p| p.epochs.iter().filter(|e| e.1 > 0).count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn commits_only_contiguous_done_epochs() {
        let mut t = AckTracker::default();
        t.register(0, 10, 2).unwrap();
        t.register(0, 20, 1).unwrap();
        t.register(0, 30, 0).unwrap();
        assert_eq!(t.committable(0), None);
        t.ack(0, 20).unwrap();
        assert_eq!(t.committable(0), None, "epoch 10 still has two parts");
        t.ack(0, 10).unwrap();
        t.ack(0, 10).unwrap();
        assert_eq!(t.committable(0), Some(30));
        assert_eq!(t.register(0, 30, 1), Err(AckError::Backwards { offset: 30, previous: 30 }));
        assert_eq!(t.ack(0, 10), Err(AckError::Unknown { partition: 0, offset: 10 }));
    }

    #[test]
    fn a_forgotten_partition_starts_over_from_the_commit() {
        let mut t = AckTracker::default();
        t.register(3, 10, 0).unwrap();
        t.register(3, 20, 1).unwrap();
        assert_eq!(t.committable(3), Some(10));
        assert_eq!(t.forget(3), 1, "epoch 20 was abandoned");
        assert_eq!(t.committable(3), None);
        // The next owner re-reads from offset 11: positions repeat without an error.
        t.register(3, 15, 1).unwrap();
        t.ack(3, 15).unwrap();
        assert_eq!(t.committable(3), Some(15));
        assert_eq!(t.ack(3, 20), Err(AckError::Unknown { partition: 3, offset: 20 }));
        assert_eq!(t.forget(4), 0);
    }

    proptest! {
        #[test]
        fn random_completion_orders_never_commit_past_a_hole(
            parts in proptest::collection::vec(0u32..4, 1..30),
            seed in any::<u64>(),
        ) {
            let mut t = AckTracker::default();
            let mut acks = Vec::new();
            for (i, &n) in parts.iter().enumerate() {
                let offset = i as i64 * 10 + 9;
                t.register(1, offset, n).unwrap();
                acks.extend(std::iter::repeat_n(offset, n as usize));
            }
            // A deterministic shuffle from the seed.
            let mut s = seed | 1;
            for i in (1..acks.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                acks.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut remaining: BTreeMap<i64, u32> = parts.iter().enumerate().map(|(i, &n)| (i as i64 * 10 + 9, n)).collect();
            let mut last = None;
            for a in acks {
                t.ack(1, a).unwrap();
                *remaining.get_mut(&a).unwrap() -= 1;
                let c = t.committable(1);
                prop_assert!(c >= last, "never backwards");
                if let Some(c) = c {
                    prop_assert!(remaining.range(..=c).all(|(_, &n)| n == 0), "never past a hole");
                }
                let first_hole = remaining.iter().find(|(_, n)| **n > 0).map(|(o, _)| *o);
                let expected = remaining.range(..first_hole.unwrap_or(i64::MAX)).next_back().map(|(o, _)| *o);
                prop_assert_eq!(c, expected, "commits as far as it can");
                last = c;
            }
            prop_assert_eq!(t.outstanding(), 0);
        }
    }
}
