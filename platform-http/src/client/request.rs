//! Building a request and sending it through the target's policies.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use http_body_util::Full;
use hyper::body::Incoming;
use opentelemetry::KeyValue;
use platform_core::resilience::{
    Admission, Attempt, CallOptions, Classification, Deadline, EndpointOutcome, ResilienceError,
    Verdict,
};
use tokio::time::Instant;
use tracing::Instrument;

use super::classify::{
    AttemptError, Failure, StaticStatus as _, classify, classify_failure, endpoint_outcome,
    is_retryable_status, outcome,
};
use super::endpoints::{Endpoint, PickKey, TriedSet};
use super::propagation::set_deadline;
use super::retry_after::RetryAfter;
use super::trace::CallSpan;
use super::{
    AttemptBody, BoxError, Client, ClientError, IDEMPOTENCY_KEY_HEADER, Inner, Response,
    StreamingBody,
};
use crate::server::{REQUEST_ID_NAME, RequestId};

enum Body {
    Empty,
    /// Kept whole: can be sent again.
    Buffered(Bytes),
    /// Read as it is sent: one attempt only.
    Streaming(StreamingBody),
}

/// A request being built; [`send`](RequestBuilder::send) runs it.
///
/// Errors of the builder methods (an invalid header, a body that does not
/// serialize) are reported by `send`, as reqwest does.
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    client: Client,
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Body,
    timeout: Option<Duration>,
    idempotent: Option<bool>,
    error: Option<String>,
}

impl std::fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("target", &self.client.inner.target)
            .field("method", &self.method)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Methods RFC 9110 defines as idempotent.
fn is_idempotent_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

impl RequestBuilder {
    pub(crate) fn new(client: Client, method: Method, path: String) -> Self {
        RequestBuilder {
            client,
            method,
            path,
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: Body::Empty,
            timeout: None,
            idempotent: None,
            error: None,
        }
    }

    fn fail(mut self, reason: String) -> Self {
        self.error.get_or_insert(reason);
        self
    }

    /// Adds a header (replacing a default header of the same name).
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        V: TryInto<HeaderValue>,
    {
        match (name.try_into(), value.try_into()) {
            (Ok(name), Ok(value)) => {
                self.headers.append(name, value);
                self
            }
            (Err(_), _) => self.fail("invalid header name".into()),
            (Ok(name), Err(_)) => self.fail(format!("invalid value for header {name}")),
        }
    }

