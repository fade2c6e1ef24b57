//! Sizes in human form: `512`, `64KiB`, `10MiB`, `1GB`.
//!
//! In a [`#[settings]`](crate::settings) struct, `#[setting(size)]` on a
//! `u64` field says the same as the two attributes here.
//!
//! ```
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Limits {
//!     /// Largest request body accepted.
//!     #[serde(with = "platform_config::size")]
//!     #[schemars(with = "String")]
//!     max_body: u64,
//! }
//!
//! let l: Limits = serde_json::from_str(r#"{"max_body": "10MiB"}"#).unwrap();
//! assert_eq!(l.max_body, 10 * 1024 * 1024);
//! ```

use std::fmt;

use serde::{Deserializer, Serializer, de};

/// Why a size could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: {reason} (expected e.g. 512, 64KiB, 10MiB, 1GB)")]
pub struct ParseSizeError {
    /// The text that was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a byte count: a whole number with an optional unit (`B`, `KB`, `KiB`, `MB`, `MiB`,
/// `GB`, `GiB`, `TB`, `TiB`; case-insensitive; `k`, `m`, `g` mean the binary units).
pub fn parse(input: &str) -> Result<u64, ParseSizeError> {
    let err = |reason| ParseSizeError {
        input: input.to_owned(),
        reason,
    };
    let text = input.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return Err(err("must start with a whole number"));
    }
    let number: u64 = text[..digits].parse().map_err(|_| err("too large"))?;
    let unit = text[digits..].trim().to_ascii_lowercase();
    let multiplier: u64 = match unit.as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => return Err(err("unknown unit")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| err("too large"))
}

/// Writes a size in the largest binary unit that keeps it exact: `10485760` → `10MiB`.
pub fn format(bytes: u64) -> String {
    for (unit, size) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// Serde `serialize_with` half of the `with` module.
pub fn serialize<S: Serializer>(bytes: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*bytes))
}

/// Serde `deserialize_with` half of the `with` module. Bare integers are bytes.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    struct SizeVisitor;
    impl de::Visitor<'_> for SizeVisitor {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a size such as 512, 64KiB or 10MiB")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            parse(v).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }
    }
    deserializer.deserialize_any(SizeVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse("512").unwrap(), 512);
        assert_eq!(parse("64KiB").unwrap(), 65_536);
        assert_eq!(parse("10MiB").unwrap(), 10 << 20);
        assert_eq!(parse("10 mb").unwrap(), 10_000_000);
        assert_eq!(parse("1G").unwrap(), 1 << 30);
        assert_eq!(format(10 << 20), "10MiB");
        assert_eq!(format(1000), "1000B");
        for bad in [
            "",
            "MiB",
            "10 parsecs",
            "-1",
            "99999999999999999999",
            "20000000TiB",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
