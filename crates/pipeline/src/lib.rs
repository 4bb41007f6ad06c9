//! defender-pipeline: source → decode → sinks, with acks flowing back to one tracker.
//!
//! ```text
//! source task ──SourceEvent (≤ budget bytes)──▶ decode task ──Stage (≤ 4)──▶ sink task
//!   ▲                                           one Decoder per              Sentinel, archive (Parquet +
//!   │                                           partition, flush rule        dead letters) → Durable
//!   └──── Positions (durable per partition) ◀──────────────────────────── AckTracker
//! ```
//!
//! - The source holds a [`ByteBudget`] permit for every chunk until the decoder has decoded it,
//!   so at most `budget_bytes` of raw input are in flight; the decode → sink channel holds at
//!   most [`EPOCH_QUEUE`] stages, each epoch bounded by the decoder's flush rule.
//! - Each epoch registers with the [`AckTracker`] as many parts as it has table batches per
//!   destination plus tables with dead letters; the sinks report each part durable (Sentinel
//!   accepted the rows, the archive stored the file). The committable position of a partition
//!   only ever covers epochs that are wholly durable; it is published in [`Positions`], from
//!   which a committing source (Kafka) commits on its own timer.
//! - A partition a source gives back (`Revoked`: a rebalance, or a stop) is flushed by the
//!   decoder, made durable by the sinks, published, forgotten, and only then answered; a
//!   partition it is given (`Assigned`) first learns from the archive what an earlier run
//!   stored beyond its commit, so nothing is archived twice.
//! - The [`Policy`] decides, per table, whether rows go to the archive and Sentinel and
//!   through which filter; rows no destination takes are counted as `filtered`.
//! - The run ends when the source ends (files exhausted, or a stop raised through
//!   [`PipelineOptions::stop`]) and every epoch is durable; an epoch that is not is an error,
//!   never a silent loss.

pub mod breakdown;
mod decode;
pub mod estimate;
pub mod policy;

use std::{
    collections::BTreeMap,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use arrow_array::BooleanArray;
use defender_core::{
    Accounting, Catalog, DeadLetter, DeadLetterReason, FlushRule, TableBatch,
    ack::{AckError, AckTracker},
    decode::{
        DecoderOutput,
        unknown::{DEFAULT_MAX_UNKNOWN_TABLES, UnknownTableNames},
    },
    health::{Beat, Health},
};
use defender_sinks::{
    ArchiveSink, Durable,
    archive::{ArchiveError, Recovery},
    sentinel::{Delivered, DryRunSink, SentinelError, SentinelSink, SinkWatch},
    store::Location,
};
use defender_sources::{ByteBudget, Positions, SourceError, SourceIo};
use tokio::sync::{mpsc, watch};

pub use crate::policy::Policy;

/// The histogram of the sinks' time per epoch, seconds (`metrics` facade).
pub const BATCH_SECONDS: &str = "defender_batch_seconds";

/// Epochs queued between the decoder and the sinks.
pub const EPOCH_QUEUE: usize = 4;

/// Settings of one pipeline run.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub flush: FlushRule,
    /// Where each table goes (default: everything to the archive).
    pub policy: Arc<Policy>,
    /// Raw input bytes in flight between the source and the decoder.
    pub budget_bytes: usize,
    /// How often the sink task rolls files that reached their age and reports progress.
    pub tick: Duration,
    /// Raised to end a run that has no end of its own (a Kafka source): the source stops
    /// reading, hands its partitions back through the pipeline and commits.
    pub stop: watch::Receiver<bool>,
    /// Distinct unknown tables the process keeps apart; records of later ones go to one
    /// overflow table (see `defender_core::decode::unknown`).
    pub max_unknown_tables: usize,
    /// Where the source, decode and sink stages report their liveness, and the Sentinel sink
    /// its refusals (for `/healthz` and `/readyz`).
    pub health: Health,
    /// A daemon's choice: when Sentinel refuses us permanently (403, 404, a refused
    /// credential), hold the data and retry instead of failing the run (readiness fails).
    pub hold_when_refused: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            flush: FlushRule::default(),
            policy: Arc::new(Policy::default()),
            budget_bytes: 64 << 20,
            tick: Duration::from_secs(1),
            stop: watch::channel(false).1,
            max_unknown_tables: DEFAULT_MAX_UNKNOWN_TABLES,
            health: Health::default(),
            hold_when_refused: false,
        }
    }
}

