//! Lexer and recursive-descent parser: pipeline text → [`Pipeline`].
//!
//! Grammar (keywords are lowercase and case-sensitive, like KQL):
//!
//! ```text
//! pipeline := [ "source" [ "|" stage { "|" stage } ] ] | stage { "|" stage } | ""
//! stage    := "where" or | ("project" | "project-away") name { "," name }
//! or       := and { "or" and }
//! and      := atom { "and" atom }
//! atom     := "(" or ")" | "not" "(" or ")" | func "(" column ")" | column op rhs
//! ```

use super::{
    ParseError,
    ast::{CmpOp, Expr, Func, Lit, Name, Pipeline, Pos, Stage, StrOp, Value},
};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// Identifiers and keywords, including `project-away`, `in~`, `!has`, `!in~` and names
    /// with `*` wildcards.
    Word(String),
    Str(String),
    Int(i64),
    Real(f64),
    /// The raw text between `datetime(` and `)`, quotes removed.
    DateTime(String),
    /// `==`, `!=`, `<`, `<=`, `>`, `>=`, `=~`, `!~`.
    Op(&'static str),
    Pipe,
    LParen,
    RParen,
    Comma,
    DotDot,
    Minus,
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Word(w) => format!("`{w}`"),
        Tok::Str(_) => "a string".into(),
        Tok::Int(_) | Tok::Real(_) => "a number".into(),
        Tok::DateTime(_) => "a datetime".into(),
        Tok::Op(o) => format!("`{o}`"),
        Tok::Pipe => "`|`".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Comma => "`,`".into(),
        Tok::DotDot => "`..`".into(),
        Tok::Minus => "`-`".into(),
        Tok::End => "the end of the text".into(),
    }
}

fn err(pos: Pos, message: impl Into<String>) -> ParseError {
    ParseError { line: pos.line, column: pos.column, message: message.into() }
}

struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: usize,
    col: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '*'
}

