//! How sops' YAML library (yaml.v3) types a scalar, and which strings can be written back
//! unquoted without changing their type (spec §6.1.1).
//!
//! Only plain (unquoted, untagged) scalars are resolved; quoted scalars are always strings.

use chrono::{FixedOffset, NaiveDate, TimeZone};

use crate::tree::{Timestamp, Value};

/// A plain scalar sops cannot represent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ResolveError {
    /// Between 2^63 and 2^64: yaml.v3 makes it a uint64, which sops rejects.
    UnsignedInteger,
}

/// Types a plain scalar as yaml.v3 does.
pub(super) fn resolve_plain(text: &str) -> Result<Value, ResolveError> {
    Ok(resolve_typed(text)?.unwrap_or_else(|| Value::Str(text.to_string())))
}

/// [`resolve_plain`] without building the string: `None` when `text` is a string. Keys and the
/// writer's checks only need to know that, once per scalar.
pub(crate) fn resolve_typed(text: &str) -> Result<Option<Value>, ResolveError> {
    let value = match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        ".nan" | ".NaN" | ".NAN" => Value::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Value::Float(f64::NEG_INFINITY),
        _ => return resolve_number(text),
    };
    Ok(Some(value))
}

/// Numbers and timestamps; `None` for anything else.
fn resolve_number(text: &str) -> Result<Option<Value>, ResolveError> {
    let Some(&first) = text.as_bytes().first() else {
        return Ok(Some(Value::Null));
    };
    if first == b'.' {
        // yaml.v3 hands anything starting with '.' to ParseFloat (".5").
        return Ok(go_float(text).map(Value::Float));
    }
    if !(first.is_ascii_digit() || first == b'+' || first == b'-') {
        return Ok(None);
    }
    if let Some(time) = parse_timestamp(text) {
        return Ok(Some(Value::Time(time)));
    }
    let plain = if text.contains('_') {
        std::borrow::Cow::Owned(text.replace('_', ""))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    match go_int(&plain) {
        GoInt::Signed(i) => return Ok(Some(Value::Int(i))),
        GoInt::Unsigned => return Err(ResolveError::UnsignedInteger),
        GoInt::NotAnInt => {}
    }
    if is_yaml_float(&plain) {
        if let Some(f) = go_float(&plain) {
            return Ok(Some(Value::Float(f)));
        }
    }
    Ok(None)
}

enum GoInt {
    Signed(i64),
    Unsigned,
    NotAnInt,
}

/// Go's `strconv.ParseInt(s, 0, 64)`, falling back to `ParseUint`: base prefixes `0x`, `0o`,
/// `0b`, and a bare leading `0` meaning octal.
fn go_int(text: &str) -> GoInt {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    // The prefix in either case, without a lowercased copy: `is_digit` and `from_str_radix`
    // take upper-case hex digits as they are.
    let prefix = |letter: u8| {
        let b = digits.as_bytes();
        b.len() >= 2 && b[0] == b'0' && b[1] | 0x20 == letter
    };
    let (radix, body) = if prefix(b'x') {
        (16, &digits[2..])
    } else if prefix(b'o') {
        (8, &digits[2..])
    } else if prefix(b'b') {
        (2, &digits[2..])
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    // from_str_radix would also take a second sign.
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return GoInt::NotAnInt;
    }
    let Ok(magnitude) = u64::from_str_radix(body, radix) else {
        return GoInt::NotAnInt;
    };
    if negative {
        match magnitude {
            m if m <= i64::MAX as u64 => GoInt::Signed(-(m as i64)),
            m if m == i64::MAX as u64 + 1 => GoInt::Signed(i64::MIN),
            _ => GoInt::NotAnInt,
        }
    } else if magnitude <= i64::MAX as u64 {
        GoInt::Signed(magnitude as i64)
    } else {
        GoInt::Unsigned
    }
}

/// yaml.v3's float pattern `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if matches!(bytes.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == bytes.len()
}

