//! What travels with every attempt: the trace context and baggage (through
//! the global OpenTelemetry propagator) and the remaining deadline.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::server::DEADLINE_HEADER;

struct Injector<'a>(&'a mut HeaderMap);

impl opentelemetry::propagation::Injector for Injector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // A propagator producing an invalid header is a bug elsewhere; the
        // request goes out without it rather than failing.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Injects the current trace context and baggage into `headers`.
pub(crate) fn inject_trace_context(headers: &mut HeaderMap) {
    let cx = opentelemetry::Context::current();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut Injector(headers));
    });
}

/// Sets the deadline header: whole milliseconds left, rounded down so the
/// next hop never believes it has more time than it has.
pub(crate) fn set_deadline(headers: &mut HeaderMap, remaining: Duration) {
    let ms = u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX);
    headers.insert(DEADLINE_HEADER, HeaderValue::from(ms));
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
