//! gRPC served through `platform_grpc::serve`, with real tonic clients over
//! loopback: deadlines from `grpc-timeout`, status codes for what the layer
//! answers itself, the health protocol on the admin port, and the drain.

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Running, SERVICE, builder, call, raw_call, raw_call_to};

const OK: Option<u16> = Some(0);
const DEADLINE_EXCEEDED: Option<u16> = Some(4);
const INTERNAL: Option<u16> = Some(13);
use platform_core::health::{CheckOutcome, Kind, Status};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

async fn start(extra: &[(&str, &str)]) -> Running {
    let rt = builder(extra).without_telemetry().init().await.unwrap().0;
    Running::start(rt).await
}

async fn health_client(admin: &str) -> HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(admin.to_owned())
        .unwrap()
        .connect()
        .await
        .expect("the admin port speaks HTTP/2 without TLS");
    HealthClient::new(channel)
}

fn asking(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_owned(),
    }
}

fn status(response: HealthCheckResponse) -> ServingStatus {
    ServingStatus::try_from(response.status).unwrap()
}

/// The caller's `grpc-timeout` is the handler's deadline: a handler that
/// outlives it is given up with DEADLINE_EXCEEDED, and a call whose time is
/// up on arrival is answered so without running the handler. (A bare HTTP/2
/// client: tonic's gives up on its own at the deadline, with CANCELLED.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_grpc_timeout_is_deadline_exceeded() {
    let s = start(&[]).await;
    let started = Instant::now();
    let late = raw_call(&s.api, &[("grpc-timeout", "200m"), ("x-sleep-ms", "3000")]).await;
    assert_eq!(late, DEADLINE_EXCEEDED);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered when the deadline passed, not when the handler ended: {:?}",
        started.elapsed()
    );
    assert_eq!(
        raw_call(&s.api, &[("grpc-timeout", "0n")]).await,
        DEADLINE_EXCEEDED
    );
    assert_eq!(s.collector.finished(), 0, "no handler ran to its end");
    // Every unit is read: an hour is plenty for a quick call.
    assert_eq!(raw_call(&s.api, &[("grpc-timeout", "1H")]).await, OK);
    // And tonic's client, which sends its timeout as `grpc-timeout`, is served within it.
    let mut request = call(&[]);
    request.set_timeout(Duration::from_secs(5));
    s.client()
        .await
        .export(request)
        .await
        .expect("within its deadline");
    s.stop().await;
}

/// A response stream is held to the caller's deadline: still going when it
/// passes, it ends with DEADLINE_EXCEEDED. Without one, the server's
/// `request_timeout` bounds the handler only: the stream stays open. (The
/// streaming method served is the health service's Watch.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_stream_ends_at_the_callers_deadline_only() {
    use tonic_health::pb::health_server::HealthServer;
    let rt = builder(&[("server.request_timeout", "300ms")])
        .without_telemetry()
        .init()
        .await
        .unwrap()
        .0;
    let watch = platform_grpc::health::HealthService::new(
        rt.health().clone(),
        [],
        rt.lifecycle().task_token(),
    );
    let services = platform_grpc::Services::new()
        .add_service(HealthServer::new(watch))
        .unwrap();
    let server = platform_grpc::bind(&rt, services).await.unwrap();
    let api = format!("http://{}", server.api_addr().unwrap());
    let task = tokio::spawn(server.run());
    let path = "/grpc.health.v1.Health/Watch";

    let started = Instant::now();
    let ended = tokio::time::timeout(
        Duration::from_secs(5),
        raw_call_to(&api, path, &[("grpc-timeout", "200m")]),
    )
    .await
    .expect("the stream ended at the caller's deadline");
    assert_eq!(ended, DEADLINE_EXCEEDED);
    assert!(started.elapsed() >= Duration::from_millis(200));
    let open = tokio::time::timeout(Duration::from_secs(1), raw_call_to(&api, path, &[])).await;
    assert!(
        open.is_err(),
        "no caller's deadline: still streaming past request_timeout"
    );

    rt.lifecycle().request_shutdown("test");
    task.await.unwrap().unwrap();
}

/// A `grpc-timeout` that is not 1 to 8 digits and a known unit is ignored
/// (the server's default deadline applies), never a failed call or a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_grpc_timeout_is_ignored() {
    let s = start(&[]).await;
    for garbage in ["123456789m", "100x", "-100m", "100", "m", "1.5S", " 100m"] {
        let code = raw_call(&s.api, &[("grpc-timeout", garbage), ("x-sleep-ms", "150")]).await;
        assert_eq!(code, OK, "{garbage:?}");
    }
    // The same wait under a well-formed 100 ms deadline fails: the values
    // above were ignored, not read as something short or long.
    let bounded = raw_call(&s.api, &[("grpc-timeout", "100m"), ("x-sleep-ms", "150")]).await;
    assert_eq!(bounded, DEADLINE_EXCEEDED);
    s.stop().await;
}

/// A handler's panic is INTERNAL (not HTTP 500, which a gRPC client can
/// only guess a status for), and the server goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_internal_and_the_server_goes_on() {
    let s = start(&[]).await;
    assert_eq!(raw_call(&s.api, &[("x-panic", "1")]).await, INTERNAL);
    let mut client = s.client().await;
    let panicked = client.export(call(&[("x-panic", "1")])).await.unwrap_err();
    assert_eq!(panicked.code(), Code::Internal, "{panicked:?}");
    assert_eq!(panicked.message(), "internal error");
    client
        .export(call(&[]))
        .await
        .expect("the next call is served");
    s.stop().await;
}

