//! The consumer's context: the loop's state and librdkafka's callbacks.
//!
//! librdkafka is a foreign thread: the callbacks (rebalance, commit results, statistics, OAuth
//! tokens) run on the consumer's own thread, inside `poll`, and reach the loop's state through
//! [`Ctx`]. Everything here only *tries* to send to the pipeline (an outbox keeps order when
//! its channel is full), except a revocation, which waits — bounded by `revoke_timeout` — for
//! the pipeline to make the revoked partitions durable before their offsets are committed.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use defender_core::health::StageObserver;
use rdkafka::{
    ClientContext, Offset, TopicPartitionList,
    client::OAuthToken,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol},
    error::KafkaError as RdError,
    statistics::Statistics,
    types::RDKafkaRespErr,
};
use tokio::sync::mpsc::{self, error::TrySendError};

use super::{CALL_TIMEOUT, KafkaAuth, KafkaConfig, KafkaError, KafkaMetrics, StartPosition, TokenProvider};
use crate::{ByteBudget, Chunk, Positions, SourceEvent, SourceIo};

/// The pipeline's number of a partition: `topic index << 16 | partition`.
fn key(topics: &[String], topic: &str, partition: i32) -> u32 {
    let t = topics.iter().position(|t| t == topic).unwrap_or(0);
    ((t as u32) << 16) | (partition as u32 & 0xffff)
}

/// A partition this process reads.
struct Assigned {
    topic: String,
    partition: i32,
    source: Arc<str>,
    /// Last offset committed (Kafka's committed offset minus one); None also after a failed
    /// commit, so the next one sends the offset again.
    committed: Option<i64>,
    /// Fetched, not yet handed to the pipeline.
    pending: Vec<(i64, Bytes)>,
    pending_bytes: usize,
}

struct State {
    events: mpsc::Sender<SourceEvent>,
    budget: ByteBudget,
    positions: Positions,
    topics: Vec<String>,
    assigned: BTreeMap<u32, Assigned>,
    /// Events ready to go, in order, before any new chunk.
    outbox: VecDeque<SourceEvent>,
    paused: bool,
    failure: Option<KafkaError>,
}

/// The consumer's context: all the loop's state, reachable from librdkafka's callbacks (which
/// run on the same thread, inside `poll`).
pub(super) struct Ctx {
    state: Mutex<State>,
    tokens: Option<Arc<dyn TokenProvider>>,
    metrics: KafkaMetrics,
    start: StartPosition,
    group: bool,
    chunk_bytes: usize,
    revoke_timeout: Duration,
    /// The source stage's liveness, for the waits inside callbacks.
    beat: StageObserver,
}

