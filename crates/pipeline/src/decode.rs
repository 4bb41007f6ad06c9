//! The decode stage: one [`Decoder`] per source partition, partitions spread over workers that
//! decode in parallel on the CPU pool, each cutting its partitions' epochs.
//!
//! ```text
//! SourceEvent ─▶ dispatch ──(partition % workers, channel of 2)──▶ worker ─┐
//!                  │  Assigned: the archive's replay markers read          ├─▶ Stage (to route)
//!                  │  (concurrently; the partition's events wait)          │
//!                  └─ Revoked: every worker flushes those partitions, ─────┘
//!                     then the revocation follows their epochs
//! ```
//!
//! Epochs are cut by the flush rule, when a worker's decoders together hold more than their
//! share of `max_pending_bytes`, at the end or revocation of a partition, at the end of the
//! input, and where an earlier run's archive files end (the recovery's cut points, so the
//! archive can tell which epochs it already holds, see `defender_sinks::archive::replay`).
//! Per partition, everything stays in source order: one worker owns a partition, and its
//! `Assigned` reaches the router before any of its epochs.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use defender_core::{
    Catalog, Decoder, FlushRule,
    decode::{DecoderOutput, unknown::UnknownTableNames},
    health::{Beat, Health},
};
use defender_sinks::{
    archive::{Recovery, recover},
    store::Location,
};
use defender_sources::{Chunk, SourceEvent, Unreadable};
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use tokio::sync::{mpsc, oneshot};

use crate::{PipelineError, Stage, cpu::Cpu};

/// When the decode stage cuts epochs, and how many workers decode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeLimits {
    pub(crate) flush: FlushRule,
    pub(crate) tick: Duration,
    /// Input bytes all decoders together may hold between flushes (the source's byte budget
    /// again): past it a worker flushes its fullest decoder, so many partitions cannot each
    /// hold a flush rule's worth.
    pub(crate) max_pending_bytes: usize,
    pub(crate) workers: usize,
}

/// What the dispatcher tells a worker, in order per partition.
enum Work {
    /// The partition's epochs must end at these offsets (an earlier run's archive files end
    /// there).
    Cuts {
        partition: u32,
        cuts: BTreeSet<i64>,
    },
    Chunk(Chunk),
    Unreadable(Unreadable),
    /// The partition's input ended: flush and forget it.
    End {
        partition: u32,
    },
    /// Revoked: flush and forget these partitions, then answer.
    Flush {
        partitions: Vec<u32>,
        done: oneshot::Sender<()>,
    },
}

/// What a worker needs, shared by all.
#[derive(Clone)]
struct Shared {
    catalog: Arc<Catalog>,
    names: Arc<UnknownTableNames>,
    tx: mpsc::Sender<Stage>,
    cpu: Cpu,
    flush: FlushRule,
    tick: Duration,
    max_pending_bytes: usize,
}

/// Runs until the input ends (every decoder flushed) or the router is gone.
#[allow(clippy::too_many_arguments)] // the stage's inputs and outputs, each used once
pub(crate) async fn decode_stage(
    catalog: Arc<Catalog>,
    names: Arc<UnknownTableNames>,
    mut rx: mpsc::Receiver<SourceEvent>,
    tx: mpsc::Sender<Stage>,
    limits: DecodeLimits,
    archive: Option<Location>,
    cpu: Cpu,
    health: Health,
) -> Result<(), PipelineError> {
    let n = limits.workers.max(1);
    let shared = Shared {
        catalog,
        names,
        tx: tx.clone(),
        cpu,
        flush: limits.flush,
        tick: limits.tick,
        max_pending_bytes: (limits.max_pending_bytes / n).max(1),
    };
    let (mut workers, mut handles) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let (work_tx, work_rx) = mpsc::channel(2);
        workers.push(work_tx);
        handles.push(tokio::spawn(worker(work_rx, shared.clone(), health.stage(worker_name(i)))));
    }
    let (beat, recovery) = (health.stage("decode"), health.stage("recovery"));
    let mut d =
        Dispatch { workers, tx, archive, held: HashMap::new(), recoveries: FuturesUnordered::new(), beat, recovery };
    let finished = d.run(&mut rx).await;
    // Closing the workers' queues ends them once they have flushed everything.
    drop(d);
    for h in handles {
        h.await.map_err(|e| PipelineError::Task(format!("decode worker: {e}")))??;
    }
    finished
}

/// Names of the workers' liveness stages (a fixed set: metric labels stay bounded).
fn worker_name(i: usize) -> &'static str {
    const NAMES: [&str; 8] =
        ["decode-0", "decode-1", "decode-2", "decode-3", "decode-4", "decode-5", "decode-6", "decode-7"];
    NAMES.get(i).copied().unwrap_or("decode-8+")
}

type Recovered = (Arc<str>, u32, Recovery);

