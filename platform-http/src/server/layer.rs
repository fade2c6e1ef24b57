//! The server-side tower layer: everything the platform does around a
//! request, in one service and one future: request id, server span,
//! duration metric, in-flight count, deadline, body limit, panic catch.
//!
//! One layer rather than a stack of them because each layer applied to an
//! axum router wraps every route again: another boxed future, another
//! clone of the route's service, on every request. Measured with callgrind
//! on a trivial route, the stack of four cost more instructions than bare
//! axum's whole request path.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::MatchedPath;
use http::{Request, Response};
use opentelemetry::metrics::{BoundHistogram, Histogram, ObservableUpDownCounter};
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt as _};
use opentelemetry::{KeyValue, StringValue};
use platform_core::Meters;
use platform_core::settings::ServerSettings;
use platform_core::telemetry::propagation;
use platform_core::telemetry::sampling::{self, CallTrace};
use platform_core::telemetry::tracing_opentelemetry::OpenTelemetrySpanExt;

use super::deadline::{Deadlines, HeaderDeadline, gateway_timeout};
use super::grpc::{self, RpcNames};
use super::limit::{ConcurrencyLimit, overloaded, overloaded_grpc};
use super::request_id::{REQUEST_ID_NAME, RequestId};
use crate::semconv::{METHODS, method_attribute};

/// Requests being served now; shared with whoever needs to know (shutdown, tests).
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicI64>);

