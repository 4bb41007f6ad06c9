//! The files source: local NDJSON or message files (gzip or not), read in order.
//!
//! Each file is one partition (numbered in the order of the sorted input list) whose offsets are
//! line numbers (from 1). A line holds an Event Hubs message body (`{"records":[...]}`) or one
//! bare record (the storage-export shape). A file whose first non-blank line is a lone `{` or
//! `[` (a pretty-printed message, as `jq` or `json.dumps(indent=2)` write it) is one message at
//! offset 1. Gzip is recognised by its magic bytes.

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use flate2::read::MultiGzDecoder;

use crate::{Chunk, SourceEvent, SourceIo};

/// Bytes per chunk sent down the pipeline.
const CHUNK_BYTES: usize = 1 << 20;

/// Errors of the files source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("input `{pattern}` matches no file")]
    NoMatch { pattern: String },
    #[error("input `{pattern}` is not a valid glob: {reason}")]
    Glob { pattern: String, reason: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("backfill progress {path}: {reason}")]
    Progress { path: String, reason: String },
    #[error(transparent)]
    Kafka(#[from] crate::kafka::KafkaError),
    #[error(transparent)]
    EventHubs(#[from] crate::eventhubs::EventHubsError),
}

/// Expands paths and globs into a sorted, de-duplicated file list. A pattern that matches
/// nothing is an error (a typo must not look like an empty run).
pub fn resolve_inputs(patterns: &[String]) -> Result<Vec<PathBuf>, SourceError> {
    let mut out = Vec::new();
    for pattern in patterns {
        let paths = glob::glob(pattern)
            .map_err(|e| SourceError::Glob { pattern: pattern.clone(), reason: e.msg.to_string() })?;
        let before = out.len();
        for p in paths {
            let p = p.map_err(|e| SourceError::Read { path: e.path().display().to_string(), source: e.into() })?;
            if p.is_file() {
                out.push(p);
            }
        }
        if out.len() == before {
            return Err(SourceError::NoMatch { pattern: pattern.clone() });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Reads files into the pipeline, each a partition (numbered in order), a few at a time.
#[derive(Debug, Clone)]
pub struct FileSource {
    files: Vec<PathBuf>,
    parallel: usize,
}

impl FileSource {
    pub fn new(files: Vec<PathBuf>) -> Self {
        Self { files, parallel: 1 }
    }

    /// Reads up to `n` files at once (so as many partitions decode in parallel); each file's
    /// messages still go in order. Default 1.
    pub fn with_parallel(mut self, n: usize) -> Self {
        self.parallel = n.max(1);
        self
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Total size on disk of the inputs (compressed size for gzip files).
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum()
    }

    /// Sends every file's messages, then a `PartitionEnd` per file. Files are read as they are
    /// sent, a chunk at a time, so a file of any size costs at most one chunk beyond the byte
    /// budget (per file read at once). Stops early (Ok) when the receiver is gone or `stop` is
    /// raised (between chunks).
    pub async fn run(self, io: SourceIo) -> Result<(), SourceError> {
        let SourceIo { events, budget, stop, beat, .. } = io;
        let files: Arc<Vec<PathBuf>> = Arc::new(self.files);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut readers = tokio::task::JoinSet::new();
        for _ in 0..self.parallel.min(files.len()).max(1) {
            let (files, next) = (files.clone(), next.clone());
            let reader =
                Reader { tx: events.clone(), budget: budget.clone(), stop: stop.clone(), beat: beat.observer() };
            readers.spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(path) = files.get(i) else { return Ok(()) };
                    if !reader.file(i as u32, path).await? {
                        return Ok(());
                    }
                }
            });
        }
        drop(events);
        while let Some(done) = readers.join_next().await {
            if let Err(e) = done.expect("reading a file does not panic") {
                readers.abort_all();
                return Err(e);
            }
        }
        beat.waiting();
        Ok(())
    }
}

/// One of the file source's readers.
struct Reader {
    tx: tokio::sync::mpsc::Sender<SourceEvent>,
    budget: crate::ByteBudget,
    stop: tokio::sync::watch::Receiver<bool>,
    beat: defender_core::health::StageObserver,
}

impl Reader {
    /// Sends one file as partition `partition`; false when the pipeline is gone or stopping.
    async fn file(&self, partition: u32, path: &Path) -> Result<bool, SourceError> {
        let source: Arc<str> = path.display().to_string().into();
        let read_err = |source| SourceError::Read { path: path.display().to_string(), source };
        let p = path.to_path_buf();
        let mut reader = tokio::task::spawn_blocking(move || MessageReader::open(&p))
            .await
            .expect("opening a file does not panic")
            .map_err(read_err)?;
        tracing::debug!(file = %source, "reading input");
        loop {
            self.beat.working();
            let (back, chunk) = tokio::task::spawn_blocking(move || {
                let chunk = reader.next_chunk(CHUNK_BYTES);
                (reader, chunk)
            })
            .await
            .expect("reading a file does not panic");
            reader = back;
            let messages = chunk.map_err(read_err)?;
            if *self.stop.borrow() {
                return Ok(false);
            }
            if messages.is_empty() {
                break;
            }
            let bytes = messages.iter().map(|m| m.1.len()).sum();
            self.beat.waiting();
            let permit = self.budget.acquire(bytes).await;
            let c = Chunk { source: source.clone(), partition, messages, permit };
            if self.tx.send(SourceEvent::Chunk(c)).await.is_err() {
                return Ok(false);
            }
        }
        self.beat.waiting();
        Ok(self.tx.send(SourceEvent::PartitionEnd { partition }).await.is_ok())
    }
}

/// Reads the messages of one input, a chunk at a time: one per non-blank line (numbered from 1),
/// or the whole input as one message when its first non-blank line is a lone `{` or `[`
/// (a pretty-printed message). A broken line, even the first, is just a line: it becomes one
/// dead letter. Gzip (one or several members) is recognised by its magic bytes.
pub struct MessageReader {
    reader: Box<dyn BufRead + Send>,
    line: i64,
    started: bool,
    done: bool,
    buf: Vec<u8>,
}

impl std::fmt::Debug for MessageReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageReader").field("line", &self.line).finish()
    }
}

