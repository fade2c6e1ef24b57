//! Hedged requests: a second attempt for a slow idempotent call.
//!
//! From Dean and Barroso, "The Tail at Scale" (CACM 2013): when an attempt
//! has taken longer than the observed p95 latency, send a second one and take
//! whichever answers first. It costs about 5% more attempts and cuts the
//! tail that slow instances, GC pauses and queueing cause. The second attempt
//! is a retry as far as the target's [`RetryBudget`](super::RetryBudget) is
//! concerned, so hedging can never add more load than retries could; the
//! losing attempt is cancelled by dropping its future.
//!
//! The latency estimate is a log-linear histogram (four buckets per power of
//! two, so a quantile is known within 25%) over two rotating 10 s windows:
//! recording is one short critical section, and the quantile reflects the
//! last 10 to 20 seconds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::resilience::{HedgeSettings, SettingsError};

const SUB_BUCKETS: usize = 4;
const BUCKETS: usize = 40 * SUB_BUCKETS;
const WINDOW: Duration = Duration::from_secs(10);

/// A cheap running estimate of an attempt latency quantile (shared, cheap to clone).
#[derive(Clone)]
pub struct LatencyEstimate {
    inner: Arc<Mutex<Windows>>,
}

impl std::fmt::Debug for LatencyEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyEstimate")
            .field("samples", &self.samples())
            .finish()
    }
}

struct Windows {
    started: Instant,
    current: [u32; BUCKETS],
    previous: [u32; BUCKETS],
    /// Samples in `current` and `previous` together.
    total: u64,
    /// The last quantile asked for: hedging asks on every call, and the
    /// answer (within 25% anyway) moves only as samples accumulate.
    cached: Option<Cached>,
}

#[derive(Clone, Copy)]
struct Cached {
    q: f64,
    /// `total` when it was worked out.
    total: u64,
    value: Duration,
}

impl Default for LatencyEstimate {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyEstimate {
    /// An empty estimate.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Windows {
                started: Instant::now(),
                current: [0; BUCKETS],
                previous: [0; BUCKETS],
                total: 0,
                cached: None,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        let mut w = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let age = now.saturating_duration_since(w.started);
        if age >= WINDOW {
            w.previous = if age >= 2 * WINDOW {
                [0; BUCKETS]
            } else {
                w.current
            };
            w.current = [0; BUCKETS];
            w.total = w.previous.iter().map(|&c| u64::from(c)).sum();
            w.cached = None;
            w.started = now;
        }
        w
    }

    /// Records the latency of one successful attempt.
    pub fn record(&self, latency: Duration) {
        let bucket = bucket_of(latency);
        let mut w = self.lock();
        if w.current[bucket] < u32::MAX {
            w.current[bucket] += 1;
            w.total += 1;
        }
    }

    /// Samples in the estimate now.
    pub fn samples(&self) -> u64 {
        self.lock().total
    }

    /// The `q` quantile (0 < q <= 1) of the recorded latencies, rounded up
    /// to its bucket's upper bound, or `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        self.quantile_of_at_least(q, 1)
    }

    /// [`quantile`](Self::quantile), or `None` with fewer than `min_samples`.
    fn quantile_of_at_least(&self, q: f64, min_samples: u64) -> Option<Duration> {
        let mut w = self.lock();
        let total = w.total;
        if total == 0 || total < min_samples {
            return None;
        }
        // Worked out again once the samples have grown or shrunk by 1/64
        // since: a far smaller change than the buckets' 25% resolution.
        if let Some(cached) = w.cached
            && cached.q == q
            && total.abs_diff(cached.total) <= cached.total / 64
        {
            return Some(cached.value);
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        let mut value = upper_bound(BUCKETS - 1);
        for (bucket, (a, b)) in w.current.iter().zip(w.previous.iter()).enumerate() {
            seen += u64::from(*a) + u64::from(*b);
            if seen >= rank {
                value = upper_bound(bucket);
                break;
            }
        }
        w.cached = Some(Cached { q, total, value });
        Some(value)
    }
}

/// Bucket of a latency: linear below 4 µs, then four per power of two.
fn bucket_of(latency: Duration) -> usize {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    if micros < SUB_BUCKETS as u64 {
        return micros as usize;
    }
    let exp = 63 - micros.leading_zeros() as usize; // >= 2
    let sub = ((micros >> (exp - 2)) & 3) as usize;
    (exp * SUB_BUCKETS + sub - 4).min(BUCKETS - 1)
}

/// Largest latency that falls in `bucket`.
fn upper_bound(bucket: usize) -> Duration {
    if bucket < SUB_BUCKETS {
        return Duration::from_micros(bucket as u64 + 1);
    }
    let idx = bucket + 4;
    let exp = idx / SUB_BUCKETS;
    let sub = (idx % SUB_BUCKETS) as u64;
    Duration::from_micros((4 + sub + 1) << (exp - 2))
}

/// When to send a hedged attempt.
#[derive(Debug, Clone)]
pub struct HedgePolicy {
    enabled: bool,
    quantile: f64,
    min_samples: u64,
    min_delay: Duration,
    estimate: LatencyEstimate,
}