impl InFlight {
    /// How many requests are being served.
    pub fn current(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Counts a request in flight until dropped (the response sent, or the
/// request abandoned by a closed connection).
struct InFlightGuard(InFlight);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What every clone of the layer's services shares.
#[derive(Debug)]
struct Shared {
    in_flight: InFlight,
    duration: Histogram<f64>,
    /// `rpc.server.call.duration`: gRPC calls' duration (see `grpc.rs`).
    rpc_duration: Histogram<f64>,
    // Reads `in_flight` when metrics are collected: no work per request.
    _active: ObservableUpDownCounter<i64>,
    deadline: Deadlines,
    limit: Arc<ConcurrencyLimit>,
    max_body_size: usize,
}

/// The body limit axum's extractors apply when no `DefaultBodyLimit` is set
/// (axum-core's `DEFAULT_LIMIT`; a test checks they agree).
const AXUM_DEFAULT_BODY_LIMIT: usize = 2_097_152;

/// Adds the platform's server behaviour to a service: request id, server
/// span continuing the caller's trace, `http.server.request.duration` and
/// `http.server.active_requests`, the caller's deadline (504 when it passes),
/// the body limit (for axum's extractors) and a panic turned into a 500.
/// A gRPC call gets the same in gRPC's terms: `grpc-timeout`, status codes,
/// `rpc.server.call.duration` (see the module `grpc.rs`).
#[derive(Debug, Clone)]
pub struct ServerLayer {
    shared: Arc<Shared>,
}

impl ServerLayer {
    /// A layer with the default server settings, counting requests in
    /// `in_flight`; metrics go to the global meter provider.
    pub fn new(in_flight: InFlight) -> Self {
        Self::from_settings(&ServerSettings::default(), in_flight)
    }

    /// A layer with `settings`' request timeout and body limit; metrics go
    /// to the global meter provider.
    pub fn from_settings(settings: &ServerSettings, in_flight: InFlight) -> Self {
        Self::with_meters(settings, in_flight, &Meters::global())
    }

    /// [`from_settings`](Self::from_settings) with instruments from `meters`
    /// (`serve` gives the runtime's).
    pub fn with_meters(settings: &ServerSettings, in_flight: InFlight, meters: &Meters) -> Self {
        let meter = meters.meter(crate::semconv::SCOPE);
        let duration = crate::semconv::duration_histogram(
            &meter,
            "http.server.request.duration",
            "Duration of HTTP server requests.",
        );
        let rpc_duration = crate::semconv::duration_histogram(
            &meter,
            "rpc.server.call.duration",
            "Duration of gRPC calls served, to the end of the response.",
        );
        let observed = in_flight.clone();
        let active = meter
            .i64_observable_up_down_counter("http.server.active_requests")
            .with_unit("{request}")
            .with_description("Number of active HTTP server requests.")
            .with_callback(move |observer| {
                observer.observe(observed.current(), &[KeyValue::new("url.scheme", "http")]);
            })
            .build();
        ServerLayer {
            shared: Arc::new(Shared {
                in_flight,
                duration,
                rpc_duration,
                _active: active,
                deadline: Deadlines::new(settings.request_timeout, &meter),
                limit: ConcurrencyLimit::new(&settings.limit, &meter),
                max_body_size: usize::try_from(settings.max_body_size).unwrap_or(usize::MAX),
            }),
        }
    }
}

impl<S> tower::Layer<S> for ServerLayer {
    type Service = ServerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerService {
            inner,
            shared: self.shared.clone(),
            names: Arc::default(),
        }
    }
}

/// See [`ServerLayer`].
#[derive(Debug, Clone)]
pub struct ServerService<S> {
    inner: S,
    shared: Arc<Shared>,
    names: Arc<RouteNames>,
}

/// The route and span names of the route this service instance serves,
/// found once, and its duration histograms bound to their attributes. Under
/// axum's `Router::layer` each route (and method) gets an instance of its
/// own, so the route is the same on every request.
#[derive(Debug, Default)]
struct RouteNames {
    names: [OnceLock<Option<RouteEntry>>; METHODS.len()],
}

#[derive(Debug)]
struct RouteEntry {
    names: Interned,
    /// `http.server.request.duration` bound to this route, method and a status.
    by_status: std::sync::RwLock<Vec<(u16, BoundHistogram<f64>)>>,
}

/// Distinct statuses one route keeps bound histograms for; more are
/// recorded the ordinary way.
const BOUND_STATUSES: usize = 16;

/// A route and its span name (`{method} {route}`), made once per process.
#[derive(Debug, Clone, Copy)]
struct Interned {
    route: &'static str,
    span_name: &'static str,
}

/// Routes and span names, leaked once each so that spans and metric
/// attributes take them without copying. A program has a fixed set of
/// routes; the cap guards against a router made anew per request and, for
/// gRPC methods (which come from the request), against a client sending
/// made-up ones: past it a route is not interned (and a gRPC method is
/// not a route, so that metric series stay bounded).
struct RouteTable {
    names: OnceLock<RwLock<HashMap<String, [Option<Interned>; METHODS.len()]>>>,
    cap: usize,
    /// Past the cap, a path is still the request's route (made for it):
    /// true for routes a router matched, false for names a client chose.
    routes_past_cap: bool,
}

/// The routes axum matched.
static ROUTES: RouteTable = RouteTable::new(4096, true);
/// The gRPC methods asked for, served by a service that is not a router.
static GRPC_METHODS: RouteTable = RouteTable::new(256, false);

impl RouteTable {
    const fn new(cap: usize, routes_past_cap: bool) -> Self {
        RouteTable {
            names: OnceLock::new(),
            cap,
            routes_past_cap,
        }
    }

    fn intern(&self, route: &str, method: (&'static str, usize)) -> Option<Interned> {
        let names = self.names.get_or_init(RwLock::default);
        let found = names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(route)
            .and_then(|by_method| by_method[method.1]);
        if found.is_some() {
            return found;
        }
        let mut names = names.write().unwrap_or_else(|p| p.into_inner());
        if names.len() >= self.cap && !names.contains_key(route) {
            return None;
        }
        let by_method = names.entry(route.to_owned()).or_default();
        let interned = by_method[method.1].get_or_insert_with(|| Interned {
            route: Box::leak(route.to_owned().into_boxed_str()),
            span_name: Box::leak(format!("{} {route}", method.0).into_boxed_str()),
        });
        Some(*interned)
    }
}

impl RouteNames {
    /// The entry of `route` under `method`, unless this instance serves
    /// another route too (a nested service) or the interner is full.
    fn get(
        &self,
        table: &RouteTable,
        route: &str,
        method: (&'static str, usize),
    ) -> Option<&RouteEntry> {
        self.names[method.1]
            .get_or_init(|| {
                table.intern(route, method).map(|names| RouteEntry {
                    names,
                    by_status: Default::default(),
                })
            })
            .as_ref()
            .filter(|entry| entry.names.route == route)
    }
}

impl RouteEntry {
    /// Records `elapsed` for a request of this route answered with `status`.
    fn record(&self, histogram: &Histogram<f64>, method: &'static str, status: u16, elapsed: f64) {
        let by_status = self.by_status.read().unwrap_or_else(|p| p.into_inner());
        if let Some((_, bound)) = by_status.iter().find(|(s, _)| *s == status) {
            bound.record(elapsed);
            return;
        }
        drop(by_status);
        let attributes = duration_attributes(method, Some(status), Some(self.names.route.into()));
        let mut by_status = self.by_status.write().unwrap_or_else(|p| p.into_inner());
        if by_status.len() < BOUND_STATUSES && !by_status.iter().any(|(s, _)| *s == status) {
            by_status.push((status, histogram.bind(&attributes)));
        }
        drop(by_status);
        histogram.record(elapsed, &attributes);
    }
}

/// The route of a request: for a gRPC call its method
/// (`/package.Service/Method`, a fixed set, as a route is; a router's
/// pattern such as tonic's `/package.Service/{*rest}` would say less), else
/// the one axum matched. A plain request outside a router has none.
fn route_of<B>(request: &Request<B>, protocol: Protocol) -> Option<(&str, &'static RouteTable)> {
    if let Protocol::Grpc = protocol {
        return Some((request.uri().path(), &GRPC_METHODS));
    }
    let path = request.extensions().get::<MatchedPath>()?;
    Some((path.as_str(), &ROUTES))
}

/// How a request is spoken: what the layer answers by itself, and which
/// span and metric describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    fn of<B>(request: &Request<B>) -> Self {
        if grpc::is_grpc(request.headers()) {
            Protocol::Grpc
        } else {
            Protocol::Http
        }
    }

    /// The answer when the caller's deadline passed before the answer.
    fn expired(self, message: &'static str) -> Response<Body> {
        match self {
            Protocol::Http => gateway_timeout(message),
            Protocol::Grpc => grpc::trailers_only(grpc::DEADLINE_EXCEEDED, "deadline exceeded"),
        }
    }

    /// The answer over the concurrency limit.
    fn overloaded(self) -> Response<Body> {
        match self {
            Protocol::Http => overloaded(),
            Protocol::Grpc => overloaded_grpc(),
        }
    }
}

/// The route a request matched.
enum Route {
    /// Interned, with its bound histograms.
    Known {
        names: Arc<RouteNames>,
        method: usize,
        name: &'static str,
        route: &'static str,
    },
    /// Interned, served by an instance that serves other routes too.
    Interned {
        name: &'static str,
        route: &'static str,
    },
    /// Made for this request.
    Other { route: String, name: String },
}

impl Route {
    /// The route, when it was interned (lives as long as the process).
    fn interned(&self) -> Option<&'static str> {
        match self {
            Route::Known { route, .. } | Route::Interned { route, .. } => Some(route),
            Route::Other { .. } => None,
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Route::Known { route, .. } | Route::Interned { route, .. } => route,
            Route::Other { route, .. } => route,
        }
    }

    fn value(&self) -> StringValue {
        match self {
            Route::Known { route, .. } | Route::Interned { route, .. } => StringValue::from(*route),
            Route::Other { route, .. } => StringValue::from(route.clone()),
        }
    }

    fn span_name(&self) -> Cow<'static, str> {
        match self {
            Route::Known { name, .. } | Route::Interned { name, .. } => Cow::Borrowed(name),
            Route::Other { name, .. } => Cow::Owned(name.clone()),
        }
    }
}

