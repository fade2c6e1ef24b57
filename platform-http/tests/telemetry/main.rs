//! The server with telemetry on (one init per process, so its own test
//! binary): trace context continues from the caller and through the
//! platform client (sampled or not), a garbage traceparent starts a new
//! trace and is counted, and /metrics shows the request metrics.

use std::sync::{Arc, OnceLock};

use axum::routing::get;
use platform_config::Loader;
use platform_config::cli::ConfigArgs;
use platform_core::Runtime;
use platform_core::telemetry::opentelemetry::trace::TraceContextExt;
use platform_http::BoundServer;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct App {}
impl platform_config::Validate for App {}

/// Answers the trace id the server span belongs to: the server's span is
/// the current OpenTelemetry context while the handler runs.
async fn trace_id() -> String {
    opentelemetry::Context::current()
        .span()
        .span_context()
        .trace_id()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_continue_garbage_is_counted_and_metrics_are_exposed() {
    let (rt, _config) = Runtime::builder::<App>("telemetry-test")
        .args(ConfigArgs::default())
        .loader(
            Loader::new()
                .config_dir(env!("CARGO_MANIFEST_DIR"))
                .env_vars(Vec::<(String, String)>::new())
                .set("server.bind", "127.0.0.1:0")
                .set("admin.bind", "127.0.0.1:0")
                .set("shutdown.drain_delay", "0s")
                .set("reload.enabled", "false")
                .set("telemetry.logging.level", "warn"),
        )
        .without_signal_handlers()
        .init()
        .await
        .unwrap();
    // `/hop` calls `/trace` on this same server through the platform client.
    let self_client: Arc<OnceLock<platform_http::Client>> = Arc::default();
    let hop_client = self_client.clone();
    let echo_client = self_client.clone();
    let app = axum::Router::new()
        .route("/trace", get(trace_id))
        .route(
            "/traceparent",
            get(|headers: http::HeaderMap| async move {
                headers
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            }),
        )
        .route(
            "/hop",
            get(move || {
                let client = hop_client
                    .get()
                    .expect("client set before requests")
                    .clone();
                async move { client.get("/trace").send().await.unwrap().text() }
            }),
        )
        .route(
            "/hop-traceparent",
            get(move || {
                let client = echo_client
                    .get()
                    .expect("client set before requests")
                    .clone();
                async move { client.get("/traceparent").send().await.unwrap().text() }
            }),
        );
    let server = BoundServer::bind(&rt, app).await.unwrap();
    let api = format!("http://{}", server.api_addr().unwrap());
    let settings = platform_http::ClientSettings {
        base_url: api.clone(),
        ..Default::default()
    };
    let _ = self_client.set(platform_http::Client::from_settings("self", &settings).unwrap());
    let admin = format!("http://{}", server.admin_addr().unwrap());
    let task = tokio::spawn(server.run());
    let client = reqwest::Client::new();

    let parent = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = client
        .get(format!("{api}/trace"))
        .header("traceparent", format!("00-{parent}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        parent,
        "the caller's trace continues"
    );

    // Through the platform client: a sampled caller's trace continues with
    // the client span as parent; an unsampled one (no client span exported,
    // none even built) continues too, still marked unsampled.
    for (flags, sampled) in [("01", true), ("00", false)] {
        let incoming = format!("00-{parent}-00f067aa0ba902b7-{flags}");
        let hop = |path: &'static str| {
            client
                .get(format!("{api}{path}"))
                .header("traceparent", incoming.clone())
                .send()
        };
        let r = hop("/hop").await.unwrap();
        assert_eq!(r.text().await.unwrap(), parent, "sampled: {sampled}");
        let forwarded = hop("/hop-traceparent").await.unwrap().text().await.unwrap();
        let parts: Vec<&str> = forwarded.split('-').collect();
        assert_eq!(parts.len(), 4, "{forwarded}");
        assert_eq!(parts[1], parent, "{forwarded}");
        assert_ne!(
            parts[2], "00f067aa0ba902b7",
            "a span id of this hop: {forwarded}"
        );
        assert_ne!(parts[2], "0000000000000000", "{forwarded}");
        assert_eq!(parts[3], flags, "{forwarded}");
    }

    for garbage in [
        "garbage",
        "00-zzzz-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    ] {
        let r = client
            .get(format!("{api}/trace"))
            .header("traceparent", garbage)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "a bad traceparent never fails the request");
        let id = r.text().await.unwrap();
        assert_ne!(id, parent);
        assert_ne!(
            id, "00000000000000000000000000000000",
            "a new trace was started"
        );
    }

    let metrics = client.get(format!("{admin}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.lines().any(
            |l| l.starts_with("http_server_request_duration_seconds_count")
                && l.contains("http_route=\"/trace\"")
        ),
        "{text}"
    );
    let invalid: f64 = text
        .lines()
        .find(|l| {
            l.starts_with("platform_telemetry_propagation_invalid")
                && l.contains("header=\"traceparent\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no invalid-traceparent counter in\n{text}"));
    assert!(invalid >= 3.0, "{invalid}");

    rt.lifecycle().request_shutdown("test");
    task.await.unwrap().unwrap();
}
