//! A service's own span exporter (`init_with_exporter`) gets the sampled
//! spans through the bounded batch processor, and nothing when the sampler
//! keeps nothing. Its own test binary: telemetry is process-global.

use std::sync::{Arc, Mutex};

use platform_telemetry::opentelemetry_sdk::error::OTelSdkResult;
use platform_telemetry::opentelemetry_sdk::trace::{SpanData, SpanExporter};
use platform_telemetry::{ServiceInfo, SpanExporterHook, TelemetrySettings};

#[derive(Debug, Clone, Default)]
struct Collected(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collected {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

#[tokio::test]
async fn sampled_spans_reach_the_service_exporter() {
    let collected = Collected::default();
    let mut settings = TelemetrySettings::default();
    settings.logging.enabled = false;
    let guard = platform_telemetry::init_with_exporter(
        &settings,
        &ServiceInfo::new("exporter-test", "1.0.0"),
        SpanExporterHook::new(collected.clone()),
    )
    .expect("telemetry starts");
    {
        let span = tracing::info_span!("charge", amount = 30);
        let _entered = span.enter();
        tracing::info_span!("inner").in_scope(|| {});
    }
    guard.shutdown().await.expect("flushed");
    let spans = collected.0.lock().unwrap();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert!(names.contains(&"charge"), "{names:?}");
    assert!(names.contains(&"inner"), "{names:?}");
    let charge = spans.iter().find(|s| s.name == "charge").unwrap();
    let inner = spans.iter().find(|s| s.name == "inner").unwrap();
    assert_eq!(inner.parent_span_id, charge.span_context.span_id());
    assert_eq!(
        inner.span_context.trace_id(),
        charge.span_context.trace_id()
    );
}