/// The request's span, wherever it lives (see `sampling::server_span`).
enum RequestSpan {
    /// Built straight through the SDK (or dropped by the sampler); attached
    /// as the current context while the request is handled.
    Own {
        cx: opentelemetry::Context,
        recording: bool,
    },
    /// A `tracing` span, under a subscriber other than the platform's.
    Layer(tracing::Span),
}

impl RequestSpan {
    fn start(
        request: &Request<impl Sized>,
        method: &'static str,
        route: Option<&Route>,
        rpc: Option<Rpc>,
        request_id: &RequestId,
    ) -> Self {
        // The caller's trace continues here; a malformed traceparent starts a
        // new trace (and is counted by telemetry), never fails the request.
        let parent = platform_core::telemetry::propagation::extract(request.headers());
        if let Some(rpc) = rpc {
            return Self::start_rpc(parent, rpc.names, request_id);
        }
        let trace = sampling::server_span(parent.clone(), || {
            // Room for the status code set at the end: the SDK keeps this
            // vector as the span's, and growing it then is a copy.
            let mut attributes = Vec::with_capacity(6);
            attributes.push(KeyValue::new("http.request.method", method));
            attributes.push(KeyValue::new("url.scheme", "http"));
            attributes.push(KeyValue::new("url.path", request.uri().path().to_owned()));
            if let Some(route) = route {
                attributes.push(KeyValue::new("http.route", route.value()));
            }
            attributes.push(KeyValue::new("request_id", request_id.attribute_value()));
            let name = route.map_or(Cow::Borrowed(method), Route::span_name);
            SpanBuilder::from_name(name)
                .with_kind(SpanKind::Server)
                .with_attributes(attributes)
        });
        Self::from_trace(trace, parent, || {
            let route = route.map(Route::as_str);
            tracing::info_span!(
                "http.server.request",
                otel.name = %match route { Some(r) => format!("{method} {r}"), None => method.to_owned() },
                otel.kind = "server",
                http.request.method = method,
                url.path = %request.uri().path(),
                http.route = route,
                http.response.status_code = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
                request_id = %request_id,
            )
        })
    }

