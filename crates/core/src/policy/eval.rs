//! Vectorised evaluation of a checked pipeline on Arrow record batches.
//!
//! Every predicate node turns into one `BooleanArray` over the whole batch (Kleene logic, nulls
//! only from non-string columns); a `where` stage turns its nulls into `false`.

use std::{collections::HashSet, sync::Arc};

use crate::schema::COL_RECORD_ID;
use arrow_arith::boolean::{and_kleene, is_null, not, or_kleene};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, Scalar as ArrowScalar,
    StringArray, TimestampNanosecondArray,
    cast::AsArray,
    types::{Int32Type, Int64Type},
};
use arrow_buffer::BooleanBuffer;
use arrow_ord::cmp;
use arrow_schema::{ArrowError, DataType, TimeUnit};
use arrow_select::filter::filter_record_batch;
use arrow_string::like;

use super::{
    ast::{CmpOp, StrOp},
    check::wildcard_match,
};

/// A literal converted for the column it is compared with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Str(String),
    Int(i64),
    Real(f64),
    Bool(bool),
    /// UTC nanoseconds.
    Time(i64),
}

/// A checked predicate. Needles of case-insensitive operators are already ASCII-lowercased.
#[derive(Debug, Clone)]
pub(crate) enum Pred {
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
    Not(Box<Pred>),
    Cmp { col: String, op: CmpOp, value: Scalar },
    Str { col: String, op: StrOp, needle: String },
    InStr { col: String, set: HashSet<String>, ci: bool, negated: bool },
    In { col: String, values: Vec<Scalar>, negated: bool },
    HasAny { col: String, needles: Vec<String> },
    Regex { col: String, re: regex::Regex },
    Between { col: String, low: Scalar, high: Scalar },
    IsEmpty { col: String, string: bool, negated: bool },
    IsNull { col: String, string: bool, negated: bool },
}

/// One `project` (keep, in list order) or `project-away` stage, by name pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Projection {
    Keep(Vec<String>),
    Away(Vec<String>),
}

impl Projection {
    pub(crate) fn apply<'a>(&self, input: &[&'a str]) -> Vec<&'a str> {
        match self {
            Projection::Keep(patterns) => {
                let mut out: Vec<&str> = Vec::new();
                for p in patterns {
                    for name in input.iter().filter(|n| wildcard_match(p, n)) {
                        if !out.contains(name) {
                            out.push(name);
                        }
                    }
                }
                out
            }
            Projection::Away(patterns) => {
                input.iter().copied().filter(|n| !patterns.iter().any(|p| wildcard_match(p, n))).collect()
            }
        }
    }
}

/// A pipeline checked against one table: row masks from its `where` stages, then a projection.
#[derive(Debug, Clone)]
pub struct Filter {
    wheres: Vec<Pred>,
    projections: Vec<Projection>,
}

impl Filter {
    pub(crate) fn new(wheres: Vec<Pred>, projections: Vec<Projection>) -> Self {
        Self { wheres, projections }
    }

    /// Rows kept by every `where`, columns kept by `project` / `project-away`.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        Ok(self.apply_with_mask(batch)?.0)
    }

    /// [`Self::apply`], and the row mask it applied (`None` when every row was kept), so a
    /// caller can match the output rows with the input rows without evaluating twice.
    pub fn apply_with_mask(&self, batch: &RecordBatch) -> Result<(RecordBatch, Option<BooleanArray>), ArrowError> {
        let (filtered, mask) = if self.wheres.is_empty() {
            (batch.clone(), None)
        } else {
            let mask = self.row_mask(batch)?;
            if mask.true_count() == batch.num_rows() {
                (batch.clone(), None)
            } else {
                (filter_record_batch(batch, &mask)?, Some(mask))
            }
        };
        if self.projections.is_empty() {
            return Ok((filtered, mask));
        }
        let schema = filtered.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let mut indices: Vec<usize> =
            self.output_columns(&names).iter().filter_map(|n| names.iter().position(|x| x == n)).collect();
        // The record's id survives every projection: it is how a row is found again.
        if let Some(id) = names.iter().position(|n| *n == COL_RECORD_ID)
            && !indices.contains(&id)
        {
            indices.push(id);
        }
        Ok((filtered.project(&indices)?, mask))
    }

    /// The row mask of all `where` stages combined: true = kept, never null.
    pub fn row_mask(&self, batch: &RecordBatch) -> Result<BooleanArray, ArrowError> {
        let mut mask = BooleanBuffer::new_set(batch.num_rows());
        for pred in &self.wheres {
            let m = eval(pred, batch)?;
            let values = match m.nulls() {
                Some(nulls) => m.values() & nulls.inner(),
                None => m.values().clone(),
            };
            mask = &mask & &values;
        }
        Ok(BooleanArray::new(mask, None))
    }

    /// Output column names in order, given the input column names.
    pub fn output_columns(&self, input: &[&str]) -> Vec<String> {
        let mut names: Vec<&str> = input.to_vec();
        for p in &self.projections {
            names = p.apply(&names);
        }
        names.into_iter().map(str::to_string).collect()
    }

    /// `true` when the filter keeps every row and column.
    pub fn is_identity(&self) -> bool {
        self.wheres.is_empty() && self.projections.is_empty()
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, ArrowError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| ArrowError::SchemaError(format!("filter column `{name}` is not in the batch")))
}

