//! The event log: hubs, partitions and their events, optionally persisted.
//!
//! Invariants:
//! - per partition, sequence numbers start at 0 and increase by one; offsets are the byte
//!   position of the event in the partition's log (what Event Hubs' offsets are, opaque strings to
//!   clients), so they increase too;
//! - an append returns only after the event is written and flushed to the partition file
//!   (`<state>/<hub>/<partition>.log`), so an event the server acknowledged survives a kill of
//!   the process (not of the machine: no fsync);
//! - the whole log is also kept in memory (bounded by what the test sends; the file is only read
//!   at start), and the start reloads every complete record, dropping a torn tail.
//!
//! Record format (little endian): `u32 length of the rest`, `i64 sequence number`,
//! `i64 offset`, `i64 enqueued time (ms since the epoch)`, `u16 partition key length`
//! (`0xFFFF` for none) and the key, then the AMQP message as the producer sent it (encoded).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// One stored event.
#[derive(Debug, Clone)]
pub struct Event {
    pub sequence_number: i64,
    pub offset: i64,
    pub enqueued_ms: i64,
    pub partition_key: Option<String>,
    /// The AMQP message as the producer sent it (one message of a batch), encoded.
    pub message: Arc<Vec<u8>>,
}

/// The properties `$management` reports for a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub begin_sequence_number: i64,
    pub last_sequence_number: i64,
    pub last_offset: i64,
    pub last_enqueued_ms: i64,
    pub is_empty: bool,
}

#[derive(Debug)]
struct PartitionLog {
    events: Vec<Event>,
    next_offset: i64,
    file: Option<BufWriter<File>>,
}

/// One partition: its log and a watch of its event count that live receivers wait on.
#[derive(Debug)]
pub struct Partition {
    log: Mutex<PartitionLog>,
    count: watch::Sender<usize>,
}

impl Partition {
    fn open(path: Option<PathBuf>) -> std::io::Result<Self> {
        let mut events = Vec::new();
        let mut next_offset = 0;
        let mut file = None;
        if let Some(path) = path {
            let valid = if path.exists() { load(&path, &mut events)? } else { 0 };
            next_offset = valid as i64;
            let f = OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
            // Drop a torn tail so new records follow the last complete one.
            f.set_len(valid)?;
            let mut f = BufWriter::new(f);
            std::io::Seek::seek(f.get_mut(), std::io::SeekFrom::End(0))?;
            file = Some(f);
        }
        let (count, _) = watch::channel(events.len());
        Ok(Self { log: Mutex::new(PartitionLog { events, next_offset, file }), count })
    }

    /// Appends `messages` (encoded AMQP messages) with their partition key; written and flushed
    /// before it returns.
    pub fn append(&self, messages: Vec<Vec<u8>>, partition_key: Option<&str>) -> std::io::Result<()> {
        let mut log = self.log.lock().unwrap();
        let now = now_ms();
        let start = log.events.len();
        let mut buf = Vec::new();
        for message in messages {
            let event = Event {
                sequence_number: log.events.len() as i64,
                offset: log.next_offset,
                enqueued_ms: now,
                partition_key: partition_key.map(str::to_string),
                message: Arc::new(message),
            };
            let before = buf.len();
            encode(&event, &mut buf);
            log.next_offset += (buf.len() - before) as i64;
            log.events.push(event);
        }
        if let Some(file) = log.file.as_mut() {
            let written = file.write_all(&buf).and_then(|()| file.flush());
            if let Err(e) = written {
                log.events.truncate(start);
                return Err(e);
            }
        }
        let len = log.events.len();
        drop(log);
        self.count.send_replace(len);
        Ok(())
    }

    /// Events from index `from` (a sequence number), at most `max`.
    pub fn read(&self, from: usize, max: usize) -> Vec<Event> {
        let log = self.log.lock().unwrap();
        log.events.iter().skip(from).take(max).cloned().collect()
    }

    /// The first sequence number that matches a start position.
    pub fn resolve(&self, position: &crate::filter::StartPosition) -> usize {
        use crate::filter::{Field, StartPosition};
        let log = self.log.lock().unwrap();
        let events = &log.events;
        match position {
            StartPosition::Latest => events.len(),
            StartPosition::Earliest => 0,
            StartPosition::After { field, value, inclusive } => {
                let key = |e: &Event| match field {
                    Field::Offset => e.offset,
                    Field::SequenceNumber => e.sequence_number,
                    Field::EnqueuedTime => e.enqueued_ms,
                };
                events.partition_point(|e| if *inclusive { key(e) < *value } else { key(e) <= *value })
            }
        }
    }

    pub fn info(&self) -> PartitionInfo {
        let log = self.log.lock().unwrap();
        match log.events.last() {
            Some(last) => PartitionInfo {
                begin_sequence_number: 0,
                last_sequence_number: last.sequence_number,
                last_offset: last.offset,
                last_enqueued_ms: last.enqueued_ms,
                is_empty: false,
            },
            // What Event Hubs reports for a partition that never had an event.
            None => PartitionInfo {
                begin_sequence_number: 0,
                last_sequence_number: -1,
                last_offset: -1,
                last_enqueued_ms: 0,
                is_empty: true,
            },
        }
    }

    /// A watch of the number of events, for live tails.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }
}

/// An Event Hub: its name as configured and its partitions.
#[derive(Debug)]
pub struct Hub {
    pub name: String,
    pub created_ms: i64,
    pub partitions: Vec<Partition>,
    next: std::sync::atomic::AtomicUsize,
}

