//! The client span of one call, `package.Service/Method`, with the RPC
//! semantic conventions' attributes, on the platform's [`CallSpan`] (the
//! SDK's own span, or a `tracing` span under another subscriber), as
//! platform-http's client span is.

use std::sync::{Arc, RwLock};

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanBuilder, SpanKind};
pub(crate) use platform_core::telemetry::call_span::CallSpan;
use platform_core::telemetry::sampling;

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

/// Starts the span of a call of `names`; returns it with the `tracing` span
/// to run the call in.
pub(crate) fn start(names: &RpcNames) -> (CallSpan, tracing::Span) {
    CallSpan::start(
        || {
            // Room for what the answer adds (server address and port, status
            // code, error type): the SDK keeps this vector as the span's.
            let mut attributes = Vec::with_capacity(7);
            attributes.push(KeyValue::new("rpc.system", "grpc"));
            attributes.extend(names.attributes());
            SpanBuilder::from_name(names.full.to_string())
                .with_kind(SpanKind::Client)
                .with_attributes(attributes)
        },
        || {
            tracing::info_span!(
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
            )
        },
        || {
            tracing::info_span!(
                target: sampling::UNSAMPLED_TARGET,
                "rpc.client.call",
                rpc.method = &*names.full,
            )
        },
    )
}

/// `server.address` and `server.port` of the endpoint that answered.
pub(crate) fn server(trace: &CallSpan, address: &str, port: u16) {
    trace.text("server.address", address);
    trace.integer("server.port", i64::from(port));
}

/// The call's end: `rpc.grpc.status_code`, an error status for the codes
/// the conventions count as the server's failure (or for no answer at all,
/// `error_type` given), and the span ended.
pub(crate) fn end(trace: &CallSpan, code: Code, error_type: Option<&'static str>) {
    trace.integer("rpc.grpc.status_code", i64::from(code.0));
    if let Some(error) = error_type.or_else(|| code.is_server_error().then(|| code.name())) {
        trace.error(error);
    }
    trace.end();
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
