//! The trace pipeline: sampler, bounded batch export over OTLP, drop and
//! failure accounting.
//!
//! Why a wrapper around the SDK's `BatchSpanProcessor`: the SDK counts spans it
//! drops on a full queue but does not expose the count. [`BoundedProcessor`]
//! admits a span only while fewer than `max_queue_size` spans are in flight
//! (queued or being exported), counting every refusal; [`CountingExporter`]
//! releases the slots once the exporter is done with a batch, successfully or
//! not. The inner queue has the same capacity, so it never drops on its own and
//! the count is exact. Memory stays bounded by the queue size however long the
//! collector is down.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor,
};

use crate::error::TelemetryError;
use crate::resolve::ExportTarget;
use crate::self_metrics::{COUNTERS, add};
use crate::settings::{OtlpProtocol, TracingSettings};

/// Admits spans into the batch processor only while there is room, counting drops.
#[derive(Debug)]
pub(crate) struct BoundedProcessor {
    inner: BatchSpanProcessor,
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
}

impl BoundedProcessor {
    pub(crate) fn new<E: SpanExporter + 'static>(exporter: E, settings: &TracingSettings) -> Self {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let exporter = CountingExporter {
            inner: exporter,
            in_flight: in_flight.clone(),
            failing: AtomicBool::new(false),
        };
        let config = BatchConfigBuilder::default()
            .with_max_queue_size(settings.max_queue_size)
            .with_max_export_batch_size(settings.max_export_batch_size)
            .with_scheduled_delay(settings.scheduled_delay)
            .build();
        BoundedProcessor {
            inner: BatchSpanProcessor::builder(exporter)
                .with_batch_config(config)
                .build(),
            in_flight,
            capacity: settings.max_queue_size,
        }
    }
}

impl SpanProcessor for BoundedProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            add(&COUNTERS.spans_dropped, 1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Counts what the exporter sends and fails, logs when export starts and stops failing.
#[derive(Debug)]
pub(crate) struct CountingExporter<E> {
    inner: E,
    in_flight: Arc<AtomicUsize>,
    failing: AtomicBool,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
        match &result {
            Ok(()) => {
                add(&COUNTERS.spans_exported, n as u64);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(target: "platform_telemetry::export", signal = "traces", "span export recovered");
                }
            }
            Err(e) => {
                add(&COUNTERS.spans_export_failed, n as u64);
                add(&COUNTERS.span_export_failures, 1);
                // One line per outage, not one per batch: the counters carry the rest.
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target: "platform_telemetry::export", signal = "traces", error = %e, spans = n,
                        "span export failed; spans are dropped and counted until the collector answers");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Builds the bounded batch processor exporting to `target` over OTLP. A gRPC
/// exporter must be built inside the tokio runtime that will drive its connection.
pub(crate) fn otlp_span_processor(
    target: &ExportTarget,
    settings: &TracingSettings,
) -> Result<BoundedProcessor, TelemetryError> {
    check_tls(target, "traces")?;
    #[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
    {
        let _ = settings;
        Err(not_compiled("traces", target.protocol))
    }
    #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
    {
        let exporter = otlp_exporter!(
            opentelemetry_otlp::SpanExporter,
            target,
            "traces",
            "telemetry.tracing.otlp.headers"
        )?;
        Ok(BoundedProcessor::new(exporter, settings))
    }
}

/// The OTLP exporter of one signal (`$exporter`: `opentelemetry_otlp`'s
/// `SpanExporter` or `MetricExporter`) for `target`, over the protocol it
/// names, with the headers checked under `$headers_key`; the same transport
/// settings and errors for every signal. A protocol this build lacks is an
/// error naming its cargo feature.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
macro_rules! otlp_exporter {
    ($exporter:ty, $target:expr, $signal:literal, $headers_key:literal) => {{
        let target: &$crate::resolve::ExportTarget = $target;
        match target.protocol {
            #[cfg(feature = "otlp-grpc")]
            $crate::settings::OtlpProtocol::Grpc => {
                use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
                <$exporter>::builder()
                    .with_tonic()
                    .with_endpoint(target.endpoint.clone())
                    .with_timeout(target.timeout)
                    .with_metadata($crate::traces::grpc_metadata(
                        &target.headers,
                        $headers_key,
                    )?)
                    .build()
                    .map_err($crate::traces::build_error(target, $signal))
            }
            #[cfg(feature = "otlp-http")]
            $crate::settings::OtlpProtocol::HttpProtobuf => {
                use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
                $crate::traces::check_headers(&target.headers, $headers_key)?;
                <$exporter>::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_endpoint(target.endpoint.clone())
                    .with_timeout(target.timeout)
                    .with_headers(target.headers.clone())
                    .build()
                    .map_err($crate::traces::build_error(target, $signal))
            }
            #[allow(unreachable_patterns)]
            protocol => Err($crate::traces::not_compiled($signal, protocol)),
        }
    }};
}
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) use otlp_exporter;

/// The error for a protocol this build was compiled without.
pub(crate) fn not_compiled(signal: &'static str, protocol: OtlpProtocol) -> TelemetryError {
    let (protocol, feature) = match protocol {
        OtlpProtocol::Grpc => ("grpc", "otlp-grpc"),
        OtlpProtocol::HttpProtobuf => ("http/protobuf", "otlp-http"),
    };
    TelemetryError::ProtocolNotCompiled {
        signal,
        protocol,
        feature,
    }
}

#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn build_error(
    target: &ExportTarget,
    signal: &'static str,
) -> impl FnOnce(opentelemetry_otlp::ExporterBuildError) -> TelemetryError {
    let endpoint = target.endpoint.clone();
    move |e| TelemetryError::Exporter {
        signal,
        endpoint,
        reason: e.to_string(),
    }
}