/// Go's `ParseFloat`, which rejects out-of-range literals instead of rounding them to ±Inf.
fn go_float(text: &str) -> Option<f64> {
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    text.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// yaml.v3's timestamps: exactly four digits then `-`, in one of the forms
/// `Y-M-DTh:m:s[.frac](Z|±hh:mm)` (also lowercase `t`), `Y-M-D h:m:s[.frac]` (UTC), `Y-M-D`.
/// Month, day, hour, minute and second take one or two digits.
pub(super) fn parse_timestamp(text: &str) -> Option<Timestamp> {
    let mut cursor = Cursor { text, at: 0 };
    let year = cursor.number(4, 4)?;
    cursor.expect(b'-')?;
    let month = cursor.number(1, 2)?;
    cursor.expect(b'-')?;
    let day = cursor.number(1, 2)?;
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let utc = FixedOffset::east_opt(0)?;
    let Some(separator) = cursor.next() else {
        return utc
            .from_local_datetime(&date.and_hms_opt(0, 0, 0)?)
            .single();
    };
    if !matches!(separator, b'T' | b't' | b' ') {
        return None;
    }
    let hour = cursor.number(1, 2)?;
    cursor.expect(b':')?;
    let minute = cursor.number(1, 2)?;
    cursor.expect(b':')?;
    let second = cursor.number(1, 2)?;
    let mut nanos = 0u32;
    if cursor.peek() == Some(b'.') {
        cursor.at += 1;
        let start = cursor.at;
        while cursor.peek().is_some_and(|b| b.is_ascii_digit()) {
            cursor.at += 1;
        }
        let fraction = &text[start..cursor.at];
        if fraction.is_empty() {
            return None;
        }
        // Digits beyond nanoseconds are truncated, as Go does.
        let kept = &fraction[..fraction.len().min(9)];
        nanos = kept.parse::<u32>().ok()? * 10u32.pow(9 - kept.len() as u32);
    }
    let offset = if separator == b' ' {
        utc
    } else {
        match cursor.next()? {
            b'Z' => utc,
            sign @ (b'+' | b'-') => {
                let hours = cursor.number(2, 2)?;
                cursor.expect(b':')?;
                let minutes = cursor.number(2, 2)?;
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let seconds = (hours * 3600 + minutes * 60) as i32;
                FixedOffset::east_opt(if sign == b'-' { -seconds } else { seconds })?
            }
            _ => return None,
        }
    };
    if cursor.at != text.len() {
        return None;
    }
    let time = date.and_hms_nano_opt(hour, minute, second, nanos)?;
    offset.from_local_datetime(&time).single()
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, wanted: u8) -> Option<()> {
        (self.next()? == wanted).then_some(())
    }

    /// Between `min` and `max` decimal digits.
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.at;
        while self.at - start < max && self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        if self.at - start < min {
            return None;
        }
        self.text[start..self.at].parse().ok()
    }
}

/// True when `text` can be written as a plain scalar and read back as the same string.
/// `in_flow` adds the flow indicators (`,[]{}`) to the forbidden characters.
pub(super) fn is_plain_safe(text: &str, in_flow: bool) -> bool {
    (!in_flow && is_plain_word(text)) || is_plain_safe_slow(text, in_flow)
}

/// [`is_plain_safe`] by the rules, without the fast path.
fn is_plain_safe_slow(text: &str, in_flow: bool) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    let last = text.chars().next_back().unwrap_or(first);
    if first.is_whitespace() || last.is_whitespace() || last == ':' {
        return false;
    }
    let second = text.chars().nth(1);
    let starts_badly = match first {
        '-' | '?' | ':' => match second {
            None => true,
            Some(c) => c == ' ' || c == '\t' || (in_flow && is_flow_indicator(c)),
        },
        ',' | '[' | ']' | '{' | '}' | '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%'
        | '@' | '`' => true,
        _ => false,
    };
    if starts_badly || text.starts_with("---") || text.starts_with("...") {
        return false;
    }
    if text.contains(": ") || text.contains(" #") || text.contains(":\t") || text.contains("\t#") {
        return false;
    }
    if text.chars().any(|c| {
        !is_printable(c)
            || matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
            || (in_flow && is_flow_indicator(c))
    }) {
        return false;
    }
    if in_flow && text.contains(':') {
        // `a:b` is fine in block context but ambiguous next to flow indicators; quote it.
        return false;
    }
    matches!(resolve_typed(text), Ok(None))
}

/// The fast path of [`is_plain_safe`] in block context, for texts such as `ENC[…]` strings,
/// URLs and identifiers: an ASCII letter, then only visible ASCII (no space or tab, so no `: `
/// or ` #`), not ending in `:`, and longer than the words yaml.v3 resolves to bools or null
/// (`FALSE` is the longest). A leading letter starts neither an indicator nor a number.
fn is_plain_word(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() > 5
        && bytes[0].is_ascii_alphabetic()
        && bytes[bytes.len() - 1] != b':'
        && bytes.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

fn is_flow_indicator(c: char) -> bool {
    matches!(c, ',' | '[' | ']' | '{' | '}')
}

/// YAML's printable set (c-printable), minus the byte order mark.
pub(super) fn is_printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}')
        || ('\u{A0}'..='\u{D7FF}').contains(&c)
        || (('\u{E000}'..='\u{FFFD}').contains(&c) && c != '\u{FEFF}')
        || ('\u{10000}'..='\u{10FFFF}').contains(&c)
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    #[test]
    fn plain_words_are_plain_safe_by_the_rules() {
        let samples = [
            "ENC[AES256_GCM,data:oYyi,iv:MyIDYbT718JRr11QtBkcj3Dwm4k1aCGZBVeZf0EyV8o=,tag:t5z2Z023Up0kxwCgw1gNxg==,type:str]",
            "postgres://user:bc8960a9@db-0.internal:5432/app",
            "abcdef", "a#b#cdef", "a'b\"cdef", "x---...", "value:x", "Falsey", "nulled", "TRUEST",
            "a{b}c[d]e", "a&b*c!d|e>f%g@h`i", "key_0:",
        ];
        for text in samples {
            if is_plain_word(text) {
                assert!(is_plain_safe_slow(text, false), "{text}");
            }
        }
        assert!(!is_plain_word("key_0:"));
        assert!(!is_plain_word("false"));
        assert!(!is_plain_word("a b c d e"));
    }
}
