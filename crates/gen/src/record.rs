//! One Streaming API record being assembled: the envelope keys and the `properties` columns as
//! (name, JSON text) pairs over one reusable text arena, so that quirks and breakage can
//! reorder, replace, add or drop fields before the record is serialised.

use std::ops::Range;

use defender_core::{ColumnType, TableSchema};
use rand::{Rng, rngs::SmallRng};

use crate::{
    columns::{self, Gen, Planned, Typed},
    json::{TICKS_PER_SEC, TimeStyle, push_str, push_time},
    named,
    scenario::{self, Ctx},
    world::World,
};

/// A value of the envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvVal {
    /// JSON text in the arena.
    Json(Range<usize>),
    /// The `properties` object.
    Props,
}

/// A column of `properties`.
#[derive(Debug, Clone)]
pub(crate) struct Prop<'a> {
    pub name: &'a str,
    /// None for columns not in the schema.
    pub ty: Option<ColumnType>,
    pub val: Range<usize>,
}

/// The record being built. Cleared and reused for every record.
#[derive(Debug, Default)]
pub(crate) struct Record<'a> {
    pub arena: String,
    pub env: Vec<(&'static str, EnvVal)>,
    pub props: Vec<Prop<'a>>,
    /// Event time (ticks), for quirks that rewrite `Timestamp`.
    pub ts: i64,
}

impl<'a> Record<'a> {
    pub(crate) fn clear(&mut self) {
        self.arena.clear();
        self.env.clear();
        self.props.clear();
    }

    /// The JSON text of a value.
    pub(crate) fn text(&self, r: &Range<usize>) -> &str {
        &self.arena[r.clone()]
    }

    /// Appends `json` to the arena and returns its range.
    pub(crate) fn add(&mut self, json: &str) -> Range<usize> {
        let start = self.arena.len();
        self.arena.push_str(json);
        start..self.arena.len()
    }

    /// Appends `s` as a JSON string and returns its range.
    pub(crate) fn add_str(&mut self, s: &str) -> Range<usize> {
        let start = self.arena.len();
        push_str(&mut self.arena, s);
        start..self.arena.len()
    }

    /// Appends a datetime string and returns its range.
    pub(crate) fn add_time(&mut self, ticks: i64, style: TimeStyle) -> Range<usize> {
        let start = self.arena.len();
        self.arena.push('"');
        push_time(&mut self.arena, ticks, style);
        self.arena.push('"');
        start..self.arena.len()
    }

    pub(crate) fn env_index(&self, key: &str) -> Option<usize> {
        self.env.iter().position(|(k, _)| *k == key)
    }

    pub(crate) fn prop_index(&self, name: &str) -> Option<usize> {
        self.props.iter().position(|p| p.name == name)
    }

    /// Writes the record as compact JSON.
    pub(crate) fn serialize(&self, out: &mut String) {
        out.push('{');
        for (i, (key, val)) in self.env.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_str(out, key);
            out.push(':');
            match val {
                EnvVal::Json(r) => out.push_str(self.text(r)),
                EnvVal::Props => {
                    out.push('{');
                    for (j, p) in self.props.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        push_str(out, p.name);
                        out.push(':');
                        out.push_str(self.text(&p.val));
                    }
                    out.push('}');
                }
            }
        }
        out.push('}');
    }

    /// Builds a well-formed record of `table` whose event happened at `ts`.
    pub(crate) fn build(
        &mut self,
        table: &'a TableSchema,
        plan: &[Planned<'a>],
        world: &World,
        ts: i64,
        rng: &mut SmallRng,
    ) {
        self.clear();
        self.ts = ts;
        let mut ctx = Ctx::new(world, &table.table, ts, rng);
        scenario::build(&mut ctx, world, rng);
        for col in plan {
            let start = self.arena.len();
            let mut v = Typed { out: &mut self.arena, ty: col.ty };
            match col.how {
                Gen::Named => named::write(col.name, &ctx, world, rng, &mut v),
                how => columns::write(how, &ctx, rng, &mut v),
            }
            self.props.push(Prop { name: col.name, ty: Some(col.ty), val: start..self.arena.len() });
        }
        self.envelope(world, &table.category(), ts, rng);
    }

    /// The envelope in the order Defender usually writes it.
    pub(crate) fn envelope(&mut self, world: &World, category: &str, ts: i64, rng: &mut SmallRng) {
        // Defender publishes seconds to tens of minutes after the event.
        let lag_secs = match rng.random_range(0..100) {
            0..70 => rng.random_range(1..60),
            70..95 => rng.random_range(60..600),
            _ => rng.random_range(600..2400),
        };
        let time = ts + lag_secs * TICKS_PER_SEC + rng.random_range(0..TICKS_PER_SEC);
        let received = time - rng.random_range(TICKS_PER_SEC / 20..TICKS_PER_SEC * 3 / 2);
        let time = self.add_time(time, TimeStyle::Ticks);
        self.env.push(("time", EnvVal::Json(time)));
        let tenant = self.add_str(&world.tenant);
        self.env.push(("tenantId", EnvVal::Json(tenant)));
        let op = self.add("\"Publish\"");
        self.env.push(("operationName", EnvVal::Json(op)));
        let cat = self.add_str(category);
        self.env.push(("category", EnvVal::Json(cat)));
        let received = self.add_time(received, TimeStyle::Ticks);
        self.env.push(("_TimeReceivedBySvc", EnvVal::Json(received)));
        self.env.push(("properties", EnvVal::Props));
    }
}
