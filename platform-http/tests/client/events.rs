//! Every attempt and the reason the call stopped reach the client span as
//! OpenTelemetry events (not only debug log lines, which the default
//! `info` level drops).

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use opentelemetry::Value;
use opentelemetry::trace::Event;
use platform_http::Client;
use platform_telemetry::opentelemetry_sdk::trace::SpanData;
use platform_telemetry::testing::TelemetryCapture;

use crate::{Hits, serve, settings, target};

/// Answers 503 to the first `failures` requests, then 200.
fn failing_first(failures: usize) -> axum::Router {
    let hits = Hits::default();
    axum::Router::new().route(
        "/",
        get(move || {
            let failed = hits.bump() <= failures;
            async move {
                if failed {
                    (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
                } else {
                    "ok".into_response()
                }
            }
        }),
    )
}

/// The events the client adds to its span itself. The capture keeps every
/// level, so the debug events (which tracing-opentelemetry turns into span
/// events with a `level`) are there too; a service at `info` drops those.
fn own_events(span: &SpanData) -> Vec<&Event> {
    span.events
        .iter()
        .filter(|e| attribute(e, "level").is_none())
        .collect()
}

/// An attribute of the span itself.
fn span_attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

/// The port of a server's `http://127.0.0.1:<port>` URL.
fn port_of(url: &str) -> i64 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

fn attribute<'a>(event: &'a Event, key: &str) -> Option<&'a Value> {
    event
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

#[tokio::test]
async fn a_call_retried_once_has_an_event_per_attempt() {
    let capture = TelemetryCapture::new();
    let url = serve(failing_first(1)).await;
    let client = Client::from_settings(&target("events"), &settings(&url)).unwrap();
    {
        let _on = capture.set_default();
        let response = client.get("/").send().await.unwrap();
        assert_eq!(response.attempts(), 2);
    }
    let span = capture.span("GET").expect("the client span was exported");
    let events = own_events(&span);
    assert_eq!(events.len(), 2, "{events:#?}");
    let endpoint = Value::from(url.trim_start_matches("http://").to_owned());

    let first = events[0];
    assert_eq!(first.name, "http.client.attempt");
    assert_eq!(attribute(first, "attempt"), Some(&Value::I64(1)));
    assert_eq!(attribute(first, "endpoint"), Some(&endpoint));
    assert_eq!(
        attribute(first, "delay_ms"),
        None,
        "a first attempt has no delay"
    );
    assert_eq!(
        attribute(first, "outcome"),
        Some(&Value::from("retryable failure"))
    );
    assert_eq!(
        attribute(first, "http.response.status_code"),
        Some(&Value::I64(503))
    );
    assert_eq!(attribute(first, "error.type"), Some(&Value::from("503")));
    assert!(matches!(attribute(first, "elapsed_ms"), Some(Value::F64(ms)) if *ms > 0.0));

    let second = events[1];
    assert_eq!(second.name, "http.client.attempt");
    assert_eq!(attribute(second, "attempt"), Some(&Value::I64(2)));
    assert!(
        matches!(attribute(second, "delay_ms"), Some(Value::F64(ms)) if *ms >= 0.0),
        "{second:?}"
    );
    assert_eq!(attribute(second, "outcome"), Some(&Value::from("answered")));
    assert_eq!(
        attribute(second, "http.response.status_code"),
        Some(&Value::I64(200))
    );
    assert_eq!(attribute(second, "error.type"), None);
    assert!(second.timestamp >= first.timestamp);
}

#[tokio::test]
async fn a_call_that_gives_up_says_why() {
    let capture = TelemetryCapture::new();
    let url = serve(failing_first(usize::MAX)).await;
    let client = Client::from_settings(&target("events-exhausted"), &settings(&url)).unwrap();
    {
        let _on = capture.set_default();
        let response = client.get("/").send().await.unwrap();
        assert_eq!(response.attempts(), 3);
    }
    let span = capture.span("GET").expect("the client span was exported");
    let events = own_events(&span);
    let names: Vec<&str> = events.iter().map(|e| &*e.name).collect();
    assert_eq!(
        names,
        [
            "http.client.attempt",
            "http.client.attempt",
            "http.client.attempt",
            "http.client.stopped"
        ]
    );
    let stopped = events[3];
    assert_eq!(
        attribute(stopped, "reason"),
        Some(&Value::from("attempts exhausted"))
    );
    assert_eq!(attribute(stopped, "attempts"), Some(&Value::I64(3)));
    // Retrying gave up on a 503: the answer stands, and says why.
    assert_eq!(attribute(stopped, "error.type"), Some(&Value::from("503")));
}

