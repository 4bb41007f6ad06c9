//! defender-gen: synthetic, realistic Defender XDR Streaming API traffic.
//!
//! [`generate`] writes Event Hubs message bodies (`{"records":[...]}`) or bare records (the
//! storage-export shape), one per line, for any tables of a [`Catalog`]. Values follow each
//! column's name and the event's story (a process's command line starts with its image, a file
//! event's FolderPath ends with its FileName, a device keeps its id and group), drawn from a
//! simulated organisation of a few hundred devices and people.
//!
//! Invariants:
//! - the same options and catalog give byte-identical output (one seeded `SmallRng`, no hash
//!   map iteration in the output);
//! - with `quirks = 0` and `bad = 0` every record decodes without coercion and uses only the
//!   columns of its table's schema;
//! - every message body is at most `max_message_bytes` (the newline excluded);
//! - the returned [`Ledger`] says exactly how many records each table received and how many of
//!   them the decoder must dead-letter, by reason.
//!
//! Module map: [`world`](world) (devices and people), [`scenario`](scenario) (what one event
//! involves), [`columns`](columns) and [`named`](named) (column values), [`record`](record)
//! (assembly), [`quirks`](quirks) (quirks and breakage).

mod cmdline;
mod columns;
mod device_events;
mod images;
mod inventory;
mod json;
mod mail;
mod named;
mod pools;
mod quirks;
mod record;
mod registry;
mod scenario;
mod world;

use std::{collections::BTreeMap, io};

use defender_core::{Catalog, DeadLetterReason, TableSchema, deadletter::UNKNOWN_TABLE};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde::Serialize;

use crate::{columns::Planned, json::TICKS_PER_SEC, record::Record, world::World};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub seed: u64,
    /// Tables to generate; empty = every table of the catalog.
    pub tables: Vec<String>,
    pub target: Target,
    /// true: Event Hubs message bodies `{"records":[...]}`, one per line, each at most
    /// `max_message_bytes`; false: one bare record per line (storage-export shape).
    pub envelope: bool,
    pub max_message_bytes: usize,
    /// Records per message (a message also ends when the byte cap would be exceeded).
    pub records_per_message: usize,
    /// Fraction (0..=1) of records that carry realistic quirks (still decodable).
    pub quirks: f64,
    /// Fraction (0..=1) of records/lines that are broken (dead letters expected).
    pub bad: f64,
    /// Unix seconds of the first event.
    pub base_time: i64,
    /// Mean event rate of the simulated clock (events per second of event time).
    pub events_per_second: f64,
}

/// When to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// This many records (broken ones included).
    Records(u64),
    /// At least this many bytes of output.
    Bytes(u64),
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            tables: Vec::new(),
            target: Target::Records(1000),
            envelope: true,
            max_message_bytes: 1_000_000,
            records_per_message: 50,
            quirks: 0.0,
            bad: 0.0,
            // 2026-11-20T00:00:00Z
            base_time: 1_795_132_800,
            events_per_second: 1000.0,
        }
    }
}

/// What was generated, so tests can check the decoder's accounting against it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ledger {
    pub lines: u64,
    pub bytes: u64,
    /// Per table name (`unknown` for records whose table cannot be told, the category without
    /// `AdvancedHunting-` for tables the catalog does not know). Only tables with records.
    pub tables: BTreeMap<String, TableLedger>,
}

impl Ledger {
    /// Records of every table.
    pub fn records(&self) -> u64 {
        self.tables.values().map(|t| t.records).sum()
    }
}

/// What one table received.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableLedger {
    /// Records attributed to the table: good, quirky and broken.
    pub records: u64,
    /// Records with at least one quirk (decodable).
    pub quirky: u64,
    /// Expected dead letters: the decoder's reason → count.
    pub bad: BTreeMap<String, u64>,
}