impl Ctx {
    pub(super) fn new(config: &KafkaConfig, io: &SourceIo, metrics: KafkaMetrics) -> Self {
        let state = State {
            events: io.events.clone(),
            budget: io.budget.clone(),
            positions: io.positions.clone(),
            topics: config.topics.clone(),
            assigned: BTreeMap::new(),
            outbox: VecDeque::new(),
            paused: false,
            failure: None,
        };
        Self {
            state: Mutex::new(state),
            tokens: match &config.auth {
                KafkaAuth::OAuth(t) => Some(t.clone()),
                _ => None,
            },
            metrics,
            start: config.start,
            group: config.group,
            chunk_bytes: config.chunk_bytes.max(1),
            revoke_timeout: config.revoke_timeout,
            beat: io.beat.observer(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("kafka source state poisoned")
    }

    /// The partitions this process reads now.
    pub(super) fn assigned_keys(&self) -> Vec<u32> {
        self.state().assigned.keys().copied().collect()
    }

    pub(super) fn take_failure(&self) -> Option<KafkaError> {
        self.state().failure.take()
    }

    pub(super) fn key(&self, topic: &str, partition: i32) -> u32 {
        key(&self.state().topics, topic, partition)
    }

    pub(super) fn push(&self, key: u32, offset: i64, body: Bytes) {
        let mut st = self.state();
        let chunk_bytes = self.chunk_bytes;
        // A message of a partition no longer assigned (fetched before a revoke) is not ours.
        let Some(a) = st.assigned.get_mut(&key) else { return };
        a.pending_bytes += body.len();
        a.pending.push((offset, body));
        let full = a.pending_bytes >= chunk_bytes;
        drop(st);
        if full {
            self.pump(false);
        }
    }

    /// Moves what is ready to the pipeline without waiting: the outbox, then the pending
    /// messages of each partition holding a full chunk (every non-empty one when `all`).
    /// Returns false when something is held back (budget spent or channel full).
    pub(super) fn pump(&self, all: bool) -> bool {
        let mut st = self.state();
        let st = &mut *st;
        while let Some(ev) = st.outbox.pop_front() {
            match st.events.try_send(ev) {
                Ok(()) => {}
                Err(TrySendError::Full(ev)) => {
                    st.outbox.push_front(ev);
                    return false;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        for (&partition, a) in st.assigned.iter_mut() {
            if a.pending.is_empty() || !(all || a.pending_bytes >= self.chunk_bytes) {
                continue;
            }
            let Some(permit) = st.budget.try_acquire(a.pending_bytes) else { return false };
            let chunk = Chunk { source: a.source.clone(), partition, messages: std::mem::take(&mut a.pending), permit };
            a.pending_bytes = 0;
            let n = chunk.messages.len() as u64;
            match st.events.try_send(SourceEvent::Chunk(chunk)) {
                Ok(()) => self.metrics.update(|m| m.messages += n),
                Err(TrySendError::Full(ev)) => {
                    st.outbox.push_back(ev);
                    return false;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        true
    }

    /// Pauses every assigned partition while the pipeline is behind, resumes when it caught up.
    pub(super) fn set_paused(&self, consumer: &BaseConsumer<Ctx>, paused: bool) {
        let tpl = {
            let mut st = self.state();
            if st.paused == paused || st.assigned.is_empty() {
                return;
            }
            st.paused = paused;
            let mut tpl = TopicPartitionList::new();
            for a in st.assigned.values() {
                tpl.add_partition(&a.topic, a.partition);
            }
            tpl
        };
        let r = if paused { consumer.pause(&tpl) } else { consumer.resume(&tpl) };
        if let Err(e) = r {
            tracing::warn!(error = %e, paused, "cannot pause/resume fetching");
        }
        self.metrics.update(|m| {
            m.paused = paused;
            m.pauses += u64::from(paused);
        });
        tracing::debug!(paused, "fetching {}", if paused { "paused: pipeline behind" } else { "resumed" });
    }

    /// Registers a partition now read by this process; the pipeline hears of it first.
    pub(super) fn assigned(&self, topic: &str, partition: i32, committed: Option<i64>) {
        let key = self.key(topic, partition);
        let source: Arc<str> = format!("{topic}/{partition}").into();
        let mut st = self.state();
        st.outbox.push_back(SourceEvent::Assigned { source: source.clone(), partition: key, committed });
        st.assigned.insert(
            key,
            Assigned { topic: topic.to_string(), partition, source, committed, pending: Vec::new(), pending_bytes: 0 },
        );
        // Newly assigned partitions fetch; the loop pauses them again if the pipeline is behind.
        st.paused = false;
        self.metrics.update(|m| {
            m.assigned.insert(format!("{topic}/{partition}"));
        });
    }

    /// Commits `durable + 1` of the given partitions (all when None) where it moved forward.
    pub(super) fn commit(&self, consumer: &BaseConsumer<Ctx>, only: Option<&[u32]>, mode: CommitMode) {
        let mut tpl = TopicPartitionList::new();
        let mut moved = Vec::new();
        {
            let st = self.state();
            for (key, a) in &st.assigned {
                if only.is_some_and(|o| !o.contains(key)) {
                    continue;
                }
                let Some(done) = st.positions.durable(*key) else { continue };
                if a.committed.is_some_and(|c| c >= done) {
                    continue;
                }
                if tpl.add_partition_offset(&a.topic, a.partition, Offset::Offset(done + 1)).is_ok() {
                    moved.push(*key);
                }
            }
        }
        if moved.is_empty() {
            return;
        }
        // An asynchronous commit that the broker later refuses comes back through
        // `commit_callback` and is sent again; until then it counts as done. (librdkafka does
        // not deliver the results of asynchronous commits to a BaseConsumer polled like this
        // one in every version, so waiting for the confirmation could wait forever.)
        match consumer.commit(&tpl, mode) {
            Ok(()) => self.committed(&tpl),
            Err(e) => self.commit_failed(&e, &tpl),
        }
    }

    /// A commit of `tpl`'s offsets was made.
    fn committed(&self, tpl: &TopicPartitionList) {
        let mut st = self.state();
        for e in tpl.elements() {
            let Offset::Offset(next) = e.offset() else { continue };
            let key = key(&st.topics, e.topic(), e.partition());
            let Some(a) = st.assigned.get_mut(&key) else { continue };
            if a.committed.is_some_and(|c| c >= next - 1) {
                continue;
            }
            a.committed = Some(next - 1);
            let source = a.source.to_string();
            st.positions.set_committed(key, next - 1);
            self.metrics.update(|m| {
                m.committed.insert(source, next - 1);
            });
        }
    }

    /// A commit failed: the next one sends the offsets again.
    fn commit_failed(&self, error: &RdError, tpl: &TopicPartitionList) {
        let mut st = self.state();
        for e in tpl.elements() {
            let key = key(&st.topics, e.topic(), e.partition());
            if let Some(a) = st.assigned.get_mut(&key) {
                a.committed = None;
            }
        }
        self.metrics.update(|m| m.commit_errors += 1);
        tracing::warn!(error = %error, "offset commit failed (sent again at the next commit)");
    }

    /// Hands `keys` back: the pipeline finishes them (bounded by `timeout`), their durable
    /// offsets are committed (unless the assignment was lost), and they are forgotten.
    pub(super) fn revoke(
        &self,
        consumer: &BaseConsumer<Ctx>,
        keys: &[u32],
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        let keys: Vec<u32> = {
            let st = self.state();
            keys.iter().copied().filter(|k| st.assigned.contains_key(k)).collect()
        };
        if keys.is_empty() {
            return Ok(());
        }
        let keys = keys.as_slice();
        let deadline = Instant::now() + timeout;
        let names: Vec<String> = {
            let mut st = self.state();
            let st = &mut *st;
            // Fetched but never handed over: the next owner reads them from the commit.
            for k in keys {
                if let Some(a) = st.assigned.get_mut(k) {
                    a.pending.clear();
                    a.pending_bytes = 0;
                }
            }
            st.outbox.retain(|ev| !matches!(ev, SourceEvent::Chunk(c) if keys.contains(&c.partition)));
            keys.iter().filter_map(|k| st.assigned.get(k)).map(|a| a.source.to_string()).collect()
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        self.state().outbox.push_back(SourceEvent::Revoked { partitions: keys.to_vec(), done: done_tx });
        // Wait (bounded) for the pipeline to take the outbox and finish the partitions.
        self.beat.waiting();
        let finished = loop {
            let sent = self.pump(false) && self.state().outbox.is_empty();
            if sent {
                break done_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok();
            }
            if Instant::now() >= deadline || self.state().events.is_closed() {
                break false;
            }
            #[allow(clippy::disallowed_methods)] // the consumer's own thread, inside a callback
            std::thread::sleep(Duration::from_millis(5));
        };
        self.beat.working();
        let lost = self.group && consumer.assignment_lost();
        if self.group && !lost {
            self.commit(consumer, Some(keys), CommitMode::Sync);
        }
        {
            let mut st = self.state();
            for k in keys {
                st.assigned.remove(k);
                st.positions.remove(*k);
            }
        }
        self.metrics.update(|m| {
            for n in &names {
                m.lag.remove(n);
                m.committed.remove(n);
                m.assigned.remove(n);
            }
        });
        if lost {
            tracing::warn!(partitions = ?names, "assignment lost (session timed out): not committing");
        }
        if finished || self.state().events.is_closed() {
            tracing::info!(partitions = ?names, "partitions handed back");
            Ok(())
        } else {
            Err(KafkaError::RevokeTimeout { partitions: names, timeout })
        }
    }

    /// The assignment callback: committed offsets, the start position for partitions without
    /// one, then the assignment itself.
    fn on_assign(&self, consumer: &BaseConsumer<Ctx>, tpl: &mut TopicPartitionList) -> Result<(), KafkaError> {
        let committed = consumer.committed_offsets(tpl.clone(), CALL_TIMEOUT).map_err(|e| {
            KafkaError::Client(format!("cannot read committed offsets of the assigned partitions: {e}"))
        })?;
        let mut without = TopicPartitionList::new();
        let mut known = Vec::new();
        for e in committed.elements() {
            match e.offset() {
                Offset::Offset(n) if n >= 0 => known.push((e.topic().to_string(), e.partition(), Some(n - 1))),
                _ => {
                    if let StartPosition::Timestamp(ms) = self.start {
                        let _ = without.add_partition_offset(e.topic(), e.partition(), Offset::Offset(ms));
                    }
                    known.push((e.topic().to_string(), e.partition(), None));
                }
            }
        }
        if without.count() > 0 {
            let found =
                consumer.offsets_for_times(without, CALL_TIMEOUT).map_err(|e| KafkaError::Client(e.to_string()))?;
            for e in found.elements() {
                let _ = tpl.set_partition_offset(e.topic(), e.partition(), e.offset());
            }
        }
        let r = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
            _ => consumer.assign(tpl),
        };
        r.map_err(|e| KafkaError::Client(format!("assign: {e}")))?;
        for (topic, partition, committed) in known {
            self.assigned(&topic, partition, committed);
        }
        self.metrics.update(|m| m.rebalances += 1);
        tracing::info!(partitions = tpl.count(), "partitions assigned");
        Ok(())
    }

    fn fail(&self, e: KafkaError) {
        tracing::error!(error = %e, "kafka source failed");
        self.state().failure.get_or_insert(e);
    }
}

impl ClientContext for Ctx {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn stats(&self, statistics: Statistics) {
        let up = statistics.brokers.values().any(|b| b.state == "UP");
        let mut lag = BTreeMap::new();
        {
            let st = self.state();
            for a in st.assigned.values() {
                let l = statistics
                    .topics
                    .get(&a.topic)
                    .and_then(|t| t.partitions.get(&a.partition))
                    .map_or(-1, |p| p.consumer_lag);
                lag.insert(a.source.to_string(), l);
            }
        }
        self.metrics.update(|m| {
            m.broker_up = up;
            m.lag = lag;
        });
    }

    fn error(&self, error: RdError, reason: &str) {
        tracing::warn!(error = %error, reason, "kafka client error");
    }

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let tokens = self.tokens.as_ref().ok_or("no token provider configured")?;
        let (token, lifetime_ms) = tokens.token()?;
        Ok(OAuthToken { token, principal_name: "defender-ingest".into(), lifetime_ms })
    }
}

impl ConsumerContext for Ctx {
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.committed(offsets),
            Err(e) => self.commit_failed(&e, offsets),
        }
    }

    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = self.on_assign(consumer, tpl) {
                    self.fail(e);
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let keys: Vec<u32> = tpl.elements().iter().map(|e| self.key(e.topic(), e.partition())).collect();
                if let Err(e) = self.revoke(consumer, &keys, self.revoke_timeout) {
                    self.fail(e);
                }
                let r = match consumer.rebalance_protocol() {
                    RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
                    _ => consumer.unassign(),
                };
                if let Err(e) = r {
                    tracing::warn!(error = %e, "unassign failed");
                }
            }
            other => {
                tracing::warn!(error = ?other, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }
}
