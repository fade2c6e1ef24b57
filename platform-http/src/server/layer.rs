//! The server-side tower layer: request id, server span, duration metric,
//! in-flight count. Works on any tower HTTP service (axum, tonic).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use http::{HeaderValue, Request, Response};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, UpDownCounter};
use platform_core::telemetry::tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing::Instrument;

use super::request_id::{REQUEST_ID_HEADER, RequestId};

/// Requests being served now; shared with whoever needs to know (shutdown, tests).
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicI64>);

impl InFlight {
    /// How many requests are being served.
    pub fn current(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct InFlightGuard {
    count: InFlight,
    active: UpDownCounter<i64>,
    attributes: [KeyValue; 1],
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.count.0.fetch_sub(1, Ordering::SeqCst);
        self.active.add(-1, &self.attributes);
    }
}

#[derive(Debug, Clone)]
struct Instruments {
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
}

/// Adds the platform's server behaviour to a service.
#[derive(Debug, Clone)]
pub struct ServerLayer {
    in_flight: InFlight,
    instruments: Instruments,
}

impl ServerLayer {
    /// A layer counting requests in `in_flight`; metrics go to the global meter provider.
    pub fn new(in_flight: InFlight) -> Self {
        let meter = opentelemetry::global::meter("platform-http");
        // Bucket boundaries from the HTTP semantic conventions.
        let duration = meter
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_description("Duration of HTTP server requests.")
            .with_boundaries(vec![
                0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
            ])
            .build();
        let active = meter
            .i64_up_down_counter("http.server.active_requests")
            .with_unit("{request}")
            .with_description("Number of active HTTP server requests.")
            .build();
        ServerLayer {
            in_flight,
            instruments: Instruments { duration, active },
        }
    }
}

impl<S> tower::Layer<S> for ServerLayer {
    type Service = ServerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerService {
            inner,
            in_flight: self.in_flight.clone(),
            instruments: self.instruments.clone(),
        }
    }
}

/// See [`ServerLayer`].
#[derive(Debug, Clone)]
pub struct ServerService<S> {
    inner: S,
    in_flight: InFlight,
    instruments: Instruments,
}

/// The method as the semantic conventions want it: known methods, else `_OTHER`.
fn method_attribute(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PATCH => "PATCH",
        http::Method::TRACE => "TRACE",
        http::Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

impl<S, B, ResB> tower::Service<Request<B>> for ServerService<S>
where
    S: tower::Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display + Send + 'static,
    B: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let started = Instant::now();
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);

        let method = method_attribute(request.method());
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned());
        let (request_id, _) = RequestId::from_headers(request.headers());
        request.extensions_mut().insert(request_id.clone());
        let span = tracing::info_span!(
            "http.server.request",
            otel.name = %match &route { Some(r) => format!("{method} {r}"), None => method.to_owned() },
            otel.kind = "server",
            http.request.method = method,
            url.path = %request.uri().path(),
            http.route = route.as_deref(),
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            request_id = %request_id.0,
        );
        // The caller's trace continues here; a malformed traceparent starts a
        // new trace (and is counted by telemetry), never fails the request.
        let _ = span.set_parent(platform_core::telemetry::propagation::extract(
            request.headers(),
        ));

        self.in_flight.0.fetch_add(1, Ordering::SeqCst);
        let scheme = [KeyValue::new("url.scheme", "http")];
        self.instruments.active.add(1, &scheme);
        let guard = InFlightGuard {
            count: self.in_flight.clone(),
            active: self.instruments.active.clone(),
            attributes: scheme,
        };
        let duration = self.instruments.duration.clone();
        let fut = request_id.clone().scope(inner.call(request));
        Box::pin(
            async move {
                let _guard = guard;
                let result = fut.await;
                let span = tracing::Span::current();
                let mut attributes = vec![KeyValue::new("http.request.method", method)];
                if let Some(route) = route {
                    attributes.push(KeyValue::new("http.route", route));
                }
                let result = match result {
                    Ok(mut response) => {
                        let status = response.status().as_u16();
                        span.record("http.response.status_code", i64::from(status));
                        attributes.push(KeyValue::new(
                            "http.response.status_code",
                            i64::from(status),
                        ));
                        if status >= 500 {
                            span.record("otel.status_code", "ERROR");
                            attributes.push(KeyValue::new("error.type", status.to_string()));
                        }
                        if let Ok(value) = HeaderValue::from_str(&request_id.0) {
                            response.headers_mut().insert(REQUEST_ID_HEADER, value);
                        }
                        Ok(response)
                    }
                    Err(e) => {
                        span.record("otel.status_code", "ERROR");
                        tracing::error!(error = %e, "request failed");
                        attributes.push(KeyValue::new("error.type", "_OTHER"));
                        Err(e)
                    }
                };
                duration.record(started.elapsed().as_secs_f64(), &attributes);
                result
            }
            .instrument(span),
        )
    }
}

/// A handler's panic becomes a logged 500; the process keeps serving.
pub(crate) fn panic_response(
    panic: Box<dyn std::any::Any + Send + 'static>,
) -> Response<axum::body::Body> {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    tracing::error!(panic = %message, "handler panicked; answered 500");
    let mut response = Response::new(axum::body::Body::from("internal server error\n"));
    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    response
}
