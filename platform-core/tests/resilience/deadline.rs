use std::time::Duration;

use platform_core::resilience::{CallOptions, Deadline, ResilienceError};
use tokio::time::Instant;

use crate::{Counter, TestError, classify, policies, quiet_settings};

#[tokio::test(start_paused = true)]
async fn one_deadline_covers_attempts_and_sleeps() {
    let r = policies("orders", &quiet_settings());
    let start = Instant::now();
    let calls = Counter::default();
    let err = r
        .call(
            &classify,
            &CallOptions::idempotent().with_deadline(Deadline::after(Duration::from_secs(1))),
            |attempt| {
                calls.hit();
                async move {
                    // Each attempt takes 400 ms and fails.
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    assert!(attempt.remaining() <= Duration::from_millis(600));
                    Err::<(), _>(TestError::Unavailable)
                }
            },
        )
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(calls.get(), 3);
    match err {
        ResilienceError::DeadlineExceeded { attempts, last, .. } => {
            assert_eq!(attempts, 3);
            assert_eq!(last, Some(TestError::Unavailable));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_remaining_time_reaches_nested_calls() {
    let outer = policies("orders", &quiet_settings()); // 10 s total
    let inner = policies("inventory", &quiet_settings()); // 10 s total as well
    let start = Instant::now();
    let err = outer
        .call(
            &classify,
            &CallOptions::idempotent().with_deadline(Deadline::after(Duration::from_secs(2))),
            |_| {
                let inner = inner.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    // The next hop sees what is left of the caller's deadline.
                    assert_eq!(
                        Deadline::current_remaining(),
                        Some(Duration::from_millis(1500))
                    );
                    inner
                        .call(
                            &classify,
                            &CallOptions::idempotent(),
                            |attempt| async move {
                                assert_eq!(attempt.remaining(), Duration::from_millis(1500));
                                // The inner target hangs.
                                std::future::pending::<Result<(), TestError>>().await
                            },
                        )
                        .await
                        .map_err(|e| {
                            assert!(matches!(
                                e,
                                ResilienceError::DeadlineExceeded { attempts: 1, .. }
                            ));
                            TestError::Unavailable
                        })
                }
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ResilienceError::DeadlineExceeded { .. }),
        "{err:?}"
    );
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "the inner call did not outlive the outer deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_deadline_makes_no_attempt() {
    let r = policies("orders", &quiet_settings());
    let calls = Counter::default();
    let deadline = Deadline::after(Duration::from_millis(10));
    tokio::time::advance(Duration::from_millis(20)).await;
    let err = r
        .call(
            &classify,
            &CallOptions::idempotent().with_deadline(deadline),
            |_| {
                calls.hit();
                async { Ok::<_, TestError>(()) }
            },
        )
        .await
        .unwrap_err();
    assert_eq!(calls.get(), 0);
    assert!(matches!(
        err,
        ResilienceError::DeadlineExceeded {
            attempts: 0,
            last: None,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn total_timeout_applies_without_a_deadline() {
    let mut s = quiet_settings();
    s.total_timeout = Duration::from_secs(3);
    let r = policies("orders", &s);
    let start = Instant::now();
    let err = r
        .call(&classify, &CallOptions::idempotent(), |_| {
            std::future::pending::<Result<(), TestError>>()
        })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ResilienceError::DeadlineExceeded { attempts: 1, .. }
    ));
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn attempts_that_enforce_the_deadline_get_no_timer_of_their_own() {
    let r = policies("orders", &quiet_settings());
    let options = CallOptions::idempotent()
        .with_deadline(Deadline::after(Duration::from_secs(1)))
        .with_attempts_enforcing_deadline();
    // An attempt that stops itself at the deadline and fails: cut short by
    // the deadline, not retried, and the failure is not the "last" error.
    let calls = Counter::default();
    let err = r
        .call(&classify, &options, |attempt| {
            calls.hit();
            async move {
                tokio::time::sleep_until(attempt.deadline.instant()).await;
                Err::<(), _>(TestError::Unavailable)
            }
        })
        .await
        .unwrap_err();
    assert_eq!(calls.get(), 1);
    assert!(
        matches!(
            err,
            ResilienceError::DeadlineExceeded {
                attempts: 1,
                last: None,
                ..
            }
        ),
        "{err:?}"
    );

    // An answer that arrives after the deadline is still the answer: the
    // call set no timer to cancel it.
    let late = r
        .call(
            &classify,
            &CallOptions::idempotent()
                .with_deadline(Deadline::after(Duration::from_millis(10)))
                .with_attempts_enforcing_deadline(),
            |_| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, TestError>("late")
            },
        )
        .await
        .unwrap();
    assert_eq!(late, "late");
}
