//! Cost of telemetry on the request path, through the real `platform_telemetry::init`
//! pipeline: a span with five attributes, and a counter plus a histogram record,
//! each with the trace sampled and not sampled.
//!
//! The sampling decision comes from the remote parent (the default sampler is
//! parent-based), the way it does for a request that arrives with a
//! `traceparent`; so both cases run in one process against one initialised
//! pipeline. No OTLP endpoint is set: spans are recorded, nothing is sent.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use platform_telemetry::opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use platform_telemetry::opentelemetry::{Context, KeyValue, global};
use platform_telemetry::tracing_opentelemetry::OpenTelemetrySpanExt as _;
use platform_telemetry::{LogOutput, ServiceInfo, TelemetrySettings, tracing};

fn remote_parent(sampled: bool) -> Context {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        flags,
        true,
        TraceState::default(),
    ))
}

fn benches(c: &mut Criterion) {
    let mut settings = TelemetrySettings::default();
    settings.logging.output = LogOutput::Stderr;
    let _telemetry = platform_telemetry::init(&settings, &ServiceInfo::new("bench", "0")).unwrap();

    let mut spans = c.benchmark_group("span_5_attributes");
    for (name, sampled) in [("sampling_off", false), ("sampling_on", true)] {
        let parent = remote_parent(sampled);
        spans.bench_function(name, |b| {
            b.iter(|| {
                let span = tracing::info_span!(
                    "GET /orders/{id}",
                    http.request.method = "GET",
                    http.route = "/orders/{id}",
                    http.response.status_code = 200_i64,
                    server.address = "orders.internal",
                    url.scheme = "http",
                );
                let _ = span.set_parent(parent.clone());
                let _in = span.enter();
                black_box(&span);
            })
        });
    }
    spans.finish();

    let meter = global::meter("bench");
    let counter = meter.u64_counter("http.server.requests").build();
    let histogram = meter
        .f64_histogram("http.server.request.duration")
        .with_unit("s")
        .build();
    let attrs = [
        KeyValue::new("http.request.method", "GET"),
        KeyValue::new("http.response.status_code", 200_i64),
        KeyValue::new("http.route", "/orders/{id}"),
    ];
    let mut metrics = c.benchmark_group("counter_and_histogram");
    for (name, sampled) in [("sampling_off", false), ("sampling_on", true)] {
        let span = tracing::info_span!("request");
        let _ = span.set_parent(remote_parent(sampled));
        let _in = span.enter();
        metrics.bench_function(name, |b| {
            b.iter(|| {
                counter.add(1, black_box(&attrs));
                histogram.record(black_box(0.012), black_box(&attrs));
            })
        });
    }
    metrics.finish();
}

criterion_group!(telemetry, benches);
criterion_main!(telemetry);
