//! defender-pipeline: source → decode → route → one task per destination, with every ack
//! flowing to one task that commits.
//!
//! ```text
//!  source ──SourceEvent──▶ decode ──Stage──▶ route ──┬─ArchiveWork──▶ archive ──┐
//!  (budget: raw bytes)     (≤ 4 stages)              │  (≤ 64, bytes)      ▲     │ Ack
//!                                                    └─SentinelWork─▶ sentinel ──┤ (unbounded)
//!                                                       (≤ 64, bytes)  dead      ▼
//!  Positions (committable, per partition) ◀───────────────────────── acks
//! ```
//!
//! - The source holds a [`ByteBudget`] permit for every chunk until the decoder has decoded it;
//!   decode → route holds at most [`EPOCH_QUEUE`] stages (each bounded by the flush rule); each
//!   destination's queue holds at most [`SINK_QUEUE`] items, and every batch queued holds its
//!   decoded size from one shared in-flight budget (`budget_bytes`) until its destination is
//!   done with it. One destination stalling (a Sentinel outage) does not stop the other until
//!   that budget is spent; then routing waits, decoding waits and the source pauses.
//! - The router registers each epoch with the ack task as as many parts as it has table batches
//!   per destination plus tables with dead letters, before any can be reported; the
//!   destinations report each part durable (Sentinel accepted the rows, the archive stored the
//!   file). The ack task alone owns the [`AckTracker`](defender_core::ack::AckTracker): a
//!   partition's committable position only ever covers epochs that are wholly durable; it is
//!   published in [`Positions`], from which a committing source (Kafka) commits on its timer.
//! - A partition a source gives back (`Revoked`: a rebalance, or a stop) becomes a barrier that
//!   travels behind its data through every destination (Sentinel first, then the archive,
//!   behind the dead letters Sentinel hands it); when the archive has made everything durable
//!   the ack task publishes, forgets and answers. A partition it is given (`Assigned`) first
//!   learns from the archive what an earlier run stored or sent beyond its commit, so nothing
//!   is archived or sent twice.
//! - CPU work runs off the reactor: Sentinel encoding and gzip on a pool of `cpu_workers`
//!   blocking workers, the archive's Parquet encoding on a blocking thread of its own.
//! - The [`Policy`] decides, per table, whether rows go to the archive and Sentinel and
//!   through which filter; rows no destination takes are counted as `filtered`.
//! - The run ends when the source ends (files exhausted, or a stop raised through
//!   [`PipelineOptions::stop`]) and every epoch is durable; an epoch that is not is an error,
//!   never a silent loss. The first task to fail ends the run with its error.

mod acks;
mod archive_task;
pub mod breakdown;
mod cpu;
mod decode;
pub mod estimate;
pub mod policy;
mod route;
mod sentinel_task;