struct Dispatch {
    workers: Vec<mpsc::Sender<Work>>,
    tx: mpsc::Sender<Stage>,
    archive: Option<Location>,
    /// Events of partitions whose recovery is being read, in order.
    held: HashMap<u32, VecDeque<SourceEvent>>,
    recoveries: FuturesUnordered<BoxFuture<'static, Recovered>>,
    beat: Beat,
    /// Working while a recovery is being read (a store that never answers stalls it).
    recovery: Beat,
}

impl Dispatch {
    fn worker(&self, partition: u32) -> &mpsc::Sender<Work> {
        &self.workers[partition as usize % self.workers.len()]
    }

    /// Ok when the input ended; also Ok when the router or a worker is gone (its own end or
    /// error says why).
    async fn run(&mut self, rx: &mut mpsc::Receiver<SourceEvent>) -> Result<(), PipelineError> {
        loop {
            self.beat.waiting();
            tokio::select! {
                biased;
                Some(recovered) = self.recoveries.next(), if !self.recoveries.is_empty() => {
                    self.beat.working();
                    self.recovery_progress();
                    if !self.recovered(recovered).await {
                        return Ok(());
                    }
                }
                event = rx.recv() => {
                    self.beat.working();
                    let Some(event) = event else {
                        // The input ended: partitions whose recovery is still being read hold
                        // events that must go on first.
                        while let Some(recovered) = self.recoveries.next().await {
                            self.recovery_progress();
                            if !self.recovered(recovered).await {
                                return Ok(());
                            }
                        }
                        return Ok(());
                    };
                    if !self.event(event).await {
                        return Ok(());
                    }
                }
                // A task failed: stop, so the source sees its channel close and ends too.
                () = self.tx.closed() => return Ok(()),
            }
        }
    }

    /// Hands one event on (or holds it behind its partition's recovery); false when a
    /// receiver is gone.
    async fn event(&mut self, event: SourceEvent) -> bool {
        let partition = match &event {
            SourceEvent::Chunk(c) => Some(c.partition),
            SourceEvent::Unreadable(u) => Some(u.partition),
            SourceEvent::PartitionEnd { partition } => Some(*partition),
            SourceEvent::Assigned { .. } | SourceEvent::Revoked { .. } => None,
        };
        if let Some(held) = partition.and_then(|p| self.held.get_mut(&p)) {
            held.push_back(event);
            return true;
        }
        self.beat.waiting();
        match event {
            SourceEvent::Chunk(chunk) => self.worker(chunk.partition).send(Work::Chunk(chunk)).await.is_ok(),
            SourceEvent::Unreadable(u) => self.worker(u.partition).send(Work::Unreadable(u)).await.is_ok(),
            SourceEvent::PartitionEnd { partition } => {
                self.worker(partition).send(Work::End { partition }).await.is_ok()
            }
            SourceEvent::Assigned { source, partition, committed } => {
                tracing::debug!(%source, partition, ?committed, "partition assigned");
                let Some(location) = self.archive.clone() else {
                    return self.recovered((source, partition, Recovery::default())).await;
                };
                self.held.insert(partition, VecDeque::new());
                if self.recoveries.is_empty() {
                    self.recovery.working();
                }
                self.recoveries.push(
                    async move {
                        let recovery = recover(&location, &source, committed).await.unwrap_or_else(|e| {
                            // Not fatal: the rows are archived again (at least once, not exactly once).
                            tracing::warn!(%source, error = %e, "cannot read the archive's progress markers");
                            Recovery::default()
                        });
                        (source, partition, recovery)
                    }
                    .boxed(),
                );
                true
            }
            SourceEvent::Revoked { partitions, done } => {
                // Their held events first: the revocation comes after everything read of them.
                while partitions.iter().any(|p| self.held.contains_key(p)) {
                    let Some(recovered) = self.recoveries.next().await else { break };
                    self.recovery_progress();
                    if !self.recovered(recovered).await {
                        return false;
                    }
                }
                let mut flushed = Vec::new();
                for (i, worker) in self.workers.iter().enumerate() {
                    let mine: Vec<u32> =
                        partitions.iter().copied().filter(|p| *p as usize % self.workers.len() == i).collect();
                    if mine.is_empty() {
                        continue;
                    }
                    let (done_tx, done_rx) = oneshot::channel();
                    if worker.send(Work::Flush { partitions: mine, done: done_tx }).await.is_err() {
                        return false;
                    }
                    flushed.push(done_rx);
                }
                for f in flushed {
                    if f.await.is_err() {
                        return false;
                    }
                }
                self.tx.send(Stage::Revoked { partitions, done }).await.is_ok()
            }
        }
    }

    /// One recovery done: progress, and waiting again once none is left.
    fn recovery_progress(&self) {
        if self.recoveries.is_empty() { self.recovery.waiting() } else { self.recovery.working() }
    }