/// Writes generated traffic to `out` (see the crate documentation).
///
/// # Errors
/// `InvalidInput` for an unknown table, a fraction outside 0..=1 or a message cap too small for
/// a record; otherwise the writer's errors.
pub fn generate(catalog: &Catalog, opts: &GenOptions, out: &mut dyn io::Write) -> io::Result<Ledger> {
    Generator::new(catalog, opts)?.run(out)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Relative volume of a table in a mixed stream.
fn weight(t: &TableSchema) -> u32 {
    match t.table.as_str() {
        "DeviceNetworkEvents" => 3000,
        "DeviceFileEvents" => 2000,
        "DeviceProcessEvents" => 1800,
        "DeviceEvents" => 1600,
        "DeviceRegistryEvents" => 1500,
        "DeviceImageLoadEvents" => 1200,
        "DeviceLogonEvents" | "CloudAppEvents" => 400,
        "DeviceFileCertificateInfo" => 150,
        "EmailEvents" => 120,
        "EmailUrlInfo" | "IdentityLogonEvents" => 100,
        "IdentityQueryEvents" | "DeviceInfo" | "DeviceNetworkInfo" => 80,
        "EmailAttachmentInfo" | "IdentityDirectoryEvents" => 50,
        "UrlClickEvents" => 40,
        "AlertEvidence" => 30,
        "EmailPostDeliveryEvents" | "IdentityInfo" => 20,
        "AlertInfo" | "BehaviorEntities" => 10,
        "BehaviorInfo" => 5,
        _ if t.tvm => 2,
        _ => 20,
    }
}

/// `{"records":[` + `]}`
const MESSAGE_OVERHEAD: usize = 14;

struct Generator<'a> {
    catalog: &'a Catalog,
    opts: &'a GenOptions,
    tables: Vec<(&'a TableSchema, Vec<Planned<'a>>)>,
    weights: Vec<(usize, u32)>,
    world: World,
    rng: SmallRng,
    clock: i64,
    rec: Record<'a>,
    text: String,
    msg: String,
    msg_records: usize,
    ledger: Ledger,
    records: u64,
}

