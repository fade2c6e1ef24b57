//! Exponential backoff with jitter.
//!
//! The n-th retry (n counted from 1) sleeps a uniformly random time in
//! `[0, min(cap, base * 2^(n-1))]`. Marc Brooker's "Exponential Backoff And
//! Jitter" (AWS Architecture Blog, 2015) compares the variants: full jitter
//! does the least total work and spreads retries of clients that failed
//! together, where a fixed schedule keeps them in lockstep. Request retries
//! use it.
//!
//! A reconnect loop (discovery's watch of etcd) uses "equal jitter" instead,
//! `[ceiling / 2, ceiling]`: it keeps trying for as long as the server is
//! down, so a retry at once is a wasted connection attempt on a server that
//! may just be restarting, and half the ceiling still spreads the clients.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::resilience::SettingsError;

/// Exponential backoff with full jitter: validated `base` and `cap`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    rng: JitterRng,
}

/// Where the jitter comes from: the thread-local generator, or a seeded one
/// so that tests can replay a schedule.
#[derive(Debug, Clone)]
enum JitterRng {
    Thread,
    Seeded(Arc<Mutex<StdRng>>),
}

impl Backoff {
    /// A backoff whose first retry waits up to `base` and no retry waits
    /// more than `cap`. Errors when `base` is zero or `cap` is below `base`.
    pub fn new(base: Duration, cap: Duration) -> Result<Self, SettingsError> {
        SettingsError::when(
            base.is_zero(),
            "retry.base_backoff",
            base,
            "must be more than zero",
        )?;
        SettingsError::when(
            cap < base,
            "retry.max_backoff",
            cap,
            "must be at least retry.base_backoff",
        )?;
        Ok(Self {
            base,
            cap,
            rng: JitterRng::Thread,
        })
    }

    /// The same schedule drawn from a generator seeded with `seed`: two
    /// backoffs with the same seed sleep the same times (for tests).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = JitterRng::Seeded(Arc::new(Mutex::new(StdRng::seed_from_u64(seed))));
        self
    }

    /// The base delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The largest delay.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// Upper bound of the sleep before the `retry`-th retry (1 for the first):
    /// `min(cap, base * 2^(retry-1))`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A random sleep in `[0, ceiling(retry)]` (full jitter).
    pub fn delay(&self, retry: u32) -> Duration {
        self.uniform(0, self.ceiling_nanos(retry))
    }

    /// A random sleep in `[ceiling(retry) / 2, ceiling(retry)]` (equal
    /// jitter), for a loop that reconnects rather than retries a request.
    pub fn delay_at_least_half(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling_nanos(retry);
        self.uniform(ceiling / 2, ceiling)
    }

    fn ceiling_nanos(&self, retry: u32) -> u64 {
        u64::try_from(self.ceiling(retry).as_nanos()).unwrap_or(u64::MAX)
    }

    /// A sleep drawn uniformly from `[low, high]` nanoseconds.
    fn uniform(&self, low: u64, high: u64) -> Duration {
        let nanos = match &self.rng {
            JitterRng::Thread => rand::rng().random_range(low..=high),
            JitterRng::Seeded(rng) => rng
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .random_range(low..=high),
        };
        Duration::from_nanos(nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(1))
            .unwrap()
            .with_seed(7)
    }

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let b = backoff();
        let ceilings: Vec<_> = (1..=6).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn delays_stay_within_bounds() {
        let b = backoff();
        for retry in 1..=8 {
            for _ in 0..1000 {
                assert!(b.delay(retry) <= b.ceiling(retry));
            }
        }
    }

    #[test]
    fn jitter_is_uniform_over_the_whole_range() {
        // Full jitter: the sleep is uniform on [0, ceiling], so each tenth of
        // the range gets about a tenth of the draws and the mean is half.
        let b = backoff();
        let n = 20_000;
        let ceiling = b.ceiling(3).as_secs_f64();
        let mut deciles = [0u32; 10];
        let mut sum = 0.0;
        for _ in 0..n {
            let x = b.delay(3).as_secs_f64() / ceiling;
            sum += x;
            deciles[((x * 10.0) as usize).min(9)] += 1;
        }
        let mean = sum / n as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        for (i, count) in deciles.iter().enumerate() {
            let share = *count as f64 / n as f64;
            assert!((share - 0.1).abs() < 0.015, "decile {i}: {share}");
        }
    }

    #[test]
    fn equal_jitter_waits_at_least_half_the_ceiling() {
        let b = backoff();
        let (mut low, mut high) = (Duration::MAX, Duration::ZERO);
        for _ in 0..2000 {
            let delay = b.delay_at_least_half(2);
            low = low.min(delay);
            high = high.max(delay);
        }
        assert!(low >= Duration::from_millis(100) && high <= Duration::from_millis(200));
        assert!(low < Duration::from_millis(110) && high > Duration::from_millis(190));
    }

    #[test]
    fn seeded_backoffs_replay() {
        let (x, y) = (backoff(), backoff());
        let a: Vec<_> = (1..50).map(|n| x.delay(n % 6)).collect();
        let b: Vec<_> = (1..50).map(|n| y.delay(n % 6)).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn impossible_backoffs_are_errors() {
        let err = Backoff::new(Duration::ZERO, Duration::from_secs(1)).unwrap_err();
        assert_eq!(err.key, "retry.base_backoff");
        let err = Backoff::new(Duration::from_secs(2), Duration::from_secs(1)).unwrap_err();
        assert_eq!(err.key, "retry.max_backoff");
    }
}
