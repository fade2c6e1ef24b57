//! `probes`: `/readyz` latency under concurrent load while one readiness
//! check hangs, against a bare axum route on the same machine in the same
//! run; and runtime start-up time to the first ready probe.

use std::time::{Duration, Instant};

use platform_benches::load::closed_loop;
use platform_benches::report::summarize;
use platform_config::Loader;
use platform_config::cli::ConfigArgs;
use platform_core::Runtime;
use platform_core::health::{CheckOptions, CheckOutcome, Kind};
use platform_http::BoundServer;

use crate::Budget;

// Enough to keep both cores busy without measuring only queueing.
const CONNECTIONS: usize = 4;

async fn runtime() -> Runtime {
    Runtime::builder::<()>("probe-bench")
        .args(ConfigArgs::default())
        .loader(
            Loader::new()
                .env_vars(Vec::<(String, String)>::new())
                .set("server.bind", "127.0.0.1:0")
                .set("admin.bind", "127.0.0.1:0")
                .set("shutdown.drain_delay", "0s")
                .set("reload.enabled", "false"),
        )
        .without_signal_handlers()
        .without_telemetry()
        .init()
        .await
        .expect("runtime")
        .0
}

pub(crate) fn run(budget: Budget) -> Result<serde_json::Value, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        // Start-up: init to the first 200 from /readyz.
        let mut startups = Vec::new();
        for _ in 0..budget.repeats {
            let t = Instant::now();
            let rt = runtime().await;
            let server = BoundServer::bind(&rt, axum::Router::new())
                .await
                .map_err(|e| e.to_string())?;
            let admin = server.admin_addr().ok_or("no admin listener")?;
            let task = tokio::spawn(server.run());
            let mut client = platform_benches::load::RawClient::connect(admin, "/readyz")
                .await
                .map_err(|e| e.to_string())?;
            while client.get().await.map_err(|e| e.to_string())? != 200 {
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
            startups.push(t.elapsed());
            rt.lifecycle().request_shutdown("bench");
            let _ = task.await;
        }
        let startup = summarize(&mut startups);

        // Probe latency with a hanging readiness check registered.
        let rt = runtime().await;
        rt.health()
            .register(
                "hanging-dependency",
                CheckOptions::new(Kind::Readiness)
                    .interval(Duration::from_millis(100))
                    .timeout(Duration::from_secs(3600)),
                || async {
                    std::future::pending::<()>().await;
                    CheckOutcome::pass()
                },
            )
            .map_err(|e| e.to_string())?;
        let server = BoundServer::bind(&rt, axum::Router::new())
            .await
            .map_err(|e| e.to_string())?;
        let admin = server.admin_addr().ok_or("no admin listener")?;
        let task = tokio::spawn(server.run());

        // Baseline: a bare axum route answering "ok", served by axum::serve.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let bare = listener.local_addr().map_err(|e| e.to_string())?;
        let bare_app =
            axum::Router::new().route("/readyz", axum::routing::get(|| async { "ok\n" }));
        let bare_task = tokio::spawn(async move { axum::serve(listener, bare_app).await });

        // Unknown (hanging, never answered) readiness answers 503: still a probe answer.
        let (mut probe, _non_200) = closed_loop(admin, "/readyz", CONNECTIONS, budget.load).await;
        let (mut baseline, _) = closed_loop(bare, "/readyz", CONNECTIONS, budget.load).await;
        let (probe_n, base_n) = (probe.len(), baseline.len());
        let p = summarize(&mut probe);
        let b = summarize(&mut baseline);
        rt.lifecycle().request_shutdown("bench");
        let _ = task.await;
        bare_task.abort();

        println!(
            "{:<28} {:>10} {:>10} {:>10} {:>12}",
            "", "p50 µs", "p99 µs", "max µs", "requests/s"
        );
        let rps = |n: usize| n as f64 / budget.load.as_secs_f64();
        println!(
            "{:<28} {:>10.1} {:>10.1} {:>10.1} {:>12.0}",
            "/readyz (check hanging)",
            p.p50_us,
            p.p99_us,
            p.max_us,
            rps(probe_n)
        );
        println!(
            "{:<28} {:>10.1} {:>10.1} {:>10.1} {:>12.0}",
            "bare axum route (baseline)",
            b.p50_us,
            b.p99_us,
            b.max_us,
            rps(base_n)
        );
        println!(
            "start-up to first ready probe: p50 {:.1} ms, p99 {:.1} ms ({} runs)",
            startup.p50_us / 1e3,
            startup.p99_us / 1e3,
            startup.count
        );
        println!(
            "probe p99 target < 1000 µs: {}",
            if p.p99_us < 1000.0 { "met" } else { "MISSED" }
        );
        Ok(serde_json::json!({
            "connections": CONNECTIONS,
            "load_seconds": budget.load.as_secs_f64(),
            "readyz_p50_us": p.p50_us,
            "readyz_p99_us": p.p99_us,
            "readyz_requests": probe_n,
            "baseline_p50_us": b.p50_us,
            "baseline_p99_us": b.p99_us,
            "p50_ratio": p.p50_us / b.p50_us,
            "p99_ratio": p.p99_us / b.p99_us,
            "startup_p50_ms": startup.p50_us / 1e3,
            "startup_p99_ms": startup.p99_us / 1e3,
        }))
    })
}
