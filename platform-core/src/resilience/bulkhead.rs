//! The bulkhead: at most so many calls to one target at once, so that a
//! slow target cannot take every task, connection and buffer of the caller.
//! A call over the limit is refused at once: no queue, whose wait would only
//! move the slowness to the caller's callers (Resilience4j's semaphore
//! bulkhead with a zero wait).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Concurrent calls to one target; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Bulkhead {
    /// 0: no limit.
    max: u32,
    in_flight: AtomicU32,
}

/// A call's place in the bulkhead, given back when dropped.
#[derive(Debug)]
pub struct BulkheadPermit(Option<Arc<Bulkhead>>);

impl Drop for BulkheadPermit {
    fn drop(&mut self) {
        if let Some(bulkhead) = &self.0 {
            bulkhead.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Bulkhead {
    /// At most `max` calls at once; 0 for no limit.
    pub fn new(max: u32) -> Self {
        Self {
            max,
            in_flight: AtomicU32::new(0),
        }
    }

    /// The limit (0: none).
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Calls holding a permit now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A permit, or `None` when `max` calls hold one.
    pub fn try_acquire(self: &Arc<Self>) -> Option<BulkheadPermit> {
        if self.max == 0 {
            return Some(BulkheadPermit(None));
        }
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| BulkheadPermit(Some(self.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bulkhead_refuses_until_a_permit_is_given_back() {
        let bulkhead = Arc::new(Bulkhead::new(2));
        let first = bulkhead.try_acquire().unwrap();
        let _second = bulkhead.try_acquire().unwrap();
        assert!(bulkhead.try_acquire().is_none());
        assert_eq!(bulkhead.in_flight(), 2);
        drop(first);
        assert!(bulkhead.try_acquire().is_some());
    }

    #[test]
    fn zero_is_no_limit() {
        let bulkhead = Arc::new(Bulkhead::new(0));
        let permits: Vec<_> = (0..10_000)
            .map(|_| bulkhead.try_acquire().unwrap())
            .collect();
        assert_eq!(permits.len(), 10_000);
        assert_eq!(bulkhead.in_flight(), 0, "not even counted");
    }
}