/// A string column with nulls read as `""` (Kusto strings are never null).
fn strings(array: &ArrayRef) -> Result<StringArray, ArrowError> {
    let s = array.as_string_opt::<i32>().ok_or_else(|| {
        ArrowError::InvalidArgumentError(format!("expected a Utf8 column, got {}", array.data_type()))
    })?;
    if s.null_count() == 0 {
        return Ok(s.clone());
    }
    let offsets = s.value_offsets();
    let null_slots_empty = (0..s.len()).filter(|i| s.is_null(*i)).all(|i| offsets[i] == offsets[i + 1]);
    if null_slots_empty {
        Ok(StringArray::new(s.offsets().clone(), s.values().clone(), None))
    } else {
        Ok(s.iter().map(|v| Some(v.unwrap_or(""))).collect())
    }
}

/// One boolean per row from a closure over (possibly null-as-empty) strings: never null.
fn per_string(array: &ArrayRef, f: impl FnMut(&str) -> bool) -> Result<BooleanArray, ArrowError> {
    let s = strings(array)?;
    let values: BooleanBuffer = s.iter().map(|v| v.unwrap_or("")).map(f).collect();
    Ok(BooleanArray::new(values, None))
}

/// The column (widened if the literal does not fit its type) and the literal as a 1-row array
/// of the same Arrow type.
fn operands(array: &ArrayRef, value: &Scalar) -> Result<(ArrayRef, ArrayRef), ArrowError> {
    let dt = array.data_type();
    let to_f64 = |a: &ArrayRef| -> ArrayRef {
        match a.data_type() {
            DataType::Int32 => {
                Arc::new(a.as_primitive::<Int32Type>().unary::<_, arrow_array::types::Float64Type>(f64::from))
            }
            DataType::Int64 => {
                #[allow(clippy::cast_precision_loss, reason = "Kusto compares long with real as real")]
                let f = |v: i64| v as f64;
                Arc::new(a.as_primitive::<Int64Type>().unary::<_, arrow_array::types::Float64Type>(f))
            }
            _ => a.clone(),
        }
    };
    Ok(match (dt, value) {
        (DataType::Utf8, Scalar::Str(s)) => (Arc::new(strings(array)?), Arc::new(StringArray::from(vec![s.as_str()]))),
        (DataType::Int32, Scalar::Int(i)) => match i32::try_from(*i) {
            Ok(v) => (array.clone(), Arc::new(Int32Array::from(vec![v]))),
            Err(_) => (
                Arc::new(array.as_primitive::<Int32Type>().unary::<_, Int64Type>(i64::from)),
                Arc::new(Int64Array::from(vec![*i])),
            ),
        },
        (DataType::Int64, Scalar::Int(i)) => (array.clone(), Arc::new(Int64Array::from(vec![*i]))),
        #[allow(clippy::cast_precision_loss, reason = "an integer literal compared with a real column")]
        (DataType::Float64, Scalar::Int(i)) => (array.clone(), Arc::new(Float64Array::from(vec![*i as f64]))),
        (DataType::Int32 | DataType::Int64 | DataType::Float64, Scalar::Real(r)) => {
            (to_f64(array), Arc::new(Float64Array::from(vec![*r])))
        }
        (DataType::Boolean, Scalar::Bool(b)) => (array.clone(), Arc::new(BooleanArray::from(vec![*b]))),
        (DataType::Timestamp(TimeUnit::Nanosecond, tz), Scalar::Time(t)) => {
            (array.clone(), Arc::new(TimestampNanosecondArray::from(vec![*t]).with_timezone_opt(tz.clone())))
        }
        (dt, v) => {
            return Err(ArrowError::InvalidArgumentError(format!("cannot compare a {dt} column with {v:?}")));
        }
    })
}

fn compare(array: &ArrayRef, op: CmpOp, value: &Scalar) -> Result<BooleanArray, ArrowError> {
    let (col, lit) = operands(array, value)?;
    let lit = ArrowScalar::new(lit);
    match op {
        CmpOp::Eq => cmp::eq(&col, &lit),
        CmpOp::Ne => cmp::neq(&col, &lit),
        CmpOp::Lt => cmp::lt(&col, &lit),
        CmpOp::Le => cmp::lt_eq(&col, &lit),
        CmpOp::Gt => cmp::gt(&col, &lit),
        CmpOp::Ge => cmp::gt_eq(&col, &lit),
        CmpOp::EqCi => like::eq_ignore_ascii_case(&col, &lit),
        CmpOp::NeCi => not(&like::eq_ignore_ascii_case(&col, &lit)?),
    }
}

