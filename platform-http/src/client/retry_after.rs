//! `Retry-After` (RFC 9110 §10.2.3): a delay in seconds or an HTTP-date.
//!
//! The value comes from the server and can be anything. A malformed one is
//! ignored (the client's own backoff applies) and counted; it never fails
//! the call. All three date formats recipients must accept are read
//! (IMF-fixdate, RFC 850, asctime) by `httpdate`, which also refuses a
//! weekday that does not match the date; a date in the past means "now".

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// What a `Retry-After` header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryAfter {
    /// No header.
    Absent,
    /// Wait this long.
    Delay(Duration),
    /// Present but unreadable: ignored.
    Malformed,
}

impl RetryAfter {
    pub(crate) fn from_headers(headers: &HeaderMap, now: SystemTime) -> Self {
        let Some(value) = headers.get(http::header::RETRY_AFTER) else {
            return Self::Absent;
        };
        let Ok(text) = value.to_str() else {
            return Self::Malformed;
        };
        parse(text.trim(), now).map_or(Self::Malformed, Self::Delay)
    }
}

fn parse(text: &str, now: SystemTime) -> Option<Duration> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // All digits but beyond u64: the server wants us gone for good.
        return Some(text.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn headers(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_bytes(value).unwrap(),
        );
        h
    }

    // 1994-11-06T08:49:37Z
    const DATE: u64 = 784_111_777;

    #[test]
    fn seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(DATE - 10);
        let read = |v: &[u8]| RetryAfter::from_headers(&headers(v), now);
        assert_eq!(read(b"3"), RetryAfter::Delay(Duration::from_secs(3)));
        assert_eq!(read(b" 0 "), RetryAfter::Delay(Duration::ZERO));
        for date in [
            &b"Sun, 06 Nov 1994 08:49:37 GMT"[..],
            b"Sunday, 06-Nov-94 08:49:37 GMT",
            b"Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                read(date),
                RetryAfter::Delay(Duration::from_secs(10)),
                "{date:?}"
            );
        }
        // In the past: retry now.
        let later = UNIX_EPOCH + Duration::from_secs(DATE + 100);
        assert_eq!(
            RetryAfter::from_headers(&headers(b"Sun, 06 Nov 1994 08:49:37 GMT"), later),
            RetryAfter::Delay(Duration::ZERO)
        );
        assert_eq!(
            RetryAfter::from_headers(&HeaderMap::new(), now),
            RetryAfter::Absent
        );
        assert_eq!(
            read(b"99999999999999999999999"),
            RetryAfter::Delay(Duration::MAX)
        );
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        let now = SystemTime::now();
        for garbage in [
            &b""[..],
            b"-1",
            b"1.5",
            b"soon",
            b"Sun, 32 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 25:49:37 GMT",
            b"Sun, 06 Nov 1994 08:49 GMT",
            b"Sun, 06 Nov 1994 08:49:37:01 GMT",
            b"Sun, 06 Nov 1994 08:49:37 PST",
            b"Sun, 06 Nov 0194 08:49:37 GMT",
            b"\xff\xfe",
            b"1, 2, 3, 4, 5, GMT",
        ] {
            assert_eq!(
                RetryAfter::from_headers(&headers(garbage), now),
                RetryAfter::Malformed,
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn a_weekday_that_does_not_match_the_date_is_malformed() {
        // 6 November 1994 was a Sunday.
        let now = UNIX_EPOCH + Duration::from_secs(DATE - 10);
        for wrong in [
            &b"Mon, 06 Nov 1994 08:49:37 GMT"[..],
            b"Monday, 06-Nov-94 08:49:37 GMT",
            b"Mon Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                RetryAfter::from_headers(&headers(wrong), now),
                RetryAfter::Malformed,
                "{wrong:?}"
            );
        }
    }
}