    /// A partition's recovery is read: the router learns it before any epoch of the partition,
    /// its worker gets the cut points, then the events held meanwhile go on.
    async fn recovered(&mut self, (source, partition, recovery): Recovered) -> bool {
        let cuts = recovery.cuts.clone();
        self.beat.waiting();
        if self.tx.send(Stage::Assigned { source, partition, recovery }).await.is_err()
            || self.worker(partition).send(Work::Cuts { partition, cuts }).await.is_err()
        {
            return false;
        }
        for event in self.held.remove(&partition).unwrap_or_default() {
            if !Box::pin(self.event(event)).await {
                return false;
            }
        }
        true
    }
}

/// One worker: the decoders of its partitions, decoding each chunk on the CPU pool. Ends when
/// its queue closes (everything flushed) or the router is gone; fails if a decode job did.
async fn worker(mut rx: mpsc::Receiver<Work>, s: Shared, beat: Beat) -> Result<(), PipelineError> {
    let mut decoders: HashMap<u32, Decoder> = HashMap::new();
    let mut cuts: HashMap<u32, BTreeSet<i64>> = HashMap::new();
    let mut timer = tokio::time::interval(s.tick);
    // Sends flushed epochs (waiting, not stalled, while the router is behind); false when the
    // router is gone.
    let send = async |beat: &Beat, outs: Vec<DecoderOutput>| {
        beat.waiting();
        for out in outs {
            if s.tx.send(Stage::Epoch(out)).await.is_err() {
                return false;
            }
        }
        beat.working();
        true
    };
    loop {
        beat.waiting();
        let work = tokio::select! {
            work = rx.recv() => work,
            _ = timer.tick() => {
                beat.working();
                let now = Instant::now();
                let aged: Vec<_> = decoders.values_mut().filter(|d| d.should_flush(now)).filter_map(Decoder::flush).collect();
                if !send(&beat, aged).await {
                    return Ok(());
                }
                continue;
            }
        };
        beat.working();
        let outs = match work {
            None => {
                let mut rest: Vec<_> = decoders.drain().collect();
                rest.sort_by_key(|(p, _)| *p);
                send(&beat, rest.into_iter().filter_map(|(_, mut d)| d.flush()).collect()).await;
                return Ok(());
            }
            Some(Work::Cuts { partition, cuts: c }) => {
                cuts.insert(partition, c);
                continue;
            }
            Some(Work::Chunk(chunk)) => {
                let p = chunk.partition;
                let decoder = decoders.remove(&p).unwrap_or_else(|| {
                    Decoder::new(&s.catalog, chunk.source.clone(), p, s.flush).with_unknown_names(s.names.clone())
                });
                let cut = cuts.remove(&p).unwrap_or_default();
                let (decoder, cut, mut outs) = s.cpu.run(move || decode_chunk(decoder, cut, chunk)).await?;
                decoders.insert(p, decoder);
                if !cut.is_empty() {
                    cuts.insert(p, cut);
                }
                while decoders.values().map(Decoder::pending_bytes).sum::<usize>() > s.max_pending_bytes {
                    let Some(d) = decoders.values_mut().max_by_key(|d| d.pending_bytes()) else { break };
                    outs.extend(d.flush());
                }
                outs
            }
            Some(Work::Unreadable(u)) => {
                let p = u.partition;
                let d = decoders.entry(p).or_insert_with(|| {
                    Decoder::new(&s.catalog, u.source.clone(), p, s.flush).with_unknown_names(s.names.clone())
                });
                d.unreadable(u.offset, &u.detail, &u.raw);
                let cut = cuts.get(&p).is_some_and(|c| c.contains(&u.offset));
                if d.should_flush(Instant::now()) || cut { d.flush().into_iter().collect() } else { Vec::new() }
            }
            Some(Work::End { partition }) => {
                cuts.remove(&partition);
                decoders.remove(&partition).and_then(|mut d| d.flush()).into_iter().collect()
            }
            Some(Work::Flush { partitions, done }) => {
                let outs: Vec<_> = partitions
                    .iter()
                    .filter_map(|p| {
                        cuts.remove(p);
                        decoders.remove(p).and_then(|mut d| d.flush())
                    })
                    .collect();
                if !send(&beat, outs).await {
                    return Ok(());
                }
                let _ = done.send(());
                continue;
            }
        };
        if !send(&beat, outs).await {
            return Ok(());
        }
    }
}

/// Decodes one chunk (CPU: runs on the pool), flushing where the flush rule or a cut point
/// says; the chunk's byte permit is given back when it is dropped here.
fn decode_chunk(mut d: Decoder, cut: BTreeSet<i64>, chunk: Chunk) -> (Decoder, BTreeSet<i64>, Vec<DecoderOutput>) {
    let mut outs = Vec::new();
    for (offset, bytes) in &chunk.messages {
        d.decode(bytes, *offset);
        if d.should_flush(Instant::now()) || cut.contains(offset) {
            outs.extend(d.flush());
        }
    }
    (d, cut, outs)
}
