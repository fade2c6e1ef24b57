//! The retry budget: retries may add at most a fixed share to the load.
//!
//! Why a budget and not only a maximum number of attempts? With 3 attempts
//! per call, a target that fails everything receives 3 times the load it was
//! already failing under, from every client at once: retries turn an outage
//! into a retry storm. Finagle's `RetryBudget` bounds retries by the request
//! rate instead: every request deposits a fraction of a retry, every retry
//! withdraws a whole one, and deposits expire after a while. With the
//! defaults (20%, 10 retries per second, 10 s) a healthy target sees retries
//! for every failure, and a dead one sees at most 1.2 times the offered load
//! (plus the floor), whatever `max_attempts` says.
//!
//! A budget is shared by every call to one target: clone the handle, it is an
//! `Arc`. Deposits and withdrawals are lock-free: the TTL is divided in ten
//! slots, each an atomic word holding a slot epoch and its net balance, so
//! a deposit is one compare-and-swap (and a deposit or withdrawal expires
//! with its slot, between 0.9 and 1 TTL after it was made). Balances are counted in ten-thousandths
//! of a retry, so a ratio like 0.3 means exactly 30% (tower's `TpsBudget`
//! rounds the ratio to an integer number of deposits per retry, tower#857:
//! 0.3 gives 33%). A balance check and the withdrawal that follows are not
//! one atomic step: concurrent callers may overdraw by at most one retry each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::resilience::{BudgetSettings, SettingsError};

/// Units of balance per retry: deposits are `ratio * UNIT`, a retry is `UNIT`.
const UNIT: i64 = 10_000;
/// Slots the TTL is divided into.
const SLOTS: u64 = 10;
const VALUE_BITS: u32 = 40;
const VALUE_MASK: u64 = (1 << VALUE_BITS) - 1;
const TAG_MASK: u64 = (1 << (64 - VALUE_BITS)) - 1;
const VALUE_MAX: i64 = (1 << (VALUE_BITS - 1)) - 1;
const VALUE_MIN: i64 = -(1 << (VALUE_BITS - 1));

/// A retry budget shared by every call to one target (cheap to clone).
///
/// ```
/// use platform_core::resilience::{BudgetSettings, RetryBudget};
///
/// let budget = RetryBudget::new(&BudgetSettings { min_retries_per_second: 0, ..Default::default() })?;
/// for _ in 0..10 {
///     budget.deposit(); // one per logical request
/// }
/// assert!(budget.try_withdraw()); // 10 requests * 20% = 2 retries
/// assert!(budget.try_withdraw());
/// assert!(!budget.try_withdraw());
/// # Ok::<(), platform_core::resilience::SettingsError>(())
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    enabled: bool,
    deposit: i64,
    reserve: i64,
    window_nanos: u64,
    origin: Instant,
    slots: Box<[AtomicU64]>,
}

impl std::fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryBudget")
            .field("enabled", &self.inner.enabled)
            .field("balance", &self.balance())
            .finish()
    }
}

impl RetryBudget {
    /// A budget from settings. Errors when the ratio is not a number between
    /// 0 and 10, or the TTL is outside 1s..=60s (Finagle's bounds).
    pub fn new(settings: &BudgetSettings) -> Result<Self, SettingsError> {
        let ratio = settings.retry_ratio;
        SettingsError::when(
            !(0.0..=10.0).contains(&ratio),
            "budget.retry_ratio",
            ratio,
            "must be a number between 0 and 10",
        )?;
        SettingsError::when(
            !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&settings.ttl),
            "budget.ttl",
            settings.ttl,
            "must be between 1s and 60s",
        )?;
        let ttl_millis = settings.ttl.as_millis() as i64;
        let window_nanos = (settings.ttl.as_nanos() / SLOTS as u128) as u64;
        Ok(Self {
            inner: Arc::new(Inner {
                enabled: settings.enabled,
                deposit: (ratio * UNIT as f64).round() as i64,
                reserve: i64::from(settings.min_retries_per_second) * ttl_millis * UNIT / 1000,
                window_nanos,
                origin: Instant::now(),
                slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            }),
        })
    }

    /// A budget that never refuses a retry (the settings' `enabled = false`).
    pub fn unlimited() -> Self {
        Self::new(&BudgetSettings {
            enabled: false,
            ..BudgetSettings::default()
        })
        .expect("default budget settings are valid")
    }

    /// Whether the budget limits anything.
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    /// Records one logical request (not a retry): it earns `retry_ratio` of a retry.
    pub fn deposit(&self) {
        if self.inner.enabled {
            self.inner.add_at(self.inner.epoch(), self.inner.deposit);
        }
    }

    /// Takes one retry from the budget; false when there is none left.
    pub fn try_withdraw(&self) -> bool {
        if !self.inner.enabled {
            return true;
        }
        let epoch = self.inner.epoch();
        if self.inner.balance_at(epoch) >= UNIT {
            self.inner.add_at(epoch, -UNIT);
            true
        } else {
            false
        }
    }

    /// Retries available now (fractional). Infinite when disabled.
    pub fn balance(&self) -> f64 {
        if !self.inner.enabled {
            return f64::INFINITY;
        }
        self.inner.balance_at(self.inner.epoch()) as f64 / UNIT as f64
    }
}

