//! One partition's reader: `Assigned`, chunks of events in sequence-number order, and at the
//! end (lost, stopped, or the pipeline gone) a `Revoked` followed by the checkpoint.
//!
//! Invariants: the sequence numbers handed to the pipeline strictly increase (an event at or
//! below the last one handed over — the SDK re-attaches a failed link with its original start
//! filter — is skipped); the checkpoint names only a sequence number [`Positions`] reports durable
//! and the offset of that same event; nothing waits without bound except on the pipeline, whose
//! queue and byte budget bound what waits.
//!
//! [`Positions`]: crate::Positions

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use azure_messaging_eventhubs::{
    EventReceiver,
    models::{Checkpoint, ReceivedEventData},
    processor::PartitionClient,
};
use bytes::Bytes;
use defender_core::health::StageObserver;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, watch};

use super::{EventHubsError, Shared, read_checkpoint};
use crate::{ByteBudget, Chunk, SourceEvent, SourceIo};

/// A partition read now.
pub(crate) struct Part {
    source: Arc<str>,
    id: String,
    /// The offset of each event handed over and not yet passed by a checkpoint.
    offsets: BTreeMap<i64, String>,
    /// The last sequence number checkpointed (by us, or found at the start).
    committed: Option<i64>,
}

/// Why a partition's reading ended.
enum End {
    Stopped,
    Lost(String),
}

pub(crate) struct Reader {
    shared: Arc<Shared>,
    events: mpsc::Sender<SourceEvent>,
    budget: ByteBudget,
    stop: watch::Receiver<bool>,
    beat: StageObserver,
    key: u32,
    id: String,
    source: Arc<str>,
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, io: &SourceIo, key: u32, id: String) -> Self {
        let source: Arc<str> = format!("{}/{}", shared.config.event_hub, id).into();
        Self {
            shared,
            events: io.events.clone(),
            budget: io.budget.clone(),
            stop: io.stop.clone(),
            beat: io.beat.observer(),
            key,
            id,
            source,
        }
    }

    /// Reads a partition the processor handed us, until it is lost or the source stops; then
    /// hands it back and closes the partition client (so the processor may open it again).
    pub(crate) async fn run(self, client: Arc<PartitionClient>) -> Result<(), EventHubsError> {
        let found = read_checkpoint(&self.shared, &self.id).await;
        let committed = found.as_ref().and_then(|c| c.sequence_number);
        if found.is_some() && committed.is_none() {
            tracing::warn!(partition = %self.source, "the checkpoint has an offset but no sequence number");
        }
        let end = self.read(client.stream_events(), committed).await;
        let mut result = self.hand_back(&end).await;
        // The SDK recovers links, not a connection the endpoint dropped (0.15: every later
        // receiver fails with "Connection dropped"), and its processor would reopen the
        // partition on that connection forever: fail the source, so that the process restarts
        // from the checkpoints just written with a new connection.
        if let End::Lost(why) = &end
            && why.to_ascii_lowercase().contains("connection dropped")
            && result.is_ok()
        {
            result = Err(EventHubsError::Client(format!("the AMQP connection is gone ({why}): restarting")));
        }
        match Arc::try_unwrap(client) {
            Ok(c) => {
                if let Err(e) = c.close().await {
                    tracing::debug!(partition = %self.source, error = %e, "closing the partition client");
                }
            }
            Err(_) => tracing::debug!(partition = %self.source, "partition client still shared: dropped"),
        }
        result
    }

    /// Estimate: reads a plain receiver until the source stops. Nothing is checkpointed.
    pub(crate) async fn run_receiver(self, receiver: EventReceiver) -> Result<(), EventHubsError> {
        let end = self.read(receiver.stream_events(), None).await;
        if let End::Lost(why) = &end {
            tracing::warn!(partition = %self.source, reason = %why, "partition receiver ended");
        }
        let result = self.hand_back(&end).await;
        let _ = receiver.close().await;
        result
    }

    async fn read(
        &self,
        stream: impl Stream<Item = azure_messaging_eventhubs::Result<ReceivedEventData>>,
        committed: Option<i64>,
    ) -> End {
        let c = &self.shared.config;
        self.shared.parts.lock().expect("parts").insert(
            self.key,
            Part { source: self.source.clone(), id: self.id.clone(), offsets: BTreeMap::new(), committed },
        );
        self.shared.metrics.update(|m| {
            m.assigned.insert(self.source.to_string());
        });
        tracing::info!(partition = %self.source, ?committed, "partition assigned");
        let assigned = SourceEvent::Assigned { source: self.source.clone(), partition: self.key, committed };
        if self.events.send(assigned).await.is_err() {
            return End::Stopped;
        }
        let mut stream = std::pin::pin!(stream);
        let mut stop = self.stop.clone();
        let mut last = committed;
        let mut pending: Vec<(i64, Bytes)> = Vec::new();
        let mut pending_bytes = 0usize;
        let mut tick = tokio::time::interval(c.chunk_age);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.beat.working();
            if *stop.borrow() {
                return End::Stopped;
            }
            let full = tokio::select! {
                biased;
                r = stop.changed() => if r.is_err() { return End::Stopped } else { continue },
                () = self.events.closed() => return End::Stopped,
                next = stream.next() => match next {
                    Some(Ok(event)) => {
                        let (Some(seq), Some(offset)) = (event.sequence_number(), event.offset().clone()) else {
                            self.shared.metrics.update(|m| m.malformed += 1);
                            tracing::warn!(partition = %self.source, "an event without sequence number or offset: skipped");
                            continue;
                        };
                        if last.is_some_and(|l| seq <= l) {
                            self.shared.metrics.update(|m| m.replayed += 1);
                            continue;
                        }
                        last = Some(seq);
                        let body = Bytes::copy_from_slice(event.event_data().body().unwrap_or_default());
                        if let Some(p) = self.shared.parts.lock().expect("parts").get_mut(&self.key) {
                            p.offsets.insert(seq, offset);
                        }
                        pending_bytes += body.len();
                        pending.push((seq, body));
                        pending_bytes >= c.chunk_bytes
                    }
                    Some(Err(e)) => return End::Lost(e.to_string()),
                    None => return End::Lost("the receiver closed".into()),
                },
                _ = tick.tick() => !pending.is_empty(),
            };
            if full && !self.hand_over(&mut pending, &mut pending_bytes).await {
                return End::Stopped;
            }
        }
    }

    /// Hands the pending events over as one chunk: waits for budget and for room in the channel
    /// (the backpressure: no more is received meanwhile). False when the pipeline is gone.
    async fn hand_over(&self, pending: &mut Vec<(i64, Bytes)>, pending_bytes: &mut usize) -> bool {
        self.beat.waiting();
        let permit = self.budget.acquire(*pending_bytes).await;
        let messages = std::mem::take(pending);
        *pending_bytes = 0;
        let n = messages.len() as u64;
        let chunk = Chunk { source: self.source.clone(), partition: self.key, messages, permit };
        let ok = self.events.send(SourceEvent::Chunk(chunk)).await.is_ok();
        self.beat.working();
        if ok {
            self.shared.metrics.update(|m| m.messages += n);
        }
        ok
    }

    /// The partition goes back: the pipeline finishes it (bounded by `revoke_timeout`), its
    /// checkpoint is written and it is forgotten. Events received but not handed over are
    /// dropped: the next reader gets them again from the checkpoint.
    async fn hand_back(&self, end: &End) -> Result<(), EventHubsError> {
        let c = &self.shared.config;
        if let End::Lost(why) = end {
            self.shared.metrics.update(|m| m.losses += 1);
            tracing::info!(partition = %self.source, reason = %why, "partition lost");
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let revoked = SourceEvent::Revoked { partitions: vec![self.key], done: done_tx };
        let timeout = c.revoke_timeout;
        self.beat.waiting();
        let finished = match tokio::time::timeout(timeout, self.events.send(revoked)).await {
            Ok(Ok(())) => {
                tokio::task::spawn_blocking(move || done_rx.recv_timeout(timeout).is_ok()).await.unwrap_or(false)
            }
            // The pipeline is gone: nothing more will become durable.
            Ok(Err(_)) => true,
            Err(_) => false,
        };
        self.beat.working();
        if c.processor {
            checkpoint(&self.shared, self.key).await;
        }
        self.shared.parts.lock().expect("parts").remove(&self.key);
        self.shared.positions.remove(self.key);
        self.shared.metrics.update(|m| {
            m.assigned.remove(&*self.source);
            m.committed.remove(&*self.source);
        });
        if finished || self.events.is_closed() {
            tracing::info!(partition = %self.source, "partition handed back");
            Ok(())
        } else {
            Err(EventHubsError::RevokeTimeout { partitions: vec![self.source.to_string()], timeout })
        }
    }
}

