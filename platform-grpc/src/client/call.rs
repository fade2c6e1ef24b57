//! One call through the target's policies: prepared (request id, deadline,
//! idempotency, the body read for replay), sent in attempts through
//! platform-core's [`Resilience`](platform_core::resilience::Resilience)
//! loop, and settled (outlier ejection, the balancer's view).
//!
//! gRPC's retry rules (proposal A6) in the loop's terms:
//!
//! - An attempt *commits* when response headers arrive: the loop sees an
//!   answer and the body streams to tonic untouched. The only headers that
//!   do not commit are a *trailers-only* answer (the status in the headers,
//!   no message) whose code is in `retry_codes`, or an HTTP answer that is
//!   not gRPC's and maps to one (a proxy's 503).
//! - Such an answer is retried whatever the method's idempotency (the
//!   server says the call was not done), within the budget and at most 5
//!   attempts; after `grpc-retry-pushback-ms` when the server sent one, and
//!   not at all when that value is negative or malformed.
//! - An UNAVAILABLE with the platform's overloaded marker is retried at
//!   once on an endpoint the call has not tried, never on the one that
//!   refused it; with none left untried it is the answer.
//! - A request that never left the client (no connection, a connection
//!   that closed before taking the stream, `REFUSED_STREAM`) is requeued at
//!   once elsewhere, outside the budget (A6's transparent retry).
//! - A failure that may have reached the server without an answer (a
//!   reset, the attempt timeout) is retried only for `idempotent_methods`.
//! - Every retry and hedge carries `grpc-previous-rpc-attempts`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use opentelemetry::KeyValue;
use platform_core::discovery::EndpointId;
use platform_core::resilience::{
    Admission, Attempt, CallOptions, Classification, Deadline, EndpointOutcome, ResilienceError,
};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::body::{Probed, RequestBody, ResponseBody, probe};
use super::codes::Code;
use super::connection::{ConnectError, Connection};
use super::endpoints::PickKey;
use super::trace::{self, CallSpan, RpcNames};
use super::{ChannelError, Inner, timeout};

const PREVIOUS_ATTEMPTS: http::HeaderName =
    http::HeaderName::from_static("grpc-previous-rpc-attempts");
const PUSHBACK: http::HeaderName = http::HeaderName::from_static("grpc-retry-pushback-ms");
const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
const REQUEST_ID: http::HeaderName =
    http::HeaderName::from_static(platform_http::server::REQUEST_ID_HEADER);

/// A value new on every call, marked so that HTTP/2 sends it as a literal
/// "never indexed": put in the connection's header table, it would only
/// push out the entries that repeat (path, content type, authority), which
/// then go as literals too, and both ends pay for the churn.
fn never_indexed(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

/// A method of `idempotent_methods`: `package.Service/Method`, or
/// `package.Service/*` for all of a service's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MethodPattern {
    service: String,
    /// `None`: every method.
    method: Option<String>,
}

impl MethodPattern {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().trim_start_matches('/');
        let (service, method) = text.split_once('/').ok_or_else(|| {
            format!("{text:?} is not package.Service/Method (or package.Service/*)")
        })?;
        if service.is_empty() || method.is_empty() || method.contains('/') {
            return Err(format!(
                "{text:?} is not package.Service/Method (or package.Service/*)"
            ));
        }
        Ok(MethodPattern {
            service: service.to_owned(),
            method: (method != "*").then(|| method.to_owned()),
        })
    }

    /// `package.Service/*`: it yields to an entry naming the method.
    pub(crate) fn is_wildcard(&self) -> bool {
        self.method.is_none()
    }

    fn matches(&self, names: &RpcNames) -> bool {
        self.service == names.service()
            && self.method.as_deref().is_none_or(|m| m == names.method())
    }
}

/// What the server asked about retrying (`grpc-retry-pushback-ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushback {
    Absent,
    After(Duration),
    /// Negative or malformed: A6 reads it as "do not retry".
    Stop,
}

