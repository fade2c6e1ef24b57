//! Durations in human form: `250ms`, `5s`, `1m30s`, `2h`.
//!
//! A [`#[settings]`](crate::settings) struct reads and writes every
//! `Duration` and `Option<Duration>` field this way by itself. By hand, on a
//! `std::time::Duration` field of a serde type:
//!
//! ```
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
//! struct Timeouts {
//!     /// How long one attempt may take.
//!     #[serde(with = "platform_config::duration")]
//!     #[schemars(with = "String")]
//!     attempt: Duration,
//! }
//!
//! let t: Timeouts = serde_json::from_str(r#"{"attempt": "1m30s"}"#).unwrap();
//! assert_eq!(t.attempt, Duration::from_secs(90));
//! assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"attempt":"1m30s"}"#);
//! ```
//!
//! (`#[schemars(with = "String")]` tells the schema, and so the printed
//! defaults and the environment mapping, that the value is written as text.)

use std::fmt;
use std::time::Duration;

use serde::{Deserializer, Serializer, de};

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {reason} (expected e.g. 250ms, 5s, 1m30s; units ns, us, ms, s, m, h, d)"
)]
pub struct ParseDurationError {
    /// The text that was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses `250ms`, `5s`, `1m30s`, `1.5s`, `2h`, `0`. Whitespace between parts is allowed.
pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
    let err = |reason| ParseDurationError {
        input: input.to_owned(),
        reason,
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(err("empty"));
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(err("a number must come before each unit"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| err("not a number"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic() && c != 'µ')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per_unit: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" | "sec" | "secs" => 1e9,
            "m" | "min" | "mins" => 60e9,
            "h" | "hr" | "hrs" => 3_600e9,
            "d" | "day" | "days" => 86_400e9,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        let nanos = number * nanos_per_unit;
        if !nanos.is_finite() || nanos > u64::MAX as f64 {
            return Err(err("too large"));
        }
        total = total
            .checked_add(Duration::from_nanos(nanos.round() as u64))
            .ok_or_else(|| err("too large"))?;
    }
    Ok(total)
}

/// Writes a duration in the largest units that keep it exact: `90s` → `1m30s`.
pub fn format(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_owned();
    }
    let mut nanos = duration.as_nanos();
    let mut out = String::new();
    const UNITS: [(&str, u128); 7] = [
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    for (unit, size) in UNITS {
        if nanos >= size {
            out.push_str(&format!("{}{unit}", nanos / size));
            nanos %= size;
        }
    }
    out
}

/// Serde `serialize_with` half of the `with` module.
pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*duration))
}

/// Serde `deserialize_with` half of the `with` module.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_str(DurationVisitor)
}

struct DurationVisitor;

impl de::Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as 250ms, 5s or 1m30s")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        // A bare zero is unambiguous; any other bare number is not (seconds? millis?).
        if v == 0 {
            Ok(Duration::ZERO)
        } else {
            Err(E::invalid_type(de::Unexpected::Unsigned(v), &self))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        if v == 0 {
            Ok(Duration::ZERO)
        } else {
            Err(E::invalid_type(de::Unexpected::Signed(v), &self))
        }
    }
}

/// The same for `Option<Duration>` fields: `#[serde(with = "platform_config::duration::option")]`.
pub mod option {
    use super::*;

    /// Serde `serialize_with` half.
    pub fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(d) => serializer.serialize_some(&format(*d)),
            None => serializer.serialize_none(),
        }
    }

    /// Serde `deserialize_with` half.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        struct OptionVisitor;
        impl<'de> de::Visitor<'de> for OptionVisitor {
            type Value = Option<Duration>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 250ms, 5s or 1m30s, or nothing")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                super::deserialize(d).map(Some)
            }
        }
        deserializer.deserialize_option(OptionVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_people_write() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1m 30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("10us").unwrap(), Duration::from_micros(10));
    }

    #[test]
    fn rejects_what_is_ambiguous_or_broken() {
        for bad in ["", "5", "s", "5 parsecs", "-5s", "1e400s", "5s3", "..s"] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.input, bad);
            assert!(e.to_string().contains("expected e.g."), "{e}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for d in [
            Duration::from_millis(250),
            Duration::from_secs(90),
            Duration::from_secs(86_400 + 1),
            Duration::from_nanos(1_000_001),
        ] {
            assert_eq!(parse(&format(d)).unwrap(), d, "{}", format(d));
        }
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
