//! [`Resilience`]: every policy of one target, and the loop that applies them.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::metrics::Instruments;
use super::throttle::AdaptiveThrottle;
use super::{Bulkhead, BulkheadPermit};
use super::{
    CircuitBreaker, Classification, Classifier, Deadline, HedgePolicy, LatencyEstimate,
    OutlierDetector, OutlierSettings, ResilienceError, ResilienceSettings, RetryBudget,
    RetryPolicy, SettingsError, Verdict,
};
use crate::Meters;

/// The resilience policies of one call target: retry policy, retry budget,
/// circuit breaker and hedging, shared by every call to it (cheap to clone).
///
/// ```
/// use platform_core::resilience::{CallOptions, Classification, Resilience, ResilienceSettings};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let inventory = Resilience::new("inventory", &ResilienceSettings::default()).unwrap();
/// let classify = |r: &Result<u16, std::io::Error>| match r {
///     Ok(503) => Classification::retryable(),
///     Ok(_) => Classification::success(),
///     Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Classification::retryable().never_sent(),
///     Err(_) => Classification::retryable(),
/// };
/// let status = inventory
///     .call(&classify, &CallOptions::idempotent(), |attempt| async move {
///         // attempt.number, attempt.remaining() for the request header...
///         Ok::<u16, std::io::Error>(if attempt.number == 1 { 503 } else { 200 })
///     })
///     .await
///     .unwrap();
/// assert_eq!(status, 200);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Resilience {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    total_timeout: Duration,
    retry: RetryPolicy,
    budget: RetryBudget,
    breaker: CircuitBreaker,
    hedge: HedgePolicy,
    outlier: OutlierSettings,
    throttle: Arc<AdaptiveThrottle>,
    bulkhead: Arc<Bulkhead>,
    instruments: Instruments,
}

/// Per-call options. They can make a call more careful than the target's
/// policy (fewer attempts, an earlier deadline, no hedging) but never draw
/// more on the shared budget: every retry and hedge still needs a token.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Whether the call may be repeated after it may have reached the server
    /// (GET, PUT, DELETE, a request with an idempotency key...). A call that
    /// is not idempotent is retried only when the failed attempt certainly
    /// never left the client.
    pub idempotent: bool,
    /// A deadline for this call; the earlier of it, the enclosing
    /// [`Deadline::current`] and `total_timeout` from now applies.
    pub deadline: Option<Deadline>,
    /// Fewer attempts than the policy allows (more is ignored).
    pub max_attempts: Option<u32>,
    /// Never hedge this call, even if hedging is on.
    pub no_hedge: bool,
    /// Never requeue this call: what it sends cannot be made again (a
    /// streaming body is consumed by the first attempt, even one that never
    /// reached a server), so a failed attempt ends the call.
    pub no_requeue: bool,
    /// The attempts stop themselves at [`Attempt::deadline`] and fail when
    /// they do, so the call arms no timer of its own around them: a client
    /// with its own per-attempt timeout then needs one timer per attempt,
    /// not two. An attempt that fails once the deadline has passed counts
    /// as cut short by it (the call ends in `DeadlineExceeded`).
    pub attempts_enforce_deadline: bool,
}

impl CallOptions {
    /// Options for an idempotent call.
    pub fn idempotent() -> Self {
        Self {
            idempotent: true,
            ..Self::default()
        }
    }

    /// Options for a call that must not be repeated once it may have reached the server.
    pub fn not_idempotent() -> Self {
        Self::default()
    }

    /// The same options with a deadline.
    pub fn with_deadline(mut self, deadline: Deadline) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The same options with at most `max_attempts` attempts.
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }

    /// The same options for attempts that enforce the deadline themselves
    /// (see [`attempts_enforce_deadline`](Self::attempts_enforce_deadline)).
    pub fn with_attempts_enforcing_deadline(mut self) -> Self {
        self.attempts_enforce_deadline = true;
        self
    }
}

