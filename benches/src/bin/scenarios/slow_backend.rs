//! `slow-backend`: three loopback backends, one answering 10x slower than the
//! others. The platform client through static discovery with P2C Peak-EWMA,
//! then with round robin, then P2C over three healthy backends, in one run:
//! p99 latency and the share of requests the slow backend took.

use std::time::{Duration, Instant};

use platform_benches::load::{Mode, TargetServer, paced_loop};
use platform_benches::report::summarize;
use platform_core::balance::Strategy;

use crate::Budget;

// Moderate load: at 8 closed-loop callers over two fast backends, Peak-EWMA
// x in-flight rightly starts to count the slow one as competitive.
const TASKS: usize = 4;
// A 2 ms sleep answers in about 3 ms (timer granularity); 30 ms makes the slow
// backend about 10x slower as measured, not only as configured.
const FAST: Duration = Duration::from_millis(2);
const SLOW: Duration = Duration::from_millis(30);

struct Run {
    p50_us: f64,
    p99_us: f64,
    slow_share: f64,
    failed: usize,
}

fn measure(name: &str, strategy: Strategy, slow: bool, load: Duration) -> Result<Run, String> {
    let servers: Vec<TargetServer> = (0..3)
        .map(|_| TargetServer::start(Mode::Healthy))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    for (i, server) in servers.iter().enumerate() {
        server.set_delay(if slow && i == 0 { SLOW } else { FAST });
    }
    let mut settings = platform_http::ClientSettings {
        base_url: "http://backends".into(),
        discovery: format!(
            "static://{}",
            servers
                .iter()
                .map(|s| s.addr.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        ..Default::default()
    };
    settings.balance.strategy = strategy;
    // Slowness is not failure: ejection stays out of this comparison.
    settings.outlier.enabled = false;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let calls = rt.block_on(async {
        let client =
            platform_http::Client::from_settings(name, &settings).map_err(|e| e.to_string())?;
        Ok::<_, String>(
            paced_loop(Instant::now(), TASKS, load, Duration::ZERO, move || {
                let c = client.clone();
                async move { matches!(c.get("/").send().await, Ok(r) if r.status() == 200) }
            })
            .await,
        )
    })?;
    let total: u64 = servers.iter().map(TargetServer::hits).sum();
    let slow_share = servers[0].hits() as f64 / total.max(1) as f64;
    let failed = calls.iter().filter(|c| !c.2).count();
    let mut latencies: Vec<Duration> = calls.iter().map(|c| c.1).collect();
    let summary = summarize(&mut latencies);
    Ok(Run {
        p50_us: summary.p50_us,
        p99_us: summary.p99_us,
        slow_share,
        failed,
    })
}

pub(crate) fn run(budget: Budget) -> Result<serde_json::Value, String> {
    let p2c = measure("slow-backend-p2c", Strategy::P2cPeakEwma, true, budget.load)?;
    let rr = measure("slow-backend-rr", Strategy::RoundRobin, true, budget.load)?;
    let healthy = measure(
        "slow-backend-healthy",
        Strategy::P2cPeakEwma,
        false,
        budget.load,
    )?;

    println!(
        "{:<26} {:>10} {:>10} {:>12} {:>8}",
        "", "p50 µs", "p99 µs", "slow share", "failed"
    );
    for (label, r) in [
        ("P2C Peak-EWMA, one slow", &p2c),
        ("round robin, one slow", &rr),
        ("P2C, all healthy", &healthy),
    ] {
        println!(
            "{label:<26} {:>10.0} {:>10.0} {:>12.4} {:>8}",
            r.p50_us, r.p99_us, r.slow_share, r.failed
        );
    }
    let over_healthy = p2c.p99_us / healthy.p99_us;
    let over_rr = p2c.p99_us / rr.p99_us;
    // What a perfect balancer would score against round robin on this machine: the
    // all-healthy tail over the slow backend's latency.
    let healthy_over_rr = healthy.p99_us / rr.p99_us;
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "  P2C p99 / all-healthy p99: {over_healthy:.3} (target <= 1.5) {}",
        verdict(over_healthy <= 1.5)
    );
    println!(
        "  P2C p99 / round-robin p99: {over_rr:.3} (target <= 0.2) {}",
        verdict(over_rr <= 0.2)
    );
    println!(
        "  (all-healthy p99 / round-robin p99, the best reachable here: {healthy_over_rr:.3})"
    );

    // The latency distributions, as their p50 and p99 side by side.
    let svg = platform_benches::plot::bar_chart(
        "slow-backend: latency (one of three backends 10x slower)",
        "µs",
        &[
            ("P2C p50".into(), p2c.p50_us),
            ("P2C p99".into(), p2c.p99_us),
            ("round robin p50".into(), rr.p50_us),
            ("round robin p99".into(), rr.p99_us),
            ("all healthy p50".into(), healthy.p50_us),
            ("all healthy p99".into(), healthy.p99_us),
        ],
        None,
    );
    let path =
        platform_benches::plot::write_svg("slow-backend", &svg).map_err(|e| e.to_string())?;
    let cdf = platform_benches::plot::bar_chart(
        "slow-backend: share of requests to the slow backend",
        "",
        &[
            ("P2C Peak-EWMA".into(), p2c.slow_share),
            ("round robin".into(), rr.slow_share),
        ],
        None,
    );
    platform_benches::plot::write_svg("slow-backend-share", &cdf).map_err(|e| e.to_string())?;
    println!("wrote {}", path.display());
    Ok(serde_json::json!({
        "p2c_p99_over_healthy_p99": over_healthy,
        "p2c_p99_over_rr_p99": over_rr,
        "healthy_p99_over_rr_p99": healthy_over_rr,
        "p2c_slow_share": p2c.slow_share,
        "rr_slow_share": rr.slow_share,
        "p2c_p99_us": p2c.p99_us,
        "rr_p99_us": rr.p99_us,
        "healthy_p99_us": healthy.p99_us,
        "failed_requests": p2c.failed + rr.failed + healthy.failed,
    }))
}
