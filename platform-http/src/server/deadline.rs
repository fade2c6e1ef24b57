//! Deadline propagation, server side: the caller's remaining time becomes the
//! handler's deadline.
//!
//! A client that has 800 ms left sends `x-request-timeout-ms: 800`. The
//! server layer ([`ServerLayer`](super::ServerLayer)) reads it, answers `504 Gateway Timeout` at once when nothing is left (the
//! caller has given up, so any work would be wasted), and otherwise runs the
//! handler inside [`Deadline::scope`], so every resilient call the handler
//! makes inherits the rest of the caller's time instead of starting a fresh
//! budget of its own. That is gRPC's `grpc-timeout` (and Finagle's deadline
//! context) carried over HTTP; a relative timeout rather than an absolute
//! time, so the two hosts' clocks need not agree.
//!
//! When the caller sent no header the deadline is `server.request_timeout`;
//! a caller never gets more than that either (a huge value is clamped to it).
//! A handler still running when the deadline passes is dropped and the
//! caller gets a 504: nobody waits for its answer any more.
//!
//! The header comes from outside and can be anything: a value that is not a
//! plain non-negative integer is ignored (the default applies), logged at
//! debug level and counted in `platform.http.server.deadline.header` with
//! `outcome = invalid` (and `header`, the header's name); clamped and
//! expired deadlines are counted there too. A gRPC call's deadline comes from
//! `grpc-timeout` instead, read and counted the same way (see `grpc.rs`).

use std::time::Duration;

use http::{HeaderMap, Response, StatusCode};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use platform_core::resilience::Deadline;

/// The request header carrying the caller's remaining time, in whole
/// milliseconds (a non-negative decimal integer, e.g. `x-request-timeout-ms: 750`).
pub const DEADLINE_HEADER: &str = "x-request-timeout-ms";

/// What a deadline header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderDeadline {
    /// No header: the server's default applies.
    Absent,
    /// A usable remaining time (zero means already expired).
    Remaining(Duration),
    /// A value that is not a non-negative integer of milliseconds: ignored.
    Invalid,
}

impl HeaderDeadline {
    /// Reads [`DEADLINE_HEADER`] from `headers`. Never fails: garbage is
    /// [`HeaderDeadline::Invalid`], a number too large for a `u64` of
    /// milliseconds is the largest duration (and gets clamped by the caller).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        const NAME: http::HeaderName = http::HeaderName::from_static(DEADLINE_HEADER);
        let Some(value) = headers.get(NAME) else {
            return Self::Absent;
        };
        let Ok(text) = value.to_str() else {
            return Self::Invalid;
        };
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Self::Invalid;
        }
        match text.parse::<u64>() {
            Ok(ms) => Self::Remaining(Duration::from_millis(ms)),
            // All digits but too long for u64: a huge deadline.
            Err(_) => Self::Remaining(Duration::MAX),
        }
    }
}

#[derive(Debug, Clone)]
struct Instruments {
    header: Counter<u64>,
}

/// The deadline of each request: the caller's, read from [`DEADLINE_HEADER`],
/// or `server.request_timeout`, which also caps what a caller asks. The
/// server layer answers 504 at once when it has expired, and runs the
/// handler inside it otherwise (answering 504 if the handler outlives it).
#[derive(Debug, Clone)]
pub(crate) struct Deadlines {
    max: Duration,
    instruments: Instruments,
}

impl Deadlines {
    /// Deadlines whose default (and largest) is `request_timeout`.
    pub(crate) fn new(request_timeout: Duration, meter: &opentelemetry::metrics::Meter) -> Self {
        let header = meter
            .u64_counter("platform.http.server.deadline.header")
            .with_description(
                "Deadline headers that were invalid (ignored), clamped to server.request_timeout, or already expired.",
            )
            .build();
        Deadlines {
            max: request_timeout,
            instruments: Instruments { header },
        }
    }