/// What the closure of [`Resilience::call`] learns about the attempt it makes.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// 1 for the first attempt, 2 for the next (retry or hedge)...
    pub number: u32,
    /// The call's deadline. It is also [`Deadline::current`] inside the attempt.
    pub deadline: Deadline,
    /// Whether this attempt is a hedge racing an earlier one.
    pub hedge: bool,
}

impl Attempt {
    /// Time left before the call's deadline: what goes in the request header
    /// that propagates the deadline to the next hop.
    pub fn remaining(&self) -> Duration {
        self.deadline.remaining()
    }
}

/// The result of an attempt: the value and its classification, or `None`
/// when the deadline cut it short.
type Finished<T, E> = Option<(Result<T, E>, Classification)>;

/// How an attempt is held to the call's deadline.
#[derive(Clone, Copy)]
struct Limit {
    deadline: Deadline,
    /// Whether the call arms the timer, or the attempt stops itself.
    timer: bool,
}

enum Stop {
    AttemptsExhausted,
    NotIdempotent,
    Budget,
    Deadline,
    Pushback(Duration),
}

impl Stop {
    fn reason(&self) -> &'static str {
        match self {
            Stop::AttemptsExhausted => "attempts exhausted",
            Stop::NotIdempotent => "not idempotent",
            Stop::Budget => "retry budget exhausted",
            Stop::Deadline => "no time left for another attempt",
            Stop::Pushback(_) => "server pushback beyond the deadline",
        }
    }
}

impl Resilience {
    /// The policies of `target` from its settings; every invalid value is an
    /// error naming its key. Instruments from the process-wide meter provider.
    pub fn new(
        target: impl Into<Arc<str>>,
        settings: &ResilienceSettings,
    ) -> Result<Self, SettingsError> {
        Self::with_meters(target, settings, &Meters::global())
    }

    /// [`new`](Self::new) with instruments from `meters`.
    pub fn with_meters(
        target: impl Into<Arc<str>>,
        settings: &ResilienceSettings,
        meters: &Meters,
    ) -> Result<Self, SettingsError> {
        // The outlier settings too, so that a bad one fails at start-up, not
        // when the first balancer asks for a detector.
        settings.check()?;
        let instruments = Instruments::new(target.into(), meters);
        Ok(Self {
            inner: Arc::new(Inner {
                total_timeout: settings.total_timeout,
                retry: RetryPolicy::from_settings(&settings.retry)?,
                budget: RetryBudget::new(&settings.budget)?,
                breaker: CircuitBreaker::with_instruments(instruments.clone(), &settings.breaker)?,
                hedge: HedgePolicy::new(&settings.hedge)?,
                outlier: settings.outlier.clone(),
                throttle: Arc::new(AdaptiveThrottle::new(&settings.throttle)?),
                bulkhead: Arc::new(Bulkhead::new(settings.max_concurrent_calls)),
                instruments,
            }),
        })
    }

    /// The same policies with another retry policy (a seeded backoff in tests).
    pub fn with_retry_policy(self, retry: RetryPolicy) -> Self {
        self.rebuild(|inner| inner.retry = retry)
    }

    /// The same policies drawing on `budget`, to share one budget between
    /// several policy sets (say the HTTP and the gRPC client of one target).
    pub fn with_budget(self, budget: RetryBudget) -> Self {
        self.rebuild(|inner| inner.budget = budget)
    }

    /// The same policies with `breaker` (shared like [`with_budget`](Self::with_budget)).
    pub fn with_breaker(self, breaker: CircuitBreaker) -> Self {
        self.rebuild(|inner| inner.breaker = breaker)
    }

