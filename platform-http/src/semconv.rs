//! What the HTTP semantic conventions say, written once for the client
//! and the server.

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