    /// The deadline for a request with these headers that arrived at `now`,
    /// or `None` when the caller's time is already up. `header` says whether
    /// the headers may hold [`DEADLINE_HEADER`] (see `propagation::present`).
    pub(crate) fn deadline_for(
        &self,
        headers: &HeaderMap,
        header: bool,
        now: tokio::time::Instant,
    ) -> Option<Deadline> {
        let read = if header {
            HeaderDeadline::from_headers(headers)
        } else {
            HeaderDeadline::Absent
        };
        self.deadline_from(read, DEADLINE_HEADER, headers, now)
    }

    /// [`deadline_for`](Self::deadline_for) a gRPC call, whose caller's
    /// time is in `grpc-timeout`; `read` is what that header said.
    pub(crate) fn grpc_deadline_for(
        &self,
        read: HeaderDeadline,
        headers: &HeaderMap,
        now: tokio::time::Instant,
    ) -> Option<Deadline> {
        self.deadline_from(read, super::grpc::GRPC_TIMEOUT_HEADER, headers, now)
    }

    /// The deadline `read` from the header `name` gives.
    fn deadline_from(
        &self,
        read: HeaderDeadline,
        name: &'static str,
        headers: &HeaderMap,
        now: tokio::time::Instant,
    ) -> Option<Deadline> {
        let count = |outcome: &'static str| {
            self.instruments.header.add(
                1,
                &[
                    KeyValue::new("outcome", outcome),
                    KeyValue::new("header", name),
                ],
            );
        };
        let remaining = match read {
            HeaderDeadline::Absent => self.max,
            HeaderDeadline::Invalid => {
                count("invalid");
                tracing::debug!(
                    header = name,
                    value = ?headers.get(name),
                    "ignoring a malformed deadline header"
                );
                self.max
            }
            HeaderDeadline::Remaining(d) if d.is_zero() => {
                count("expired");
                return None;
            }
            HeaderDeadline::Remaining(d) if d > self.max => {
                count("clamped");
                self.max
            }
            HeaderDeadline::Remaining(d) => d,
        };
        Some(Deadline::after_from(now, remaining))
    }
}

pub(crate) fn gateway_timeout(message: &'static str) -> Response<axum::body::Body> {
    let mut response = Response::new(axum::body::Body::from(message));
    *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            DEADLINE_HEADER,
            http::HeaderValue::from_bytes(value).unwrap(),
        );
        h
    }

    #[test]
    fn header_values_parse_or_are_ignored() {
        assert_eq!(
            HeaderDeadline::from_headers(&HeaderMap::new()),
            HeaderDeadline::Absent
        );
        assert_eq!(
            HeaderDeadline::from_headers(&headers(b"750")),
            HeaderDeadline::Remaining(Duration::from_millis(750))
        );
        assert_eq!(
            HeaderDeadline::from_headers(&headers(b" 0 ")),
            HeaderDeadline::Remaining(Duration::ZERO)
        );
        for garbage in [&b"-5"[..], b"1.5", b"soon", b"", b"1e9", b"+7", b"\xff\xfe"] {
            assert_eq!(
                HeaderDeadline::from_headers(&headers(garbage)),
                HeaderDeadline::Invalid,
                "{garbage:?}"
            );
        }
        assert_eq!(
            HeaderDeadline::from_headers(&headers(b"99999999999999999999999999")),
            HeaderDeadline::Remaining(Duration::MAX)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_are_capped_by_the_server_default() {
        let layer = Deadlines::new(
            Duration::from_secs(30),
            &opentelemetry::global::meter(crate::semconv::SCOPE),
        );
        let left = |h: &HeaderMap| {
            layer
                .deadline_for(h, true, tokio::time::Instant::now())
                .map(|d| d.remaining())
        };
        assert_eq!(left(&HeaderMap::new()), Some(Duration::from_secs(30)));
        assert_eq!(left(&headers(b"250")), Some(Duration::from_millis(250)));
        assert_eq!(
            left(&headers(b"99999999999999999999999999")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(left(&headers(b"-1")), Some(Duration::from_secs(30)));
        assert_eq!(left(&headers(b"0")), None);
    }
}
