//! The per-target circuit breaker: fail fast while the whole target is down.
//!
//! Closed, it lets everything through and counts consecutive failed
//! attempts, and attempts and failures over a rolling window. It opens when
//! both say the target is down: a run of `consecutive_failures` failures,
//! and at least `failure_ratio` of the window's attempts failed (Hystrix's
//! error threshold). Open, attempts fail at once without touching the
//! network (Nygard's *Release It!*; Hystrix, Envoy, resilience4j). After
//! `open_duration` it turns half-open and lets at most `half_open_probes`
//! attempts through per `open_duration` interval; a successful probe closes
//! it, a failed one opens it again.
//!
//! Why both: a run alone opened the breaker of a three-instance target when
//! one instance hung, since its attempts time out together, in a burst, while
//! the other two answered. A ratio alone would let a target that answers one
//! call in three keep its breaker closed after minutes of failures... which is
//! right: a third of the calls still succeed, and ejection handles the rest.
//!
//! Closed is the common case and costs a clock read and a few atomic
//! operations per attempt; the lock is taken only around state changes and
//! while open or half-open.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::resilience::window::RollingCounts;

use crate::resilience::metrics::Instruments;
use crate::resilience::{BreakerSettings, SettingsError};

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Everything goes through.
    Closed,
    /// Attempts fail fast.
    Open,
    /// A bounded number of probes go through; the rest fail fast.
    HalfOpen,
}

impl BreakerState {
    fn name(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// The breaker refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open; next probe in {retry_in:?}")]
pub struct BreakerOpen {
    /// Time before the breaker lets a probe through, as far as it knows now.
    pub retry_in: Duration,
}

/// A per-target circuit breaker, shared by every call to the target (cheap to clone).
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("target", &self.inner.instruments.target)
            .field("state", &self.state())
            .finish()
    }
}

struct Inner {
    enabled: bool,
    threshold: u32,
    open_duration: Duration,
    probes: u32,
    /// True while closed: the lock-free fast path.
    closed: AtomicBool,
    consecutive_failures: AtomicU32,
    failure_ratio: f64,
    window: Window,
    state: Mutex<State>,
    instruments: Instruments,
}

/// Attempts and failures over a rolling window: two buckets of half the
/// window each, the current and the previous one (so the count covers
/// between half and all of the window).
struct Window(RollingCounts<2>);

impl Window {
    fn new(window: Duration, now: Instant) -> Self {
        Window(RollingCounts::new(window, now))
    }

    fn record(&self, now: Instant, failed: bool) {
        self.0.record(now, failed);
    }