impl HedgePolicy {
    /// A policy from settings. Errors when the quantile is not in (0, 1].
    pub fn new(settings: &HedgeSettings) -> Result<Self, SettingsError> {
        SettingsError::when(
            !(settings.quantile > 0.0 && settings.quantile <= 1.0),
            "hedge.quantile",
            settings.quantile,
            "must be a number above 0 and at most 1",
        )?;
        Ok(Self {
            enabled: settings.enabled,
            quantile: settings.quantile,
            min_samples: u64::from(settings.min_samples.max(1)),
            min_delay: settings.min_delay,
            estimate: LatencyEstimate::new(),
        })
    }

    /// Whether hedging is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The latency estimate hedging relies on.
    pub fn estimate(&self) -> &LatencyEstimate {
        &self.estimate
    }

    /// How long to wait before hedging, or `None` when hedging is off or the
    /// estimate has too few samples yet.
    pub fn delay(&self) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        self.estimate
            .quantile_of_at_least(self.quantile, self.min_samples)
            .map(|d| d.max(self.min_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_latencies() {
        for micros in [
            0u64,
            1,
            3,
            4,
            5,
            7,
            8,
            100,
            999,
            1000,
            1_000_000,
            123_456_789,
        ] {
            let d = Duration::from_micros(micros);
            let b = bucket_of(d);
            assert!(upper_bound(b) >= d, "{micros}us in bucket {b}");
            assert!(
                upper_bound(b).as_secs_f64() <= (d.as_secs_f64() * 1.25).max(4e-6) + 1e-6,
                "{micros}us -> {:?}",
                upper_bound(b)
            );
            if b > 0 {
                assert!(upper_bound(b - 1) <= d, "{micros}us");
            }
        }
        assert_eq!(bucket_of(Duration::from_secs(100_000_000)), BUCKETS - 1);
    }

    #[tokio::test(start_paused = true)]
    async fn p95_tracks_the_tail() {
        let e = LatencyEstimate::new();
        for i in 0..1000u64 {
            // 95% at about 10 ms, 5% at about 200 ms.
            let ms = if i % 20 == 0 { 200 } else { 10 };
            e.record(Duration::from_millis(ms));
        }
        let p90 = e.quantile(0.90).unwrap();
        assert!(
            p90 >= Duration::from_millis(10) && p90 <= Duration::from_micros(12_500),
            "{p90:?}"
        );
        let p99 = e.quantile(0.99).unwrap();
        assert!(
            p99 >= Duration::from_millis(200) && p99 <= Duration::from_millis(250),
            "{p99:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_quantile_follows_new_samples() {
        let e = LatencyEstimate::new();
        for _ in 0..100 {
            e.record(Duration::from_millis(1));
        }
        let fast = e.quantile(0.95).unwrap();
        assert!(fast <= Duration::from_micros(1250), "{fast:?}");
        // Asked again with a handful more samples: the same answer.
        e.record(Duration::from_millis(100));
        assert_eq!(e.quantile(0.95), Some(fast));
        // Once slow answers are a tenth of the samples, p95 is among them.
        for _ in 0..10 {
            e.record(Duration::from_millis(100));
        }
        let slow = e.quantile(0.95).unwrap();
        assert!(slow >= Duration::from_millis(100), "{slow:?}");
        // Another quantile is worked out on its own.
        assert_eq!(e.quantile(0.5), Some(fast));
        // A new window forgets the cached answer with the samples.
        tokio::time::advance(2 * WINDOW).await;
        assert_eq!(e.quantile(0.95), None);
        e.record(Duration::from_millis(1));
        assert_eq!(e.quantile(0.95), Some(fast));
    }

    #[tokio::test(start_paused = true)]
    async fn old_samples_age_out() {
        let e = LatencyEstimate::new();
        e.record(Duration::from_secs(1));
        tokio::time::advance(WINDOW).await;
        assert_eq!(e.samples(), 1);
        tokio::time::advance(WINDOW).await;
        assert_eq!(e.samples(), 0);
        assert_eq!(e.quantile(0.95), None);
    }

    #[tokio::test(start_paused = true)]
    async fn no_hedging_before_enough_samples() {
        let p = HedgePolicy::new(&HedgeSettings {
            enabled: true,
            min_samples: 3,
            ..HedgeSettings::default()
        })
        .unwrap();
        p.estimate().record(Duration::from_millis(5));
        p.estimate().record(Duration::from_millis(5));
        assert_eq!(p.delay(), None);
        p.estimate().record(Duration::from_millis(5));
        let d = p.delay().unwrap();
        assert!(
            d >= Duration::from_millis(5) && d <= Duration::from_micros(6250),
            "{d:?}"
        );
    }

    #[test]
    fn bad_quantiles_are_errors() {
        for q in [0.0, -1.0, 1.5, f64::NAN] {
            let err = HedgePolicy::new(&HedgeSettings {
                quantile: q,
                ..HedgeSettings::default()
            })
            .unwrap_err();
            assert_eq!(err.key, "hedge.quantile");
        }
    }
}
