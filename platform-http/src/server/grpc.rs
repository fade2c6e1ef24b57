//! gRPC requests in the server layer.
//!
//! A tonic service served through [`ServerLayer`](super::ServerLayer) gets
//! the same layer as an axum route, spoken in gRPC's terms: the layer
//! recognises a request by its `content-type` (`application/grpc`, with or
//! without a `+proto` or other suffix) and then
//!
//! - takes the caller's deadline from `grpc-timeout` (at most 8 ASCII
//!   digits and a unit, `H`, `M`, `S`, `m`, `u` or `n`); a malformed value
//!   is ignored as a malformed `x-request-timeout-ms` is (logged, counted,
//!   the server's default applies);
//! - answers what it answers itself as gRPC does, with a *trailers-only*
//!   response (HTTP 200, `grpc-status` in the headers): DEADLINE_EXCEEDED
//!   (4) for a deadline that passed, INTERNAL (13) for a handler's panic,
//!   UNAVAILABLE (14) over the concurrency limit, with the overloaded marker
//!   and `grpc-retry-pushback-ms` (gRPC's `Retry-After`, proposal A6);
//! - holds a response stream to the caller's deadline too: one still going
//!   when it passes ends with DEADLINE_EXCEEDED trailers (the server's own
//!   `server.request_timeout` bounds the handler only, as for HTTP, so a
//!   stream the caller wants open for long is not cut);
//! - names the span `package.Service/Method` and records
//!   `rpc.server.call.duration` instead of `http.server.request.duration`,
//!   both with the RPC attributes and the call's status code, read from the
//!   trailers (or the trailers-only headers) when the response ends.
//!
//! # Which semantic conventions
//!
//! The RPC conventions moved while this was written: v1.37 has
//! `rpc.server.duration` in milliseconds with `rpc.system`, `rpc.service`,
//! `rpc.method` and `rpc.grpc.status_code`; later drafts renamed the metric
//! `rpc.server.call.duration`, in seconds, with the HTTP metric's bucket
//! boundaries, and are renaming the attributes too. The metric here is
//! `rpc.server.call.duration` in seconds, so that it reads like
//! `http.server.request.duration` beside it (same unit, same buckets) and
//! carries the name the conventions are settling on; the attributes are the
//! v1.37 set the dashboards of the field know (`rpc.system = grpc`,
//! `rpc.service`, `rpc.method`, `rpc.grpc.status_code` as an integer), plus
//! `error.type` (the status code's name) for the codes the gRPC conventions
//! count as server errors. When the RPC conventions are stable the
//! attributes follow them in one change.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use http_body::Frame;

use super::deadline::HeaderDeadline;
use crate::grpc::Code;

/// The request header carrying a gRPC caller's remaining time.
pub(crate) const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";
use crate::grpc::{GRPC_STATUS, GRPC_TIMEOUT};
const GRPC_MESSAGE: http::HeaderName = http::HeaderName::from_static("grpc-message");
/// gRPC's pushback (proposal A6): how long a client should wait before it
/// retries, in milliseconds.
pub(crate) const GRPC_PUSHBACK: http::HeaderName =
    http::HeaderName::from_static("grpc-retry-pushback-ms");

/// The status codes the layer answers with or records itself.
pub(crate) const CANCELLED: u16 = 1;
pub(crate) const UNKNOWN: u16 = 2;
pub(crate) const DEADLINE_EXCEEDED: u16 = 4;
pub(crate) const INTERNAL: u16 = 13;
pub(crate) const UNAVAILABLE: u16 = 14;

pub(crate) use crate::grpc::is_grpc;

/// Whether a call that ended with `code` failed on the server's side, as
/// the gRPC semantic conventions count them (a caller's mistake, such as
/// NOT_FOUND or INVALID_ARGUMENT, is not the server's error).
pub(crate) fn is_server_error(code: u16) -> bool {
    Code(code).is_server_error()
}

/// The name of a status code (`error.type`); a code gRPC does not define
/// is `_OTHER`.
pub(crate) fn code_name(code: u16) -> &'static str {
    Code(code).name()
}

/// The status code in `grpc-status`, if there is one that parses.
pub(crate) fn status_in(headers: &HeaderMap) -> Option<u16> {
    Code::in_headers(headers).map(|code| code.0)
}

/// The status code a gRPC client reads from an HTTP status without a
/// `grpc-status` (gRPC's "HTTP to gRPC status code mapping").
pub(crate) fn code_of_http_status(status: http::StatusCode) -> u16 {
    Code::of_http_status(status).0
}

/// Reads `grpc-timeout`: at most 8 ASCII digits and a unit. Anything else
/// (a ninth digit, a sign, a space, another unit) is
/// [`HeaderDeadline::Invalid`], never a panic.
pub(crate) fn timeout_in(headers: &HeaderMap) -> HeaderDeadline {
    let Some(value) = headers.get(GRPC_TIMEOUT) else {
        return HeaderDeadline::Absent;
    };
    crate::grpc::parse_timeout(value.as_bytes())
        .map_or(HeaderDeadline::Invalid, HeaderDeadline::Remaining)
}

/// A trailers-only answer: HTTP 200 with the call's status in the headers
/// and no body, which is how gRPC answers a call that fails before any
/// message.
pub(crate) fn trailers_only(code: u16, message: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(GRPC_STATUS, HeaderValue::from(code));
    // Only plain ASCII messages are given here: no percent-encoding needed.
    headers.insert(GRPC_MESSAGE, HeaderValue::from_static(message));
    response
}

/// The names of an RPC, taken from its path (`/package.Service/Method`)
/// once it is interned: slices of it, no copies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RpcNames {
    /// `package.Service/Method`: the span's name.
    pub(crate) full: &'static str,
    /// `rpc.service`.
    pub(crate) service: &'static str,
    /// `rpc.method`.
    pub(crate) method: &'static str,
}

