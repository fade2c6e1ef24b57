//! The client span of one call, wherever it lives.
//!
//! Under the platform's trace layer the span is built straight through the
//! OpenTelemetry SDK ([`sampling::call_span`]), or not at all when the
//! sampler drops it, and `tracing` carries a plain span that keeps log lines
//! in context. Under any other subscriber it is a `tracing` span that
//! tracing-opentelemetry (or nothing) exports, as usual.

use http::HeaderMap;
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};
use platform_core::telemetry::sampling::{self, CallTrace};
use platform_core::telemetry::tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::endpoints::Endpoint;
use super::propagation::{inject_context, inject_trace_context};

/// The call's span: what is recorded on it and what travels with each attempt.
pub(crate) enum CallSpan {
    /// A `tracing` span (the current one inside the call) that
    /// tracing-opentelemetry exports, if anything does.
    Layer {
        span: tracing::Span,
        recording: bool,
    },
    /// The call's own OpenTelemetry context: a span built directly, or the
    /// context of one the sampler dropped (not recording).
    Own { cx: Context, recording: bool },
}

impl CallSpan {
    /// Starts the span of a call with `method` (its semantic-convention
    /// value) to `single`, the target's one endpoint if it has only one;
    /// returns it with the `tracing` span to run the call in.
    pub(crate) fn start(method: &'static str, single: Option<&Endpoint>) -> (Self, tracing::Span) {
        let trace = sampling::call_span(|| {
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
        });
        match trace {
            CallTrace::Layer => {
                // Fields kept few: each costs on every call while tracing is on.
                let span = tracing::info_span!(
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
                );
                // Checked once per call: attempt events are built only for
                // a span that keeps them.
                let recording = !span.is_disabled() && span.context().span().is_recording();
                (
                    CallSpan::Layer {
                        span: span.clone(),
                        recording,
                    },
                    span,
                )
            }
            CallTrace::Dropped(cx) | CallTrace::Direct(cx) => {
                let recording = cx.span().is_recording();
                // Never exported: it keeps log lines in context.
                let span = tracing::info_span!(
                    target: sampling::UNSAMPLED_TARGET,
                    "http.client.request",
                    http.request.method = method,
                );
                (CallSpan::Own { cx, recording }, span)
            }
        }
    }

    /// Whether the span is exported: events are worth building.
    pub(crate) fn recording(&self) -> bool {
        match self {
            CallSpan::Layer { recording, .. } | CallSpan::Own { recording, .. } => *recording,
        }
    }

    /// Writes the trace context (and baggage) an attempt carries.
    pub(crate) fn inject(&self, headers: &mut HeaderMap) {
        match self {
            // The `tracing` span is the current one inside the call.
            CallSpan::Layer { .. } => inject_trace_context(headers),
            CallSpan::Own { cx, .. } => inject_context(cx, headers),
        }
    }

    /// `http.response.status_code`.
    pub(crate) fn status_code(&self, status: http::StatusCode) {
        self.integer("http.response.status_code", status.as_u16().into());
    }

    /// `http.request.resend_count`, for a call made in more than one attempt.
    pub(crate) fn attempts(&self, attempts: u32) {
        if attempts > 1 {
            self.integer("http.request.resend_count", (attempts - 1).into());
        }
    }

    /// An integer attribute (declared as a field of the `tracing` span).
    fn integer(&self, key: &'static str, value: i64) {
        match self {
            // As an i64: tracing-opentelemetry turns unsigned fields into strings.
            CallSpan::Layer { span, .. } => {
                span.record(key, value);
            }
            CallSpan::Own { cx, recording } => {
                if *recording {
                    cx.span().set_attribute(KeyValue::new(key, value));
                }
            }
        }
    }

    /// `error.type` and an error status.
    pub(crate) fn error(&self, error_type: &'static str) {
        match self {
            CallSpan::Layer { span, .. } => {
                span.record("error.type", error_type);
                span.record("otel.status_code", "ERROR");
            }
            CallSpan::Own { cx, recording } => {
                if *recording {
                    let span = cx.span();
                    span.set_attribute(KeyValue::new("error.type", error_type));
                    span.set_status(Status::error(""));
                }
            }
        }
    }

    /// An event on the span, if it is recording.
    pub(crate) fn event(&self, name: &'static str, attributes: Vec<KeyValue>) {
        match self {
            CallSpan::Layer {
                span,
                recording: true,
            } => span.add_event(name, attributes),
            CallSpan::Own {
                cx,
                recording: true,
            } => cx.span().add_event(name, attributes),
            _ => {}
        }
    }

    /// Ends a span of its own now (a `tracing` span ends when it closes).
    pub(crate) fn end(&self) {
        if let CallSpan::Own {
            cx,
            recording: true,
        } = self
        {
            cx.span().end();
        }
    }
}
