use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use platform_core::resilience::{CallOptions, ResilienceSettings};
use tokio::time::Instant;

use crate::{Counter, TestError, classify, policies, quiet_settings};

fn hedging() -> ResilienceSettings {
    let mut s = quiet_settings();
    s.hedge.enabled = true;
    s.hedge.min_samples = 10;
    s
}

/// Sets a flag when dropped: shows that a losing attempt was cancelled.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

async fn warm_up(r: &platform_core::resilience::Resilience) {
    for _ in 0..50 {
        r.call(&classify, &CallOptions::idempotent(), |_| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_is_hedged_and_the_loser_cancelled() {
    let r = policies("search", &hedging());
    warm_up(&r).await;
    let p95 = r.latency().quantile(0.95).unwrap();
    assert!(
        p95 >= Duration::from_millis(10) && p95 < Duration::from_millis(13),
        "{p95:?}"
    );

    let balance_before = r.budget().balance();
    let loser_dropped = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let out = r
        .call(&classify, &CallOptions::idempotent(), |attempt| {
            let flag = DropFlag(loser_dropped.clone());
            async move {
                let _flag = flag;
                if attempt.hedge {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Ok::<_, TestError>("hedge")
                } else {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok("first")
                }
            }
        })
        .await;
    assert_eq!(out.unwrap(), "hedge");
    // Sent at the p95 (tokio timers round up to the millisecond), first answer wins.
    let elapsed = start.elapsed();
    assert!(
        elapsed >= p95 + Duration::from_millis(10) && elapsed <= p95 + Duration::from_millis(12),
        "{elapsed:?}"
    );
    assert!(
        loser_dropped.load(Ordering::SeqCst),
        "the slow attempt was cancelled"
    );
    // The hedge took one retry from the budget (the call deposited 0.2).
    let spent = balance_before + 0.2 - r.budget().balance();
    assert!((spent - 1.0).abs() < 1e-9, "{spent}");
}

#[tokio::test(start_paused = true)]
async fn the_first_attempt_wins_when_it_answers_first() {
    let r = policies("search", &hedging());
    warm_up(&r).await;
    let hedges = Counter::default();
    let out = r
        .call(&classify, &CallOptions::idempotent(), |attempt| {
            if attempt.hedge {
                hedges.hit();
            }
            async move {
                let ms = if attempt.hedge { 1000 } else { 20 };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, TestError>(attempt.hedge)
            }
        })
        .await;
    assert!(!out.unwrap(), "the first attempt answered first");
    assert_eq!(hedges.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn no_hedge_without_budget_or_for_non_idempotent_calls() {
    let mut s = hedging();
    s.budget.retry_ratio = 0.0;
    s.budget.min_retries_per_second = 0;
    let r = policies("search", &s);
    warm_up(&r).await;
    let attempts = Counter::default();
    let slow = |_| {
        attempts.hit();
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, TestError>(())
        }
    };
    r.call(&classify, &CallOptions::idempotent(), slow)
        .await
        .unwrap();
    assert_eq!(attempts.get(), 1, "an empty budget allows no hedge");

    let r = policies("search", &hedging());
    warm_up(&r).await;
    let attempts = Counter::default();
    let slow = |_| {
        attempts.hit();
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, TestError>(())
        }
    };
    r.call(&classify, &CallOptions::not_idempotent(), slow)
        .await
        .unwrap();
    assert_eq!(attempts.get(), 1, "only idempotent calls are hedged");
}

#[tokio::test(start_paused = true)]
async fn idempotent_calls_are_hedged_by_default_and_not_when_turned_off() {
    // On by default: a call stuck on a hung instance is rescued elsewhere.
    let r = policies("search", &quiet_settings());
    warm_up(&r).await;
    let attempts = Counter::default();
    r.call(&classify, &CallOptions::idempotent(), |attempt| {
        attempts.hit();
        async move {
            let stuck = if attempt.hedge { 1 } else { 1000 };
            tokio::time::sleep(Duration::from_millis(stuck)).await;
            Ok::<_, TestError>(())
        }
    })
    .await
    .unwrap();
    assert_eq!(attempts.get(), 2, "the first attempt hung: hedged");

    let mut off = quiet_settings();
    off.hedge.enabled = false;
    let r = policies("search", &off);
    warm_up(&r).await;
    let attempts = Counter::default();
    r.call(&classify, &CallOptions::idempotent(), |_| {
        attempts.hit();
        async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, TestError>(())
        }
    })
    .await
    .unwrap();
    assert_eq!(attempts.get(), 1);
}
