//! Per-endpoint outlier ejection (Envoy's outlier detection).
//!
//! An endpoint that fails `consecutive_failures` attempts in a row is taken
//! out of the pool for `base_ejection_time`; every further ejection in a row
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
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

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
    endpoints: Mutex<HashMap<K, Endpoint>>,
    instruments: Instruments,
}

#[derive(Debug, Default)]
struct Endpoint {
    consecutive_failures: u32,
    ejected_until: Option<Instant>,
    /// Ejections in a row, decayed while the endpoint stays in the pool.
    ejections: u32,
    /// When the endpoint last came back from an ejection.
    returned_at: Option<Instant>,
}

impl<K> OutlierDetector<K>
where
    K: Eq + Hash + Clone + Debug,
{
    /// A detector for the endpoints of `target`. Errors when the threshold or
    /// the base ejection time is zero, the maximum is below the base, or the
    /// share is not between 0 and 1.
    pub fn new(
        target: impl Into<Arc<str>>,
        settings: &OutlierSettings,
    ) -> Result<Self, SettingsError> {
        Self::with_instruments(Instruments::new(target.into()), settings)
    }

    pub(crate) fn with_instruments(
        instruments: Instruments,
        settings: &OutlierSettings,
    ) -> Result<Self, SettingsError> {
        if settings.consecutive_failures == 0 {
            return Err(SettingsError::new(
                "outlier.consecutive_failures",
                settings.consecutive_failures,
                "must be at least 1",
            ));
        }
        if settings.base_ejection_time.is_zero() {
            return Err(SettingsError::new(
                "outlier.base_ejection_time",
                settings.base_ejection_time,
                "must be more than zero",
            ));
        }
        if settings.max_ejection_time < settings.base_ejection_time {
            return Err(SettingsError::new(
                "outlier.max_ejection_time",
                settings.max_ejection_time,
                "must be at least outlier.base_ejection_time",
            ));
        }
        if !(0.0..=1.0).contains(&settings.max_ejection_share) {
            return Err(SettingsError::new(
                "outlier.max_ejection_share",
                settings.max_ejection_share,
                "must be a number between 0 and 1",
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                enabled: settings.enabled,
                threshold: settings.consecutive_failures,
                base: settings.base_ejection_time,
                max: settings.max_ejection_time,
                max_share: settings.max_ejection_share,
                endpoints: Mutex::new(HashMap::new()),
                instruments,
            }),
        })
    }

    /// Makes the pool exactly `endpoints` (as discovery reports it): new ones
    /// are added, gone ones forgotten, the others keep their history.
    pub fn set_endpoints(&self, endpoints: impl IntoIterator<Item = K>) {
        let mut map = self.inner.lock();
        let mut next: HashMap<K, Endpoint> = HashMap::with_capacity(map.len());
        for key in endpoints {
            let state = map.remove(&key).unwrap_or_default();
            next.insert(key, state);
        }
        *map = next;
    }

    /// Reports one attempt's outcome on `endpoint` (an unknown endpoint joins
    /// the pool). Returns true when this report ejected it.
    pub fn record(&self, endpoint: &K, healthy: bool) -> bool {
        if !self.inner.enabled {
            return false;
        }
        let now = Instant::now();
        let mut map = self.inner.lock();
        if !map.contains_key(endpoint) {
            map.insert(endpoint.clone(), Endpoint::default());
        }
        // Only this endpoint is looked at on the common path; the whole pool
        // only when an ejection is due.
        {
            let Some(state) = map.get_mut(endpoint) else {
                return false;
            };
            self.inner.expire_one(endpoint, state, now);
            if healthy {
                state.consecutive_failures = 0;
                return false;
            }
            if state.ejected_until.is_some() {
                // Late answers from an ejected endpoint change nothing.
                return false;
            }
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
            if state.consecutive_failures < self.inner.threshold {
                return false;
            }
        }
        self.inner.expire(&mut map, now);
        let pool = map.len();
        let ejected_now = map.values().filter(|e| e.ejected_until.is_some()).count();
        let Some(state) = map.get_mut(endpoint) else {
            return false;
        };
        let allowed = (self.inner.max_share * pool as f64).floor() as usize;
        if ejected_now + 1 > allowed {
            self.inner.instruments.ejection_skipped();
            tracing::debug!(
                resilience.target = %self.inner.instruments.target, endpoint = ?endpoint,
                ejected = ejected_now, pool, "endpoint failing but not ejected: ejection share reached"
            );
            return false;
        }
        if let Some(returned) = state.returned_at {
            let periods =
                now.saturating_duration_since(returned).as_nanos() / self.inner.base.as_nanos();
            state.ejections = state
                .ejections
                .saturating_sub(u32::try_from(periods).unwrap_or(u32::MAX));
        }
        state.ejections = state.ejections.saturating_add(1);
        let duration = self
            .inner
            .base
            .saturating_mul(state.ejections)
            .min(self.inner.max);
        state.ejected_until = Some(now + duration);
        state.consecutive_failures = 0;
        self.inner.instruments.ejection();
        tracing::warn!(
            resilience.target = %self.inner.instruments.target, endpoint = ?endpoint,
            ejection = state.ejections, duration = ?duration, "endpoint ejected after consecutive failures"
        );
        true
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

impl<K: Debug> Inner<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Endpoint>> {
        self.endpoints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn expire(&self, map: &mut HashMap<K, Endpoint>, now: Instant) {
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
    }
}