impl Pushback {
    fn of(headers: &HeaderMap) -> Self {
        let Some(value) = headers.get(PUSHBACK) else {
            return Pushback::Absent;
        };
        let bytes = value.as_bytes();
        if bytes.is_empty() || bytes.len() > 10 || !bytes.iter().all(u8::is_ascii_digit) {
            return Pushback::Stop;
        }
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(Pushback::Stop, |ms| {
                Pushback::After(Duration::from_millis(ms))
            })
    }
}

/// Response headers that commit the call, with where they came from.
pub(crate) struct Answer {
    response: http::Response<hyper::body::Incoming>,
    connection: Arc<Connection>,
    attempts: u32,
    /// The status in the headers of a trailers-only answer (or mapped from
    /// an HTTP status that is not gRPC's): the call ends with the headers.
    ended: Option<Code>,
}

/// A failed attempt, with the endpoint it went to.
pub(crate) struct AttemptError {
    endpoint: Arc<str>,
    failure: Failure,
    /// Another endpoint the call has not tried is in rotation.
    elsewhere: bool,
}

pub(crate) enum Failure {
    /// Discovery gave no endpoint to send to: nothing was sent.
    NoEndpoint(String),
    /// No connection: nothing was sent.
    Connect(ConnectError),
    /// The connection never took the stream (it closed first, or refused
    /// it with `REFUSED_STREAM`): the server did not process it.
    /// `resendable`: the body can go out again (a stream already read
    /// cannot).
    NotSent {
        error: hyper::Error,
        resendable: bool,
    },
    /// Broken after the request may have reached the server.
    Transport(hyper::Error),
    /// No response headers within `attempt_timeout`.
    Timeout,
    /// The request's stream went out with an earlier attempt.
    BodyGone,
    /// A retryable status: an answer, kept whole, since it is what the
    /// caller gets if retrying stops.
    Status {
        code: Code,
        pushback: Pushback,
        overloaded: bool,
        answer: Box<Answer>,
    },
}

impl Failure {
    fn error_type(&self) -> &'static str {
        match self {
            Failure::NoEndpoint(_) => "no_endpoint",
            Failure::Connect(_) => "connect",
            Failure::NotSent { .. } => "not_sent",
            Failure::Transport(_) => "transport",
            Failure::Timeout => "timeout",
            Failure::BodyGone => "not_replayable",
            Failure::Status { code, .. } => code.name(),
        }
    }
}

/// The classifier: A6's rules above in platform-core's terms.
fn classify(result: &Result<Answer, AttemptError>) -> Classification {
    match result {
        Ok(_) => Classification::success(),
        Err(error) => classify_error(error),
    }
}

fn classify_error(error: &AttemptError) -> Classification {
    let elsewhere = error.elsewhere;
    match &error.failure {
        // Overloaded: another instance may have room now, this one will not;
        // with none left untried, a retry would only add load.
        Failure::Status {
            overloaded: true, ..
        } if elsewhere => Classification::retryable().never_sent().elsewhere(true),
        Failure::Status {
            overloaded: true, ..
        }
        | Failure::Status {
            pushback: Pushback::Stop,
            ..
        } => Classification::not_retryable(),
        failure => classify_failure(failure).elsewhere(elsewhere),
    }
}

/// What a failed attempt means, before knowing where the next one can go
/// (and so before the overloaded marker or the pushback decide): what the
/// endpoint's health counts.
fn classify_failure(failure: &Failure) -> Classification {
    match failure {
        // The server's status says the call was not done: retried whatever
        // the method (A6), so marked as if never sent.
        Failure::Status {
            pushback: Pushback::After(delay),
            ..
        } => Classification::retry_after(*delay).never_sent(),
        Failure::Status { .. } => Classification::retryable().never_sent(),
        Failure::Connect(_)
        | Failure::NotSent {
            resendable: true, ..
        } => Classification::requeue(),
        Failure::NotSent { .. } | Failure::BodyGone => Classification::not_retryable().never_sent(),
        Failure::Transport(_) | Failure::Timeout => Classification::retryable(),
        Failure::NoEndpoint(_) => Classification::retryable().never_sent(),
    }
}

/// The request's body for the attempts: the same bytes each time, or a
/// stream the first attempt that sends it takes.
enum Replay {
    Bytes(Bytes),
    Once(Mutex<Option<RequestBody>>),
}

