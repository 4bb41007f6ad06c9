//! The Sentinel task: sends the rows the policy routes to Sentinel, several batches at once.
//!
//! Each batch is encoded and packed on the CPU pool ([`SentinelSink::prepare`]), then its calls
//! go out ([`SentinelSink::deliver_prepared`], concurrent per DCR within the sink's limits).
//! Batches of different partitions and tables are in flight together, up to
//! `max_in_flight`; batches of one partition and table go one after the other, so the `sent`
//! markers of a partition stay in offset order (see `defender_sinks::archive::replay`).
//!
//! A batch is acked once Sentinel accepted its rows and its marker is put. Rows Sentinel cannot
//! take (too large alone, a batch the encoder cannot represent) go to the archive as dead
//! letters, which acks the batch's part once they are stored. A revocation barrier waits for
//! everything in flight, then follows the dead letters to the archive.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use defender_core::{DeadLetterReason, TableBatch, health::Beat};
use defender_sinks::{
    archive::Markers,
    sentinel::{Delivered, DryRunSink, SentinelError, SentinelSink},
};
use defender_sources::BytePermit;
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use tokio::sync::{Mutex, mpsc};

use crate::{
    PipelineError, SentinelPath, SinkCounters,
    acks::{Ack, AckTx, Counts, count},
    archive_task::ArchiveWork,
    cpu::Cpu,
    row_dead_letter, rows_dead_letters,
};

/// What the Sentinel task is given, in order.
#[derive(Debug)]
pub(crate) enum SentinelWork {
    Batch {
        batch: TableBatch,
        permit: BytePermit,
    },
    /// A revocation barrier: finish everything in flight, then pass it to the archive.
    Flush {
        id: u64,
    },
}

#[derive(Clone)]
enum Destination {
    Live(Arc<SentinelSink>),
    DryRun(Arc<Mutex<DryRunSink>>),
}

/// Batches of one partition and table go in order.
type Key = (u32, Arc<str>);

enum Outcome {
    /// Accepted before a crash, past the commit (a `sent` marker says so): not sent again.
    Replayed,
    Sent(Result<Delivered, SentinelError>),
    Failed(PipelineError),
}

struct Done {
    key: Key,
    batch: TableBatch,
    _permit: BytePermit,
    outcome: Outcome,
}

/// Where the task's results go, and what it needs to start a batch.
pub(crate) struct Context {
    pub(crate) archive: mpsc::Sender<ArchiveWork>,
    pub(crate) acks: AckTx,
    pub(crate) markers: Markers,
    pub(crate) cpu: Cpu,
    pub(crate) max_in_flight: usize,
}

/// Runs until its queue is closed and every batch is accepted (or dead-lettered).
pub(crate) async fn sentinel_task(
    mut rx: mpsc::Receiver<SentinelWork>,
    path: SentinelPath,
    cx: Context,
    beat: Beat,
) -> Result<(), PipelineError> {
    let destination = match path {
        SentinelPath::Live(sink) => Destination::Live(Arc::new(sink)),
        SentinelPath::DryRun(sink) => Destination::DryRun(Arc::new(Mutex::new(sink))),
    };
    let mut in_flight: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
    let mut busy: HashSet<Key> = HashSet::new();
    let mut queued: HashMap<Key, VecDeque<(TableBatch, BytePermit)>> = HashMap::new();
    let mut waiting_items = 0usize;
    let (mut flushing, mut closed) = (None, false);
    loop {
        if in_flight.is_empty() {
            if let Some(id) = flushing.take() {
                if cx.archive.send(ArchiveWork::Flush { id }).await.is_err() {
                    return Ok(());
                }
                continue;
            }
            if closed {
                return Ok(());
            }
            beat.waiting();
        }
        let accepting = !closed && flushing.is_none() && in_flight.len() + waiting_items < cx.max_in_flight;
        tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                beat.working();
                let key = done.key.clone();
                finish(done, &cx).await?;
                match queued.get_mut(&key).and_then(VecDeque::pop_front) {
                    Some((batch, permit)) => {
                        waiting_items -= 1;
                        in_flight.push(start(key, batch, permit, &destination, &cx));
                    }
                    None => {
                        queued.remove(&key);
                        busy.remove(&key);
                    }
                }
            }
            work = rx.recv(), if accepting => match work {
                Some(SentinelWork::Batch { batch, permit }) => {
                    beat.working();
                    let key = (batch.partition, batch.table.clone());
                    if busy.insert(key.clone()) {
                        in_flight.push(start(key, batch, permit, &destination, &cx));
                    } else {
                        waiting_items += 1;
                        queued.entry(key).or_default().push_back((batch, permit));
                    }
                }
                Some(SentinelWork::Flush { id }) => flushing = Some(id),
                None => closed = true,
            },
        }
    }
}

