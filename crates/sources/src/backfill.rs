//! The backfill source: history from Event Hubs Capture files ([`crate::capture`]) or from the
//! storage-account export ([`crate::storage`]), on any object store (a local directory, Azure
//! Blob, ADLS; see `defender_sinks::store`).
//!
//! Every file or blob is a partition, named by its path relative to the location (so names, and
//! the archive files named after them, do not depend on where the history is mounted), read a
//! few at a time. A partition is announced with `Assigned` and the offset the job's progress
//! says is durable, so the pipeline reads the archive's replay markers first and a rerun writes
//! no row twice.
//!
//! Progress: `<archive prefix>/_backfill/<kind>-<hash of the location>.json` holds, per file,
//! the last offset every sink made durable and whether the file is done (a Capture file read to
//! its end and durable; a storage blob is never done: it may grow). It is written from
//! [`Positions`] (durable offsets only), then recorded there as the commit so the archive's
//! markers below it are released; a rerun skips done files and reads the others after their
//! offset.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use serde_json::json;

use crate::{
    Chunk, SourceError, SourceEvent, SourceIo, Unreadable,
    capture::{CaptureReader, Item},
    storage::LineSplitter,
};

/// Bytes per chunk sent down the pipeline (and per range read of a blob).
const CHUNK_BYTES: usize = 1 << 20;
/// How often progress is saved while reading, by default.
const SAVE_EVERY: Duration = Duration::from_secs(5);
/// After the last file is read, how long progress is still saved while nothing becomes durable.
const DRAIN_PATIENCE: Duration = Duration::from_secs(60);

/// Which history a location holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Event Hubs Capture: `.avro` files.
    Capture,
    /// Storage-account export: `PT1H.json` blobs.
    Storage,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Capture => "capture",
            Self::Storage => "storage",
        }
    }
}

/// One file or blob to read.
#[derive(Debug, Clone)]
pub struct Input {
    /// Path relative to the location: the partition's name.
    pub name: Arc<str>,
    pub path: Path,
    pub size: u64,
    /// The time in its path (Capture: the window start; storage: the hour).
    pub time: Option<DateTime<Utc>>,
}

/// What to read of a location.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Files whose path time is at or after this (storage: whose hour ends after it).
    pub from: Option<DateTime<Utc>>,
    /// Files whose path time is before this.
    pub to: Option<DateTime<Utc>>,
    /// Storage export: only these tables' containers (case-insensitive); empty: all.
    pub tables: Vec<String>,
}

