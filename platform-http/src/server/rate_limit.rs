//! A token-bucket rate limit for a route, a router or the whole server
//! (`server.rate_limit`): requests beyond `rate` a second, after a burst of
//! `burst`, are answered 429 with `Retry-After` at once.
//!
//! The bucket is kept as the generic cell rate algorithm (GCRA, as in ATM
//! networks and the `governor` crate) does: one atomic "theoretical arrival
//! time" instead of a token count and a refill timer, updated with a
//! compare-and-swap, so the limit costs one atomic operation per request
//! and no lock.
//!
//! ```
//! use platform_http::server::RateLimitLayer;
//! // At most 5 searches a second, 10 at once, on this route alone.
//! let app: axum::Router = axum::Router::new().route(
//!     "/search",
//!     axum::routing::get(|| async { "results" })
//!         .route_layer(RateLimitLayer::new(5.0, 10).expect("a positive rate")),
//! );
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use opentelemetry::metrics::Counter;
use platform_core::Meters;

/// Requests a second and the burst allowed above it; shared by every clone.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    bucket: Arc<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Time between two requests at the steady rate, in nanoseconds.
    interval: u64,
    /// How far ahead of now the theoretical arrival time may run: the burst.
    tolerance: u64,
    epoch: tokio::time::Instant,
    /// When the bucket would be full again, in nanoseconds since `epoch`.
    tat: AtomicU64,
    limited: Counter<u64>,
}

impl RateLimitLayer {
    /// At most `rate` requests a second on average, `burst` at once; the
    /// refusals are counted in `platform.http.server.rate_limited` of the
    /// process-wide meter provider. `None` unless `rate` is above zero and
    /// finite and `burst` at least 1.
    pub fn new(rate: f64, burst: u32) -> Option<Self> {
        Self::with_meters(rate, burst, &Meters::global())
    }

    /// [`new`](Self::new), counted in `meters`.
    pub fn with_meters(rate: f64, burst: u32, meters: &Meters) -> Option<Self> {
        if !(rate.is_finite() && rate > 0.0) || burst == 0 {
            return None;
        }
        let interval = (1e9 / rate).max(1.0) as u64;
        Some(Self {
            bucket: Arc::new(Bucket {
                interval,
                tolerance: interval.saturating_mul(u64::from(burst - 1)),
                epoch: tokio::time::Instant::now(),
                tat: AtomicU64::new(0),
                limited: meters
                    .meter(crate::semconv::SCOPE)
                    .u64_counter("platform.http.server.rate_limited")
                    .with_unit("{request}")
                    .with_description("Requests refused with 429 by a rate limit.")
                    .build(),
            }),
        })
    }
}

impl Bucket {
    /// `Ok` when a request may pass now, else how long until one may.
    fn take(&self) -> Result<(), Duration> {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            if start - now > self.tolerance {
                self.limited.add(1, &[]);
                return Err(Duration::from_nanos(start - now - self.tolerance));
            }
            match self.tat.compare_exchange_weak(
                tat,
                start + self.interval,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => tat = seen,
            }
        }
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            bucket: self.bucket.clone(),
        }
    }
}

/// A service behind a [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    bucket: Arc<Bucket>,
}

impl<S, B, ResB> tower::Service<Request<B>> for RateLimit<S>
where
    S: tower::Service<Request<B>, Response = Response<ResB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResB: From<&'static str> + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.bucket.take() {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(wait) => {
                let response = too_many_requests(wait);
                Box::pin(std::future::ready(Ok(response)))
            }
        }
    }
}

fn too_many_requests<B: From<&'static str>>(wait: Duration) -> Response<B> {
    let mut response = Response::new(B::from("rate limited: try again later\n"));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    // Whole seconds, rounded up: `Retry-After` has no finer unit.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(seconds.max(1)),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_then_the_rate_holds() {
        let layer = RateLimitLayer::new(10.0, 5).unwrap();
        for _ in 0..5 {
            assert!(layer.bucket.take().is_ok());
        }
        let wait = layer.bucket.take().unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(layer.bucket.take().is_ok(), "one more every 100 ms");
        assert!(layer.bucket.take().is_err());
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..5 {
            assert!(
                layer.bucket.take().is_ok(),
                "the burst is back after a quiet second"
            );
        }
    }

    #[test]
    fn no_rate_is_no_layer() {
        assert!(RateLimitLayer::new(0.0, 5).is_none());
        assert!(RateLimitLayer::new(f64::NAN, 5).is_none());
        assert!(RateLimitLayer::new(10.0, 0).is_none());
    }
}
