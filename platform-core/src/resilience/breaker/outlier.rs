//! Per-endpoint outlier ejection (Envoy's outlier detection).
//!
//! An endpoint is taken out of the pool for `base_ejection_time` when it
//! fails `consecutive_failures` attempts in a row, when it refuses a
//! connection (nothing listens there: every request sent to it would be
//! refused too), or when its success rate over the last window falls well
//! below its peers' (an instance failing a quarter of its requests never
//! fails five in a row); every further ejection in a row
//! lasts one `base_ejection_time` longer, up to `max_ejection_time` (30 s,
//! 60 s, 90 s, ... 300 s with the defaults, as Envoy does). Each
//! `base_ejection_time` an endpoint then spends back in the pool takes one
//! step off that growth, so a endpoint that recovered for good starts again
//! from 30 s. At most `max_ejection_share` of the endpoints are ejected at
//! once, rounded down: ejection never empties a pool, and a sick pool is the
//! circuit breaker's business, not the balancer's.
//!
//! The detector is generic over the endpoint key (a `SocketAddr`, a URL, an
//! id) and knows nothing of transports: the caller reports each attempt's
//! outcome and asks before picking an endpoint.

use std::collections::HashMap;

/// The detector's endpoints and their state, looked up on every outcome
/// (see [`EndpointMap`](crate::discovery::EndpointMap) for the hasher).
type Pool<K> = HashMap<K, Endpoint, foldhash::quality::RandomState>;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

#[cfg(test)]
use crate::resilience::SuccessRateSettings;
use crate::resilience::metrics::Instruments;
use crate::resilience::{OutlierSettings, SettingsError};

/// Outlier detection over the endpoints of one target (cheap to clone, shared).
///
/// ```
/// use platform_core::resilience::{OutlierDetector, OutlierSettings};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let detector = OutlierDetector::new("inventory", &OutlierSettings::default()).unwrap();
/// detector.set_endpoints(["10.0.0.1:80", "10.0.0.2:80"]);
/// for _ in 0..5 {
///     detector.record(&"10.0.0.1:80", false);
/// }
/// assert!(detector.is_ejected(&"10.0.0.1:80"));
/// assert!(!detector.is_ejected(&"10.0.0.2:80"));
/// # }
/// ```
pub struct OutlierDetector<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for OutlierDetector<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Debug> Debug for OutlierDetector<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutlierDetector")
            .field("target", &self.inner.instruments.target)
            .finish_non_exhaustive()
    }
}

struct Inner<K> {
    enabled: bool,
    threshold: u32,
    base: Duration,
    max: Duration,
    max_share: f64,
    eject_refused: bool,
    success_rate: SuccessRate,
    endpoints: Mutex<Pool<K>>,
    instruments: Instruments,
}

/// The success-rate rule, with its window as a clock origin.
#[derive(Debug, Clone, Copy)]
struct SuccessRate {
    enabled: bool,
    origin: Instant,
    window: Duration,
    min_requests: u64,
    /// An endpoint below this share of its peers' success rate is ejected.
    floor: f64,
}

impl SuccessRate {
    fn epoch(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since / self.window.as_nanos().max(1)).unwrap_or(u64::MAX)
    }
}

/// What one attempt showed about the endpoint it went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointOutcome {
    /// An answer that shows the endpoint working.
    Success,
    /// A failure that may be the endpoint's (an error status, a timeout).
    Failure,
    /// The endpoint refused the connection: nothing listens there.
    Refused,
}

/// Why an endpoint was ejected (the `cause` attribute of
/// `platform.resilience.ejections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectionCause {
    /// `consecutive_failures` failures in a row.
    ConsecutiveFailures,
    /// It refused a connection.
    Refused,
    /// Its success rate fell well below its peers'.
    SuccessRate,
}

impl EjectionCause {
    /// The cause as a metric attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConsecutiveFailures => "consecutive_failures",
            Self::Refused => "refused",
            Self::SuccessRate => "success_rate",
        }
    }
}

#[derive(Debug, Default)]
struct Endpoint {
    consecutive_failures: u32,
    ejected_until: Option<Instant>,
    /// Ejections in a row, decayed while the endpoint stays in the pool.
    ejections: u32,
    /// When the endpoint last came back from an ejection.
    returned_at: Option<Instant>,
    /// Attempts and failures of this window and the previous one.
    counts: Counts,
}

