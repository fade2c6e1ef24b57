//! The client span of one HTTP call: its names and attributes, on the
//! platform's [`CallSpan`] (the SDK's own span, or a `tracing` span under
//! another subscriber).

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanBuilder, SpanKind};
pub(crate) use platform_core::telemetry::call_span::CallSpan;
use platform_core::telemetry::sampling;

use super::endpoints::Endpoint;

/// Starts the span of a call with `method` (its semantic-convention value)
/// to `single`, the target's one endpoint if it has only one; returns it
/// with the `tracing` span to run the call in.
pub(crate) fn start(method: &'static str, single: Option<&Endpoint>) -> (CallSpan, tracing::Span) {
    CallSpan::start(
        || {
            // Room for what the end adds (status code, resend count): the
            // SDK keeps this vector as the span's, and growing it is a copy.
            let mut attributes = Vec::with_capacity(5);
            attributes.push(KeyValue::new("http.request.method", method));
            if let Some(endpoint) = single {
                attributes.push(KeyValue::new("server.address", endpoint.address.clone()));
                attributes.push(KeyValue::new("server.port", i64::from(endpoint.port)));
            }
            SpanBuilder::from_name(method)
                .with_kind(SpanKind::Client)
                .with_attributes(attributes)
        },
        // Fields kept few: each costs on every call while tracing is on.
        || {
            tracing::info_span!(
                "http.client.request",
                otel.name = method,
                otel.kind = "client",
                http.request.method = method,
                server.address = single.map(|e| &*e.address),
                server.port = single.map(|e| i64::from(e.port)),
                http.response.status_code = tracing::field::Empty,
                http.request.resend_count = tracing::field::Empty,
                error.type = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            )
        },
        || {
            tracing::info_span!(
                target: sampling::UNSAMPLED_TARGET,
                "http.client.request",
                http.request.method = method,
            )
        },
    )
}

/// `http.response.status_code`, and `http.request.resend_count` for a call
/// made in more than one attempt.
pub(crate) fn answered(trace: &CallSpan, status: http::StatusCode, attempts: u32) {
    trace.integer("http.response.status_code", status.as_u16().into());
    resent(trace, attempts);
}

/// `http.request.resend_count`, for a call made in more than one attempt.
pub(crate) fn resent(trace: &CallSpan, attempts: u32) {
    if attempts > 1 {
        trace.integer("http.request.resend_count", (attempts - 1).into());
    }
}