impl<'a> Generator<'a> {
    fn new(catalog: &'a Catalog, opts: &'a GenOptions) -> io::Result<Self> {
        for (name, v) in [("quirks", opts.quirks), ("bad", opts.bad)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(invalid(format!("{name} must be a fraction between 0 and 1, got {v}")));
            }
        }
        if !(opts.events_per_second > 0.0 && opts.events_per_second.is_finite()) {
            return Err(invalid(format!("events_per_second must be positive, got {}", opts.events_per_second)));
        }
        let mut selected: Vec<&'a TableSchema> = Vec::new();
        if opts.tables.is_empty() {
            selected.extend(catalog.tables().iter().map(|t| &**t));
        } else {
            for name in &opts.tables {
                let t = catalog.get(name).ok_or_else(|| invalid(format!("unknown table `{name}`")))?;
                if !selected.iter().any(|s| s.table == t.table) {
                    selected.push(t);
                }
            }
        }
        if selected.is_empty() {
            return Err(invalid("the catalog has no tables".to_string()));
        }
        let tables: Vec<_> = selected.iter().map(|&t| (t, columns::plan(t))).collect();
        let weights = selected.iter().enumerate().map(|(i, t)| (i, weight(t))).collect();
        let mut rng = SmallRng::seed_from_u64(opts.seed);
        let world = World::new(&mut rng);
        Ok(Self {
            catalog,
            opts,
            tables,
            weights,
            world,
            rng,
            clock: opts.base_time * TICKS_PER_SEC,
            rec: Record::default(),
            text: String::new(),
            msg: String::new(),
            msg_records: 0,
            ledger: Ledger::default(),
            records: 0,
        })
    }

    fn run(mut self, out: &mut dyn io::Write) -> io::Result<Ledger> {
        let mut skipped = 0;
        loop {
            let done = match self.opts.target {
                Target::Records(n) => self.records >= n,
                Target::Bytes(n) => {
                    let pending = if self.msg_records > 0 { self.msg.len() + 3 } else { 0 };
                    self.ledger.bytes + pending as u64 >= n
                }
            };
            if done {
                break;
            }
            if self.one(out)? {
                skipped = 0;
            } else {
                skipped += 1;
                if skipped > 1000 {
                    return Err(invalid(format!(
                        "max_message_bytes {} is too small for the generated records",
                        self.opts.max_message_bytes
                    )));
                }
            }
        }
        self.flush(out)?;
        Ok(self.ledger)
    }

    /// Generates one record (or broken line). False when it did not fit in a message and was
    /// dropped unaccounted.
    fn one(&mut self, out: &mut dyn io::Write) -> io::Result<bool> {
        let rng = &mut self.rng;
        let t = world::pick_w(rng, &self.weights);
        let gap = -(1.0 - rng.random::<f64>()).ln() / self.opts.events_per_second;
        self.clock += (gap * TICKS_PER_SEC as f64) as i64;
        let ts = self.clock - rng.random_range(0..2 * TICKS_PER_SEC);
        let bad = self.opts.bad > 0.0 && rng.random_bool(self.opts.bad);
        let quirky = !bad && self.opts.quirks > 0.0 && rng.random_bool(self.opts.quirks);
        let (schema, plan) = &self.tables[t];
        self.rec.build(schema, plan, &self.world, ts, &mut self.rng);
        let mut table = schema.table.clone();
        if bad {
            return self.broken(table, out);
        }
        if quirky && let Some(unknown) = quirks::apply(&mut self.rec, self.catalog, &self.world, &mut self.rng) {
            table = unknown;
        }
        self.text.clear();
        self.rec.serialize(&mut self.text);
        self.element(out, &table, quirky, None)
    }

    /// A record (or line) the decoder must dead-letter.
    fn broken(&mut self, table: String, out: &mut dyn io::Write) -> io::Result<bool> {
        use DeadLetterReason as R;
        let reasons: &[R] = if self.opts.envelope {
            &[R::MalformedJson, R::NotAnObject, R::MissingCategory, R::MissingProperties, R::NoTimestamp]
        } else {
            &[R::MalformedJson, R::NotAMessage, R::MissingCategory, R::MissingProperties, R::NoTimestamp]
        };
        let reason = world::pick(&mut self.rng, reasons);
        self.text.clear();
        match reason {
            R::MalformedJson => {
                let mut full = String::new();
                self.rec.serialize(&mut full);
                if self.opts.envelope {
                    self.text.push_str("{\"records\":[");
                }
                let cut = self.rng.random_range(full.len() / 4..full.len() - 1);
                self.text.push_str(&full[..quirks::floor_char_boundary(&full, cut)]);
                self.line(out, UNKNOWN_TABLE, reason)
            }
            R::NotAMessage => {
                self.text.push_str(world::pick(
                    &mut self.rng,
                    &["42", "\"AdvancedHunting-DeviceEvents\"", "[]", "true", "null"],
                ));
                self.line(out, UNKNOWN_TABLE, reason)
            }
            R::NotAnObject => {
                self.text.push_str(world::pick(&mut self.rng, &["42", "\"Publish\"", "null", "[1,2,3]", "false"]));
                self.element(out, UNKNOWN_TABLE, false, Some(reason))
            }
            _ => {
                quirks::break_record(&mut self.rec, reason, &mut self.rng);
                self.rec.serialize(&mut self.text);
                let table = if reason == R::MissingCategory { UNKNOWN_TABLE.to_string() } else { table };
                self.element(out, &table, false, Some(reason))
            }
        }
    }

    fn account(&mut self, table: &str, quirky: bool, bad: Option<DeadLetterReason>) {
        let e = self.ledger.tables.entry(table.to_string()).or_default();
        e.records += 1;
        if quirky {
            e.quirky += 1;
        }
        if let Some(r) = bad {
            *e.bad.entry(r.as_str().to_string()).or_default() += 1;
        }
        self.records += 1;
    }

    /// Emits `self.text` as a record: its own line, or an element of the current message.
    fn element(
        &mut self,
        out: &mut dyn io::Write,
        table: &str,
        quirky: bool,
        bad: Option<DeadLetterReason>,
    ) -> io::Result<bool> {
        if !self.opts.envelope {
            self.write_line(out, None)?;
            self.account(table, quirky, bad);
            return Ok(true);
        }
        let cap = self.opts.max_message_bytes;
        if self.text.len() + MESSAGE_OVERHEAD > cap {
            return Ok(false);
        }
        if self.msg_records > 0
            && (self.msg_records >= self.opts.records_per_message.max(1)
                || self.msg.len() + 1 + self.text.len() + 2 > cap)
        {
            self.flush(out)?;
        }
        if self.msg_records == 0 {
            self.msg.clear();
            self.msg.push_str("{\"records\":[");
        } else {
            self.msg.push(',');
        }
        self.msg.push_str(&self.text);
        self.msg_records += 1;
        self.account(table, quirky, bad);
        Ok(true)
    }

    /// Emits `self.text` as a whole line that is one broken record.
    fn line(&mut self, out: &mut dyn io::Write, table: &str, reason: DeadLetterReason) -> io::Result<bool> {
        if self.text.len() > self.opts.max_message_bytes && self.opts.envelope {
            return Ok(false);
        }
        self.flush(out)?;
        self.write_line(out, None)?;
        self.account(table, false, Some(reason));
        Ok(true)
    }

    fn write_line(&mut self, out: &mut dyn io::Write, body: Option<&str>) -> io::Result<()> {
        let body = body.unwrap_or(&self.text);
        out.write_all(body.as_bytes())?;
        out.write_all(b"\n")?;
        self.ledger.lines += 1;
        self.ledger.bytes += body.len() as u64 + 1;
        Ok(())
    }

    /// Writes the pending message, if any.
    fn flush(&mut self, out: &mut dyn io::Write) -> io::Result<()> {
        if self.msg_records == 0 {
            return Ok(());
        }
        self.msg.push_str("]}");
        let msg = std::mem::take(&mut self.msg);
        self.write_line(out, Some(&msg))?;
        self.msg = msg;
        self.msg.clear();
        self.msg_records = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
