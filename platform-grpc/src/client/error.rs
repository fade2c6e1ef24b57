//! Why a call through a [`Channel`](super::Channel) got no answer.

use std::sync::Arc;

/// Why a call got no answer, or a channel could not be built.
///
/// A gRPC answer with a non-OK status is an answer, not a `ChannelError`:
/// tonic turns it into its `Status`. A `ChannelError` reaches a generated
/// client as a `tonic::Status` whose code says what a gRPC caller expects
/// (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) and whose source
/// is the `ChannelError`: [`ChannelError::of`] finds it.
///
/// ```
/// # fn handle(status: tonic::Status) {
/// use platform_grpc::ChannelError;
/// match ChannelError::of(&status) {
///     Some(ChannelError::CircuitOpen { target, .. }) => eprintln!("{target} is down"),
///     Some(other) => eprintln!("no answer: {other}"),
///     None => eprintln!("the server answered {:?}", status.code()),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The channel could not be built from its settings.
    #[error("gRPC client {target}: invalid setting grpc.clients.{target}{}{key}: {reason}", if key.is_empty() { "" } else { "." })]
    Config {
        /// The target (client name).
        target: String,
        /// The key under `grpc.clients.<target>`, or `""` for the whole entry.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// There is no endpoint to call (discovery has found none yet).
    #[error("no endpoint to call for {target}: {reason}")]
    NoEndpoint {
        /// The target called.
        target: Arc<str>,
        /// Why.
        reason: String,
    },
    /// The target's circuit breaker is open: the call failed fast.
    #[error("circuit open for {target}: failing fast ({attempts} attempts made)")]
    CircuitOpen {
        /// The target called.
        target: Arc<str>,
        /// Attempts made before the breaker refused the next one.
        attempts: u32,
    },
    /// The target refuses most calls as overloaded, and the channel's
    /// adaptive throttle refused this one itself: nothing was sent.
    #[error("call to {target} throttled: it refuses most calls as overloaded")]
    Throttled {
        /// The target called.
        target: Arc<str>,
    },
    /// `max_concurrent_calls` calls to the target were in flight: this one
    /// was refused at once, nothing was sent.
    #[error("call to {target} refused: {max} calls to it already in flight")]
    BulkheadFull {
        /// The target called.
        target: Arc<str>,
        /// Its `max_concurrent_calls`.
        max: u32,
    },
    /// The call's deadline passed before any answer.
    #[error("deadline exceeded calling {target} ({attempts} attempts)")]
    DeadlineExceeded {
        /// The target called.
        target: Arc<str>,
        /// The endpoint of the last attempt, if one was made.
        endpoint: Option<Arc<str>>,
        /// Attempts made, including one cut short.
        attempts: u32,
    },
    /// The last attempt had no response headers within `attempt_timeout`,
    /// and no further attempt was allowed.
    #[error("call to {target} timed out at {endpoint} ({attempts} attempts)")]
    Timeout {
        /// The target called.
        target: Arc<str>,
        /// The endpoint of the last attempt.
        endpoint: Arc<str>,
        /// Attempts made.
        attempts: u32,
    },
    /// No connection could be made (refused, unreachable, timed out).
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
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The HTTP/2 stream broke before the response headers (a reset, the
    /// connection lost).
    #[error("call to {target} broke at {endpoint} ({attempts} attempts)")]
    Transport {
        /// The target called.
        target: Arc<str>,
        /// The endpoint of the last attempt.
        endpoint: Arc<str>,
        /// Attempts made.
        attempts: u32,
        /// What hyper said.
        #[source]
        source: hyper::Error,
    },
    /// The request's stream went out with an earlier attempt that never
    /// reached the server, and cannot be sent again.
    #[error(
        "call to {target} at {endpoint}: its request stream cannot be sent again ({attempts} attempts)"
    )]
    NotReplayable {
        /// The target called.
        target: Arc<str>,
        /// The endpoint of the last attempt.
        endpoint: Arc<str>,
        /// Attempts made.
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
        last: Box<ChannelError>,
    },
}

impl ChannelError {
    /// The `ChannelError` a tonic `Status` came from, if it came from one
    /// (no answer came); `None` for a status the server answered.
    pub fn of(status: &tonic::Status) -> Option<&ChannelError> {
        std::error::Error::source(status)?.downcast_ref()
    }

    /// The status code a gRPC caller expects for it: UNAVAILABLE when the
    /// target could not be reached (or fails fast), DEADLINE_EXCEEDED when
    /// time ran out, RESOURCE_EXHAUSTED when a local limit refused the call.
    pub fn code(&self) -> tonic::Code {
        match self {
            ChannelError::Config { .. } => tonic::Code::Internal,
            ChannelError::DeadlineExceeded { .. } => tonic::Code::DeadlineExceeded,
            ChannelError::BulkheadFull { .. } => tonic::Code::ResourceExhausted,
            ChannelError::BudgetExhausted { last, .. } => last.code(),
            ChannelError::NotReplayable { .. } => tonic::Code::Unavailable,
            ChannelError::NoEndpoint { .. }
            | ChannelError::CircuitOpen { .. }
            | ChannelError::Throttled { .. }
            | ChannelError::Timeout { .. }
            | ChannelError::Connect { .. }
            | ChannelError::Transport { .. } => tonic::Code::Unavailable,
        }
    }

    /// `error.type` of the span and metric.
    pub(crate) fn error_type(&self) -> &'static str {
        match self {
            ChannelError::Config { .. } => "config",
            ChannelError::NoEndpoint { .. } => "no_endpoint",
            ChannelError::CircuitOpen { .. } => "circuit_open",
            ChannelError::Throttled { .. } => "throttled",
            ChannelError::BulkheadFull { .. } => "bulkhead_full",
            ChannelError::DeadlineExceeded { .. } => "deadline_exceeded",
            ChannelError::Timeout { .. } => "timeout",
            ChannelError::Connect { .. } => "connect",
            ChannelError::Transport { .. } => "transport",
            ChannelError::NotReplayable { .. } => "not_replayable",
            ChannelError::BudgetExhausted { .. } => "budget_exhausted",
        }
    }

    /// The status tonic hands a caller: the code, this error's message,
    /// and this error as its source (the `source` is set by the caller, who
    /// owns the error).
    pub(crate) fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.code(), self.to_string())
    }
}

/// `?` in `main`, which returns the runtime's error.
impl From<ChannelError> for platform_core::Error {
    fn from(error: ChannelError) -> Self {
        platform_core::Error::Client(Box::new(error))
    }
}
