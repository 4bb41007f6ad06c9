//! Type checking: a [`Pipeline`] against a table's columns → a compiled [`Filter`].

use std::collections::HashSet;

use super::{
    CheckError,
    ast::{CmpOp, Expr, Func, Lit, Name, Pipeline, Stage, StrOp, Value},
    eval::{Filter, Pred, Projection, Scalar},
};
use crate::schema::ColumnType;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Num,
    Bool,
    Time,
}

fn kind(ty: ColumnType) -> Kind {
    match ty {
        ColumnType::String | ColumnType::Guid | ColumnType::Dynamic => Kind::Str,
        ColumnType::Long | ColumnType::Int | ColumnType::Real => Kind::Num,
        ColumnType::Bool => Kind::Bool,
        ColumnType::Datetime => Kind::Time,
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Str => "string",
        Kind::Num => "number",
        Kind::Bool => "bool",
        Kind::Time => "datetime",
    }
}

fn value_name(v: &Value) -> &'static str {
    match v {
        Value::Str(_) => "a string",
        Value::Int(_) | Value::Real(_) => "a number",
        Value::Bool(_) => "a bool",
        Value::DateTime(_) => "a datetime",
    }
}

/// `true` when `name` matches `pattern`, where `*` stands for any run of characters.
pub(crate) fn wildcard_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

struct Checker<'a> {
    columns: Vec<&'a (String, ColumnType)>,
}

