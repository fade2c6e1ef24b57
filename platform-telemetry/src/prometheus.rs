//! The Prometheus text exposition the admin server serves at `/metrics`.

use prometheus::{Encoder as _, TextEncoder};

/// A cloneable handle that renders every metric of the process in the
/// Prometheus text format (version 0.0.4), for an HTTP handler to return.
///
/// ```no_run
/// # fn handler(metrics: platform_telemetry::PrometheusHandle) -> (String, String) {
/// (platform_telemetry::PrometheusHandle::CONTENT_TYPE.to_owned(), metrics.render())
/// # }
/// ```
#[derive(Clone)]
pub struct PrometheusHandle {
    registry: prometheus::Registry,
}

impl std::fmt::Debug for PrometheusHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrometheusHandle")
    }
}

impl PrometheusHandle {
    /// The `Content-Type` of [`render`](Self::render)'s output.
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    pub(crate) fn new(registry: prometheus::Registry) -> Self {
        PrometheusHandle { registry }
    }

    /// Collects every instrument now and renders the exposition text.
    /// A metric family that cannot be encoded is logged and left out; the
    /// scrape still succeeds with the rest.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        // Prometheus linters (promtool) reject families without HELP; an
        // instrument created without a description gets its name as help.
        for family in &mut families {
            if family.help().is_empty() {
                let help = format!("{} (no description given)", family.name());
                family.set_help(help);
            }
        }
        let encoder = TextEncoder::new();
        match encoder.encode_to_string(&families) {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(target: "platform_telemetry::export", error = %e, "cannot encode all metrics; rendering them one family at a time");
                let mut out = Vec::new();
                for family in &families {
                    let mut one = Vec::new();
                    if encoder
                        .encode(std::slice::from_ref(family), &mut one)
                        .is_ok()
                    {
                        out.extend_from_slice(&one);
                    }
                }
                String::from_utf8_lossy(&out).into_owned()
            }
        }
    }
}

/// Builds the reader that feeds the handle.
pub(crate) fn reader() -> Result<
    (
        opentelemetry_prometheus::PrometheusExporter,
        PrometheusHandle,
    ),
    crate::TelemetryError,
> {
    let registry = prometheus::Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .build()
        .map_err(|e| crate::TelemetryError::Prometheus(e.to_string()))?;
    Ok((exporter, PrometheusHandle::new(registry)))
}
