//! The span of one outgoing call, wherever it lives: what every client of
//! the platform (HTTP, gRPC) records on it and sends with each attempt.
//!
//! Under the platform's trace layer the span is built straight through the
//! OpenTelemetry SDK ([`call_span`](crate::sampling::call_span)), or not at
//! all when the sampler drops it, and `tracing` carries a plain span that
//! keeps log lines in context. Under any other subscriber it is a `tracing`
//! span that tracing-opentelemetry (or nothing) exports, as usual.

use http::HeaderMap;
use opentelemetry::trace::{SpanBuilder, Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::sampling::{self, CallTrace};

/// A call's span: what is recorded on it and what travels with each attempt.
#[derive(Debug)]
pub enum CallSpan {
    /// A `tracing` span (the current one inside the call) that
    /// tracing-opentelemetry exports, if anything does.
    Layer {
        /// The span; its fields are the attributes it may be given.
        span: tracing::Span,
        /// It is exported: events are worth building.
        recording: bool,
    },
    /// The call's own OpenTelemetry context: a span built directly, or the
    /// context of one the sampler dropped (not recording).
    Own {
        /// The context; its span is the call's.
        cx: Context,
        /// The span is recorded: events are worth building.
        recording: bool,
    },
}

impl CallSpan {
    /// Starts a call's span, with the `tracing` span to run the call in.
    /// `builder` makes the SDK's span when the platform's trace layer keeps
    /// it; `layer` the `tracing` span under any other subscriber (with a
    /// field for every attribute set later); `unsampled` the span that keeps
    /// log lines in context otherwise (under
    /// [`UNSAMPLED_TARGET`](sampling::UNSAMPLED_TARGET), never exported).
    pub fn start(
        builder: impl FnOnce() -> SpanBuilder,
        layer: impl FnOnce() -> tracing::Span,
        unsampled: impl FnOnce() -> tracing::Span,
    ) -> (Self, tracing::Span) {
        match sampling::call_span(builder) {
            CallTrace::Layer => {
                let span = layer();
                // Checked once per call: attempt events are built only for
                // a span that keeps them.
                let recording = !span.is_disabled() && span.context().span().is_recording();
                let call = CallSpan::Layer {
                    span: span.clone(),
                    recording,
                };
                (call, span)
            }
            CallTrace::Dropped(cx) | CallTrace::Direct(cx) => {
                let recording = cx.span().is_recording();
                (CallSpan::Own { cx, recording }, unsampled())
            }
        }
    }

    /// Whether the span is exported: events are worth building.
    pub fn recording(&self) -> bool {
        match self {
            CallSpan::Layer { recording, .. } | CallSpan::Own { recording, .. } => *recording,
        }
    }

    /// Writes the trace context (and baggage) an attempt carries.
    pub fn inject(&self, headers: &mut HeaderMap) {
        match self {
            CallSpan::Layer { span, .. } => {
                crate::propagation::inject_context(&span.context(), headers);
            }
            CallSpan::Own { cx, .. } => crate::propagation::inject_context(cx, headers),
        }
    }

    /// An integer attribute (a field of the `layer` span).
    pub fn integer(&self, key: &'static str, value: i64) {
        // As an i64: tracing-opentelemetry turns unsigned fields into strings.
        self.attribute(|span| span.record(key, value), || KeyValue::new(key, value));
    }

    /// A text attribute (a field of the `layer` span).
    pub fn text(&self, key: &'static str, value: &str) {
        self.attribute(
            |span| span.record(key, value),
            || KeyValue::new(key, value.to_owned()),
        );
    }

    /// Records an attribute: on the `tracing` span with `layer`, on a span
    /// of its own that is recording as `own` makes it.
    fn attribute(
        &self,
        layer: impl FnOnce(&tracing::Span) -> &tracing::Span,
        own: impl FnOnce() -> KeyValue,
    ) {
        match self {
            CallSpan::Layer { span, .. } => {
                layer(span);
            }
            CallSpan::Own {
                cx,
                recording: true,
            } => cx.span().set_attribute(own()),
            CallSpan::Own { .. } => {}
        }
    }

    /// `error.type` and an error status.
    pub fn error(&self, error_type: &'static str) {
        match self {
            CallSpan::Layer { span, .. } => {
                span.record("error.type", error_type);
                span.record("otel.status_code", "ERROR");
            }
            CallSpan::Own {
                cx,
                recording: true,
            } => {
                let span = cx.span();
                span.set_attribute(KeyValue::new("error.type", error_type));
                span.set_status(Status::error(""));
            }
            CallSpan::Own { .. } => {}
        }
    }

    /// An event on the span, if it is recording.
    pub fn event(&self, name: &'static str, attributes: Vec<KeyValue>) {
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
    pub fn end(&self) {
        if let CallSpan::Own {
            cx,
            recording: true,
        } = self
        {
            cx.span().end();
        }
    }
}
