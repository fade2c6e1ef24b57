//! The server and admin endpoints on a real runtime, over loopback.

use std::time::Duration;

use axum::routing::get;
use platform_config::Loader;
use platform_config::cli::ConfigArgs;
use platform_core::Runtime;
use platform_http::BoundServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt as _;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct App {
    token: platform_config::Secret<String>,
}
impl platform_config::Validate for App {}

async fn runtime(extra: &[(&str, &str)]) -> Runtime {
    let mut loader = Loader::new()
        .config_dir(env!("CARGO_MANIFEST_DIR")) // holds no config files
        .env_vars(Vec::<(String, String)>::new())
        .set("server.bind", "127.0.0.1:0")
        .set("admin.bind", "127.0.0.1:0")
        .set("shutdown.drain_delay", "300ms")
        .set("shutdown.grace_period", "2s")
        .set("server.header_read_timeout", "300ms")
        .set("server.idle_timeout", "1s")
        .set("server.max_body_size", "1KiB")
        .set("reload.enabled", "false");
    for (k, v) in extra {
        loader = loader.set(*k, *v);
    }
    Runtime::builder::<App>("test-service")
        .args(ConfigArgs::default())
        .loader(loader)
        .without_signal_handlers()
        .without_telemetry()
        .init()
        .await
        .unwrap()
        .0
}

fn app() -> axum::Router {
    axum::Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/panic", get(panics))
        .route(
            "/request-id",
            get(|| async {
                platform_http::server::RequestId::current()
                    .map(|id| id.to_string())
                    .unwrap_or_default()
            }),
        )
        .route(
            "/whoami",
            get(
                |id: platform_http::server::RequestId,
                 platform_http::server::ClientAddr(addr): platform_http::server::ClientAddr| async move {
                    format!("{id} {addr}")
                },
            ),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                "slow done"
            }),
        )
        .route(
            "/echo",
            axum::routing::post(|body: String| async move { body }),
        )
        .route(
            "/stream",
            get(|| async {
                // Ten chunks 100 ms apart: a response longer than header_read_timeout.
                let chunks = futures::stream::unfold(0, |n| async move {
                    if n == 10 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((Ok::<_, std::io::Error>(format!("chunk{n};")), n + 1))
                });
                axum::body::Body::from_stream(chunks)
            }),
        )
}

async fn panics() -> &'static str {
    panic!("boom")
}

struct Running {
    api: String,
    admin: String,
    rt: Runtime,
    in_flight: platform_http::InFlight,
    task: tokio::task::JoinHandle<Result<(), platform_core::Error>>,
}

async fn start(extra: &[(&str, &str)]) -> Running {
    let rt = runtime(extra).await;
    let server = BoundServer::bind(&rt, app()).await.unwrap();
    let api = format!("http://{}", server.api_addr().unwrap());
    let admin = format!("http://{}", server.admin_addr().unwrap());
    let in_flight = server.in_flight();
    let task = tokio::spawn(server.run());
    Running {
        api,
        admin,
        rt,
        in_flight,
        task,
    }
}