#[tokio::test]
async fn the_client_span_is_a_child_of_the_callers_and_travels_with_the_request() {
    use opentelemetry::trace::SpanKind;
    use tracing::Instrument as _;

    // What `platform_telemetry::init` installs (no other test here minds).
    opentelemetry::global::set_text_map_propagator(
        platform_telemetry::propagation::TraceContextPropagator::new(),
    );
    let capture = TelemetryCapture::new();
    let echo = axum::Router::new().route(
        "/",
        get(|headers: axum::http::HeaderMap| async move {
            headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        }),
    );
    let url = serve(echo).await;
    let client = Client::from_settings(&target("events-parent"), &settings(&url)).unwrap();
    let sent = {
        let _on = capture.set_default();
        let handler = tracing::info_span!("handler");
        async { client.get("/").send().await.unwrap().text() }
            .instrument(handler)
            .await
    };
    let handler = capture.span("handler").expect("the caller's span");
    let span = capture.span("GET").expect("the client span was exported");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(span.parent_span_id, handler.span_context.span_id());
    assert_eq!(
        span.span_context.trace_id(),
        handler.span_context.trace_id()
    );
    let attribute = |key: &str| span_attribute(&span, key);
    assert_eq!(attribute("http.request.method"), Some(Value::from("GET")));
    assert_eq!(attribute("server.address"), Some(Value::from("127.0.0.1")));
    assert_eq!(attribute("server.port"), Some(Value::I64(port_of(&url))));
    assert_eq!(
        attribute("http.response.status_code"),
        Some(Value::I64(200))
    );
    assert_eq!(attribute("error.type"), None);
    // The server saw the client span's own context, sampled.
    assert_eq!(
        sent,
        format!(
            "00-{}-{}-01",
            span.span_context.trace_id(),
            span.span_context.span_id()
        )
    );
}

#[tokio::test]
async fn a_failed_call_marks_its_span_as_an_error() {
    use opentelemetry::trace::Status;

    let capture = TelemetryCapture::new();
    let url = serve(failing_first(usize::MAX)).await;
    let client = Client::from_settings(&target("events-error"), &settings(&url)).unwrap();
    {
        let _on = capture.set_default();
        assert!(
            client
                .get("/")
                .send()
                .await
                .unwrap()
                .status()
                .is_server_error()
        );
    }
    let span = capture.span("GET").expect("the client span was exported");
    assert!(
        matches!(span.status, Status::Error { .. }),
        "{:?}",
        span.status
    );
    let attribute = |key: &str| span_attribute(&span, key);
    // A 5xx answer: the semantic conventions' error.type is the status code.
    assert_eq!(attribute("error.type"), Some(Value::from("503")));
    assert_eq!(
        attribute("http.response.status_code"),
        Some(Value::I64(503))
    );
    assert_eq!(attribute("http.request.resend_count"), Some(Value::I64(2)));
}

#[tokio::test]
async fn under_a_subscriber_of_its_own_the_client_span_goes_through_tracing() {
    use opentelemetry::trace::{SpanKind, TracerProvider as _};
    use platform_telemetry::opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt as _;

    // A service that set up tracing-opentelemetry by hand, not through
    // `platform_telemetry::init`.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry().with(
        platform_telemetry::tracing_opentelemetry::layer().with_tracer(provider.tracer("own")),
    );
    let url = serve(failing_first(1)).await;
    let client = Client::from_settings(&target("events-own"), &settings(&url)).unwrap();
    {
        let _on = tracing::subscriber::set_default(subscriber);
        client.get("/").send().await.unwrap();
    }
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let span = spans
        .iter()
        .find(|s| s.name == "GET")
        .expect("the client span was exported");
    assert_eq!(span.span_kind, SpanKind::Client);
    let names: Vec<&str> = own_events(span).iter().map(|e| &*e.name).collect();
    assert_eq!(names, ["http.client.attempt", "http.client.attempt"]);
    let attribute = |key: &str| span_attribute(span, key);
    assert_eq!(
        attribute("http.response.status_code"),
        Some(Value::I64(200))
    );
    assert_eq!(attribute("http.request.resend_count"), Some(Value::I64(1)));
    assert_eq!(attribute("server.port"), Some(Value::I64(port_of(&url))));
}

/// A client's instruments, and those of its policies, come from the meter
/// provider it is given (the runtime's, through `Client::for_service`), not
/// from whatever the process-wide one is when it is built.
#[tokio::test]
async fn a_clients_instruments_come_from_the_meters_it_is_given() {
    let capture = TelemetryCapture::new();
    let url = serve(failing_first(1)).await;
    let client = Client::builder("metered", &settings(&url))
        .meters(platform_core::Meters::from_provider(
            capture.meter_provider(),
        ))
        .build()
        .unwrap();
    let answer = client.get("/").send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    // One 503, one 200: two attempts, one retry, both timed.
    assert_eq!(
        capture.histogram_count("http.client.request.duration"),
        Some(2)
    );
    assert_eq!(
        capture.counter_total("platform.resilience.attempts"),
        Some(2)
    );
    assert_eq!(
        capture.counter_total("platform.resilience.retries"),
        Some(1)
    );
}
