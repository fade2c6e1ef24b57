//! What to retry (the [`Classifier`]) and how often (the [`RetryPolicy`]).

use std::time::Duration;

use super::Backoff;
use crate::resilience::{RetrySettings, SettingsError};

/// No configuration may ask for more attempts than this (first one included).
pub const MAX_ATTEMPTS_CEILING: u32 = 5;

/// No configuration may ask for more requeues per call than this.
pub const MAX_REQUEUES_CEILING: u32 = 10;

/// What one attempt's result means for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The attempt is the answer (which may be an application-level "no",
    /// like an HTTP 404: the target is healthy).
    Success,
    /// A transient failure: another attempt may succeed. Counts against the
    /// health of the target and endpoint.
    Retryable {
        /// How long the server asked the client to wait before retrying
        /// (`Retry-After`, gRPC `grpc-retry-pushback-ms`), already parsed.
        pushback: Option<Duration>,
    },
    /// A failure that another attempt would repeat. The target answered, so
    /// it does not count against its health.
    NotRetryable,
}

/// A [`Verdict`] plus whether the attempt may have reached the server, and
/// where the next attempt can go.
///
/// An attempt that certainly never left the client (connection refused, no
/// endpoint, refused by a local limit) can be retried whatever the call's
/// idempotency: the server never saw it. Anything that may have been sent is
/// retried only when the call is idempotent.
///
/// An attempt that never reached a server *because of the endpoint it was
/// given* (its connection was refused, or reset before the request was
/// written) is [requeued](Self::requeue): sent again at once, outside the
/// retry budget, under the policy's own small bound (Finagle's requeues, gRPC
/// A6's transparent retries). And a retry that will go to another endpoint
/// than the ones this call tried ([`elsewhere`](Self::elsewhere)) skips the
/// backoff: backoff exists to spare one struggling endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    /// What the result means.
    pub verdict: Verdict,
    /// Whether the request may have reached the server.
    pub may_have_reached_server: bool,
    /// The request never reached a server because of its endpoint: it may be
    /// sent again at once, without drawing on the retry budget.
    pub requeue: bool,
    /// The next attempt can go to an endpoint this call has not tried yet.
    pub elsewhere: bool,
}

impl Classification {
    /// The attempt succeeded.
    pub const fn success() -> Self {
        Self {
            verdict: Verdict::Success,
            may_have_reached_server: true,
            requeue: false,
            elsewhere: false,
        }
    }

    /// A transient failure of a request that may have reached the server.
    pub const fn retryable() -> Self {
        Self {
            verdict: Verdict::Retryable { pushback: None },
            may_have_reached_server: true,
            requeue: false,
            elsewhere: false,
        }
    }

    /// A transient failure after which the server asked to wait `pushback`.
    pub const fn retry_after(pushback: Duration) -> Self {
        Self {
            verdict: Verdict::Retryable {
                pushback: Some(pushback),
            },
            may_have_reached_server: true,
            requeue: false,
            elsewhere: false,
        }
    }

    /// A failure not worth retrying.
    pub const fn not_retryable() -> Self {
        Self {
            verdict: Verdict::NotRetryable,
            may_have_reached_server: true,
            requeue: false,
            elsewhere: false,
        }
    }

    /// Whether the attempt shows the target (or endpoint) healthy: anything
    /// but a retryable failure. What the circuit breaker counts, and what a
    /// balancer should report to an [`OutlierDetector`](crate::resilience::OutlierDetector).
    pub const fn is_healthy(&self) -> bool {
        !matches!(self.verdict, Verdict::Retryable { .. })
    }

    /// The same classification for a request that certainly never left the client.
    pub const fn never_sent(mut self) -> Self {
        self.may_have_reached_server = false;
        self
    }

    /// A request that never reached a server because of the endpoint it was
    /// sent to (connection refused, reset before it was written): retryable,
    /// never sent, and requeued at once when another endpoint is available
    /// ([`elsewhere`](Self::elsewhere)); an ordinary retry otherwise.
    pub const fn requeue() -> Self {
        let mut classification = Self::retryable().never_sent();
        classification.requeue = true;
        classification
    }

    /// The same classification, saying whether the next attempt can go to an
    /// endpoint the call has not tried yet (it then skips the backoff).
    pub const fn elsewhere(mut self, elsewhere: bool) -> Self {
        self.elsewhere = elsewhere;
        self
    }
}

/// Decides what the result of one attempt means. Transport-specific: the
/// HTTP client looks at status codes, `Retry-After` and connect errors, a
/// gRPC one at `grpc-status`.
///
/// Any `Fn(&Result<T, E>) -> Classification` is a classifier.
pub trait Classifier<T, E> {
    /// Classifies one attempt's result.
    fn classify(&self, result: &Result<T, E>) -> Classification;
}