use std::{
    collections::BTreeMap,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use defender_core::{
    Accounting, Catalog, DeadLetter, DeadLetterReason, FlushRule, TableBatch,
    ack::AckError,
    decode::{
        DecoderOutput,
        unknown::{DEFAULT_MAX_UNKNOWN_TABLES, UnknownTableNames},
    },
    health::Health,
};
use defender_sinks::{
    ArchiveSink,
    archive::{ArchiveError, Recovery},
    sentinel::{DryRunSink, SentinelError, SentinelSink, SinkWatch},
    store::Location,
};
use defender_sources::{ByteBudget, Positions, SourceError, SourceIo};
use tokio::sync::{mpsc, watch};

pub use crate::policy::Policy;

/// The histogram of the sinks' time per epoch, seconds (`metrics` facade).
pub const BATCH_SECONDS: &str = "defender_batch_seconds";

/// Epochs queued between the decoder and the router.
pub const EPOCH_QUEUE: usize = 4;

/// Items (batches, dead letters, barriers) queued for each destination.
pub const SINK_QUEUE: usize = 64;

/// Settings of one pipeline run.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub flush: FlushRule,
    /// Where each table goes (default: everything to the archive).
    pub policy: Arc<Policy>,
    /// Input in flight, bounded three times over: raw chunks until decoded, input held by the
    /// decoders between flushes, and decoded batches until each destination is done with them.
    pub budget_bytes: usize,
    /// How often progress is reported, and at most how long the archive and the decoder wait
    /// to look for files and epochs that reached their age (more often when the age is below
    /// two ticks).
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
    /// Blocking workers for Sentinel row encoding and gzip (default: one per core).
    pub cpu_workers: usize,
    /// Sentinel batches in flight at once (of different partitions or tables).
    pub sentinel_in_flight: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            flush: FlushRule::default(),
            policy: Arc::new(Policy::default()),
            // RSS through a Sentinel outage grows about 3.4 MiB per MiB of budget, and 32 MiB
            // keeps full speed (benches/RESULTS.md, the daemon bench).
            budget_bytes: 32 << 20,
            tick: Duration::from_secs(1),
            stop: watch::channel(false).1,
            max_unknown_tables: DEFAULT_MAX_UNKNOWN_TABLES,
            health: Health::default(),
            hold_when_refused: false,
            cpu_workers: cpu::default_workers(),
            sentinel_in_flight: 8,
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkCounters {
    /// Logs Ingestion calls retried after a transient error, and after throttling.
    pub sentinel_retries: u64,
    pub sentinel_throttled: u64,
    /// Epochs made wholly durable, and the seconds from routing to durable they took in all.
    pub epochs: u64,
    pub epoch_seconds: f64,
    /// Rows read again after a restart that the archive already held (not written twice;
    /// counted as archived).
    pub archive_replayed_rows: u64,
    /// Rows read again after a restart that Sentinel had already accepted (not sent twice;
    /// counted as sent).
    pub sentinel_replayed_rows: u64,
}

impl SinkCounters {
    fn add(&mut self, o: &SinkCounters) {
        self.sentinel_retries += o.sentinel_retries;
        self.sentinel_throttled += o.sentinel_throttled;
        self.epochs += o.epochs;
        self.epoch_seconds += o.epoch_seconds;
        self.archive_replayed_rows += o.archive_replayed_rows;
        self.sentinel_replayed_rows += o.sentinel_replayed_rows;
    }
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
/// only when every row of it was accepted (or stored, in a dry run), or dead-lettered. While
/// Sentinel is throttled or down, its batches wait in its queue within the in-flight budget and
/// the archive goes on; once the budget is spent, reading stops and memory stays flat. Without
/// a sink the Sentinel routes are not taken (the CLI refuses a config that asks for them
/// without a `[sentinel]` section).
pub async fn run<S, F>(
    catalog: Arc<Catalog>,
    source: S,
    archive: ArchiveSink,
    sentinel: Option<SentinelPath>,
    options: PipelineOptions,
    progress: impl FnMut(&Progress) + Send + 'static,
) -> Result<RunReport, PipelineError>
where
    S: FnOnce(SourceIo) -> F,
    F: Future<Output = Result<(), SourceError>> + Send + 'static,
{
    let health = &options.health;
    let markers = archive.markers().clone();
    let cpu = cpu::Cpu::new(options.cpu_workers);
    let front = Front::spawn(catalog.clone(), source, &options, Some(archive.location().clone()), cpu.clone());
    let FrontTasks { source, decode } = front.tasks;
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let (archive_tx, archive_rx) = mpsc::channel(SINK_QUEUE);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(async move { source.await.map_err(task)?.map_err(PipelineError::from).map(|()| None) });
    tasks.spawn(async move { decode.await.map_err(task)?.map(|()| None) });
    let sentinel_tx = sentinel.map(|mut path| {
        let beat = health.stage("sentinel");
        if let SentinelPath::Live(sink) = &mut path {
            sink.watch(SinkWatch {
                stage: beat.observer(),
                condition: health.condition("sentinel"),
                hold_when_refused: options.hold_when_refused,
            });
        }
        let (tx, rx) = mpsc::channel(SINK_QUEUE);
        let cx = sentinel_task::Context {
            archive: archive_tx.clone(),
            acks: ack_tx.clone(),
            markers: markers.clone(),
            cpu,
            max_in_flight: options.sentinel_in_flight.max(1),
        };
        tasks.spawn(async move { sentinel_task::sentinel_task(rx, path, cx, beat).await.map(|()| None) });
        tx
    });
    let outputs = route::Outputs {
        archive: archive_tx,
        sentinel: sentinel_tx,
        acks: ack_tx.clone(),
        budget: ByteBudget::new(options.budget_bytes),
    };
    let (policy, beat) = (options.policy.clone(), health.stage("route"));
    let route = route::route_task(front.stages, catalog, policy, markers.clone(), outputs, beat);
    tasks.spawn(async move { route.await.map(|()| None) });
    let (positions, beat) = (front.positions.clone(), health.stage("archive"));
    let period = timer_period(archive.roll_age(), options.tick);
    let archive = archive_task::archive_task(archive_rx, archive, ack_tx, positions, period, beat);
    tasks.spawn(async move { archive.await.map(|()| None) });
    let beat = health.stage("acks");
    let acks = acks::ack_task(ack_rx, front.positions, markers, options.tick, beat, progress);
    tasks.spawn(async move { acks.await.map(Some) });
    join(tasks).await
}

/// How often a stage looks for what reached `age` (epochs to cut, files to roll): every
/// `tick`, or twice per `age` when that is shorter, so that a sub-second age is kept to within
/// half of itself.
fn timer_period(age: Duration, tick: Duration) -> Duration {
    (age / 2).max(Duration::from_millis(10)).min(tick)
}

fn task(e: tokio::task::JoinError) -> PipelineError {
    PipelineError::Task(e.to_string())
}

/// Waits for every task; the ack task's report, or the first task's error (the others are
/// stopped then). Of several errors, the cause is preferred to its consequence (epochs that
/// could not be made durable because a destination failed).
async fn join(
    mut tasks: tokio::task::JoinSet<Result<Option<RunReport>, PipelineError>>,
) -> Result<RunReport, PipelineError> {
    let started = Instant::now();
    let mut report = None;
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(Some(r))) => report = Some(r),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                if errors.is_empty() {
                    tasks.abort_all();
                }
                errors.push(e);
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                tasks.abort_all();
                errors.push(task(e));
            }
        }
    }
    if let Some(i) = errors.iter().position(|e| !matches!(e, PipelineError::NotDurable(_))) {
        return Err(errors.swap_remove(i));
    }
    if let Some(e) = errors.pop() {
        return Err(e);
    }
    let mut report = report.ok_or_else(|| PipelineError::Task("the ack task ended without a report".into()))?;
    report.elapsed = report.elapsed.max(started.elapsed());
    Ok(report)
}

