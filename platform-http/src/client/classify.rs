//! What one attempt's outcome means: HTTP's answer to the transport-neutral
//! [`Classifier`](platform_core::resilience::Classifier).
//!
//! - Connect failures (refused, unreachable, connect timeout) never reached
//!   the server: requeued at once to another endpoint whatever the method,
//!   outside the retry budget (see `Classification::requeue`).
//! - Resets, closed connections, bodies cut short and attempt timeouts may
//!   have reached it: retryable, but only for idempotent requests.
//! - 408, 429, 502, 503 and 504 are retryable, after the `Retry-After` delay
//!   when the server sent one. Every other status is the answer: 4xx is the
//!   caller's problem and another attempt would repeat it; a 500 says the
//!   request itself broke the server, which a retry would most likely repeat
//!   (Envoy's `retriable-status-codes` and gRPC A6 make the same choice).
//! - A 503 marked overloaded by a platform server (over its concurrency
//!   limit) is retried at once on an endpoint the call has not tried, within
//!   the retry budget, and never on the one that refused it: with no
//!   untried endpoint left, it is the answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Version};
use platform_core::resilience::{Classification, EndpointOutcome, ResilienceError};

use super::response::Response;
use super::{BoxError, ClientError};

/// Statuses that say "try again (later)".
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 502 | 503 | 504)
}

/// A failed attempt, with the endpoint it went to.
#[derive(Debug)]
pub(crate) struct AttemptError {
    pub(crate) endpoint: Arc<str>,
    pub(crate) failure: Failure,
    /// Another endpoint the call has not tried is in rotation.
    pub(crate) elsewhere: bool,
}

#[derive(Debug)]
pub(crate) enum Failure {
    /// No connection: never sent.
    Connect(BoxError),
    /// The attempt took longer than `attempt_timeout`.
    Timeout,
    /// Broken after the connection was made.
    Body(BoxError),
    /// The request could not be built (a bad URL): nothing was sent.
    Invalid(String),
    /// Discovery gave no endpoint to send to: nothing was sent.
    NoEndpoint(String),
    /// The answer's body was over the limit; an answer, not a transient fault.
    TooLarge(u64),
    /// A retryable status: an answer, kept whole, since it is what the
    /// caller gets if retrying stops.
    Status {
        status: StatusCode,
        version: Version,
        // Boxed: every attempt's result carries a `Failure`, and a header
        // map would make them all three times larger for a rare case.
        headers: Box<HeaderMap>,
        retry_after: Option<Duration>,
        /// A platform server refused the request over its concurrency
        /// limit ([`OVERLOADED_HEADER`](crate::server::OVERLOADED_HEADER)).
        overloaded: bool,
        body: Bytes,
    },
}

impl Failure {
    /// From the pool's error of sending a request or reading the head of
    /// its answer (timeouts are the attempt's own timer, not the pool's).
    pub(crate) fn from_transport(error: hyper_util::client::legacy::Error) -> Self {
        if error.is_connect() {
            Failure::Connect(Box::new(error))
        } else {
            Failure::Body(Box::new(error))
        }
    }

    pub(crate) fn error_type(&self) -> &'static str {
        match self {
            Failure::Connect(_) => "connect",
            Failure::Timeout => "timeout",
            Failure::Body(_) => "body",
            Failure::Invalid(_) => "invalid_request",
            Failure::NoEndpoint(_) => "no_endpoint",
            Failure::TooLarge(_) => "response_too_large",
            Failure::Status { status, .. } => status.as_str_static(),
        }
    }
}

/// `StatusCode::as_str` for a `'static` metric attribute (no `String` per
/// attempt): the retryable statuses and every 5xx.
pub(crate) trait StaticStatus {
    fn as_str_static(&self) -> &'static str;
}

/// "500501502...599", for `as_str_static`.
static SERVER_ERROR_CODES: [u8; 300] = {
    let mut digits = [0u8; 300];
    let mut i = 0;
    while i < 100 {
        let code = 500 + i;
        digits[i * 3] = b'0' + (code / 100) as u8;
        digits[i * 3 + 1] = b'0' + (code / 10 % 10) as u8;
        digits[i * 3 + 2] = b'0' + (code % 10) as u8;
        i += 1;
    }
    digits
};

impl StaticStatus for StatusCode {
    fn as_str_static(&self) -> &'static str {
        match self.as_u16() {
            408 => "408",
            429 => "429",
            code @ 500..=599 => {
                let at = usize::from(code - 500) * 3;
                std::str::from_utf8(&SERVER_ERROR_CODES[at..at + 3]).unwrap_or("_OTHER")
            }
            _ => "_OTHER",
        }
    }
}