/// One batch: skipped if an earlier run had it accepted, else prepared on the CPU pool and sent;
/// the `sent` marker is put once it was accepted.
fn start(
    key: Key,
    batch: TableBatch,
    permit: BytePermit,
    destination: &Destination,
    cx: &Context,
) -> BoxFuture<'static, Done> {
    let (destination, markers, cpu) = (destination.clone(), cx.markers.clone(), cx.cpu.clone());
    async move {
        let done = |outcome| Done { key, batch: batch.clone(), _permit: permit, outcome };
        if markers.sentinel_sent_before(&batch.source, &batch.table, batch.last_offset) {
            return done(Outcome::Replayed);
        }
        let result = match &destination {
            Destination::Live(sink) => {
                let (s, b) = (sink.clone(), batch.clone());
                match cpu.run(move || s.prepare(&b)).await {
                    Err(e) => return done(Outcome::Failed(e)),
                    Ok(Err(e)) => Err(e),
                    Ok(Ok(prepared)) => sink.deliver_prepared(&batch, prepared).await,
                }
            }
            Destination::DryRun(sink) => {
                sink.lock().await.write(&batch).await.map(|sent| Delivered { sent, ..Delivered::default() })
            }
        };
        if result.is_ok()
            && let Err(e) =
                markers.sentinel_sent(&batch.source, &batch.table, batch.first_offset, batch.last_offset).await
        {
            return done(Outcome::Failed(e.into()));
        }
        done(Outcome::Sent(result))
    }
    .boxed()
}

/// Counts a finished batch and acks it, or hands its dead letters to the archive (which acks).
async fn finish(done: Done, cx: &Context) -> Result<(), PipelineError> {
    let Done { batch, outcome, .. } = done;
    let rows = batch.rows() as u64;
    let mut counts = Counts::default();
    let mut letters = Vec::new();
    match outcome {
        Outcome::Replayed => {
            counts.sinks = SinkCounters { sentinel_replayed_rows: rows, ..SinkCounters::default() };
            counts.accounting.table(&batch.table).sent_sentinel += rows;
        }
        Outcome::Sent(Ok(delivered)) => {
            counts.sinks = SinkCounters {
                sentinel_retries: delivered.retries,
                sentinel_throttled: delivered.throttled,
                ..SinkCounters::default()
            };
            let sent = delivered.sent;
            let stats = counts.accounting.table(&batch.table);
            stats.sent_sentinel += sent.rows;
            stats.sentinel_rejected += sent.rejected;
            stats.sentinel_truncated += sent.truncated;
            letters.extend(
                sent.rejected_rows
                    .into_iter()
                    .map(|r| row_dead_letter(&batch, DeadLetterReason::SentinelRejected, &r.reason, r.json)),
            );
        }
        Outcome::Sent(Err(e)) if e.is_encoding() => {
            tracing::error!(table = %batch.table, rows, error = %e, "sentinel cannot encode a batch: its rows are dead-lettered");
            counts.accounting.table(&batch.table).sentinel_rejected += rows;
            letters = rows_dead_letters(&batch, &e.to_string());
        }
        Outcome::Sent(Err(e)) => return Err(e.into()),
        Outcome::Failed(e) => return Err(e),
    }
    count(&cx.acks, counts);
    if letters.is_empty() {
        let _ = cx.acks.send(Ack::Durable { partition: batch.partition, epoch: batch.last_offset });
        return Ok(());
    }
    let work = ArchiveWork::Rejected {
        source: batch.source.clone(),
        partition: batch.partition,
        epoch: batch.last_offset,
        letters,
    };
    // The archive gone: its own error ends the run.
    let _ = cx.archive.send(work).await;
    Ok(())
}