/// Attempts and failures over a tumbling window, with the previous window's
/// kept, so that a judgement covers between one and two windows.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    epoch: u64,
    attempts: u64,
    failures: u64,
    previous_attempts: u64,
    previous_failures: u64,
}

impl Counts {
    fn roll(&mut self, epoch: u64) {
        if epoch == self.epoch {
            return;
        }
        if epoch == self.epoch + 1 {
            self.previous_attempts = self.attempts;
            self.previous_failures = self.failures;
        } else {
            self.previous_attempts = 0;
            self.previous_failures = 0;
        }
        self.attempts = 0;
        self.failures = 0;
        self.epoch = epoch;
    }

    fn record(&mut self, epoch: u64, failed: bool) {
        self.roll(epoch);
        self.attempts += 1;
        self.failures += u64::from(failed);
    }

    /// (attempts, failures) over the window and the previous one, as of `epoch`.
    fn totals(&self, epoch: u64) -> (u64, u64) {
        match epoch.checked_sub(self.epoch) {
            Some(0) => (
                self.attempts + self.previous_attempts,
                self.failures + self.previous_failures,
            ),
            Some(1) => (self.attempts, self.failures),
            _ => (0, 0),
        }
    }
}

impl<K> OutlierDetector<K>
where
    K: Eq + Hash + Clone + Debug + Send + Sync + 'static,
{
    /// A detector for the endpoints of `target`. Errors when the threshold or
    /// the base ejection time is zero, the maximum is below the base, or the
    /// share is not between 0 and 1.
    pub fn new(
        target: impl Into<Arc<str>>,
        settings: &OutlierSettings,
    ) -> Result<Self, SettingsError> {
        let instruments = Instruments::new(target.into(), &crate::Meters::global());
        Self::with_instruments(instruments, settings)
    }

    pub(crate) fn with_instruments(
        instruments: Instruments,
        settings: &OutlierSettings,
    ) -> Result<Self, SettingsError> {
        settings.check()?;
        let rate = &settings.success_rate;
        let detector = Self {
            inner: Arc::new(Inner {
                success_rate: SuccessRate {
                    enabled: rate.enabled,
                    origin: Instant::now(),
                    window: rate.window,
                    min_requests: u64::from(rate.min_requests),
                    floor: 1.0 - rate.drop,
                },
                enabled: settings.enabled,
                threshold: settings.consecutive_failures,
                base: settings.base_ejection_time,
                max: settings.max_ejection_time,
                max_share: settings.max_ejection_share,
                eject_refused: settings.eject_refused,
                endpoints: Mutex::new(Pool::default()),
                instruments,
            }),
        };
        detector.register_ejection_gauge();
        Ok(detector)
    }

    /// `platform.resilience.endpoint.ejected`: 1 for each endpoint ejected
    /// now, 0 for each in the pool, read when metrics are collected (the
    /// callback holds the detector weakly).
    fn register_ejection_gauge(&self) {
        let weak = Arc::downgrade(&self.inner);
        let target = opentelemetry::KeyValue::new("target", self.inner.instruments.target.clone());
        self.inner
            .instruments
            .meter
            .u64_observable_gauge("platform.resilience.endpoint.ejected")
            .with_description(
                "1 while outlier detection keeps the endpoint out of the pool, else 0.",
            )
            .with_callback(move |observer| {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let now = Instant::now();
                let mut map = inner.lock();
                inner.expire(&mut map, now);
                for (key, state) in map.iter() {
                    let attributes = [
                        target.clone(),
                        opentelemetry::KeyValue::new("endpoint", format!("{key:?}")),
                    ];
                    observer.observe(u64::from(state.ejected_until.is_some()), &attributes);
                }
            })
            .build();
    }

    /// Makes the pool exactly `endpoints` (as discovery reports it): new ones
    /// are added, gone ones forgotten, the others keep their history.
    pub fn set_endpoints(&self, endpoints: impl IntoIterator<Item = K>) {
        let mut map = self.inner.lock();
        let mut next = Pool::with_capacity_and_hasher(map.len(), Default::default());
        for key in endpoints {
            let state = map.remove(&key).unwrap_or_default();
            next.insert(key, state);
        }
        *map = next;
    }

    /// Reports one attempt's outcome on `endpoint` (an unknown endpoint joins
    /// the pool). Returns true when this report ejected it.
    pub fn record(&self, endpoint: &K, healthy: bool) -> bool {
        let outcome = if healthy {
            EndpointOutcome::Success
        } else {
            EndpointOutcome::Failure
        };
        self.record_outcome(endpoint, outcome).is_some()
    }

    /// Reports one attempt's outcome on `endpoint` (an unknown endpoint joins
    /// the pool). Returns why this report ejected it, if it did.
    pub fn record_outcome(&self, endpoint: &K, outcome: EndpointOutcome) -> Option<EjectionCause> {
        if !self.inner.enabled {
            return None;
        }
        let now = Instant::now();
        let rate = self.inner.success_rate;
        let epoch = rate.epoch(now);
        let mut map = self.inner.lock();
        // Only this endpoint is looked at on the common path; the whole pool
        // only when an ejection may be due.
        let (cause, own) = {
            let state = map.entry(endpoint.clone()).or_default();
            self.inner.expire_one(endpoint, state, now);
            let failed = outcome != EndpointOutcome::Success;
            if state.ejected_until.is_some() {
                // Late answers from an ejected endpoint change nothing.
                return None;
            }
            state.counts.record(epoch, failed);
            if !failed {
                state.consecutive_failures = 0;
                return None;
            }
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
            let cause = if outcome == EndpointOutcome::Refused && self.inner.eject_refused {
                Some(EjectionCause::Refused)
            } else if state.consecutive_failures >= self.inner.threshold {
                Some(EjectionCause::ConsecutiveFailures)
            } else {
                None
            };
            (cause, state.counts.totals(epoch))
        };
        let cause = cause.or_else(|| {
            self.inner
                .below_peers(&map, endpoint, own, epoch)
                .then_some(EjectionCause::SuccessRate)
        })?;
        self.inner
            .eject(&mut map, endpoint, cause, now)
            .then_some(cause)
    }

    /// Whether `endpoint` is ejected now (an ejection whose time is up ends here).
    pub fn is_ejected(&self, endpoint: &K) -> bool {
        let now = Instant::now();
        let mut map = self.inner.lock();
        match map.get_mut(endpoint) {
            Some(state) => {
                self.inner.expire_one(endpoint, state, now);
                state.ejected_until.is_some()
            }
            None => false,
        }
    }

    /// How long `endpoint` stays ejected, if it is.
    pub fn ejected_for(&self, endpoint: &K) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.inner.lock();
        let state = map.get_mut(endpoint)?;
        self.inner.expire_one(endpoint, state, now);
        state
            .ejected_until
            .map(|until| until.saturating_duration_since(now))
    }

    /// The endpoints ejected now.
    pub fn ejected(&self) -> Vec<K> {
        let now = Instant::now();
        let mut map = self.inner.lock();
        self.inner.expire(&mut map, now);
        map.iter()
            .filter(|(_, e)| e.ejected_until.is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }
}