impl Replay {
    fn take(&self) -> Option<RequestBody> {
        match self {
            Replay::Bytes(bytes) => Some(RequestBody::Full(Some(bytes.clone()))),
            Replay::Once(slot) => slot.lock().unwrap_or_else(|p| p.into_inner()).take(),
        }
    }

    /// A body the connection handed back unsent.
    fn put_back(&self, body: RequestBody) {
        if let Replay::Once(slot) = self {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
        }
    }

    fn available(&self) -> bool {
        match self {
            Replay::Bytes(_) => true,
            Replay::Once(slot) => slot.lock().unwrap_or_else(|p| p.into_inner()).is_some(),
        }
    }
}

/// Runs one call: the channel's `Service::call`.
pub(crate) async fn call(
    inner: Arc<Inner>,
    request: http::Request<tonic::body::Body>,
) -> Result<http::Response<ResponseBody>, tonic::Status> {
    let names = inner.names.of(request.uri().path());
    let (trace, span) = trace::start(&names);
    run(inner, request, names, trace).instrument(span).await
}

async fn run(
    inner: Arc<Inner>,
    request: http::Request<tonic::body::Body>,
    names: Arc<RpcNames>,
    trace: CallSpan,
) -> Result<http::Response<ResponseBody>, tonic::Status> {
    let started = Instant::now();
    let end = End {
        inner: Arc::clone(&inner),
        names,
        trace,
        started,
    };
    let (parts, body) = request.into_parts();
    let prepared = match prepare(&inner, &end.names, parts, body) {
        Ok(prepared) => prepared,
        // tonic could not encode the message: the caller's status, as is.
        Err(status) => return Err(status),
    };
    // Held until the answer's stream ends.
    let permit = inner.resilience.enter_bulkhead();
    let refused = match &permit {
        None => Some(ChannelError::BulkheadFull {
            target: inner.target.clone(),
            max: inner.resilience.bulkhead().max(),
        }),
        Some(_) if !inner.resilience.admit_call() => Some(ChannelError::Throttled {
            target: inner.target.clone(),
        }),
        Some(_) => None,
    };
    if let Some(error) = refused {
        return Err(end.failed(error));
    }
    let exchange = Exchange {
        inner: &inner,
        prepared: &prepared,
        trace: &end.trace,
        tried: Mutex::new(Vec::new()),
    };
    let result = inner
        .resilience
        .call(&classify, &prepared.options, |attempt| {
            exchange.attempt(attempt)
        })
        .await;
    let answer = match result {
        Ok(answer) => answer,
        Err(stopped) => match stopped_at(stopped) {
            Ok(answer) => answer,
            Err(error) => return Err(end.failed(error)),
        },
    };
    Ok(end.answered(answer, permit))
}

/// A call's request as every attempt sends it.
struct Prepared {
    /// Which of `method_retry_codes` applies, if one does (else `retry_codes`).
    method_codes: Option<usize>,
    path: http::uri::PathAndQuery,
    headers: HeaderMap,
    options: CallOptions,
    body: Replay,
}