impl Hub {
    /// The partition of a send to the hub: by partition key (a stable hash, not the service's)
    /// or round robin.
    pub fn pick(&self, partition_key: Option<&str>) -> usize {
        match partition_key {
            Some(key) => {
                // FNV-1a: stable across restarts and platforms.
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for b in key.as_bytes() {
                    h ^= u64::from(*b);
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
                (h % self.partitions.len() as u64) as usize
            }
            None => self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.partitions.len(),
        }
    }
}

/// Every hub, by lower-case name (Event Hubs entity names are case-insensitive).
#[derive(Debug)]
pub struct Store {
    hubs: BTreeMap<String, Arc<Hub>>,
}

impl Store {
    /// Opens the hubs, loading their logs from `state` when given.
    pub fn open(hubs: &[(String, u32)], state: Option<&Path>) -> std::io::Result<Self> {
        let mut map = BTreeMap::new();
        for (name, partitions) in hubs {
            let dir = state.map(|s| s.join(name.to_lowercase()));
            if let Some(dir) = &dir {
                std::fs::create_dir_all(dir)?;
            }
            let created_ms = match &dir {
                Some(dir) => created_at(dir)?,
                None => now_ms(),
            };
            let parts = (0..*partitions)
                .map(|p| Partition::open(dir.as_ref().map(|d| d.join(format!("{p}.log")))))
                .collect::<std::io::Result<Vec<_>>>()?;
            let hub = Hub { name: name.clone(), created_ms, partitions: parts, next: Default::default() };
            map.insert(name.to_lowercase(), Arc::new(hub));
        }
        Ok(Self { hubs: map })
    }

    pub fn hub(&self, name: &str) -> Option<&Arc<Hub>> {
        self.hubs.get(&name.to_lowercase())
    }
}

/// The hub's creation time, kept in `<dir>/created_ms` so it survives restarts.
fn created_at(dir: &Path) -> std::io::Result<i64> {
    let path = dir.join("created_ms");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(ms) = text.trim().parse()
    {
        return Ok(ms);
    }
    let ms = now_ms();
    std::fs::write(&path, ms.to_string())?;
    Ok(ms)
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn encode(e: &Event, buf: &mut Vec<u8>) {
    let key = e.partition_key.as_deref().map(str::as_bytes);
    let len = 8 * 3 + 2 + key.map_or(0, <[u8]>::len) + e.message.len();
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&e.sequence_number.to_le_bytes());
    buf.extend_from_slice(&e.offset.to_le_bytes());
    buf.extend_from_slice(&e.enqueued_ms.to_le_bytes());
    match key {
        Some(k) => {
            buf.extend_from_slice(&(k.len() as u16).to_le_bytes());
            buf.extend_from_slice(k);
        }
        None => buf.extend_from_slice(&u16::MAX.to_le_bytes()),
    }
    buf.extend_from_slice(&e.message);
}

/// Reads the complete records of `path` into `events`; returns the length they cover.
fn load(path: &Path, events: &mut Vec<Event>) -> std::io::Result<u64> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut pos = 0usize;
    let int = |b: &[u8], at: usize| i64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    while pos + 4 <= data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let Some(rec) = data.get(pos + 4..pos + 4 + len) else { break };
        if len < 26 {
            break;
        }
        let key_len = u16::from_le_bytes(rec[24..26].try_into().unwrap());
        let (partition_key, body_at) = if key_len == u16::MAX {
            (None, 26)
        } else {
            let end = 26 + key_len as usize;
            let Some(k) = rec.get(26..end) else { break };
            (Some(String::from_utf8_lossy(k).into_owned()), end)
        };
        let event = Event {
            sequence_number: int(rec, 0),
            offset: int(rec, 8),
            enqueued_ms: int(rec, 16),
            partition_key,
            message: Arc::new(rec[body_at..].to_vec()),
        };
        if event.sequence_number != events.len() as i64 || event.offset != pos as i64 {
            break;
        }
        events.push(event);
        pos += 4 + len;
    }
    Ok(pos as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{Field, StartPosition};

    #[test]
    fn reloads_what_was_appended_and_drops_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let hubs = vec![("Hub".to_string(), 2)];
        {
            let store = Store::open(&hubs, Some(dir.path())).unwrap();
            let p = &store.hub("hub").unwrap().partitions[1];
            p.append(vec![b"a".to_vec(), b"bb".to_vec()], Some("k")).unwrap();
            p.append(vec![b"ccc".to_vec()], None).unwrap();
        }
        let file = dir.path().join("hub/1.log");
        let mut f = OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let store = Store::open(&hubs, Some(dir.path())).unwrap();
        let p = &store.hub("HUB").unwrap().partitions[1];
        let events = p.read(0, 10);
        let bodies: Vec<_> = events.iter().map(|e| e.message.as_slice().to_vec()).collect();
        assert_eq!(bodies, vec![b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]);
        assert_eq!(events[1].partition_key.as_deref(), Some("k"));
        assert_eq!(events[2].partition_key, None);
        assert!(events.windows(2).all(|w| w[0].offset < w[1].offset));
        p.append(vec![b"d".to_vec()], None).unwrap();
        drop(store);
        let store = Store::open(&hubs, Some(dir.path())).unwrap();
        let p = &store.hub("hub").unwrap().partitions[1];
        assert_eq!(p.info().last_sequence_number, 3);
        let off = p.read(1, 1)[0].offset;
        let pos = |field, value, inclusive| p.resolve(&StartPosition::After { field, value, inclusive });
        assert_eq!(pos(Field::Offset, off, true), 1);
        assert_eq!(pos(Field::Offset, off, false), 2);
        assert_eq!(pos(Field::SequenceNumber, 2, false), 3);
        assert_eq!(p.resolve(&StartPosition::Latest), 4);
        assert!(store.hub("hub").unwrap().partitions[0].info().is_empty);
    }
}