impl Checker<'_> {
    fn column(&self, name: &Name) -> Result<Kind, CheckError> {
        if let Some((_, ty)) = self.columns.iter().find(|(n, _)| *n == name.name) {
            return Ok(kind(*ty));
        }
        let lower = name.name.to_ascii_lowercase();
        let suggestion = self.columns.iter().find(|(n, _)| n.eq_ignore_ascii_case(&name.name)).copied().or_else(|| {
            self.columns
                .iter()
                .map(|c| (edit_distance(&lower, &c.0.to_ascii_lowercase()), *c))
                .filter(|(d, _)| *d <= 2)
                .min_by_key(|(d, _)| *d)
                .map(|(_, c)| c)
        });
        Err(CheckError::at(
            name.pos,
            match suggestion {
                Some((s, _)) => format!("unknown column `{}` (did you mean `{s}`?)", name.name),
                None => format!("unknown column `{}`", name.name),
            },
        ))
    }

    fn project(&mut self, names: &[Name], away: bool) -> Result<Projection, CheckError> {
        for n in names {
            let matched = self.columns.iter().any(|(c, _)| wildcard_match(&n.name, c));
            if !matched {
                if n.name.contains('*') {
                    return Err(CheckError::at(n.pos, format!("`{}` matches no column", n.name)));
                }
                self.column(n)?;
            }
        }
        let patterns: Vec<String> = names.iter().map(|n| n.name.clone()).collect();
        let projection = if away { Projection::Away(patterns) } else { Projection::Keep(patterns) };
        let names: Vec<&str> = self.columns.iter().map(|(n, _)| n.as_str()).collect();
        let kept = projection.apply(&names);
        let columns = kept.iter().filter_map(|k| self.columns.iter().find(|(n, _)| n == k).copied()).collect();
        self.columns = columns;
        Ok(projection)
    }

    /// A literal compared with a column of kind `k` (for `op`, named in messages).
    fn scalar(&self, col: &Name, k: Kind, lit: &Lit) -> Result<Scalar, CheckError> {
        let mismatch = || {
            CheckError::at(
                lit.pos,
                format!("cannot compare {} column `{}` with {}", kind_name(k), col.name, value_name(&lit.value)),
            )
        };
        match (k, &lit.value) {
            (Kind::Str, Value::Str(s)) => Ok(Scalar::Str(s.clone())),
            (Kind::Num, Value::Int(i)) => Ok(Scalar::Int(*i)),
            (Kind::Num, Value::Real(r)) => Ok(Scalar::Real(*r)),
            (Kind::Bool, Value::Bool(b)) => Ok(Scalar::Bool(*b)),
            (Kind::Time, Value::DateTime(t)) => Ok(Scalar::Time(*t)),
            _ => Err(mismatch()),
        }
    }

    fn string_col(&self, col: &Name, op: &str) -> Result<(), CheckError> {
        let k = self.column(col)?;
        if k != Kind::Str {
            return Err(CheckError::at(
                col.pos,
                format!("`{op}` needs a string column, but `{}` is a {} column", col.name, kind_name(k)),
            ));
        }
        Ok(())
    }

    fn string_lit(lit: &Lit, op: &str) -> Result<String, CheckError> {
        match &lit.value {
            Value::Str(s) => Ok(s.clone()),
            v => Err(CheckError::at(lit.pos, format!("`{op}` needs a string, found {}", value_name(v)))),
        }
    }

    fn pred(&self, e: &Expr) -> Result<Pred, CheckError> {
        Ok(match e {
            Expr::And(l, r) => Pred::And(Box::new(self.pred(l)?), Box::new(self.pred(r)?)),
            Expr::Or(l, r) => Pred::Or(Box::new(self.pred(l)?), Box::new(self.pred(r)?)),
            Expr::Not(inner) => Pred::Not(Box::new(self.pred(inner)?)),
            Expr::Cmp { col, op, value } => {
                let k = self.column(col)?;
                let scalar = self.scalar(col, k, value)?;
                let ordered = matches!(op, CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge);
                if matches!(op, CmpOp::EqCi | CmpOp::NeCi) && k != Kind::Str || ordered && k == Kind::Bool {
                    return Err(CheckError::at(
                        col.pos,
                        format!("`{}` cannot be used on {} column `{}`", op.as_str(), kind_name(k), col.name),
                    ));
                }
                Pred::Cmp { col: col.name.clone(), op: *op, value: scalar }
            }
            Expr::Str { col, op, value } => {
                self.string_col(col, op.as_str())?;
                let s = Self::string_lit(value, op.as_str())?;
                let cs = matches!(op, StrOp::HasCs | StrOp::ContainsCs);
                Pred::Str { col: col.name.clone(), op: *op, needle: if cs { s } else { s.to_ascii_lowercase() } }
            }
            Expr::In { col, negated, case_insensitive, values } => {
                let k = self.column(col)?;
                if *case_insensitive && k != Kind::Str {
                    return Err(CheckError::at(
                        col.pos,
                        format!("`in~` needs a string column, but `{}` is a {} column", col.name, kind_name(k)),
                    ));
                }
                let scalars = values.iter().map(|v| self.scalar(col, k, v)).collect::<Result<Vec<_>, _>>()?;
                if k == Kind::Str {
                    let set: HashSet<String> = scalars
                        .into_iter()
                        .filter_map(|s| match s {
                            Scalar::Str(s) if *case_insensitive => Some(s.to_ascii_lowercase()),
                            Scalar::Str(s) => Some(s),
                            _ => None,
                        })
                        .collect();
                    Pred::InStr { col: col.name.clone(), set, ci: *case_insensitive, negated: *negated }
                } else {
                    Pred::In { col: col.name.clone(), values: scalars, negated: *negated }
                }
            }
            Expr::HasAny { col, values } => {
                self.string_col(col, "has_any")?;
                let needles = values
                    .iter()
                    .map(|v| Self::string_lit(v, "has_any").map(|s| s.to_ascii_lowercase()))
                    .collect::<Result<_, _>>()?;
                Pred::HasAny { col: col.name.clone(), needles }
            }
            Expr::MatchesRegex { col, pattern } => {
                self.string_col(col, "matches regex")?;
                let p = Self::string_lit(pattern, "matches regex")?;
                let re = regex::Regex::new(&p)
                    .map_err(|e| CheckError::at(pattern.pos, format!("invalid regular expression: {e}")))?;
                Pred::Regex { col: col.name.clone(), re }
            }
            Expr::Between { col, low, high } => {
                let k = self.column(col)?;
                if !matches!(k, Kind::Num | Kind::Time) {
                    return Err(CheckError::at(
                        col.pos,
                        format!(
                            "`between` needs a number or datetime column, but `{}` is a {} column",
                            col.name,
                            kind_name(k)
                        ),
                    ));
                }
                Pred::Between {
                    col: col.name.clone(),
                    low: self.scalar(col, k, low)?,
                    high: self.scalar(col, k, high)?,
                }
            }
            Expr::Func { func, col } => {
                let string = self.column(col)? == Kind::Str;
                let name = col.name.clone();
                match func {
                    Func::IsEmpty => Pred::IsEmpty { col: name, string, negated: false },
                    Func::IsNotEmpty => Pred::IsEmpty { col: name, string, negated: true },
                    Func::IsNull => Pred::IsNull { col: name, string, negated: false },
                    Func::IsNotNull => Pred::IsNull { col: name, string, negated: true },
                }
            }
        })
    }
}

pub(crate) fn check(pipeline: &Pipeline, columns: &[(String, ColumnType)]) -> Result<Filter, CheckError> {
    let mut checker = Checker { columns: columns.iter().collect() };
    let mut wheres = Vec::new();
    let mut projections = Vec::new();
    for stage in &pipeline.stages {
        match stage {
            Stage::Where(e) => wheres.push(checker.pred(e)?),
            Stage::Project(names) => projections.push(checker.project(names, false)?),
            Stage::ProjectAway(names) => projections.push(checker.project(names, true)?),
        }
    }
    Ok(Filter::new(wheres, projections))
}