impl<T, E, F> Classifier<T, E> for F
where
    F: Fn(&Result<T, E>) -> Classification,
{
    fn classify(&self, result: &Result<T, E>) -> Classification {
        self(result)
    }
}

/// The simplest classifier: `Ok` is a success, every `Err` is retryable and
/// may have reached the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryErrors;

impl<T, E> Classifier<T, E> for RetryErrors {
    fn classify(&self, result: &Result<T, E>) -> Classification {
        match result {
            Ok(_) => Classification::success(),
            Err(_) => Classification::retryable(),
        }
    }
}

/// How many attempts a call may make and how long to wait between them.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    max_requeues: u32,
    backoff: Backoff,
}

impl RetryPolicy {
    /// A policy from settings. `enabled = false` means one attempt. Errors
    /// when `max_attempts` is 0 or above [`MAX_ATTEMPTS_CEILING`], or the
    /// backoff is impossible.
    pub fn from_settings(settings: &RetrySettings) -> Result<Self, SettingsError> {
        let backoff = Backoff::new(settings.base_backoff, settings.max_backoff)?;
        let max_attempts = Self::validate_attempts(settings.max_attempts)?;
        Ok(Self {
            max_attempts: if settings.enabled { max_attempts } else { 1 },
            max_requeues: Self::validate_requeues(settings.max_requeues)?,
            backoff,
        })
    }

    /// A policy of `max_attempts` attempts with `backoff` between them (and
    /// the default requeues).
    pub fn new(max_attempts: u32, backoff: Backoff) -> Result<Self, SettingsError> {
        Ok(Self {
            max_attempts: Self::validate_attempts(max_attempts)?,
            max_requeues: RetrySettings::default().max_requeues,
            backoff,
        })
    }

    /// The same policy with at most `max_requeues` requeues per call.
    pub fn with_max_requeues(mut self, max_requeues: u32) -> Result<Self, SettingsError> {
        self.max_requeues = Self::validate_requeues(max_requeues)?;
        Ok(self)
    }

    fn validate_requeues(max_requeues: u32) -> Result<u32, SettingsError> {
        if max_requeues <= MAX_REQUEUES_CEILING {
            Ok(max_requeues)
        } else {
            Err(SettingsError::new(
                "retry.max_requeues",
                max_requeues,
                "must be between 0 and 10",
            ))
        }
    }

    /// Requeues per call (attempts that never reached a server, sent again at once).
    pub fn max_requeues(&self) -> u32 {
        self.max_requeues
    }

    fn validate_attempts(max_attempts: u32) -> Result<u32, SettingsError> {
        if (1..=MAX_ATTEMPTS_CEILING).contains(&max_attempts) {
            Ok(max_attempts)
        } else {
            Err(SettingsError::new(
                "retry.max_attempts",
                max_attempts,
                "must be between 1 and 5 (the ceiling of the platform)",
            ))
        }
    }

    /// Attempts per call, the first one included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff between attempts.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_three_attempts() {
        let p = RetryPolicy::from_settings(&RetrySettings::default()).unwrap();
        assert_eq!(p.max_attempts(), 3);
    }

    #[test]
    fn ceiling_is_five_whatever_the_config_says() {
        for n in 1..=5 {
            let s = RetrySettings {
                max_attempts: n,
                ..RetrySettings::default()
            };
            assert_eq!(RetryPolicy::from_settings(&s).unwrap().max_attempts(), n);
        }
        for n in [0, 6, 100] {
            let s = RetrySettings {
                max_attempts: n,
                ..RetrySettings::default()
            };
            let err = RetryPolicy::from_settings(&s).unwrap_err();
            assert_eq!(err.key, "retry.max_attempts");
        }
    }

    #[test]
    fn disabled_retries_make_one_attempt() {
        let s = RetrySettings {
            enabled: false,
            ..RetrySettings::default()
        };
        assert_eq!(RetryPolicy::from_settings(&s).unwrap().max_attempts(), 1);
    }

    #[test]
    fn closures_classify() {
        let c = |r: &Result<u16, ()>| match r {
            Ok(503) => Classification::retry_after(Duration::from_secs(1)),
            Ok(_) => Classification::success(),
            Err(()) => Classification::retryable().never_sent(),
        };
        assert_eq!(
            c.classify(&Ok(503)).verdict,
            Verdict::Retryable {
                pushback: Some(Duration::from_secs(1))
            }
        );
        assert!(!c.classify(&Err(())).may_have_reached_server);
    }
}
