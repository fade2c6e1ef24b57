//! What the HTTP semantic conventions say, written once for the client
//! and the server (and, for the duration histograms, platform-grpc's).

use std::sync::RwLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundHistogram, Histogram};

/// The instrumentation scope of platform-http's instruments.
pub(crate) const SCOPE: &str = "platform-http";

/// The methods the semantic conventions name; anything else is `_OTHER`.
pub(crate) const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT", "_OTHER",
];

/// The method as the semantic conventions want it, with its index in [`METHODS`].
pub(crate) fn method_attribute(method: &http::Method) -> (&'static str, usize) {
    let index = match *method {
        http::Method::GET => 0,
        http::Method::POST => 1,
        http::Method::PUT => 2,
        http::Method::DELETE => 3,
        http::Method::HEAD => 4,
        http::Method::OPTIONS => 5,
        http::Method::PATCH => 6,
        http::Method::TRACE => 7,
        http::Method::CONNECT => 8,
        _ => 9,
    };
    (METHODS[index], index)
}

/// A duration histogram in seconds with the bucket boundaries the HTTP
/// semantic conventions give (the RPC conventions give the same): every
/// request and call duration of the platform, HTTP's and gRPC's, client
/// and server, has the same buckets.
pub fn duration_histogram(
    meter: &opentelemetry::metrics::Meter,
    name: &'static str,
    description: &'static str,
) -> opentelemetry::metrics::Histogram<f64> {
    meter
        .f64_histogram(name)
        .with_unit("s")
        .with_description(description)
        .with_boundaries(vec![
            0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
        ])
        .build()
}

/// A duration histogram bound to each attribute set one endpoint has seen
/// (keyed by what varies, `K`), so that a call or an attempt is recorded
/// without hashing its attributes. Bounded: past
/// `MAX_BOUND_DURATIONS` sets, records are made the ordinary way.
pub struct BoundDurations<K>(RwLock<Vec<(K, BoundHistogram<f64>)>>);

const MAX_BOUND_DURATIONS: usize = 32;

impl<K> Default for BoundDurations<K> {
    fn default() -> Self {
        Self(RwLock::new(Vec::new()))
    }
}

impl<K> std::fmt::Debug for BoundDurations<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundDurations").finish_non_exhaustive()
    }
}

impl<K: PartialEq> BoundDurations<K> {
    /// Records `seconds` under `key`; `attributes` makes the full set when
    /// it is not bound yet.
    pub fn record(
        &self,
        histogram: &Histogram<f64>,
        key: K,
        seconds: f64,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) {
        let bound = self.0.read().unwrap_or_else(|p| p.into_inner());
        if let Some((_, histogram)) = bound.iter().find(|(k, _)| *k == key) {
            histogram.record(seconds);
            return;
        }
        drop(bound);
        let attributes = attributes();
        let mut bound = self.0.write().unwrap_or_else(|p| p.into_inner());
        if bound.len() < MAX_BOUND_DURATIONS && !bound.iter().any(|(k, _)| *k == key) {
            bound.push((key, histogram.bind(&attributes)));
        }
        drop(bound);
        histogram.record(seconds, &attributes);
    }
}