    fn rebuild(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Inner {
            total_timeout: self.inner.total_timeout,
            retry: self.inner.retry.clone(),
            budget: self.inner.budget.clone(),
            breaker: self.inner.breaker.clone(),
            hedge: self.inner.hedge.clone(),
            outlier: self.inner.outlier.clone(),
            throttle: self.inner.throttle.clone(),
            bulkhead: self.inner.bulkhead.clone(),
            instruments: self.inner.instruments.clone(),
        };
        change(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The target's name.
    pub fn target(&self) -> &str {
        &self.inner.instruments.target
    }

    /// The target's retry budget (a shared handle).
    pub fn budget(&self) -> &RetryBudget {
        &self.inner.budget
    }

    /// The target's circuit breaker (a shared handle).
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.inner.breaker
    }

    /// The target's adaptive throttle (see [`AdaptiveThrottle`]).
    pub fn throttle(&self) -> &AdaptiveThrottle {
        &self.inner.throttle
    }

    /// A place for a new call in the target's bulkhead
    /// (`max_concurrent_calls`), held until the permit is dropped; `None`
    /// when it is full (counted in `platform.resilience.bulkhead.rejected`).
    pub fn enter_bulkhead(&self) -> Option<BulkheadPermit> {
        let permit = self.inner.bulkhead.try_acquire();
        if permit.is_none() {
            self.inner.instruments.bulkhead_full();
        }
        permit
    }

    /// The target's bulkhead.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.inner.bulkhead
    }

    /// Whether a new call may go out, or the throttle refuses it locally
    /// (counted in `platform.resilience.throttled`). A transport calls this
    /// once per call, before its first attempt, and reports the call's end
    /// to [`throttle`](Self::throttle) with [`AdaptiveThrottle::record`].
    pub fn admit_call(&self) -> bool {
        let admitted = self.inner.throttle.admit();
        if !admitted {
            self.inner.instruments.throttled();
        }
        admitted
    }