    /// The span the sampler's answer says: the SDK's own, or the `tracing`
    /// span `layer` makes, under `parent`.
    fn from_trace(
        trace: CallTrace,
        parent: opentelemetry::Context,
        layer: impl FnOnce() -> tracing::Span,
    ) -> Self {
        match trace {
            CallTrace::Direct(cx) | CallTrace::Dropped(cx) => {
                let recording = cx.span().is_recording();
                RequestSpan::Own { cx, recording }
            }
            CallTrace::Layer => {
                let span = layer();
                let _ = span.set_parent(parent);
                RequestSpan::Layer(span)
            }
        }
    }

    /// The span of a gRPC call: `package.Service/Method` with the RPC
    /// attributes (the semantic conventions' name when the method is not
    /// known is the RPC system's).
    fn start_rpc(
        parent: opentelemetry::Context,
        names: Option<RpcNames>,
        request_id: &RequestId,
    ) -> Self {
        let name = names.map_or("grpc", |n| n.full);
        let trace = sampling::server_span(parent.clone(), || {
            // With room for the status code, as for HTTP.
            let mut attributes = Vec::with_capacity(5);
            attributes.push(KeyValue::new("rpc.system", "grpc"));
            if let Some(names) = names {
                attributes.push(KeyValue::new("rpc.service", names.service));
                attributes.push(KeyValue::new("rpc.method", names.method));
            }
            attributes.push(KeyValue::new("request_id", request_id.attribute_value()));
            SpanBuilder::from_name(name)
                .with_kind(SpanKind::Server)
                .with_attributes(attributes)
        });
        Self::from_trace(trace, parent, || {
            tracing::info_span!(
                "rpc.server.call",
                otel.name = name,
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.service = names.map(|n| n.service),
                rpc.method = names.map(|n| n.method),
                rpc.grpc.status_code = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
                request_id = %request_id,
            )
        })
    }

