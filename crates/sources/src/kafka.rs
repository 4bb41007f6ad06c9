//! Event Hubs through its Kafka endpoint (or any Kafka broker), as a consumer group member.
//!
//! One librdkafka consumer, polled on a thread of its own: librdkafka is a foreign thread, and
//! its rebalance callbacks run inside `poll`, where they must be able to wait for the pipeline.
//!
//! - **Partitions** are named `topic/partition` and numbered `topic index << 16 | partition` for
//!   the pipeline (Event Hubs has at most a few thousand partitions per hub).
//! - **Acknowledgement**: nothing is committed automatically (auto commit and auto offset store
//!   are off). The pipeline records in [`Positions`] the last offset of each partition that every
//!   sink made durable; this loop commits `offset + 1` on a timer (Event Hubs throttles commits
//!   to a few per second per partition), and synchronously when partitions are revoked or the
//!   source stops.
//! - **Revocation** (rebalance or stop): before `poll` returns from the revoke callback, the
//!   pipeline is told (`SourceEvent::Revoked`) to flush what it holds of those partitions; once it
//!   has made it durable (or `revoke_timeout` passed: then the source fails and the process
//!   restarts from the last commit) the final offsets are committed and the partitions let go.
//!   Messages fetched but not yet handed to the pipeline are dropped: the next owner reads them
//!   again from the commit.
//! - **Backpressure without missing polls**: `max.poll.interval.ms` counts time between polls,
//!   so this loop never blocks on the pipeline. When the byte budget is spent or the pipeline's
//!   channel is full it *pauses* every assigned partition (librdkafka stops fetching) and goes on
//!   calling `poll` every [`POLL`], which keeps group membership, rebalances and token refresh
//!   alive while memory stays flat; it resumes when the pipeline has taken what was held back.
//!   The only waits longer than a poll are bounded: a revocation (`revoke_timeout`) and the
//!   final drain on stop (`shutdown_grace`).

use std::{
    collections::{BTreeMap, VecDeque},
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use defender_core::health::StageObserver;
use rdkafka::{
    ClientConfig, ClientContext, Message, Offset, TopicPartitionList,
    client::OAuthToken,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol},
    error::KafkaError as RdError,
    statistics::Statistics,
    types::RDKafkaRespErr,
};
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::{ByteBudget, Chunk, Positions, SourceError, SourceEvent, SourceIo};

/// How long one `poll` waits for a message.
pub const POLL: Duration = Duration::from_millis(100);
/// Timeout of the broker round trips made inside callbacks (committed offsets, lookups).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a partition with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    Earliest,
    Latest,
    /// The first message enqueued at or after this time (Unix milliseconds).
    Timestamp(i64),
}

/// A source of Entra tokens for OAUTHBEARER (workload identity). Called on the consumer's
/// thread whenever librdkafka asks for a token (at connect and before the last one expires).
pub trait TokenProvider: Send + Sync {
    /// A token for Event Hubs and when it expires (Unix milliseconds).
    fn token(&self) -> Result<(String, i64), String>;
}

/// How the consumer authenticates.
#[derive(Clone)]
pub enum KafkaAuth {
    /// PLAINTEXT, no authentication (local brokers, tests).
    Plaintext,
    /// Event Hubs' SASL_SSL + PLAIN: user `$ConnectionString`, password the connection string.
    ConnectionString(String),
    /// SASL_SSL + OAUTHBEARER with Entra tokens (workload or managed identity).
    OAuth(Arc<dyn TokenProvider>),
}

impl fmt::Debug for KafkaAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plaintext => "Plaintext",
            Self::ConnectionString(_) => "ConnectionString(***)",
            Self::OAuth(_) => "OAuth",
        })
    }
}

/// Settings of the Kafka source. [`KafkaConfig::new`] gives the Event Hubs defaults of
/// DESIGN.md §2.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`; for Event Hubs `<namespace>.servicebus.windows.net:9093`.
    pub bootstrap: String,
    /// Topics (Event Hubs: hub names), all tables in one or one per table.
    pub topics: Vec<String>,
    pub group_id: String,
    /// Static membership (`group.instance.id`), e.g. the pod name: a restarted pod gets its
    /// partitions back without a rebalance.
    pub group_instance_id: Option<String>,
    pub auth: KafkaAuth,
    pub start: StartPosition,
    pub commit_interval: Duration,
    pub session_timeout: Duration,
    /// How long a revocation waits for the pipeline to make the revoked partitions durable.
    pub revoke_timeout: Duration,
    /// How long a stop waits for the pipeline to drain.
    pub shutdown_grace: Duration,
    /// Messages of one partition are handed over in chunks of about this many bytes.
    pub chunk_bytes: usize,
    /// librdkafka's prefetch queue (`queued.max.messages.kbytes`), one queue for all partitions.
    pub prefetch_kbytes: usize,
    /// Join the group and commit (`run`), or read every partition of the topics without joining
    /// and without committing (`estimate`).
    pub group: bool,
    /// Further librdkafka properties, applied last.
    pub properties: BTreeMap<String, String>,
}