    /// Adds headers.
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        self.headers.extend(headers);
        self
    }

    /// Appends query parameters (percent-encoded).
    pub fn query<K: AsRef<str>, V: AsRef<str>>(mut self, pairs: &[(K, V)]) -> Self {
        self.query.extend(
            pairs
                .iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())),
        );
        self
    }

    /// Sets the body. Up to `max_replay_body` it is kept so a retry can send
    /// it again; a larger one is sent once.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Body::Buffered(body.into());
        self
    }

    /// Streams the body: the request is sent once and never retried. Any
    /// [`http_body::Body`] of [`Bytes`]: a stream of chunks through
    /// `http_body_util::StreamBody`, a channel, a file's reader.
    pub fn streaming_body<B>(mut self, body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt as _;
        self.body = Body::Streaming(body.map_err(Into::into).boxed());
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => {
                self.headers
                    .entry(http::header::CONTENT_TYPE)
                    .or_insert(HeaderValue::from_static("application/json"));
                self.body = Body::Buffered(bytes.into());
                self
            }
            Err(e) => self.fail(format!("the JSON body does not serialize: {e}")),
        }
    }

    /// Gives this call at most `timeout`, every attempt included (the
    /// client's `total_timeout` and an inherited deadline still apply if earlier).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Says whether the request may be repeated once it may have reached
    /// the server, overriding what its method and headers imply.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }

    /// Sets the `Idempotency-Key` header: the server deduplicates by it, so
    /// the request may be retried whatever its method.
    pub fn idempotency_key(self, key: impl AsRef<str>) -> Self {
        let key = key.as_ref();
        match HeaderValue::from_str(key) {
            Ok(value) => self.header(IDEMPOTENCY_KEY_HEADER, value),
            Err(_) => self.fail(format!("invalid idempotency key {key:?}")),
        }
    }

    /// Sends the request through the target's policies and reads the answer.
    ///
    /// `Ok` holds the final answer whatever its status: a 404, a 500, and a
    /// 503 that retrying gave up on (attempts, budget or deadline spent)
    /// alike; [`Response::error_for_status`] turns 4xx and 5xx into
    /// [`ClientError::Status`]. `Err` means no answer came: no connection,
    /// a timeout, a reset, the breaker open, a body over the limit.
    pub async fn send(self) -> Result<Response, ClientError> {
        let client = self.client.clone();
        let inner = &*client.inner;
        let method_attribute = crate::semconv::method_attribute(&self.method).0;
        let (trace, span) = super::trace::start(method_attribute, inner.endpoints.single());
        // Boxed: the call's state (attempts, timers, hedge) is several KiB,
        // and every `.await` up the caller's chain would otherwise copy it.
        Box::pin(self.run(inner, method_attribute, trace))
            .instrument(span)
            .await
    }

    async fn run(
        self,
        inner: &Inner,
        method_attribute: &'static str,
        trace: CallSpan,
    ) -> Result<Response, ClientError> {
        let Prepared {
            method,
            path,
            query,
            headers,
            options,
            buffered,
            mut streaming,
        } = self.prepare(inner)?;
        // Held until the call ends, retries and hedges included.
        let permit = inner.resilience.enter_bulkhead();
        let refused = match &permit {
            None => Some(ClientError::BulkheadFull {
                target: inner.target.clone(),
                max: inner.resilience.bulkhead().max(),
            }),
            // The target refuses most calls as overloaded: this one is
            // refused here, at once, costing it nothing.
            Some(_) if !inner.resilience.admit_call() => Some(ClientError::Throttled {
                target: inner.target.clone(),
            }),
            Some(_) => None,
        };
        if let Some(error) = refused {
            let result = Err(error);
            report(&result, &trace, Duration::ZERO);
            trace.end();
            return result;
        }
        let exchange = Exchange {
            inner,
            method: &method,
            method_attribute,
            path: &path,
            query: &query,
            headers: &headers,
            last_end: Mutex::new(None),
            trace: &trace,
            tried: Mutex::new(TriedSet::default()),
        };
        let started = Instant::now();
        let classifier = |result: &Result<Response, AttemptError>| classify(result);
        let result = inner
            .resilience
            .call(&classifier, &options, |attempt| {
                let body = match (&buffered, streaming.take()) {
                    (Some(bytes), _) => AttemptBody::Left(Full::new(bytes.clone())),
                    (None, Some(stream)) => AttemptBody::Right(stream),
                    (None, None) => AttemptBody::Left(Full::new(Bytes::new())),
                };
                exchange.attempt(attempt, body)
            })
            .await
            .or_else(|stopped| stopped_at(stopped, &trace));
        if let Some(admission) = admission(&result) {
            inner.resilience.throttle().record(admission);
        }
        report(&result, &trace, started.elapsed());
        trace.end();
        drop(permit);
        result
    }

    /// The call as the resilience loop runs it: the request id sent on,
    /// the idempotency and body rules turned into call options, the
    /// target's default headers under the call's own.
    fn prepare(mut self, inner: &Inner) -> Result<Prepared, ClientError> {
        if let Some(reason) = self.error {
            return Err(ClientError::InvalidRequest {
                target: inner.target.clone(),
                reason,
            });
        }
        // The request being served goes on under its id, so that one id
        // finds every hop's logs; the server layer checked it is sane.
        if !self.headers.contains_key(REQUEST_ID_NAME)
            && let Some(id) = RequestId::current()
        {
            self.headers
                .insert(REQUEST_ID_NAME, id.header_value().clone());
        }
        let idempotent = self.idempotent.unwrap_or_else(|| {
            is_idempotent_method(&self.method) || self.headers.contains_key(IDEMPOTENCY_KEY_HEADER)
        });
        let options = if idempotent {
            CallOptions::idempotent()
        } else {
            CallOptions::not_idempotent()
        };
        // Each attempt's one timer covers the deadline too (see `attempt`).
        let mut options = options.with_attempts_enforcing_deadline();
        if let Some(timeout) = self.timeout {
            options = options.with_deadline(Deadline::after(timeout));
        }
        let (buffered, streaming) = match self.body {
            Body::Empty => (None, None),
            Body::Buffered(bytes) => (Some(bytes), None),
            Body::Streaming(body) => (None, Some(body)),
        };
        let replayable = streaming.is_none()
            && buffered
                .as_ref()
                .is_none_or(|b| b.len() as u64 <= inner.max_replay_body);
        if !replayable {
            inner
                .instruments
                .not_replayable
                .add(1, inner.instruments.target());
            options = options.with_max_attempts(1);
            options.no_hedge = true;
            // reqwest consumes a stream even when the connection fails:
            // another attempt would go without it. A large buffered body
            // is still here, and may go elsewhere when it never left.
            options.no_requeue = streaming.is_some();
        }
        let mut headers = inner.default_headers.clone();
        for name in self.headers.keys() {
            headers.remove(name);
        }
        headers.extend(self.headers);
        Ok(Prepared {
            method: self.method,
            path: self.path,
            query: self.query,
            headers,
            options,
            buffered,
            streaming,
        })
    }
}

