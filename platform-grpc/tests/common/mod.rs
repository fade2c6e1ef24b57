//! What the test binaries share: a generated tonic service (the OTLP trace
//! collector opentelemetry-proto ships, so no codegen step) whose handler
//! does what the call's metadata asks, and a runtime on loopback ports.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
use platform_core::{Runtime, RuntimeBuilder};

/// The service's full name, as the health protocol and the metrics see it.
pub const SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct App {}
impl platform_config::Validate for App {}

/// The handler: `x-sleep-ms` makes it slow, `x-panic` makes it panic,
/// `x-fail` makes it answer NOT_FOUND. It counts the calls it finished and
/// answers with the trace id current while it ran (`x-trace-id`).
#[derive(Debug, Clone, Default)]
pub struct Collector {
    pub finished: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let metadata = request.metadata();
        if let Some(ms) = metadata.get("x-sleep-ms") {
            let ms: u64 = ms.to_str().unwrap().parse().unwrap();
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if metadata.contains_key("x-panic") {
            panic!("the handler was asked to panic");
        }
        if metadata.contains_key("x-fail") {
            return Err(tonic::Status::not_found("nothing here"));
        }
        let trace = opentelemetry::Context::current()
            .span()
            .span_context()
            .trace_id()
            .to_string();
        self.finished.fetch_add(1, Ordering::SeqCst);
        let mut response = tonic::Response::new(ExportTraceServiceResponse::default());
        response
            .metadata_mut()
            .insert("x-trace-id", trace.parse().unwrap());
        Ok(response)
    }
}

impl Collector {
    pub fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }
}

/// A call carrying `metadata`.
pub fn call(metadata: &[(&'static str, &str)]) -> tonic::Request<ExportTraceServiceRequest> {
    let mut request = tonic::Request::new(ExportTraceServiceRequest::default());
    for (key, value) in metadata {
        request.metadata_mut().insert(*key, value.parse().unwrap());
    }
    request
}

/// A runtime builder on loopback ports with `extra` settings.
pub fn builder(extra: &[(&str, &str)]) -> RuntimeBuilder<App> {
    let mut loader = Loader::new()
        .config_dir(env!("CARGO_MANIFEST_DIR")) // holds no config files
        .env_vars(Vec::<(String, String)>::new())
        .set("server.bind", "127.0.0.1:0")
        .set("admin.bind", "127.0.0.1:0")
        .set("shutdown.drain_delay", "0s")
        .set("shutdown.grace_period", "5s")
        .set("reload.enabled", "false");
    for (key, value) in extra {
        loader = loader.set(*key, *value);
    }
    Runtime::builder::<App>("grpc-test")
        .args(ConfigArgs::default())
        .loader(loader)
        .without_signal_handlers()
}

/// A server running the collector through `platform_grpc::bind`.
pub struct Running {
    pub rt: Runtime,
    pub collector: Collector,
    pub api: String,
    pub admin: String,
    pub task: tokio::task::JoinHandle<Result<(), platform_core::Error>>,
}

impl Running {
    pub async fn start(rt: Runtime) -> Running {
        let collector = Collector::default();
        let services = platform_grpc::Services::new()
            .add_service(TraceServiceServer::new(collector.clone()))
            .unwrap();
        let server = platform_grpc::bind(&rt, services).await.unwrap();
        let api = format!("http://{}", server.api_addr().unwrap());
        let admin = format!("http://{}", server.admin_addr().unwrap());
        let task = tokio::spawn(server.run());
        Running {
            rt,
            collector,
            api,
            admin,
            task,
        }
    }

    pub async fn client(&self) -> TraceServiceClient<tonic::transport::Channel> {
        TraceServiceClient::connect(self.api.clone()).await.unwrap()
    }

    /// Shuts down and waits for the server to finish.
    pub async fn stop(self) {
        self.rt.lifecycle().request_shutdown("test");
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("shutdown within the grace period")
            .unwrap()
            .unwrap();
    }
}

/// A unary Export call over a bare HTTP/2 connection, with `headers` added;
/// returns the call's `grpc-status` (from the trailers-only head or the
/// trailers), `None` for an answer that is not gRPC's (an HTTP error
/// without one). Unlike tonic's client, it never gives up on its own and
/// maps nothing, so what it reads is what the server answered.
pub async fn raw_call(api: &str, headers: &[(&'static str, &str)]) -> Option<u16> {
    raw_call_to(api, &format!("/{SERVICE}/Export"), headers).await
}

/// [`raw_call`] to the method at `path`.
pub async fn raw_call_to(api: &str, path: &str, headers: &[(&'static str, &str)]) -> Option<u16> {
    let authority = api.trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let mut request = http::Request::post(format!("{api}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (response, mut send) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    // One message: uncompressed, zero bytes long (an empty ExportTraceServiceRequest).
    send.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let response = response.await.unwrap();
    let code = |headers: &http::HeaderMap| {
        headers
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().parse().unwrap())
    };
    if let Some(code) = code(response.headers()) {
        return Some(code);
    }
    if response.status() != http::StatusCode::OK {
        return None;
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    Some(code(&trailers).expect("a grpc-status in the trailers"))
}