impl Lexer {
    fn peek(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn pos(&self) -> Pos {
        Pos { line: self.line, column: self.col }
    }

    fn word(&mut self) -> String {
        let mut w = String::new();
        while let Some(c) = self.peek(0).filter(|c| is_word_char(*c)) {
            w.push(c);
            self.bump();
        }
        w
    }

    fn tokens(mut self) -> Result<Vec<(Tok, Pos)>, ParseError> {
        let mut out = Vec::new();
        loop {
            while self.peek(0).is_some_and(char::is_whitespace) {
                self.bump();
            }
            let pos = self.pos();
            let Some(c) = self.peek(0) else {
                out.push((Tok::End, pos));
                return Ok(out);
            };
            let tok = match c {
                '|' => self.single(Tok::Pipe),
                '(' => self.single(Tok::LParen),
                ')' => self.single(Tok::RParen),
                ',' => self.single(Tok::Comma),
                '-' => self.single(Tok::Minus),
                '.' if self.peek(1) == Some('.') => {
                    self.bump();
                    self.single(Tok::DotDot)
                }
                '"' | '\'' => Tok::Str(self.string(pos)?),
                '@' if matches!(self.peek(1), Some('"' | '\'')) => {
                    self.bump();
                    Tok::Str(self.verbatim(pos)?)
                }
                '0'..='9' => self.number(pos)?,
                '!' if self.peek(1).is_some_and(|c| c.is_ascii_alphabetic()) => {
                    self.bump();
                    let mut w = format!("!{}", self.word());
                    if w == "!in" && self.peek(0) == Some('~') {
                        self.bump();
                        w.push('~');
                    }
                    Tok::Word(w)
                }
                '=' | '!' | '<' | '>' | '~' => {
                    let mut op = String::new();
                    while let Some(c) = self.peek(0).filter(|c| "=!<>~".contains(*c)) {
                        op.push(c);
                        self.bump();
                    }
                    match CmpOp::ALL.iter().find(|(s, _)| *s == op) {
                        Some((s, _)) => Tok::Op(s),
                        None if op == "=" => return Err(err(pos, "unknown operator `=` (use `==`)")),
                        None => return Err(err(pos, format!("unknown operator `{op}`"))),
                    }
                }
                c if is_word_char(c) => {
                    let mut w = self.word();
                    if w == "project" && self.peek(0) == Some('-') && self.peek(1).is_some_and(|c| c.is_alphabetic()) {
                        self.bump();
                        w.push('-');
                        w.push_str(&self.word());
                    } else if w == "in" && self.peek(0) == Some('~') {
                        self.bump();
                        w.push('~');
                    } else if w == "datetime"
                        && let Some(raw) = self.datetime()?
                    {
                        out.push((Tok::DateTime(raw), pos));
                        continue;
                    }
                    Tok::Word(w)
                }
                c => return Err(err(pos, format!("unexpected character `{c}`"))),
            };
            out.push((tok, pos));
        }
    }

    fn single(&mut self, t: Tok) -> Tok {
        self.bump();
        t
    }

    /// After the word `datetime`: `(raw)` or `("raw")`; `None` when no `(` follows.
    fn datetime(&mut self) -> Result<Option<String>, ParseError> {
        let mut k = 0;
        while self.peek(k).is_some_and(|c| c == ' ' || c == '\t') {
            k += 1;
        }
        if self.peek(k) != Some('(') {
            return Ok(None);
        }
        for _ in 0..=k {
            self.bump();
        }
        while self.peek(0).is_some_and(char::is_whitespace) {
            self.bump();
        }
        let raw = if matches!(self.peek(0), Some('"' | '\'')) {
            let p = self.pos();
            self.string(p)?
        } else {
            let mut raw = String::new();
            while let Some(c) = self.peek(0).filter(|c| *c != ')' && *c != '\n') {
                raw.push(c);
                self.bump();
            }
            raw.trim_end().to_string()
        };
        while self.peek(0).is_some_and(char::is_whitespace) {
            self.bump();
        }
        if self.peek(0) != Some(')') {
            return Err(err(self.pos(), "expected `)` after the datetime value"));
        }
        self.bump();
        Ok(Some(raw))
    }

    fn string(&mut self, start: Pos) -> Result<String, ParseError> {
        let quote = self.bump().unwrap_or('"');
        let mut s = String::new();
        loop {
            let p = self.pos();
            match self.bump() {
                None => return Err(err(start, "unterminated string")),
                Some(c) if c == quote => return Ok(s),
                Some('\\') => match self.bump() {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('r') => s.push('\r'),
                    Some(c @ ('\\' | '"' | '\'')) => s.push(c),
                    Some(c) => return Err(err(p, format!("unknown escape `\\{c}`"))),
                    None => return Err(err(start, "unterminated string")),
                },
                Some(c) => s.push(c),
            }
        }
    }

    /// `@"..."`: no escapes; a doubled quote stands for one.
    fn verbatim(&mut self, start: Pos) -> Result<String, ParseError> {
        let quote = self.bump().unwrap_or('"');
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return Err(err(start, "unterminated string")),
                Some(c) if c == quote && self.peek(0) == Some(quote) => {
                    self.bump();
                    s.push(c);
                }
                Some(c) if c == quote => return Ok(s),
                Some(c) => s.push(c),
            }
        }
    }

    fn number(&mut self, start: Pos) -> Result<Tok, ParseError> {
        let mut s = String::new();
        let mut real = false;
        let digits = |lx: &mut Self, s: &mut String| {
            while let Some(c) = lx.peek(0).filter(char::is_ascii_digit) {
                s.push(c);
                lx.bump();
            }
        };
        digits(self, &mut s);
        if self.peek(0) == Some('.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            real = true;
            s.push('.');
            self.bump();
            digits(self, &mut s);
        }
        if matches!(self.peek(0), Some('e' | 'E')) {
            let sign = usize::from(matches!(self.peek(1), Some('+' | '-')));
            if self.peek(1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                real = true;
                for _ in 0..=sign {
                    s.push(self.bump().unwrap_or('e'));
                }
                digits(self, &mut s);
            }
        }
        if self.peek(0).is_some_and(is_word_char) {
            return Err(err(self.pos(), format!("unexpected `{}` after a number", self.peek(0).unwrap_or(' '))));
        }
        if real {
            match s.parse::<f64>() {
                Ok(r) if r.is_finite() => Ok(Tok::Real(r)),
                _ => Err(err(start, "real literal out of range")),
            }
        } else {
            s.parse().map(Tok::Int).map_err(|_| err(start, "integer literal out of range"))
        }
    }
}

