//! Scalar values and their canonical text, the bytes sops encrypts and hashes (spec §2.3).

use chrono::{DateTime, FixedOffset, SecondsFormat, Timelike};

pub type Timestamp = DateTime<FixedOffset>;

/// A typed scalar, as sops types them. Its `Debug` shows the type and size, never the value.
#[derive(Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Bytes that are not UTF-8: binary files, YAML `!!binary`, legacy `type:bytes`.
    Bytes(Vec<u8>),
    Time(Timestamp),
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => f.write_str("Null"),
            Value::Str(s) if s.starts_with("ENC[") => write!(f, "Str({s})"),
            other => write!(
                f,
                "{}(<{} bytes>)",
                other.type_name(),
                other.canonical_bytes().len()
            ),
        }
    }
}

impl Value {
    /// The `type:` name sops writes into `ENC[…]` for this value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null | Value::Str(_) | Value::Bytes(_) => "str",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Time(_) => "time",
        }
    }

    /// The canonical plaintext sops encrypts and feeds to the MAC.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        match self {
            Value::Null => Vec::new(),
            Value::Bool(true) => b"True".to_vec(),
            Value::Bool(false) => b"False".to_vec(),
            Value::Int(i) => i.to_string().into_bytes(),
            Value::Float(f) => format_float(*f).into_bytes(),
            Value::Str(s) => s.as_bytes().to_vec(),
            Value::Bytes(b) => b.clone(),
            Value::Time(t) => format_time(t).into_bytes(),
        }
    }

    /// True for the empty string, which sops never encrypts.
    pub fn is_empty_string(&self) -> bool {
        matches!(self, Value::Str(s) if s.is_empty())
            || matches!(self, Value::Bytes(b) if b.is_empty())
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: shortest round-trip digits, never an exponent.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{f}")
    }
}

/// Go's `time.Time.MarshalText`: RFC 3339 with nanoseconds, trailing zeros dropped, `Z` for UTC.
pub fn format_time(t: &Timestamp) -> String {
    let format = if t.nanosecond() == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::Nanos
    };
    let mut text = t.to_rfc3339_opts(format, true);
    if format == SecondsFormat::Nanos {
        // "…:05.100000000Z" → "…:05.1Z"
        let zone_at = text.rfind(['Z', '+', '-']).unwrap_or(text.len());
        let (head, zone) = text.split_at(zone_at);
        let head = head.trim_end_matches('0').trim_end_matches('.');
        text = format!("{head}{zone}");
    }
    text
}

/// RFC 3339 (fractional seconds and any offset allowed), as sops' `time.Parse(time.RFC3339, …)`.
pub fn parse_time(text: &str) -> Option<Timestamp> {
    DateTime::parse_from_rfc3339(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_like_go() {
        for (f, want) in [
            (1.0, "1"),
            (1.5, "1.5"),
            (1e21, "1000000000000000000000"),
            (1e-7, "0.0000001"),
            (-0.0, "-0"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (1234567890.0, "1234567890"),
        ] {
            assert_eq!(format_float(f), want, "{f}");
        }
    }

    #[test]
    fn times_format_like_go() {
        for (input, want) in [
            ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
            ("2006-01-02T15:04:05+07:06", "2006-01-02T15:04:05+07:06"),
            (
                "2001-12-14T21:59:43.10-05:00",
                "2001-12-14T21:59:43.1-05:00",
            ),
            (
                "2001-12-14T21:59:43.123456789+00:00",
                "2001-12-14T21:59:43.123456789Z",
            ),
        ] {
            assert_eq!(format_time(&parse_time(input).unwrap()), want);
        }
    }

    #[test]
    fn bools_are_capitalised() {
        assert_eq!(Value::Bool(true).canonical_bytes(), b"True");
        assert_eq!(Value::Bool(false).canonical_bytes(), b"False");
    }
}
