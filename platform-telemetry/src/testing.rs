//! Capture the spans, logs and metrics your own code emits, in your own tests
//! (cargo feature `testing`, usually in `[dev-dependencies]`).
//!
//! The capture installs a `tracing` subscriber for the current thread only
//! (use `#[test]` or the default current-thread `#[tokio::test]`), so tests
//! running in parallel do not see each other. It uses the same log-line layer
//! as production, so a test can assert what the JSON logs will look like.
//! Metrics are recorded through the capture's own meter provider: hand
//! [`TelemetryCapture::meter`] to the code under test, or take the provider.
//!
//! ```
//! use platform_telemetry::testing::TelemetryCapture;
//! use platform_telemetry::opentelemetry::metrics::MeterProvider as _;
//!
//! let capture = TelemetryCapture::new();
//! {
//!     let _on = capture.set_default();
//!     let span = tracing::info_span!("charge", amount = 30);
//!     let _in = span.enter();
//!     tracing::info!(card = "visa", "charged");
//! }
//! capture.meter("payments").u64_counter("payments.charged").build().add(1, &[]);
//!
//! let span = capture.span("charge").expect("span recorded");
//! assert!(span.attributes.iter().any(|kv| kv.key.as_str() == "amount"));
//! let line = &capture.log_lines()[0];
//! assert_eq!(line["message"], "charged");
//! assert_eq!(line["trace_id"], span.span_context.trace_id().to_string());
//! assert_eq!(capture.counter_total("payments.charged"), Some(1));
//! ```

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt as _;

use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::filter_fn;

use crate::logging::{LineFormat, LogLayer, is_self_target};
use crate::sampling::SamplerChoice;

/// Collects spans, log lines (as JSON) and metrics in memory.
pub struct TelemetryCapture {
    spans: InMemorySpanExporter,
    tracer_provider: SdkTracerProvider,
    metrics: InMemoryMetricExporter,
    meter_provider: SdkMeterProvider,
    logs: SharedBuffer,
}

impl std::fmt::Debug for TelemetryCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TelemetryCapture")
    }
}

impl Default for TelemetryCapture {
    fn default() -> Self {
        Self::new()
    }
}

impl TelemetryCapture {
    /// An empty capture; every span is sampled and exported at once.
    pub fn new() -> Self {
        let spans = InMemorySpanExporter::default();
        let tracer_provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let metrics = InMemoryMetricExporter::default();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metrics.clone()).build())
            .build();
        TelemetryCapture {
            spans,
            tracer_provider,
            metrics,
            meter_provider,
            logs: SharedBuffer::default(),
        }
    }

    /// Routes `tracing` on this thread into the capture until the guard drops.
    pub fn set_default(&self) -> tracing::subscriber::DefaultGuard {
        // The SDK's own chatter (opentelemetry, tonic, ...) is not what a test is about.
        let own_code = || filter_fn(|meta| !is_self_target(meta.target()));
        let subscriber = tracing_subscriber::registry()
            .with(LogLayer::new(LineFormat::Json, self.logs.clone()).with_filter(own_code()))
            // The trace layer of a service, keeping every level: the spans
            // the code under test builds go the way they go in production.
            .with(crate::sampling::trace_layer(
                self.tracer_provider.tracer("test"),
                tracing_subscriber::EnvFilter::new("trace"),
                // The provider's default sampler.
                SamplerChoice::ParentBased(Box::new(SamplerChoice::AlwaysOn)),
            ));
        tracing::subscriber::set_default(subscriber)
    }

    /// Every span ended so far.
    pub fn spans(&self) -> Vec<SpanData> {
        let _ = self.tracer_provider.force_flush();
        self.spans.get_finished_spans().unwrap_or_default()
    }

    /// The first ended span with this name.
    pub fn span(&self, name: &str) -> Option<SpanData> {
        self.spans().into_iter().find(|s| s.name == name)
    }

    /// Every log line so far, parsed (the production JSON shape).
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.logs.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// A meter on the capture's provider, for the code under test.
    pub fn meter(&self, scope: &'static str) -> Meter {
        self.meter_provider.meter(scope)
    }

    /// The capture's meter provider (e.g. to install globally in a serial test).
    pub fn meter_provider(&self) -> SdkMeterProvider {
        self.meter_provider.clone()
    }

    /// Collects and returns every metric recorded so far.
    pub fn metrics(&self) -> Vec<ResourceMetrics> {
        let _ = self.meter_provider.force_flush();
        self.metrics.get_finished_metrics().unwrap_or_default()
    }

    /// The latest total of an integer counter, summed over its attribute sets.
    pub fn counter_total(&self, name: &str) -> Option<u64> {
        self.latest(name, |data| match data {
            AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                Some(sum.data_points().map(|p| p.value()).sum())
            }
            _ => None,
        })
    }

    /// The number of values recorded in a float histogram, over its attribute sets.
    pub fn histogram_count(&self, name: &str) -> Option<u64> {
        self.latest(name, |data| match data {
            AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                Some(h.data_points().map(|p| p.count()).sum())
            }
            _ => None,
        })
    }

    /// `read` of the latest collection of the metric `name`.
    fn latest<T>(&self, name: &str, read: impl Fn(&AggregatedMetrics) -> Option<T>) -> Option<T> {
        let all = self.metrics();
        let latest = all.last()?;
        latest
            .scope_metrics()
            .flat_map(|s| s.metrics())
            .find(|m| m.name() == name)
            .and_then(|m| read(m.data()))
    }
}

#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SharedBuffer {
    type Writer = SharedBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