impl KafkaConfig {
    pub fn new(bootstrap: impl Into<String>, topics: Vec<String>, group_id: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            topics,
            group_id: group_id.into(),
            group_instance_id: None,
            auth: KafkaAuth::Plaintext,
            start: StartPosition::Earliest,
            commit_interval: Duration::from_secs(2),
            session_timeout: Duration::from_secs(30),
            revoke_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(25),
            chunk_bytes: 1 << 20,
            prefetch_kbytes: 16 * 1024,
            group: true,
            properties: BTreeMap::new(),
        }
    }

    /// The librdkafka configuration. Holds the secret: never log it.
    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("group.id", &self.group_id)
            .set("client.id", "defender-ingest")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set(
                "auto.offset.reset",
                match self.start {
                    StartPosition::Latest => "latest",
                    StartPosition::Earliest | StartPosition::Timestamp(_) => "earliest",
                },
            )
            .set("session.timeout.ms", self.session_timeout.as_millis().to_string())
            // The service drops connections idle for 240 s.
            .set("metadata.max.age.ms", "180000")
            .set("connections.max.idle.ms", "180000")
            .set("socket.keepalive.enable", "true")
            .set("queued.max.messages.kbytes", self.prefetch_kbytes.to_string())
            .set("statistics.interval.ms", "5000");
        if let Some(id) = &self.group_instance_id {
            c.set("group.instance.id", id);
        }
        match &self.auth {
            KafkaAuth::Plaintext => {
                c.set("security.protocol", "plaintext");
            }
            KafkaAuth::ConnectionString(cs) => {
                c.set("security.protocol", "sasl_ssl")
                    .set("sasl.mechanism", "PLAIN")
                    .set("sasl.username", "$ConnectionString")
                    .set("sasl.password", cs);
            }
            KafkaAuth::OAuth(_) => {
                c.set("security.protocol", "sasl_ssl").set("sasl.mechanism", "OAUTHBEARER");
            }
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// Creates the consumer (no connection yet): checks every property. Used by `run` and by
    /// config checks.
    fn consumer(&self, ctx: Ctx) -> Result<BaseConsumer<Ctx>, KafkaError> {
        if self.topics.is_empty() {
            return Err(KafkaError::Config("no topic to read".into()));
        }
        if self.topics.len() > 1 << 15 {
            return Err(KafkaError::Config("too many topics".into()));
        }
        self.client_config().create_with_context(ctx).map_err(|e| KafkaError::Config(e.to_string()))
    }

    /// Checks the configuration by creating (not connecting) a consumer.
    pub fn check(&self) -> Result<(), KafkaError> {
        let (tx, _rx) = mpsc::channel(1);
        let (io, _stop) = SourceIo::new(tx, ByteBudget::new(1));
        self.consumer(Ctx::new(self, &io, KafkaMetrics::default())).map(drop)
    }
}

/// Errors of the Kafka source.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka configuration: {0}")]
    Config(String),
    #[error("kafka: {0}")]
    Client(String),
    #[error("partitions {partitions:?} were revoked but the pipeline did not make them durable within {timeout:?}")]
    RevokeTimeout { partitions: Vec<String>, timeout: Duration },
}

/// What the consumer reports for metrics and readiness.
#[derive(Debug, Clone, Default)]
pub struct KafkaMetrics(Arc<Mutex<KafkaState>>);

/// A snapshot of [`KafkaMetrics`].
#[derive(Debug, Clone, Default)]
pub struct KafkaState {
    /// Per `topic/partition` currently assigned: messages between the committed offset and the
    /// end of the partition (librdkafka's `consumer_lag`; -1 while unknown).
    pub lag: BTreeMap<String, i64>,
    /// Per `topic/partition`: the last offset committed by this process.
    pub committed: BTreeMap<String, i64>,
    /// The `topic/partition`s this process reads now.
    pub assigned: std::collections::BTreeSet<String>,
    /// At least one broker connection is up (from the last statistics).
    pub broker_up: bool,
    pub rebalances: u64,
    /// Fetching is paused because the pipeline is behind.
    pub paused: bool,
    /// Times fetching was paused.
    pub pauses: u64,
    /// Messages handed to the pipeline.
    pub messages: u64,
    pub commit_errors: u64,
}

impl KafkaMetrics {
    pub fn snapshot(&self) -> KafkaState {
        self.0.lock().expect("kafka metrics poisoned").clone()
    }

    fn update(&self, f: impl FnOnce(&mut KafkaState)) {
        f(&mut self.0.lock().expect("kafka metrics poisoned"));
    }
}

/// The Kafka source.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    config: KafkaConfig,
    metrics: KafkaMetrics,
}

impl KafkaSource {
    pub fn new(config: KafkaConfig) -> Self {
        Self { config, metrics: KafkaMetrics::default() }
    }

