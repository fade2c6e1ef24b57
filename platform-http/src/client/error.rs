//! Errors of the HTTP client: one variant per reason a caller may act on.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use super::BoxError;

/// Why a call through [`Client`](super::Client) failed.
///
/// Every variant names the target; where it is known, the endpoint
/// (`host:port`) of the last attempt and how many attempts were made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The client could not be built from its settings.
    #[error("HTTP client {target}: invalid setting http.clients.{target}.{key}: {reason}")]
    Config {
        /// The target (client name).
        target: String,
        /// The key under `http.clients.<target>`, or `""` for the whole entry.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The request could not be built (a bad header, path or JSON body); nothing was sent.
    #[error("request to {target} is invalid: {reason}")]
    InvalidRequest {
        /// The target called.
        target: Arc<str>,
        /// What is wrong.
        reason: String,
    },
    /// The last attempt took longer than `attempt_timeout`, and no further
    /// attempt was allowed.
    #[error("request to {target} timed out at {endpoint} ({attempts} attempts)")]
    Timeout {
        /// The target called.
        target: Arc<str>,
        /// The endpoint of the last attempt.
        endpoint: Arc<str>,
        /// Attempts made.
        attempts: u32,
    },
    /// The call's deadline (its `total_timeout`, `.timeout(..)`, or the
    /// deadline inherited from the caller's caller) passed.
    #[error("deadline exceeded calling {target} ({attempts} attempts)")]
    DeadlineExceeded {
        /// The target called.
        target: Arc<str>,
        /// The endpoint of the last attempt, if one was made.
        endpoint: Option<Arc<str>>,
        /// Attempts made, including one cut short.
        attempts: u32,
    },
    /// The target's retry budget had no retry left; `last` is the failure that stands.
    #[error("retry budget of {target} exhausted after {attempts} attempts: {last}")]
    BudgetExhausted {
        /// The target called.
        target: Arc<str>,
        /// The endpoint of the last attempt.
        endpoint: Option<Arc<str>>,
        /// Attempts made.
        attempts: u32,
        /// The failure of the last attempt.
        #[source]
        last: Box<ClientError>,
    },
    /// The target's circuit breaker is open: the call failed fast.
    #[error("circuit open for {target}: failing fast ({attempts} attempts made)")]
    CircuitOpen {
        /// The target called.
        target: Arc<str>,
        /// Attempts made before the breaker refused the next one.
        attempts: u32,
    },
    /// The target refuses most calls as overloaded, and the client's
    /// adaptive throttle refused this one itself, at once: nothing was sent
    /// (`http.clients.<target>.throttle`).
    #[error("call to {target} throttled: it refuses most calls as overloaded")]
    Throttled {
        /// The target called.
        target: Arc<str>,
    },
    /// `max_concurrent_calls` calls to the target were in flight: this one
    /// was refused at once, nothing was sent (the bulkhead).
    #[error("call to {target} refused: {max} calls to it already in flight")]
    BulkheadFull {
        /// The target called.
        target: Arc<str>,
        /// Its `max_concurrent_calls`.
        max: u32,
    },
    /// The client has no endpoint to call.
    #[error("no endpoint to call for {target}")]
    NoEndpoint {
        /// The target called.
        target: Arc<str>,
    },
    /// No connection could be made (refused, unreachable, connect timeout):
    /// the request never left the client.
    #[error("cannot connect to {target} at {endpoint} ({attempts} attempts)")]
    Connect {
        /// The target called.
        target: Arc<str>,
        /// The endpoint of the last attempt.
        endpoint: Arc<str>,
        /// Attempts made.
        attempts: u32,
        /// What the transport said.
        #[source]
        source: BoxError,
    },
    /// The target answered with an error status: a retryable one (408, 429,
    /// 502, 503, 504) after retrying stopped, or any 4xx/5xx through
    /// [`Response::error_for_status`](super::Response::error_for_status).
    #[error("{target} answered {status} at {endpoint} ({attempts} attempts)")]
    Status {
        /// The target called.
        target: Arc<str>,
        /// The endpoint that answered.
        endpoint: Arc<str>,
        /// Attempts made.
        attempts: u32,
        /// The status.
        status: StatusCode,
        /// The delay the server asked for in `Retry-After`, if it sent a valid one.
        retry_after: Option<Duration>,
        /// The body of the answer.
        body: Bytes,
    },
    /// The exchange broke after the connection was made: reset or closed
    /// connection, response body cut short. The request may have reached the server.
    #[error("request to {target} failed at {endpoint} ({attempts} attempts)")]
    Body {
        /// The target called.
        target: Arc<str>,
        /// The endpoint of the last attempt.
        endpoint: Arc<str>,
        /// Attempts made.
        attempts: u32,
        /// What the transport said.
        #[source]
        source: BoxError,
    },
    /// The answer's body is larger than `max_response_body`: refused, not
    /// buffered, so a huge or endless answer cannot exhaust memory.
    #[error("answer of {target} at {endpoint} is larger than {limit} bytes")]
    ResponseTooLarge {
        /// The target called.
        target: Arc<str>,
        /// The endpoint that answered.
        endpoint: Arc<str>,
        /// Attempts made.
        attempts: u32,
        /// The configured limit (`max_response_body`).
        limit: u64,
    },
    /// The answer could not be decoded as JSON into the type asked for.
    #[error("cannot decode the answer of {target} at {endpoint}")]
    Decode {
        /// The target called.
        target: Arc<str>,
        /// The endpoint that answered.
        endpoint: Arc<str>,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

/// So that `main` returns the platform's one error type, `?` included on
/// `Client::for_service`.
impl From<ClientError> for platform_core::Error {
    fn from(error: ClientError) -> Self {
        platform_core::Error::Client(Box::new(error))
    }
}

impl ClientError {
    /// The target called (the client's name).
    pub fn target(&self) -> &str {
        match self {
            Self::Config { target, .. } => target,
            Self::InvalidRequest { target, .. }
            | Self::Timeout { target, .. }
            | Self::DeadlineExceeded { target, .. }
            | Self::BudgetExhausted { target, .. }
            | Self::CircuitOpen { target, .. }
            | Self::NoEndpoint { target }
            | Self::Throttled { target }
            | Self::BulkheadFull { target, .. }
            | Self::Connect { target, .. }
            | Self::Status { target, .. }
            | Self::Body { target, .. }
            | Self::ResponseTooLarge { target, .. }
            | Self::Decode { target, .. } => target,
        }
    }

    /// The endpoint (`host:port`) of the last attempt, when one was made.
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            Self::Timeout { endpoint, .. }
            | Self::Connect { endpoint, .. }
            | Self::Status { endpoint, .. }
            | Self::Body { endpoint, .. }
            | Self::ResponseTooLarge { endpoint, .. }
            | Self::Decode { endpoint, .. } => Some(endpoint),
            Self::DeadlineExceeded { endpoint, .. } | Self::BudgetExhausted { endpoint, .. } => {
                endpoint.as_deref()
            }
            Self::Config { .. }
            | Self::InvalidRequest { .. }
            | Self::CircuitOpen { .. }
            | Self::Throttled { .. }
            | Self::BulkheadFull { .. }
            | Self::NoEndpoint { .. } => None,
        }
    }

    /// Attempts made, when the call got that far.
    pub fn attempts(&self) -> Option<u32> {
        match self {
            Self::Timeout { attempts, .. }
            | Self::DeadlineExceeded { attempts, .. }
            | Self::BudgetExhausted { attempts, .. }
            | Self::CircuitOpen { attempts, .. }
            | Self::Connect { attempts, .. }
            | Self::Status { attempts, .. }
            | Self::Body { attempts, .. }
            | Self::ResponseTooLarge { attempts, .. } => Some(*attempts),
            Self::Config { .. }
            | Self::InvalidRequest { .. }
            | Self::NoEndpoint { .. }
            | Self::Throttled { .. }
            | Self::BulkheadFull { .. }
            | Self::Decode { .. } => None,
        }
    }

    /// The HTTP status, for [`ClientError::Status`] (also inside `BudgetExhausted`).
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::BudgetExhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    /// The value of `error.type` in spans and metrics (semantic conventions:
    /// the status code for HTTP errors, else a low-cardinality name).
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Config { .. } => "config",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Timeout { .. } => "timeout",
            Self::DeadlineExceeded { .. } => "deadline_exceeded",
            Self::BudgetExhausted { .. } => "budget_exhausted",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::NoEndpoint { .. } => "no_endpoint",
            Self::Throttled { .. } => "throttled",
            Self::BulkheadFull { .. } => "bulkhead_full",
            Self::Connect { .. } => "connect",
            Self::Status { .. } => "status",
            Self::Body { .. } => "body",
            Self::ResponseTooLarge { .. } => "response_too_large",
            Self::Decode { .. } => "decode",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_returns_the_platform_error_and_prints_the_client_error_readably() {
        let invalid = || ClientError::Config {
            target: "inventory".into(),
            key: "discovery".into(),
            reason: "unknown scheme".into(),
        };
        let error: platform_core::Error = invalid().into();
        // What `main` prints when it returns this error: the message, not a struct dump.
        assert_eq!(format!("{error:?}"), invalid().to_string());
        // Still matchable through the source.
        let platform_core::Error::Client(source) = error else {
            panic!("expected the client variant");
        };
        assert!(matches!(
            source.downcast_ref::<ClientError>(),
            Some(ClientError::Config { key, .. }) if key == "discovery"
        ));
    }
}