    /// Runs `f` inside the span.
    fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        match self {
            RequestSpan::Own { cx, .. } => {
                let _attached = cx.clone().attach();
                f()
            }
            RequestSpan::Layer(span) => span.in_scope(f),
        }
    }

    /// Records the HTTP outcome and ends the span.
    fn end(self, status: Option<u16>) {
        let failed = status.is_none_or(|s| s >= 500);
        self.end_with(
            status.map(|s| ("http.response.status_code", i64::from(s))),
            failed,
        );
    }

    /// Records a gRPC call's status code and ends the span.
    fn end_rpc(self, code: u16) {
        self.end_with(
            Some(("rpc.grpc.status_code", i64::from(code))),
            grpc::is_server_error(code),
        );
    }

    /// Records the status (attribute and code) and ends the span.
    fn end_with(self, status: Option<(&'static str, i64)>, failed: bool) {
        match self {
            RequestSpan::Own { cx, recording } => {
                if recording {
                    let span = cx.span();
                    if let Some((key, code)) = status {
                        span.set_attribute(KeyValue::new(key, code));
                    }
                    if failed {
                        span.set_status(Status::error(""));
                    }
                    span.end();
                }
            }
            RequestSpan::Layer(span) => {
                if let Some((key, code)) = status {
                    span.record(key, code);
                }
                if failed {
                    span.record("otel.status_code", "ERROR");
                }
            }
        }
    }
}

impl<S> ServerService<S> {
    /// The request's route, with its names made once (see `RouteTable`).
    fn route<B>(
        &self,
        request: &Request<B>,
        method: (&'static str, usize),
        protocol: Protocol,
    ) -> Option<Route> {
        let (path, table) = route_of(request, protocol)?;
        if let Some(entry) = self.names.get(table, path, method) {
            return Some(Route::Known {
                names: self.names.clone(),
                method: method.1,
                name: entry.names.span_name,
                route: entry.names.route,
            });
        }
        // One service for many routes (gRPC methods behind a fallback).
        match table.intern(path, method) {
            Some(names) => Some(Route::Interned {
                name: names.span_name,
                route: names.route,
            }),
            None if !table.routes_past_cap => None,
            None => Some(Route::Other {
                route: path.to_owned(),
                name: format!("{} {path}", method.0),
            }),
        }
    }
}

/// What the layer knows of a gRPC call.
#[derive(Debug, Clone, Copy)]
struct Rpc {
    /// Its names, when its method could be interned (see `RouteTable`).
    names: Option<RpcNames>,
    /// The caller gave a deadline (`grpc-timeout`): it covers the whole
    /// call, response stream included. The server's own limit
    /// (`server.request_timeout`) bounds the handler only, as for HTTP: a
    /// stream the caller asked to keep open is not cut by it.
    caller_deadline: bool,
}

impl<S, B, ResB> tower::Service<Request<B>> for ServerService<S>
where
    S: tower::Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display + Send + 'static,
    B: Send + 'static,
    ResB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResB::Error: Into<axum::BoxError>,
{
    // axum's body: a gRPC response's body is wrapped to read its trailers,
    // and an axum route's body is one already (`Body::new` keeps it as is).
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // tokio's clock, as deadlines use it (a paused clock in tests).
        let started = tokio::time::Instant::now();
        let shared = self.shared.clone();
        let method = method_attribute(request.method());
        let protocol = Protocol::of(&request);
        let route = self.route(&request, method, protocol);
        let grpc_timeout =
            (protocol == Protocol::Grpc).then(|| grpc::timeout_in(request.headers()));
        let rpc = grpc_timeout.map(|timeout| Rpc {
            names: route
                .as_ref()
                .and_then(Route::interned)
                .and_then(RpcNames::of),
            caller_deadline: matches!(timeout, HeaderDeadline::Remaining(_)),
        });
        // The caller's id goes back as it came; a new one is made up. It
        // reaches handlers as the current id, not as an extension: a fifth
        // extension would make the request's map grow, a copy of the table.
        let [id_header, deadline_header] = propagation::present(
            request.headers(),
            [super::REQUEST_ID_HEADER, super::DEADLINE_HEADER],
        );
        let request_id = id_header
            .then(|| RequestId::given(request.headers()))
            .flatten()
            .unwrap_or_else(RequestId::generate);
        // axum's own default needs no extension (one allocation less per request).
        if shared.max_body_size != AXUM_DEFAULT_BODY_LIMIT {
            axum::extract::DefaultBodyLimit::max(shared.max_body_size).apply(&mut request);
        }
        let span = RequestSpan::start(&request, method.0, route.as_ref(), rpc, &request_id);
        let deadline = match grpc_timeout {
            None => shared
                .deadline
                .deadline_for(request.headers(), deadline_header, started),
            Some(read) => shared
                .deadline
                .grpc_deadline_for(read, request.headers(), started),
        };
        let in_flight = shared.in_flight.0.fetch_add(1, Ordering::SeqCst) + 1;
        let guard = InFlightGuard(shared.in_flight.clone());
        let admitted = shared.limit.admit(in_flight);

        let (inner, sleep, ready) = match deadline {
            // Refused before any work: the caller may try another instance.
            _ if !admitted => (None, None, Some(protocol.overloaded())),
            None => {
                span.in_scope(|| {
                    tracing::debug!(
                        "caller's deadline already expired: answered without running the handler"
                    );
                });
                let expired = protocol.expired("deadline expired before the request was handled\n");
                (None, None, Some(expired))
            }
            Some(deadline) => {
                // Called here, on the instance `poll_ready` readied: no clone
                // is needed (a boxed route's clone is an allocation). The
                // request goes through the scopes by reference: moved into
                // each closure it would be copied at each.
                let inner = &mut self.inner;
                let mut future = None;
                let called = in_request_scope(&span, &request_id, deadline, || {
                    future = Some(inner.call(request));
                });
                match called {
                    // The timer starts when the handler first waits: most
                    // answer at once, and a timer costs a registration in
                    // tokio's wheel and its removal.
                    Ok(()) => (future, None, None),
                    Err(panic) => (None, None, Some(panic_response(protocol, panic))),
                }
            }
        };
        ResponseFuture {
            inner,
            sleep,
            ready,
            state: Some(RequestState {
                started,
                method: method.0,
                route,
                protocol,
                rpc,
                span,
                request_id,
                deadline,
                shared,
                admitted,
                _guard: guard,
            }),
        }
    }
}

