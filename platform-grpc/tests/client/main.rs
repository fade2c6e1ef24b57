//! The gRPC channel against real tonic servers on loopback: retries as A6
//! says (other endpoint, codes, pushback, the overloaded marker, streams
//! sent once), deadlines as `grpc-timeout`, hedging, the breaker,
//! discovery churn, and config errors at start-up.

#[path = "../common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{SERVICE, builder};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use platform_core::discovery::{Endpoint, ManualResolver};
use platform_grpc::{Channel, ChannelError, GrpcClientSettings, GrpcRuntimeBuilderExt as _};
use tonic::Code;

/// How a backend answers, changeable while it runs.
#[derive(Debug, Clone, Default)]
struct Behaviour {
    /// Answer this code (trailers-only) to the next `failures` calls...
    failures: usize,
    code: Option<Code>,
    /// ...with this `grpc-retry-pushback-ms`...
    pushback: Option<&'static str>,
    /// ...and the platform's overloaded marker.
    overloaded: bool,
    /// Every call takes this long first.
    sleep: Duration,
}

/// What a backend saw of one call.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    grpc_timeout: Option<String>,
    previous_attempts: Option<String>,
    request_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct Backend {
    behaviour: Arc<Mutex<Behaviour>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Backend {
    fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.behaviour.lock().unwrap());
    }

    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[tonic::async_trait]
