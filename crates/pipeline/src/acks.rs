//! The ack task: the one place that knows how far each partition is durable.
//!
//! Every other task sends it [`Ack`]s over the pipeline's only unbounded channel (acks are
//! small, and a bounded channel here could close a cycle with the queues the senders wait on).
//! It alone owns the [`AckTracker`], the run's accounting and counters, and it alone publishes
//! committable positions in [`Positions`] (the source commits from there). It also reports
//! progress on its tick and completes revocation barriers.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use defender_core::{Accounting, ack::AckTracker, health::Beat};
use defender_sinks::archive::Markers;
use defender_sources::Positions;
use tokio::sync::mpsc;

use crate::{BATCH_SECONDS, PipelineError, Progress, RunReport, SinkCounters};

/// What the router and the destinations tell the ack task.
#[derive(Debug)]
pub(crate) enum Ack {
    /// An epoch, done when `parts` [`Ack::Durable`]s of it arrive (sent before any of them).
    Register { partition: u32, epoch: i64, parts: u32 },
    /// One part of an epoch is durable: a Sentinel batch accepted (and its dead letters, if
    /// any, stored), an archive batch's files stored, a table's dead letters stored.
    Durable { partition: u32, epoch: i64 },
    /// Counts to add to the run's.
    Counted(Box<Counts>),
    /// A revocation: once `destinations` [`Ack::Flushed`]s of `id` arrived, the partitions'
    /// positions are published, they are forgotten, and `done` is told.
    Barrier { id: u64, partitions: Vec<u32>, destinations: u32, done: std::sync::mpsc::Sender<()> },
    /// A destination made durable everything it was given before barrier `id`.
    Flushed { id: u64 },
}

/// Counts a task adds to the run's.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) accounting: Accounting,
    pub(crate) sinks: SinkCounters,
    pub(crate) parquet_files: u64,
    pub(crate) dead_letter_files: u64,
    /// Rows counted delivered that reached no destination after all (dead-lettered by an
    /// encoder), per table: taken off `delivered`.
    pub(crate) undelivered: BTreeMap<String, u64>,
}

pub(crate) type AckTx = mpsc::UnboundedSender<Ack>;

/// Sends `counts` unless they are empty.
pub(crate) fn count(acks: &AckTx, counts: Counts) {
    let empty = counts.accounting.tables.is_empty()
        && counts.parquet_files == 0
        && counts.dead_letter_files == 0
        && counts.undelivered.is_empty()
        && counts.sinks == SinkCounters::default();
    if !empty {
        let _ = acks.send(Ack::Counted(Box::new(counts)));
    }
}

struct Barrier {
    partitions: Vec<u32>,
    remaining: u32,
    done: std::sync::mpsc::Sender<()>,
}

/// Runs until every sender is gone, then returns the run's report (an error if an epoch was
/// never made durable).
pub(crate) async fn ack_task(
    mut rx: mpsc::UnboundedReceiver<Ack>,
    positions: Positions,
    markers: Markers,
    tick: Duration,
    beat: Beat,
    mut progress: impl FnMut(&Progress),
) -> Result<RunReport, PipelineError> {
    let started = Instant::now();
    let mut state = State {
        tracker: AckTracker::default(),
        positions,
        markers,
        report: RunReport::default(),
        barriers: HashMap::new(),
        registered: HashMap::new(),
    };
    let mut timer = tokio::time::interval(tick);
    loop {
        beat.waiting();
        tokio::select! {
            biased;
            ack = rx.recv() => {
                beat.working();
                match ack {
                    Some(ack) => state.handle(ack)?,
                    None => break,
                }
            }
            _ = timer.tick() => {
                beat.working();
                progress(&state.progress(started));
            }
        }
    }
    progress(&state.progress(started));
    match state.tracker.outstanding() {
        0 => Ok(state.report),
        n => Err(PipelineError::NotDurable(n)),
    }
}

struct State {
    tracker: AckTracker,
    positions: Positions,
    markers: Markers,
    report: RunReport,
    barriers: HashMap<u64, Barrier>,
    /// When each outstanding epoch was registered (for the read → durable latency).
    registered: HashMap<u32, BTreeMap<i64, Instant>>,
}

impl State {
    fn handle(&mut self, ack: Ack) -> Result<(), PipelineError> {
        match ack {
            Ack::Register { partition, epoch, parts } => {
                self.tracker.register(partition, epoch, parts)?;
                self.registered.entry(partition).or_default().insert(epoch, Instant::now());
                self.commit(partition);
            }
            Ack::Durable { partition, epoch } => {
                self.tracker.ack(partition, epoch)?;
                self.commit(partition);
            }
            Ack::Counted(c) => {
                let r = &mut self.report;
                r.accounting.merge(&c.accounting);
                r.sinks.add(&c.sinks);
                r.parquet_files += c.parquet_files;
                r.dead_letter_files += c.dead_letter_files;
                for (table, n) in &c.undelivered {
                    let stats = r.accounting.table(table);
                    stats.delivered = stats.delivered.saturating_sub(*n);
                }
            }
            Ack::Barrier { id, partitions, destinations, done } => {
                self.barriers.insert(id, Barrier { partitions, remaining: destinations, done });
                self.complete(id);
            }
            Ack::Flushed { id } => {
                if let Some(b) = self.barriers.get_mut(&id) {
                    b.remaining = b.remaining.saturating_sub(1);
                }
                self.complete(id);
            }
        }
        Ok(())
    }

    /// Publishes how far `partition` is durable; records the latency of the epochs it passed.
    fn commit(&mut self, partition: u32) {
        let Some(offset) = self.tracker.committable(partition) else { return };
        self.report.committed.insert(partition, offset);
        self.positions.set_durable(partition, offset);
        if let Some(times) = self.registered.get_mut(&partition) {
            let later = times.split_off(&(offset + 1));
            for (_, at) in std::mem::replace(times, later) {
                let seconds = at.elapsed().as_secs_f64();
                metrics::histogram!(BATCH_SECONDS).record(seconds);
                self.report.sinks.epochs += 1;
                self.report.sinks.epoch_seconds += seconds;
            }
        }
    }

    /// Finishes barrier `id` once every destination flushed: publishes, forgets, answers.
    fn complete(&mut self, id: u64) {
        if self.barriers.get(&id).is_none_or(|b| b.remaining > 0) {
            return;
        }
        let b = self.barriers.remove(&id).expect("checked above");
        for &p in &b.partitions {
            self.commit(p);
            self.markers.untrack(p);
            self.registered.remove(&p);
            let abandoned = self.tracker.forget(p);
            if abandoned > 0 {
                tracing::warn!(
                    partition = p,
                    epochs = abandoned,
                    "revoked with epochs not durable: they will be read again"
                );
            }
        }
        // The source may have given up waiting: nothing to tell then.
        let _ = b.done.send(());
    }

    fn progress(&self, started: Instant) -> Progress {
        let totals = self.report.accounting.totals();
        Progress {
            records_in: totals.records_in,
            rows_archived: totals.written_archive,
            bytes_in: totals.bytes_in,
            elapsed: started.elapsed(),
            accounting: self.report.accounting.clone(),
            durable: self.positions.durable_all(),
            sinks: self.report.sinks.clone(),
        }
    }
}