/// Lists the inputs of `kind` under `prefix`, sorted by name. Files without a time in their
/// path are skipped when a window is given.
pub async fn list(
    kind: Kind,
    store: &dyn ObjectStore,
    prefix: &Path,
    selection: &Selection,
) -> Result<Vec<Input>, SourceError> {
    let metas: Vec<_> = store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(|source| SourceError::Store { path: prefix.to_string(), source })?;
    let prefix_parts = prefix.parts().count();
    let tables: Vec<String> = selection.tables.iter().map(|t| t.to_ascii_lowercase()).collect();
    let mut out = Vec::new();
    for meta in metas {
        let all: Vec<String> = meta.location.parts().map(|p| p.as_ref().to_string()).collect();
        let rel = &all[prefix_parts.min(all.len())..];
        let file = rel.last().map(String::as_str).unwrap_or_default();
        let time = match kind {
            Kind::Capture if file.ends_with(".avro") => capture_time(rel),
            Kind::Storage if file == "PT1H.json" => {
                if !tables.is_empty() {
                    let table = all.iter().find_map(|p| p.strip_prefix("insights-logs-advancedhunting-"));
                    if !table.is_some_and(|t| tables.iter().any(|w| w == t)) {
                        continue;
                    }
                }
                storage_time(rel)
            }
            _ => continue,
        };
        let span = if kind == Kind::Storage { chrono::Duration::hours(1) } else { chrono::Duration::zero() };
        let inside = match time {
            Some(t) => {
                selection.from.is_none_or(|f| t + span > f || (span.is_zero() && t >= f))
                    && selection.to.is_none_or(|to| t < to)
            }
            None => selection.from.is_none() && selection.to.is_none(),
        };
        if inside {
            out.push(Input { name: rel.join("/").into(), path: meta.location, size: meta.size, time });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `.../{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}.avro` (Capture's default naming ends so).
fn capture_time(rel: &[String]) -> Option<DateTime<Utc>> {
    let n = rel.len();
    if n < 6 {
        return None;
    }
    let last = rel[n - 1].strip_suffix(".avro")?;
    let p: Vec<u32> =
        rel[n - 6..n - 1].iter().map(|s| s.parse().ok()).chain([last.parse().ok()]).collect::<Option<_>>()?;
    NaiveDate::from_ymd_opt(p[0] as i32, p[1], p[2])?.and_hms_opt(p[3], p[4], p[5]).map(|t| t.and_utc())
}

/// `y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`.
fn storage_time(rel: &[String]) -> Option<DateTime<Utc>> {
    let value = |key: &str| rel.iter().find_map(|p| p.strip_prefix(key)?.parse::<u32>().ok());
    NaiveDate::from_ymd_opt(value("y=")? as i32, value("m=")?, value("d=")?)?
        .and_hms_opt(value("h=")?, 0, 0)
        .map(|t| t.and_utc())
}

/// The progress file of a job (see the module documentation).
#[derive(Debug, Clone)]
pub struct Job(Arc<JobInner>);

#[derive(Debug)]
struct JobInner {
    store: Arc<dyn ObjectStore>,
    path: Path,
    kind: Kind,
    location: String,
    state: Mutex<JobState>,
    /// Files of this run's inputs read to their end (or done before), and their bytes read.
    files_read: AtomicU64,
    bytes_read: AtomicU64,
    bytes_skipped: AtomicU64,
    /// False for an estimate's job: nothing is saved that a rerun reads.
    persistent: bool,
}

#[derive(Debug, Default)]
struct JobState {
    /// By name, from the progress file and this run.
    files: BTreeMap<String, FileProgress>,
    /// This run's partitions: partition → name, and what the reader did.
    running: BTreeMap<u32, Running>,
    /// The partition number of each input this run has read, so that a polling source reads a
    /// blob that grew as the same partition again.
    numbers: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct FileProgress {
    offset: Option<i64>,
    done: bool,
    /// Capture: the file's last event (SequenceNumber, Offset), kept once the file is done.
    last_event: Option<(i64, String)>,
}

#[derive(Debug)]
struct Running {
    name: String,
    last_sent: Option<i64>,
    finished: bool,
    last_event: Option<(i64, String)>,
}

/// Counts for the operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub files: usize,
    pub done: usize,
}

/// How far this run's readers are through their inputs, for a progress bar: files read to
/// their end and bytes read (files done by an earlier run, and the part of a blob before its
/// saved offset, count as read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadProgress {
    pub files: u64,
    pub bytes: u64,
    /// Of `bytes`, those counted as read without reading them (done before).
    pub skipped: u64,
}

impl Job {
    /// The job of reading `location` (as shown: the key of its progress file) into the archive
    /// at `archive`/`prefix`; reads the progress an earlier run saved.
    pub async fn open(
        kind: Kind,
        location: &str,
        archive: Arc<dyn ObjectStore>,
        prefix: &Path,
    ) -> Result<Self, SourceError> {
        let hash =
            location.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        let path = prefix.clone().join("_backfill").join(format!("{}-{hash:016x}.json", kind.as_str()));
        let err = |source| SourceError::Store { path: path.to_string(), source };
        let mut files = BTreeMap::new();
        match archive.get(&path).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(err)?;
                let doc: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| SourceError::Progress { path: path.to_string(), reason: e.to_string() })?;
                for (name, f) in doc["files"].as_object().into_iter().flatten() {
                    let last_event = f["last_event"]["sequence_number"]
                        .as_i64()
                        .map(|n| (n, f["last_event"]["offset"].as_str().unwrap_or_default().to_string()));
                    let (offset, done) = (f["offset"].as_i64(), f["done"].as_bool().unwrap_or(false));
                    files.insert(name.clone(), FileProgress { offset, done, last_event });
                }
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(err(e)),
        }
        let state = Mutex::new(JobState { files, ..Default::default() });
        Ok(Self(Arc::new(JobInner {
            store: archive,
            path,
            kind,
            location: location.to_string(),
            state,
            files_read: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_skipped: AtomicU64::new(0),
            persistent: true,
        })))
    }

    /// A job whose progress is kept in memory only (`estimate`: nothing is saved).
    pub async fn ephemeral(kind: Kind, location: &str) -> Result<Self, SourceError> {
        let job = Self::open(kind, location, Arc::new(object_store::memory::InMemory::new()), &Path::default()).await?;
        let mut inner = Arc::try_unwrap(job.0).expect("a new job has one owner");
        inner.persistent = false;
        Ok(Self(Arc::new(inner)))
    }

    /// Files and bytes read so far by this run.
    pub fn read_progress(&self) -> ReadProgress {
        ReadProgress {
            files: self.0.files_read.load(Ordering::Relaxed),
            bytes: self.0.bytes_read.load(Ordering::Relaxed),
            skipped: self.0.bytes_skipped.load(Ordering::Relaxed),
        }
    }

    fn read(&self, files: u64, bytes: u64) {
        self.0.files_read.fetch_add(files, Ordering::Relaxed);
        self.0.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    fn skipped(&self, files: u64, bytes: u64) {
        self.read(files, bytes);
        self.0.bytes_skipped.fetch_add(bytes, Ordering::Relaxed);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, JobState> {
        self.0.state.lock().expect("job state poisoned")
    }

    /// Where the progress is kept.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// Files known (from earlier runs and this one) and those done.
    pub fn counts(&self) -> JobCounts {
        let s = self.state();
        JobCounts { files: s.files.len(), done: s.files.values().filter(|f| f.done).count() }
    }

    /// Whether everything this run sent is durable by `durable`.
    fn all_durable(&self, durable: &BTreeMap<u32, i64>) -> bool {
        let s = self.state();
        s.running.iter().all(|(p, r)| r.last_sent.is_none_or(|l| durable.get(p).is_some_and(|d| *d >= l)))
    }

    /// The partition number of input `name` in this run: the next free one the first time.
    fn number(&self, name: &str) -> u32 {
        let mut s = self.state();
        let next = s.numbers.len() as u32;
        *s.numbers.entry(name.to_string()).or_insert(next)
    }

    fn progress(&self, name: &str) -> FileProgress {
        self.state().files.get(name).cloned().unwrap_or_default()
    }

    /// Saves the progress given the durable offsets of this run's partitions; returns the
    /// offsets saved (to record as commits).
    pub async fn save(&self, durable: &BTreeMap<u32, i64>) -> Result<BTreeMap<u32, i64>, SourceError> {
        let (doc, saved) = {
            let mut s = self.state();
            let mut saved = BTreeMap::new();
            let updates: Vec<(String, FileProgress)> = s
                .running
                .iter()
                .map(|(p, r)| {
                    let before = s.files.get(&r.name).cloned().unwrap_or_default();
                    let offset = match (before.offset, durable.get(p).copied()) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                    if let Some(o) = offset {
                        saved.insert(*p, o);
                    }
                    let all_durable = r.last_sent.is_none_or(|l| offset.is_some_and(|o| o >= l));
                    let done = before.done || (self.0.kind == Kind::Capture && r.finished && all_durable);
                    let last_event = if done { before.last_event.or_else(|| r.last_event.clone()) } else { None };
                    (r.name.clone(), FileProgress { offset, done, last_event })
                })
                .collect();
            s.files.extend(updates);
            let files: serde_json::Map<String, serde_json::Value> = s
                .files
                .iter()
                .map(|(name, f)| {
                    let mut v = json!({"offset": f.offset, "done": f.done});
                    if let Some((n, o)) = &f.last_event {
                        v["last_event"] = json!({"sequence_number": n, "offset": o});
                    }
                    (name.clone(), v)
                })
                .collect();
            let doc = json!({"version": 1, "kind": self.0.kind.as_str(), "location": self.0.location, "files": files});
            (doc, saved)
        };
        let body = serde_json::to_vec_pretty(&doc).expect("json serialises");
        self.0
            .store
            .put(&self.0.path, PutPayload::from(body))
            .await
            .map_err(|source| SourceError::Store { path: self.0.path.to_string(), source })?;
        Ok(saved)
    }
}

/// Reads a backfill's inputs into the pipeline, a few at a time.
#[derive(Debug, Clone)]
pub struct BackfillSource {
    kind: Kind,
    store: Arc<dyn ObjectStore>,
    inputs: Arc<Vec<Input>>,
    job: Job,
    parallel: usize,
    save_every: Duration,
    poll: Option<Poll>,
}

/// A storage-export source that follows the export: lists `prefix` again every `every`.
#[derive(Debug, Clone)]
struct Poll {
    prefix: Path,
    selection: Selection,
    every: Duration,
}

impl BackfillSource {
    pub fn new(kind: Kind, store: Arc<dyn ObjectStore>, inputs: Vec<Input>, job: Job) -> Self {
        Self { kind, store, inputs: Arc::new(inputs), job, parallel: 1, save_every: SAVE_EVERY, poll: None }
    }

    /// Instead of ending after the inputs, lists `prefix` with `selection` again every `every`
    /// and reads the blobs that grew and the new ones, until stopped (`[source.storage]` with a
    /// poll interval). Each pass waits until what it read is durable before the next one, so
    /// the next pass assigns a blob at an offset every sink holds.
    pub fn polling(mut self, prefix: Path, selection: Selection, every: Duration) -> Self {
        self.poll = Some(Poll { prefix, selection, every: every.max(Duration::from_millis(10)) });
        self
    }

    /// Saves progress this often while reading (default 5 s).
    pub fn with_save_interval(mut self, every: Duration) -> Self {
        self.save_every = every.max(Duration::from_millis(10));
        self
    }

    /// Reads up to `n` files at once (default 1).
    pub fn with_parallel(mut self, n: usize) -> Self {
        self.parallel = n.max(1);
        self
    }

    pub fn inputs(&self) -> &[Input] {
        &self.inputs
    }

    pub fn job(&self) -> &Job {
        &self.job
    }

    /// Sends every input not done yet, after its durable offset; saves progress as offsets
    /// become durable. The final save, once the pipeline has made everything durable, is the
    /// caller's ([`Job::save`] with the run's committed offsets).
    pub async fn run(self, io: SourceIo) -> Result<(), SourceError> {
        if let Some(poll) = self.poll.clone() {
            return self.follow(io, poll).await;
        }
        self.pass(&io, &self.inputs).await?;
        let SourceIo { events, stop, beat, positions, .. } = io;
        drop(events);
        beat.waiting();
        // Everything is read; the pipeline still holds up to its budget of it. Go on saving
        // as it becomes durable, so a crash now loses nothing read (bounded: a pipeline that
        // stops moving for DRAIN_PATIENCE leaves the rest to the command's final save).
        if self.job.0.persistent {
            self.settle(&positions, &stop, Some(DRAIN_PATIENCE)).await?;
        }
        Ok(())
    }

    /// Reads `inputs` (`parallel` at once) into the pipeline, saving progress on a timer;
    /// returns once every reader is done (or stopped).
    async fn pass(&self, io: &SourceIo, inputs: &Arc<Vec<Input>>) -> Result<(), SourceError> {
        let numbers: Arc<Vec<u32>> = Arc::new(inputs.iter().map(|i| self.job.number(&i.name)).collect());
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut readers = tokio::task::JoinSet::new();
        for _ in 0..self.parallel.min(inputs.len()).max(1) {
            let reader = Reader {
                kind: self.kind,
                store: self.store.clone(),
                job: self.job.clone(),
                tx: io.events.clone(),
                budget: io.budget.clone(),
                stop: io.stop.clone(),
                beat: io.beat.observer(),
            };
            let (inputs, numbers, next) = (inputs.clone(), numbers.clone(), next.clone());
            readers.spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(input) = inputs.get(i) else { return Ok(()) };
                    if !reader.input(numbers[i], input).await? {
                        return Ok(());
                    }
                }
            });
        }
        let mut timer = tokio::time::interval(self.save_every);
        timer.tick().await;
        loop {
            tokio::select! {
                done = readers.join_next() => match done {
                    None => return Ok(()),
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(e))) => {
                        readers.abort_all();
                        return Err(e);
                    }
                    Some(Err(e)) => {
                        readers.abort_all();
                        return Err(SourceError::Progress { path: "reader".into(), reason: e.to_string() });
                    }
                },
                _ = timer.tick() => self.save(&io.positions).await?,
            }
        }
    }

    /// Saves the durable offsets and records them as commits.
    async fn save(&self, positions: &crate::Positions) -> Result<(), SourceError> {
        for (p, o) in self.job.save(&positions.durable_all()).await? {
            positions.set_committed(p, o);
        }
        Ok(())
    }

    /// Waits until everything sent is durable, saving as more of it is (every `save_every`, and
    /// once all is); gives up when stopped or when nothing became durable for `patience`. True
    /// when all is durable (and saved: a polling source's next pass starts from there).
    async fn settle(
        &self,
        positions: &crate::Positions,
        stop: &tokio::sync::watch::Receiver<bool>,
        patience: Option<Duration>,
    ) -> Result<bool, SourceError> {
        let mut check = tokio::time::interval(self.save_every.min(Duration::from_millis(200)));
        let (mut seen, mut moved) = (positions.durable_all(), std::time::Instant::now());
        let (mut unsaved, mut saved_at) = (true, std::time::Instant::now());
        loop {
            let all = self.job.all_durable(&seen);
            if unsaved && (all || saved_at.elapsed() >= self.save_every) {
                self.save(positions).await?;
                (unsaved, saved_at) = (false, std::time::Instant::now());
            }
            if all {
                return Ok(true);
            }
            if *stop.borrow() || patience.is_some_and(|p| moved.elapsed() >= p) {
                return Ok(false);
            }
            check.tick().await;
            let now = positions.durable_all();
            if now != seen {
                (seen, moved, unsaved) = (now, std::time::Instant::now(), true);
            }
        }
    }

    /// The polling source: a pass over the blobs that are new or changed size since the pass
    /// that read them, then (once it is durable) a wait of `poll.every`, until stopped. Memory
    /// is one size per blob seen; a blob of the same size is not read again.
    async fn follow(self, io: SourceIo, poll: Poll) -> Result<(), SourceError> {
        let mut read_at: std::collections::HashMap<Arc<str>, u64> = Default::default();
        let mut stop = io.stop.clone();
        let mut inputs = self.inputs.clone();
        loop {
            let changed: Vec<Input> =
                inputs.iter().filter(|i| read_at.get(&i.name) != Some(&i.size)).cloned().collect();
            if !changed.is_empty() {
                tracing::debug!(blobs = changed.len(), "reading new or grown blobs");
                self.pass(&io, &Arc::new(changed.clone())).await?;
                io.beat.waiting();
                if !self.settle(&io.positions, &stop, None).await? || *stop.borrow() {
                    return Ok(());
                }
                read_at.extend(changed.into_iter().map(|i| (i.name, i.size)));
            }
            io.beat.waiting();
            tokio::select! {
                () = tokio::time::sleep(poll.every) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
            match list(self.kind, self.store.as_ref(), &poll.prefix, &poll.selection).await {
                Ok(listed) => inputs = Arc::new(listed),
                // A listing that fails (the account unreachable a moment) is tried again at
                // the next interval; what was read stays saved.
                Err(e) => tracing::warn!(error = %e, "cannot list the storage export: trying again at the next poll"),
            }
        }
    }
}

