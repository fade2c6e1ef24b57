//! A real Prometheus scrapes the exposition, and `promtool` accepts its text.
//! Needs the Debian package `prometheus` (which ships `promtool`); run by `.ci/run`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use opentelemetry::KeyValue;
use platform_telemetry::{PrometheusHandle, ServiceInfo, TelemetrySettings};

/// Kills the Prometheus server however the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn serve_metrics(handle: PrometheusHandle) -> u16 {
    use axum::{http::header, routing::get};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, PrometheusHandle::CONTENT_TYPE)],
                    handle.render(),
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// `GET /api/v1/query`, returning the first sample's value, if any.
async fn query(client: &reqwest::Client, port: u16, promql: &str) -> Option<String> {
    let url = format!("http://127.0.0.1:{port}/api/v1/query");
    let body = client
        .get(url)
        .query(&[("query", promql)])
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus; run by .ci/run"]
async fn prometheus_scrapes_the_exposition_and_promtool_accepts_it() {
    let mut settings = TelemetrySettings::default();
    settings.logging.output = platform_telemetry::LogOutput::Stderr;
    let guard =
        platform_telemetry::init(&settings, &ServiceInfo::new("prom-test", "1.0.0")).unwrap();
    let meter = opentelemetry::global::meter("orders");
    meter
        .u64_counter("orders.created")
        .build()
        .add(3, &[KeyValue::new("channel", "web")]);
    meter
        .f64_histogram("http.server.request.duration")
        .with_unit("s")
        .build()
        .record(0.05, &[KeyValue::new("http.request.method", "GET")]);
    let handle = guard.prometheus().unwrap();

    // promtool lints the exact text a scrape gets.
    let dir = tempfile::tempdir().unwrap();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    let text = handle.render();
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let target = serve_metrics(handle).await;
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: service\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    )
    .unwrap();
    let web = free_port();
    let _server = Server(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus)"),
    );

    let client = reqwest::Client::new();
    let mut up = None;
    let mut created = None;
    // Bounded: 60 polls, 500 ms apart.
    for _ in 0..60 {
        up = query(&client, web, r#"up{job="service"}"#).await;
        created = query(&client, web, r#"orders_created_total{channel="web"}"#).await;
        if up.as_deref() == Some("1") && created.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(up.as_deref(), Some("1"), "the scrape succeeded");
    assert_eq!(created.as_deref(), Some("3"), "the known metric is stored");
    let histogram = query(
        &client,
        web,
        r#"http_server_request_duration_seconds_count{http_request_method="GET"}"#,
    )
    .await;
    assert_eq!(histogram.as_deref(), Some("1"));

    guard.shutdown().await.unwrap();
}
