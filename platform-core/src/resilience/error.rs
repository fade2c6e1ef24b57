//! Errors of the resilience layer.

use std::sync::Arc;
use std::time::Duration;

/// Why a call through [`Resilience`](super::Resilience) failed.
///
/// Every variant names the target and how many attempts were made, so that a
/// caller (or the HTTP client built on top) can report them. `E` is the error
/// of one attempt; when the last attempt answered with a value (say an HTTP
/// 503 response) the call returns that value instead, as tower's `Retry` does.
#[derive(Debug, thiserror::Error)]
pub enum ResilienceError<E> {
    /// The target's circuit breaker is open: the call failed fast.
    #[error("circuit open for target {target} (after {attempts} attempts)")]
    CircuitOpen {
        /// The target called.
        target: Arc<str>,
        /// Attempts made before the breaker refused the next one.
        attempts: u32,
        /// The error of the last attempt, if one was made.
        last: Option<E>,
    },
    /// The call's deadline passed during an attempt, or before the next one
    /// could be made.
    #[error("deadline exceeded calling {target} after {attempts} attempts")]
    DeadlineExceeded {
        /// The target called.
        target: Arc<str>,
        /// Attempts made (including one cut short by the deadline).
        attempts: u32,
        /// The error of the last attempt that completed, if any.
        last: Option<E>,
    },
    /// The server asked to be left alone for longer than the deadline allows.
    #[error(
        "target {target} asked to retry after {pushback:?}, beyond the deadline (after {attempts} attempts)"
    )]
    PushbackBeyondDeadline {
        /// The target called.
        target: Arc<str>,
        /// Attempts made.
        attempts: u32,
        /// The delay the server asked for.
        pushback: Duration,
        /// The error of the last attempt.
        last: E,
    },
    /// The target's retry budget has no retry left: the last failure stands.
    #[error("retry budget of {target} exhausted after {attempts} attempts: {last}")]
    BudgetExhausted {
        /// The target called.
        target: Arc<str>,
        /// Attempts made.
        attempts: u32,
        /// The error of the last attempt.
        last: E,
    },
    /// Every allowed attempt failed.
    #[error("all {attempts} attempts to {target} failed; last: {last}")]
    AttemptsExhausted {
        /// The target called.
        target: Arc<str>,
        /// Attempts made.
        attempts: u32,
        /// The error of the last attempt.
        last: E,
    },
    /// The classifier said the failure is not worth retrying.
    #[error("call to {target} failed (not retryable, {attempts} attempts): {source}")]
    NotRetryable {
        /// The target called.
        target: Arc<str>,
        /// Attempts made.
        attempts: u32,
        /// The error of the last attempt.
        source: E,
    },
    /// The failure is retryable, but the attempt may have reached the server
    /// and the call is not idempotent, so it was not repeated.
    #[error("call to {target} failed and is not idempotent ({attempts} attempts): {source}")]
    NotIdempotent {
        /// The target called.
        target: Arc<str>,
        /// Attempts made.
        attempts: u32,
        /// The error of the last attempt.
        source: E,
    },
}

impl<E> ResilienceError<E> {
    /// The target called.
    pub fn target(&self) -> &str {
        match self {
            Self::CircuitOpen { target, .. }
            | Self::DeadlineExceeded { target, .. }
            | Self::PushbackBeyondDeadline { target, .. }
            | Self::BudgetExhausted { target, .. }
            | Self::AttemptsExhausted { target, .. }
            | Self::NotRetryable { target, .. }
            | Self::NotIdempotent { target, .. } => target,
        }
    }

    /// Attempts made before the call gave up.
    pub fn attempts(&self) -> u32 {
        match self {
            Self::CircuitOpen { attempts, .. }
            | Self::DeadlineExceeded { attempts, .. }
            | Self::PushbackBeyondDeadline { attempts, .. }
            | Self::BudgetExhausted { attempts, .. }
            | Self::AttemptsExhausted { attempts, .. }
            | Self::NotRetryable { attempts, .. }
            | Self::NotIdempotent { attempts, .. } => *attempts,
        }
    }

    /// The error of the last attempt, when there is one.
    pub fn last_error(&self) -> Option<&E> {
        match self {
            Self::CircuitOpen { last, .. } | Self::DeadlineExceeded { last, .. } => last.as_ref(),
            Self::PushbackBeyondDeadline { last, .. }
            | Self::BudgetExhausted { last, .. }
            | Self::AttemptsExhausted { last, .. } => Some(last),
            Self::NotRetryable { source, .. } | Self::NotIdempotent { source, .. } => Some(source),
        }
    }

    /// The error of the last attempt, when there is one, by value.
    pub fn into_last_error(self) -> Option<E> {
        match self {
            Self::CircuitOpen { last, .. } | Self::DeadlineExceeded { last, .. } => last,
            Self::PushbackBeyondDeadline { last, .. }
            | Self::BudgetExhausted { last, .. }
            | Self::AttemptsExhausted { last, .. } => Some(last),
            Self::NotRetryable { source, .. } | Self::NotIdempotent { source, .. } => Some(source),
        }
    }
}

/// A settings value that cannot make a working policy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid resilience setting {key} = {value}: {reason}")]
pub struct SettingsError {
    /// The key, relative to the resilience settings (`retry.max_attempts`).
    pub key: &'static str,
    /// The value given, as written.
    pub value: String,
    /// What would be accepted.
    pub reason: &'static str,
}

impl SettingsError {
    pub(crate) fn new(
        key: &'static str,
        value: impl std::fmt::Debug,
        reason: &'static str,
    ) -> Self {
        Self {
            key,
            value: format!("{value:?}"),
            reason,
        }
    }

    /// The error when `bad` holds, for the checks a constructor makes in turn.
    pub(crate) fn when(
        bad: bool,
        key: &'static str,
        value: impl std::fmt::Debug,
        reason: &'static str,
    ) -> Result<(), Self> {
        if bad {
            Err(Self::new(key, value, reason))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_boxable_error<T: std::error::Error + Send + Sync + 'static>(_: T) {}

    #[test]
    fn errors_box_like_any_error_and_name_the_target() {
        let err = ResilienceError::AttemptsExhausted {
            target: Arc::from("inventory"),
            attempts: 3,
            last: std::io::Error::other("reset"),
        };
        assert_eq!(
            err.to_string(),
            "all 3 attempts to inventory failed; last: reset"
        );
        assert_eq!(err.target(), "inventory");
        is_boxable_error(err);
        let err: ResilienceError<std::io::Error> = ResilienceError::NotRetryable {
            target: Arc::from("inventory"),
            attempts: 1,
            source: std::io::Error::other("denied"),
        };
        assert!(std::error::Error::source(&err).is_some());
    }
}
