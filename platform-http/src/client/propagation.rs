//! What travels with every attempt: the trace context and baggage (the
//! telemetry crate's propagators) and the remaining deadline.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::server::DEADLINE_HEADER;

/// Injects the trace context of the current `tracing` span (the client
/// span of this call) and its baggage into `headers`.
pub(crate) fn inject_trace_context(headers: &mut HeaderMap) {
    platform_core::telemetry::propagation::inject(headers);
}

/// Injects `cx` (a call's context when it has no span of its own to take it from).
pub(crate) fn inject_context(cx: &opentelemetry::Context, headers: &mut HeaderMap) {
    platform_core::telemetry::propagation::inject_context(cx, headers);
}

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
