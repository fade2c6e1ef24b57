use std::time::Duration;

use platform_core::resilience::{CallOptions, ResilienceError, RetryBudget};

use crate::{Counter, TestError, classify, policies, quiet_settings};

/// Offers `rate` calls per second for `seconds` to a target that fails
/// everything; returns attempts per logical call.
async fn outage(budget_on: bool, rate: u32, seconds: u32) -> f64 {
    let mut s = quiet_settings();
    s.budget.enabled = budget_on;
    // The most a config may ask for: the budget holds whatever the attempts.
    s.retry.max_attempts = 5;
    s.retry.base_backoff = Duration::from_nanos(1);
    s.retry.max_backoff = Duration::from_nanos(1);
    let r = policies("inventory", &s);
    let attempts = Counter::default();
    let gap = Duration::from_secs(1) / rate;
    for _ in 0..rate * seconds {
        let _ = r
            .call(&classify, &CallOptions::idempotent(), |_| {
                attempts.hit();
                async { Err::<(), _>(TestError::Unavailable) }
            })
            .await;
        tokio::time::advance(gap).await;
    }
    f64::from(attempts.get()) / f64::from(rate * seconds)
}

#[tokio::test(start_paused = true)]
async fn total_outage_stays_near_one_point_two_attempts_per_call() {
    // 20% of 1000/s plus the floor of 10/s: 1.21 in steady state.
    let with_budget = outage(true, 1000, 30).await;
    assert!((1.18..=1.23).contains(&with_budget), "{with_budget}");
    // Without the budget every call makes its five attempts.
    let without = outage(false, 1000, 2).await;
    assert_eq!(without, 5.0);
}

#[tokio::test(start_paused = true)]
async fn exhausted_budget_fails_with_the_last_error_then_recovers() {
    let mut s = quiet_settings();
    s.budget.retry_ratio = 0.0;
    s.budget.min_retries_per_second = 1; // 10 retries per 10 s
    let r = policies("inventory", &s);
    let opts = CallOptions::idempotent();
    let fail = || {
        r.call(&classify, &opts, |_| async {
            Err::<(), _>(TestError::Unavailable)
        })
    };
    for _ in 0..5 {
        assert!(matches!(
            fail().await,
            Err(ResilienceError::AttemptsExhausted { attempts: 3, .. })
        ));
    }
    match fail().await {
        Err(ResilienceError::BudgetExhausted {
            target,
            attempts,
            last,
        }) => {
            assert_eq!(&*target, "inventory");
            assert_eq!(attempts, 1);
            assert_eq!(last, TestError::Unavailable);
        }
        other => panic!("unexpected {other:?}"),
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(matches!(
        fail().await,
        Err(ResilienceError::AttemptsExhausted { attempts: 3, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn the_budget_is_shared_by_clones_and_across_policy_sets() {
    let mut s = quiet_settings();
    s.budget.retry_ratio = 0.0;
    s.budget.min_retries_per_second = 1;
    let shared = RetryBudget::new(&s.budget).unwrap();
    let http = policies("inventory", &s).with_budget(shared.clone());
    let grpc = policies("inventory", &s).with_budget(shared.clone());
    let clone = http.clone();
    for r in [&http, &grpc, &clone] {
        let _ = r
            .call(&classify, &CallOptions::idempotent(), |_| async {
                Err::<(), _>(TestError::Unavailable)
            })
            .await;
    }
    // 3 calls x 2 retries out of 10.
    assert!(
        (shared.balance() - 4.0).abs() < 1e-9,
        "{}",
        shared.balance()
    );
}

#[tokio::test(start_paused = true)]
async fn first_attempts_never_need_the_budget() {
    let mut s = quiet_settings();
    s.budget.retry_ratio = 0.0;
    s.budget.min_retries_per_second = 0;
    let r = policies("inventory", &s);
    let out = r
        .call(&classify, &CallOptions::idempotent(), |_| async {
            Ok::<_, TestError>(1)
        })
        .await;
    assert_eq!(out.unwrap(), 1);
}
