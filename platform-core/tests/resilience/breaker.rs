use std::time::Duration;

use platform_core::resilience::{BreakerState, CallOptions, ResilienceError};
use tokio::time::Instant;

use crate::{Counter, TestError, classify, policies, quiet_settings};

fn settings() -> platform_core::resilience::ResilienceSettings {
    let mut s = quiet_settings();
    s.breaker.enabled = true;
    s.breaker.consecutive_failures = 6;
    s.breaker.open_duration = Duration::from_secs(5);
    s.breaker.half_open_probes = 1;
    s.budget.enabled = false;
    s
}

#[tokio::test(start_paused = true)]
async fn a_dead_target_fails_fast_then_recovers_through_one_probe() {
    let r = policies("payments", &settings());
    let server_hits = Counter::default();
    let up = std::sync::atomic::AtomicBool::new(false);
    let opts = CallOptions::idempotent();
    let call = || {
        r.call(&classify, &opts, |_| {
            server_hits.hit();
            let up = up.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                if up {
                    Ok(())
                } else {
                    Err(TestError::Unavailable)
                }
            }
        })
    };

    // Two calls of three failed attempts open the breaker.
    assert!(matches!(
        call().await,
        Err(ResilienceError::AttemptsExhausted { .. })
    ));
    match call().await {
        Err(ResilienceError::AttemptsExhausted { attempts: 3, .. }) => {}
        Err(ResilienceError::CircuitOpen {
            attempts,
            last: Some(_),
            ..
        }) => assert_eq!(attempts, 3),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(r.breaker().state(), BreakerState::Open);
    assert_eq!(server_hits.get(), 6);

    // While open: failing fast, no time spent, nothing reaches the target.
    let start = Instant::now();
    for _ in 0..100 {
        assert!(matches!(
            call().await,
            Err(ResilienceError::CircuitOpen {
                attempts: 0,
                last: None,
                ..
            })
        ));
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(server_hits.get(), 6);

    // Half-open while still down: exactly one probe reaches the target, and fails.
    tokio::time::advance(Duration::from_secs(5)).await;
    for _ in 0..20 {
        let _ = call().await;
    }
    assert_eq!(server_hits.get(), 7, "one probe per half-open interval");
    assert_eq!(r.breaker().state(), BreakerState::Open);

    // The target comes back: the next probe succeeds and closes the breaker.
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(call().await.is_ok());
    assert_eq!(r.breaker().state(), BreakerState::Closed);
    for _ in 0..10 {
        assert!(call().await.is_ok());
    }
}

#[tokio::test(start_paused = true)]
async fn answers_that_are_not_retryable_keep_the_breaker_closed() {
    let r = policies("payments", &settings());
    for _ in 0..50 {
        let _ = r
            .call(&classify, &CallOptions::idempotent(), |_| async {
                Err::<(), _>(TestError::BadRequest)
            })
            .await;
    }
    assert_eq!(r.breaker().state(), BreakerState::Closed);
}
