//! The client span of one call, `package.Service/Method`, with the RPC
//! semantic conventions' attributes, wherever it lives: built straight
//! through the OpenTelemetry SDK under the platform's trace layer (or not
//! at all when the sampler drops it), a `tracing` span under any other
//! subscriber; the same two ways platform-http's client span is made.

use std::sync::{Arc, RwLock};

use http::HeaderMap;
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};
use platform_core::telemetry::sampling::{self, CallTrace};
use platform_core::telemetry::tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::codes::Code;

/// `package.Service/Method` and its parts, made once per method (see
/// [`NameTable`]): a call's span and metric attributes share them.
#[derive(Debug)]
pub(crate) struct RpcNames {
    /// The request path, as the table looks it up.
    path: Box<str>,
    pub(crate) full: Arc<str>,
    service: Arc<str>,
    method: Arc<str>,
}

impl RpcNames {
    /// The names in a request path (`/package.Service/Method`); a path of
    /// another shape is named as it is, with no service or method.
    pub(crate) fn of(path: &str) -> Self {
        let full = path.strip_prefix('/').unwrap_or(path);
        let (service, method) = full.split_once('/').unwrap_or((full, ""));
        RpcNames {
            path: path.into(),
            full: Arc::from(full),
            service: Arc::from(service),
            method: Arc::from(method),
        }
    }

    /// `rpc.service`.
    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    /// `rpc.method`.
    pub(crate) fn method(&self) -> &str {
        &self.method
    }

    /// `rpc.service` and `rpc.method` as attributes (shared, not copied).
    pub(crate) fn attributes(&self) -> [KeyValue; 2] {
        [
            KeyValue::new("rpc.service", Arc::clone(&self.service)),
            KeyValue::new("rpc.method", Arc::clone(&self.method)),
        ]
    }
}

/// The names of the methods a channel has called, made once each. Bounded:
/// past [`MAX_NAMES`] methods (a caller making paths up), names are made
/// per call and not kept.
#[derive(Debug, Default)]
pub(crate) struct NameTable(RwLock<Vec<Arc<RpcNames>>>);

const MAX_NAMES: usize = 256;

impl NameTable {
    /// The names of the method at `path`.
    pub(crate) fn of(&self, path: &str) -> Arc<RpcNames> {
        let known = self.0.read().unwrap_or_else(|p| p.into_inner());
        if let Some(names) = known.iter().find(|n| &*n.path == path) {
            return Arc::clone(names);
        }
        drop(known);
        let names = Arc::new(RpcNames::of(path));
        let mut known = self.0.write().unwrap_or_else(|p| p.into_inner());
        if known.len() < MAX_NAMES && !known.iter().any(|n| &*n.path == path) {
            known.push(Arc::clone(&names));
        }
        names
    }
}

/// The call's span: what is recorded on it and what travels with each attempt.
pub(crate) enum CallSpan {
    /// A `tracing` span that tracing-opentelemetry exports, if anything does.
    Layer {
        span: tracing::Span,
        recording: bool,
    },
    /// The call's own OpenTelemetry context: a span built directly, or the
    /// context of one the sampler dropped (not recording).
    Own { cx: Context, recording: bool },
}

impl CallSpan {
    /// Starts the span of a call of `names`; returns it with the `tracing`
    /// span to run the call in.
    pub(crate) fn start(names: &RpcNames) -> (Self, tracing::Span) {
        let trace = sampling::call_span(|| {
            // Room for what the answer adds (server address and port, status
            // code, error type): the SDK keeps this vector as the span's.
            let mut attributes = Vec::with_capacity(7);
            attributes.push(KeyValue::new("rpc.system", "grpc"));
            attributes.extend(names.attributes());
            SpanBuilder::from_name(names.full.to_string())
                .with_kind(SpanKind::Client)
                .with_attributes(attributes)
        });
        match trace {
            CallTrace::Layer => {
                let span = tracing::info_span!(
                    "rpc.client.call",
                    otel.name = &*names.full,
                    otel.kind = "client",
                    rpc.system = "grpc",
                    rpc.service = names.service(),
                    rpc.method = names.method(),
                    rpc.grpc.status_code = tracing::field::Empty,
                    server.address = tracing::field::Empty,
                    server.port = tracing::field::Empty,
                    error.type = tracing::field::Empty,
                    otel.status_code = tracing::field::Empty,
                );
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
                    "rpc.client.call",
                    rpc.method = &*names.full,
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
            CallSpan::Layer { span, .. } => {
                platform_core::telemetry::propagation::inject_context(&span.context(), headers);
            }
            CallSpan::Own { cx, .. } => {
                platform_core::telemetry::propagation::inject_context(cx, headers);
            }
        }
    }

    /// `server.address` and `server.port` of the endpoint that answered.
    pub(crate) fn server(&self, address: &str, port: u16) {
        match self {
            CallSpan::Layer { span, .. } => {
                span.record("server.address", address);
                span.record("server.port", i64::from(port));
            }
            CallSpan::Own {
                cx,
                recording: true,
            } => {
                let span = cx.span();
                span.set_attribute(KeyValue::new("server.address", address.to_owned()));
                span.set_attribute(KeyValue::new("server.port", i64::from(port)));
            }
            CallSpan::Own { .. } => {}
        }
    }

    /// The call's end: `rpc.grpc.status_code`, an error status for the
    /// codes the conventions count as the server's failure (or for no
    /// answer at all, `error_type` given), and the span ended.
    pub(crate) fn end(&self, code: Code, error_type: Option<&'static str>) {
        let error = error_type.or_else(|| code.is_server_error().then(|| code.name()));
        match self {
            // As an i64: tracing-opentelemetry turns unsigned fields into strings.
            CallSpan::Layer { span, .. } => {
                span.record("rpc.grpc.status_code", i64::from(code.0));
                if let Some(error) = error {
                    span.record("error.type", error);
                    span.record("otel.status_code", "ERROR");
                }
            }
            CallSpan::Own { cx, recording } => {
                if *recording {
                    let span = cx.span();
                    span.set_attribute(KeyValue::new("rpc.grpc.status_code", i64::from(code.0)));
                    if let Some(error) = error {
                        span.set_attribute(KeyValue::new("error.type", error));
                        span.set_status(Status::error(""));
                    }
                    span.end();
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_path() {
        let names = RpcNames::of("/inventory.v1.Stock/Reserve");
        assert_eq!(&*names.full, "inventory.v1.Stock/Reserve");
        assert_eq!(names.service(), "inventory.v1.Stock");
        assert_eq!(names.method(), "Reserve");
        let odd = RpcNames::of("/nothing");
        assert_eq!((odd.service(), odd.method()), ("nothing", ""));
    }
}