/// `true` when `needle` occurs in `hay` starting and ending on term boundaries (terms are runs of
/// ASCII alphanumerics). Both are compared as given: callers lowercase for case-insensitivity.
pub(crate) fn has_term(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let need_left = n[0].is_ascii_alphanumeric();
    let need_right = n[n.len() - 1].is_ascii_alphanumeric();
    let step = needle.chars().next().map_or(1, char::len_utf8);
    let mut start = 0;
    while let Some(i) = hay[start..].find(needle).map(|i| i + start) {
        let end = i + n.len();
        let left_ok = !need_left || i == 0 || !h[i - 1].is_ascii_alphanumeric();
        let right_ok = !need_right || end == h.len() || !h[end].is_ascii_alphanumeric();
        if left_ok && right_ok {
            return true;
        }
        start = i + step;
    }
    false
}

/// Applies `f` to each row's ASCII-lowercased string (null as `""`), reusing one buffer.
fn per_lowercase(array: &ArrayRef, mut f: impl FnMut(&str) -> bool) -> Result<BooleanArray, ArrowError> {
    let mut buf = String::new();
    per_string(array, |v| {
        buf.clear();
        buf.push_str(v);
        buf.make_ascii_lowercase();
        f(&buf)
    })
}

fn string_op(array: &ArrayRef, op: StrOp, needle: &str) -> Result<BooleanArray, ArrowError> {
    let negate = |r: BooleanArray| not(&r);
    let n = needle;
    match op {
        StrOp::Has => per_lowercase(array, |v| has_term(v, n)),
        StrOp::NotHas => negate(per_lowercase(array, |v| has_term(v, n))?),
        StrOp::HasCs => per_string(array, |v| has_term(v, n)),
        StrOp::Contains => per_lowercase(array, |v| v.contains(n)),
        StrOp::NotContains => negate(per_lowercase(array, |v| v.contains(n))?),
        StrOp::ContainsCs => like::contains(&strings(array)?, &ArrowScalar::new(StringArray::from(vec![needle]))),
        StrOp::StartsWith | StrOp::NotStartsWith => {
            let r = per_string(array, |v| {
                v.len() >= n.len() && v.as_bytes()[..n.len()].eq_ignore_ascii_case(n.as_bytes())
            })?;
            if op == StrOp::StartsWith { Ok(r) } else { negate(r) }
        }
        StrOp::EndsWith | StrOp::NotEndsWith => {
            let r = per_string(array, |v| {
                v.len() >= n.len() && v.as_bytes()[v.len() - n.len()..].eq_ignore_ascii_case(n.as_bytes())
            })?;
            if op == StrOp::EndsWith { Ok(r) } else { negate(r) }
        }
    }
}

fn eval(pred: &Pred, batch: &RecordBatch) -> Result<BooleanArray, ArrowError> {
    match pred {
        Pred::And(l, r) => and_kleene(&eval(l, batch)?, &eval(r, batch)?),
        Pred::Or(l, r) => or_kleene(&eval(l, batch)?, &eval(r, batch)?),
        Pred::Not(inner) => not(&eval(inner, batch)?),
        Pred::Cmp { col, op, value } => compare(column(batch, col)?, *op, value),
        Pred::Str { col, op, needle } => string_op(column(batch, col)?, *op, needle),
        Pred::InStr { col, set, ci, negated } => {
            let array = column(batch, col)?;
            let r =
                if *ci { per_lowercase(array, |v| set.contains(v))? } else { per_string(array, |v| set.contains(v))? };
            if *negated { not(&r) } else { Ok(r) }
        }
        Pred::In { col, values, negated } => {
            let array = column(batch, col)?;
            let mut acc = BooleanArray::new(BooleanBuffer::new_unset(batch.num_rows()), None);
            for v in values {
                acc = or_kleene(&acc, &compare(array, CmpOp::Eq, v)?)?;
            }
            if *negated { not(&acc) } else { Ok(acc) }
        }
        Pred::HasAny { col, needles } => per_lowercase(column(batch, col)?, |v| needles.iter().any(|n| has_term(v, n))),
        Pred::Regex { col, re } => per_string(column(batch, col)?, |v| re.is_match(v)),
        Pred::Between { col, low, high } => {
            let array = column(batch, col)?;
            and_kleene(&compare(array, CmpOp::Ge, low)?, &compare(array, CmpOp::Le, high)?)
        }
        Pred::IsEmpty { col, string, negated } => {
            let array = column(batch, col)?;
            let r = if *string { per_string(array, str::is_empty)? } else { is_null(array)? };
            if *negated { not(&r) } else { Ok(r) }
        }
        Pred::IsNull { col, string, negated } => {
            let array = column(batch, col)?;
            let r =
                if *string { BooleanArray::new(BooleanBuffer::new_unset(array.len()), None) } else { is_null(array)? };
            if *negated { not(&r) } else { Ok(r) }
        }
    }
}
