//! gRPC status codes as the wire carries them (`grpc-status`), by number
//! and by the name the specification gives them.

use http::HeaderMap;

/// A gRPC status code (0 to 16; anything else a server sends is kept as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Code(pub(crate) u16);

/// The names of gRPC's status codes, by code.
const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

impl Code {
    pub(crate) const UNKNOWN: Code = Code(2);
    pub(crate) const UNAVAILABLE: Code = Code(14);

    /// A code by name (any case) or number, as settings give it.
    pub(crate) fn parse(text: &str) -> Option<Code> {
        let text = text.trim();
        if let Ok(n) = text.parse::<u16>() {
            return (usize::from(n) < NAMES.len()).then_some(Code(n));
        }
        NAMES
            .iter()
            .position(|name| name.eq_ignore_ascii_case(text))
            .and_then(|i| u16::try_from(i).ok())
            .map(Code)
    }

    /// The code's name (`error.type`); one gRPC does not define is `_OTHER`.
    pub(crate) fn name(self) -> &'static str {
        NAMES.get(usize::from(self.0)).copied().unwrap_or("_OTHER")
    }

    /// The code in `grpc-status`, if there is one that parses.
    pub(crate) fn in_headers(headers: &HeaderMap) -> Option<Code> {
        let value = headers.get(GRPC_STATUS)?;
        std::str::from_utf8(value.as_bytes())
            .ok()?
            .parse()
            .ok()
            .map(Code)
    }

    /// The code a gRPC client reads from an HTTP status without a
    /// `grpc-status` (gRPC's "HTTP to gRPC status code mapping").
    pub(crate) fn of_http_status(status: http::StatusCode) -> Code {
        Code(match status.as_u16() {
            400 => 13,
            401 => 16,
            403 => 7,
            404 => 12,
            429 | 502..=504 => 14,
            _ => 2,
        })
    }

    /// Whether a call that ended with this code failed on the server's
    /// side, as the gRPC semantic conventions count them.
    pub(crate) fn is_server_error(self) -> bool {
        matches!(self.0, 2 | 4 | 12 | 13 | 14 | 15)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_by_name_or_number() {
        assert_eq!(Code::parse("UNAVAILABLE"), Some(Code::UNAVAILABLE));
        assert_eq!(Code::parse("unavailable"), Some(Code::UNAVAILABLE));
        assert_eq!(Code::parse("14"), Some(Code::UNAVAILABLE));
        assert_eq!(Code::parse("17"), None);
        assert_eq!(Code::parse("UNAVAILABLEX"), None);
        assert_eq!(Code(4).name(), "DEADLINE_EXCEEDED");
        assert_eq!(Code(99).name(), "_OTHER");
    }
}