struct Reader {
    kind: Kind,
    store: Arc<dyn ObjectStore>,
    job: Job,
    tx: tokio::sync::mpsc::Sender<SourceEvent>,
    budget: crate::ByteBudget,
    stop: tokio::sync::watch::Receiver<bool>,
    beat: defender_core::health::StageObserver,
}

impl Reader {
    /// Reads one input as `partition`; false when the pipeline is gone or stopping.
    async fn input(&self, partition: u32, input: &Input) -> Result<bool, SourceError> {
        let progress = self.job.progress(&input.name);
        if progress.done {
            self.job.skipped(1, input.size);
            return Ok(true);
        }
        let source: Arc<str> = input.name.clone();
        self.job.state().running.insert(
            partition,
            Running { name: input.name.to_string(), last_sent: None, finished: false, last_event: None },
        );
        let committed = progress.offset;
        let assigned = SourceEvent::Assigned { source: source.clone(), partition, committed };
        if self.tx.send(assigned).await.is_err() {
            return Ok(false);
        }
        let go_on = match self.kind {
            Kind::Capture => self.capture(partition, &source, input, committed).await?,
            Kind::Storage => self.storage(partition, &source, input, committed).await?,
        };
        if !go_on {
            return Ok(false);
        }
        self.job.read(1, 0);
        if let Some(r) = self.job.state().running.get_mut(&partition) {
            r.finished = true;
        }
        self.beat.waiting();
        Ok(self.tx.send(SourceEvent::PartitionEnd { partition }).await.is_ok())
    }

