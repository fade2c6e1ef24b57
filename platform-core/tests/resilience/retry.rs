use std::time::Duration;

use platform_core::resilience::{
    CallOptions, Classification, Resilience, ResilienceError, ResilienceSettings,
};
use tokio::time::Instant;

use crate::{Counter, TestError, classify, policies, quiet_settings};

#[tokio::test(start_paused = true)]
async fn retries_until_success() {
    let r = policies("orders", &quiet_settings());
    let calls = Counter::default();
    let out = r
        .call(&classify, &CallOptions::idempotent(), |attempt| {
            let n = calls.hit();
            assert_eq!(attempt.number, n);
            async move {
                if n < 3 {
                    Err(TestError::Unavailable)
                } else {
                    Ok(n)
                }
            }
        })
        .await;
    assert_eq!(out.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn three_attempts_by_default_then_the_last_error() {
    let r = policies("orders", &quiet_settings());
    let calls = Counter::default();
    let err = r
        .call(&classify, &CallOptions::idempotent(), |_| {
            calls.hit();
            async { Err::<(), _>(TestError::Unavailable) }
        })
        .await
        .unwrap_err();
    assert_eq!(calls.get(), 3);
    match err {
        ResilienceError::AttemptsExhausted {
            target,
            attempts,
            last,
        } => {
            assert_eq!(&*target, "orders");
            assert_eq!(attempts, 3);
            assert_eq!(last, TestError::Unavailable);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn per_call_options_cannot_raise_the_ceiling() {
    let mut s = quiet_settings();
    s.retry.max_attempts = 5;
    let r = policies("orders", &s);
    let calls = Counter::default();
    let err = r
        .call(
            &classify,
            &CallOptions::idempotent().with_max_attempts(50),
            |_| {
                calls.hit();
                async { Err::<(), _>(TestError::Unavailable) }
            },
        )
        .await
        .unwrap_err();
    assert_eq!(calls.get(), 5);
    assert_eq!(err.attempts(), 5);

    let calls = Counter::default();
    let _ = r
        .call(
            &classify,
            &CallOptions::idempotent().with_max_attempts(2),
            |_| {
                calls.hit();
                async { Err::<(), _>(TestError::Unavailable) }
            },
        )
        .await;
    assert_eq!(calls.get(), 2, "fewer attempts per call are honoured");
}

#[tokio::test(start_paused = true)]
async fn not_retryable_failures_stop_at_once() {
    let r = policies("orders", &quiet_settings());
    let calls = Counter::default();
    let err = r
        .call(&classify, &CallOptions::idempotent(), |_| {
            calls.hit();
            async { Err::<(), _>(TestError::BadRequest) }
        })
        .await
        .unwrap_err();
    assert_eq!(calls.get(), 1);
    assert!(matches!(
        err,
        ResilienceError::NotRetryable {
            attempts: 1,
            source: TestError::BadRequest,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_calls_are_retried_only_when_never_sent() {
    let r = policies("orders", &quiet_settings());
    let calls = Counter::default();
    let err = r
        .call(&classify, &CallOptions::not_idempotent(), |_| {
            calls.hit();
            async { Err::<(), _>(TestError::Unavailable) }
        })
        .await
        .unwrap_err();
    assert_eq!(
        calls.get(),
        1,
        "a POST that may have reached the server is not repeated"
    );
    assert!(matches!(
        err,
        ResilienceError::NotIdempotent { attempts: 1, .. }
    ));

    let calls = Counter::default();
    let out = r
        .call(&classify, &CallOptions::not_idempotent(), |_| {
            let n = calls.hit();
            async move {
                if n == 1 {
                    Err(TestError::Refused)
                } else {
                    Ok("created")
                }
            }
        })
        .await;
    assert_eq!(
        out.unwrap(),
        "created",
        "a refused connection never reached the server"
    );
}

#[tokio::test(start_paused = true)]
async fn failures_kept_as_values_are_returned_as_is() {
    // A classifier that retries an `Ok(503)`, as an HTTP client keeping the response would.
    let classify_status = |r: &Result<u16, TestError>| match r {
        Ok(503) => platform_core::resilience::Classification::retryable(),
        _ => platform_core::resilience::Classification::success(),
    };
    let r = policies("orders", &quiet_settings());
    let calls = Counter::default();
    let out = r
        .call(&classify_status, &CallOptions::idempotent(), |_| {
            calls.hit();
            async { Ok::<u16, TestError>(503) }
        })
        .await;
    assert_eq!(out.unwrap(), 503);
    assert_eq!(calls.get(), 3);
}

#[tokio::test(start_paused = true)]
async fn pushback_within_the_deadline_is_slept() {
    let r = policies("orders", &quiet_settings());
    let start = Instant::now();
    let calls = Counter::default();
    let out = r
        .call(&classify, &CallOptions::idempotent(), |_| {
            let n = calls.hit();
            async move {
                if n == 1 {
                    Err(TestError::Busy(Duration::from_secs(2)))
                } else {
                    Ok(())
                }
            }
        })
        .await;
    assert!(out.is_ok());
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "the server's pushback replaces the backoff"
    );
}

#[tokio::test(start_paused = true)]
async fn pushback_beyond_the_deadline_ends_retrying_at_once() {
    let r = policies("orders", &quiet_settings()); // total timeout 10 s
    let start = Instant::now();
    let calls = Counter::default();
    let err = r
        .call(&classify, &CallOptions::idempotent(), |_| {
            calls.hit();
            async { Err::<(), _>(TestError::Busy(Duration::from_secs(30))) }
        })
        .await
        .unwrap_err();
    assert_eq!(calls.get(), 1);
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "no point sleeping into a certain failure"
    );
    match err {
        ResilienceError::PushbackBeyondDeadline {
            attempts, pushback, ..
        } => {
            assert_eq!(attempts, 1);
            assert_eq!(pushback, Duration::from_secs(30));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_sleeps_follow_full_jitter_bounds() {
    let mut s = ResilienceSettings::default();
    s.breaker.enabled = false;
    s.retry.max_attempts = 5;
    s.retry.base_backoff = Duration::from_millis(100);
    s.retry.max_backoff = Duration::from_millis(300);
    let r = policies("orders", &s);
    let times = std::sync::Mutex::new(Vec::new());
    let _ = r
        .call(&classify, &CallOptions::idempotent(), |_| {
            times.lock().unwrap().push(Instant::now());
            async { Err::<(), _>(TestError::Unavailable) }
        })
        .await;
    let times = times.into_inner().unwrap();
    assert_eq!(times.len(), 5);
    let ceilings = [100, 200, 300, 300];
    for (i, pair) in times.windows(2).enumerate() {
        let slept = pair[1] - pair[0];
        assert!(
            slept <= Duration::from_millis(ceilings[i]),
            "retry {} slept {slept:?}",
            i + 1
        );
    }
}

/// A transport classifier that knows where the next attempt can go.
fn classify_routed(elsewhere: bool) -> impl Fn(&Result<(), TestError>) -> Classification {
    move |result| match result {
        // Refused by its endpoint: never reached a server.
        Err(TestError::Refused) => Classification::requeue().elsewhere(elsewhere),
        other => classify(other).elsewhere(elsewhere),
    }
}

#[tokio::test(start_paused = true)]
async fn refused_attempts_are_requeued_at_once_without_using_attempts_or_budget() {
    let mut settings = quiet_settings();
    // Backoffs long enough to see that a requeue sleeps none of it.
    settings.retry.base_backoff = Duration::from_secs(1);
    settings.retry.max_backoff = Duration::from_secs(1);
    // No budget beyond the floor's first second: a retry would use it up.
    settings.budget.min_retries_per_second = 1;
    settings.budget.retry_ratio = 0.0;
    let r = Resilience::new("requeue", &settings).unwrap();
    let budget_before = r.budget().balance();
    let attempts = Counter::default();
    let started = tokio::time::Instant::now();
    // Three refusals (three dead instances), then an answer: a POST.
    r.call(
        &classify_routed(true),
        &CallOptions::not_idempotent(),
        |_| {
            let n = attempts.hit();
            async move {
                if n <= 3 {
                    Err(TestError::Refused)
                } else {
                    Ok(())
                }
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(attempts.get(), 4);
    assert_eq!(started.elapsed(), Duration::ZERO, "no backoff slept");
    assert_eq!(r.budget().balance(), budget_before, "no budget drawn");
}

#[tokio::test(start_paused = true)]
async fn requeues_are_bounded_then_ordinary_retries_follow() {
    let r = policies("requeue-bound", &quiet_settings());
    let attempts = Counter::default();
    let result = r
        .call(
            &classify_routed(true),
            &CallOptions::not_idempotent(),
            |_| {
                attempts.hit();
                async { Err::<(), _>(TestError::Refused) }
            },
        )
        .await;
    assert!(result.is_err());
    // 3 requeues (the default bound), then the 3 attempts of the policy.
    assert_eq!(attempts.get(), 3 + 3);

    // With nowhere else to go, a refusal is an ordinary retry.
    let attempts = Counter::default();
    let _ = r
        .call(
            &classify_routed(false),
            &CallOptions::not_idempotent(),
            |_| {
                attempts.hit();
                async { Err::<(), _>(TestError::Refused) }
            },
        )
        .await;
    assert_eq!(attempts.get(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_retry_to_an_untried_endpoint_skips_the_backoff_and_pushback_still_wins() {
    let mut settings = quiet_settings();
    settings.retry.base_backoff = Duration::from_secs(1);
    settings.retry.max_backoff = Duration::from_secs(1);
    let r = Resilience::new("elsewhere", &settings).unwrap();
    let started = tokio::time::Instant::now();
    let attempts = Counter::default();
    r.call(&classify_routed(true), &CallOptions::idempotent(), |_| {
        let n = attempts.hit();
        async move {
            if n == 1 {
                Err(TestError::Unavailable)
            } else {
                Ok(())
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(attempts.get(), 2);
    assert_eq!(started.elapsed(), Duration::ZERO);

    let started = tokio::time::Instant::now();
    let attempts = Counter::default();
    r.call(&classify_routed(true), &CallOptions::idempotent(), |_| {
        let n = attempts.hit();
        async move {
            if n == 1 {
                Err(TestError::Busy(Duration::from_millis(300)))
            } else {
                Ok(())
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}
