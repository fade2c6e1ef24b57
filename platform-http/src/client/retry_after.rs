//! `Retry-After` (RFC 9110 §10.2.3): a delay in seconds or an HTTP-date.
//!
//! The value comes from the server and can be anything. A malformed one is
//! ignored (the client's own backoff applies) and counted; it never fails
//! the call. All three date formats recipients must accept are read
//! (IMF-fixdate, RFC 850, asctime); a date in the past means "now".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    let at = http_date(text)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An HTTP-date in any of the three formats of RFC 9110 §5.6.7.
fn http_date(text: &str) -> Option<SystemTime> {
    let tokens: Vec<&str> = text
        .split([' ', ',', '-'])
        .filter(|t| !t.is_empty())
        .collect();
    let (day, month, year, time) = match tokens.as_slice() {
        // IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT"
        [weekday, day, month, year, time, "GMT"] if is_alpha(weekday) => {
            (*day, *month, *year, *time)
        }
        // asctime "Sun Nov  6 08:49:37 1994"
        [weekday, month, day, time, year] if is_alpha(weekday) => (*day, *month, *year, *time),
        _ => return None,
    };
    let day: u32 = digits(day, 1, 2)?;
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let year: i64 = match year.len() {
        // RFC 850 two-digit years: 70..99 are 19xx (RFC 9110 asks to read
        // them as the most recent past century matching; good enough here).
        2 => {
            let y: i64 = digits(year, 2, 2)?;
            if y >= 70 { 1900 + y } else { 2000 + y }
        }
        4 => digits(year, 4, 4)?,
        _ => return None,
    };
    let mut hms = time.split(':');
    let (h, m, s) = (hms.next()?, hms.next()?, hms.next()?);
    if hms.next().is_some() {
        return None;
    }
    let (h, m, s): (u64, u64, u64) = (digits(h, 2, 2)?, digits(m, 2, 2)?, digits(s, 2, 2)?);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 || year < 1970 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = u64::try_from(days).ok()? * 86400 + h * 3600 + m * 60 + s;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn is_alpha(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic())
}

fn digits<T: std::str::FromStr>(s: &str, min: usize, max: usize) -> Option<T> {
    ((min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1994, 11, 6) * 86400, 784_080_000);
    }
}
