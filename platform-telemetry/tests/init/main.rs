//! One process's life with telemetry: init, a second init, propagation through
//! the installed propagators, metrics in the Prometheus exposition, shutdown on
//! a current-thread runtime. Telemetry is process-global, so this is one test.

use opentelemetry::trace::TraceContextExt as _;
use platform_telemetry::tracing_opentelemetry::OpenTelemetrySpanExt as _;
use platform_telemetry::{ServiceInfo, TelemetryError, TelemetrySettings, propagation};

#[tokio::test] // current-thread runtime: the case where a blocking shutdown used to stall
async fn lifecycle_on_a_current_thread_runtime() {
    let mut settings = TelemetrySettings::default();
    settings.logging.output = platform_telemetry::LogOutput::Stderr;
    let service = ServiceInfo::new("init-test", "0.0.1").with_environment("test");

    let mut bad = settings.clone();
    bad.logging.level = "loud".into();
    assert!(matches!(
        platform_telemetry::init(&bad, &service),
        Err(TelemetryError::InvalidSetting { .. })
    ));
    // Failing half-way, after the gRPC export runtime was started, inside this
    // runtime: an error, not a "cannot drop a runtime" panic.
    let mut bad = settings.clone();
    bad.tracing.otlp.endpoint = "http://127.0.0.1:9".into();
    bad.tracing.otlp.protocol = platform_telemetry::OtlpProtocol::Grpc;
    bad.tracing
        .otlp
        .headers
        .insert("bad header".into(), "v".to_owned().into());
    assert!(matches!(
        platform_telemetry::init(&bad, &service),
        Err(TelemetryError::InvalidSetting { key, .. }) if key == "telemetry.tracing.otlp.headers.bad header"
    ));
    // A failed init leaves nothing behind: the corrected call succeeds.
    let guard = platform_telemetry::init(&settings, &service).expect("first init");
    assert!(matches!(
        platform_telemetry::init(&settings, &service),
        Err(TelemetryError::AlreadyInitialised)
    ));

    // Inject: the outgoing traceparent carries the current span's ids.
    let span = tracing::info_span!("outgoing");
    let mut headers = http::HeaderMap::new();
    span.in_scope(|| propagation::inject(&mut headers));
    let sc = span.context().span().span_context().clone();
    assert!(sc.is_valid());
    let traceparent = headers["traceparent"].to_str().unwrap();
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", sc.trace_id(), sc.span_id())
    );

    // Extract: a valid header becomes the parent of the server span.
    let parent = propagation::extract(&headers);
    let server = tracing::info_span!("incoming");
    server.set_parent(parent).unwrap();
    assert_eq!(
        server.context().span().span_context().trace_id(),
        sc.trace_id()
    );

    // A malformed header starts a new trace and is counted.
    let before = platform_telemetry::self_metrics::self_metrics().traceparent_invalid;
    let mut broken = http::HeaderMap::new();
    broken.insert(
        "traceparent",
        "00-nothex-00f067aa0ba902b7-01".parse().unwrap(),
    );
    let cx = propagation::extract(&broken);
    assert!(!cx.span().span_context().is_valid());
    assert_eq!(
        platform_telemetry::self_metrics::self_metrics().traceparent_invalid,
        before + 1
    );

    // Metrics recorded through the global meter show up in the exposition.
    let meter = opentelemetry::global::meter("orders");
    meter
        .u64_counter("orders.created")
        .build()
        .add(3, &[opentelemetry::KeyValue::new("channel", "web")]);
    meter
        .f64_histogram("http.server.request.duration")
        .with_unit("s")
        .build()
        .record(0.02, &[]);
    let prometheus = guard.prometheus().expect("exposition on by default");
    let text = prometheus.clone().render();
    assert!(
        text.contains(r#"orders_created_total{channel="web""#),
        "{text}"
    );
    assert!(
        text.contains("http_server_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("platform_telemetry_propagation_invalid_total"),
        "{text}"
    );
    assert!(
        text.contains(r#"service_name="init-test""#),
        "target_info carries the resource: {text}"
    );

    guard.shutdown().await.expect("shutdown within the timeout");
    assert!(matches!(
        platform_telemetry::init(&settings, &service),
        Err(TelemetryError::AlreadyInitialised)
    ));
}