    /// The share of the window's attempts that failed.
    fn failure_ratio(&self, now: Instant) -> f64 {
        match self.0.counts(now) {
            (0, _) => 0.0,
            (attempts, failures) => failures as f64 / attempts as f64,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        interval_start: Instant,
        probes_sent: u32,
    },
}

impl State {
    fn public(&self) -> BreakerState {
        match self {
            Self::Closed => BreakerState::Closed,
            Self::Open { .. } => BreakerState::Open,
            Self::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// Leave to make one attempt. Report its outcome with
/// [`record`](BreakerPermit::record); a permit dropped unreported (a cancelled
/// attempt, a hedging loser) counts neither way.
#[derive(Debug)]
#[must_use = "report the attempt's outcome with record()"]
pub struct BreakerPermit {
    breaker: Option<CircuitBreaker>,
    probe: bool,
}

impl BreakerPermit {
    /// Reports whether the attempt showed the target healthy.
    pub fn record(self, healthy: bool) {
        if let Some(breaker) = &self.breaker {
            breaker.inner.record(healthy, self.probe);
        }
    }

    /// Whether this attempt is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

impl CircuitBreaker {
    /// A breaker for `target`. Errors when a threshold, the open duration or
    /// the probe count is zero.
    pub fn new(
        target: impl Into<Arc<str>>,
        settings: &BreakerSettings,
    ) -> Result<Self, SettingsError> {
        Self::with_instruments(
            Instruments::new(target.into(), &crate::Meters::global()),
            settings,
        )
    }

    pub(crate) fn with_instruments(
        instruments: Instruments,
        settings: &BreakerSettings,
    ) -> Result<Self, SettingsError> {
        settings.check()?;
        let breaker = Self {
            inner: Arc::new(Inner {
                enabled: settings.enabled,
                threshold: settings.consecutive_failures,
                open_duration: settings.open_duration,
                probes: settings.half_open_probes,
                closed: AtomicBool::new(true),
                consecutive_failures: AtomicU32::new(0),
                failure_ratio: settings.failure_ratio,
                window: Window::new(settings.window, Instant::now()),
                state: Mutex::new(State::Closed),
                instruments,
            }),
        };
        breaker.register_state_gauge();
        Ok(breaker)
    }

    /// `platform.resilience.breaker.state`: 0 closed, 1 half-open, 2 open,
    /// read when metrics are collected. The callback holds the breaker
    /// weakly: a dropped breaker stops reporting.
    fn register_state_gauge(&self) {
        let weak = Arc::downgrade(&self.inner);
        let attribute =
            opentelemetry::KeyValue::new("target", self.inner.instruments.target.clone());
        self.inner
            .instruments
            .meter
            .u64_observable_gauge("platform.resilience.breaker.state")
            .with_description(
                "State of the target's circuit breaker: 0 closed, 1 half-open, 2 open.",
            )
            .with_callback(move |observer| {
                if let Some(inner) = weak.upgrade() {
                    let state = CircuitBreaker { inner }.state();
                    let value = match state {
                        BreakerState::Closed => 0,
                        BreakerState::HalfOpen => 1,
                        BreakerState::Open => 2,
                    };
                    observer.observe(value, std::slice::from_ref(&attribute));
                }
            })
            .build();
    }

    /// The breaker's state now (an open breaker whose time is up reads half-open).
    pub fn state(&self) -> BreakerState {
        if self.inner.closed.load(Ordering::Acquire) {
            return BreakerState::Closed;
        }
        let mut state = self.inner.lock();
        self.inner.refresh(&mut state, Instant::now());
        state.public()
    }

    /// Asks to make one attempt: a permit, or [`BreakerOpen`] to fail fast.
    pub fn try_acquire(&self) -> Result<BreakerPermit, BreakerOpen> {
        if !self.inner.enabled {
            return Ok(BreakerPermit {
                breaker: None,
                probe: false,
            });
        }
        if self.inner.closed.load(Ordering::Acquire) {
            return Ok(self.permit(false));
        }
        let now = Instant::now();
        let mut state = self.inner.lock();
        self.inner.refresh(&mut state, now);
        match &mut *state {
            State::Closed => Ok(self.permit(false)),
            State::Open { until } => Err(self.inner.reject(until.saturating_duration_since(now))),
            State::HalfOpen {
                interval_start,
                probes_sent,
            } => {
                if *probes_sent < self.inner.probes {
                    *probes_sent += 1;
                    tracing::debug!(resilience.target = %self.inner.instruments.target, probe = *probes_sent, "circuit half-open: probe let through");
                    Ok(self.permit(true))
                } else {
                    let next = *interval_start + self.inner.open_duration;
                    Err(self.inner.reject(next.saturating_duration_since(now)))
                }
            }
        }
    }

    fn permit(&self, probe: bool) -> BreakerPermit {
        BreakerPermit {
            breaker: Some(self.clone()),
            probe,
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn reject(&self, retry_in: Duration) -> BreakerOpen {
        self.instruments.breaker_rejection();
        BreakerOpen { retry_in }
    }

    /// Moves on time-driven transitions: open → half-open, and a new probe
    /// interval while half-open.
    fn refresh(&self, state: &mut State, now: Instant) {
        match *state {
            State::Open { until } if now >= until => {
                self.transition(
                    state,
                    State::HalfOpen {
                        interval_start: now,
                        probes_sent: 0,
                    },
                );
            }
            State::HalfOpen { interval_start, .. }
                if now >= interval_start + self.open_duration =>
            {
                *state = State::HalfOpen {
                    interval_start: now,
                    probes_sent: 0,
                };
            }
            _ => {}
        }
    }

    fn record(&self, healthy: bool, probe: bool) {
        let now = Instant::now();
        self.window.record(now, !healthy);
        if healthy {
            if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
            if !self.closed.load(Ordering::Acquire) {
                let mut state = self.lock();
                if matches!(*state, State::HalfOpen { .. }) {
                    self.transition(&mut state, State::Closed);
                }
            }
            return;
        }
        if probe {
            let mut state = self.lock();
            if matches!(*state, State::HalfOpen { .. }) {
                let until = Instant::now() + self.open_duration;
                self.transition(&mut state, State::Open { until });
            }
            return;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.threshold
            && self.closed.load(Ordering::Acquire)
            && self.window.failure_ratio(now) >= self.failure_ratio
        {
            let mut state = self.lock();
            if matches!(*state, State::Closed) {
                let until = now + self.open_duration;
                self.transition(&mut state, State::Open { until });
            }
        }
    }

    fn transition(&self, state: &mut State, to: State) {
        let from = state.public();
        *state = to;
        let to = to.public();
        self.closed
            .store(to == BreakerState::Closed, Ordering::Release);
        if to == BreakerState::Closed {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        self.instruments.breaker_transition(from.name(), to.name());
        let target = &self.instruments.target;
        match to {
            BreakerState::Open => {
                tracing::warn!(resilience.target = %target, from = from.name(), to = to.name(), open_for = ?self.open_duration, "circuit breaker opened: failing fast")
            }
            BreakerState::HalfOpen => {
                tracing::info!(resilience.target = %target, from = from.name(), to = to.name(), "circuit breaker half-open: probing")
            }
            BreakerState::Closed => {
                tracing::info!(resilience.target = %target, from = from.name(), to = to.name(), "circuit breaker closed: target recovered")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, probes: u32) -> CircuitBreaker {
        CircuitBreaker::new(
            "orders",
            &BreakerSettings {
                consecutive_failures: threshold,
                half_open_probes: probes,
                open_duration: Duration::from_secs(5),
                ..BreakerSettings::default()
            },
        )
        .unwrap()
    }

    fn fail(b: &CircuitBreaker, n: u32) {
        for _ in 0..n {
            b.try_acquire().unwrap().record(false);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_only() {
        let b = breaker(3, 1);
        fail(&b, 2);
        b.try_acquire().unwrap().record(true);
        fail(&b, 2);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, 1);
        assert_eq!(b.state(), BreakerState::Open);
        let refused = b.try_acquire().unwrap_err();
        assert_eq!(refused.retry_in, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_failures_among_successes_does_not_open_it() {
        // One endpoint of three hangs: its attempts time out together, a
        // run of failures, while the other two keep answering.
        let b = breaker(10, 1);
        for _ in 0..200 {
            b.try_acquire().unwrap().record(true);
            tokio::time::advance(Duration::from_millis(5)).await;
        }
        fail(&b, 40);
        assert_eq!(b.state(), BreakerState::Closed, "40 of 240 failed");
        // The whole target goes down: once failures outnumber the window's
        // successes, the run opens it.
        for _ in 0..400 {
            if b.state() == BreakerState::Open {
                break;
            }
            b.try_acquire().unwrap().record(false);
            tokio::time::advance(Duration::from_millis(5)).await;
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_forgets_what_is_older_than_it() {
        let b = breaker(5, 1);
        for _ in 0..1000 {
            b.try_acquire().unwrap().record(true);
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        fail(&b, 5);
        assert_eq!(b.state(), BreakerState::Open, "the successes are 6 s old");
    }

    #[test]
    fn impossible_ratio_or_window_is_refused_by_key() {
        for (ratio, window, key) in [
            (0.0, Duration::from_secs(5), "breaker.failure_ratio"),
            (1.5, Duration::from_secs(5), "breaker.failure_ratio"),
            (f64::NAN, Duration::from_secs(5), "breaker.failure_ratio"),
            (0.5, Duration::from_millis(500), "breaker.window"),
        ] {
            let settings = BreakerSettings {
                failure_ratio: ratio,
                window,
                ..BreakerSettings::default()
            };
            let error = CircuitBreaker::new("orders", &settings).unwrap_err();
            assert!(error.to_string().contains(key), "{error}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_a_bounded_number_of_probes_per_interval() {
        let b = breaker(1, 2);
        fail(&b, 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        assert!(p1.is_probe() && p2.is_probe());
        assert!(
            b.try_acquire().is_err(),
            "a third probe in the same interval"
        );
        // Probes that never report (cancelled) do not block the next interval.
        drop((p1, p2));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(b.try_acquire().is_ok());
        assert!(b.try_acquire().is_ok());
        assert!(b.try_acquire().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_and_successful_probe_closes() {
        let b = breaker(2, 1);
        fail(&b, 2);
        tokio::time::advance(Duration::from_secs(5)).await;
        b.try_acquire().unwrap().record(false);
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(1)).await;
        let probe = b.try_acquire().unwrap();
        probe.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
        // Closed again with a fresh failure count.
        fail(&b, 1);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_breaker_never_opens() {
        let b = CircuitBreaker::new(
            "orders",
            &BreakerSettings {
                enabled: false,
                ..BreakerSettings::default()
            },
        )
        .unwrap();
        fail(&b, 1000);
        assert!(b.try_acquire().is_ok());
    }

    #[test]
    fn impossible_breakers_are_errors() {
        let bad = |s: BreakerSettings| CircuitBreaker::new("t", &s).unwrap_err().key;
        let d = BreakerSettings::default;
        assert_eq!(
            bad(BreakerSettings {
                consecutive_failures: 0,
                ..d()
            }),
            "breaker.consecutive_failures"
        );
        assert_eq!(
            bad(BreakerSettings {
                open_duration: Duration::ZERO,
                ..d()
            }),
            "breaker.open_duration"
        );
        assert_eq!(
            bad(BreakerSettings {
                half_open_probes: 0,
                ..d()
            }),
            "breaker.half_open_probes"
        );
    }
}