    pub fn metrics(&self) -> KafkaMetrics {
        self.metrics.clone()
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Reads until `io.stop` is raised (or the pipeline goes away), then hands every partition
    /// back through the pipeline, commits and leaves the group.
    pub async fn run(self, io: SourceIo) -> Result<(), SourceError> {
        tokio::task::spawn_blocking(move || self.run_blocking(io))
            .await
            .map_err(|e| SourceError::Kafka(KafkaError::Client(format!("consumer thread: {e}"))))?
            .map_err(SourceError::Kafka)
    }

    fn run_blocking(self, io: SourceIo) -> Result<(), KafkaError> {
        let ctx = Ctx::new(&self.config, &io, self.metrics.clone());
        let consumer = self.config.consumer(ctx)?;
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        if self.config.group {
            consumer.subscribe(&topics).map_err(|e| KafkaError::Client(e.to_string()))?;
        } else {
            assign_all(&consumer, &self.config)?;
        }
        tracing::info!(topics = ?self.config.topics, group = %self.config.group_id,
            bootstrap = %self.config.bootstrap, "kafka source started");
        let mut last_commit = Instant::now();
        let mut last_flush = Instant::now();
        loop {
            // The loop turns at least every POLL: a consumer thread stuck anywhere stops this.
            io.beat.working();
            if *io.stop.borrow() || io.events.is_closed() {
                break;
            }
            if let Some(e) = consumer.context().take_failure() {
                return Err(e);
            }
            let ctx = consumer.context();
            let flowing = ctx.pump(false);
            ctx.set_paused(&consumer, !flowing);
            match consumer.poll(POLL) {
                Some(Ok(m)) => {
                    let key = ctx.key(m.topic(), m.partition());
                    let body = Bytes::copy_from_slice(m.payload().unwrap_or_default());
                    ctx.push(key, m.offset(), body);
                }
                Some(Err(e)) => tracing::warn!(error = %e, "kafka consumer error (librdkafka retries)"),
                None => {}
            }
            // Partial chunks go out when the partitions are idle, and at least every poll
            // interval while they are busy (latency), not only when a chunk fills.
            if last_flush.elapsed() >= POLL {
                ctx.pump(true);
                last_flush = Instant::now();
            }
            if self.config.group && last_commit.elapsed() >= self.config.commit_interval {
                ctx.commit(&consumer, None, CommitMode::Async);
                last_commit = Instant::now();
            }
        }
        // Stop: hand everything back (the pipeline drains it), commit, leave the group.
        let ctx = consumer.context();
        let all: Vec<u32> = ctx.state().assigned.keys().copied().collect();
        let result = ctx.revoke(&consumer, &all, self.config.shutdown_grace);
        if self.config.group {
            consumer.unsubscribe();
        }
        tracing::info!("kafka source stopped");
        result
    }
}

/// Estimate mode: every partition of every topic, from the start position, without a group.
fn assign_all(consumer: &BaseConsumer<Ctx>, config: &KafkaConfig) -> Result<(), KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for topic in &config.topics {
        let md = consumer
            .fetch_metadata(Some(topic), CALL_TIMEOUT)
            .map_err(|e| KafkaError::Client(format!("metadata of {topic}: {e}")))?;
        for t in md.topics() {
            if let Some(e) = t.error() {
                return Err(KafkaError::Client(format!("topic {topic}: {e:?}")));
            }
            for p in t.partitions() {
                let offset = match config.start {
                    StartPosition::Earliest => Offset::Beginning,
                    StartPosition::Latest => Offset::End,
                    StartPosition::Timestamp(ms) => Offset::Offset(ms),
                };
                tpl.add_partition_offset(topic, p.id(), offset).map_err(|e| KafkaError::Client(e.to_string()))?;
            }
        }
    }
    if let StartPosition::Timestamp(_) = config.start {
        tpl = consumer.offsets_for_times(tpl, CALL_TIMEOUT).map_err(|e| KafkaError::Client(e.to_string()))?;
    }
    consumer.assign(&tpl).map_err(|e| KafkaError::Client(e.to_string()))?;
    let ctx = consumer.context();
    for e in tpl.elements() {
        ctx.assigned(e.topic(), e.partition(), None);
    }
    Ok(())
}

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
struct Ctx {
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
    fn new(config: &KafkaConfig, io: &SourceIo, metrics: KafkaMetrics) -> Self {
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

    fn take_failure(&self) -> Option<KafkaError> {
        self.state().failure.take()
    }

    fn key(&self, topic: &str, partition: i32) -> u32 {
        key(&self.state().topics, topic, partition)
    }

    fn push(&self, key: u32, offset: i64, body: Bytes) {
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
    fn pump(&self, all: bool) -> bool {
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
    fn set_paused(&self, consumer: &BaseConsumer<Ctx>, paused: bool) {
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
    fn assigned(&self, topic: &str, partition: i32, committed: Option<i64>) {
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
    fn commit(&self, consumer: &BaseConsumer<Ctx>, only: Option<&[u32]>, mode: CommitMode) {
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
    fn revoke(&self, consumer: &BaseConsumer<Ctx>, keys: &[u32], timeout: Duration) -> Result<(), KafkaError> {
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

#[cfg(test)]
mod tests;