    /// A new outlier detector for the endpoints of this target, with its
    /// settings and metrics. Build one per endpoint pool (the balancer keeps
    /// it) and report each attempt's [`Classification::is_healthy`] to it.
    pub fn new_outlier_detector<K>(&self) -> OutlierDetector<K>
    where
        K: Eq + std::hash::Hash + Clone + std::fmt::Debug + Send + Sync + 'static,
    {
        OutlierDetector::with_instruments(self.inner.instruments.clone(), &self.inner.outlier)
            .expect("outlier settings were validated when the policies were built")
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// The attempt latency estimate hedging uses (fed only while hedging is on).
    pub fn latency(&self) -> &LatencyEstimate {
        self.inner.hedge.estimate()
    }

    /// The deadline a call with `options` gets now.
    pub fn deadline_for(&self, options: &CallOptions) -> Deadline {
        let own = Deadline::after(self.inner.total_timeout);
        let own = match options.deadline {
            Some(d) => own.min(d),
            None => own,
        };
        own.within_current()
    }

    /// Runs `attempt` until it succeeds or the policies say stop.
    ///
    /// Each attempt runs with the call's deadline installed as
    /// [`Deadline::current`] and is cancelled when it passes (or stops
    /// itself, with [`CallOptions::attempts_enforce_deadline`]). Between
    /// attempts the call sleeps the backoff, or the server's pushback when it
    /// fits in the deadline. When the policies stop after an attempt that
    /// returned `Ok` (say an HTTP 503 kept as a response) that value is the
    /// result, as with tower's `Retry`; failures returned as `Err` become a
    /// [`ResilienceError`] saying why the call stopped.
    pub async fn call<T, E, C, F, Fut>(
        &self,
        classifier: &C,
        options: &CallOptions,
        mut attempt: F,
    ) -> Result<T, ResilienceError<E>>
    where
        C: Classifier<T, E> + ?Sized,
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let inner = &*self.inner;
        let target = &inner.instruments.target;
        let deadline = self.deadline_for(options);
        let max_attempts = options
            .max_attempts
            .map_or(inner.retry.max_attempts(), |n| {
                n.clamp(1, inner.retry.max_attempts())
            });
        let hedging = options.idempotent && !options.no_hedge && inner.hedge.is_enabled();
        inner.budget.deposit();

        let mut attempts = 0u32;
        // Requeued attempts never reached a server: they use up no attempt.
        let mut requeues = 0u32;
        let mut last: Option<E> = None;
        loop {
            if deadline.is_expired() {
                return Err(self.deadline_exceeded(attempts, last));
            }
            let permit = match inner.breaker.try_acquire() {
                Ok(permit) => permit,
                Err(open) => {
                    tracing::debug!(resilience.target = %target, attempts, retry_in = ?open.retry_in, "circuit open: failing fast");
                    return Err(ResilienceError::CircuitOpen {
                        target: target.clone(),
                        attempts,
                        last,
                    });
                }
            };
            let limit = Limit {
                deadline,
                timer: !options.attempts_enforce_deadline,
            };
            let finished = if hedging && attempts - requeues + 1 < max_attempts {
                self.hedged_attempt(classifier, &mut attempt, &mut attempts, limit, permit)
                    .await
            } else {
                attempts += 1;
                let future = self.start(&mut attempt, attempts, false, deadline);
                self.finish(classifier, future, limit, permit).await
            };
            let Some((result, classification)) = finished else {
                return Err(self.deadline_exceeded(attempts, last));
            };
            let progress = Progress {
                attempts,
                requeues: &mut requeues,
                max_attempts,
                deadline,
            };
            match self.after_attempt(result, classification, options, progress) {
                Next::Done(result) => return result,
                Next::Again {
                    delay,
                    last: failed,
                } => {
                    last = failed;
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
    }

    /// What the call does after an attempt: return its result, requeue it
    /// at once elsewhere (it never reached a server), or retry after a delay.
    fn after_attempt<T, E>(
        &self,
        result: Result<T, E>,
        classification: Classification,
        options: &CallOptions,
        progress: Progress<'_>,
    ) -> Next<T, E> {
        let inner = &*self.inner;
        let target = &inner.instruments.target;
        let attempts = progress.attempts;
        let pushback = match classification.verdict {
            Verdict::Retryable { pushback } => pushback,
            verdict => {
                if verdict == Verdict::NotRetryable {
                    tracing::debug!(resilience.target = %target, attempts, "attempt failed: not retryable");
                }
                return Next::Done(result.map_err(|source| ResilienceError::NotRetryable {
                    target: target.clone(),
                    attempts,
                    source,
                }));
            }
        };
        if classification.requeue
            && classification.elsewhere
            && !options.no_requeue
            && *progress.requeues < inner.retry.max_requeues()
        {
            // Never reached a server: at once, to another endpoint, free.
            // With nowhere else to go it is an ordinary retry (backoff,
            // budget): sending it at once to the same place would fail alike.
            *progress.requeues += 1;
            inner.instruments.requeue();
            tracing::debug!(resilience.target = %target, attempt = attempts + 1, requeues = *progress.requeues, "requeueing: the attempt never reached a server");
            return Next::Again {
                delay: Duration::ZERO,
                last: result.err(),
            };
        }
        let used = attempts - *progress.requeues;
        let decision = if !options.idempotent && classification.may_have_reached_server {
            Err(Stop::NotIdempotent)
        } else if used >= progress.max_attempts {
            Err(Stop::AttemptsExhausted)
        } else {
            self.delay_before_retry(used, pushback, progress.deadline, classification.elsewhere)
        };
        let delay = match decision {
            Ok(delay) => delay,
            Err(stop) => return Next::Done(self.stop(stop, attempts, result)),
        };
        let reason = match (pushback, classification.elsewhere) {
            (Some(_), _) => "pushback",
            (None, true) => "elsewhere",
            (None, false) => "backoff",
        };
        inner.instruments.retry(delay.as_secs_f64(), reason);
        tracing::debug!(resilience.target = %target, attempt = attempts + 1, delay = ?delay, reason, "retrying");
        Next::Again {
            delay,
            last: result.err(),
        }
    }

    /// The sleep before the next attempt, or why there is none. A server's
    /// pushback always wins; otherwise a retry that goes to an endpoint the
    /// call has not tried sleeps nothing (backoff spares one struggling
    /// endpoint, and this one is not it), and any other sleeps the backoff.
    fn delay_before_retry(
        &self,
        attempts: u32,
        pushback: Option<Duration>,
        deadline: Deadline,
        elsewhere: bool,
    ) -> Result<Duration, Stop> {
        let remaining = deadline.remaining();
        let delay = match pushback {
            Some(pushback) if pushback >= remaining => return Err(Stop::Pushback(pushback)),
            Some(pushback) => pushback,
            None if elsewhere => Duration::ZERO,
            None => self.inner.retry.backoff().delay(attempts),
        };
        if delay >= remaining {
            return Err(Stop::Deadline);
        }
        // The budget is asked last, so that a retry that cannot happen anyway
        // does not take a token from the calls that could use it.
        if !self.inner.budget.try_withdraw() {
            self.inner.instruments.budget_exhausted("retry");
            return Err(Stop::Budget);
        }
        Ok(delay)
    }

    fn stop<T, E>(
        &self,
        stop: Stop,
        attempts: u32,
        result: Result<T, E>,
    ) -> Result<T, ResilienceError<E>> {
        let target = self.inner.instruments.target.clone();
        tracing::debug!(resilience.target = %target, attempts, reason = stop.reason(), "not retrying");
        if matches!(stop, Stop::Deadline | Stop::Pushback(_)) {
            self.inner.instruments.deadline_exceeded();
        }
        // A failure kept as a value (an HTTP 503 response) is the answer.
        let last = match result {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        // One arm a line: which error each stop gives reads as a table.
        #[rustfmt::skip]
        let error = match stop {
            Stop::AttemptsExhausted => ResilienceError::AttemptsExhausted { target, attempts, last },
            Stop::NotIdempotent => ResilienceError::NotIdempotent { target, attempts, source: last },
            Stop::Budget => ResilienceError::BudgetExhausted { target, attempts, last },
            Stop::Deadline => ResilienceError::DeadlineExceeded { target, attempts, last: Some(last) },
            Stop::Pushback(pushback) => {
                ResilienceError::PushbackBeyondDeadline { target, attempts, pushback, last }
            }
        };
        Err(error)
    }

    fn deadline_exceeded<E>(&self, attempts: u32, last: Option<E>) -> ResilienceError<E> {
        let target = self.inner.instruments.target.clone();
        tracing::debug!(resilience.target = %target, attempts, "deadline exceeded");
        self.inner.instruments.deadline_exceeded();
        ResilienceError::DeadlineExceeded {
            target,
            attempts,
            last,
        }
    }

    /// Starts attempt `number`: counts it and asks the closure for its future.
    ///
    /// The future goes on the heap: the call's own state then stays small
    /// whatever an attempt holds (a hedged call holds two, and every layer
    /// an attempt passes through would otherwise hold another copy of its
    /// size), and moving the call, as boxing it does, stays cheap.
    fn start<T, E, F, Fut>(
        &self,
        make: &mut F,
        number: u32,
        hedge: bool,
        deadline: Deadline,
    ) -> Pin<Box<Fut>>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.inner.instruments.attempt();
        tracing::debug!(resilience.target = %self.inner.instruments.target, attempt = number, hedge, "attempt");
        Box::pin(make(Attempt {
            number,
            deadline,
            hedge,
        }))
    }

    /// Runs an attempt's future within the deadline, classifies the result
    /// and reports it to the breaker.
    async fn finish<T, E, C, Fut>(
        &self,
        classifier: &C,
        future: Fut,
        limit: Limit,
        permit: super::BreakerPermit,
    ) -> Finished<T, E>
    where
        C: Classifier<T, E> + ?Sized,
        Fut: Future<Output = Result<T, E>>,
    {
        let inner = &*self.inner;
        let deadline = limit.deadline;
        // The clock is read only when the estimate needs it.
        let started = inner.hedge.is_enabled().then(Instant::now);
        let result = if limit.timer {
            // `None` when the timer cut the attempt short.
            tokio::time::timeout_at(deadline.instant(), deadline.scope(future))
                .await
                .ok()
        } else {
            Some(deadline.scope(future).await)
                .filter(|result| result.is_ok() || !deadline.is_expired())
        };
        let Some(result) = result else {
            permit.record(false);
            return None;
        };
        let classification = classifier.classify(&result);
        permit.record(classification.is_healthy());
        if let Some(started) = started
            && classification.verdict == Verdict::Success
        {
            inner.hedge.estimate().record(started.elapsed());
        }
        Some((result, classification))
    }

    /// An attempt that gets a second, racing one if it is slower than the
    /// estimated quantile and the budget and breaker allow it. The first
    /// answer that is not a retryable failure wins; the other attempt is
    /// cancelled by dropping its future.
    async fn hedged_attempt<T, E, C, F, Fut>(
        &self,
        classifier: &C,
        make: &mut F,
        attempts: &mut u32,
        limit: Limit,
        permit: super::BreakerPermit,
    ) -> Finished<T, E>
    where
        C: Classifier<T, E> + ?Sized,
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let inner = &*self.inner;
        let deadline = limit.deadline;
        *attempts += 1;
        let first_future = self.start(make, *attempts, false, deadline);
        let mut first = pin!(self.finish(classifier, first_future, limit, permit));
        let Some(hedge_delay) = inner.hedge.delay() else {
            return first.await;
        };
        tokio::select! {
            biased;
            finished = &mut first => return finished,
            () = tokio::time::sleep(hedge_delay) => {}
        }
        if deadline.is_expired() {
            return first.await;
        }
        let Ok(second_permit) = inner.breaker.try_acquire() else {
            return first.await;
        };
        if !inner.budget.try_withdraw() {
            inner.instruments.budget_exhausted("hedge");
            tracing::debug!(resilience.target = %inner.instruments.target, "not hedging: retry budget exhausted");
            drop(second_permit);
            return first.await;
        }
        *attempts += 1;
        inner.instruments.hedge();
        tracing::debug!(resilience.target = %inner.instruments.target, attempt = *attempts, after = ?hedge_delay, "hedging: second attempt sent");
        let second_future = self.start(make, *attempts, true, deadline);
        let mut second = pin!(self.finish(classifier, second_future, limit, second_permit));

        let wins = |finished: &Finished<T, E>| matches!(finished, Some((_, c)) if !matches!(c.verdict, Verdict::Retryable { .. }));
        let (mut first_pending, mut second_pending) = (true, true);
        let mut fallback: Finished<T, E> = None;
        loop {
            let finished = tokio::select! {
                finished = &mut first, if first_pending => {
                    first_pending = false;
                    finished
                }
                finished = &mut second, if second_pending => {
                    second_pending = false;
                    finished
                }
            };
            if wins(&finished) || (!first_pending && !second_pending) {
                // Keep a completed failure over a timeout: it says more.
                return if finished.is_some() {
                    finished
                } else {
                    fallback
                };
            }
            if finished.is_some() {
                fallback = finished;
            }
        }
    }
}

/// Where a call stands after an attempt (see `Resilience::after_attempt`).
struct Progress<'a> {
    attempts: u32,
    /// Requeued attempts never reached a server: they use up no attempt.
    requeues: &'a mut u32,
    max_attempts: u32,
    deadline: Deadline,
}

/// What the call does next.
enum Next<T, E> {
    /// Ends with this.
    Done(Result<T, ResilienceError<E>>),
    /// Another attempt after `delay`; `last` is the failure that stands until then.
    Again { delay: Duration, last: Option<E> },
}
