//! W3C trace-context and baggage propagation over `http::HeaderMap`.
//!
//! The propagators are the ones chosen at init (`telemetry.tracing.propagators`
//! or `OTEL_PROPAGATORS`). Extraction never fails a request: a malformed
//! `traceparent` is ignored (the request starts a new trace, as the W3C spec
//! asks), logged at debug level and counted in
//! `platform.telemetry.propagation.invalid`.

use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapPropagator, text_map_propagator::FieldIter,
};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::self_metrics::{COUNTERS, add};

/// Whether the W3C trace-context propagator is active (a malformed header only
/// matters when it would have been read).
pub(crate) static TRACE_CONTEXT_ACTIVE: AtomicBool = AtomicBool::new(false);

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
const BAGGAGE: &str = "baggage";

/// Writes the context of the current `tracing` span into `headers` (for an
/// outgoing request).
pub fn inject(headers: &mut HeaderMap) {
    inject_context(&tracing::Span::current().context(), headers);
}

/// Writes `cx` into `headers`.
pub fn inject_context(cx: &Context, headers: &mut HeaderMap) {
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(cx, &mut HeaderInjector(headers))
    });
}

/// Reads the parent context from an incoming request's headers. Attach it to the
/// request span with [`OpenTelemetrySpanExt::set_parent`] before entering the span:
///
/// ```
/// use platform_telemetry::tracing_opentelemetry::OpenTelemetrySpanExt as _;
/// let headers = http::HeaderMap::new();
/// let span = tracing::info_span!("request");
/// let _ = span.set_parent(platform_telemetry::propagation::extract(&headers));
/// ```
pub fn extract(headers: &HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| {
        extract_with(p, headers, TRACE_CONTEXT_ACTIVE.load(Ordering::Relaxed))
    })
}

pub(crate) fn extract_with(
    propagator: &dyn TextMapPropagator,
    headers: &HeaderMap,
    check_traceparent: bool,
) -> Context {
    let cx = propagator.extract(&HeaderExtractor(headers));
    if !check_traceparent || !headers.contains_key(TRACEPARENT) {
        return cx;
    }
    // The SDK's parser is lenient (it takes a 31-digit trace id); the W3C
    // grammar is checked here so a broken upstream is noticed, not trusted.
    let well_formed = headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_well_formed_traceparent);
    if well_formed && cx.span().span_context().is_remote() {
        return cx;
    }
    add(&COUNTERS.traceparent_invalid, 1);
    tracing::debug!(
        target: "platform_telemetry::propagation",
        traceparent = ?headers.get(TRACEPARENT),
        "malformed traceparent ignored; starting a new trace"
    );
    // Keep the baggage, drop the parent.
    cx.with_remote_span_context(SpanContext::empty_context())
}

/// W3C Trace Context level 1: `version-traceid-parentid-flags`, lowercase hex,
/// ids not all zero, version `ff` forbidden, version `00` exactly 55 characters,
/// later versions may append `-...` fields.
fn is_well_formed_traceparent(value: &str) -> bool {
    let value = value.trim();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    let mut parts = value.splitn(5, '-');
    let (Some(version), Some(trace_id), Some(parent_id), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let rest = parts.next();
    hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && nonzero(trace_id)
        && hex(parent_id, 16)
        && nonzero(parent_id)
        && hex(flags, 2)
        && (rest.is_none() || version != "00")
}

/// The W3C trace-context propagator `init` installs: it reads headers as
/// the SDK's `TraceContextPropagator` does and writes the same headers, with
/// `traceparent` encoded by hand. It runs on every outgoing request, where
/// the SDK's `format!` of two ids was most of the cost of propagation.
#[derive(Debug, Default)]
pub struct TraceContextPropagator {
    sdk: opentelemetry_sdk::propagation::TraceContextPropagator,
}

impl TraceContextPropagator {
    /// The propagator.
    pub fn new() -> Self {
        Self::default()
    }
}

impl TextMapPropagator for TraceContextPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let span_context = span.span_context();
        if span_context.is_valid() {
            injector.set(TRACEPARENT, traceparent(span_context));
            // The SDK writes an empty `tracestate` too; W3C Trace Context
            // (3.3.1.1) asks vendors to avoid sending empty ones, and each
            // header is copied again by every layer of the HTTP client.
            let state = span_context.trace_state().header();
            if !state.is_empty() {
                injector.set(TRACESTATE, state);
            }
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        self.sdk.extract_with_context(cx, extractor)
    }

    fn fields(&self) -> FieldIter<'_> {
        self.sdk.fields()
    }
}

