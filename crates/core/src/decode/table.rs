//! The decoder of one table: a typed appender per column, built once from the table schema,
//! that appends one record's `properties` straight into Arrow builders.
//!
//! Coercion rules (each application counted per column):
//! - lossless, counted in `coerced`: a number sent as a string (`"443"` in a long column), `""`
//!   in a non-string column (null), `"true"`/`"false"` or 0/1 in a bool column, a number or bool
//!   in a string column (its JSON text), an object or array in a string column (its compact JSON
//!   text), an integral float in an integer column;
//! - lossy, counted in `kept_in_extra`: anything else (`"-"` in a long column, an out-of-range
//!   integer, an unparseable datetime, ...). The column becomes null and the original value is
//!   kept in `_Extra` under the column's name, so the security event is never lost.
//!
//! Dynamic columns hold compact JSON text: objects and arrays are serialised, a string is kept
//! as sent (Defender often sends dynamic values as JSON text already).

use std::sync::Arc;

use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder},
};
use arrow_schema::SchemaRef;
use rustc_hash::FxHashMap;
use simd_json::{Node, StaticNode};

use super::value::{parse_datetime_nanos, span, write_json, write_json_str, write_static};
use crate::schema::{COL_TIMESTAMP, ColumnType, TableSchema};

/// What happened to one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Coerced,
    Lossy,
}

enum Builder {
    Utf8(StringBuilder),
    I64(Int64Builder),
    I32(Int32Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampNanosecondBuilder),
}

impl Builder {
    fn new(ty: ColumnType) -> Self {
        match ty {
            ColumnType::String | ColumnType::Guid | ColumnType::Dynamic => Self::Utf8(StringBuilder::new()),
            ColumnType::Long => Self::I64(Int64Builder::new()),
            ColumnType::Int => Self::I32(Int32Builder::new()),
            ColumnType::Real => Self::F64(Float64Builder::new()),
            ColumnType::Bool => Self::Bool(BooleanBuilder::new()),
            ColumnType::Datetime => Self::Ts(TimestampNanosecondBuilder::new()),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::Utf8(b) => b.append_null(),
            Self::I64(b) => b.append_null(),
            Self::I32(b) => b.append_null(),
            Self::F64(b) => b.append_null(),
            Self::Bool(b) => b.append_null(),
            Self::Ts(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Utf8(b) => Arc::new(b.finish()),
            Self::I64(b) => Arc::new(b.finish()),
            Self::I32(b) => Arc::new(b.finish()),
            Self::F64(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Ts(b) => Arc::new(b.finish().with_timezone("UTC")),
        }
    }
}

/// Envelope values of the record being appended.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Envelope<'a> {
    pub time: Option<i64>,
    pub tenant: Option<&'a str>,
    pub received: Option<i64>,
}

pub(crate) struct TableDecoder {
    pub(crate) columns: Vec<crate::schema::Column>,
    pub(crate) arrow: SchemaRef,
    pub(crate) name: Arc<str>,
    types: Vec<ColumnType>,
    builders: Vec<Builder>,
    by_name: FxHashMap<Box<str>, usize>,
    names: Vec<Box<str>>,
    timestamp_col: usize,
    /// Row number + 1 at which each column was last set (so nothing is reset per row).
    set_at: Vec<u64>,
    rows: u64,
    env_time: TimestampNanosecondBuilder,
    env_tenant: StringBuilder,
    env_received: TimestampNanosecondBuilder,
    extra: StringBuilder,
    record_id: StringBuilder,
    extra_buf: String,
    text_buf: String,
    pub(crate) coerced: Vec<u64>,
    pub(crate) lossy: Vec<u64>,
    pub(crate) unknown_columns: u64,
    pub(crate) pending_rows: usize,
}

impl TableDecoder {
    pub(crate) fn new(schema: Arc<TableSchema>) -> Self {
        let columns = schema.decoded_columns();
        let n = columns.len();
        let names: Vec<Box<str>> = columns.iter().map(|c| c.name.as_str().into()).collect();
        Self {
            arrow: schema.arrow_schema(),
            name: schema.table.as_str().into(),
            types: columns.iter().map(|c| c.ty).collect(),
            builders: columns.iter().map(|c| Builder::new(c.ty)).collect(),
            by_name: names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect(),
            names,
            timestamp_col: columns
                .iter()
                .position(|c| c.name == COL_TIMESTAMP)
                .expect("decoded columns have a Timestamp"),
            set_at: vec![0; n],
            rows: 0,
            env_time: TimestampNanosecondBuilder::new(),
            env_tenant: StringBuilder::new(),
            env_received: TimestampNanosecondBuilder::new(),
            extra: StringBuilder::new(),
            record_id: StringBuilder::new(),
            extra_buf: String::new(),
            text_buf: String::new(),
            coerced: vec![0; n],
            lossy: vec![0; n],
            unknown_columns: 0,
            pending_rows: 0,
            columns,
        }
    }

