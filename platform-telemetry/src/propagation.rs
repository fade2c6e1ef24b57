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
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::self_metrics::{COUNTERS, add};

/// Whether the W3C trace-context propagator is active (a malformed header only
/// matters when it would have been read).
pub(crate) static TRACE_CONTEXT_ACTIVE: AtomicBool = AtomicBool::new(false);

const TRACEPARENT: &str = "traceparent";

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

/// [`Injector`] over an `http::HeaderMap`; values that are not valid header text are skipped.
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
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
    use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

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
