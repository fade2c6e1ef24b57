//! Deadline propagation across two hops through real platform servers, the
//! header's bad inputs, and clients configured from the runtime.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use platform_config::Loader;
use platform_config::cli::ConfigArgs;
use platform_core::Runtime;
use platform_core::resilience::Deadline;
use platform_http::server::DEADLINE_HEADER;
use platform_http::{BoundServer, Client, ClientError, RuntimeBuilderExt};

use crate::{Hits, settings, target};

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct App {}
impl platform_config::Validate for App {}

async fn runtime(extra: &[(&str, &str)]) -> Runtime {
    let mut loader = Loader::new()
        .config_dir(env!("CARGO_MANIFEST_DIR"))
        .env_vars(Vec::<(String, String)>::new())
        .set("server.bind", "127.0.0.1:0")
        .set("admin.enabled", "false")
        .set("shutdown.drain_delay", "0s")
        .set("shutdown.grace_period", "1s")
        .set("reload.enabled", "false");
    for (k, v) in extra {
        loader = loader.set(*k, *v);
    }
    Runtime::builder::<App>("deadline-test")
        .args(ConfigArgs::default())
        .loader(loader)
        .http_clients()
        .without_signal_handlers()
        .without_telemetry()
        .init()
        .await
        .unwrap()
        .0
}

/// Serves `router` through the platform's server stack; returns its URL and runtime.
async fn platform_server(router: axum::Router, extra: &[(&str, &str)]) -> (String, Runtime) {
    let rt = runtime(extra).await;
    let server = BoundServer::bind(&rt, router).await.unwrap();
    let url = format!("http://{}", server.api_addr().unwrap());
    tokio::spawn(server.run());
    (url, rt)
}

/// What the last hop saw: the header it received and its own deadline.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Option<Observation>>>);

/// The deadline header received (ms), `Deadline::current_remaining()` in
/// the handler, and the request id received.
type Observation = (Option<u64>, Option<Duration>, Option<String>);

async fn record(State(seen): State<Seen>, headers: HeaderMap) -> &'static str {
    let header = headers
        .get(DEADLINE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    *seen.0.lock().unwrap() = Some((header, Deadline::current_remaining(), request_id));
    "seen"
}

#[tokio::test]
async fn the_deadline_crosses_two_hops() {
    // Hop 2: records what it got.
    let seen = Seen::default();
    let (backend, backend_rt) = platform_server(
        axum::Router::new()
            .route("/seen", get(record))
            .with_state(seen.clone()),
        &[],
    )
    .await;
    // Hop 1: calls hop 2 with a client whose own total timeout is 10s.
    let mut s = settings(&backend);
    s.total_timeout = Duration::from_secs(10);
    let to_backend = Client::from_settings(&target("hop2"), &s).unwrap();
    let (middle, middle_rt) = platform_server(
        axum::Router::new()
            .route(
                "/forward",
                get(|State(client): State<Client>| async move {
                    client
                        .get("/seen")
                        .send()
                        .await
                        .map(|r| r.text())
                        .unwrap_or_else(|e| e.to_string())
                }),
            )
            .with_state(to_backend),
        &[],
    )
    .await;

    // The caller gives the whole chain 1.5 seconds.
    let caller = Client::from_settings(&target("hop1"), &settings(&middle)).unwrap();
    let answer = caller
        .get("/forward")
        .header("x-request-id", "chain-1")
        .timeout(Duration::from_millis(1500))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.text(), "seen");
    let (header, remaining, request_id) = seen.0.lock().unwrap().take().expect("hop 2 was called");
    // The caller's request id went on with the middle hop's call.
    assert_eq!(request_id.as_deref(), Some("chain-1"));
    let header = header.expect("hop 2 got a deadline header");
    assert!(header > 0 && header <= 1500, "hop 2 was told {header}ms");
    let remaining = remaining.expect("hop 2 runs within a deadline");
    assert!(remaining <= Duration::from_millis(1500), "{remaining:?}");

    // Without a caller deadline, the server's request_timeout (30s by default) applies.
    raw_get(&format!("{backend}/seen"), None).await;
    let (_, remaining, _) = seen.0.lock().unwrap().take().unwrap();
    let remaining = remaining.unwrap();
    assert!(remaining > Duration::from_secs(10) && remaining <= Duration::from_secs(30));

    backend_rt.lifecycle().request_shutdown("test");
    middle_rt.lifecycle().request_shutdown("test");
}