impl MessageReader {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut file = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
        let gzip = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn BufRead + Send> =
            if gzip { Box::new(BufReader::with_capacity(1 << 20, MultiGzDecoder::new(file))) } else { Box::new(file) };
        Ok(Self::new(reader))
    }

    pub fn new(reader: Box<dyn BufRead + Send>) -> Self {
        Self { reader, line: 0, started: false, done: false, buf: Vec::new() }
    }

    /// The next messages, about `max_bytes` of them; empty at the end of the input.
    pub fn next_chunk(&mut self, max_bytes: usize) -> std::io::Result<Vec<(i64, Bytes)>> {
        let mut data = Vec::with_capacity(max_bytes.min(1 << 22));
        let mut spans = Vec::new();
        while !self.done && data.len() < max_bytes {
            self.buf.clear();
            if self.reader.read_until(b'\n', &mut self.buf)? == 0 {
                self.done = true;
                break;
            }
            self.line += 1;
            let text = trim(&self.buf);
            if text.is_empty() {
                continue;
            }
            if !self.started {
                self.started = true;
                if text == b"{" || text == b"[" {
                    let mut all = std::mem::take(&mut self.buf);
                    self.reader.read_to_end(&mut all)?;
                    self.done = true;
                    return Ok(vec![(self.line, Bytes::copy_from_slice(trim(&all)))]);
                }
            }
            let start = data.len();
            data.extend_from_slice(text);
            spans.push((self.line, start..data.len()));
        }
        let data = Bytes::from(data);
        Ok(spans.into_iter().map(|(line, range)| (line, data.slice(range))).collect())
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, io::Write};
    use tokio::sync::mpsc;

    use super::*;

    fn split_messages(data: &Bytes) -> Vec<(i64, Bytes)> {
        let mut r = MessageReader::new(Box::new(std::io::Cursor::new(data.to_vec())));
        let mut out = Vec::new();
        loop {
            let chunk = r.next_chunk(8).unwrap();
            if chunk.is_empty() {
                return out;
            }
            out.extend(chunk);
        }
    }

    #[test]
    fn splits_lines_with_line_numbers_and_skips_blank_ones() {
        let data = Bytes::from_static(b"{\"a\":1}\n\n  {\"b\":[2]}  \r\nxyz");
        let got: Vec<(i64, Vec<u8>)> = split_messages(&data).into_iter().map(|(o, b)| (o, b.to_vec())).collect();
        assert_eq!(got, vec![(1, b"{\"a\":1}".to_vec()), (3, b"{\"b\":[2]}".to_vec()), (4, b"xyz".to_vec())]);
    }

    #[test]
    fn a_broken_first_line_is_one_line_not_the_whole_file() {
        let data = Bytes::from_static(b"{\"records\":[{\"x\n{\"a\":1}\n");
        let got = split_messages(&data);
        assert_eq!(got.iter().map(|m| m.0).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn a_pretty_printed_message_is_one_message() {
        let data = Bytes::from_static(b"{\n  \"records\": [\n    {\"x\": \"}\"}\n  ]\n}\n");
        let got = split_messages(&data);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 1);
        assert!(got[0].1.starts_with(b"{") && got[0].1.ends_with(b"}"));
    }

    #[test]
    fn resolves_globs_sorted_and_rejects_patterns_matching_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["b.json", "a.json", "c.txt"] {
            std::fs::write(dir.path().join(n), "{}").unwrap();
        }
        let pattern = format!("{}/*.json", dir.path().display());
        let files = resolve_inputs(&[pattern, dir.path().join("a.json").display().to_string()]).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, vec!["a.json", "b.json"]);
        let missing = format!("{}/*.ndjson", dir.path().display());
        assert_eq!(
            resolve_inputs(std::slice::from_ref(&missing)).unwrap_err().to_string(),
            format!("input `{missing}` matches no file")
        );
    }

    /// Files are read at once, but each file's messages keep their order and its end comes
    /// after them; every message arrives once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_read_in_parallel_keep_each_files_order() {
        let dir = tempfile::tempdir().unwrap();
        let lines = 30_000;
        let paths: Vec<_> = (0..3)
            .map(|f| {
                let path = dir.path().join(format!("{f}.json"));
                let text: String = (0..lines)
                    .map(|i| format!("{{\"file\":{f},\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(60)))
                    .collect();
                std::fs::write(&path, text).unwrap();
                path
            })
            .collect();
        // With room for one event, one reader holds at most two chunks' budget (one queued, one
        // waiting to be; a chunk passes CHUNK_BYTES by less than a line): more taken before
        // anything is received means two files are being read.
        // Whether the readers interleave later depends on scheduling, so that is not asserted.
        let (tx, mut rx) = mpsc::channel(1);
        let budget_bytes = 16 * CHUNK_BYTES;
        let budget = crate::ByteBudget::new(budget_bytes);
        let (io, _stop) = SourceIo::new(tx, budget.clone());
        let reading = tokio::spawn(FileSource::new(paths).with_parallel(2).run(io));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while budget_bytes - budget.available() <= 2 * CHUNK_BYTES + CHUNK_BYTES / 2 {
            assert!(std::time::Instant::now() < deadline, "a second file was never read while the first was");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let (mut last, mut ended) = (BTreeMap::new(), Vec::new());
        while let Some(event) = rx.recv().await {
            match event {
                SourceEvent::Chunk(c) => {
                    assert!(!ended.contains(&c.partition), "a chunk of partition {} after its end", c.partition);
                    for (offset, _) in &c.messages {
                        let prev = last.insert(c.partition, *offset).unwrap_or(0);
                        assert_eq!(*offset, prev + 1, "partition {} out of order", c.partition);
                    }
                }
                SourceEvent::PartitionEnd { partition } => ended.push(partition),
                other => panic!("unexpected {other:?}"),
            }
        }
        reading.await.unwrap().unwrap();
        ended.sort();
        assert_eq!(ended, vec![0, 1, 2]);
        assert_eq!(last, BTreeMap::from([(0, lines), (1, lines), (2, lines)]));
    }

    #[tokio::test]
    async fn reads_gzip_files_into_chunks_and_ends_each_partition() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json.gz");
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
        for i in 0..3 {
            writeln!(gz, "{{\"n\":{i}}}").unwrap();
        }
        gz.finish().unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let (io, _stop) = SourceIo::new(tx, crate::ByteBudget::new(1 << 20));
        FileSource::new(vec![path]).run(io).await.unwrap();
        let SourceEvent::Chunk(c) = rx.recv().await.unwrap() else { panic!("chunk first") };
        assert_eq!(c.messages.iter().map(|m| m.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(&c.messages[2].1[..], b"{\"n\":2}");
        assert!(matches!(rx.recv().await.unwrap(), SourceEvent::PartitionEnd { partition: 0 }));
        assert!(rx.recv().await.is_none());
    }
}
