//! Leaf helpers of the decoder: datetime parsing and compact JSON text of a parsed value.

use simd_json::{Node, StaticNode};

/// Number of tape nodes a value occupies (itself and everything nested in it).
#[inline]
pub(crate) fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// Parses an ISO-8601 / RFC 3339 datetime into nanoseconds since the Unix epoch, UTC.
///
/// Fast path for what Defender sends (`2024-05-01T12:34:56.1234567Z`, 0 to 9 fractional digits,
/// `Z` or `+00:00`); other offsets, a space instead of `T`, and a missing zone (taken as UTC)
/// go through chrono. Digits past the 9th are dropped (below a nanosecond).
pub fn parse_datetime_nanos(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':' {
        let num = |i: usize, n: usize| -> Option<i64> {
            let mut v = 0i64;
            for &c in &b[i..i + n] {
                if !c.is_ascii_digit() {
                    return None;
                }
                v = v * 10 + i64::from(c - b'0');
            }
            Some(v)
        };
        let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
        let (hour, min, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
        let mut i = 19;
        let mut frac = 0i64;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 9 {
                    frac = frac * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            let digits = i - start;
            if digits == 0 {
                return None;
            }
            for _ in digits..9 {
                frac *= 10;
            }
        }
        let rest = &b[i..];
        if (rest == b"Z" || rest == b"z" || rest == b"+00:00")
            && (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day)
            && hour < 24
            && min < 60
            && sec < 60
        {
            let days = days_from_civil(year, month, day);
            let secs = days * 86_400 + hour * 3600 + min * 60 + sec;
            return secs.checked_mul(1_000_000_000)?.checked_add(frac);
        }
    }
    slow_parse(s)
}

fn slow_parse(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
        return dt.timestamp_nanos_opt();
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f%:z"] {
        if let Ok(dt) = chrono::DateTime::parse_from_str(s, fmt) {
            return dt.timestamp_nanos_opt();
        }
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return dt.and_utc().timestamp_nanos_opt();
        }
    }
    None
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Appends `s` as a JSON string literal.
pub(crate) fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => {
                out.push_str(&s[start..i]);
                out.push_str(&format!("\\u{:04x}", c as u32));
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push_str(esc);
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends the text of a scalar: numbers as JSON numbers, booleans, `null`.
pub(crate) fn write_static(out: &mut String, v: &StaticNode) {
    match v {
        StaticNode::I64(n) => out.push_str(itoa::Buffer::new().format(*n)),
        StaticNode::U64(n) => out.push_str(itoa::Buffer::new().format(*n)),
        StaticNode::F64(f) if f.is_finite() => out.push_str(ryu::Buffer::new().format_finite(*f)),
        StaticNode::F64(_) | StaticNode::Null => out.push_str("null"),
        StaticNode::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
    }
}

/// Appends the compact JSON text of the value starting at `nodes[0]`; returns the nodes used.
pub(crate) fn write_json(out: &mut String, nodes: &[Node<'_>]) -> usize {
    match nodes[0] {
        Node::String(s) => {
            write_json_str(out, s);
            1
        }
        Node::Static(ref v) => {
            write_static(out, v);
            1
        }
        Node::Array { len, count } => {
            out.push('[');
            let mut i = 1;
            for k in 0..len {
                if k > 0 {
                    out.push(',');
                }
                i += write_json(out, &nodes[i..]);
            }
            out.push(']');
            debug_assert_eq!(i, count + 1);
            count + 1
        }
        Node::Object { len, count } => {
            out.push('{');
            let mut i = 1;
            for k in 0..len {
                if k > 0 {
                    out.push(',');
                }
                if let Node::String(key) = nodes[i] {
                    write_json_str(out, key);
                }
                out.push(':');
                i += 1;
                i += write_json(out, &nodes[i..]);
            }
            out.push('}');
            count + 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_defender_datetimes_with_seven_digits() {
        assert_eq!(parse_datetime_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_datetime_nanos("1970-01-01T00:00:01.0000001Z"), Some(1_000_000_100));
        assert_eq!(parse_datetime_nanos("2024-02-29T23:59:59.1234567Z"), Some(1_709_251_199_123_456_700));
        assert_eq!(parse_datetime_nanos("2024-02-29T23:59:59.1234567+00:00"), Some(1_709_251_199_123_456_700));
        assert_eq!(parse_datetime_nanos("2024-02-29T23:59:59.123456789123Z"), Some(1_709_251_199_123_456_789));
        assert_eq!(parse_datetime_nanos("2024-03-01T01:59:59.5+02:00"), Some(1_709_251_199_500_000_000));
        assert_eq!(parse_datetime_nanos("2021-08-02 13:11:39.7724491"), Some(1_627_909_899_772_449_100));
        for bad in ["", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-01T00:00:00.Z", "yesterday", "-"] {
            assert_eq!(parse_datetime_nanos(bad), None, "{bad}");
        }
    }

    #[test]
    fn civil_days_match_chrono_over_four_centuries() {
        use chrono::Datelike;
        let mut d = chrono::NaiveDate::from_ymd_opt(1800, 1, 1).unwrap();
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        while d.year() < 2200 {
            assert_eq!(
                days_from_civil(i64::from(d.year()), i64::from(d.month()), i64::from(d.day())),
                (d - epoch).num_days()
            );
            d = d.succ_opt().unwrap();
        }
    }

    #[test]
    fn writes_compact_json_with_escapes() {
        let mut input = br#"{"a":[1,-2,1.5,true,null,"x\"y\n\u0001"],"b":{},"c":[]}"#.to_vec();
        let tape = simd_json::to_tape(&mut input).unwrap();
        let mut out = String::new();
        assert_eq!(write_json(&mut out, &tape.0), tape.0.len());
        assert_eq!(out, r#"{"a":[1,-2,1.5,true,null,"x\"y\n\u0001"],"b":{},"c":[]}"#);
    }
}
