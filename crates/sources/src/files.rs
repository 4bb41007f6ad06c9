//! The files source: local NDJSON or message files (gzip or not), read in order.
//!
//! Each file is one partition (numbered in the order of the sorted input list) whose offsets are
//! line numbers (from 1). A line holds an Event Hubs message body (`{"records":[...]}`) or one
//! bare record (the storage-export shape). A file whose first non-blank line is a lone `{` or
//! `[` (a pretty-printed message, as `jq` or `json.dumps(indent=2)` write it) is one message at
//! offset 1. Gzip is recognised by its magic bytes.

use std::{
    io::Read,
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::{ByteBudget, Chunk, SourceEvent};

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

/// Reads files one after the other into the pipeline.
#[derive(Debug, Clone)]
pub struct FileSource {
    files: Vec<PathBuf>,
}

impl FileSource {
    pub fn new(files: Vec<PathBuf>) -> Self {
        Self { files }
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Total size on disk of the inputs (compressed size for gzip files).
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum()
    }

    /// Sends every file's messages, then a `PartitionEnd` per file. Stops early (Ok) when the
    /// receiver is gone.
    pub async fn run(self, tx: mpsc::Sender<SourceEvent>, budget: ByteBudget) -> Result<(), SourceError> {
        for (partition, path) in self.files.iter().enumerate() {
            let partition = partition as u32;
            let p = path.clone();
            let data = tokio::task::spawn_blocking(move || read_all(&p))
                .await
                .expect("reading a file does not panic")
                .map_err(|source| SourceError::Read { path: path.display().to_string(), source })?;
            let source: Arc<str> = path.display().to_string().into();
            tracing::debug!(file = %source, bytes = data.len(), "reading input");
            let mut chunk = Vec::new();
            let mut chunk_bytes = 0;
            for (offset, message) in split_messages(&data) {
                chunk_bytes += message.len();
                chunk.push((offset, message));
                if chunk_bytes >= CHUNK_BYTES {
                    let permit = budget.acquire(chunk_bytes).await;
                    let c = Chunk { source: source.clone(), partition, messages: std::mem::take(&mut chunk), permit };
                    if tx.send(SourceEvent::Chunk(c)).await.is_err() {
                        return Ok(());
                    }
                    chunk_bytes = 0;
                }
            }
            if !chunk.is_empty() {
                let permit = budget.acquire(chunk_bytes).await;
                let c = Chunk { source: source.clone(), partition, messages: chunk, permit };
                if tx.send(SourceEvent::Chunk(c)).await.is_err() {
                    return Ok(());
                }
            }
            if tx.send(SourceEvent::PartitionEnd { partition }).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic bytes (several gzip
/// members are read one after the other).
pub fn read_all(path: &Path) -> std::io::Result<Bytes> {
    let raw = std::fs::read(path)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 8);
        flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        Ok(Bytes::from(out))
    } else {
        Ok(Bytes::from(raw))
    }
}

/// Splits file contents into (line number, message) pairs, skipping blank lines. When the first
/// non-blank line is a lone `{` or `[`, the whole file is one (pretty-printed) message. A broken
/// line, even the first, is just a line: it becomes one dead letter.
pub fn split_messages(data: &Bytes) -> Vec<(i64, Bytes)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut line = 0i64;
    while start < data.len() {
        line += 1;
        let end = memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
        let text = trim(&data[start..end]);
        if !text.is_empty() {
            if out.is_empty() && (text == b"{" || text == b"[") {
                let all = trim(data);
                let skip = all.as_ptr() as usize - data.as_ptr() as usize;
                return vec![(line, data.slice(skip..skip + all.len()))];
            }
            let skip = text.as_ptr() as usize - data.as_ptr() as usize;
            out.push((line, data.slice(skip..skip + text.len())));
        }
        start = end + 1;
    }
    out
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

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
        FileSource::new(vec![path]).run(tx, ByteBudget::new(1 << 20)).await.unwrap();
        let SourceEvent::Chunk(c) = rx.recv().await.unwrap() else { panic!("chunk first") };
        assert_eq!(c.messages.iter().map(|m| m.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(&c.messages[2].1[..], b"{\"n\":2}");
        assert!(matches!(rx.recv().await.unwrap(), SourceEvent::PartitionEnd { partition: 0 }));
        assert!(rx.recv().await.is_none());
    }
}
