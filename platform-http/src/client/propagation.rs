//! What travels with every attempt besides the trace context (the call's
//! span writes that): the remaining deadline.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::server::DEADLINE_HEADER;

/// Sets the deadline header: whole milliseconds left, rounded down so the
/// next hop never believes it has more time than it has.
pub(crate) fn set_deadline(headers: &mut HeaderMap, remaining: Duration) {
    let ms = u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX);
    // Digits are a valid header value; one allocation where `From<u64>` makes two.
    let mut digits = itoa::Buffer::new();
    let value = HeaderValue::from_bytes(digits.format(ms).as_bytes())
        .unwrap_or_else(|_| HeaderValue::from(ms));
    // A `HeaderName` made once: a `&str` name is parsed again on every insert.
    const NAME: HeaderName = HeaderName::from_static(DEADLINE_HEADER);
    headers.insert(NAME, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_header_rounds_down() {
        let mut h = HeaderMap::new();
        set_deadline(&mut h, Duration::from_micros(1999));
        assert_eq!(h[DEADLINE_HEADER], "1");
        set_deadline(&mut h, Duration::MAX);
        assert_eq!(h[DEADLINE_HEADER], u64::MAX.to_string().as_str());
    }
}