impl<K: Debug + Eq + Hash> Inner<K> {
    /// Whether `endpoint`, with `own` (attempts, failures) in the window,
    /// succeeds well below the other endpoints in the pool.
    fn below_peers(&self, map: &Pool<K>, endpoint: &K, own: (u64, u64), epoch: u64) -> bool {
        let rate = &self.success_rate;
        let (attempts, failures) = own;
        if !rate.enabled || attempts < rate.min_requests {
            return false;
        }
        let own_rate = 1.0 - failures as f64 / attempts as f64;
        // Even a perfect pool would not judge it below its floor: no scan.
        if own_rate >= rate.floor {
            return false;
        }
        let (peer_attempts, peer_failures) = map
            .iter()
            .filter(|(key, state)| *key != endpoint && state.ejected_until.is_none())
            .map(|(_, state)| state.counts.totals(epoch))
            .fold((0, 0), |(a, f), (pa, pf)| (a + pa, f + pf));
        if peer_attempts < rate.min_requests {
            return false;
        }
        let peers_rate = 1.0 - peer_failures as f64 / peer_attempts as f64;
        own_rate < peers_rate * rate.floor
    }

    /// Ejects `endpoint` for `cause` unless the pool's share of ejected
    /// endpoints is reached. Returns whether it did.
    fn eject(&self, map: &mut Pool<K>, endpoint: &K, cause: EjectionCause, now: Instant) -> bool {
        self.expire(map, now);
        let pool = map.len();
        let ejected_now = map.values().filter(|e| e.ejected_until.is_some()).count();
        let Some(state) = map.get_mut(endpoint) else {
            return false;
        };
        let allowed = (self.max_share * pool as f64).floor() as usize;
        if ejected_now + 1 > allowed {
            self.instruments.ejection_skipped();
            tracing::debug!(
                resilience.target = %self.instruments.target, endpoint = ?endpoint, cause = cause.as_str(),
                ejected = ejected_now, pool, "endpoint failing but not ejected: ejection share reached"
            );
            return false;
        }
        if let Some(returned) = state.returned_at {
            let periods = now.saturating_duration_since(returned).as_nanos() / self.base.as_nanos();
            state.ejections = state
                .ejections
                .saturating_sub(u32::try_from(periods).unwrap_or(u32::MAX));
        }
        state.ejections = state.ejections.saturating_add(1);
        let duration = self.base.saturating_mul(state.ejections).min(self.max);
        state.ejected_until = Some(now + duration);
        state.consecutive_failures = 0;
        // Back in the pool, it is judged on what it does then.
        state.counts = Counts::default();
        self.instruments.ejection(cause.as_str());
        tracing::warn!(
            resilience.target = %self.instruments.target, endpoint = ?endpoint, cause = cause.as_str(),
            ejection = state.ejections, duration = ?duration, "endpoint ejected"
        );
        true
    }
}