/// Runs `f` (calling or polling the handler) inside the request's span, id
/// and deadline, with a panic caught. `f` leaves its result in the caller's
/// variables rather than returning it: returned, the handler's future or
/// response would be copied out through each scope.
fn in_request_scope(
    span: &RequestSpan,
    request_id: &RequestId,
    deadline: platform_core::resilience::Deadline,
    f: impl FnOnce(),
) -> std::thread::Result<()> {
    // The id and the deadline share one scope (platform-core keeps both).
    span.in_scope(|| {
        platform_core::resilience::request_scope(deadline, request_id.header_value(), || {
            std::panic::catch_unwind(AssertUnwindSafe(f))
        })
    })
}

/// What a request's future carries to its end.
struct RequestState {
    started: tokio::time::Instant,
    method: &'static str,
    route: Option<Route>,
    protocol: Protocol,
    /// A gRPC call: its span and duration end with its response body.
    rpc: Option<Rpc>,
    span: RequestSpan,
    request_id: RequestId,
    deadline: Option<platform_core::resilience::Deadline>,
    shared: Arc<Shared>,
    /// Within the concurrency limit: its time is a sample of the limit's.
    admitted: bool,
    _guard: InFlightGuard,
}

pin_project_lite::pin_project! {
    /// The future of a request served through [`ServerLayer`]: the
    /// handler's future, polled inside the request's span, request id and
    /// deadline, with its panic caught and its deadline enforced. One
    /// future, no box: the wrappers a stack of layers or `async` blocks
    /// would nest each copy the handler's future again.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
        ready: Option<Response<Body>>,
        state: Option<RequestState>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, E, ResB> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    E: std::fmt::Display,
    ResB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResB::Error: Into<axum::BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(state) = this.state.as_ref() else {
            panic!("ResponseFuture polled after completion");
        };
        let result = if let Some(ready) = this.ready.take() {
            Ok(ready)
        } else if let (Some(inner), Some(deadline)) =
            (this.inner.as_mut().as_pin_mut(), state.deadline)
        {
            let mut polled = Poll::Pending;
            let outcome = in_request_scope(&state.span, &state.request_id, deadline, || {
                polled = inner.poll(cx);
            });
            match (outcome, polled) {
                (Ok(()), Poll::Ready(result)) => result.map(|r| r.map(Body::new)),
                (Err(panic), _) => state
                    .span
                    .in_scope(|| Ok(panic_response(state.protocol, panic))),
                (Ok(()), Poll::Pending) => {
                    if this.sleep.is_none() {
                        this.sleep
                            .set(Some(tokio::time::sleep_until(deadline.instant())));
                    }
                    match this.sleep.as_mut().as_pin_mut().map(|sleep| sleep.poll(cx)) {
                        Some(Poll::Ready(())) => state.span.in_scope(|| {
                            tracing::debug!("request deadline passed while handling");
                            Ok(state
                                .protocol
                                .expired("deadline passed while the request was handled\n"))
                        }),
                        _ => return Poll::Pending,
                    }
                }
            }
        } else {
            return Poll::Pending;
        };
        // The handler is done (or given up): drop it and its timer now.
        this.inner.set(None);
        this.sleep.set(None);
        let Some(state) = this.state.take() else {
            return Poll::Pending;
        };
        Poll::Ready(state.finish(result))
    }
}