impl RpcNames {
    /// The names in `path`, when it has the shape of a gRPC method.
    pub(crate) fn of(path: &'static str) -> Option<Self> {
        let full = path.strip_prefix('/')?;
        let (service, method) = full.split_once('/')?;
        (!service.is_empty() && !method.is_empty() && !method.contains('/')).then_some(RpcNames {
            full,
            service,
            method,
        })
    }
}

/// A response body that tells `on_end` the call's status code when it
/// ends: from the trailers, UNKNOWN when it ends without them (or fails),
/// CANCELLED when it is dropped before its end (the client went away).
///
/// It also holds the call to its deadline: a stream still going when the
/// deadline passes is ended there with DEADLINE_EXCEEDED trailers (the
/// handler's stream is dropped), as the deadline covers the whole call.
/// The timer is made only when the stream first waits: a unary answer,
/// whose message and trailers are ready together, never needs one.
pub(crate) struct ObservedBody<F: FnOnce(u16)> {
    /// `None` once the deadline ended the stream.
    inner: Option<Body>,
    on_end: Option<F>,
    deadline: Option<tokio::time::Instant>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<F: FnOnce(u16)> ObservedBody<F> {
    pub(crate) fn new(inner: Body, deadline: Option<tokio::time::Instant>, on_end: F) -> Self {
        ObservedBody {
            inner: Some(inner),
            on_end: Some(on_end),
            deadline,
            timer: None,
        }
    }

    fn end(&mut self, code: u16) {
        if let Some(on_end) = self.on_end.take() {
            on_end(code);
        }
    }

    /// Whether the deadline has passed (registering the timer to wake the
    /// task when it does, the first time the stream waits).
    fn deadline_passed(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.deadline else {
            return false;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        timer.as_mut().poll(cx).is_ready()
    }
}

impl<F: FnOnce(u16) + Unpin> http_body::Body for ObservedBody<F> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(polled) => polled,
            Poll::Pending if this.deadline_passed(cx) => {
                this.inner = None;
                this.end(DEADLINE_EXCEEDED);
                let mut trailers = HeaderMap::new();
                trailers.insert(GRPC_STATUS, HeaderValue::from(DEADLINE_EXCEEDED));
                trailers.insert(GRPC_MESSAGE, HeaderValue::from_static("deadline exceeded"));
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            Poll::Pending => return Poll::Pending,
        };
        match &polled {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.end(status_in(trailers).unwrap_or(UNKNOWN));
                }
            }
            Some(Err(_)) | None => this.end(UNKNOWN),
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), Body::size_hint)
    }
}

impl<F: FnOnce(u16)> Drop for ObservedBody<F> {
    fn drop(&mut self) {
        self.end(CANCELLED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn timeout(value: &[u8]) -> HeaderDeadline {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_bytes(value).unwrap());
        timeout_in(&headers)
    }

    #[test]
    fn grpc_timeouts_parse_in_every_unit_or_are_invalid() {
        assert_eq!(timeout_in(&HeaderMap::new()), HeaderDeadline::Absent);
        let cases: [(&[u8], Duration); 8] = [
            (b"1H", Duration::from_secs(3600)),
            (b"2M", Duration::from_secs(120)),
            (b"3S", Duration::from_secs(3)),
            (b"250m", Duration::from_millis(250)),
            (b"7u", Duration::from_micros(7)),
            (b"99999999n", Duration::from_nanos(99_999_999)),
            (b"0m", Duration::ZERO),
            (b"99999999H", Duration::from_secs(99_999_999 * 3600)),
        ];
        for (value, expected) in cases {
            assert_eq!(
                timeout(value),
                HeaderDeadline::Remaining(expected),
                "{value:?}"
            );
        }
        // Nine digits, no digits, signs, fractions, a lowercase or unknown
        // unit, spaces, nothing at all.
        let text = "123456789S|10|S|-1S|+1S|1.5S|10s|10 S| 10S|10x|";
        let not_utf8 = &b"\xff\xfeS"[..];
        for garbage in text.split('|').map(str::as_bytes).chain([not_utf8]) {
            assert_eq!(timeout(garbage), HeaderDeadline::Invalid, "{garbage:?}");
        }
    }

    #[test]
    fn rpc_names_come_from_a_method_path_only() {
        let names = RpcNames::of("/grpc.health.v1.Health/Check").unwrap();
        assert_eq!(
            (names.full, names.service, names.method),
            (
                "grpc.health.v1.Health/Check",
                "grpc.health.v1.Health",
                "Check"
            )
        );
        for path in ["/", "/only", "//Method", "/Service/", "/a/b/c", "no/slash"] {
            assert!(RpcNames::of(path).is_none(), "{path}");
        }
    }

    #[test]
    fn statuses_and_their_names() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(DEADLINE_EXCEEDED), "DEADLINE_EXCEEDED");
        assert_eq!(code_name(16), "UNAUTHENTICATED");
        assert_eq!(code_name(17), "_OTHER");
        let response = trailers_only(INTERNAL, "boom");
        assert_eq!(status_in(response.headers()), Some(INTERNAL));
        assert_eq!(response.status(), http::StatusCode::OK);
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_STATUS, HeaderValue::from_static("x"));
        assert_eq!(status_in(&headers), None);
        assert!(is_server_error(UNAVAILABLE) && !is_server_error(5) && !is_server_error(0));
        assert_eq!(code_of_http_status(http::StatusCode::NOT_FOUND), 12);
        assert_eq!(code_of_http_status(http::StatusCode::IM_A_TEAPOT), UNKNOWN);
    }
}
