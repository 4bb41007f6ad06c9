//! JSON text written straight into a `String`: escaped strings, integers, datetimes, hex digests,
//! guids and base64. No `serde_json::Value` on the hot path.
//!
//! Times are `i64` ticks of 100 ns since the Unix epoch, the resolution Defender writes (7
//! fractional digits).

/// Ticks (100 ns) per second.
pub(crate) const TICKS_PER_SEC: i64 = 10_000_000;

/// Appends `s` as a JSON string literal (quoted and escaped).
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    escape_into(out, s);
    out.push('"');
}

/// Appends the escaped body of a JSON string (no quotes).
pub(crate) fn escape_into(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => {
                out.push_str(&s[start..i]);
                out.push_str("\\u00");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push_str(esc);
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// Appends an unsigned integer.
pub(crate) fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(b as char);
    }
}

/// Appends a signed integer.
pub(crate) fn push_i64(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_u64(out, n.unsigned_abs());
}

/// How a datetime is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeStyle {
    /// `2026-11-20T10:15:31.1234567Z`: what Defender writes.
    Ticks,
    /// `2026-11-20T10:15:31.123Z`.
    Millis,
    /// `2026-11-20T10:15:31.1234567+00:00`.
    Offset,
    /// `2026-11-20T10:15:31Z`.
    Seconds,
}

/// Appends a datetime as text (no quotes).
pub(crate) fn push_time(out: &mut String, ticks: i64, style: TimeStyle) {
    let secs = ticks.div_euclid(TICKS_PER_SEC);
    let frac = ticks.rem_euclid(TICKS_PER_SEC);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    pad(out, y, 4);
    out.push('-');
    pad(out, m, 2);
    out.push('-');
    pad(out, d, 2);
    out.push('T');
    pad(out, sod / 3600, 2);
    out.push(':');
    pad(out, sod / 60 % 60, 2);
    out.push(':');
    pad(out, sod % 60, 2);
    match style {
        TimeStyle::Ticks | TimeStyle::Offset => {
            out.push('.');
            pad(out, frac, 7);
        }
        TimeStyle::Millis => {
            out.push('.');
            pad(out, frac / 10_000, 3);
        }
        TimeStyle::Seconds => {}
    }
    out.push_str(if style == TimeStyle::Offset { "+00:00" } else { "Z" });
}

/// Appends a datetime as a JSON string in Defender's shape.
pub(crate) fn push_time_json(out: &mut String, ticks: i64) {
    out.push('"');
    push_time(out, ticks, TimeStyle::Ticks);
    out.push('"');
}

fn pad(out: &mut String, n: i64, width: usize) {
    let mut buf = [b'0'; 8];
    let mut n = n.unsigned_abs();
    for i in (0..width).rev() {
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    for &b in &buf[..width] {
        out.push(b as char);
    }
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// SplitMix64: a stateless mixer, used to derive stable digests and ids from a seed.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a string: stable seeds for digests of named files.
pub(crate) fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Appends `n` lowercase hex digits derived from `seed` (the same seed, the same digits).
pub(crate) fn push_hex(out: &mut String, seed: u64, n: usize) {
    let mut state = seed;
    let mut left = n;
    while left > 0 {
        state = mix(state);
        let mut word = state;
        for _ in 0..left.min(16) {
            out.push(HEX[(word & 15) as usize] as char);
            word >>= 4;
        }
        left = left.saturating_sub(16);
    }
}

/// Appends uppercase hex digits (certificate serials, thumbprints).
pub(crate) fn push_hex_upper(out: &mut String, seed: u64, n: usize) {
    let start = out.len();
    push_hex(out, seed, n);
    let upper = out[start..].to_ascii_uppercase();
    out.truncate(start);
    out.push_str(&upper);
}

/// Appends a version-4 style guid (no quotes) derived from `seed`.
pub(crate) fn push_guid(out: &mut String, seed: u64) {
    let a = mix(seed);
    let b = mix(a);
    let hex = |out: &mut String, v: u64, digits: u32| {
        for i in (0..digits).rev() {
            out.push(HEX[((v >> (i * 4)) & 15) as usize] as char);
        }
    };
    hex(out, a >> 32, 8);
    out.push('-');
    hex(out, (a >> 16) & 0xffff, 4);
    out.push('-');
    hex(out, 0x4000 | (a & 0x0fff), 4);
    out.push('-');
    hex(out, 0x8000 | ((b >> 48) & 0x3fff), 4);
    out.push('-');
    hex(out, b & 0xffff_ffff_ffff, 12);
}

/// A guid as an owned string.
pub(crate) fn guid(seed: u64) -> String {
    let mut s = String::with_capacity(36);
    push_guid(&mut s, seed);
    s
}

/// Appends the standard base64 of `bytes` (the dead letters' encoder).
pub(crate) use defender_core::deadletter::push_base64;

/// Writes a JSON object field by field (for `AdditionalFields` and other JSON text).
#[derive(Debug)]
pub(crate) struct Obj {
    buf: String,
}

impl Obj {
    pub(crate) fn new() -> Self {
        Self { buf: String::from("{") }
    }

    fn key(&mut self, k: &str) {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        push_str(&mut self.buf, k);
        self.buf.push(':');
    }

    pub(crate) fn str(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        push_str(&mut self.buf, v);
        self
    }

    pub(crate) fn num(mut self, k: &str, v: i64) -> Self {
        self.key(k);
        push_i64(&mut self.buf, v);
        self
    }

    pub(crate) fn bool(mut self, k: &str, v: bool) -> Self {
        self.key(k);
        self.buf.push_str(if v { "true" } else { "false" });
        self
    }

    /// A value that is already JSON text.
    pub(crate) fn raw(mut self, k: &str, json: &str) -> Self {
        self.key(k);
        self.buf.push_str(json);
        self
    }

    pub(crate) fn end(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_defender_datetimes() {
        let mut s = String::new();
        let t = 1_795_132_800 * TICKS_PER_SEC + 1_234_567;
        push_time(&mut s, t, TimeStyle::Ticks);
        assert_eq!(s, "2026-11-20T00:00:00.1234567Z");
        s.clear();
        push_time(&mut s, t + 86_399 * TICKS_PER_SEC, TimeStyle::Millis);
        assert_eq!(s, "2026-11-20T23:59:59.123Z");
        s.clear();
        push_time(&mut s, 951_782_400 * TICKS_PER_SEC, TimeStyle::Offset);
        assert_eq!(s, "2000-02-29T00:00:00.0000000+00:00");
        s.clear();
        push_time(&mut s, 0, TimeStyle::Seconds);
        assert_eq!(s, "1970-01-01T00:00:00Z");
    }

    #[test]
    fn escapes_and_numbers() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
        s.clear();
        push_i64(&mut s, -639_199_803_770_463_703);
        push_u64(&mut s, 0);
        assert_eq!(s, "-6391998037704637030");
        s.clear();
        push_base64(&mut s, b"ab");
        assert_eq!(s, "YWI=");
        assert_eq!(guid(1).len(), 36);
        s.clear();
        push_hex(&mut s, 9, 40);
        assert_eq!(s.len(), 40);
    }
}