/// An answer as read within an attempt: status, version, headers, body.
type Answer = (http::StatusCode, http::Version, HeaderMap, Bytes);

/// A request ready for the resilience loop (see `RequestBuilder::prepare`).
struct Prepared {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    options: CallOptions,
    buffered: Option<Bytes>,
    streaming: Option<StreamingBody>,
}

/// What the caller gets when the resilience loop stopped without an answer
/// What a call's end tells the adaptive throttle: an answer is the target
/// taking the call, unless it refused it as overloaded (429, or a platform
/// server's overloaded 503); no answer tells nothing (the breaker's and
/// ejection's business).
fn admission(result: &Result<Response, ClientError>) -> Option<Admission> {
    let response = result.as_ref().ok()?;
    let overloaded = response.status() == http::StatusCode::TOO_MANY_REQUESTS
        || (response.status() == http::StatusCode::SERVICE_UNAVAILABLE
            && response
                .headers()
                .contains_key(crate::server::OVERLOADED_HEADER));
    Some(if overloaded {
        Admission::Rejected
    } else {
        Admission::Accepted
    })
}

/// it liked (see `classify::outcome`), with the closing event on the span.
fn stopped_at(
    stopped: ResilienceError<AttemptError>,
    trace: &CallSpan,
) -> Result<Response, ClientError> {
    let reason = stop_reason(&stopped);
    let result = outcome(stopped);
    if trace.recording() {
        let mut attributes = Vec::with_capacity(3);
        attributes.push(KeyValue::new("reason", reason));
        let attempts = match &result {
            Ok(response) => Some(response.attempts),
            Err(error) => error.attempts(),
        };
        if let Some(attempts) = attempts {
            attributes.push(KeyValue::new("attempts", i64::from(attempts)));
        }
        let error_type = match &result {
            // A retryable status retrying gave up on.
            Ok(response) => response.status.as_str_static(),
            Err(error) => error.error_type(),
        };
        attributes.push(KeyValue::new("error.type", error_type));
        trace.event("http.client.stopped", attributes);
    }
    if let Ok(response) = &result {
        tracing::debug!(
            reason,
            status = response.status.as_u16(),
            "retrying stopped at an answer"
        );
    }
    result
}