impl Inner {
    fn epoch(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.origin);
        // u64 nanoseconds last 584 years; a u128 division costs more than the rest.
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        nanos / self.window_nanos
    }

    fn add_at(&self, epoch: u64, delta: i64) {
        let tag = epoch & TAG_MASK;
        let slot = &self.slots[(epoch % SLOTS) as usize];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (slot_tag, value) = unpack(current);
            // A slot from an older epoch has expired: start it afresh.
            let base = if slot_tag == tag { value } else { 0 };
            let next = pack(tag, base.saturating_add(delta).clamp(VALUE_MIN, VALUE_MAX));
            match slot.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    fn balance_at(&self, epoch: u64) -> i64 {
        let tag = epoch & TAG_MASK;
        let live: i64 = self
            .slots
            .iter()
            .map(|slot| unpack(slot.load(Ordering::Acquire)))
            .filter(|(slot_tag, _)| tag.wrapping_sub(*slot_tag) & TAG_MASK < SLOTS)
            .map(|(_, value)| value)
            .sum();
        self.reserve + live
    }
}

fn pack(tag: u64, value: i64) -> u64 {
    (tag << VALUE_BITS) | (value as u64 & VALUE_MASK)
}

fn unpack(word: u64) -> (u64, i64) {
    let tag = word >> VALUE_BITS;
    // Sign-extend the low 40 bits.
    let value = ((word << (64 - VALUE_BITS)) as i64) >> (64 - VALUE_BITS);
    (tag, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::retry::budget::{Budget as _, TpsBudget};

    fn budget(ratio: f64, floor: u32) -> RetryBudget {
        RetryBudget::new(&BudgetSettings {
            retry_ratio: ratio,
            min_retries_per_second: floor,
            ..BudgetSettings::default()
        })
        .unwrap()
    }

    fn drain(b: &RetryBudget) -> u32 {
        let mut n = 0;
        while b.try_withdraw() {
            n += 1;
            assert!(n < 1_000_000, "budget never ran out");
        }
        n
    }

    #[test]
    fn packing_round_trips_negative_values() {
        for v in [0, 1, -1, VALUE_MAX, VALUE_MIN, -12345] {
            assert_eq!(unpack(pack(77, v)), (77, v));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn floor_gives_ten_retries_per_second_over_the_ttl() {
        let b = budget(0.2, 10);
        // No traffic at all: the floor alone allows 10/s over 10 s.
        assert_eq!(drain(&b), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_add_at_most_twenty_percent() {
        let b = budget(0.2, 0);
        for _ in 0..1000 {
            b.deposit();
        }
        assert_eq!(drain(&b), 200);
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_ratios_are_exact_unlike_tower_tps_budget() {
        // tower#857: TpsBudget turns 0.3 into "one retry per 3 deposits".
        let ours = budget(0.3, 0);
        let tower = TpsBudget::new(Duration::from_secs(10), 0, 0.3);
        for _ in 0..1000 {
            ours.deposit();
            tower.deposit();
        }
        let mut tower_retries = 0;
        while tower.withdraw() {
            tower_retries += 1;
        }
        assert_eq!(drain(&ours), 300);
        assert_eq!(tower_retries, 333);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_expire_after_the_ttl() {
        let b = budget(1.0, 0);
        for _ in 0..10 {
            b.deposit();
        }
        tokio::time::advance(Duration::from_millis(8900)).await;
        assert!((b.balance() - 10.0).abs() < 1e-9);
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert_eq!(b.balance(), 0.0);
        assert!(!b.try_withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn exhaustion_recovers_as_withdrawals_expire() {
        let b = budget(0.2, 10);
        assert_eq!(drain(&b), 100);
        assert!(!b.try_withdraw());
        // Each second one tenth of the withdrawals expire: 10 retries per second again.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(drain(&b), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn long_idle_periods_do_not_resurrect_old_slots() {
        let b = budget(1.0, 0);
        for _ in 0..5 {
            b.deposit();
        }
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(b.balance(), 0.0);
    }

    #[test]
    fn concurrent_callers_share_one_balance() {
        // 4 threads deposit 10_000 requests each and race to withdraw: 20% of
        // 40_000 = 8_000 retries, give or take one per racing thread.
        let b = budget(0.2, 0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut taken = 0u32;
                    for i in 0..10_000 {
                        b.deposit();
                        if i % 3 == 0 && b.try_withdraw() {
                            taken += 1;
                        }
                    }
                    while b.try_withdraw() {
                        taken += 1;
                    }
                    taken
                })
            })
            .collect();
        let taken: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!((8_000..=8_004).contains(&taken), "{taken}");
    }

    #[test]
    fn disabled_budget_never_refuses() {
        let b = RetryBudget::unlimited();
        assert!((0..10_000).all(|_| b.try_withdraw()));
    }

    #[test]
    fn impossible_budgets_are_errors() {
        for (ratio, ttl, key) in [
            (-0.1, 10, "budget.retry_ratio"),
            (f64::NAN, 10, "budget.retry_ratio"),
            (11.0, 10, "budget.retry_ratio"),
            (0.2, 0, "budget.ttl"),
            (0.2, 61, "budget.ttl"),
        ] {
            let err = RetryBudget::new(&BudgetSettings {
                retry_ratio: ratio,
                ttl: Duration::from_secs(ttl),
                ..BudgetSettings::default()
            })
            .unwrap_err();
            assert_eq!(err.key, key);
        }
    }
}
