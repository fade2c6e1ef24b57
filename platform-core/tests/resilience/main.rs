//! Resilient calls end to end, on a paused tokio clock.

mod breaker;
mod budget;
mod deadline;
mod events;
mod hedge;
mod layer;
mod metrics;
mod retry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use platform_core::resilience::{
    Backoff, Classification, Resilience, ResilienceSettings, RetryPolicy,
};

/// The error of a test attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TestError {
    #[error("unavailable")]
    Unavailable,
    #[error("refused")]
    Refused,
    #[error("bad request")]
    BadRequest,
    #[error("busy, retry after {0:?}")]
    Busy(Duration),
}

/// Classifies [`TestError`] the way a transport classifier would.
pub fn classify<T>(result: &Result<T, TestError>) -> Classification {
    match result {
        Ok(_) => Classification::success(),
        Err(TestError::Unavailable) => Classification::retryable(),
        Err(TestError::Refused) => Classification::retryable().never_sent(),
        Err(TestError::BadRequest) => Classification::not_retryable(),
        Err(TestError::Busy(after)) => Classification::retry_after(*after),
    }
}

/// Settings with the breaker off and a tiny deterministic backoff, so that
/// tests count attempts without sleeping through backoffs.
pub fn quiet_settings() -> ResilienceSettings {
    let mut s = ResilienceSettings::default();
    s.breaker.enabled = false;
    s.retry.base_backoff = Duration::from_millis(1);
    s.retry.max_backoff = Duration::from_millis(1);
    s
}

pub fn policies(target: &str, settings: &ResilienceSettings) -> Resilience {
    let backoff = Backoff::new(settings.retry.base_backoff, settings.retry.max_backoff)
        .unwrap()
        .with_seed(42);
    let retry = RetryPolicy::new(settings.retry.max_attempts, backoff).unwrap();
    Resilience::new(target, settings)
        .unwrap()
        .with_retry_policy(retry)
}

/// Counts calls made.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU32>);

impl Counter {
    pub fn hit(&self) -> u32 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The futures of a call and of the layer are `Send`, so they run inside
/// axum handlers and `tokio::spawn`.
#[test]
fn call_futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    fn is_send_sync<T: Send + Sync + 'static>() {}
    is_send_sync::<Resilience>();
    is_send_sync::<platform_core::resilience::RetryBudget>();
    is_send_sync::<platform_core::resilience::CircuitBreaker>();
    is_send_sync::<platform_core::resilience::OutlierDetector<std::net::SocketAddr>>();
    is_send_sync::<platform_core::resilience::ResilienceError<std::io::Error>>();
    let r = policies("send", &quiet_settings());
    let options = platform_core::resilience::CallOptions::idempotent();
    let future = r.call(&classify, &options, |attempt| async move {
        tokio::time::sleep(attempt.remaining()).await;
        Ok::<_, TestError>(())
    });
    is_send(&future);
    drop(future);
    let handle = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    handle.block_on(async move {
        let r2 = r.clone();
        tokio::spawn(async move {
            r2.call(
                &classify,
                &platform_core::resilience::CallOptions::idempotent(),
                |_| async { Ok::<_, TestError>(1) },
            )
            .await
        })
        .await
        .unwrap()
        .unwrap();
    });
}
