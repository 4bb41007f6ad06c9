//! The syntax tree of a pipeline, and its canonical KQL text.
//!
//! Positions ([`Pos`]) are kept for error messages but ignored by equality, so two pipelines are
//! equal when they mean the same thing however they were spaced (the `to_kql` round trip relies
//! on it).

use std::fmt::{self, Write as _};

/// A 1-based line and column inside the pipeline text. Always equal to any other `Pos`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl PartialEq for Pos {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A parsed pipeline: `where`, `project` and `project-away` stages, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pipeline {
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    Where(Expr),
    /// Column names or wildcard patterns (`Initiating*`), output in this order.
    Project(Vec<Name>),
    /// Column names or wildcard patterns to drop; the others keep their input order.
    ProjectAway(Vec<Name>),
}

/// A column name (or, in `project` stages, a pattern with `*`) where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Name {
    pub name: String,
    pub pos: Pos,
}

/// A literal value where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Lit {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Real(f64),
    Bool(bool),
    /// Nanoseconds since the Unix epoch, UTC.
    DateTime(i64),
}

/// `==`, `!=`, `<`, `<=`, `>`, `>=`, `=~`, `!~`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    EqCi,
    NeCi,
}

/// The string operators that take one string literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrOp {
    Has,
    NotHas,
    HasCs,
    Contains,
    NotContains,
    ContainsCs,
    StartsWith,
    NotStartsWith,
    EndsWith,
    NotEndsWith,
}

/// `isempty`, `isnotempty`, `isnull`, `isnotnull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    IsEmpty,
    IsNotEmpty,
    IsNull,
    IsNotNull,
}

/// A predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp {
        col: Name,
        op: CmpOp,
        value: Lit,
    },
    Str {
        col: Name,
        op: StrOp,
        value: Lit,
    },
    /// `in`, `!in`, `in~`, `!in~`.
    In {
        col: Name,
        negated: bool,
        case_insensitive: bool,
        values: Vec<Lit>,
    },
    HasAny {
        col: Name,
        values: Vec<Lit>,
    },
    MatchesRegex {
        col: Name,
        pattern: Lit,
    },
    Between {
        col: Name,
        low: Lit,
        high: Lit,
    },
    Func {
        func: Func,
        col: Name,
    },
}

impl CmpOp {
    pub const ALL: [(&'static str, CmpOp); 8] = [
        ("==", CmpOp::Eq),
        ("!=", CmpOp::Ne),
        ("<", CmpOp::Lt),
        ("<=", CmpOp::Le),
        (">", CmpOp::Gt),
        (">=", CmpOp::Ge),
        ("=~", CmpOp::EqCi),
        ("!~", CmpOp::NeCi),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(_, op)| *op == self).map(|(s, _)| *s).unwrap_or("==")
    }
}

impl StrOp {
    pub const ALL: [(&'static str, StrOp); 10] = [
        ("has", StrOp::Has),
        ("!has", StrOp::NotHas),
        ("has_cs", StrOp::HasCs),
        ("contains", StrOp::Contains),
        ("!contains", StrOp::NotContains),
        ("contains_cs", StrOp::ContainsCs),
        ("startswith", StrOp::StartsWith),
        ("!startswith", StrOp::NotStartsWith),
        ("endswith", StrOp::EndsWith),
        ("!endswith", StrOp::NotEndsWith),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(_, op)| *op == self).map(|(s, _)| *s).unwrap_or("has")
    }
}

impl Func {
    pub const ALL: [(&'static str, Func); 4] = [
        ("isempty", Func::IsEmpty),
        ("isnotempty", Func::IsNotEmpty),
        ("isnull", Func::IsNull),
        ("isnotnull", Func::IsNotNull),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(_, f)| *f == self).map(|(s, _)| *s).unwrap_or("isempty")
    }
}

impl Pipeline {
    /// Canonical text for a DCR `transformKql`: `source | ...`, or `source` when empty.
    pub fn to_kql(&self) -> String {
        let mut out = String::from("source");
        for stage in &self.stages {
            out.push_str(" | ");
            match stage {
                Stage::Where(e) => {
                    out.push_str("where ");
                    write_expr(&mut out, e);
                }
                Stage::Project(names) | Stage::ProjectAway(names) => {
                    out.push_str(if matches!(stage, Stage::Project(_)) { "project " } else { "project-away " });
                    let names: Vec<&str> = names.iter().map(|n| n.name.as_str()).collect();
                    out.push_str(&names.join(", "));
                }
            }
        }
        out
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_kql())
    }
}

fn write_expr(out: &mut String, e: &Expr) {
    let paren = |out: &mut String, e: &Expr, wrap: bool| {
        if wrap {
            out.push('(');
            write_expr(out, e);
            out.push(')');
        } else {
            write_expr(out, e);
        }
    };
    match e {
        // `and` binds tighter than `or`; both associate to the left.
        Expr::Or(l, r) => {
            paren(out, l, false);
            out.push_str(" or ");
            paren(out, r, matches!(**r, Expr::Or(..)));
        }
        Expr::And(l, r) => {
            paren(out, l, matches!(**l, Expr::Or(..)));
            out.push_str(" and ");
            paren(out, r, matches!(**r, Expr::Or(..) | Expr::And(..)));
        }
        Expr::Not(inner) => {
            out.push_str("not(");
            write_expr(out, inner);
            out.push(')');
        }
        Expr::Cmp { col, op, value } => {
            let _ = write!(out, "{} {} {}", col.name, op.as_str(), value.value);
        }
        Expr::Str { col, op, value } => {
            let _ = write!(out, "{} {} {}", col.name, op.as_str(), value.value);
        }
        Expr::In { col, negated, case_insensitive, values } => {
            let op = match (negated, case_insensitive) {
                (false, false) => "in",
                (true, false) => "!in",
                (false, true) => "in~",
                (true, true) => "!in~",
            };
            let _ = write!(out, "{} {op} ({})", col.name, list(values));
        }
        Expr::HasAny { col, values } => {
            let _ = write!(out, "{} has_any ({})", col.name, list(values));
        }
        Expr::MatchesRegex { col, pattern } => {
            let _ = write!(out, "{} matches regex {}", col.name, pattern.value);
        }
        Expr::Between { col, low, high } => {
            let _ = write!(out, "{} between ({} .. {})", col.name, low.value, high.value);
        }
        Expr::Func { func, col } => {
            let _ = write!(out, "{}({})", func.as_str(), col.name);
        }
    }
}

fn list(values: &[Lit]) -> String {
    values.iter().map(|v| v.value.to_string()).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for Value {
    /// KQL literal syntax: strings double-quoted with backslash escapes, reals always with a `.`
    /// or exponent, datetimes as `datetime(...Z)` with up to 9 fractional digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => {
                f.write_char('"')?;
                for c in s.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        '\n' => f.write_str("\\n")?,
                        '\r' => f.write_str("\\r")?,
                        '\t' => f.write_str("\\t")?,
                        c => f.write_char(c)?,
                    }
                }
                f.write_char('"')
            }
            Value::Int(i) => write!(f, "{i}"),
            Value::Real(r) => write!(f, "{r:?}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::DateTime(ns) => {
                let t = chrono::DateTime::from_timestamp_nanos(*ns);
                write!(f, "datetime({})", t.format("%Y-%m-%dT%H:%M:%S%.fZ"))
            }
        }
    }
}
