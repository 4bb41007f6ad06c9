//! The archive task: owns the [`ArchiveSink`] (Parquet files and dead letters, its own and the
//! Sentinel path's) and reports every part it makes durable to the ack task.
//!
//! The sink's work (Parquet encoding, and the puts it waits on) runs on a blocking thread, one
//! job at a time, so encoding never holds up the reactor and the files stay in order. A batch
//! the encoder cannot represent becomes dead letters of its epoch (`encode_failed`): content
//! never stops the run; errors of the store do.

use std::{sync::Arc, time::Duration};

use defender_core::{DeadLetter, TableBatch, health::Beat};
use defender_sinks::{ArchiveSink, Durable, archive::ArchiveError};
use defender_sources::{BytePermit, Positions};
use tokio::{runtime::Handle, sync::mpsc};

use crate::{
    PipelineError, SinkCounters,
    acks::{Ack, AckTx, Counts, count},
    rows_dead_letters,
};

/// What the archive task is given, in order.
#[derive(Debug)]
pub(crate) enum ArchiveWork {
    /// Rows the policy sends to the archive; the permit holds their share of the in-flight
    /// budget until the sink has taken them.
    Batch { batch: TableBatch, permit: BytePermit },
    /// The decoder's dead letters of one epoch of one partition (any tables): one part per table.
    DeadLetters { source: Arc<str>, partition: u32, epoch: i64, letters: Vec<DeadLetter> },
    /// Rows of one batch the Sentinel path could not deliver: the batch's Sentinel part.
    Rejected { source: Arc<str>, partition: u32, epoch: i64, letters: Vec<DeadLetter> },
    /// A revocation barrier: make everything given so far durable, then say so.
    Flush { id: u64 },
}

/// Runs until its queue is closed and everything in it is durable.
pub(crate) async fn archive_task(
    mut rx: mpsc::Receiver<ArchiveWork>,
    sink: ArchiveSink,
    acks: AckTx,
    positions: Positions,
    tick: Duration,
    beat: Beat,
) -> Result<(), PipelineError> {
    let markers = sink.markers().clone();
    let mut task = Task { sink: Some(sink), acks, replayed: 0 };
    let mut timer = tokio::time::interval(tick);
    loop {
        beat.waiting();
        tokio::select! {
            work = rx.recv() => {
                beat.working();
                match work {
                    Some(ArchiveWork::Batch { batch, permit }) => task.batch(batch, permit).await?,
                    Some(ArchiveWork::DeadLetters { source, partition, epoch, letters }) => {
                        task.job(move |s, rt| rt.block_on(s.write_dead_letters(&source, partition, epoch, &letters))).await?;
                    }
                    Some(ArchiveWork::Rejected { source, partition, epoch, letters }) => {
                        task.job(move |s, rt| rt.block_on(s.write_rejected(&source, partition, epoch, &letters))).await?;
                    }
                    Some(ArchiveWork::Flush { id }) => {
                        task.job(|s, rt| rt.block_on(s.close())).await?;
                        let _ = task.acks.send(Ack::Flushed { id });
                    }
                    None => break,
                }
            }
            _ = timer.tick() => {
                beat.working();
                task.job(|s, rt| rt.block_on(s.poll(std::time::Instant::now()))).await?;
                markers.release(&positions.committed(), &positions.take_revoked()).await?;
            }
        }
    }
    task.job(|s, rt| rt.block_on(s.close())).await?;
    // The source has made its last commits: the markers they passed go before the exit.
    markers.release(&positions.committed(), &positions.take_revoked()).await?;
    Ok(())
}

struct Task {
    /// Away on the blocking thread while a job runs.
    sink: Option<ArchiveSink>,
    acks: AckTx,
    /// The sink's replayed rows already counted.
    replayed: u64,
}

impl Task {
    async fn batch(&mut self, batch: TableBatch, permit: BytePermit) -> Result<(), PipelineError> {
        let b = batch.clone();
        let written = self.run(move |s, rt| rt.block_on(s.write(&b))).await?;
        drop(permit);
        match written {
            Ok(durable) => {
                self.durable(durable);
                Ok(())
            }
            Err(e @ ArchiveError::Encode { .. }) => {
                tracing::error!(table = %batch.table, rows = batch.rows(), error = %e, "the archive cannot encode a batch: its rows are dead-lettered");
                let letters = rows_dead_letters(&batch, &e.to_string());
                let mut counts = Counts::default();
                // Counted delivered by the router: now they reach no destination.
                counts.undelivered.insert(batch.table.to_string(), letters.len() as u64);
                let stats = counts.accounting.table(&batch.table);
                *stats.dead_lettered.entry(defender_core::DeadLetterReason::EncodeFailed.to_string()).or_default() +=
                    letters.len() as u64;
                count(&self.acks, counts);
                let (source, partition, epoch) = (batch.source.clone(), batch.partition, batch.last_offset);
                self.job(move |s, rt| rt.block_on(s.write_rejected(&source, partition, epoch, &letters))).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Runs `job` with the sink on a blocking thread (`rt` to wait on the store from there).
    async fn run<T: Send + 'static>(
        &mut self,
        job: impl FnOnce(&mut ArchiveSink, &Handle) -> T + Send + 'static,
    ) -> Result<T, PipelineError> {
        let mut sink = self.sink.take().expect("the sink is back after every job");
        let rt = Handle::current();
        let (sink, out) = tokio::task::spawn_blocking(move || {
            let out = job(&mut sink, &rt);
            (sink, out)
        })
        .await
        .map_err(|e| PipelineError::Task(format!("archive worker: {e}")))?;
        self.sink = Some(sink);
        Ok(out)
    }

    /// [`Self::run`] for the sink's calls that report what became durable.
    async fn job(
        &mut self,
        job: impl FnOnce(&mut ArchiveSink, &Handle) -> Result<Vec<Durable>, ArchiveError> + Send + 'static,
    ) -> Result<(), PipelineError> {
        let durable = self.run(job).await??;
        self.durable(durable);
        Ok(())
    }

    /// Acks what became durable and counts it, with the files stored.
    fn durable(&mut self, durable: Vec<Durable>) {
        let sink = self.sink.as_mut().expect("the sink is here between jobs");
        let mut counts = Counts::default();
        for d in durable {
            if !d.dead_letters {
                counts.accounting.table(&d.table).written_archive += d.rows;
            }
            let _ = self.acks.send(Ack::Durable { partition: d.partition, epoch: d.epoch });
        }
        for stored in sink.take_stored() {
            if stored.dead_letters {
                counts.dead_letter_files += 1;
            } else {
                counts.accounting.table(&stored.table).parquet_bytes += stored.bytes;
                counts.parquet_files += 1;
            }
        }
        let replayed = sink.replayed_rows();
        counts.sinks = SinkCounters { archive_replayed_rows: replayed - self.replayed, ..SinkCounters::default() };
        self.replayed = replayed;
        count(&self.acks, counts);
    }
}
