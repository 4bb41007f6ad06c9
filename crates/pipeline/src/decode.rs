//! The decode stage: one [`Decoder`] per source partition, cutting epochs (see
//! [`decode_stage`]).

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use defender_core::{
    Catalog, Decoder, FlushRule,
    decode::{DecoderOutput, unknown::UnknownTableNames},
    health::Beat,
};
use defender_sinks::{
    archive::{Recovery, recover},
    store::Location,
};
use defender_sources::SourceEvent;
use tokio::sync::mpsc;

use crate::Stage;

/// When the decode stage cuts epochs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeLimits {
    pub(crate) flush: FlushRule,
    pub(crate) tick: Duration,
    /// Input bytes all decoders together may hold between flushes (the source's byte budget
    /// again): past it the fullest decoder is flushed, so many partitions cannot each hold a
    /// flush rule's worth.
    pub(crate) max_pending_bytes: usize,
}

/// One decoder per partition; epochs cut by the flush rule, when the decoders together hold
/// more than `max_pending_bytes`, at the end or revocation of a partition, at the end of the
/// input, and where an earlier run's archive files end (so the archive can tell which epochs it
/// already holds, see `defender_sinks::archive::replay`).
pub(crate) async fn decode_stage(
    catalog: Arc<Catalog>,
    names: Arc<UnknownTableNames>,
    mut rx: mpsc::Receiver<SourceEvent>,
    tx: mpsc::Sender<Stage>,
    limits: DecodeLimits,
    archive: Option<Location>,
    beat: Beat,
) {
    let DecodeLimits { flush, tick, max_pending_bytes } = limits;
    let mut decoders: HashMap<u32, Decoder> = HashMap::new();
    let mut cuts: HashMap<u32, BTreeSet<i64>> = HashMap::new();
    let mut timer = tokio::time::interval(tick);
    // Sends one flushed epoch (waiting, not stalled, while the sinks are behind); false when
    // the router is gone.
    let send = async |tx: &mpsc::Sender<Stage>, out: Option<DecoderOutput>| match out {
        Some(out) => {
            beat.waiting();
            let sent = tx.send(Stage::Epoch(out)).await.is_ok();
            beat.working();
            sent
        }
        None => true,
    };
    loop {
        beat.waiting();
        let event = tokio::select! {
            e = rx.recv() => e,
            // The router is gone (a task failed): stop, so the source sees its channel close too.
            () = tx.closed() => return,
            _ = timer.tick() => {
                beat.working();
                let now = Instant::now();
                for d in decoders.values_mut().filter(|d| d.should_flush(now)) {
                    if !send(&tx, d.flush()).await {
                        return;
                    }
                }
                continue;
            }
        };
        beat.working();
        match event {
            Some(SourceEvent::Chunk(chunk)) => {
                let d = decoders.entry(chunk.partition).or_insert_with(|| {
                    Decoder::new(&catalog, chunk.source.clone(), chunk.partition, flush)
                        .with_unknown_names(names.clone())
                });
                let cut = cuts.get(&chunk.partition);
                for (offset, bytes) in &chunk.messages {
                    d.decode(bytes, *offset);
                    let flush = d.should_flush(Instant::now()) || cut.is_some_and(|c| c.contains(offset));
                    if flush && !send(&tx, d.flush()).await {
                        return;
                    }
                }
                while decoders.values().map(Decoder::pending_bytes).sum::<usize>() > max_pending_bytes {
                    let Some(d) = decoders.values_mut().max_by_key(|d| d.pending_bytes()) else { break };
                    if !send(&tx, d.flush()).await {
                        return;
                    }
                }
            }
            Some(SourceEvent::PartitionEnd { partition }) => {
                if !send(&tx, decoders.remove(&partition).and_then(|mut d| d.flush())).await {
                    return;
                }
            }
            Some(SourceEvent::Assigned { source, partition, committed }) => {
                tracing::debug!(%source, partition, ?committed, "partition assigned");
                let recovery = match &archive {
                    Some(location) => match recover(location, &source, committed).await {
                        Ok(r) => r,
                        Err(e) => {
                            // Not fatal: the rows are archived again (at least once, not exactly once).
                            tracing::warn!(%source, error = %e, "cannot read the archive's progress markers");
                            Recovery::default()
                        }
                    },
                    None => Recovery::default(),
                };
                cuts.insert(partition, recovery.cuts.clone());
                beat.waiting();
                if tx.send(Stage::Assigned { source, partition, recovery }).await.is_err() {
                    return;
                }
            }
            Some(SourceEvent::Revoked { partitions, done }) => {
                for p in &partitions {
                    cuts.remove(p);
                    if !send(&tx, decoders.remove(p).and_then(|mut d| d.flush())).await {
                        return;
                    }
                }
                beat.waiting();
                if tx.send(Stage::Revoked { partitions, done }).await.is_err() {
                    return;
                }
            }
            None => {
                let mut rest: Vec<_> = decoders.drain().collect();
                rest.sort_by_key(|(p, _)| *p);
                for (_, mut d) in rest {
                    if !send(&tx, d.flush()).await {
                        return;
                    }
                }
                return;
            }
        }
    }
}