async fn get_status(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn admin_endpoints_answer_from_the_runtime() {
    let s = start(&[]).await;
    assert_eq!(
        get_status(&format!("{}/hello", s.api)).await,
        (200, "hello".into())
    );
    for probe in ["livez", "readyz", "startupz"] {
        assert_eq!(
            get_status(&format!("{}/{probe}", s.admin)).await,
            (200, "ok\n".into()),
            "{probe}"
        );
    }
    let (code, body) = get_status(&format!("{}/health", s.admin)).await;
    assert_eq!(code, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "pass");
    let names: Vec<&str> = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["startup", "shutdown", "config"]);
    let (code, body) = get_status(&format!("{}/info", s.admin)).await;
    assert_eq!(code, 200);
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["name"], "test-service");
    assert!(info["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        get_status(&format!("{}/config", s.admin)).await.0,
        404,
        "sensitive endpoint off by default"
    );
    s.rt.lifecycle().request_shutdown("test");
    s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_config_endpoint_is_opt_in_and_redacts_secrets() {
    let s = start(&[
        ("admin.config_endpoint", "true"),
        ("app.token", "tok-s3cret"),
    ])
    .await;
    let (code, body) = get_status(&format!("{}/config", s.admin)).await;
    assert_eq!(code, 200);
    assert!(
        body.contains("token = \"[REDACTED]\"") && !body.contains("tok-s3cret"),
        "{body}"
    );
    assert!(body.contains("# override in code"), "{body}");
    s.rt.lifecycle().request_shutdown("test");
    s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn readiness_fails_at_once_on_shutdown_while_in_flight_requests_finish() {
    // A drain delay long enough for three requests on a loaded machine.
    let s = start(&[("shutdown.drain_delay", "3s")]).await;
    let slow = tokio::spawn(reqwest::get(format!("{}/slow", s.api)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.rt.lifecycle().request_shutdown("SIGTERM");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        get_status(&format!("{}/readyz", s.admin)).await.0,
        503,
        "readiness fails at once"
    );
    assert_eq!(
        get_status(&format!("{}/livez", s.admin)).await.0,
        200,
        "liveness does not"
    );
    // Still serving during the drain delay.
    assert_eq!(get_status(&format!("{}/hello", s.api)).await.0, 200);
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(
        slow.text().await.unwrap(),
        "slow done",
        "accepted request completed"
    );
    s.task.await.unwrap().unwrap();
    assert!(
        reqwest::get(format!("{}/hello", s.api)).await.is_err(),
        "listener closed"
    );
    assert!(
        reqwest::get(format!("{}/livez", s.admin)).await.is_err(),
        "admin closed at the end"
    );
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_and_the_server_lives_on() {
    let s = start(&[]).await;
    let (code, _) = get_status(&format!("{}/panic", s.api)).await;
    assert_eq!(code, 500);
    assert_eq!(get_status(&format!("{}/hello", s.api)).await.0, 200);
    s.rt.lifecycle().request_shutdown("test");
    s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn request_ids_are_forwarded_or_made_up() {
    let s = start(&[]).await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/hello", s.api))
        .header("x-request-id", "abc-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-1");
    let r = client
        .get(format!("{}/hello", s.api))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let made_up = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(made_up, "bad id with spaces");
    assert_eq!(made_up.len(), 24);
    // The handler sees the id as current (the client sends it on).
    let r = client
        .get(format!("{}/request-id", s.api))
        .header("x-request-id", "abc-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "abc-2");

    // Handler arguments: the request id and the client's address.
    let mut stream = tokio::net::TcpStream::connect(s.api.trim_start_matches("http://"))
        .await
        .unwrap();
    let local = stream.local_addr().unwrap();
    stream
        .write_all(
            b"GET /whoami HTTP/1.1\r\nhost: x\r\nx-request-id: abc-3\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let (text, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(text.ends_with(&format!("\r\n\r\nabc-3 {local}")), "{text}");
    let r = client
        .get(format!("{}/whoami", s.api))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        r.text()
            .await
            .unwrap()
            .starts_with(&format!("{id} 127.0.0.1:"))
    );

    // Outside `serve` the arguments refuse the request, naming the cause.
    let plain = app().oneshot(
        http::Request::get("/whoami")
            .body(axum::body::Body::empty())
            .unwrap(),
    );
    let answer = plain.await.unwrap();
    assert_eq!(answer.status(), 500);
    let body = axum::body::to_bytes(answer.into_body(), 1024)
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&body).contains("no request id"),
        "{body:?}"
    );
    s.rt.lifecycle().request_shutdown("test");
    s.task.await.unwrap().unwrap();
}

async fn raw(addr: &str, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until the server closes the connection or `limit` passes; the
/// text read and when it ended.
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    limit: Duration,
) -> (String, Option<Duration>) {
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    (text, closed.is_ok().then(|| started.elapsed()))
}

#[tokio::test]
async fn stalled_connections_are_cut_and_working_ones_are_not() {
    // header_read_timeout is 300 ms here.
    let s = start(&[]).await;
    let addr = s.api.trim_start_matches("http://").to_owned();

    // Slowloris: a head trickled a byte every 100 ms never completes.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(b"GET /hello HTTP/1.1\r\n").await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b"x").await.is_err() {
                break;
            }
        }
    });
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut out)).await;
    trickle.abort();
    assert!(closed.is_ok(), "a trickled head is cut off");
    // By header_read_timeout (300 ms, to within a sweep), not the idle limit (1 s).
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(!String::from_utf8_lossy(&out).contains("hello"));

    // An idle keep-alive connection is closed after its answer.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (text, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("hello"),
        "{text}"
    );
    // After idle_timeout (1 s), to within a sweep, not header_read_timeout.
    assert!(
        closed.is_some_and(
            |after| after >= Duration::from_millis(900) && after < Duration::from_millis(2000)
        ),
        "{closed:?}"
    );

    // A handler slower than the timeout, and a response streamed for longer
    // than it, are not progress-free: both arrive whole.
    for (path, body) in [
        ("/slow", "slow done".to_owned()),
        (
            "/stream",
            (0..10).map(|n| format!("chunk{n};")).collect::<String>(),
        ),
    ] {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let (text, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
        let without_chunk_sizes: String = text
            .split("\r\n")
            .filter(|line| !line.chars().all(|c| c.is_ascii_hexdigit()))
            .collect();
        assert!(without_chunk_sizes.ends_with(&body), "{path}: {text}");
    }
    s.rt.lifecycle().request_shutdown("test");
    s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn malformed_slow_and_oversized_requests_cannot_pin_the_server() {
    let s = start(&[]).await;
    let huge = format!(
        "GET /hello HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let answer = raw(&s.api, huge.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.80}");

    let answer = raw(
        &s.api,
        b"GET /hello HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:.80}");

    // A client that never finishes its headers is cut off after header_read_timeout.
    let started = std::time::Instant::now();
    let answer = raw(&s.api, b"GET /hello HTTP/1.1\r\nhost: x\r\n").await;
    assert!(!answer.contains("hello"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "connection closed, not left hanging"
    );

    let r = reqwest::Client::new()
        .post(format!("{}/echo", s.api))
        .body("x".repeat(4096))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "body over max_body_size");
    assert_eq!(
        get_status(&format!("{}/hello", s.api)).await.0,
        200,
        "still serving"
    );
    s.rt.lifecycle().request_shutdown("test");
    s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn any_tower_service_is_served_with_the_layer() {
    let rt = runtime(&[]).await;
    // Not a router: a plain service, as a tonic server or a hand-written one is.
    let plain = tower::service_fn(|request: http::Request<axum::body::Body>| async move {
        let id = platform_http::server::RequestId::current().map(|id| id.to_string());
        let body = format!("{} {}", request.uri().path(), id.unwrap_or_default());
        Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::from(body)))
    });
    let server = BoundServer::bind(&rt, plain).await.unwrap();
    let api = format!("http://{}", server.api_addr().unwrap());
    let task = tokio::spawn(server.run());
    let r = reqwest::Client::new()
        .get(format!("{api}/any/path"))
        .header("x-request-id", "plain-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "plain-1");
    assert_eq!(r.text().await.unwrap(), "/any/path plain-1");
    rt.lifecycle().request_shutdown("test");
    task.await.unwrap().unwrap();
}

/// The server layer's instruments come from the meter provider it is given
/// (`serve` gives the runtime's), not the process-wide one.
#[tokio::test]
async fn the_server_layers_instruments_come_from_the_meters_it_is_given() {
    let capture = platform_telemetry::testing::TelemetryCapture::new();
    let layer = platform_http::ServerLayer::with_meters(
        &platform_core::settings::ServerSettings::default(),
        platform_http::server::InFlight::default(),
        &platform_core::Meters::from_provider(capture.meter_provider()),
    );
    let app = axum::Router::new()
        .route("/hello", get(|| async { "hello" }))
        .layer(layer);
    let answer = app
        .oneshot(
            http::Request::get("/hello")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(answer.status(), http::StatusCode::OK);
    assert_eq!(
        capture.histogram_count("http.server.request.duration"),
        Some(1)
    );
}

/// Over the concurrency limit a request is refused at once, with what the
/// platform client needs to go elsewhere; the admin port is never limited.
#[tokio::test]
async fn requests_over_the_limit_are_refused_at_once_and_probes_are_not() {
    let s = start(&[("server.limit.mode", "static"), ("server.limit.max", "2")]).await;
    let slow = format!("{}/slow", s.api);
    let busy: Vec<_> = (0..2)
        .map(|_| tokio::spawn(get_status_owned(slow.clone())))
        .collect();
    // Both slow requests in flight (800 ms each).
    for _ in 0..200 {
        if s.in_flight.current() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(s.in_flight.current(), 2, "the slow requests are in flight");
    let started = std::time::Instant::now();
    let refused = reqwest::get(format!("{}/hello", s.api)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "refused without waiting for a slot"
    );
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        refused.headers()[platform_http::server::OVERLOADED_HEADER],
        "1"
    );
    assert!(refused.headers().contains_key("x-request-id"));
    assert_eq!(
        get_status(&format!("{}/readyz", s.admin)).await,
        (200, "ok\n".into()),
        "probes are never limited"
    );
    for request in busy {
        assert_eq!(request.await.unwrap(), (200, "slow done".into()));
    }
    assert_eq!(
        get_status(&format!("{}/hello", s.api)).await,
        (200, "hello".into()),
        "a slot is free again"
    );
    s.rt.lifecycle().request_shutdown("test");
    s.task.await.unwrap().unwrap();
}

async fn get_status_owned(url: String) -> (u16, String) {
    get_status(&url).await
}

/// `server.rate_limit`: a burst passes, the next request gets 429 with
/// `Retry-After` (which the platform client reads as overload), with its
/// request id; probes are not limited.
#[tokio::test]
async fn the_servers_rate_limit_answers_429_past_the_burst() {
    let s = start(&[
        ("server.rate_limit.rate", "0.5"),
        ("server.rate_limit.burst", "2"),
    ])
    .await;
    let hello = format!("{}/hello", s.api);
    assert_eq!(get_status(&hello).await.0, 200);
    assert_eq!(get_status(&hello).await.0, 200);
    let limited = reqwest::get(&hello).await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert!(limited.headers().contains_key("x-request-id"));
    for _ in 0..5 {
        assert_eq!(get_status(&format!("{}/readyz", s.admin)).await.0, 200);
    }
    s.rt.lifecycle().request_shutdown("test");
    s.task.await.unwrap().unwrap();
}

/// Connections the kernel completed before the server stopped accepting
/// (waiting in the listen backlog, their requests sent) are served, not
/// reset when the listener closes.
#[tokio::test]
async fn connections_waiting_in_the_backlog_at_the_stop_are_served() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Eight clients connect and send a request before anything accepts.
    let mut clients = Vec::new();
    for _ in 0..8 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        clients.push(stream);
    }
    let settings = platform_core::settings::ServerSettings::default();
    // Told to stop before it has accepted any of them.
    platform_http::server::serve_listener(listener, app(), &settings, std::future::ready(()))
        .await
        .unwrap();
    for mut client in clients {
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    }
}
