//! [`Resilience`] as a tower layer, for a tonic channel or any tower service.
//!
//! ```
//! use platform_core::resilience::{Classification, Resilience, ResilienceLayer, ResilienceSettings};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let policies = Resilience::new("echo", &ResilienceSettings::default()).unwrap();
//! let classify = |r: &Result<String, std::io::Error>| match r {
//!     Ok(_) => Classification::success(),
//!     Err(_) => Classification::retryable(),
//! };
//! let mut svc = ServiceBuilder::new()
//!     .layer(ResilienceLayer::new(policies, classify).idempotent(true))
//!     .service(service_fn(|name: String| async move { Ok::<_, std::io::Error>(format!("hello {name}")) }));
//! let answer = svc.ready().await.unwrap().call("you".to_string()).await.unwrap();
//! assert_eq!(answer, "hello you");
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::{Layer, Service, ServiceExt};

use super::{CallOptions, Classifier, Resilience, ResilienceError};

/// A tower layer applying a target's [`Resilience`] policies to every request.
///
/// Requests must be `Clone` to be replayed: that fits services taking
/// messages or buffered bodies. A tonic `Channel` takes streaming bodies,
/// which cannot be replayed; wrap the generated client's method instead,
/// `resilience.call(&classify, &options, |_| client.clone().get(request.clone()))`,
/// where the request message is `Clone`. Requests are treated as not
/// idempotent unless [`idempotent`](Self::idempotent) says otherwise: they
/// are then retried only when the classifier says they never left.
#[derive(Debug, Clone)]
pub struct ResilienceLayer<C> {
    resilience: Resilience,
    classifier: C,
    options: CallOptions,
}

impl<C> ResilienceLayer<C> {
    /// A layer with `resilience`'s policies and `classifier`.
    pub fn new(resilience: Resilience, classifier: C) -> Self {
        Self {
            resilience,
            classifier,
            options: CallOptions::default(),
        }
    }

    /// Whether every request through this layer is idempotent.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.options.idempotent = idempotent;
        self
    }

    /// Call options for every request (deadline, attempts, idempotency).
    pub fn options(mut self, options: CallOptions) -> Self {
        self.options = options;
        self
    }
}

impl<S, C: Clone> Layer<S> for ResilienceLayer<C> {
    type Service = ResilienceService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        ResilienceService {
            inner,
            resilience: self.resilience.clone(),
            classifier: self.classifier.clone(),
            options: self.options.clone(),
        }
    }
}

/// The service made by [`ResilienceLayer`].
///
/// It is always ready: readiness of the inner service is awaited inside each
/// attempt, on a clone, so a retry never waits behind the caller's own
/// `poll_ready` (the shape of tower's `Retry`).
#[derive(Debug, Clone)]
pub struct ResilienceService<S, C> {
    inner: S,
    resilience: Resilience,
    classifier: C,
    options: CallOptions,
}

impl<S, C, Req> Service<Req> for ResilienceService<S, C>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    Req: Clone + Send + 'static,
    C: Classifier<S::Response, S::Error> + Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = ResilienceError<S::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let inner = self.inner.clone();
        let resilience = self.resilience.clone();
        let classifier = self.classifier.clone();
        let options = self.options.clone();
        Box::pin(async move {
            resilience
                .call(&classifier, &options, move |_attempt| {
                    let service = inner.clone();
                    let request = request.clone();
                    async move { service.oneshot(request).await }
                })
                .await
        })
    }
}