impl<K: Debug> Inner<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pool<K>> {
        self.endpoints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn expire(&self, map: &mut Pool<K>, now: Instant) {
        for (key, state) in map.iter_mut() {
            self.expire_one(key, state, now);
        }
    }

    fn expire_one(&self, key: &K, state: &mut Endpoint, now: Instant) {
        if let Some(until) = state.ejected_until
            && now >= until
        {
            state.ejected_until = None;
            state.returned_at = Some(now);
            state.consecutive_failures = 0;
            tracing::info!(resilience.target = %self.instruments.target, endpoint = ?key, "ejected endpoint back in the pool");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector() -> OutlierDetector<u32> {
        let d = OutlierDetector::new("inventory", &OutlierSettings::default()).unwrap();
        d.set_endpoints(0..10);
        d
    }

    fn fail(d: &OutlierDetector<u32>, key: u32, n: u32) -> bool {
        (0..n)
            .map(|_| d.record(&key, false))
            .fold(false, |a, b| a | b)
    }

    #[tokio::test(start_paused = true)]
    async fn five_consecutive_failures_eject() {
        let d = detector();
        assert!(!fail(&d, 1, 4));
        d.record(&1, true);
        assert!(!fail(&d, 1, 4));
        assert!(!d.is_ejected(&1));
        assert!(fail(&d, 1, 1));
        assert!(d.is_ejected(&1));
        assert_eq!(d.ejected_for(&1), Some(Duration::from_secs(30)));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!d.is_ejected(&1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_connection_ejects_at_once() {
        let d = detector();
        assert_eq!(
            d.record_outcome(&4, EndpointOutcome::Refused),
            Some(EjectionCause::Refused)
        );
        assert!(d.is_ejected(&4));
        let settings = OutlierSettings {
            eject_refused: false,
            ..OutlierSettings::default()
        };
        let off = OutlierDetector::new("inventory", &settings).unwrap();
        off.set_endpoints(0..10);
        assert_eq!(off.record_outcome(&4, EndpointOutcome::Refused), None);
        assert!(!off.is_ejected(&4));
    }

    /// Sends `n` attempts to each of `keys` in turn, failing every
    /// `fail_every`-th one on `flaky`; returns the first ejection's cause.
    fn traffic(
        d: &OutlierDetector<u32>,
        keys: &[u32],
        flaky: u32,
        fail_every: u32,
        n: u32,
    ) -> Option<(u32, EjectionCause)> {
        for i in 0..n {
            for key in keys {
                let failed = *key == flaky && i % fail_every == 0;
                let outcome = if failed {
                    EndpointOutcome::Failure
                } else {
                    EndpointOutcome::Success
                };
                if let Some(cause) = d.record_outcome(key, outcome) {
                    return Some((*key, cause));
                }
            }
        }
        None
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoint_failing_a_quarter_of_its_requests_is_ejected_on_success_rate() {
        let d = detector();
        d.set_endpoints(0..3);
        let ejected = traffic(&d, &[0, 1, 2], 2, 4, 200);
        assert_eq!(ejected, Some((2, EjectionCause::SuccessRate)));
        assert!(d.is_ejected(&2));
        assert!(!d.is_ejected(&0) && !d.is_ejected(&1));
    }

    #[tokio::test(start_paused = true)]
    async fn endpoints_failing_alike_are_not_ejected_on_success_rate() {
        let d = detector();
        d.set_endpoints(0..3);
        // Every endpoint fails a quarter: the target is sick, not one endpoint.
        for i in 0..400 {
            for key in 0..3 {
                let outcome = if i % 4 == 0 {
                    EndpointOutcome::Failure
                } else {
                    EndpointOutcome::Success
                };
                assert_eq!(d.record_outcome(&key, outcome), None, "attempt {i}");
            }
        }
        // Too few attempts to judge: nothing either.
        let d = detector();
        d.set_endpoints(0..3);
        assert_eq!(traffic(&d, &[0, 1, 2], 2, 2, 20), None);
    }

    #[tokio::test(start_paused = true)]
    async fn success_rates_are_judged_over_the_recent_window_only() {
        let d = detector();
        d.set_endpoints(0..3);
        // Failures long ago, then only successes: nothing to eject.
        for _ in 0..30 {
            d.record_outcome(&2, EndpointOutcome::Failure);
            d.record_outcome(&2, EndpointOutcome::Success);
        }
        tokio::time::advance(Duration::from_secs(25)).await;
        assert_eq!(traffic(&d, &[0, 1, 2], 2, 1000, 100), None);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_grows_from_30s_to_300s() {
        let d = detector();
        let mut seen = Vec::new();
        for _ in 0..12 {
            assert!(fail(&d, 3, 5));
            let t = d.ejected_for(&3).unwrap();
            seen.push(t.as_secs());
            tokio::time::advance(t).await;
            assert!(!d.is_ejected(&3));
        }
        assert_eq!(
            seen,
            [30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn growth_decays_while_the_endpoint_stays_healthy() {
        let d = detector();
        for _ in 0..3 {
            fail(&d, 3, 5);
            tokio::time::advance(d.ejected_for(&3).unwrap()).await;
            d.is_ejected(&3);
        }
        // Three ejections in a row (30, 60, 90 s); then 60 s healthy takes two steps off.
        tokio::time::advance(Duration::from_secs(60)).await;
        fail(&d, 3, 5);
        assert_eq!(d.ejected_for(&3), Some(Duration::from_secs(60)));
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_half_the_pool_is_ejected() {
        let d = detector();
        for key in 0..10 {
            fail(&d, key, 5);
        }
        assert_eq!(d.ejected().len(), 5);
        // Once one comes back, another may go.
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(d.ejected().len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_endpoint_is_never_ejected() {
        let d = OutlierDetector::new("solo", &OutlierSettings::default()).unwrap();
        assert!(!fail(&d, 7, 50));
        assert!(!d.is_ejected(&7));
    }

    #[tokio::test(start_paused = true)]
    async fn endpoints_gone_from_discovery_are_forgotten() {
        let d = detector();
        fail(&d, 2, 5);
        d.set_endpoints(3..10);
        assert!(!d.is_ejected(&2));
        assert!(d.ejected().is_empty());
    }

    #[test]
    fn impossible_detectors_are_errors() {
        let bad = |s: OutlierSettings| OutlierDetector::<u8>::new("t", &s).unwrap_err().key;
        let d = OutlierSettings::default;
        assert_eq!(
            bad(OutlierSettings {
                consecutive_failures: 0,
                ..d()
            }),
            "outlier.consecutive_failures"
        );
        assert_eq!(
            bad(OutlierSettings {
                base_ejection_time: Duration::ZERO,
                ..d()
            }),
            "outlier.base_ejection_time"
        );
        assert_eq!(
            bad(OutlierSettings {
                max_ejection_time: Duration::from_secs(1),
                ..d()
            }),
            "outlier.max_ejection_time"
        );
        assert_eq!(
            bad(OutlierSettings {
                max_ejection_share: 1.5,
                ..d()
            }),
            "outlier.max_ejection_share"
        );
        let rate = |success_rate: SuccessRateSettings| OutlierSettings {
            success_rate,
            ..d()
        };
        let r = SuccessRateSettings::default;
        for (settings, key) in [
            (
                rate(SuccessRateSettings {
                    window: Duration::ZERO,
                    ..r()
                }),
                "outlier.success_rate.window",
            ),
            (
                rate(SuccessRateSettings {
                    min_requests: 0,
                    ..r()
                }),
                "outlier.success_rate.min_requests",
            ),
            (
                rate(SuccessRateSettings { drop: 1.0, ..r() }),
                "outlier.success_rate.drop",
            ),
            (
                rate(SuccessRateSettings {
                    drop: f64::NAN,
                    ..r()
                }),
                "outlier.success_rate.drop",
            ),
        ] {
            assert_eq!(bad(settings), key);
        }
    }
}