/// What the decode task hands the router, in source order per partition.
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
    /// Where the ack task records how far each partition is durable, for the source to commit.
    pub(crate) positions: Positions,
    pub(crate) tasks: FrontTasks,
}

pub(crate) struct FrontTasks {
    source: tokio::task::JoinHandle<Result<(), SourceError>>,
    decode: tokio::task::JoinHandle<Result<(), PipelineError>>,
}

impl Front {
    /// `archive`: where to look for what an earlier run archived beyond a partition's commit;
    /// `cpu`: the pool the decoders run on.
    pub(crate) fn spawn<S, F>(
        catalog: Arc<Catalog>,
        source: S,
        options: &PipelineOptions,
        archive: Option<Location>,
        cpu: cpu::Cpu,
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
        let limits = decode::DecodeLimits {
            flush: options.flush,
            tick: timer_period(options.flush.max_age, options.tick),
            max_pending_bytes: options.budget_bytes,
            workers: options.cpu_workers,
        };
        let health = options.health.clone();
        let decode =
            tokio::spawn(decode::decode_stage(catalog, names, source_rx, stage_tx, limits, archive, cpu, health));
        Self { stages, positions, tasks: FrontTasks { source, decode } }
    }
}

impl FrontTasks {
    /// Waits for both tasks (they end once the epoch receiver is gone or the input is done);
    /// a source error is returned.
    pub(crate) async fn join(self) -> Result<(), PipelineError> {
        let source = self.source.await.map_err(|e| PipelineError::Task(e.to_string()))?;
        self.decode.await.map_err(|e| PipelineError::Task(e.to_string()))??;
        Ok(source?)
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