async fn raw_get(url: &str, deadline: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(value) = deadline {
        request = request.header(DEADLINE_HEADER, value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn expired_garbage_and_huge_deadline_headers() {
    let hits = Hits::default();
    let h = hits.clone();
    let seen = Seen::default();
    let (url, rt) = platform_server(
        axum::Router::new()
            .route(
                "/seen",
                get(move |state, headers| {
                    h.bump();
                    record(state, headers)
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "never"
                }),
            )
            .with_state(seen.clone()),
        &[("server.request_timeout", "5s")],
    )
    .await;

    // Already expired: 504, handler not run.
    let (status, _) = raw_get(&format!("{url}/seen"), Some("0")).await;
    assert_eq!(status, 504);
    assert_eq!(hits.get(), 0);

    // Garbage and negative values are ignored: the server default applies.
    for garbage in ["-5", "soon", "1.5", "", "0x10", "１０"] {
        let (status, _) = raw_get(&format!("{url}/seen"), Some(garbage)).await;
        assert_eq!(status, 200, "{garbage:?}");
        let (_, remaining, _) = seen.0.lock().unwrap().take().unwrap();
        let remaining = remaining.unwrap();
        assert!(
            remaining > Duration::from_secs(1) && remaining <= Duration::from_secs(5),
            "{garbage:?}: {remaining:?}"
        );
    }
    // Huge values are clamped to server.request_timeout.
    for huge in ["99999999999", "999999999999999999999999999999"] {
        let (status, _) = raw_get(&format!("{url}/seen"), Some(huge)).await;
        assert_eq!(status, 200);
        let (_, remaining, _) = seen.0.lock().unwrap().take().unwrap();
        assert!(remaining.unwrap() <= Duration::from_secs(5));
    }
    // The deadline passing while the handler runs: 504.
    let (status, _) = raw_get(&format!("{url}/slow"), Some("100")).await;
    assert_eq!(status, 504);
    rt.lifecycle().request_shutdown("test");
}

#[tokio::test]
async fn clients_come_from_the_runtime_config() {
    let rt = runtime(&[
        ("http.clients.inventory.base_url", "http://127.0.0.1:1"),
        ("http.clients.inventory.attempt_timeout", "1s"),
    ])
    .await;
    let client = Client::for_service(&rt, "inventory").unwrap();
    assert_eq!(client.target(), "inventory");
    let err = Client::for_service(&rt, "payments").unwrap_err();
    match &err {
        ClientError::Config { target, reason, .. } => {
            assert_eq!(target, "payments");
            assert!(reason.contains("inventory"), "{reason}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    let mut bad = settings("not a url");
    let err = Client::from_settings("bad", &bad).unwrap_err();
    assert!(
        matches!(&err, ClientError::Config { key, .. } if key == "base_url"),
        "{err:?}"
    );
    bad = settings("http://127.0.0.1:1");
    bad.retry.max_attempts = 9;
    let err = Client::from_settings(&target("bad-retry"), &bad).unwrap_err();
    assert!(
        matches!(&err, ClientError::Config { key, .. } if key == "retry.max_attempts"),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_runtime_owns_the_targets_and_refuses_conflicting_settings() {
    let extra = [("http.clients.shared.base_url", "http://127.0.0.1:9")];
    let rt = runtime(&extra).await;
    let a = Client::for_service(&rt, "shared").unwrap();
    let b = Client::for_service(&rt, "shared").unwrap();
    // One budget for the target, held by this runtime.
    let before = b.resilience().budget().balance();
    assert!(a.resilience().budget().try_withdraw());
    assert!(before - b.resilience().budget().balance() > 0.5, "shared");
    assert!(rt.targets().get("shared").is_some());

    // A client built in code with other settings for the same target.
    let mut other = settings("http://127.0.0.1:9");
    other.retry.max_attempts = 2;
    let err = Client::builder("shared", &other)
        .registry(rt.targets())
        .build()
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("http.clients.shared") && message.contains("Client::builder(\"shared\")"),
        "{message}"
    );

    // Another runtime (a second test, say) shares nothing with this one.
    let other_rt = runtime(&extra).await;
    let c = Client::for_service(&other_rt, "shared").unwrap();
    assert!(
        (c.resilience().budget().balance() - before).abs() < 1e-9,
        "a fresh budget"
    );
}

#[tokio::test]
async fn the_discovery_check_is_added_visibly_and_can_be_left_out() {
    let rt = runtime(&[
        ("http.clients.found.base_url", "http://found"),
        ("http.clients.found.discovery", "static://127.0.0.1:9"),
        ("http.clients.quiet.base_url", "http://quiet"),
        ("http.clients.quiet.discovery", "static://127.0.0.1:9"),
        ("http.clients.quiet.discovery_check", "false"),
    ])
    .await;
    Client::for_service(&rt, "found").unwrap();
    Client::for_service(&rt, "quiet").unwrap();
    assert!(rt.health().status_of("discovery:found").is_some());
    assert_eq!(rt.health().status_of("discovery:quiet"), None);
}