/// Bad input gets an answer, never a panic or a reset: an unknown service
/// or method is UNIMPLEMENTED; metadata over `server.max_header_size` is
/// refused by h2 itself with HTTP 431 before any layer sees the call (a
/// client reads UNKNOWN, naming the 431; RESOURCE_EXHAUSTED would be
/// gRPC's own answer, which the layer cannot give there); the server goes
/// on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_and_oversized_metadata_get_a_status() {
    let s = start(&[("server.max_header_size", "16KiB")]).await;
    const UNIMPLEMENTED: Option<u16> = Some(12);
    assert_eq!(
        raw_call_to(&s.api, "/no.such.Service/Call", &[]).await,
        UNIMPLEMENTED
    );
    assert_eq!(
        raw_call_to(&s.api, &format!("/{SERVICE}/Nothing"), &[]).await,
        UNIMPLEMENTED
    );
    let mut client = s.client().await;
    let big = "x".repeat(32 * 1024);
    let refused = client.export(call(&[("x-big", &big)])).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unknown, "{refused:?}");
    assert!(refused.message().contains("431"), "{refused:?}");
    client.export(call(&[])).await.expect("still serving");
    s.stop().await;
}

/// Over the concurrency limit a call is refused at once with UNAVAILABLE,
/// and keeps the overloaded marker and a pushback a client can read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_a_call_is_unavailable_with_the_overloaded_marker() {
    let s = start(&[("server.limit.mode", "static"), ("server.limit.max", "1")]).await;
    let mut client = s.client().await;
    let mut slow_client = client.clone();
    let slow = tokio::spawn(async move {
        slow_client
            .export(call(&[("x-sleep-ms", "800")]))
            .await
            .map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = client.export(call(&[])).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(
        refused
            .metadata()
            .get(platform_http::server::OVERLOADED_HEADER),
        Some(&"1".parse().unwrap())
    );
    assert_eq!(
        refused.metadata().get("grpc-retry-pushback-ms"),
        Some(&"1000".parse().unwrap())
    );
    slow.await.unwrap().expect("the call in flight is served");
    s.stop().await;
}

/// Check answers for the whole server, each service served and the probes;
/// an unknown service is NOT_FOUND; readiness failing turns every name but
/// liveness NOT_SERVING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_answers_from_the_registry() {
    let s = start(&[]).await;
    let mut health = health_client(&s.admin).await;
    for name in ["", SERVICE, "readiness", "liveness", "startup"] {
        let answer = health.check(asking(name)).await.unwrap().into_inner();
        assert_eq!(status(answer), ServingStatus::Serving, "{name:?}");
    }
    let unknown = health.check(asking("no.such.Service")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let db =
        s.rt.health()
            .manual("db", &[Kind::Readiness], Status::Pass)
            .unwrap();
    db.set(CheckOutcome::fail("connection refused"));
    for (name, expected) in [
        ("", ServingStatus::NotServing),
        (SERVICE, ServingStatus::NotServing),
        ("readiness", ServingStatus::NotServing),
        ("liveness", ServingStatus::Serving),
    ] {
        let answer = health.check(asking(name)).await.unwrap().into_inner();
        assert_eq!(status(answer), expected, "{name:?}");
    }
    // The HTTP probes still answer beside the gRPC ones.
    let readyz = reqwest::get(format!("{}/readyz", s.admin)).await.unwrap();
    assert_eq!(readyz.status(), 503);
    s.stop().await;
}

/// Watch sends SERVING, then NOT_SERVING as soon as the drain starts; a
/// call in flight then still finishes; the stream ends when the server
/// stops. An unknown service is watched as SERVICE_UNKNOWN, stream open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_the_drain_and_a_call_in_flight_finishes() {
    let s = start(&[("shutdown.drain_delay", "300ms")]).await;
    let mut health = health_client(&s.admin).await;
    let mut watch = health.watch(asking("")).await.unwrap().into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(status(first), ServingStatus::Serving);
    let mut unknown = health
        .watch(asking("no.such.Service"))
        .await
        .unwrap()
        .into_inner();
    let first = unknown.message().await.unwrap().unwrap();
    assert_eq!(status(first), ServingStatus::ServiceUnknown);

    let mut client = s.client().await;
    let slow = tokio::spawn(async move { client.export(call(&[("x-sleep-ms", "700")])).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.rt.lifecycle().request_shutdown("test");
    let next = tokio::time::timeout(Duration::from_secs(1), watch.message())
        .await
        .expect("told at once, not at the next poll")
        .unwrap()
        .unwrap();
    assert_eq!(status(next), ServingStatus::NotServing);
    assert!(
        slow.await.unwrap().is_ok(),
        "the call in flight finished during the drain"
    );
    // The end of the shutdown ends the streams: the admin drain does not hang on them.
    let end = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("the stream ends with the server");
    assert_eq!(end.unwrap_err().code(), Code::Unavailable);
    s.stop().await;
}

/// Service names that would be ambiguous are refused with what is wrong.
#[test]
fn ambiguous_services_are_refused() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    let services = platform_grpc::Services::new()
        .add_service(TraceServiceServer::new(common::Collector::default()))
        .unwrap();
    let twice = services
        .add_service(TraceServiceServer::new(common::Collector::default()))
        .unwrap_err();
    assert_eq!(
        twice.to_string(),
        format!("the gRPC service `{SERVICE}` is added twice")
    );
    let reserved = platform_grpc::Services::new()
        .add_service(Liveness)
        .unwrap_err();
    assert!(
        matches!(
            reserved,
            platform_grpc::ServiceError::Reserved {
                name: "liveness",
                probe: "liveness"
            }
        ),
        "{reserved}"
    );
}

/// A service named as a probe of the health protocol.
#[derive(Clone)]
struct Liveness;

impl tonic::server::NamedService for Liveness {
    const NAME: &'static str = "liveness";
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Liveness {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        std::future::ready(Ok(tonic::Status::unimplemented("").into_http()))
    }
}
