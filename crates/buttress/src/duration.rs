//! Human-readable durations, as written in configuration: `"250ms"`, `"2s"`,
//! `"1.5s"`, `"2m"`, `"1h"`, `"100us"`, `"0"`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::duration::{format, parse};
//!
//! assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
//! assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
//! assert_eq!(format(Duration::from_secs(120)), "2m");
//! assert!(parse("fast").is_err());
//! ```

use std::fmt;
use std::time::Duration;

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

impl fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration {:?}: {} (expected a number and a unit: ns, us, ms, s, m, h; e.g. \"250ms\")",
            self.input, self.reason
        )
    }
}

impl std::error::Error for ParseDurationError {}

const UNITS: [(&str, f64); 7] = [
    ("ns", 1e-9),
    ("us", 1e-6),
    ("µs", 1e-6),
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
];

/// Parses a duration such as `"250ms"` or `"1.5s"`; a bare `"0"` is zero.
pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
    let err = |reason| ParseDurationError {
        input: input.to_owned(),
        reason,
    };
    let s = input.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| err("missing unit"))?;
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(err("missing number"));
    }
    let value: f64 = number.parse().map_err(|_| err("not a number"))?;
    let scale = UNITS
        .iter()
        .find(|(u, _)| *u == unit.trim())
        .map(|(_, scale)| *scale)
        .ok_or_else(|| err("unknown unit"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| err("out of range"))
}

/// Formats a duration in the largest unit that keeps it whole (`"2m"`, `"250ms"`).
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    for (unit, per) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if nanos % per == 0 {
            return format!("{}{unit}", nanos / per);
        }
    }
    format!("{nanos}ns")
}

/// Serde helpers for `Duration` and `Option<Duration>` fields written as
/// human-readable strings.
#[cfg(feature = "serde")]
pub mod serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes a duration as a human-readable string.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*d))
    }

    /// Deserializes a duration from a human-readable string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        super::parse(&s).map_err(serde::de::Error::custom)
    }

    /// The same for `Option<Duration>` (absent or `null` is `None`).
    pub mod option {
        use super::*;

        /// Serializes an optional duration.
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_some(&super::super::format(*d)),
                None => s.serialize_none(),
            }
        }

        /// Deserializes an optional duration.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            let s = Option::<std::borrow::Cow<'de, str>>::deserialize(d)?;
            s.map(|s| super::super::parse(&s).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        for (s, d) in [
            ("10ns", Duration::from_nanos(10)),
            ("10us", Duration::from_micros(10)),
            ("10ms", Duration::from_millis(10)),
            ("10s", Duration::from_secs(10)),
            (" 2m ", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("0.25s", Duration::from_millis(250)),
            ("0", Duration::ZERO),
        ] {
            assert_eq!(parse(s), Ok(d), "{s}");
        }
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for s in [
            "",
            "ms",
            "10",
            "10 parsecs",
            "1e3s",
            "-1s",
            "1.2.3s",
            "99999999999999999999999h",
        ] {
            let e = parse(s).unwrap_err();
            assert!(e.to_string().contains("invalid duration"), "{s}: {e}");
        }
    }

    #[test]
    fn format_round_trips() {
        for d in [
            Duration::from_millis(250),
            Duration::from_secs(90),
            Duration::from_nanos(7),
            Duration::from_secs(7200),
            Duration::ZERO,
        ] {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