fn prepare(
    inner: &Inner,
    names: &RpcNames,
    mut parts: http::request::Parts,
    body: tonic::body::Body,
) -> Result<Prepared, tonic::Status> {
    let mut headers = std::mem::take(&mut parts.headers);
    // The request being served goes on under its id, so that one id finds
    // every hop's logs; the server layer checked it is sane.
    if !headers.contains_key(&REQUEST_ID)
        && let Some(id) = platform_core::resilience::current_request_id()
    {
        headers.insert(REQUEST_ID, id);
    }
    let idempotent = inner.idempotent.iter().any(|p| p.matches(names));
    let mut options = if idempotent {
        CallOptions::idempotent()
    } else {
        CallOptions::not_idempotent()
    }
    // Each attempt's one timer covers the deadline too.
    .with_attempts_enforcing_deadline();
    // tonic's `Request::set_timeout`: the call's own deadline; the earlier
    // of it, the request being served and `total_timeout` applies. Each
    // attempt writes the header again with the time then left.
    if let Some(value) = headers.remove(timeout::GRPC_TIMEOUT) {
        match timeout::parse(value.as_bytes()) {
            Some(time) => options = options.with_deadline(Deadline::after(time)),
            None => {
                tracing::debug!(value = ?value, "ignoring a malformed grpc-timeout of the request")
            }
        }
    }
    let body = match probe(body, inner.max_replay_message)? {
        Probed::Replayable(bytes) => Replay::Bytes(bytes),
        Probed::Once(body) => {
            inner
                .instruments
                .not_replayable
                .add(1, inner.instruments.target());
            options = options.with_max_attempts(1);
            options.no_hedge = true;
            Replay::Once(Mutex::new(Some(body)))
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    Ok(Prepared {
        method_codes: inner
            .method_retry_codes
            .iter()
            .position(|(pattern, _)| pattern.matches(names)),
        path,
        headers,
        options,
        body,
    })
}

/// What every attempt of one call shares.
struct Exchange<'a> {
    inner: &'a Inner,
    prepared: &'a Prepared,
    trace: &'a CallSpan,
    /// Where the call's attempts went: retries and hedges go elsewhere.
    tried: Mutex<Vec<EndpointId>>,
}

impl Exchange<'_> {
    async fn attempt(&self, attempt: Attempt) -> Result<Answer, AttemptError> {
        let (key, connection) = self.pick()?;
        let started = Instant::now();
        let (result, deadline_passed) = self.send(&connection, &attempt, started).await;
        let elapsed = started.elapsed();
        let result = result.map_err(|failure| AttemptError {
            endpoint: connection.label.clone(),
            failure,
            elsewhere: false,
        });
        if deadline_passed {
            // The deadline, not this attempt, ran out: neither counted
            // against the endpoint nor retried.
            self.event(&attempt, &connection, &result, elapsed);
            return result;
        }
        let result = self.settle(key, result);
        self.event(&attempt, &connection, &result, elapsed);
        result
    }

    /// The endpoint for the next attempt, one this call has not tried while
    /// there is one, marked as tried.
    fn pick(&self) -> Result<(PickKey, Arc<Connection>), AttemptError> {
        let mut tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
        match self.inner.endpoints.pick(&tried) {
            Ok((key, connection)) => {
                if !tried.contains(&key.id) {
                    tried.push(key.id.clone());
                }
                Ok((key, connection))
            }
            Err(reason) => Err(AttemptError {
                endpoint: Arc::from(""),
                failure: Failure::NoEndpoint(reason),
                elsewhere: false,
            }),
        }
    }

    /// Sends the attempt under one timer, the earlier of `attempt_timeout`
    /// and the call's deadline, until the response headers; says whether it
    /// was the deadline that cut it.
    async fn send(
        &self,
        connection: &Arc<Connection>,
        attempt: &Attempt,
        started: Instant,
    ) -> (Result<Answer, Failure>, bool) {
        let deadline = attempt.deadline.instant();
        let (limit, cut_by_deadline) = match started.checked_add(self.inner.attempt_timeout) {
            Some(own) if own < deadline => (own, false),
            _ => (deadline, true),
        };
        // The server is told the call's time left, not the attempt's: it
        // holds a response stream to it, which the attempt timer (until the
        // headers) does not cover.
        let exchange = self.exchange(
            connection,
            attempt,
            deadline.saturating_duration_since(started),
        );
        match tokio::time::timeout_at(limit, exchange).await {
            Ok(result) => (result, false),
            Err(_elapsed) => (Err(Failure::Timeout), cut_by_deadline),
        }
    }

    async fn exchange(
        &self,
        connection: &Arc<Connection>,
        attempt: &Attempt,
        time_left: Duration,
    ) -> Result<Answer, Failure> {
        let mut sender = connection.sender().await.map_err(Failure::Connect)?;
        // The connection may be at its stream limit, or closing.
        if let Err(error) = sender.ready().await {
            connection.forget_if_closed().await;
            return Err(Failure::NotSent {
                error,
                resendable: self.prepared.body.available(),
            });
        }
        let Some(authority) = connection.authority.clone() else {
            return Err(Failure::NoEndpoint(format!(
                "{} is not a URI authority",
                connection.label
            )));
        };
        let body = self.prepared.body.take().ok_or(Failure::BodyGone)?;
        let request = self.request(authority, attempt, time_left, body);
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut error) => {
                let unsent = error.take_message();
                let error = error.into_error();
                if let Some(request) = unsent {
                    self.prepared.body.put_back(request.into_body());
                    return Err(Failure::NotSent {
                        error,
                        resendable: true,
                    });
                }
                if refused_stream(&error) {
                    return Err(Failure::NotSent {
                        error,
                        resendable: self.prepared.body.available(),
                    });
                }
                return Err(Failure::Transport(error));
            }
        };
        self.commit(response, connection, attempt)
    }

    /// The attempt's request: the call's headers, the time left to the
    /// call's deadline, the number of earlier attempts, the trace context.
    fn request(
        &self,
        authority: http::uri::Authority,
        attempt: &Attempt,
        time_left: Duration,
        body: RequestBody,
    ) -> http::Request<RequestBody> {
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(authority);
        uri.path_and_query = Some(self.prepared.path.clone());
        let mut request = http::Request::new(body);
        // Scheme, authority and path together always make a URI.
        if let Ok(uri) = http::Uri::from_parts(uri) {
            *request.uri_mut() = uri;
        }
        *request.method_mut() = http::Method::POST;
        *request.version_mut() = http::Version::HTTP_2;
        let headers = request.headers_mut();
        headers.reserve(self.prepared.headers.len() + 4);
        for (name, value) in &self.prepared.headers {
            headers.append(name.clone(), value.clone());
        }
        headers.insert(
            timeout::GRPC_TIMEOUT,
            never_indexed(timeout::format(time_left)),
        );
        if attempt.number > 1 {
            headers.insert(PREVIOUS_ATTEMPTS, HeaderValue::from(attempt.number - 1));
        }
        self.trace.inject(headers);
        if let Some(traceparent) = headers.get_mut(TRACEPARENT) {
            // New on every call, like the timeout.
            traceparent.set_sensitive(true);
        }
        request
    }

    /// The codes this call retries: its method's, or the channel's.
    fn retry_codes(&self) -> &[Code] {
        match self.prepared.method_codes {
            Some(at) => &self.inner.method_retry_codes[at].1,
            None => &self.inner.retry_codes,
        }
    }

    /// The response headers: they commit the call, unless they are a
    /// retryable status with no message to come.
    fn commit(
        &self,
        response: http::Response<hyper::body::Incoming>,
        connection: &Arc<Connection>,
        attempt: &Attempt,
    ) -> Result<Answer, Failure> {
        let ended = if response.status() != http::StatusCode::OK {
            // Not gRPC's answer (a proxy's, an HTTP server's).
            Some(Code::of_http_status(response.status()))
        } else {
            Code::in_headers(response.headers())
        };
        let answer = Answer {
            response,
            connection: Arc::clone(connection),
            attempts: attempt.number,
            ended,
        };
        match ended {
            Some(code) if self.retry_codes().contains(&code) => {
                let headers = answer.response.headers();
                let pushback = Pushback::of(headers);
                if pushback == Pushback::Stop {
                    tracing::debug!(value = ?headers.get(PUSHBACK), "the server's pushback says do not retry");
                }
                let overloaded = code == Code::UNAVAILABLE
                    && headers.contains_key(platform_http::server::OVERLOADED_HEADER);
                Err(Failure::Status {
                    code,
                    pushback,
                    overloaded,
                    answer: Box::new(answer),
                })
            }
            _ => Ok(answer),
        }
    }

    /// Records the attempt's outcome against its endpoint (ejection, the
    /// balancer's view) and, for a failure, whether another endpoint is
    /// left to retry on.
    fn settle(
        &self,
        key: PickKey,
        mut result: Result<Answer, AttemptError>,
    ) -> Result<Answer, AttemptError> {
        let outcome = match &result {
            Err(error) if !classify_failure(&error.failure).is_healthy() => match &error.failure {
                Failure::Connect(e) if e.is_refused() => EndpointOutcome::Refused,
                _ => EndpointOutcome::Failure,
            },
            _ => EndpointOutcome::Success,
        };
        self.inner.endpoints.record(key, outcome);
        if let Err(error) = &mut result
            && outcome != EndpointOutcome::Success
        {
            // Asked after the outcome is recorded: an endpoint it just
            // ejected is not somewhere else to go.
            let tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
            error.elsewhere = self.inner.endpoints.any_other(&tried);
        }
        result
    }

    /// The attempt's debug event, and the same on the call's span when it
    /// is recorded.
    fn event(
        &self,
        attempt: &Attempt,
        connection: &Connection,
        result: &Result<Answer, AttemptError>,
        elapsed: Duration,
    ) {
        let error_type = result.as_ref().err().map(|e| e.failure.error_type());
        tracing::debug!(
            attempt = attempt.number,
            hedge = attempt.hedge,
            endpoint = %connection.label,
            elapsed = ?elapsed,
            error = error_type,
            "rpc.client.attempt"
        );
        if !self.trace.recording() {
            return;
        }
        let mut attributes = vec![
            KeyValue::new("attempt", i64::from(attempt.number)),
            KeyValue::new("endpoint", connection.label.clone()),
            KeyValue::new("elapsed_ms", elapsed.as_secs_f64() * 1e3),
        ];
        if attempt.hedge {
            attributes.push(KeyValue::new("hedge", true));
        }
        if let Some(error_type) = error_type {
            attributes.push(KeyValue::new("error.type", error_type));
        }
        self.trace.event("rpc.client.attempt", attributes);
    }
}

