//! Per-table filter pipelines in the KQL subset of DCR `transformKql` (DESIGN.md §6).
//!
//! Text is parsed once ([`parse`]) into a [`Pipeline`], checked against a table's columns
//! ([`Pipeline::check`]) into a [`Filter`], and the filter is applied to decoded batches
//! ([`Filter::apply`]). The same pipeline prints back as a DCR transformation
//! ([`Pipeline::to_kql`]).
//!
//! # Language
//!
//! Stages joined by `|`, with an optional leading `source |` (ignored): `where <predicate>`,
//! `project col, ...`, `project-away col, ...`. Column names in `project` / `project-away` may
//! use `*` wildcards (any run of characters). Predicates: `== != < <= > >=`, `=~ !~`,
//! `has !has has_cs`, `contains !contains contains_cs`, `startswith !startswith endswith
//! !endswith`, `in (...) !in (...) in~ (...) !in~ (...)`, `has_any (...)`,
//! `matches regex "..."`, `between (a .. b)`, `and`, `or`, `not(...)`, `isempty(col)`,
//! `isnotempty(col)`, `isnull(col)`, `isnotnull(col)` and parentheses. `and` binds tighter
//! than `or`. The column is always on the left of an operator. Literals: `"..."` and `'...'`
//! (escapes `\\ \" \' \n \t \r`), `@"..."` (verbatim, `""` for a quote), integers, reals, `true`,
//! `false`, `datetime(2026-11-20T10:00:00Z)` or `datetime("...")` (no offset means UTC).
//! Keywords are lowercase and case-sensitive, as in KQL.
//!
//! # Semantics
//!
//! - **Strings are never null** (as in Kusto): a null in a `string`, `guid` or `dynamic` column
//!   (all Arrow `Utf8`) behaves as `""`. So `col == ""`, `isempty(col)`, `col != "x"` and
//!   `col !contains "x"` are true for it, and `isnull(col)` is false (use `isempty`).
//! - **Other nulls** (long, int, real, bool, datetime): a comparison, `in`, `!in` or `between`
//!   with a null is null; `and`, `or` and `not()` follow Kleene logic (`not(null)` is null,
//!   `null or true` is true), and each `where` keeps a row only when its predicate is true: null
//!   counts as false only there, at the end. So `where RemotePort != 80` and
//!   `where not(RemotePort == 80)` both drop rows whose `RemotePort` is null. `isnull` and
//!   `isempty` are true for a null.
//! - **Case**: `==`, `!=`, `<`…`>=`, `in`, `!in`, `has_cs`, `contains_cs` and `matches regex`
//!   are case-sensitive; `=~ !~ in~ !in~ has !has contains !contains startswith !startswith
//!   endswith !endswith has_any` ignore case, with ASCII case folding only (`É` and `é` differ).
//!   String `<`/`>` compare bytes (ordinal order). `matches regex` uses the Rust `regex`
//!   syntax (close to Kusto's RE2) and matches anywhere in the value unless anchored; an invalid
//!   expression is a check error.
//! - **`has`**: terms are maximal runs of ASCII alphanumeric characters; every other character
//!   (including non-ASCII ones) separates terms. `a has t` is true when `t` occurs in `a` at a
//!   position where it starts and ends on term boundaries: a term, or a run of whole terms with
//!   their separators (`"powershell.exe -enc" has "exe -enc"`). An empty `t` matches every row.
//!   `has_any` is true when any of its values `has`-matches.
//! - **Numbers**: integer and real literals compare with int, long and real columns (the literal
//!   is converted to the column's type, or the column widened to long / real when the literal
//!   does not fit). `between (a .. b)` is inclusive and takes numbers or datetimes. Bool columns
//!   take `true`/`false` with `==`, `!=`, `in`, `!in`; datetime columns take `datetime(...)`
//!   literals (UTC nanoseconds).
//! - **Projection**: `project` outputs its list in order (a wildcard expands in input order, a
//!   column listed twice appears once); `project-away` keeps the input order. `where` after a
//!   `project` may only use the columns still there. All `where` masks are computed on the input
//!   batch and combined; projection is applied once at the end (the result is the same).
//!
//! Evaluation is vectorised: each predicate node becomes a `BooleanArray` over the whole batch,
//! with arrow kernels (`arrow-ord` comparisons against scalars, `arrow-string`, Kleene boolean
//! kernels, `filter_record_batch`) or, where none exists (`has`, case-insensitive `contains`,
//! `in` over a set, regexes), one tight loop over the string array. The syntax tree is never
//! interpreted per row.

mod ast;
mod check;
mod eval;
mod parse;

use std::fmt;

pub use ast::{CmpOp, Expr, Func, Lit, Name, Pipeline, Pos, Stage, StrOp, Value};
pub use eval::Filter;
pub use parse::{parse, parse_datetime};

use crate::schema::{COL_ENVELOPE_TENANT, COL_ENVELOPE_TIME, COL_EXTRA, COL_TIME_RECEIVED, ColumnType, TableSchema};

/// A syntax error, at a 1-based line and column of the pipeline text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A pipeline that does not fit its table (unknown column, type mismatch), at a 1-based line and
/// column of the pipeline text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct CheckError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl CheckError {
    fn at(pos: Pos, message: impl fmt::Display) -> Self {
        Self { line: pos.line, column: pos.column, message: message.to_string() }
    }
}

/// The columns a filter may use on `table`: its decoded columns, then `_EnvelopeTime`,
/// `_EnvelopeTenantId`, `_TimeReceivedBySvc` and `_Extra` (the decoder's Arrow schema).
pub fn table_columns(table: &TableSchema) -> Vec<(String, ColumnType)> {
    let mut cols: Vec<(String, ColumnType)> = table.decoded_columns().into_iter().map(|c| (c.name, c.ty)).collect();
    cols.push((COL_ENVELOPE_TIME.to_string(), ColumnType::Datetime));
    cols.push((COL_ENVELOPE_TENANT.to_string(), ColumnType::String));
    cols.push((COL_TIME_RECEIVED.to_string(), ColumnType::Datetime));
    cols.push((COL_EXTRA.to_string(), ColumnType::String));
    cols
}

impl Pipeline {
    /// Type-checks the pipeline against `table` (see [`table_columns`]).
    pub fn check(&self, table: &TableSchema) -> Result<Filter, CheckError> {
        check::check(self, &table_columns(table))
    }

    /// Type-checks the pipeline against an explicit column list (name, type), in batch order.
    pub fn check_columns(&self, columns: &[(String, ColumnType)]) -> Result<Filter, CheckError> {
        check::check(self, columns)
    }
}

#[cfg(test)]
mod tests;
