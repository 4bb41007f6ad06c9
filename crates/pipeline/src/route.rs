//! The router: applies the policy once per batch and hands each destination its input.
//!
//! For each epoch it registers with the ack task how many parts the destinations will report
//! (one per table batch per destination, one per table of dead letters) before any of them can
//! be reported, then queues the batches. Every batch queued takes its size from the shared
//! in-flight byte budget until its destination is done with it, so a destination that stalls
//! holds at most that budget: then the router waits, the decoder waits, and the source pauses.
//! Assignments start the archive's replay markers of the partition; revocations become barriers
//! that travel behind the partition's data through every destination.

use std::{collections::BTreeSet, sync::Arc};

use arrow_array::BooleanArray;
use defender_core::{Accounting, Catalog, TableBatch, decode::DecoderOutput, health::Beat};
use defender_sinks::archive::Markers;
use defender_sources::ByteBudget;
use tokio::sync::mpsc;

use crate::{
    PipelineError, Policy, Stage,
    acks::{Ack, AckTx, Counts, count},
    archive_task::ArchiveWork,
    sentinel_task::SentinelWork,
};

/// Where the router sends.
pub(crate) struct Outputs {
    pub(crate) archive: mpsc::Sender<ArchiveWork>,
    /// None: no Sentinel path (its routes are not taken).
    pub(crate) sentinel: Option<mpsc::Sender<SentinelWork>>,
    pub(crate) acks: AckTx,
    /// Decoded bytes queued for or held by the destinations.
    pub(crate) budget: ByteBudget,
}

/// Runs until the decoder is done (Ok) or a destination is gone (Ok: its own error ends the
/// run). Errors are the policy's.
pub(crate) async fn route_task(
    mut rx: mpsc::Receiver<Stage>,
    catalog: Arc<Catalog>,
    policy: Arc<Policy>,
    markers: Markers,
    out: Outputs,
    beat: Beat,
) -> Result<(), PipelineError> {
    let mut barrier = 0u64;
    loop {
        beat.waiting();
        let Some(stage) = rx.recv().await else { return Ok(()) };
        beat.working();
        match stage {
            Stage::Epoch(epoch) => {
                if !route_epoch(epoch, &catalog, &policy, &out, &beat).await? {
                    return Ok(());
                }
            }
            Stage::Assigned { source, partition, recovery } => markers.track(&source, partition, recovery),
            Stage::Revoked { partitions, done } => {
                barrier += 1;
                // With a Sentinel path the barrier goes through it, and it passes it on to the
                // archive behind the dead letters it hands over: one Flushed, from the archive.
                let _ = out.acks.send(Ack::Barrier { id: barrier, partitions, destinations: 1, done });
                beat.waiting();
                let sent = match &out.sentinel {
                    Some(s) => s.send(SentinelWork::Flush { id: barrier }).await.is_ok(),
                    None => out.archive.send(ArchiveWork::Flush { id: barrier }).await.is_ok(),
                };
                if !sent {
                    return Ok(());
                }
            }
        }
    }
}

/// Routes one epoch; false when a destination is gone.
async fn route_epoch(
    epoch: DecoderOutput,
    catalog: &Catalog,
    policy: &Policy,
    out: &Outputs,
    beat: &Beat,
) -> Result<bool, PipelineError> {
    let mut counts = Counts { accounting: epoch.accounting, ..Counts::default() };
    let mut to_archive = Vec::with_capacity(epoch.batches.len());
    let mut to_sentinel = Vec::new();
    for batch in &epoch.batches {
        let (archive, sentinel) = route(catalog, policy, out.sentinel.is_some(), batch, &mut counts.accounting)?;
        to_archive.extend(archive);
        to_sentinel.extend(sentinel);
    }
    let dead_tables: BTreeSet<&str> = epoch.dead_letters.iter().map(|d| &*d.table).collect();
    let parts = (to_archive.len() + to_sentinel.len() + dead_tables.len()) as u32;
    let (partition, last) = (epoch.partition, epoch.last_offset);
    count(&out.acks, counts);
    let _ = out.acks.send(Ack::Register { partition, epoch: last, parts });
    for batch in to_sentinel {
        let sentinel = out.sentinel.as_ref().expect("routed to Sentinel only with a Sentinel path");
        beat.waiting();
        let permit = out.budget.acquire(batch.batch.get_array_memory_size()).await;
        if sentinel.send(SentinelWork::Batch { batch, permit }).await.is_err() {
            return Ok(false);
        }
    }
    for batch in to_archive {
        beat.waiting();
        let permit = out.budget.acquire(batch.batch.get_array_memory_size()).await;
        if out.archive.send(ArchiveWork::Batch { batch, permit }).await.is_err() {
            return Ok(false);
        }
    }
    if !epoch.dead_letters.is_empty() {
        let work =
            ArchiveWork::DeadLetters { source: epoch.source, partition, epoch: last, letters: epoch.dead_letters };
        beat.waiting();
        if out.archive.send(work).await.is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The rows of `batch` each destination takes under the policy: (archive, Sentinel). Counts
/// the rows at least one takes as delivered and the others as filtered.
fn route(
    catalog: &Catalog,
    policy: &Policy,
    has_sentinel: bool,
    batch: &TableBatch,
    accounting: &mut Accounting,
) -> Result<(Option<TableBatch>, Option<TableBatch>), PipelineError> {
    let routes = policy.routes(catalog, &batch.table);
    let err = |source| PipelineError::Filter { table: batch.table.to_string(), source };
    let rows = batch.rows();
    let mut taken = BooleanArray::from(vec![false; rows]);
    let mut outputs = [None, None];
    let sentinel_on = routes.sentinel.enabled && has_sentinel;
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
    let stats = accounting.table(&batch.table);
    if let Some(reason) = routes.sentinel_refused.filter(|_| routes.count_dropped) {
        *stats.dropped.entry(reason.to_string()).or_default() += rows as u64;
    }
    stats.delivered += delivered;
    stats.filtered += rows as u64 - delivered;
    let [archive, sentinel] = outputs;
    Ok((archive, sentinel))
}