/// Whether the server refused the stream before processing it.
fn refused_stream(error: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = error.source();
    }
    false
}

/// What the caller gets when the loop stopped without an answer it liked:
/// the last answer if the last attempt got one (a retryable status after
/// the attempts, the budget or the deadline ran out is still the server's
/// answer), else why no answer came.
fn stopped_at(stopped: ResilienceError<AttemptError>) -> Result<Answer, ChannelError> {
    let target: Arc<str> = Arc::from(stopped.target());
    let attempts = stopped.attempts();
    match stopped {
        ResilienceError::CircuitOpen { .. } => Err(ChannelError::CircuitOpen { target, attempts }),
        ResilienceError::DeadlineExceeded {
            last: Some(last), ..
        } if matches!(last.failure, Failure::Status { .. }) => last.into_outcome(target, attempts),
        ResilienceError::DeadlineExceeded { last, .. } => Err(ChannelError::DeadlineExceeded {
            target,
            endpoint: last.map(|e| e.endpoint),
            attempts,
        }),
        ResilienceError::BudgetExhausted { last, .. } => {
            let endpoint = Some(last.endpoint.clone());
            last.into_outcome(target.clone(), attempts).map_err(|last| {
                ChannelError::BudgetExhausted {
                    target,
                    endpoint,
                    attempts,
                    last: Box::new(last),
                }
            })
        }
        ResilienceError::PushbackBeyondDeadline { last, .. }
        | ResilienceError::AttemptsExhausted { last, .. }
        | ResilienceError::NotRetryable { source: last, .. }
        | ResilienceError::NotIdempotent { source: last, .. } => {
            last.into_outcome(target, attempts)
        }
    }
}