    fn err(input: &Input) -> impl Fn(object_store::Error) -> SourceError + '_ {
        |source| SourceError::Store { path: input.path.to_string(), source }
    }

    async fn capture(
        &self,
        partition: u32,
        source: &Arc<str>,
        input: &Input,
        committed: Option<i64>,
    ) -> Result<bool, SourceError> {
        let data =
            self.store.get(&input.path).await.map_err(Self::err(input))?.bytes().await.map_err(Self::err(input))?;
        let mut reader = CaptureReader::new(data);
        let mut counted = 0;
        loop {
            self.beat.working();
            let (back, items) = tokio::task::spawn_blocking(move || {
                let items = reader.next_items(CHUNK_BYTES);
                (reader, items)
            })
            .await
            .expect("reading a capture file does not panic");
            reader = back;
            self.job.read(0, (reader.position() - counted) as u64);
            counted = reader.position();
            if items.is_empty() {
                return Ok(true);
            }
            let mut messages = Vec::new();
            for item in items.into_iter().filter(|i| committed.is_none_or(|c| i.offset() > c)) {
                match item {
                    Item::Message { offset, body, sequence_number, event_offset } => {
                        if let Some(n) = sequence_number {
                            let o = event_offset.map(|o| String::from_utf8_lossy(&o).into_owned()).unwrap_or_default();
                            self.last_event(partition, n, o);
                        }
                        messages.push((offset, body));
                    }
                    Item::Unreadable { offset, detail, raw } => {
                        if !self.send(partition, source, std::mem::take(&mut messages)).await? {
                            return Ok(false);
                        }
                        tracing::warn!(file = %source, offset, %detail, "unreadable capture data: dead-lettered");
                        let permit = self.budget.acquire(raw.len()).await;
                        let u = Unreadable { source: source.clone(), partition, offset, detail, raw, permit };
                        self.sent(partition, offset);
                        if self.tx.send(SourceEvent::Unreadable(u)).await.is_err() {
                            return Ok(false);
                        }
                    }
                }
            }
            if !self.send(partition, source, messages).await? {
                return Ok(false);
            }
        }
    }

    async fn storage(
        &self,
        partition: u32,
        source: &Arc<str>,
        input: &Input,
        committed: Option<i64>,
    ) -> Result<bool, SourceError> {
        let start = committed.map_or(0, |c| c.max(0) as u64);
        let mut splitter = LineSplitter::new(start);
        let mut at = start;
        self.job.skipped(0, start.min(input.size));
        while at < input.size {
            self.beat.working();
            let end = (at + CHUNK_BYTES as u64).min(input.size);
            let options = GetOptions { range: Some(GetRange::Bounded(at..end)), ..Default::default() };
            let got = self.store.get_opts(&input.path, options).await.map_err(Self::err(input))?;
            let data: Bytes = got.bytes().await.map_err(Self::err(input))?;
            if data.is_empty() {
                break;
            }
            at += data.len() as u64;
            self.job.read(0, data.len() as u64);
            tracing::debug!(blob = %source, at, bytes = data.len(), "read");
            let lines: Vec<_> =
                splitter.push(&data).into_iter().filter(|(o, _)| committed.is_none_or(|c| *o > c)).collect();
            if !self.send(partition, source, lines).await? {
                return Ok(false);
            }
        }
        if splitter.pending() > 0 {
            tracing::debug!(blob = %source, bytes = splitter.pending(), "last line has no terminator yet: left for a later run");
        }
        Ok(true)
    }

    fn last_event(&self, partition: u32, sequence_number: i64, offset: String) {
        if let Some(r) = self.job.state().running.get_mut(&partition) {
            r.last_event = Some((sequence_number, offset));
        }
    }

    fn sent(&self, partition: u32, offset: i64) {
        if let Some(r) = self.job.state().running.get_mut(&partition) {
            r.last_sent = Some(offset);
        }
    }

    /// Sends `messages` as one chunk (nothing if empty); false when stopping or the pipeline
    /// is gone.
    async fn send(&self, partition: u32, source: &Arc<str>, messages: Vec<(i64, Bytes)>) -> Result<bool, SourceError> {
        if *self.stop.borrow() {
            return Ok(false);
        }
        let Some(last) = messages.last().map(|m| m.0) else { return Ok(true) };
        let bytes = messages.iter().map(|m| m.1.len()).sum();
        self.beat.waiting();
        let permit = self.budget.acquire(bytes).await;
        self.sent(partition, last);
        let c = Chunk { source: source.clone(), partition, messages, permit };
        Ok(self.tx.send(SourceEvent::Chunk(c)).await.is_ok())
    }
}

pub mod handoff;
#[cfg(test)]
mod tests;