/// Parses pipeline text; errors carry the 1-based line and column inside `text`.
pub fn parse(text: &str) -> Result<Pipeline, ParseError> {
    let lexer = Lexer { chars: text.chars().collect(), i: 0, line: 1, col: 1 };
    let mut p = Parser { toks: lexer.tokens()?, i: 0 };
    p.pipeline()
}

struct Parser {
    toks: Vec<(Tok, Pos)>,
    i: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i.min(self.toks.len() - 1)].0
    }

    fn pos(&self) -> Pos {
        self.toks[self.i.min(self.toks.len() - 1)].1
    }

    fn next(&mut self) -> (Tok, Pos) {
        let t = self.toks[self.i.min(self.toks.len() - 1)].clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Word(x) if x == w)
    }

    fn expect(&mut self, t: Tok, what: &str) -> Result<Pos, ParseError> {
        if *self.peek() == t {
            Ok(self.next().1)
        } else {
            Err(err(self.pos(), format!("expected {what}, found {}", describe(self.peek()))))
        }
    }

    fn pipeline(&mut self) -> Result<Pipeline, ParseError> {
        let mut stages = Vec::new();
        if *self.peek() == Tok::End {
            return Ok(Pipeline { stages });
        }
        let mut need_stage = true;
        if self.is_word("source") {
            self.next();
            need_stage = false;
            if *self.peek() == Tok::Pipe {
                self.next();
                need_stage = true;
            }
        }
        while need_stage {
            stages.push(self.stage()?);
            need_stage = *self.peek() == Tok::Pipe;
            if need_stage {
                self.next();
            }
        }
        if *self.peek() != Tok::End {
            return Err(err(
                self.pos(),
                format!("expected `|` or the end of the text, found {}", describe(self.peek())),
            ));
        }
        Ok(Pipeline { stages })
    }

    fn stage(&mut self) -> Result<Stage, ParseError> {
        let (tok, pos) = self.next();
        match tok {
            Tok::Word(w) if w == "where" => Ok(Stage::Where(self.or()?)),
            Tok::Word(w) if w == "project" || w == "project-away" => {
                let mut names = vec![self.name(&w, true)?];
                while *self.peek() == Tok::Comma {
                    self.next();
                    names.push(self.name(&w, true)?);
                }
                Ok(if w == "project" { Stage::Project(names) } else { Stage::ProjectAway(names) })
            }
            t => Err(err(pos, format!("expected `where`, `project` or `project-away`, found {}", describe(&t)))),
        }
    }

    /// A column name (with `*` wildcards when `wildcards`), `after` naming what precedes it.
    fn name(&mut self, after: &str, wildcards: bool) -> Result<Name, ParseError> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Word(w) if !w.starts_with('!') && !w.ends_with('~') && w != "project-away" => {
                if w.contains('*') && !wildcards {
                    return Err(err(pos, format!("wildcards are only allowed in `project` and `project-away`: `{w}`")));
                }
                self.next();
                Ok(Name { name: w, pos })
            }
            t => Err(err(pos, format!("expected a column name after `{after}`, found {}", describe(&t)))),
        }
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.and()?;
        while self.is_word("or") {
            self.next();
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.atom()?;
        while self.is_word("and") {
            self.next();
            e = Expr::And(Box::new(e), Box::new(self.atom()?));
        }
        Ok(e)
    }

    fn close(&mut self) -> Result<(), ParseError> {
        self.expect(Tok::RParen, "`)`").map(|_| ())
    }

    fn atom(&mut self) -> Result<Expr, ParseError> {
        if *self.peek() == Tok::LParen {
            self.next();
            let e = self.or()?;
            self.close()?;
            return Ok(e);
        }
        if self.is_word("not") {
            self.next();
            self.expect(Tok::LParen, "`(` after `not`")?;
            let e = self.or()?;
            self.close()?;
            return Ok(Expr::Not(Box::new(e)));
        }
        if let Tok::Word(w) = self.peek().clone()
            && let Some((_, func)) = Func::ALL.iter().find(|(s, _)| *s == w)
        {
            self.next();
            self.expect(Tok::LParen, &format!("`(` after `{w}`"))?;
            let col = self.name(&format!("{w}("), false)?;
            self.close()?;
            return Ok(Expr::Func { func: *func, col });
        }
        let col = match self.peek() {
            Tok::Word(_) => self.name("where", false)?,
            t => return Err(err(self.pos(), format!("expected a column name or `(`, found {}", describe(t)))),
        };
        let (tok, pos) = self.next();
        match tok {
            Tok::Op(op) => {
                let op = CmpOp::ALL.iter().find(|(s, _)| *s == op).map(|(_, o)| *o).unwrap_or(CmpOp::Eq);
                Ok(Expr::Cmp { col, op, value: self.literal()? })
            }
            Tok::Word(w) => {
                if let Some((_, op)) = StrOp::ALL.iter().find(|(s, _)| *s == w) {
                    return Ok(Expr::Str { col, op: *op, value: self.literal()? });
                }
                match w.as_str() {
                    "in" | "!in" | "in~" | "!in~" => Ok(Expr::In {
                        col,
                        negated: w.starts_with('!'),
                        case_insensitive: w.ends_with('~'),
                        values: self.list(&w)?,
                    }),
                    "has_any" => Ok(Expr::HasAny { col, values: self.list(&w)? }),
                    "matches" => {
                        if !self.is_word("regex") {
                            return Err(err(self.pos(), "expected `regex` after `matches`"));
                        }
                        self.next();
                        Ok(Expr::MatchesRegex { col, pattern: self.literal()? })
                    }
                    "between" => {
                        self.expect(Tok::LParen, "`(` after `between`")?;
                        let low = self.literal()?;
                        self.expect(Tok::DotDot, "`..`")?;
                        let high = self.literal()?;
                        self.close()?;
                        Ok(Expr::Between { col, low, high })
                    }
                    _ => Err(err(pos, format!("unknown operator `{w}`"))),
                }
            }
            t => Err(err(pos, format!("expected an operator after `{}`, found {}", col.name, describe(&t)))),
        }
    }

    fn list(&mut self, op: &str) -> Result<Vec<Lit>, ParseError> {
        self.expect(Tok::LParen, &format!("`(` after `{op}`"))?;
        let mut values = vec![self.literal()?];
        while *self.peek() == Tok::Comma {
            self.next();
            values.push(self.literal()?);
        }
        self.close()?;
        Ok(values)
    }

    fn literal(&mut self) -> Result<Lit, ParseError> {
        let (tok, pos) = self.next();
        let value =
            match tok {
                Tok::Str(s) => Value::Str(s),
                Tok::Int(i) => Value::Int(i),
                Tok::Real(r) => Value::Real(r),
                Tok::Word(w) if w == "true" => Value::Bool(true),
                Tok::Word(w) if w == "false" => Value::Bool(false),
                Tok::DateTime(raw) => Value::DateTime(parse_datetime(&raw).ok_or_else(|| {
                    err(pos, format!("invalid datetime `{raw}` (expected e.g. `2026-11-20T10:00:00Z`)"))
                })?),
                Tok::Minus => match self.next() {
                    (Tok::Int(i), _) => Value::Int(-i),
                    (Tok::Real(r), _) => Value::Real(-r),
                    (t, p) => return Err(err(p, format!("expected a number after `-`, found {}", describe(&t)))),
                },
                t => return Err(err(pos, format!("expected a literal value, found {}", describe(&t)))),
            };
        Ok(Lit { value, pos })
    }
}

/// ISO 8601 in UTC: `2026-11-20`, `2026-11-20T10:00:00`, `2026-11-20 10:00:00.1234567Z`, or
/// with an offset (`+02:00`); no offset means UTC.
pub fn parse_datetime(raw: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let dt = if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        t.naive_utc()
    } else {
        let s = raw.strip_suffix('Z').unwrap_or(raw);
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))?
    };
    dt.and_utc().timestamp_nanos_opt()
}
