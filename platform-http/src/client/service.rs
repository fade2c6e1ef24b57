//! The client as a tower `Service`, so that tower and tower-http layers can
//! wrap it (a header set on every call, a concurrency limit, a trace of
//! your own) the way they wrap any other client.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::{Client, ClientError, Response};

type CallFuture<R> = Pin<Box<dyn Future<Output = Result<R, ClientError>> + Send>>;

impl Client {
    /// The call of `request` through the target's policies.
    fn call_http<B: Into<Bytes>>(&self, request: http::Request<B>) -> CallFuture<Response> {
        let (parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
        let body: Bytes = body.into();
        let mut builder = self.request(parts.method, path).headers(parts.headers);
        if !body.is_empty() {
            builder = builder.body(body);
        }
        Box::pin(builder.send())
    }

    /// This client as a tower service that answers `http::Response<Bytes>`
    /// (with a [`CallInfo`] extension), for layers that need an
    /// `http::Response` out, as most of tower-http's do.
    pub fn http_service(&self) -> HttpService {
        HttpService(self.clone())
    }
}

/// `http::Request` in, the platform's [`Response`] out, through every policy
/// of the target (retries, budget, breaker, deadline, hedging, balancing).
/// The URI's path and query are sent to the target's endpoints (a scheme or
/// authority in it is ignored: the target's discovery decides where calls
/// go). Bodies are buffered, so that attempts can be replayed; use
/// [`Client::request`] to stream one.
///
/// Always ready: what limits calls (the budget, an open breaker) answers
/// the call itself, with its error.
impl<B: Into<Bytes>> tower::Service<http::Request<B>> for Client {
    type Response = Response;
    type Error = ClientError;
    type Future = CallFuture<Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.call_http(request)
    }
}

/// See [`Client::http_service`].
#[derive(Debug, Clone)]
pub struct HttpService(Client);

/// Which endpoint answered a call made through [`HttpService`], and after
/// how many attempts: in the response's extensions.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// The target called.
    pub target: Arc<str>,
    /// The endpoint (`host:port`) that answered.
    pub endpoint: Arc<str>,
    /// The number of the attempt that answered.
    pub attempts: u32,
}

impl From<Response> for http::Response<Bytes> {
    fn from(response: Response) -> Self {
        let mut http = http::Response::new(response.body);
        *http.status_mut() = response.status;
        *http.version_mut() = response.version;
        *http.headers_mut() = response.headers;
        http.extensions_mut().insert(CallInfo {
            target: response.target,
            endpoint: response.endpoint,
            attempts: response.attempts,
        });
        http
    }
}

impl<B: Into<Bytes>> tower::Service<http::Request<B>> for HttpService {
    type Response = http::Response<Bytes>;
    type Error = ClientError;
    type Future = CallFuture<http::Response<Bytes>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = self.0.call_http(request);
        Box::pin(async move { call.await.map(http::Response::from) })
    }
}
