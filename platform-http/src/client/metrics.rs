//! The client's own instruments (`platform-http` meter). Attempts, retries,
//! budget exhaustion, breaker changes, ejections and hedges are counted by
//! the resilience layer under the `platform` meter.

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

#[derive(Debug, Clone)]
pub(crate) struct Instruments {
    /// `http.client.request.duration`, one record per attempt (each resend is
    /// an HTTP request of its own in the semantic conventions).
    pub(crate) duration: Histogram<f64>,
    /// Malformed `Retry-After` headers, ignored.
    pub(crate) retry_after_malformed: Counter<u64>,
    /// Requests sent once only because their body could not be replayed.
    pub(crate) not_replayable: Counter<u64>,
    /// `target`, made once rather than on every count.
    target: [KeyValue; 1],
}

impl Instruments {
    pub(crate) fn new(target: &Arc<str>, meters: &platform_core::Meters) -> Self {
        let meter = meters.meter(crate::semconv::SCOPE);
        Instruments {
            target: [KeyValue::new("target", Arc::clone(target))],
            duration: meter
                .f64_histogram("http.client.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP client requests.")
                .with_boundaries(vec![
                    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                ])
                .build(),
            retry_after_malformed: meter
                .u64_counter("platform.http.client.retry_after.malformed")
                .with_description("Retry-After headers that could not be read and were ignored.")
                .build(),
            not_replayable: meter
                .u64_counter("platform.http.client.not_replayable")
                .with_description(
                    "Requests sent at most once because their body is streamed or larger than max_replay_body.",
                )
                .build(),
        }
    }

    /// The attributes of the per-target counters.
    pub(crate) fn target(&self) -> &[KeyValue] {
        &self.target
    }
}
