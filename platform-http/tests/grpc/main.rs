//! A tonic service served by `platform_http::serve` like any axum router:
//! the request id, the caller's trace, `rpc.server.call.duration` with the
//! gRPC method, and a graceful drain. The service is the
//! OTLP trace collector opentelemetry-proto generates (a real generated
//! tonic server, no codegen step here); its client is tonic's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use platform_config::Loader;
use platform_config::cli::ConfigArgs;
use platform_core::Runtime;
use platform_http::BoundServer;
use platform_http::server::RequestId;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct App {}
impl platform_config::Validate for App {}

/// What the handler saw: the request id and trace id current while it ran.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, String)>>>);

#[tonic::async_trait]
impl TraceService for Seen {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let id = RequestId::current()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let trace = opentelemetry::Context::current()
            .span()
            .span_context()
            .trace_id()
            .to_string();
        self.0.lock().unwrap().push((id, trace));
        // A call that is slow on purpose: still answered during the drain.
        if request.metadata().contains_key("x-slow") {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn request(slow: bool) -> tonic::Request<ExportTraceServiceRequest> {
    let mut request = tonic::Request::new(ExportTraceServiceRequest::default());
    let metadata = request.metadata_mut();
    metadata.insert("x-request-id", "grpc-call-1".parse().unwrap());
    metadata.insert(
        "traceparent",
        format!("00-{PARENT_TRACE}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    if slow {
        metadata.insert("x-slow", "1".parse().unwrap());
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_service_gets_the_whole_server_layer_and_drains() {
    let (rt, _config) = Runtime::builder::<App>("grpc-test")
        .args(ConfigArgs::default())
        .loader(
            Loader::new()
                .config_dir(env!("CARGO_MANIFEST_DIR"))
                .env_vars(Vec::<(String, String)>::new())
                .set("server.bind", "127.0.0.1:0")
                .set("admin.bind", "127.0.0.1:0")
                .set("shutdown.drain_delay", "0s")
                .set("shutdown.grace_period", "5s")
                .set("reload.enabled", "false")
                .set("telemetry.logging.level", "warn"),
        )
        .without_signal_handlers()
        .init()
        .await
        .unwrap();
    let seen = Seen::default();
    let server = BoundServer::bind(&rt, TraceServiceServer::new(seen.clone()))
        .await
        .unwrap();
    let api = format!("http://{}", server.api_addr().unwrap());
    let admin = format!("http://{}", server.admin_addr().unwrap());
    let running = tokio::spawn(server.run());

    let mut client = TraceServiceClient::connect(api.clone()).await.unwrap();
    let answer = client.export(request(false)).await.unwrap();
    // The caller's id comes back, and the handler ran under it and the caller's trace.
    assert_eq!(
        answer.metadata().get("x-request-id").unwrap(),
        "grpc-call-1"
    );
    assert_eq!(
        seen.0.lock().unwrap()[0],
        ("grpc-call-1".to_owned(), PARENT_TRACE.to_owned())
    );

    // The call's duration, as an RPC (platform-grpc's tests check the rest).
    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("rpc_server_call_duration_seconds_count")
                && l.contains(
                    "rpc_service=\"opentelemetry.proto.collector.trace.v1.TraceService\""
                )
                && l.contains("rpc_method=\"Export\"")
                && l.contains("rpc_grpc_status_code=\"0\"")),
        "{metrics}"
    );

    // Drain: a call in flight when shutdown starts is answered; the server then stops.
    let mut slow_client = client.clone();
    let slow = tokio::spawn(async move { slow_client.export(request(true)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    rt.lifecycle().request_shutdown("test");
    assert!(slow.await.unwrap().is_ok(), "the in-flight call finished");
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("shutdown within the grace period")
        .unwrap()
        .unwrap();
    assert!(
        TraceServiceClient::connect(api).await.is_err()
            || client.export(request(false)).await.is_err(),
        "no longer serving"
    );
}