/// The call's outcome on its span and in the debug log.
fn report(result: &Result<Response, ClientError>, trace: &CallSpan, elapsed: Duration) {
    match result {
        Ok(response) => {
            super::trace::answered(trace, response.status, response.attempts);
            if response.status.is_server_error() {
                trace.error(response.status.as_str_static());
            }
            tracing::debug!(
                attempts = response.attempts,
                status = response.status.as_u16(),
                elapsed = ?elapsed,
                "http.client.request answered"
            );
        }
        Err(error) => {
            if let Some(attempts) = error.attempts() {
                super::trace::resent(trace, attempts);
            }
            trace.error(error.error_type());
            // Debug like the resilience layer's own events: during an
            // outage every call fails, and the span carries error.type.
            tracing::debug!(
                attempts = error.attempts(),
                endpoint = error.endpoint(),
                elapsed = ?elapsed,
                error = %error,
                "http.client.request failed"
            );
        }
    }
}

/// Why the resilience loop stopped, for the closing event.
fn stop_reason(error: &ResilienceError<AttemptError>) -> &'static str {
    match error {
        ResilienceError::CircuitOpen { .. } => "circuit open",
        ResilienceError::DeadlineExceeded { .. } => "deadline exceeded",
        ResilienceError::PushbackBeyondDeadline { .. } => "server pushback beyond the deadline",
        ResilienceError::BudgetExhausted { .. } => "retry budget exhausted",
        ResilienceError::AttemptsExhausted { .. } => "attempts exhausted",
        ResilienceError::NotRetryable { .. } => "not retryable",
        ResilienceError::NotIdempotent { .. } => "not idempotent",
    }
}

/// What every attempt of one call shares.
struct Exchange<'a> {
    inner: &'a Inner,
    method: &'a Method,
    method_attribute: &'static str,
    path: &'a str,
    query: &'a [(String, String)],
    headers: &'a HeaderMap,
    /// When the previous attempt ended, for the "delay" of the next one's event.
    last_end: Mutex<Option<Instant>>,
    /// The call's span, for attempt events and the context attempts carry.
    trace: &'a CallSpan,
    /// Where the call's attempts went: retries and hedges go elsewhere.
    tried: Mutex<TriedSet>,
}

