//! Spans reach a real OTLP receiver over gRPC and HTTP/protobuf, from a child
//! process that ends its spans and exits; with the receiver down or hung the
//! process still exits on time with bounded memory.

#[path = "../support/child.rs"]
mod child;
#[path = "../support/receiver.rs"]
mod receiver;

use std::collections::HashMap;
use std::time::Duration;

use receiver::{attr_int, attr_str};

const DEADLINE: Duration = Duration::from_secs(60);

/// Every round's root and child arrive, linked, with attributes and resource.
fn assert_delivered(received: &receiver::Received, rounds: i64) {
    let spans = received.spans();
    assert_eq!(spans.len() as i64, rounds * 2, "spans received");
    let roots: HashMap<i64, &receiver::ReceivedSpan> = spans
        .iter()
        .filter(|s| s.span.name == "smoke.root")
        .map(|s| (attr_int(&s.span.attributes, "smoke.index").unwrap(), s))
        .collect();
    assert_eq!(roots.len() as i64, rounds);
    for s in spans.iter().filter(|s| s.span.name == "smoke.child") {
        let index = attr_int(&s.span.attributes, "smoke.index").unwrap();
        let root = roots[&index];
        assert_eq!(
            s.span.trace_id, root.span.trace_id,
            "child shares the trace"
        );
        assert_eq!(
            s.span.parent_span_id, root.span.span_id,
            "child points at its root"
        );
        assert!(root.span.parent_span_id.is_empty(), "root has no parent");
    }
    let resource = &spans[0].resource;
    assert_eq!(
        attr_str(resource, "service.name").as_deref(),
        Some("smoke-test")
    );
    assert_eq!(
        attr_str(resource, "service.version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        attr_str(resource, "service.instance.id").map(|s| s.len()),
        Some(36)
    );
    assert_eq!(
        attr_str(resource, "k8s.pod.name").as_deref(),
        Some("smoke-pod-1")
    );
    assert!(attr_int(resource, "process.pid").is_some());
    assert_eq!(attr_str(resource, "team").as_deref(), Some("platform"));
}

async fn deliver(receiver: receiver::Receiver, protocol: &str, runtime: &str, exit: &str) {
    let rounds = 200;
    let run = child::run_async(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=platform"),
            ("POD_NAME", "smoke-pod-1"),
        ],
        &[
            "--spans",
            &rounds.to_string(),
            "--runtime",
            runtime,
            "--exit",
            exit,
            "--service",
            "smoke-test",
        ],
        DEADLINE,
    )
    .await;
    if exit == "shutdown" {
        assert_eq!(run.report["shutdown"], "ok", "{}", run.stderr);
    }
    assert_eq!(run.report["spans_dropped"], 0);
    assert_delivered(&receiver.received, rounds);
    // The generic endpoint turns metric push on too; the final collection at
    // shutdown carries the self-monitoring counters.
    assert!(
        receiver
            .received
            .metric_names()
            .iter()
            .any(|n| n == "otel.sdk.exporter.span.exported"),
        "{:?}",
        receiver.received.metric_names()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_current_thread_runtime_shutdown_delivers_every_span() {
    deliver(receiver::grpc().await, "grpc", "current", "shutdown").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_current_thread_runtime_dropped_guard_delivers_every_span() {
    deliver(receiver::grpc().await, "grpc", "current", "drop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_multi_thread_runtime_delivers_every_span() {
    deliver(receiver::grpc().await, "grpc", "multi", "shutdown").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_current_thread_runtime_delivers_every_span() {
    deliver(
        receiver::http().await,
        "http/protobuf",
        "current",
        "shutdown",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_multi_thread_dropped_guard_delivers_every_span() {
    deliver(receiver::http().await, "http/protobuf", "multi", "drop").await;
}

/// With nothing listening, spans beyond the queue are dropped and counted, the
/// process exits within its shutdown timeout, and memory does not grow with the
/// number of spans.
async fn collector_down(endpoint: String, protocol: &str) {
    let rounds = 50_000u64;
    let payload = 2048;
    let run = child::run_async(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
        ],
        &[
            "--spans",
            &rounds.to_string(),
            "--payload",
            &payload.to_string(),
            "--max-queue",
            "512",
            "--shutdown-timeout",
            "2s",
        ],
        // Shutdown is bounded by 2 s; the rest is span creation in a debug build.
        DEADLINE,
    )
    .await;
    let r = &run.report;
    let dropped = r["spans_dropped"].as_u64().unwrap();
    let failed = r["spans_export_failed"].as_u64().unwrap();
    assert_eq!(r["spans_exported"], 0);
    assert!(dropped > rounds, "most spans dropped and counted: {r}");
    assert!(dropped + failed <= rounds * 2, "{r}");
    // Keeping every span (2 KiB payload each) would need over 100 MiB.
    let peak_mib = r["peak_rss_kib"].as_u64().unwrap() / 1024;
    assert!(peak_mib < 64, "peak RSS {peak_mib} MiB: {r}");
    assert!(
        run.stderr.contains("span export failed"),
        "the outage is logged:\n{}",
        run.stderr
    );
    // The guard keeps to its 2 s budget (plus the hand-off slack), outage or not.
    let shutdown_ms = r["shutdown_ms"].as_u64().unwrap();
    assert!(shutdown_ms <= 3_000, "shutdown took {shutdown_ms} ms: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_collector_down_exits_on_time_with_bounded_memory() {
    let (port, _bound) = receiver::closed_port();
    collector_down(format!("http://127.0.0.1:{port}"), "grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_collector_down_exits_on_time_with_bounded_memory() {
    let (port, _bound) = receiver::closed_port();
    collector_down(format!("http://127.0.0.1:{port}"), "http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_collector_hung_exits_on_time_with_bounded_memory() {
    let (port, _hole) = receiver::black_hole();
    collector_down(format!("http://127.0.0.1:{port}"), "http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_disabled_sends_nothing_and_exits_cleanly() {
    let receiver = receiver::http().await;
    let run = child::run_async(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_SDK_DISABLED", "true"),
        ],
        &["--spans", "20"],
        DEADLINE,
    )
    .await;
    assert_eq!(run.report["shutdown"], "ok");
    assert!(receiver.received.spans().is_empty());
}

/// With every target at trace level, the transport and telemetry crates log
/// plenty while exporting, yet none of it becomes a span: telemetry does not
/// trace itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_does_not_trace_itself_even_at_trace_level() {
    let receiver = receiver::grpc().await;
    let run = child::run_async(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("RUST_LOG", "trace"),
        ],
        &["--spans", "20"],
        DEADLINE,
    )
    .await;
    assert_eq!(run.report["shutdown"], "ok");
    assert!(
        run.stderr.contains("\"target\":\"h2")
            || run.stderr.contains("\"target\":\"tonic")
            || run.stderr.contains("\"target\":\"hyper"),
        "the transport crates did log"
    );
    let names: Vec<String> = receiver
        .received
        .spans()
        .iter()
        .map(|s| s.span.name.clone())
        .collect();
    assert_eq!(names.len(), 40, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("smoke.")), "{names:?}");
}

/// `OTEL_EXPORTER_OTLP_HEADERS` reach the collector and never the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_headers_are_sent_and_never_logged() {
    let receiver = receiver::http().await;
    let run = child::run_async(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s3cr3t-value"),
            ("RUST_LOG", "debug"),
        ],
        &["--spans", "5"],
        DEADLINE,
    )
    .await;
    assert_eq!(run.report["shutdown"], "ok");
    assert!(
        receiver
            .received
            .api_keys()
            .iter()
            .all(|k| k == "s3cr3t-value")
    );
    assert!(!receiver.received.api_keys().is_empty());
    assert!(!run.stderr.contains("s3cr3t"), "{}", run.stderr);
}