impl RequestState {
    /// Stamps the response with the request id, ends the span, records the
    /// duration (a gRPC call's when its response ends: see [`RpcEnd`]).
    fn finish<E: std::fmt::Display>(
        self,
        result: Result<Response<Body>, E>,
    ) -> Result<Response<Body>, E> {
        let status = match &result {
            Ok(response) => Some(response.status().as_u16()),
            Err(e) => {
                self.span
                    .in_scope(|| tracing::error!(error = %e, "request failed"));
                None
            }
        };
        let result = result.map(|mut response| {
            response
                .headers_mut()
                .insert(REQUEST_ID_NAME, self.request_id.header_value().clone());
            response
        });
        let now = tokio::time::Instant::now();
        let elapsed = now.duration_since(self.started);
        // The limit's sample is the time to the response head, for a gRPC
        // call as for a request: a long stream says nothing of the queue.
        if self.admitted {
            self.shared.limit.completed(elapsed, now);
        }
        if let Some(rpc) = self.rpc {
            let call = RpcEnd {
                span: self.span,
                shared: self.shared,
                started: self.started,
                names: rpc.names,
                deadline: self.deadline.filter(|_| rpc.caller_deadline),
            };
            return result.map(|response| call.at_response(response));
        }
        self.span.end(status);
        record_duration(
            &self.shared.duration,
            elapsed,
            self.method,
            self.route,
            status,
        );
        result
    }
}

/// What ends with a gRPC call: its span and its `rpc.server.call.duration`,
/// both with the call's status code.
struct RpcEnd {
    span: RequestSpan,
    shared: Arc<Shared>,
    started: tokio::time::Instant,
    names: Option<RpcNames>,
    /// The caller's deadline, which the response stream is held to.
    deadline: Option<platform_core::resilience::Deadline>,
}

impl RpcEnd {
    /// Ends the call now when the response head holds its status (a
    /// trailers-only answer, or an HTTP error a client maps to a status),
    /// else when the response body gives its trailers.
    fn at_response(self, response: Response<Body>) -> Response<Body> {
        let code = grpc::status_in(response.headers()).or_else(|| {
            (response.status() != http::StatusCode::OK)
                .then(|| grpc::code_of_http_status(response.status()))
        });
        match code {
            Some(code) => self.end(code),
            // Sent whole with the head (hyper would never poll it): no status came.
            None if http_body::Body::is_end_stream(response.body()) => self.end(grpc::UNKNOWN),
            None => {
                let deadline = self.deadline.map(|d| d.instant());
                return response.map(|body| {
                    Body::new(grpc::ObservedBody::new(body, deadline, move |code| {
                        self.end(code)
                    }))
                });
            }
        }
        response
    }