/// Writes the checkpoint of partition `key` if what every sink made durable moved past the last
/// one. A failed write is logged and counted; the next one writes the position again.
pub(crate) async fn checkpoint(shared: &Shared, key: u32) {
    let Some(store) = shared.store.as_ref() else { return };
    let _one = shared.checkpointing.lock().await;
    let Some(done) = shared.positions.durable(key) else { return };
    let (id, source, offset) = {
        let parts = shared.parts.lock().expect("parts");
        let Some(p) = parts.get(&key) else { return };
        if p.committed.is_some_and(|c| c >= done) {
            return;
        }
        (p.id.clone(), p.source.clone(), p.offsets.get(&done).cloned())
    };
    let Some(offset) = offset else {
        tracing::warn!(partition = %source, sequence_number = done, "durable position without a known offset: not checkpointed");
        return;
    };
    let c = &shared.config;
    let cp = Checkpoint {
        fully_qualified_namespace: c.namespace.clone(),
        event_hub_name: c.event_hub.clone(),
        consumer_group: c.consumer_group.clone(),
        partition_id: id,
        offset: Some(offset),
        sequence_number: Some(done),
    };
    match tokio::time::timeout(Duration::from_secs(30), store.update_checkpoint(cp)).await {
        Ok(Ok(())) => {
            if let Some(p) = shared.parts.lock().expect("parts").get_mut(&key) {
                p.committed = Some(done);
                p.offsets = p.offsets.split_off(&(done + 1));
            }
            shared.positions.set_committed(key, done);
            shared.metrics.update(|m| {
                m.committed.insert(source.to_string(), done);
            });
            tracing::debug!(partition = %source, sequence_number = done, "checkpoint written");
        }
        Ok(Err(e)) => {
            shared.metrics.update(|m| m.checkpoint_errors += 1);
            tracing::warn!(partition = %source, error = %e, "checkpoint failed (written again at the next one)");
        }
        Err(_) => {
            shared.metrics.update(|m| m.checkpoint_errors += 1);
            tracing::warn!(partition = %source, "checkpoint timed out (written again at the next one)");
        }
    }
}