/// Where the run is, reported about once per tick.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub records_in: u64,
    pub rows_archived: u64,
    pub bytes_in: u64,
    pub elapsed: Duration,
    /// Everything counted so far, per table.
    pub accounting: Accounting,
    /// Per partition: the last offset every sink made durable.
    pub durable: BTreeMap<u32, i64>,
    pub sinks: SinkCounters,
}

/// Where rows the policy sends to Sentinel go.
#[derive(Debug)]
pub enum SentinelPath {
    /// Store the request bodies (`[sentinel] dry_run_dir`).
    DryRun(DryRunSink),
    /// Send them to the Logs Ingestion API; returns only when every row was accepted.
    Live(SentinelSink),
}

impl SentinelPath {
    async fn write(&mut self, batch: &TableBatch) -> Result<Delivered, SentinelError> {
        match self {
            Self::DryRun(sink) => Ok(Delivered { sent: sink.write(batch).await?, ..Delivered::default() }),
            Self::Live(sink) => sink.send(batch).await,
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub accounting: Accounting,
    /// Files stored in the archive: Parquet, and dead letters (counts: a daemon keeps no list
    /// that grows with time).
    pub parquet_files: u64,
    pub dead_letter_files: u64,
    /// Per partition: the last offset whose epoch is wholly durable.
    pub committed: BTreeMap<u32, i64>,
    pub sinks: SinkCounters,
    pub elapsed: Duration,
}

/// How the sinks fared, over the run.
#[derive(Debug, Clone, Default)]
pub struct SinkCounters {
    /// Logs Ingestion calls retried after a transient error, and after throttling.
    pub sentinel_retries: u64,
    pub sentinel_throttled: u64,
    /// Epochs the sink task handled and the seconds it spent on them.
    pub epochs: u64,
    pub epoch_seconds: f64,
    /// Rows read again after a restart that the archive already held (not written twice;
    /// counted as archived).
    pub archive_replayed_rows: u64,
    /// Rows read again after a restart that Sentinel had already accepted (not sent twice;
    /// counted as sent).
    pub sentinel_replayed_rows: u64,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Sentinel(#[from] SentinelError),
    #[error("ack bookkeeping: {0}")]
    Ack(#[from] AckError),
    #[error("{0} epochs were never made durable")]
    NotDurable(usize),
    #[error("pipeline task failed: {0}")]
    Task(String),
    #[error("filter of table {table}: {source}")]
    Filter {
        table: String,
        #[source]
        source: arrow_schema::ArrowError,
    },
}

/// Runs a pipeline to the end of its source. `source` is given the channel and budget to fill.
///
/// `sentinel` receives the rows the policy sends to Sentinel; a batch's Sentinel part is acked
/// only when every row of it was accepted (or stored, in a dry run). While the sink waits out
/// throttling or an outage, this task does not take the next epoch: the epoch queue fills, the
/// decoder stops, the source's byte budget runs out and reading stops, so memory stays flat.
/// Without a sink the Sentinel routes are not taken (the CLI refuses a config that asks for
/// them without a `[sentinel]` section).
pub async fn run<S, F>(
    catalog: Arc<Catalog>,
    source: S,
    archive: ArchiveSink,
    mut sentinel: Option<SentinelPath>,
    options: PipelineOptions,
    progress: impl FnMut(&Progress) + Send + 'static,
) -> Result<RunReport, PipelineError>
where
    S: FnOnce(SourceIo) -> F,
    F: Future<Output = Result<(), SourceError>> + Send + 'static,
{
    let started = Instant::now();
    let front = Front::spawn(catalog.clone(), source, &options, Some(archive.location().clone()));
    let beat = options.health.stage("sink");
    if let Some(SentinelPath::Live(sink)) = &mut sentinel {
        sink.watch(SinkWatch {
            stage: beat.observer(),
            condition: options.health.condition("sentinel"),
            hold_when_refused: options.hold_when_refused,
        });
    }
    let epoch_rx = front.stages;
    let state = SinkState {
        archive,
        sentinel,
        catalog,
        policy: options.policy,
        tracker: AckTracker::default(),
        positions: front.positions,
        report: RunReport::default(),
    };
    let sink = sink_stage(epoch_rx, state, options.tick, started, beat, progress);
    tokio::pin!(sink);
    let FrontTasks { mut source, decode } = front.tasks;
    let task = |e: tokio::task::JoinError| PipelineError::Task(e.to_string());
    let (sink_result, source_result) = tokio::select! {
        r = &mut sink => (r, source.await.map_err(task)?),
        s = &mut source => match s.map_err(task)? {
            // A failed source (a revocation the sinks could not finish in time) ends the run
            // now: what is in flight is abandoned, uncommitted, and read again after a restart.
            Err(e) => return Err(e.into()),
            Ok(()) => (sink.await, Ok(())),
        },
    };
    decode.await.map_err(task)?;
    source_result?;
    let mut report = sink_result?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// What the decode task hands the sink task, in source order per partition.
#[derive(Debug)]
pub(crate) enum Stage {
    /// A flush of one partition's decoder.
    Epoch(DecoderOutput),
    /// Partitions taken away from this process: every epoch of theirs came before this.
    Revoked { partitions: Vec<u32>, done: std::sync::mpsc::Sender<()> },
    /// A partition of a committing source now read here, with what the archive already holds
    /// of it beyond the commit; before any epoch of it.
    Assigned { source: Arc<str>, partition: u32, recovery: Recovery },
}

/// The source and decode tasks, and the channel of stages they feed.
pub(crate) struct Front {
    pub(crate) stages: mpsc::Receiver<Stage>,
    /// Where the sink task records how far each partition is durable, for the source to commit.
    pub(crate) positions: Positions,
    pub(crate) tasks: FrontTasks,
}

pub(crate) struct FrontTasks {
    source: tokio::task::JoinHandle<Result<(), SourceError>>,
    decode: tokio::task::JoinHandle<()>,
}

impl Front {
    /// `archive`: where to look for what an earlier run archived beyond a partition's commit.
    pub(crate) fn spawn<S, F>(
        catalog: Arc<Catalog>,
        source: S,
        options: &PipelineOptions,
        archive: Option<Location>,
    ) -> Self
    where
        S: FnOnce(SourceIo) -> F,
        F: Future<Output = Result<(), SourceError>> + Send + 'static,
    {
        let (source_tx, source_rx) = mpsc::channel(16);
        let (stage_tx, stages) = mpsc::channel(EPOCH_QUEUE);
        let positions = Positions::default();
        let io = SourceIo {
            events: source_tx,
            budget: ByteBudget::new(options.budget_bytes),
            positions: positions.clone(),
            stop: options.stop.clone(),
            beat: options.health.stage("source"),
        };
        let source = tokio::spawn(source(io));
        let names = Arc::new(UnknownTableNames::new(&catalog, options.max_unknown_tables));
        let limits =
            decode::DecodeLimits { flush: options.flush, tick: options.tick, max_pending_bytes: options.budget_bytes };
        let beat = options.health.stage("decode");
        let decode = tokio::spawn(decode::decode_stage(catalog, names, source_rx, stage_tx, limits, archive, beat));
        Self { stages, positions, tasks: FrontTasks { source, decode } }
    }
}

impl FrontTasks {
    /// Waits for both tasks (they end once the epoch receiver is gone or the input is done);
    /// a source error is returned.
    pub(crate) async fn join(self) -> Result<(), PipelineError> {
        let source = self.source.await.map_err(|e| PipelineError::Task(e.to_string()))?;
        self.decode.await.map_err(|e| PipelineError::Task(e.to_string()))?;
        Ok(source?)
    }
}

struct SinkState {
    archive: ArchiveSink,
    sentinel: Option<SentinelPath>,
    catalog: Arc<Catalog>,
    policy: Arc<Policy>,
    tracker: AckTracker,
    positions: Positions,
    report: RunReport,
}

impl SinkState {
    /// The rows of `batch` each destination takes under the policy: (archive, Sentinel). Counts
    /// the rows at least one takes as delivered and the others as filtered.
    fn route(&mut self, batch: &TableBatch) -> Result<(Option<TableBatch>, Option<TableBatch>), PipelineError> {
        let routes = self.policy.routes(&self.catalog, &batch.table);
        let err = |source| PipelineError::Filter { table: batch.table.to_string(), source };
        let rows = batch.rows();
        let mut taken = BooleanArray::from(vec![false; rows]);
        let mut outputs = [None, None];
        let sentinel_on = routes.sentinel.enabled && self.sentinel.is_some();
        for (i, (route, on)) in
            [(&routes.archive, routes.archive.enabled), (&routes.sentinel, sentinel_on)].into_iter().enumerate()
        {
            if !on {
                continue;
            }
            let Some(filter) = &route.filter else {
                taken = BooleanArray::from(vec![true; rows]);
                outputs[i] = Some(batch.clone());
                continue;
            };
            let mask = filter.row_mask(&batch.batch).map_err(err)?;
            taken = arrow_arith::boolean::or(&taken, &mask).map_err(err)?;
            let kept = filter.apply(&batch.batch).map_err(err)?;
            outputs[i] = (kept.num_rows() > 0).then(|| TableBatch { batch: kept, ..batch.clone() });
        }
        let delivered = taken.true_count() as u64;
        let stats = self.report.accounting.table(&batch.table);
        if let Some(reason) = routes.sentinel_refused.filter(|_| routes.count_dropped) {
            *stats.dropped.entry(reason.to_string()).or_default() += rows as u64;
        }
        stats.delivered += delivered;
        stats.filtered += rows as u64 - delivered;
        let [archive, sentinel] = outputs;
        Ok((archive, sentinel))
    }

    /// Routes one epoch and hands it to every destination. What a destination cannot take
    /// because of the rows themselves (a row over Sentinel's call limit, a batch an encoder
    /// cannot represent) becomes dead letters of this epoch, durable before the epoch is:
    /// content never stops the run. Errors of the infrastructure do.
    async fn epoch(&mut self, out: DecoderOutput) -> Result<(), PipelineError> {
        self.report.accounting.merge(&out.accounting);
        let mut batches = Vec::with_capacity(out.batches.len());
        let mut to_sentinel = Vec::new();
        for batch in &out.batches {
            let (archive, sentinel) = self.route(batch)?;
            batches.extend(archive);
            to_sentinel.extend(sentinel);
        }
        let mut dead_letters = out.dead_letters;
        // Acks of this epoch wait until it is registered, which needs the dead letters' tables.
        let mut durable = Vec::new();
        let mut parts = 0u32;
        let sentinel_parts = to_sentinel.len() as u32;
        if let Some(sink) = &mut self.sentinel {
            for batch in &to_sentinel {
                if self.archive.sentinel_sent_before(&batch.source, &batch.table, batch.last_offset) {
                    // Accepted before a crash, past the commit: not billed twice.
                    self.report.sinks.sentinel_replayed_rows += batch.rows() as u64;
                    self.report.accounting.table(&batch.table).sent_sentinel += batch.rows() as u64;
                    continue;
                }
                match sink.write(batch).await {
                    Ok(delivered) => {
                        self.report.sinks.sentinel_retries += delivered.retries;
                        self.report.sinks.sentinel_throttled += delivered.throttled;
                        let sent = delivered.sent;
                        let stats = self.report.accounting.table(&sent.table);
                        stats.sent_sentinel += sent.rows;
                        stats.sentinel_rejected += sent.rejected;
                        stats.sentinel_truncated += sent.truncated;
                        dead_letters.extend(
                            sent.rejected_rows
                                .into_iter()
                                .map(|r| row_dead_letter(batch, DeadLetterReason::SentinelRejected, &r.reason, r.json)),
                        );
                        let (first, last) = (batch.first_offset, batch.last_offset);
                        self.archive.sentinel_sent(&batch.source, &batch.table, first, last).await?;
                    }
                    Err(e) if e.is_encoding() => {
                        tracing::error!(table = %batch.table, rows = batch.rows(), error = %e, "sentinel cannot encode a batch: its rows are dead-lettered");
                        self.report.accounting.table(&batch.table).sentinel_rejected += batch.rows() as u64;
                        dead_letters.extend(rows_dead_letters(batch, &e.to_string()));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        for batch in &batches {
            match self.archive.write(batch).await {
                Ok(d) => {
                    durable.extend(d);
                    parts += 1;
                }
                Err(e @ ArchiveError::Encode { .. }) => {
                    tracing::error!(table = %batch.table, rows = batch.rows(), error = %e, "the archive cannot encode a batch: its rows are dead-lettered");
                    let letters = rows_dead_letters(batch, &e.to_string());
                    let stats = self.report.accounting.table(&batch.table);
                    stats.delivered = stats.delivered.saturating_sub(letters.len() as u64);
                    *stats.dead_lettered.entry(DeadLetterReason::EncodeFailed.to_string()).or_default() +=
                        letters.len() as u64;
                    dead_letters.extend(letters);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let dead_tables: std::collections::BTreeSet<&str> = dead_letters.iter().map(|d| &*d.table).collect();
        parts += sentinel_parts + dead_tables.len() as u32;
        self.tracker.register(out.partition, out.last_offset, parts)?;
        for _ in 0..sentinel_parts {
            self.tracker.ack(out.partition, out.last_offset)?;
        }
        if !dead_letters.is_empty() {
            durable.extend(
                self.archive.write_dead_letters(&out.source, out.partition, out.last_offset, &dead_letters).await?,
            );
        }
        self.durable(durable)?;
        self.commit(out.partition);
        Ok(())
    }

    fn durable(&mut self, durable: Vec<Durable>) -> Result<(), PipelineError> {
        let mut partitions = Vec::new();
        for d in durable {
            if !d.dead_letters {
                self.report.accounting.table(&d.table).written_archive += d.rows;
            }
            self.tracker.ack(d.partition, d.epoch)?;
            partitions.push(d.partition);
        }
        for stored in self.archive.take_stored() {
            if !stored.dead_letters {
                self.report.accounting.table(&stored.table).parquet_bytes += stored.bytes;
            }
            if stored.dead_letters {
                self.report.dead_letter_files += 1;
            } else {
                self.report.parquet_files += 1;
            }
        }
        partitions.dedup();
        for p in partitions {
            self.commit(p);
        }
        Ok(())
    }

    fn commit(&mut self, partition: u32) {
        if let Some(offset) = self.tracker.committable(partition) {
            self.report.committed.insert(partition, offset);
            self.positions.set_durable(partition, offset);
        }
    }

    /// Makes everything held of `partitions` durable (rolling every open archive file: the
    /// files gather several partitions' rows), records how far they got and forgets them.
    async fn revoke(&mut self, partitions: &[u32]) -> Result<(), PipelineError> {
        let durable = self.archive.close().await?;
        self.durable(durable)?;
        for &p in partitions {
            self.commit(p);
            self.archive.untrack(p);
            let abandoned = self.tracker.forget(p);
            if abandoned > 0 {
                tracing::warn!(
                    partition = p,
                    epochs = abandoned,
                    "revoked with epochs not durable: they will be read again"
                );
            }
        }
        Ok(())
    }

    fn progress(&mut self, started: Instant) -> Progress {
        self.report.sinks.archive_replayed_rows = self.archive.replayed_rows();
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

async fn sink_stage(
    mut rx: mpsc::Receiver<Stage>,
    mut state: SinkState,
    tick: Duration,
    started: Instant,
    beat: Beat,
    mut progress: impl FnMut(&Progress),
) -> Result<RunReport, PipelineError> {
    let mut timer = tokio::time::interval(tick);
    loop {
        beat.waiting();
        tokio::select! {
            stage = rx.recv() => match stage {
                Some(Stage::Epoch(out)) => {
                    beat.working();
                    let t = Instant::now();
                    state.epoch(out).await?;
                    let seconds = t.elapsed().as_secs_f64();
                    metrics::histogram!(BATCH_SECONDS).record(seconds);
                    state.report.sinks.epochs += 1;
                    state.report.sinks.epoch_seconds += seconds;
                }
                Some(Stage::Assigned { source, partition, recovery }) => {
                    state.archive.track(&source, partition, recovery);
                }
                Some(Stage::Revoked { partitions, done }) => {
                    beat.working();
                    state.revoke(&partitions).await?;
                    // The source may have given up waiting: nothing to tell then.
                    let _ = done.send(());
                }
                None => break,
            },
            _ = timer.tick() => {
                beat.working();
                let durable = state.archive.poll(Instant::now()).await?;
                state.durable(durable)?;
                state.archive.release(&state.positions.committed(), &state.positions.take_revoked()).await?;
                progress(&state.progress(started));
            }
        }
    }
    let durable = state.archive.close().await?;
    state.durable(durable)?;
    // The source has made its last commits: the markers they passed go before the exit.
    state.archive.release(&state.positions.committed(), &state.positions.take_revoked()).await?;
    progress(&state.progress(started));
    match state.tracker.outstanding() {
        0 => Ok(state.report),
        n => Err(PipelineError::NotDurable(n)),
    }
}

/// A dead letter for one row of a decoded batch (its message offset is not kept: the batch's
/// range and the row's `_RecordId`, in `raw`, place it).
fn row_dead_letter(batch: &TableBatch, reason: DeadLetterReason, detail: &str, raw: Vec<u8>) -> DeadLetter {
    DeadLetter::for_row(
        batch.table.clone(),
        reason,
        batch.source.clone(),
        batch.partition,
        (batch.first_offset, batch.last_offset),
        detail,
        raw,
    )
}

/// Every row of `batch` as a dead letter (`encode_failed`, the encoder's error as detail), each
/// row as JSON.
fn rows_dead_letters(batch: &TableBatch, error: &str) -> Vec<DeadLetter> {
    defender_core::deadletter::rows_json(&batch.batch)
        .into_iter()
        .map(|raw| row_dead_letter(batch, DeadLetterReason::EncodeFailed, error, raw))
        .collect()
}

#[cfg(test)]
mod tests;
