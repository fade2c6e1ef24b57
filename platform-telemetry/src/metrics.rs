//! The metrics pipeline: one meter provider read by the Prometheus exposition
//! (pull) and, when an endpoint is set, an OTLP periodic exporter (push).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, InstrumentKind, MeterProviderBuilder, PeriodicReader, Stream,
    Temporality,
};

use crate::error::TelemetryError;
use crate::resolve::ExportTarget;
use crate::traces::count_metric_export_failure;

/// Histogram bucket boundaries for durations in seconds, from the
/// OpenTelemetry HTTP semantic conventions (`http.server.request.duration`).
/// The SDK's default boundaries (0, 5, 10, 25, ... 10000) suit milliseconds and
/// would put every request of a seconds histogram in the first bucket or two.
pub const SECONDS_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The view giving every histogram measured in seconds [`SECONDS_BUCKETS`].
pub(crate) fn seconds_histogram_view(instrument: &Instrument) -> Option<Stream> {
    if instrument.kind() != InstrumentKind::Histogram || instrument.unit() != "s" {
        return None;
    }
    Stream::builder()
        .with_aggregation(Aggregation::ExplicitBucketHistogram {
            boundaries: SECONDS_BUCKETS.to_vec(),
            record_min_max: true,
        })
        .build()
        .ok()
}

/// Counts failed pushes and logs when they start and stop failing.
#[cfg_attr(
    not(any(feature = "otlp-grpc", feature = "otlp-http")),
    allow(dead_code)
)]
#[derive(Debug)]
pub(crate) struct CountingMetricExporter<E> {
    inner: E,
    failing: AtomicBool,
}

#[cfg_attr(
    not(any(feature = "otlp-grpc", feature = "otlp-http")),
    allow(dead_code)
)]
impl<E> CountingMetricExporter<E> {
    pub(crate) fn new(inner: E) -> Self {
        CountingMetricExporter {
            inner,
            failing: AtomicBool::new(false),
        }
    }
}

impl<E: PushMetricExporter> PushMetricExporter for CountingMetricExporter<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        count_metric_export_failure(&result);
        match &result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(target: "platform_telemetry::export", signal = "metrics", "metric export recovered");
                }
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target: "platform_telemetry::export", signal = "metrics", error = %e, "metric export failed");
                }
            }
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// Adds the OTLP push reader for `target` (built inside the export runtime for gRPC).
pub(crate) fn with_otlp_reader(
    builder: MeterProviderBuilder,
    target: &ExportTarget,
    interval: Duration,
) -> Result<MeterProviderBuilder, TelemetryError> {
    crate::traces::check_tls(target, "metrics")?;
    #[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
    {
        let _ = (builder, interval);
        Err(crate::traces::not_compiled("metrics", target.protocol))
    }
    #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
    {
        let exporter = crate::traces::otlp_exporter!(
            opentelemetry_otlp::MetricExporter,
            target,
            "metrics",
            "telemetry.metrics.otlp.headers"
        )?;
        Ok(periodic(builder, exporter, interval))
    }
}

/// `exporter` read every `interval`, its outcomes counted.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
fn periodic(
    builder: MeterProviderBuilder,
    exporter: opentelemetry_otlp::MetricExporter,
    interval: Duration,
) -> MeterProviderBuilder {
    builder.with_reader(
        PeriodicReader::builder(CountingMetricExporter::new(exporter))
            .with_interval(interval)
            .build(),
    )
}
