//! What the HTTP semantic conventions say, written once for the client
//! and the server (and, for the duration histograms, platform-grpc's).

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