    /// The event time of a record: `properties.Timestamp` if usable, else the envelope time.
    /// `Err(())` when neither is usable (the record is then dead-lettered, nothing appended).
    /// `Ok((nanos, fallback))`: `fallback` is the unusable `Timestamp` value's node index, kept
    /// in `_Extra`.
    pub(crate) fn event_time(props: &[Node<'_>], env_time: Option<i64>) -> Result<(i64, Option<usize>), ()> {
        let Node::Object { len, .. } = props[0] else { return Err(()) };
        let mut i = 1;
        let mut bad = None;
        for _ in 0..len {
            let key = props[i];
            i += 1;
            if key == Node::String(COL_TIMESTAMP) {
                if let Node::String(s) = props[i]
                    && let Some(t) = parse_datetime_nanos(s)
                {
                    return Ok((t, None));
                }
                bad = Some(i);
                break;
            }
            i += span(&props[i]);
        }
        env_time.map(|t| (t, bad)).ok_or(())
    }

    /// Appends one record. `props` is the `properties` object; `time` comes from
    /// [`Self::event_time`]; `unknown_env` lists envelope keys we do not know, kept in `_Extra`;
    /// `record_id` is the record's `_RecordId`.
    pub(crate) fn append(
        &mut self,
        props: &[Node<'_>],
        time: (i64, Option<usize>),
        env: Envelope<'_>,
        unknown_env: &[(&str, &[Node<'_>])],
        record_id: &str,
    ) {
        self.rows += 1;
        let row = self.rows;
        self.pending_rows += 1;
        self.extra_buf.clear();
        let Node::Object { len, .. } = props[0] else { unreachable!("checked by the caller") };
        let mut i = 1;
        let mut expect = 0usize;
        for _ in 0..len {
            let Node::String(key) = props[i] else { unreachable!("object keys are strings") };
            i += 1;
            let value = &props[i..i + span(&props[i])];
            i += value.len();
            // Defender sends columns in a stable order: try the column after the last one first.
            let col = match self.names.get(expect) {
                Some(n) if **n == *key => Some(expect),
                _ => self.by_name.get(key).copied(),
            };
            let Some(col) = col else {
                self.unknown_columns += 1;
                push_extra(&mut self.extra_buf, key, value);
                continue;
            };
            expect = col + 1;
            if self.set_at[col] == row {
                // A duplicate key: the first value stands, the later one is kept.
                push_extra(&mut self.extra_buf, key, value);
                continue;
            }
            self.set_at[col] = row;
            if col == self.timestamp_col {
                continue;
            }
            match append_value(&mut self.builders[col], self.types[col], value, &mut self.text_buf) {
                Outcome::Ok => {}
                Outcome::Coerced => self.coerced[col] += 1,
                Outcome::Lossy => {
                    self.lossy[col] += 1;
                    push_extra(&mut self.extra_buf, key, value);
                }
            }
        }
        for col in 0..self.builders.len() {
            if self.set_at[col] != row && col != self.timestamp_col {
                self.builders[col].append_null();
            }
        }
        let Builder::Ts(ts) = &mut self.builders[self.timestamp_col] else {
            unreachable!("Timestamp is a datetime column (schemas check)")
        };
        ts.append_value(time.0);
        if let Some(bad) = time.1 {
            self.lossy[self.timestamp_col] += 1;
            push_extra(&mut self.extra_buf, COL_TIMESTAMP, &props[bad..bad + span(&props[bad])]);
        }
        for (key, value) in unknown_env {
            let mut k = String::with_capacity(9 + key.len());
            k.push_str("envelope.");
            k.push_str(key);
            push_extra(&mut self.extra_buf, &k, value);
        }
        self.env_time.append_option(env.time);
        self.env_tenant.append_option(env.tenant);
        self.env_received.append_option(env.received);
        if self.extra_buf.is_empty() {
            self.extra.append_null();
        } else {
            self.extra_buf.push('}');
            self.extra.append_value(&self.extra_buf);
        }
        self.record_id.append_value(record_id);
    }

    /// The rows appended since the last call, as one batch.
    pub(crate) fn finish(&mut self) -> RecordBatch {
        let mut arrays: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        arrays.push(Arc::new(self.env_time.finish().with_timezone("UTC")));
        arrays.push(Arc::new(self.env_tenant.finish()));
        arrays.push(Arc::new(self.env_received.finish().with_timezone("UTC")));
        arrays.push(Arc::new(self.extra.finish()));
        arrays.push(Arc::new(self.record_id.finish()));
        self.pending_rows = 0;
        RecordBatch::try_new(self.arrow.clone(), arrays).expect("every builder holds one value per row")
    }
}

/// Adds `"key":<value JSON>` to the `_Extra` object being built (opened on first use).
fn push_extra(buf: &mut String, key: &str, value: &[Node<'_>]) {
    buf.push(if buf.is_empty() { '{' } else { ',' });
    write_json_str(buf, key);
    buf.push(':');
    write_json(buf, value);
}

/// Appends one value to a column builder, applying the coercion rules of the module doc.
fn append_value(b: &mut Builder, ty: ColumnType, value: &[Node<'_>], text: &mut String) -> Outcome {
    use Node::{Static, String as Str};
    use StaticNode::{Bool, F64, I64, Null, U64};
    // simd-json reports non-negative integers as U64: fold the ones that fit into I64.
    let node = match value[0] {
        Static(U64(n)) if i64::try_from(n).is_ok() => Static(I64(n as i64)),
        n => n,
    };
    match (b, &node) {
        (b, Static(Null)) => {
            b.append_null();
            Outcome::Ok
        }
        (Builder::Utf8(b), Str(s)) => {
            b.append_value(s);
            Outcome::Ok
        }
        (Builder::Utf8(b), Static(v)) => {
            text.clear();
            write_static(text, v);
            b.append_value(&*text);
            if ty == ColumnType::Dynamic { Outcome::Ok } else { Outcome::Coerced }
        }
        (Builder::Utf8(b), _) => {
            text.clear();
            write_json(text, value);
            b.append_value(&*text);
            if ty == ColumnType::Dynamic { Outcome::Ok } else { Outcome::Coerced }
        }
        (b, Str("")) => {
            b.append_null();
            Outcome::Coerced
        }
        (Builder::I64(b), Static(I64(n))) => {
            b.append_value(*n);
            Outcome::Ok
        }
        (Builder::I64(b), Static(U64(n))) => match i64::try_from(*n) {
            Ok(n) => {
                b.append_value(n);
                Outcome::Ok
            }
            Err(_) => lossy(b),
        },
        (Builder::I64(b), Static(F64(f))) => match integral(*f) {
            Some(n) => {
                b.append_value(n);
                Outcome::Coerced
            }
            None => lossy(b),
        },
        (Builder::I64(b), Str(s)) => match s.parse::<i64>() {
            Ok(n) => {
                b.append_value(n);
                Outcome::Coerced
            }
            Err(_) => lossy(b),
        },
        (Builder::I32(b), Static(I64(n))) => match i32::try_from(*n) {
            Ok(n) => {
                b.append_value(n);
                Outcome::Ok
            }
            Err(_) => lossy(b),
        },
        (Builder::I32(b), Static(F64(f))) => match integral(*f).and_then(|n| i32::try_from(n).ok()) {
            Some(n) => {
                b.append_value(n);
                Outcome::Coerced
            }
            None => lossy(b),
        },
        (Builder::I32(b), Str(s)) => match s.parse::<i32>() {
            Ok(n) => {
                b.append_value(n);
                Outcome::Coerced
            }
            Err(_) => lossy(b),
        },
        (Builder::F64(b), Static(F64(f))) => {
            b.append_value(*f);
            Outcome::Ok
        }
        (Builder::F64(b), Static(I64(n))) => exact_f64(b, *n as f64, *n as i128 == (*n as f64) as i128),
        (Builder::F64(b), Static(U64(n))) => exact_f64(b, *n as f64, *n as i128 == (*n as f64) as i128),
        (Builder::F64(b), Str(s)) => match s.parse::<f64>() {
            Ok(f) if f.is_finite() => {
                b.append_value(f);
                Outcome::Coerced
            }
            _ => lossy(b),
        },
        (Builder::Bool(b), Static(Bool(v))) => {
            b.append_value(*v);
            Outcome::Ok
        }
        (Builder::Bool(b), Static(I64(n))) if *n == 0 || *n == 1 => {
            b.append_value(*n == 1);
            Outcome::Coerced
        }
        (Builder::Bool(b), Str(s)) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => {
            b.append_value(s.eq_ignore_ascii_case("true"));
            Outcome::Coerced
        }
        (Builder::Ts(b), Str(s)) => match parse_datetime_nanos(s) {
            Some(t) => {
                b.append_value(t);
                Outcome::Ok
            }
            None => lossy(b),
        },
        (b, _) => {
            b.append_null();
            Outcome::Lossy
        }
    }
}

fn lossy<B: NullAppend>(b: &mut B) -> Outcome {
    b.null();
    Outcome::Lossy
}

fn exact_f64(b: &mut Float64Builder, f: f64, exact: bool) -> Outcome {
    if exact {
        b.append_value(f);
        Outcome::Ok
    } else {
        b.append_null();
        Outcome::Lossy
    }
}

/// The integer an integral float holds, if it is exactly representable.
fn integral(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15).then_some(f as i64)
}

trait NullAppend {
    fn null(&mut self);
}

macro_rules! null_append {
    ($($t:ty),*) => {$(impl NullAppend for $t { fn null(&mut self) { self.append_null() } })*};
}
null_append!(Int64Builder, Int32Builder, Float64Builder, BooleanBuilder, TimestampNanosecondBuilder);
