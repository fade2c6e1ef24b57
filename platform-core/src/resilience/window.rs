//! Two counts over a rolling window of time, for the policies that decide
//! on what happened lately: the circuit breaker (attempts and failures) and
//! the adaptive throttle (requests and accepts).
//!
//! `N` buckets of `window / N` each; the counts cover between `N - 1` and
//! `N` buckets. Lock-free: a bucket is reset by whichever recorder first
//! sees that its time has come round again; a count lost to that race is
//! noise, not state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

pub(crate) struct RollingCounts<const N: usize> {
    origin: Instant,
    bucket_nanos: u64,
    buckets: [Bucket; N],
}

#[derive(Default)]
struct Bucket {
    /// Which stretch of time the counts are for; 0 for never used.
    epoch: AtomicU64,
    all: AtomicU64,
    marked: AtomicU64,
}

impl<const N: usize> std::fmt::Debug for RollingCounts<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RollingCounts")
            .field("buckets", &N)
            .field("bucket_nanos", &self.bucket_nanos)
            .finish_non_exhaustive()
    }
}

impl<const N: usize> RollingCounts<N> {
    pub(crate) fn new(window: Duration, now: Instant) -> Self {
        Self {
            origin: now,
            bucket_nanos: u64::try_from(window.as_nanos() / N as u128)
                .unwrap_or(u64::MAX)
                .max(1),
            buckets: std::array::from_fn(|_| Bucket::default()),
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        // Epoch 0 is a bucket's initial state: start counting at 1.
        u64::try_from(since / u128::from(self.bucket_nanos))
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// Counts one event at `now`, `marked` (a failure, an accept) or not.
    pub(crate) fn record(&self, now: Instant, marked: bool) {
        let epoch = self.epoch(now);
        let bucket = &self.buckets[(epoch % N as u64) as usize];
        let seen = bucket.epoch.load(Ordering::Acquire);
        if seen != epoch
            && bucket
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            bucket.all.store(0, Ordering::Relaxed);
            bucket.marked.store(0, Ordering::Relaxed);
        }
        bucket.all.fetch_add(1, Ordering::Relaxed);
        if marked {
            bucket.marked.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// All events and the marked ones over the window ending at `now`.
    pub(crate) fn counts(&self, now: Instant) -> (u64, u64) {
        let epoch = self.epoch(now);
        let oldest = epoch.saturating_sub(N as u64 - 1);
        self.buckets
            .iter()
            .filter(|b| (oldest..=epoch).contains(&b.epoch.load(Ordering::Acquire)))
            .fold((0, 0), |(all, marked), b| {
                (
                    all + b.all.load(Ordering::Relaxed),
                    marked + b.marked.load(Ordering::Relaxed),
                )
            })
    }
}
