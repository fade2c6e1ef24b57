//! A gRPC call's telemetry, with telemetry on (one init per process, so its
//! own test binary): the server span continues the caller's trace from its
//! `traceparent` metadata and is named `package.Service/Method` with the
//! RPC attributes and status code; `rpc.server.call.duration` has them too
//! (and the HTTP metric does not count gRPC calls); a malformed
//! `grpc-timeout` is counted.

#[path = "../common/mod.rs"]
mod common;

use std::time::Duration;

use common::{Running, SERVICE, builder, call, raw_call};
use opentelemetry::Value;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use platform_core::telemetry::SpanExporterHook;
use platform_core::telemetry::opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};

const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

/// The exported spans named `name`, waiting for the batch to go out.
async fn spans_named(exporter: &InMemorySpanExporter, name: &str, count: usize) -> Vec<SpanData> {
    for _ in 0..100 {
        let spans: Vec<_> = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.name == name)
            .collect();
        if spans.len() >= count {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {count} spans named {name} exported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_has_an_rpc_span_and_metric_with_its_status_code() {
    let exporter = InMemorySpanExporter::default();
    let rt = builder(&[
        ("telemetry.logging.level", "warn"),
        ("telemetry.tracing.scheduled_delay", "50ms"),
    ])
    .span_exporter(SpanExporterHook::new(exporter.clone()))
    .init()
    .await
    .unwrap()
    .0;
    let s = Running::start(rt).await;
    let mut client = s.client().await;
    let traceparent = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    let answer = client
        .export(call(&[("traceparent", &traceparent)]))
        .await
        .unwrap();
    assert_eq!(
        answer.metadata().get("x-trace-id").unwrap(),
        PARENT_TRACE,
        "the handler ran in the caller's trace"
    );
    let failed = client.export(call(&[("x-fail", "1")])).await.unwrap_err();
    assert_eq!(failed.code(), tonic::Code::NotFound);
    let panicked = client.export(call(&[("x-panic", "1")])).await.unwrap_err();
    assert_eq!(panicked.code(), tonic::Code::Internal);
    assert_eq!(raw_call(&s.api, &[("grpc-timeout", "soon")]).await, Some(0));

    // The spans: named for the method, with the RPC attributes; the first
    // continues the caller's trace under the caller's span.
    let name = format!("{SERVICE}/Export");
    let spans = spans_named(&exporter, &name, 4).await;
    let first = &spans[0];
    assert_eq!(first.span_context.trace_id().to_string(), PARENT_TRACE);
    assert_eq!(first.parent_span_id.to_string(), PARENT_SPAN);
    assert_eq!(first.span_kind, opentelemetry::trace::SpanKind::Server);
    assert_eq!(attribute(first, "rpc.system"), Some("grpc".into()));
    assert_eq!(attribute(first, "rpc.service"), Some(SERVICE.into()));
    assert_eq!(attribute(first, "rpc.method"), Some("Export".into()));
    let codes: Vec<_> = spans
        .iter()
        .map(|s| attribute(s, "rpc.grpc.status_code"))
        .collect();
    assert_eq!(
        codes,
        [
            Some(0.into()),
            Some(5.into()),
            Some(13.into()),
            Some(0.into())
        ],
        "OK (from the trailers), NOT_FOUND and INTERNAL (trailers-only), OK"
    );
    assert_eq!(
        spans[2].status,
        opentelemetry::trace::Status::error(""),
        "INTERNAL is the server's error"
    );
    assert_eq!(
        spans[1].status,
        opentelemetry::trace::Status::Unset,
        "NOT_FOUND is the caller's"
    );

    // The metric, as Prometheus shows it on the admin port.
    let metrics = reqwest::get(format!("{}/metrics", s.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count_of = |code: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with("rpc_server_call_duration_seconds_count{"))
            .filter(|l| {
                l.contains("rpc_system=\"grpc\"")
                    && l.contains(&format!("rpc_service=\"{SERVICE}\""))
                    && l.contains("rpc_method=\"Export\"")
                    && l.contains(&format!("rpc_grpc_status_code=\"{code}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
            .next()
    };
    assert_eq!(count_of("0").as_deref(), Some("2"), "{metrics}");
    assert_eq!(count_of("5").as_deref(), Some("1"), "{metrics}");
    assert_eq!(count_of("13").as_deref(), Some("1"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("rpc_grpc_status_code=\"13\"")
                && l.contains("error_type=\"INTERNAL\"")),
        "{metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("http_server_request_duration") && l.contains(SERVICE)),
        "gRPC calls are not counted as HTTP requests too: {metrics}"
    );
    assert!(
        metrics.lines().any(
            |l| l.starts_with("platform_http_server_deadline_header_total{")
                && l.contains("header=\"grpc-timeout\"")
                && l.contains("outcome=\"invalid\"")
        ),
        "the malformed grpc-timeout is counted: {metrics}"
    );

    // The platform's channel: a client span the server's continues, and
    // rpc.client.call.duration from the runtime's meters.
    let channel =
        platform_grpc::Channel::builder("self", &platform_grpc::GrpcClientSettings::default())
            .endpoints([s.api.trim_start_matches("http://").to_owned()])
            .meters(s.rt.meters().clone())
            .build()
            .unwrap();
    let mut ours = TraceServiceClient::new(channel);
    let answer = ours.export(call(&[])).await.unwrap();
    let handler_trace = answer
        .metadata()
        .get("x-trace-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let failed = ours.export(call(&[("x-fail", "1")])).await.unwrap_err();
    assert_eq!(failed.code(), tonic::Code::NotFound);
    let spans = spans_named(&exporter, &name, 8).await;
    let clients: Vec<_> = spans
        .iter()
        .filter(|s| s.span_kind == opentelemetry::trace::SpanKind::Client)
        .collect();
    assert_eq!(clients.len(), 2, "one client span per call");
    let client = clients[0];
    assert_eq!(
        client.span_context.trace_id().to_string(),
        handler_trace,
        "the server continued the client's trace"
    );
    let server = spans
        .iter()
        .find(|s| {
            s.span_kind == opentelemetry::trace::SpanKind::Server
                && s.span_context.trace_id() == client.span_context.trace_id()
        })
        .expect("the server's span of that call");
    assert_eq!(server.parent_span_id, client.span_context.span_id());
    assert_eq!(attribute(client, "rpc.system"), Some("grpc".into()));
    assert_eq!(attribute(client, "rpc.service"), Some(SERVICE.into()));
    assert_eq!(attribute(client, "rpc.method"), Some("Export".into()));
    assert_eq!(attribute(client, "rpc.grpc.status_code"), Some(0.into()));
    assert_eq!(
        attribute(client, "server.address"),
        Some("127.0.0.1".into())
    );
    assert!(attribute(client, "server.port").is_some());
    assert_eq!(
        attribute(clients[1], "rpc.grpc.status_code"),
        Some(5.into())
    );
    let metrics = reqwest::get(format!("{}/metrics", s.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let client_count = |code: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with("rpc_client_call_duration_seconds_count{"))
            .filter(|l| {
                l.contains("rpc_system=\"grpc\"")
                    && l.contains(&format!("rpc_service=\"{SERVICE}\""))
                    && l.contains("rpc_method=\"Export\"")
                    && l.contains("server_address=\"127.0.0.1\"")
                    && l.contains(&format!("rpc_grpc_status_code=\"{code}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
            .next()
    };
    assert_eq!(client_count("0").as_deref(), Some("1"), "{metrics}");
    assert_eq!(client_count("5").as_deref(), Some("1"), "{metrics}");
    s.stop().await;
}