/// The classifier of the platform client.
pub(crate) fn classify(result: &Result<Response, AttemptError>) -> Classification {
    match result {
        Ok(_) => Classification::success(),
        // Overloaded: another instance may have room now, this one will not
        // for a while; with none left untried, a retry would only add load.
        Err(AttemptError {
            failure: Failure::Status {
                overloaded: true, ..
            },
            elsewhere: true,
            ..
        }) => Classification::retryable().elsewhere(true),
        Err(AttemptError {
            failure: Failure::Status {
                overloaded: true, ..
            },
            ..
        }) => Classification::not_retryable(),
        Err(e) => classify_failure(&e.failure).elsewhere(e.elsewhere),
    }
}

/// What a failed attempt means, before knowing where the next one can go.
pub(crate) fn classify_failure(failure: &Failure) -> Classification {
    match failure {
        Failure::Connect(_) => Classification::requeue(),
        Failure::Timeout | Failure::Body(_) => Classification::retryable(),
        Failure::Invalid(_) => Classification::not_retryable().never_sent(),
        Failure::NoEndpoint(_) => Classification::retryable().never_sent(),
        Failure::TooLarge(_) => Classification::not_retryable(),
        Failure::Status {
            retry_after: Some(delay),
            ..
        } => Classification::retry_after(*delay),
        Failure::Status { .. } => Classification::retryable(),
    }
}

/// What a failed attempt says about its endpoint: a refused connection
/// means nothing listens there.
pub(crate) fn endpoint_outcome(failure: &Failure) -> EndpointOutcome {
    match failure {
        Failure::Connect(error) if is_refused(error) => EndpointOutcome::Refused,
        _ => EndpointOutcome::Failure,
    }
}

fn is_refused(error: &BoxError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&**error);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = error.source();
    }
    false
}

impl AttemptError {
    /// The caller's outcome of the call whose last attempt this was: an
    /// answer (a retryable status, after retrying stopped) is the response;
    /// anything else is the error.
    fn into_outcome(self, target: Arc<str>, attempts: u32) -> Result<Response, ClientError> {
        let endpoint = self.endpoint;
        Err(match self.failure {
            Failure::Status {
                status,
                version,
                headers,
                body,
                ..
            } => {
                return Ok(Response {
                    status,
                    version,
                    headers: *headers,
                    body,
                    target,
                    endpoint,
                    attempts,
                });
            }
            Failure::Connect(source) => ClientError::Connect {
                target,
                endpoint,
                attempts,
                source,
            },
            Failure::Invalid(reason) => ClientError::InvalidRequest { target, reason },
            Failure::TooLarge(limit) => ClientError::ResponseTooLarge {
                target,
                endpoint,
                attempts,
                limit,
            },
            Failure::NoEndpoint(reason) => {
                tracing::debug!(%target, %reason, "no endpoint to send to");
                ClientError::NoEndpoint { target }
            }
            Failure::Timeout => ClientError::Timeout {
                target,
                endpoint,
                attempts,
            },
            Failure::Body(source) => ClientError::Body {
                target,
                endpoint,
                attempts,
                source,
            },
        })
    }
}

/// What the caller gets when the resilience loop stopped without a final
/// answer it liked: the last answer if the last attempt got one (a 503
/// after the attempts, the budget or the deadline ran out is still the
/// server's answer: `Ok`, as every other status is), else why no answer came.
pub(crate) fn outcome(error: ResilienceError<AttemptError>) -> Result<Response, ClientError> {
    let target: Arc<str> = Arc::from(error.target());
    let attempts = error.attempts();
    match error {
        ResilienceError::CircuitOpen { .. } => Err(ClientError::CircuitOpen { target, attempts }),
        ResilienceError::DeadlineExceeded {
            last: Some(last), ..
        } if matches!(last.failure, Failure::Status { .. }) => last.into_outcome(target, attempts),
        ResilienceError::DeadlineExceeded { last, .. } => Err(ClientError::DeadlineExceeded {
            target,
            endpoint: last.map(|e| e.endpoint),
            attempts,
        }),
        ResilienceError::BudgetExhausted { last, .. } => {
            let endpoint = Some(last.endpoint.clone());
            last.into_outcome(target.clone(), attempts).map_err(|last| {
                ClientError::BudgetExhausted {
                    target,
                    endpoint,
                    attempts,
                    last: Box::new(last),
                }
            })
        }
        // The server's pushback does not fit in the deadline: its answer stands.
        ResilienceError::PushbackBeyondDeadline { last, .. }
        | ResilienceError::AttemptsExhausted { last, .. }
        | ResilienceError::NotRetryable { source: last, .. }
        | ResilienceError::NotIdempotent { source: last, .. } => {
            last.into_outcome(target, attempts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_status_strings_match_the_codes() {
        for code in [408, 429, 500, 502, 503, 504, 511, 599] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(status.as_str_static(), status.as_str());
        }
        assert_eq!(StatusCode::NOT_FOUND.as_str_static(), "_OTHER");
    }
}
