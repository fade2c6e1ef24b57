//! gRPC on the wire, for the server layer and platform-grpc's client alike:
//! status codes (`grpc-status`) by number and name, the `grpc-timeout`
//! header read and written, and telling a gRPC call by its content type.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};

/// Whether a request is a gRPC call: its content type says so
/// (`application/grpc`, with or without a `+proto` or other suffix).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"))
}

/// A gRPC status code (0 to 16; anything else a server sends is kept as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Code(pub u16);

/// The names of gRPC's status codes, by code.
const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The header (or trailer) carrying a call's status code.
pub const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

impl Code {
    /// OK (0).
    pub const OK: Code = Code(0);
    /// CANCELLED (1).
    pub const CANCELLED: Code = Code(1);
    /// UNKNOWN (2).
    pub const UNKNOWN: Code = Code(2);
    /// DEADLINE_EXCEEDED (4).
    pub const DEADLINE_EXCEEDED: Code = Code(4);
    /// INTERNAL (13).
    pub const INTERNAL: Code = Code(13);
    /// UNAVAILABLE (14).
    pub const UNAVAILABLE: Code = Code(14);

    /// A code by name (any case) or number, as settings give it.
    pub fn parse(text: &str) -> Option<Code> {
        let text = text.trim();
        if let Ok(n) = text.parse::<u16>() {
            return (usize::from(n) < NAMES.len()).then_some(Code(n));
        }
        NAMES
            .iter()
            .position(|name| name.eq_ignore_ascii_case(text))
            .and_then(|i| u16::try_from(i).ok())
            .map(Code)
    }

    /// The code's name (`error.type`); one gRPC does not define is `_OTHER`.
    pub fn name(self) -> &'static str {
        NAMES.get(usize::from(self.0)).copied().unwrap_or("_OTHER")
    }

    /// The code in `grpc-status`, if there is one that parses.
    pub fn in_headers(headers: &HeaderMap) -> Option<Code> {
        let value = headers.get(GRPC_STATUS)?;
        std::str::from_utf8(value.as_bytes())
            .ok()?
            .parse()
            .ok()
            .map(Code)
    }

    /// The code a gRPC client reads from an HTTP status without a
    /// `grpc-status` (gRPC's "HTTP to gRPC status code mapping").
    pub fn of_http_status(status: http::StatusCode) -> Code {
        match status.as_u16() {
            400 => Code::INTERNAL,
            401 => Code(16),
            403 => Code(7),
            404 => Code(12),
            429 | 502..=504 => Code::UNAVAILABLE,
            _ => Code::UNKNOWN,
        }
    }

    /// Whether a call that ended with this code failed on the server's
    /// side, as the gRPC semantic conventions count them.
    pub fn is_server_error(self) -> bool {
        matches!(self.0, 2 | 4 | 12 | 13 | 14 | 15)
    }
}

/// The request header carrying a gRPC caller's remaining time.
pub const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// Reads a `grpc-timeout` value; anything else than 1 to 8 digits and a
/// unit is `None`.
pub fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Eight digits fit a u64 in any unit, hours included.
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Writes `remaining` in the coarsest unit that still counts at least a
/// thousand of it (within 0.1% of the time left: `10000m` rather than
/// `10000000u`, three characters fewer to compress on every call), in at
/// most 8 digits, rounded down, so the server never believes it has more
/// time than the caller gives it.
pub fn format_timeout(remaining: Duration) -> HeaderValue {
    const MAX: u64 = 99_999_999;
    // In u64 (a u128 division per unit costs more than the rest): past
    // u64 nanoseconds (584 years) the count saturates, and only hours fit.
    let secs = remaining.as_secs();
    let sub = u64::from(remaining.subsec_nanos());
    let nanos = secs.saturating_mul(1_000_000_000).saturating_add(sub);
    let units = [
        (nanos, b'n'),
        (
            secs.saturating_mul(1_000_000).saturating_add(sub / 1_000),
            b'u',
        ),
        (
            secs.saturating_mul(1_000).saturating_add(sub / 1_000_000),
            b'm',
        ),
        (secs, b'S'),
        (secs / 60, b'M'),
        (secs / 3600, b'H'),
    ];
    let (n, unit) = units
        .iter()
        .rev()
        .find(|(n, _)| (1000..=MAX).contains(n))
        .or_else(|| units.iter().find(|(n, _)| *n <= MAX))
        .copied()
        .unwrap_or((MAX, b'H'));
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n).as_bytes();
    // At most 8 digits and the unit, on the stack: one copy, into the value.
    let mut text = [0u8; 9];
    text[..digits.len()].copy_from_slice(digits);
    text[digits.len()] = unit;
    HeaderValue::from_bytes(&text[..=digits.len()])
        .unwrap_or_else(|_| HeaderValue::from_static("0n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_by_name_or_number() {
        assert_eq!(Code::parse("UNAVAILABLE"), Some(Code::UNAVAILABLE));
        assert_eq!(Code::parse("unavailable"), Some(Code::UNAVAILABLE));
        assert_eq!(Code::parse("14"), Some(Code::UNAVAILABLE));
        assert_eq!(Code::parse("17"), None);
        assert_eq!(Code::parse("UNAVAILABLEX"), None);
        assert_eq!(Code(4).name(), "DEADLINE_EXCEEDED");
        assert_eq!(Code(99).name(), "_OTHER");
    }

    #[test]
    fn timeouts_are_written_short_in_eight_digits_rounded_down_and_read_back() {
        for (remaining, expected) in [
            (Duration::from_millis(1500), "1500m"),
            (Duration::from_secs(10), "10000m"),
            (Duration::from_nanos(99_999_999), "99999u"),
            (Duration::from_nanos(999), "999n"),
            (Duration::from_secs(100), "100000m"),
            (Duration::from_secs(100_000_000), "27777H"),
            (Duration::from_secs(u64::MAX), "99999999H"),
            (Duration::ZERO, "0n"),
        ] {
            let value = format_timeout(remaining);
            assert_eq!(value, expected);
            let back = parse_timeout(value.as_bytes()).unwrap();
            assert!(back <= remaining, "{remaining:?} read back as {back:?}");
        }
        for bad in [&b"123456789m"[..], b"-1m", b"1x", b"m", b"", b"1 m"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }
}