impl AttemptError {
    /// The call's outcome when this was its last attempt.
    fn into_outcome(self, target: Arc<str>, attempts: u32) -> Result<Answer, ChannelError> {
        let endpoint = self.endpoint;
        Err(match self.failure {
            Failure::Status { answer, .. } => return Ok(*answer),
            Failure::NoEndpoint(reason) => ChannelError::NoEndpoint { target, reason },
            Failure::Connect(source) => ChannelError::Connect {
                target,
                endpoint,
                attempts,
                source: Box::new(source),
            },
            Failure::NotSent { error: source, .. } | Failure::Transport(source) => {
                ChannelError::Transport {
                    target,
                    endpoint,
                    attempts,
                    source,
                }
            }
            Failure::Timeout => ChannelError::Timeout {
                target,
                endpoint,
                attempts,
            },
            Failure::BodyGone => ChannelError::NotReplayable {
                target,
                endpoint,
                attempts,
            },
        })
    }
}

/// The end of a call: the span, the duration metric, the throttle.
struct End {
    inner: Arc<Inner>,
    names: Arc<RpcNames>,
    trace: CallSpan,
    started: Instant,
}

impl End {
    /// No answer came: recorded now, and the error as tonic hands it on.
    fn failed(self, error: ChannelError) -> tonic::Status {
        let status = error.to_status();
        let code = Code(status.code() as u16);
        tracing::debug!(error = %error, elapsed = ?self.started.elapsed(), "rpc.client.call failed");
        self.record(code, Some(error.error_type()), None);
        let mut status = status;
        status.set_source(Arc::new(error));
        status
    }