/// `00-<trace id>-<span id>-<flags>`, lowercase hex, only the sampled flag.
fn traceparent(span_context: &SpanContext) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    let flags = (span_context.trace_flags() & TraceFlags::SAMPLED).to_u8();
    let trace_id = span_context.trace_id().to_bytes();
    let span_id = span_context.span_id().to_bytes();
    let fields = [(3, &trace_id[..]), (36, &span_id[..]), (53, &[flags][..])];
    for (start, bytes) in fields {
        for (i, byte) in bytes.iter().enumerate() {
            out[start + 2 * i] = DIGITS[usize::from(byte >> 4)];
            out[start + 2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
        }
    }
    // ASCII throughout: the conversion cannot fail.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

/// [`Injector`] over an `http::HeaderMap`; values that are not valid header text are skipped.
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The names written on every request are known: no parsing for them.
        let name = match key {
            TRACEPARENT => Ok(HeaderName::from_static(TRACEPARENT)),
            TRACESTATE => Ok(HeaderName::from_static(TRACESTATE)),
            BAGGAGE => Ok(HeaderName::from_static(BAGGAGE)),
            other => HeaderName::from_bytes(other.as_bytes()),
        };
        // From the `String` itself: validated, not copied.
        if let (Ok(name), Ok(value)) = (name, HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

/// [`Extractor`] over an `http::HeaderMap`; non-text values read as absent.
#[derive(Debug)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::propagation::TextMapCompositePropagator;
    use opentelemetry::trace::{SpanId, TraceId, TraceState};
    use opentelemetry_sdk::propagation::BaggagePropagator;

    #[test]
    fn writes_what_the_sdk_writes() {
        let sdk = opentelemetry_sdk::propagation::TraceContextPropagator::new();
        let ours = TraceContextPropagator::new();
        for (flags, state) in [
            (TraceFlags::SAMPLED, TraceState::default()),
            (TraceFlags::default(), TraceState::default()),
            // Flags other than "sampled" are not propagated.
            (TraceFlags::new(0xff), TraceState::default()),
            (
                TraceFlags::SAMPLED,
                TraceState::from_key_value([("vendor", "x1")]).unwrap(),
            ),
        ] {
            let sc = SpanContext::new(
                TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128),
                SpanId::from(0x00f067aa0ba902b7_u64),
                flags,
                false,
                state,
            );
            let cx = Context::new().with_remote_span_context(sc);
            let (mut a, mut b) = (HeaderMap::new(), HeaderMap::new());
            sdk.inject_context(&cx, &mut HeaderInjector(&mut a));
            ours.inject_context(&cx, &mut HeaderInjector(&mut b));
            // The same, but for the empty `tracestate` the SDK sends.
            if a[TRACESTATE].is_empty() {
                a.remove(TRACESTATE);
            }
            assert_eq!(a, b);
        }
        let mut none = HeaderMap::new();
        ours.inject_context(&Context::new(), &mut HeaderInjector(&mut none));
        assert!(none.is_empty());
    }

    fn propagator() -> TextMapCompositePropagator {
        TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ])
    }

    fn invalid_count() -> u64 {
        COUNTERS.traceparent_invalid.load(Ordering::Relaxed)
    }

    #[test]
    fn a_valid_traceparent_becomes_the_remote_parent_and_round_trips() {
        let mut headers = HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        headers.insert("baggage", "tenant=acme".parse().unwrap());
        let cx = extract_with(&propagator(), &headers, true);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        use opentelemetry::baggage::BaggageExt;
        assert_eq!(
            cx.baggage().get("tenant").map(|v| v.to_string()),
            Some("acme".into())
        );

        let mut out = HeaderMap::new();
        propagator().inject_context(&cx, &mut HeaderInjector(&mut out));
        assert_eq!(out[TRACEPARENT], headers[TRACEPARENT]);
        assert_eq!(out["baggage"], "tenant=acme");
    }

    #[test]
    fn malformed_traceparents_start_a_new_trace_and_are_counted() {
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(TRACEPARENT, bad.parse().unwrap());
            let before = invalid_count();
            let cx = extract_with(&propagator(), &headers, true);
            assert!(!cx.span().span_context().is_valid(), "{bad}");
            assert!(invalid_count() > before, "{bad}");
        }
        // A later version may append fields.
        assert!(is_well_formed_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever"
        ));
        // Bytes that are not text at all.
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        let before = invalid_count();
        assert!(
            !extract_with(&propagator(), &headers, true)
                .span()
                .span_context()
                .is_valid()
        );
        assert!(invalid_count() > before);
    }
}