impl TraceService for Backend {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let header = |name: &str| {
            request
                .metadata()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        self.seen.lock().unwrap().push(Seen {
            at: Instant::now(),
            grpc_timeout: header("grpc-timeout"),
            previous_attempts: header("grpc-previous-rpc-attempts"),
            request_id: header("x-request-id"),
        });
        let behaviour = {
            let mut behaviour = self.behaviour.lock().unwrap();
            let now = behaviour.clone();
            behaviour.failures = behaviour.failures.saturating_sub(1);
            now
        };
        tokio::time::sleep(behaviour.sleep).await;
        if behaviour.failures > 0 {
            let mut metadata = tonic::metadata::MetadataMap::new();
            if let Some(pushback) = behaviour.pushback {
                metadata.insert("grpc-retry-pushback-ms", pushback.parse().unwrap());
            }
            if behaviour.overloaded {
                metadata.insert("x-platform-overloaded", "1".parse().unwrap());
            }
            let code = behaviour.code.unwrap_or(Code::Unavailable);
            return Err(tonic::Status::with_metadata(code, "as asked", metadata));
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A tonic server of `backend` on a loopback port; its address.
async fn serve(backend: &Backend) -> (String, tokio::task::JoinHandle<()>) {
    let incoming = tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
        .unwrap()
        .with_nodelay(Some(true));
    let address = incoming.local_addr().unwrap().to_string();
    let service = TraceServiceServer::new(backend.clone());
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });
    (address, task)
}

/// `n` backends, each served.
async fn backends(n: usize) -> (Vec<Backend>, Vec<String>) {
    let mut all = Vec::new();
    let mut addresses = Vec::new();
    for _ in 0..n {
        let backend = Backend::default();
        addresses.push(serve(&backend).await.0);
        all.push(backend);
    }
    (all, addresses)
}

/// Settings for tests: round robin (which endpoint a call goes to is
/// known), quick backoff.
fn settings(change: impl FnOnce(&mut GrpcClientSettings)) -> GrpcClientSettings {
    let mut settings = GrpcClientSettings::default();
    settings.balance.strategy = platform_core::balance::Strategy::RoundRobin;
    settings.retry.base_backoff = Duration::from_millis(5);
    change(&mut settings);
    settings
}

fn client(addresses: &[String], settings: &GrpcClientSettings) -> TraceServiceClient<Channel> {
    let channel = Channel::builder("backend", settings)
        .endpoints(addresses.iter().cloned())
        .build()
        .unwrap();
    TraceServiceClient::new(channel)
}

fn request() -> tonic::Request<ExportTraceServiceRequest> {
    tonic::Request::new(ExportTraceServiceRequest::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_is_retried_on_the_other_endpoint() {
    let (backends, addresses) = backends(2).await;
    backends[0].set(|b| b.failures = usize::MAX);
    let mut client = client(&addresses, &settings(|_| {}));
    for _ in 0..4 {
        client
            .export(request())
            .await
            .expect("retried onto the healthy endpoint");
    }
    assert!(
        backends[0].calls() >= 1,
        "round robin sent calls to the failing endpoint"
    );
    let retried: Vec<_> = backends[1]
        .seen()
        .into_iter()
        .filter_map(|s| s.previous_attempts)
        .collect();
    assert!(
        retried.iter().any(|p| p == "1"),
        "retries carry grpc-previous-rpc-attempts: {retried:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_cannot_connect_is_requeued_elsewhere() {
    let (backends, mut addresses) = backends(1).await;
    // Nothing listens there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    addresses.insert(0, closed.local_addr().unwrap().to_string());
    drop(closed);
    // One attempt allowed: only a requeue, outside the attempts, rescues it.
    let mut client = client(&addresses, &settings(|s| s.retry.max_attempts = 1));
    for _ in 0..4 {
        client
            .export(request())
            .await
            .expect("requeued to the live endpoint");
    }
    assert_eq!(backends[0].calls(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_empty_target_fails_clearly_in_bounded_time() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = closed.local_addr().unwrap().to_string();
    drop(closed);
    let mut unreachable = client(std::slice::from_ref(&nowhere), &settings(|_| {}));
    let started = Instant::now();
    let status = unreachable.export(request()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    match ChannelError::of(&status) {
        Some(ChannelError::Connect { endpoint, .. }) => assert_eq!(&**endpoint, nowhere),
        other => panic!("{other:?}"),
    }

    // Discovery that never answers.
    let silent = ManualResolver::new("backend");
    let channel = Channel::builder("backend", &settings(|_| {}))
        .resolver(silent)
        .build()
        .unwrap();
    let status = TraceServiceClient::new(channel)
        .export(request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        matches!(
            ChannelError::of(&status),
            Some(ChannelError::NoEndpoint { .. })
        ),
        "{status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_max_concurrent_calls_is_refused_at_once() {
    let (backends, addresses) = backends(1).await;
    backends[0].set(|b| b.sleep = Duration::from_millis(500));
    let client = client(&addresses, &settings(|s| s.max_concurrent_calls = 1));
    let mut first = client.clone();
    let in_flight = tokio::spawn(async move { first.export(request()).await });
    // The first call holds the one place until its response ends.
    while backends[0].calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = client.clone().export(request()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        matches!(
            ChannelError::of(&status),
            Some(ChannelError::BulkheadFull { max: 1, .. })
        ),
        "{status:?}"
    );
    in_flight.await.unwrap().unwrap();
    client
        .clone()
        .export(request())
        .await
        .expect("the place is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_keep_succeeding_while_an_instance_drains_and_stops() {
    // Two instances served by the platform (its drain: GOAWAY, then the
    // listener closes), one channel over both.
    let mut running = Vec::new();
    for _ in 0..2 {
        let rt = builder(&[]).without_telemetry().init().await.unwrap().0;
        running.push(common::Running::start(rt).await);
    }
    let addresses: Vec<String> = running
        .iter()
        .map(|r| r.api.trim_start_matches("http://").to_owned())
        .collect();
    let mut client = client(&addresses, &settings(|_| {}));
    for _ in 0..4 {
        client.export(request()).await.unwrap();
    }
    let survivor = running.pop().unwrap();
    let before = survivor.collector.finished();
    running.pop().unwrap().stop().await;
    for _ in 0..6 {
        client
            .export(request())
            .await
            .expect("answered by the instance left");
    }
    assert_eq!(survivor.collector.finished(), before + 6);
    survivor.stop().await;
}

/// A response stream is not buffered: each message reaches the caller as
/// it comes, on a stream that stays open (the health protocol's Watch,
/// which ends only with the server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_stream_flows_through_as_it_comes() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let rt = builder(&[("shutdown.drain_delay", "300ms")])
        .without_telemetry()
        .init()
        .await
        .unwrap()
        .0;
    let running = common::Running::start(rt).await;
    let admin = running.admin.trim_start_matches("http://").to_owned();
    let mut health = HealthClient::new(
        Channel::builder("admin", &settings(|_| {}))
            .endpoints([admin])
            .build()
            .unwrap(),
    );
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(2), watch.message())
        .await
        .expect("the first message, while the stream stays open")
        .unwrap()
        .unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    running.rt.lifecycle().request_shutdown("test");
    let next = tokio::time::timeout(Duration::from_secs(2), watch.message())
        .await
        .expect("the drain, told as it starts")
        .unwrap()
        .unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_codes_are_retried() {
    let (backends, addresses) = backends(1).await;
    backends[0].set(|b| {
        b.failures = usize::MAX;
        b.code = Some(Code::Internal);
    });
    let mut plain = client(&addresses, &settings(|_| {}));
    let status = plain.export(request()).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert!(
        ChannelError::of(&status).is_none(),
        "an answer, not a channel error"
    );
    assert_eq!(backends[0].calls(), 1, "INTERNAL is not retried by default");

    let mut internal = client(
        &addresses,
        &settings(|s| s.retry_codes = vec!["INTERNAL".into()]),
    );
    let status = internal.export(request()).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(backends[0].calls(), 1 + 3, "retried up to max_attempts");

    // Per method: the method's own entry, then its service's, then the
    // channel's `retry_codes`.
    const SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
    let per_method = |entries: &[(&str, &[&str])]| {
        settings(|s| {
            s.method_retry_codes = entries
                .iter()
                .map(|(method, codes)| {
                    let codes = codes.iter().map(|c| (*c).to_owned()).collect();
                    ((*method).to_owned(), codes)
                })
                .collect();
        })
    };
    let calls = backends[0].calls();
    let mut by_method = client(
        &addresses,
        &per_method(&[(&format!("{SERVICE}/Export"), &["INTERNAL"])]),
    );
    by_method.export(request()).await.unwrap_err();
    assert_eq!(backends[0].calls() - calls, 3, "the method's codes");

    let calls = backends[0].calls();
    let mut method_over_service = client(
        &addresses,
        &per_method(&[
            (&format!("{SERVICE}/*"), &["INTERNAL"]),
            (&format!("{SERVICE}/Export"), &[]),
        ]),
    );
    method_over_service.export(request()).await.unwrap_err();
    assert_eq!(
        backends[0].calls() - calls,
        1,
        "the method's own entry (none) wins over its service's"
    );

    let calls = backends[0].calls();
    let mut other_method = client(
        &addresses,
        &per_method(&[(&format!("{SERVICE}/Other"), &["INTERNAL"])]),
    );
    other_method.export(request()).await.unwrap_err();
    assert_eq!(
        backends[0].calls() - calls,
        1,
        "another method's codes do not apply"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_pushback_is_waited_and_a_negative_one_stops_retries() {
    let (backends, addresses) = backends(1).await;
    let mut client = client(&addresses, &settings(|_| {}));
    backends[0].set(|b| {
        b.failures = 1;
        b.pushback = Some("300");
    });
    client
        .export(request())
        .await
        .expect("answered after the pushback");
    let seen = backends[0].seen();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= Duration::from_millis(300),
        "retried after {waited:?}"
    );

    backends[0].set(|b| {
        b.failures = 1;
        b.pushback = Some("-1");
    });
    let status = client.export(request()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(backends[0].calls(), 3, "a negative pushback means no retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_endpoint_is_not_retried() {
    let (backends, addresses) = backends(1).await;
    backends[0].set(|b| {
        b.failures = usize::MAX;
        b.overloaded = true;
    });
    let mut alone = client(&addresses, &settings(|_| {}));
    let status = alone.export(request()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        backends[0].calls(),
        1,
        "never again on the endpoint that refused it"
    );

    // With another endpoint, the call goes there at once.
    let (others, more) = self::backends(1).await;
    let both = [addresses[0].clone(), more[0].clone()];
    let mut client = client(&both, &settings(|_| {}));
    for _ in 0..2 {
        client.export(request()).await.expect("retried elsewhere");
    }
    let refused = backends[0].calls() - 1;
    assert!(refused >= 1, "round robin tried the overloaded endpoint");
    assert_eq!(others[0].calls(), 2, "each call answered there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_goes_to_the_server_as_grpc_timeout_and_is_enforced() {
    let (backends, addresses) = backends(1).await;
    let mut client = client(&addresses, &settings(|_| {}));
    let mut timed = request();
    timed.set_timeout(Duration::from_millis(1500));
    client.export(timed).await.unwrap();
    let sent = backends[0].seen()[0]
        .grpc_timeout
        .clone()
        .expect("grpc-timeout sent");
    let (digits, unit) = sent.split_at(sent.len() - 1);
    assert!(digits.len() <= 8, "{sent}");
    let micros: u64 = match unit {
        "u" => digits.parse().unwrap(),
        "m" => digits.parse::<u64>().unwrap() * 1000,
        other => panic!("unexpected unit {other} in {sent}"),
    };
    assert!(
        (1_000_000..=1_500_000).contains(&micros),
        "the time left of 1.5 s, got {sent}"
    );

    // Enforced by the channel itself: a server that takes the call and
    // never answers (tonic's own server would give up at the grpc-timeout
    // too, and race the channel).
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = silent.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = silent.accept().await {
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                let mut held = Vec::new();
                while let Some(Ok(stream)) = connection.accept().await {
                    held.push(stream);
                }
            });
        }
    });
    let mut client = self::client(&[address], &settings(|_| {}));
    let mut late = request();
    late.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let status = client.export(late).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(matches!(
        ChannelError::of(&status),
        Some(ChannelError::DeadlineExceeded { .. })
    ));
    let elapsed = started.elapsed();
    assert!(
        (Duration::from_millis(300)..Duration::from_secs(1)).contains(&elapsed),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_call_stuck_on_a_slow_endpoint_is_hedged() {
    let (backends, addresses) = backends(2).await;
    let hedged = settings(|s| {
        s.idempotent_methods = vec![format!("{SERVICE}/*")];
        s.hedge.min_samples = 4;
        s.attempt_timeout = Duration::from_secs(5);
        s.total_timeout = Duration::from_secs(10);
    });
    let mut client = client(&addresses, &hedged);
    // The estimate learns what fast is.
    for _ in 0..8 {
        client.export(request()).await.unwrap();
    }
    backends[0].set(|b| b.sleep = Duration::from_secs(3));
    for _ in 0..4 {
        let started = Instant::now();
        client.export(request()).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "rescued by the hedge: {:?}",
            started.elapsed()
        );
    }
    assert!(
        backends[1]
            .seen()
            .iter()
            .any(|s| s.previous_attempts.as_deref() == Some("1")),
        "the hedge went to the fast endpoint"
    );

    // Not idempotent: not hedged, the slow endpoint's call takes its time.
    let mut plain = self::client(
        &addresses,
        &settings(|s| {
            s.hedge.min_samples = 4;
            s.attempt_timeout = Duration::from_secs(5);
            s.total_timeout = Duration::from_secs(10);
        }),
    );
    backends[0].set(|b| b.sleep = Duration::ZERO);
    for _ in 0..8 {
        plain.export(request()).await.unwrap();
    }
    backends[0].set(|b| b.sleep = Duration::from_millis(1200));
    let mut slowest = Duration::ZERO;
    for _ in 0..2 {
        let started = Instant::now();
        plain.export(request()).await.unwrap();
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest >= Duration::from_secs(1), "no hedge: {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_after_failures() {
    let (backends, addresses) = backends(1).await;
    backends[0].set(|b| b.failures = usize::MAX);
    let mut client = client(
        &addresses,
        &settings(|s| {
            s.retry.max_attempts = 1;
            s.breaker.consecutive_failures = 3;
        }),
    );
    for _ in 0..3 {
        let status = client.export(request()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(ChannelError::of(&status).is_none(), "the server's answer");
    }
    let status = client.export(request()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        matches!(
            ChannelError::of(&status),
            Some(ChannelError::CircuitOpen { .. })
        ),
        "{status:?}"
    );
    assert_eq!(backends[0].calls(), 3, "the fourth failed fast");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_keep_succeeding_while_discovery_changes() {
    let (backends, addresses) = backends(2).await;
    let endpoint = |address: &str| {
        let (host, port) = address.rsplit_once(':').unwrap();
        Endpoint::new(host, port.parse().unwrap())
    };
    let resolver = ManualResolver::new("backend");
    resolver.set(vec![endpoint(&addresses[0])]);
    let channel = Channel::builder("backend", &settings(|_| {}))
        .resolver(resolver.clone())
        .build()
        .unwrap();
    let mut client = TraceServiceClient::new(channel);
    for _ in 0..3 {
        client.export(request()).await.unwrap();
    }
    assert_eq!(backends[0].calls(), 3);

    // The first instance leaves, another arrives.
    resolver.set(vec![endpoint(&addresses[1])]);
    let before = backends[0].calls();
    for _ in 0..3 {
        client.export(request()).await.unwrap();
    }
    assert_eq!(
        backends[0].calls(),
        before,
        "no call to an endpoint discovery dropped"
    );
    assert_eq!(backends[1].calls(), 3);

    // An empty answer and a failing backend keep the last endpoints.
    resolver.set(Vec::new());
    resolver.fail("etcd is down");
    for _ in 0..3 {
        client.export(request()).await.unwrap();
    }
    assert_eq!(backends[1].calls(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_call_is_not_retried_after_its_first_message() {
    let (backends, addresses) = backends(1).await;
    backends[0].set(|b| b.failures = usize::MAX);
    let channel = Channel::builder("backend", &settings(|_| {}))
        .endpoints(addresses.clone())
        .build()
        .unwrap();

    // The control: a unary call is retried.
    let mut unary = TraceServiceClient::new(channel.clone());
    assert_eq!(
        unary.export(request()).await.unwrap_err().code(),
        Code::Unavailable
    );
    assert_eq!(backends[0].calls(), 3);

    // The same method called as a client stream whose second message is
    // not there when the call starts.
    let (sender, messages) = futures::channel::mpsc::unbounded();
    sender
        .unbounded_send(ExportTraceServiceRequest::default())
        .unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = sender.unbounded_send(ExportTraceServiceRequest::default());
    });
    let mut grpc = tonic::client::Grpc::new(channel);
    let codec: tonic_prost::ProstCodec<ExportTraceServiceRequest, ExportTraceServiceResponse> =
        tonic_prost::ProstCodec::default();
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    grpc.ready().await.unwrap();
    let status = grpc
        .client_streaming(tonic::Request::new(messages), path, codec)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        ChannelError::of(&status).is_none(),
        "the server's answer: {status:?}"
    );
    assert_eq!(backends[0].calls(), 4, "sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_inside_a_served_request_carries_its_deadline_and_request_id() {
    let (backends, addresses) = backends(1).await;
    // A relay served by the platform: its handler calls the backend.
    #[derive(Clone)]
    struct Relay(TraceServiceClient<Channel>);
    #[tonic::async_trait]
    impl TraceService for Relay {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            self.0.clone().export(request.into_inner()).await
        }
    }
    let rt = builder(&[]).without_telemetry().init().await.unwrap().0;
    let relay = Relay(client(&addresses, &settings(|_| {})));
    let services = platform_grpc::Services::new()
        .add_service(TraceServiceServer::new(relay))
        .unwrap();
    let server = platform_grpc::bind(&rt, services).await.unwrap();
    let api = format!("http://{}", server.api_addr().unwrap());
    tokio::spawn(server.run());

    let mut caller = TraceServiceClient::connect(api).await.unwrap();
    let mut call = request();
    call.set_timeout(Duration::from_millis(700));
    call.metadata_mut()
        .insert("x-request-id", "order-4711".parse().unwrap());
    caller.export(call).await.unwrap();
    let seen = &backends[0].seen()[0];
    assert_eq!(seen.request_id.as_deref(), Some("order-4711"));
    let sent = seen.grpc_timeout.as_deref().expect("grpc-timeout");
    let micros: u64 = sent.trim_end_matches('u').parse().expect("in microseconds");
    assert!(micros <= 700_000, "within the caller's deadline: {sent}");
    rt.lifecycle().request_shutdown("test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_name_their_keys_at_start_up() {
    let error = builder(&[
        ("grpc.clients.inventory.address", "127.0.0.1:9"),
        ("grpc.clients.inventory.retry.max_attempts", "9"),
        (
            "grpc.clients.inventory.retry_codes",
            "UNAVAILABLE,SOMETIMES",
        ),
        ("grpc.clients.inventory.idempotent_methods", "Stock"),
        ("grpc.clients.pricing.address", "http://pricing:9090"),
    ])
    .requires_grpc_client("inventory")
    .requires_grpc_client("shipping")
    .without_telemetry()
    .init()
    .await
    .unwrap_err()
    .to_string();
    for key in [
        "grpc.clients.inventory.retry.max_attempts",
        "grpc.clients.inventory.retry_codes.1",
        "grpc.clients.inventory.idempotent_methods.0",
        "grpc.clients.pricing.address",
        "grpc.clients.shipping",
    ] {
        assert!(error.contains(key), "{key} missing from:\n{error}");
    }

    // A configuration that passes gives channels by name.
    let rt = builder(&[("grpc.clients.inventory.address", "127.0.0.1:9")])
        .requires_grpc_client("inventory")
        .without_telemetry()
        .init()
        .await
        .unwrap()
        .0;
    let channel = Channel::for_service(&rt, "inventory").unwrap();
    assert_eq!(channel.target(), "inventory");
    let missing = Channel::for_service(&rt, "pricing")
        .unwrap_err()
        .to_string();
    assert!(missing.contains("grpc.clients.pricing"), "{missing}");
}