    /// The answer's headers: the body streams on to tonic, and the call is
    /// recorded when it ends.
    fn answered(
        self,
        answer: Answer,
        permit: Option<platform_core::resilience::BulkheadPermit>,
    ) -> http::Response<ResponseBody> {
        let Answer {
            response,
            connection,
            attempts,
            ended,
        } = answer;
        let overloaded = ended == Some(Code::UNAVAILABLE)
            && response
                .headers()
                .contains_key(platform_http::server::OVERLOADED_HEADER);
        self.inner.resilience.throttle().record(if overloaded {
            Admission::Rejected
        } else {
            Admission::Accepted
        });
        trace::server(&self.trace, &connection.address, connection.port);
        if attempts > 1 {
            tracing::debug!(attempts, "answered after retrying");
        }
        let (parts, body) = response.into_parts();
        let body = ResponseBody::new(body, move |code| {
            self.record(code, None, Some(&connection));
            drop(permit);
        });
        let body = match ended {
            Some(code) => body.ended(code),
            None => body,
        };
        http::Response::from_parts(parts, body)
    }

    fn record(
        &self,
        code: Code,
        error_type: Option<&'static str>,
        connection: Option<&Connection>,
    ) {
        trace::end(&self.trace, code, error_type);
        let seconds = self.started.elapsed().as_secs_f64();
        let error = error_type.or_else(|| code.is_server_error().then(|| code.name()));
        let attributes = || {
            let mut attributes = Vec::with_capacity(8);
            attributes.push(KeyValue::new("rpc.system", "grpc"));
            attributes.extend(self.names.attributes());
            attributes.push(KeyValue::new("rpc.grpc.status_code", i64::from(code.0)));
            if let Some(connection) = connection {
                attributes.push(KeyValue::new("server.address", connection.address.clone()));
                attributes.push(KeyValue::new("server.port", i64::from(connection.port)));
            }
            if let Some(error) = error {
                attributes.push(KeyValue::new("error.type", error));
            }
            attributes
        };
        let duration = &self.inner.instruments.duration;
        match connection {
            // Bound per method, code and error on the endpoint: no hashing
            // of the attributes on every call.
            Some(connection) => connection.durations.record(
                duration,
                (Arc::clone(&self.names.full), code.0, error),
                seconds,
                attributes,
            ),
            None => duration.record(seconds, &attributes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushback_is_a_count_of_milliseconds_or_a_stop() {
        let of = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(PUSHBACK, HeaderValue::from_str(value).unwrap());
            Pushback::of(&headers)
        };
        assert_eq!(Pushback::of(&HeaderMap::new()), Pushback::Absent);
        assert_eq!(of("250"), Pushback::After(Duration::from_millis(250)));
        for stop in ["-1", "", "1.5", "soon", "99999999999"] {
            assert_eq!(of(stop), Pushback::Stop, "{stop:?}");
        }
    }

    #[test]
    fn method_patterns() {
        let names = RpcNames::of("/inventory.v1.Stock/Get");
        assert!(
            MethodPattern::parse("inventory.v1.Stock/Get")
                .unwrap()
                .matches(&names)
        );
        assert!(
            MethodPattern::parse("/inventory.v1.Stock/*")
                .unwrap()
                .matches(&names)
        );
        assert!(
            !MethodPattern::parse("inventory.v1.Stock/Put")
                .unwrap()
                .matches(&names)
        );
        for bad in ["", "Stock", "a/b/c", "/Get", "Stock/"] {
            assert!(MethodPattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
