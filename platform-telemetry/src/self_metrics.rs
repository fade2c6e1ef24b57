//! Telemetry reporting on itself: spans and log lines dropped, exports failed,
//! malformed `traceparent`, `tracestate` and `baggage` headers.
//!
//! The counts live in process-wide atomics so the hot paths (a span ending, a
//! log line written) pay one relaxed add and never touch the metrics SDK; the
//! meter reads them through observable counters at collection time. Names follow
//! the OpenTelemetry semantic conventions for SDK self-monitoring
//! (`otel.sdk.processor.span.processed`, `otel.sdk.exporter.span.exported`, with
//! `error.type` on failures) where they exist.

use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Meter, ObservableCounter};

/// Counters shared by the processors, exporters, log writer and propagation.
#[derive(Debug)]
pub(crate) struct SelfCounters {
    pub(crate) spans_dropped: AtomicU64,
    pub(crate) spans_exported: AtomicU64,
    pub(crate) spans_export_failed: AtomicU64,
    pub(crate) span_export_failures: AtomicU64,
    pub(crate) metric_export_failures: AtomicU64,
    pub(crate) logs_written: AtomicU64,
    pub(crate) logs_dropped: AtomicU64,
    pub(crate) traceparent_invalid: AtomicU64,
    pub(crate) tracestate_invalid: AtomicU64,
    pub(crate) baggage_invalid: AtomicU64,
}

pub(crate) static COUNTERS: SelfCounters = SelfCounters {
    spans_dropped: AtomicU64::new(0),
    spans_exported: AtomicU64::new(0),
    spans_export_failed: AtomicU64::new(0),
    span_export_failures: AtomicU64::new(0),
    metric_export_failures: AtomicU64::new(0),
    logs_written: AtomicU64::new(0),
    logs_dropped: AtomicU64::new(0),
    traceparent_invalid: AtomicU64::new(0),
    tracestate_invalid: AtomicU64::new(0),
    baggage_invalid: AtomicU64::new(0),
};

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A snapshot of the self-monitoring counters, for tests and health reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SelfMetrics {
    /// Spans dropped because the export queue was full.
    pub spans_dropped: u64,
    /// Spans handed to the exporter and accepted.
    pub spans_exported: u64,
    /// Spans handed to the exporter in a call that failed.
    pub spans_export_failed: u64,
    /// Failed metric export calls.
    pub metric_export_failures: u64,
    /// Log lines dropped because the writer queue was full.
    pub logs_dropped: u64,
    /// Incoming `traceparent` headers that were malformed or repeated (a new
    /// trace was started).
    pub traceparent_invalid: u64,
    /// Incoming `tracestate` headers discarded: malformed, over 32 members,
    /// or without a valid `traceparent`.
    pub tracestate_invalid: u64,
    /// Incoming `baggage` headers of which members were dropped: malformed,
    /// or past the limits.
    pub baggage_invalid: u64,
}

/// Reads the self-monitoring counters of this process.
pub fn self_metrics() -> SelfMetrics {
    let c = &COUNTERS;
    SelfMetrics {
        spans_dropped: read(&c.spans_dropped),
        spans_exported: read(&c.spans_exported),
        spans_export_failed: read(&c.spans_export_failed),
        metric_export_failures: read(&c.metric_export_failures),
        logs_dropped: read(&c.logs_dropped),
        traceparent_invalid: read(&c.traceparent_invalid),
        tracestate_invalid: read(&c.tracestate_invalid),
        baggage_invalid: read(&c.baggage_invalid),
    }
}

/// Registers the observable counters on `meter`. The returned instruments must
/// stay alive for the callbacks to keep running.
pub(crate) fn register(meter: &Meter) -> Vec<Box<dyn std::any::Any + Send + Sync>> {
    vec![
        Box::new(spans_processed(meter)),
        Box::new(spans_exported(meter)),
        Box::new(export_failures(meter)),
        Box::new(logs_processed(meter)),
        Box::new(propagation_invalid(meter)),
    ]
}

fn spans_processed(meter: &Meter) -> ObservableCounter<u64> {
    meter
        .u64_observable_counter("otel.sdk.processor.span.processed")
        .with_description(
            "Spans that left the span processor: handed to the exporter, or dropped (error.type)",
        )
        .with_unit("{span}")
        .with_callback(|o| {
            let c = &COUNTERS;
            observe_processed(
                o,
                "batching_span_processor",
                read(&c.spans_exported) + read(&c.spans_export_failed),
                read(&c.spans_dropped),
            );
        })
        .build()
}

fn spans_exported(meter: &Meter) -> ObservableCounter<u64> {
    meter
        .u64_observable_counter("otel.sdk.exporter.span.exported")
        .with_description("Spans the exporter sent; with error.type when the export failed")
        .with_unit("{span}")
        .with_callback(|o| {
            let c = &COUNTERS;
            o.observe(read(&c.spans_exported), &[]);
            o.observe(
                read(&c.spans_export_failed),
                &[KeyValue::new("error.type", "export_failed")],
            );
        })
        .build()
}

fn export_failures(meter: &Meter) -> ObservableCounter<u64> {
    meter
        .u64_observable_counter("platform.telemetry.export.failures")
        .with_description("Failed OTLP export calls, by signal")
        .with_unit("{call}")
        .with_callback(|o| {
            let c = &COUNTERS;
            o.observe(
                read(&c.span_export_failures),
                &[KeyValue::new("signal", "traces")],
            );
            o.observe(
                read(&c.metric_export_failures),
                &[KeyValue::new("signal", "metrics")],
            );
        })
        .build()
}

fn logs_processed(meter: &Meter) -> ObservableCounter<u64> {
    meter
        .u64_observable_counter("otel.sdk.processor.log.processed")
        .with_description(
            "Log lines that left the log writer queue: written, or dropped (error.type)",
        )
        .with_unit("{log_record}")
        .with_callback(|o| {
            let c = &COUNTERS;
            observe_processed(
                o,
                "platform_log_writer",
                read(&c.logs_written),
                read(&c.logs_dropped),
            );
        })
        .build()
}

/// Observes what a queueing processor (`component`) handed on and what it
/// dropped because its queue was full.
fn observe_processed(
    o: &dyn AsyncInstrument<u64>,
    component: &'static str,
    handed_on: u64,
    dropped: u64,
) {
    let component = KeyValue::new("otel.component.type", component);
    o.observe(handed_on, std::slice::from_ref(&component));
    o.observe(
        dropped,
        &[component, KeyValue::new("error.type", "queue_full")],
    );
}

fn propagation_invalid(meter: &Meter) -> ObservableCounter<u64> {
    meter
        .u64_observable_counter("platform.telemetry.propagation.invalid")
        .with_description(
            "Incoming propagation headers dropped (in whole or in part) because they were malformed or past the limits, by header",
        )
        .with_unit("{header}")
        .with_callback(|o| {
            let c = &COUNTERS;
            for (header, counter) in [
                ("traceparent", &c.traceparent_invalid),
                ("tracestate", &c.tracestate_invalid),
                ("baggage", &c.baggage_invalid),
            ] {
                o.observe(read(counter), &[KeyValue::new("header", header)]);
            }
        })
        .build()
}