/// An `https://` endpoint without TLS compiled in would fail on every export;
/// say so at init instead.
pub(crate) fn check_tls(target: &ExportTarget, signal: &'static str) -> Result<(), TelemetryError> {
    if cfg!(not(feature = "tls"))
        && target
            .endpoint
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("https://")
    {
        return Err(TelemetryError::Exporter {
            signal,
            endpoint: target.endpoint.clone(),
            reason: "https needs the cargo feature `tls` of platform-telemetry".to_owned(),
        });
    }
    Ok(())
}

/// Header names and values must be valid HTTP; the value is never echoed (it is a secret).
#[cfg_attr(
    not(any(feature = "otlp-grpc", feature = "otlp-http")),
    allow(dead_code)
)]
pub(crate) fn check_headers(
    headers: &HashMap<String, String>,
    key: &str,
) -> Result<http::HeaderMap, TelemetryError> {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        let invalid = |reason: &str| TelemetryError::InvalidSetting {
            key: format!("{key}.{name}"),
            value: platform_config::REDACTED.to_owned(),
            reason: reason.to_owned(),
        };
        let name_parsed = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid("not a valid HTTP header name"))?;
        let value_parsed = http::HeaderValue::from_str(value)
            .map_err(|_| invalid("not a valid HTTP header value"))?;
        map.insert(name_parsed, value_parsed);
    }
    Ok(map)
}

#[cfg(feature = "otlp-grpc")]
pub(crate) fn grpc_metadata(
    headers: &HashMap<String, String>,
    key: &str,
) -> Result<opentelemetry_otlp::tonic_types::metadata::MetadataMap, TelemetryError> {
    Ok(
        opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(check_headers(
            headers, key,
        )?),
    )
}

/// Marks a closure's errors as export failures of the metrics signal.
pub(crate) fn count_metric_export_failure(result: &OTelSdkResult) {
    if let Err(e) = result
        && !matches!(e, OTelSdkError::AlreadyShutdown)
    {
        add(&COUNTERS.metric_export_failures, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(endpoint: &str) -> ExportTarget {
        ExportTarget {
            endpoint: endpoint.to_owned(),
            protocol: OtlpProtocol::HttpProtobuf,
            headers: HashMap::new(),
            timeout: Duration::from_secs(1),
        }
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn https_without_tls_is_an_init_error() {
        let e = check_tls(&target("HTTPS://collector:4318/v1/traces"), "traces").unwrap_err();
        assert!(e.to_string().contains("`tls`"), "{e}");
        check_tls(&target("http://collector:4318/v1/traces"), "traces").unwrap();
    }

    #[cfg(feature = "tls")]
    #[test]
    fn https_with_tls_is_accepted() {
        check_tls(&target("https://collector:4318/v1/traces"), "traces").unwrap();
    }

    #[test]
    fn a_bad_header_is_an_error_that_does_not_echo_the_value() {
        let mut headers = HashMap::new();
        headers.insert("x-api-key".to_owned(), "sec\nret".to_owned());
        let e = check_headers(&headers, "telemetry.tracing.otlp.headers").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("telemetry.tracing.otlp.headers.x-api-key"),
            "{text}"
        );
        assert!(!text.contains("sec"), "{text}");

        let mut headers = HashMap::new();
        headers.insert("bad header".to_owned(), "v".to_owned());
        assert!(check_headers(&headers, "k").is_err());
    }

    /// An exporter that holds every batch until released: a hung collector.
    #[derive(Debug, Clone)]
    struct Held(Arc<std::sync::Mutex<()>>);
    impl SpanExporter for Held {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            let _wait = self.0.lock().unwrap();
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_growing() {
        use opentelemetry::trace::{Tracer as _, TracerProvider as _};
        let gate = Arc::new(std::sync::Mutex::new(()));
        let held = gate.lock().unwrap();
        let settings = TracingSettings {
            max_queue_size: 8,
            max_export_batch_size: 4,
            ..TracingSettings::default()
        };
        let processor = BoundedProcessor::new(Held(gate.clone()), &settings);
        let in_flight = processor.in_flight.clone();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build();
        let tracer = provider.tracer("test");
        let before = COUNTERS.spans_dropped.load(Ordering::Relaxed);
        for _ in 0..100 {
            tracer.in_span("s", |_| {});
        }
        assert!(in_flight.load(Ordering::Relaxed) <= 8);
        assert!(COUNTERS.spans_dropped.load(Ordering::Relaxed) - before >= 92);
        drop(held);
        provider.shutdown().unwrap();
        assert_eq!(
            in_flight.load(Ordering::Relaxed),
            0,
            "every admitted span was released"
        );
    }
}