impl Exchange<'_> {
    async fn attempt(&self, attempt: Attempt, body: AttemptBody) -> Result<Response, AttemptError> {
        let (key, endpoint) = self.pick()?;
        let endpoint = &*endpoint;
        // One clock read for the start, the deadline header and the timer.
        let started = Instant::now();
        let delay = self
            .last_end
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|end| started.saturating_duration_since(end));
        let (result, deadline_passed) = self.send(endpoint, &attempt, body, started).await;
        let end = Instant::now();
        let elapsed = end.saturating_duration_since(started);
        *self.last_end.lock().unwrap_or_else(|p| p.into_inner()) = Some(end);
        let result = result
            .map(|(status, version, headers, body)| Response {
                status,
                version,
                headers,
                body,
                target: self.inner.target.clone(),
                endpoint: endpoint.label.clone(),
                attempts: attempt.number,
            })
            .map_err(|failure| AttemptError {
                endpoint: endpoint.label.clone(),
                failure,
                elsewhere: false,
            });
        if deadline_passed {
            // The deadline, not this attempt, ran out: the call ends in
            // DeadlineExceeded, and the attempt is neither counted against
            // the endpoint nor measured, as when the layer cancelled it.
            self.event(
                &attempt,
                endpoint,
                &result,
                "deadline exceeded",
                elapsed,
                delay,
            );
            return result;
        }
        let result = self.settle(key, result);
        let classification = classify(&result);
        self.record(&attempt, endpoint, &result, classification, elapsed, delay);
        result
    }

    /// The endpoint for the next attempt, one this call has not tried while
    /// there is one, marked as tried.
    fn pick(&self) -> Result<(PickKey, Arc<Endpoint>), AttemptError> {
        let mut tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
        match self.inner.endpoints.pick(&tried) {
            Ok((key, endpoint)) => {
                tried.insert(key.tried());
                Ok((key, endpoint))
            }
            // Discovery has not answered yet (or never had endpoints): the
            // request never left; the resilience layer may retry it.
            Err(reason) => Err(AttemptError {
                endpoint: Arc::from(""),
                failure: Failure::NoEndpoint(reason),
                elsewhere: false,
            }),
        }
    }

    /// Sends the attempt to `endpoint` under one timer, at the earlier of
    /// the attempt's own timeout and the call's deadline (the resilience
    /// layer arms none: see `CallOptions::attempts_enforce_deadline`); says
    /// whether it was the deadline that cut it.
    async fn send(
        &self,
        endpoint: &Endpoint,
        attempt: &Attempt,
        body: AttemptBody,
        started: Instant,
    ) -> (Result<Answer, Failure>, bool) {
        let deadline = attempt.deadline.instant();
        let (limit, cut_by_deadline) = match started.checked_add(self.inner.attempt_timeout) {
            Some(own) if own < deadline => (own, false),
            _ => (deadline, true),
        };
        let uri = match endpoint.uri(self.path, self.query) {
            Ok(uri) => uri,
            Err(reason) => return (Err(Failure::Invalid(reason)), false),
        };
        let mut request = http::Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        // Sized once for the call's headers and the ones added here
        // (deadline, traceparent, tracestate or baggage), rather than a
        // clone that grows on the first insert.
        headers.reserve(self.headers.len() + 3);
        for (name, value) in self.headers {
            headers.append(name.clone(), value.clone());
        }
        set_deadline(headers, deadline.saturating_duration_since(started));
        self.trace.inject(headers);
        match tokio::time::timeout_at(limit, self.exchange(request)).await {
            Ok(result) => (result, false),
            Err(_elapsed) => (Err(Failure::Timeout), cut_by_deadline),
        }
    }

    /// Records the attempt's outcome against its endpoint (ejection, the
    /// balancer's view) and, for a failure, whether another endpoint is
    /// left to retry on.
    fn settle(
        &self,
        key: PickKey,
        mut result: Result<Response, AttemptError>,
    ) -> Result<Response, AttemptError> {
        let outcome = match &result {
            Err(error) if !classify_failure(&error.failure).is_healthy() => {
                endpoint_outcome(&error.failure)
            }
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

    /// Sends the request and reads the whole answer.
    async fn exchange(&self, request: http::Request<AttemptBody>) -> Result<Answer, Failure> {
        let response = self
            .inner
            .http
            .request(request)
            .await
            .map_err(Failure::from_transport)?;
        let (parts, mut body) = response.into_parts();
        let (status, version, headers) = (parts.status, parts.version, parts.headers);
        let body = read_limited(&headers, &mut body, self.inner.max_response_body).await?;
        if is_retryable_status(status) {
            let retry_after = match RetryAfter::from_headers(&headers, SystemTime::now()) {
                RetryAfter::Absent => None,
                RetryAfter::Delay(delay) => Some(delay),
                RetryAfter::Malformed => {
                    self.inner
                        .instruments
                        .retry_after_malformed
                        .add(1, self.inner.instruments.target());
                    tracing::debug!(
                        value = ?headers.get(http::header::RETRY_AFTER),
                        "ignoring a malformed Retry-After header"
                    );
                    None
                }
            };
            let overloaded = status == http::StatusCode::SERVICE_UNAVAILABLE
                && headers.contains_key(crate::server::OVERLOADED_HEADER);
            return Err(Failure::Status {
                status,
                version,
                headers: Box::new(headers),
                retry_after,
                overloaded,
                body,
            });
        }
        Ok((status, version, headers, body))
    }

    /// The attempt's duration metric and event.
    fn record(
        &self,
        attempt: &Attempt,
        endpoint: &super::endpoints::Endpoint,
        result: &Result<Response, AttemptError>,
        classification: Classification,
        elapsed: Duration,
        delay: Option<Duration>,
    ) {
        let (status, error_type) = match result {
            Ok(response) => (
                Some(response.status),
                response
                    .status
                    .is_server_error()
                    .then(|| response.status.as_str_static()),
            ),
            Err(e) => match &e.failure {
                Failure::Status { status, .. } => (Some(*status), Some(e.failure.error_type())),
                failure => (None, Some(failure.error_type())),
            },
        };
        let method = self.method_attribute;
        let key = (method, status.map(|s| s.as_u16()), error_type);
        endpoint.durations.record(
            &self.inner.instruments.duration,
            key,
            elapsed.as_secs_f64(),
            || {
                let mut attributes = vec![
                    KeyValue::new("http.request.method", method),
                    KeyValue::new("server.address", endpoint.address.clone()),
                    KeyValue::new("server.port", i64::from(endpoint.port)),
                ];
                push_outcome(&mut attributes, status, error_type);
                attributes
            },
        );
        let outcome = match (result, classification.verdict) {
            (Ok(_), _) => "answered",
            (Err(_), Verdict::Retryable { .. }) => "retryable failure",
            (Err(_), _) => "failed",
        };
        self.event(attempt, endpoint, result, outcome, elapsed, delay);
    }

    /// The attempt's debug event, and the same as an OpenTelemetry event on
    /// the call's span when that span is recorded: traces show every
    /// attempt without an info log line per attempt.
    fn event(
        &self,
        attempt: &Attempt,
        endpoint: &super::endpoints::Endpoint,
        result: &Result<Response, AttemptError>,
        outcome: &'static str,
        elapsed: Duration,
        delay: Option<Duration>,
    ) {
        let status = match result {
            Ok(response) => Some(response.status),
            Err(AttemptError {
                failure: Failure::Status { status, .. },
                ..
            }) => Some(*status),
            Err(_) => None,
        };
        let error_type = result.as_ref().err().map(|e| e.failure.error_type());
        tracing::debug!(
            attempt = attempt.number,
            hedge = attempt.hedge,
            endpoint = %endpoint.label,
            delay = ?delay,
            elapsed = ?elapsed,
            outcome,
            status = status.map(|s| s.as_u16()),
            error = error_type,
            "http.client.attempt"
        );
        if !self.trace.recording() {
            return;
        }
        let mut attributes = Vec::with_capacity(9);
        attributes.push(KeyValue::new("attempt", i64::from(attempt.number)));
        if attempt.hedge {
            attributes.push(KeyValue::new("hedge", true));
        }
        attributes.push(KeyValue::new("endpoint", endpoint.label.clone()));
        if let Some(delay) = delay {
            attributes.push(KeyValue::new("delay_ms", millis(delay)));
        }
        attributes.push(KeyValue::new("elapsed_ms", millis(elapsed)));
        attributes.push(KeyValue::new("outcome", outcome));
        push_outcome(&mut attributes, status, error_type);
        self.trace.event("http.client.attempt", attributes);
    }
}

/// An attempt's status and error type as semantic-convention attributes.
fn push_outcome(
    attributes: &mut Vec<KeyValue>,
    status: Option<http::StatusCode>,
    error_type: Option<&'static str>,
) {
    if let Some(status) = status {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
    }
    if let Some(error_type) = error_type {
        attributes.push(KeyValue::new("error.type", error_type));
    }
}

/// A duration in (fractional) milliseconds, for event attributes.
fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Reads a whole body, refusing it once it passes `limit` bytes (checked
/// against `Content-Length` first, then as chunks arrive).
async fn read_limited(
    headers: &HeaderMap,
    body: &mut Incoming,
    limit: u64,
) -> Result<Bytes, Failure> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Failure::TooLarge(limit));
    }
    let too_large = |len: usize| len as u64 > limit;
    // Most answers arrive in one chunk: kept as it came, not copied.
    let Some(first) = next_chunk(body).await? else {
        return Ok(Bytes::new());
    };
    if too_large(first.len()) {
        return Err(Failure::TooLarge(limit));
    }
    let Some(second) = next_chunk(body).await? else {
        return Ok(first);
    };
    let mut whole = bytes::BytesMut::from(first);
    let mut next = Some(second);
    while let Some(chunk) = next {
        if too_large(whole.len() + chunk.len()) {
            return Err(Failure::TooLarge(limit));
        }
        whole.extend_from_slice(&chunk);
        next = next_chunk(body).await?;
    }
    Ok(whole.freeze())
}

/// The body's next data frame; trailers are skipped.
async fn next_chunk(body: &mut Incoming) -> Result<Option<Bytes>, Failure> {
    use http_body_util::BodyExt as _;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::Body(Box::new(e)))?;
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}