    fn end(self, code: u16) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut attributes = Vec::with_capacity(5);
        attributes.push(KeyValue::new("rpc.system", "grpc"));
        if let Some(names) = self.names {
            attributes.push(KeyValue::new("rpc.service", names.service));
            attributes.push(KeyValue::new("rpc.method", names.method));
        }
        attributes.push(KeyValue::new("rpc.grpc.status_code", i64::from(code)));
        if grpc::is_server_error(code) {
            attributes.push(KeyValue::new("error.type", grpc::code_name(code)));
        }
        self.shared.rpc_duration.record(elapsed, &attributes);
        self.span.end_rpc(code);
    }
}

/// `http.server.request.duration` with its semantic-convention attributes.
fn record_duration(
    histogram: &Histogram<f64>,
    elapsed: Duration,
    method: &'static str,
    route: Option<Route>,
    status: Option<u16>,
) {
    let elapsed = elapsed.as_secs_f64();
    match (route, status) {
        (
            Some(Route::Known {
                names,
                method: index,
                ..
            }),
            Some(status),
        ) => {
            if let Some(Some(entry)) = names.names[index].get() {
                entry.record(histogram, method, status, elapsed);
            }
        }
        (route, status) => {
            let attributes = duration_attributes(method, status, route.map(|r| r.value()));
            histogram.record(elapsed, &attributes);
        }
    }
}

/// The duration metric's attributes: method, status code, route, and
/// `error.type` for a 5xx or a failed request.
fn duration_attributes(
    method: &'static str,
    status: Option<u16>,
    route: Option<StringValue>,
) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(4);
    attributes.push(KeyValue::new("http.request.method", method));
    if let Some(status) = status {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    if let Some(route) = route {
        attributes.push(KeyValue::new("http.route", route));
    }
    match status {
        Some(status) if status >= 500 => {
            attributes.push(KeyValue::new("error.type", status.to_string()));
        }
        Some(_) => {}
        None => attributes.push(KeyValue::new("error.type", "_OTHER")),
    }
    attributes
}

/// A handler's panic becomes a logged 500 (INTERNAL for a gRPC call); the
/// process keeps serving.
fn panic_response(
    protocol: Protocol,
    panic: Box<dyn std::any::Any + Send + 'static>,
) -> Response<Body> {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    if protocol == Protocol::Grpc {
        tracing::error!(panic = %message, "handler panicked; answered INTERNAL");
        return grpc::trailers_only(grpc::INTERNAL, "internal error");
    }
    tracing::error!(panic = %message, "handler panicked; answered 500");
    let mut response = Response::new(Body::from("internal server error\n"));
    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    /// The layer leaves axum's default limit to axum: it must be the
    /// settings' default, so a body one byte over is refused and one at the
    /// limit is read.
    #[tokio::test]
    async fn the_default_body_limit_is_axums_own() {
        let settings = ServerSettings::default();
        assert_eq!(
            usize::try_from(settings.max_body_size).unwrap(),
            AXUM_DEFAULT_BODY_LIMIT
        );
        let app = axum::Router::new()
            .route(
                "/echo",
                axum::routing::post(|body: String| async move { body.len().to_string() }),
            )
            .layer(ServerLayer::from_settings(&settings, InFlight::default()))
            .with_state(());
        for (size, status) in [
            (AXUM_DEFAULT_BODY_LIMIT, 200),
            (AXUM_DEFAULT_BODY_LIMIT + 1, 413),
        ] {
            let request = Request::post("/echo")
                .body(axum::body::Body::from("x".repeat(size)))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), status, "{size} bytes");
            assert!(response.headers().contains_key(REQUEST_ID_NAME));
        }
    }
}
