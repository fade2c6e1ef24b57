//! `grpc-timeout`: at most 8 ASCII digits and a unit (`H`, `M`, `S`, `m`,
//! `u`, `n`), read from the request tonic builds (its
//! `Request::set_timeout`) and written, per attempt, for the server.

use std::time::Duration;

use http::HeaderValue;

/// The request header carrying a gRPC caller's remaining time.
pub(crate) const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// Reads a `grpc-timeout` value; anything else than 1 to 8 digits and a
/// unit is `None`.
pub(crate) fn parse(value: &[u8]) -> Option<Duration> {
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

/// Writes `remaining` in the finest unit whose count fits in 8 digits,
/// rounded down, so the server never believes it has more time than the
/// caller gives it.
pub(crate) fn format(remaining: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let (n, unit) = [
        (remaining.as_nanos(), b'n'),
        (remaining.as_micros(), b'u'),
        (remaining.as_millis(), b'm'),
        (u128::from(remaining.as_secs()), b'S'),
        (u128::from(remaining.as_secs() / 60), b'M'),
    ]
    .into_iter()
    .find(|(n, _)| *n <= MAX)
    .unwrap_or(((u128::from(remaining.as_secs() / 3600)).min(MAX), b'H'));
    let mut digits = itoa::Buffer::new();
    let mut value = Vec::with_capacity(9);
    value.extend_from_slice(digits.format(n).as_bytes());
    value.push(unit);
    HeaderValue::from_bytes(&value).unwrap_or_else(|_| HeaderValue::from_static("0n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_written_in_eight_digits_rounded_down_and_read_back() {
        for (remaining, expected) in [
            (Duration::from_millis(1500), "1500000u"),
            (Duration::from_nanos(99_999_999), "99999999n"),
            (Duration::from_secs(100), "100000m"),
            (Duration::from_secs(100_000_000), "1666666M"),
            (Duration::from_secs(u64::MAX), "99999999H"),
            (Duration::ZERO, "0n"),
        ] {
            let value = format(remaining);
            assert_eq!(value, expected);
            let back = parse(value.as_bytes()).unwrap();
            assert!(back <= remaining, "{remaining:?} read back as {back:?}");
        }
        for bad in [&b"123456789m"[..], b"-1m", b"1x", b"m", b"", b"1 m"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
