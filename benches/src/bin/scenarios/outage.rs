//! `outage`: the whole target goes down (503 to everything). Once the
//! breaker is open, failed calls should cost almost nothing next to a
//! healthy call, and at most one probe per half-open interval may reach the
//! target.
//!
//! The breaker's `open_duration` is 1s here (5s by default) so that a short
//! run sees several half-open intervals; everything else is the default.
//! During the outage four callers each make a burst of calls every
//! millisecond, as a busy service would; a lone call after a millisecond
//! idle mostly measures cold caches.

use std::time::{Duration, Instant};

use platform_benches::load::{Mode, TargetServer, paced_loop};
use platform_benches::report::summarize;
use platform_http::ClientError;

use crate::Budget;

const OPEN: Duration = Duration::from_secs(1);
/// How long failed calls are measured back to back once the breaker is open.
const STEADY: Duration = Duration::from_millis(500);
/// Calls per caller per wake-up during the outage.
const BURST: usize = 10;
/// Requests already on the wire when the breaker opened land a little after
/// it; arrivals this soon after the first fail-fast are not probes.
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Ok,
    /// Refused by the open breaker before any attempt.
    FailedFast,
    OtherError,
}

pub(crate) fn run(budget: Budget) -> Result<serde_json::Value, String> {
    let server = TargetServer::start(Mode::Healthy).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut settings = platform_http::ClientSettings {
        base_url: server.url(),
        ..Default::default()
    };
    settings.breaker.open_duration = OPEN;
    let outage_for = (budget.load * 3).max(Duration::from_secs(5));

    let (healthy, outage, begin, steady) = rt.block_on(async {
        let client =
            platform_http::Client::from_settings("outage", &settings).map_err(|e| e.to_string())?;
        let call = move || {
            let c = client.clone();
            async move {
                match c.get("/").send().await {
                    Ok(r) if r.status() == 200 => Outcome::Ok,
                    Err(ClientError::CircuitOpen { attempts: 0, .. }) => Outcome::FailedFast,
                    _ => Outcome::OtherError,
                }
            }
        };
        let healthy =
            paced_loop(Instant::now(), 1, budget.load, Duration::ZERO, call.clone()).await;
        server.set_mode(Mode::Unavailable);
        server.record_arrivals(true);
        let begin = Instant::now();
        let burst_call = call.clone();
        let outage = paced_loop(begin, 4, outage_for, Duration::from_millis(1), move || {
            let call = burst_call.clone();
            async move {
                let mut calls = Vec::with_capacity(BURST);
                for _ in 0..BURST {
                    let t = Instant::now();
                    let outcome = call().await;
                    calls.push((t, t.elapsed(), outcome));
                }
                calls
            }
        })
        .await;
        // One row per call: (start since `begin`, latency, outcome).
        let outage: Vec<(Duration, Duration, Outcome)> = outage
            .into_iter()
            .flat_map(|(_, _, calls)| calls)
            .map(|(t, latency, outcome)| (t.saturating_duration_since(begin), latency, outcome))
            .collect();
        server.record_arrivals(false);
        // The cost of a failed call itself: back to back on one task, the
        // way the healthy calls were measured (a call right after an idle
        // millisecond mostly measures cold caches and the scheduler).
        let steady = paced_loop(Instant::now(), 1, STEADY, Duration::ZERO, call).await;
        Ok::<_, String>((healthy, outage, begin, steady))
    })?;

    let mut healthy_latencies: Vec<Duration> = healthy
        .iter()
        .filter(|c| c.2 == Outcome::Ok)
        .map(|c| c.1)
        .collect();
    let healthy_summary = summarize(&mut healthy_latencies);
    let mut open_latencies: Vec<Duration> = outage
        .iter()
        .filter(|c| c.2 == Outcome::FailedFast)
        .map(|c| c.1)
        .collect();
    let paced_summary = summarize(&mut open_latencies);
    let mut steady_latencies: Vec<Duration> = steady
        .iter()
        .filter(|c| c.2 == Outcome::FailedFast)
        .map(|c| c.1)
        .collect();
    let open_summary = summarize(&mut steady_latencies);
    let ratio = open_summary.p99_us / healthy_summary.p50_us;

    // Arrivals at the target after the breaker first failed a call fast
    // (a call refused before any attempt started when the breaker was open).
    let first_open = outage
        .iter()
        .filter(|c| c.2 == Outcome::FailedFast)
        .map(|c| c.0)
        .min()
        .ok_or("the breaker never opened")?;
    let offset = begin.saturating_duration_since(server.origin());
    let opened_at = offset + first_open + IN_FLIGHT_GRACE;
    let end = offset + outage_for;
    let arrivals: Vec<Duration> = server
        .arrivals()
        .into_iter()
        .filter(|a| *a >= opened_at && *a < end)
        .collect();
    let intervals = ((end - opened_at).as_secs_f64() / OPEN.as_secs_f64())
        .floor()
        .max(1.0) as usize;
    let mut per_interval = vec![0usize; intervals + 1];
    for a in &arrivals {
        let k = ((*a - opened_at).as_secs_f64() / OPEN.as_secs_f64()) as usize;
        per_interval[k.min(intervals)] += 1;
    }
    per_interval.truncate(intervals);
    let max_probes = per_interval.iter().copied().max().unwrap_or(0);
    let mean_probes = per_interval.iter().sum::<usize>() as f64 / intervals as f64;
    let before_open = server.arrivals().iter().filter(|a| **a < opened_at).count();

    println!(
        "healthy call p50 {:.1} us ({} calls); failed call with the breaker open p50 {:.2} us, p99 {:.2} us ({} calls)",
        healthy_summary.p50_us,
        healthy_summary.count,
        open_summary.p50_us,
        open_summary.p99_us,
        open_summary.count
    );
    println!(
        "  (during the paced outage, bursts of {BURST} per caller per ms: failed-fast p50 {:.2} us, p99 {:.2} us)",
        paced_summary.p50_us, paced_summary.p99_us
    );
    println!(
        "requests reaching the target: {before_open} before the breaker opened, then per {:?} interval {:?}",
        OPEN, per_interval
    );
    println!(
        "  open p99 / healthy p50: {ratio:.4} (target <= 0.1) {}",
        if ratio <= 0.1 { "met" } else { "MISSED" }
    );
    println!(
        "  probes per half-open interval: max {max_probes}, mean {mean_probes:.2} (target <= 1) {}",
        if max_probes <= 1 { "met" } else { "MISSED" }
    );
    let bars: Vec<(String, f64)> = per_interval
        .iter()
        .enumerate()
        .map(|(k, n)| (format!("interval {}", k + 1), *n as f64))
        .collect();
    let svg = platform_benches::plot::bar_chart(
        "outage: requests reaching the target per half-open interval",
        "",
        &bars,
        Some(1.0),
    );
    platform_benches::plot::write_svg("outage-probes", &svg).map_err(|e| e.to_string())?;
    let svg = platform_benches::plot::bar_chart(
        "outage: latency",
        "us",
        &[
            ("healthy call p50".into(), healthy_summary.p50_us),
            ("breaker open, failed p99".into(), open_summary.p99_us),
        ],
        None,
    );
    platform_benches::plot::write_svg("outage-latency", &svg).map_err(|e| e.to_string())?;
    Ok(serde_json::json!({
        "open_p99_over_healthy_p50": ratio,
        "probes_per_half_open": max_probes,
        "mean_probes_per_half_open": mean_probes,
        "healthy_p50_us": healthy_summary.p50_us,
        "open_p99_us": open_summary.p99_us,
        "open_p50_us": open_summary.p50_us,
        "paced_open_p50_us": paced_summary.p50_us,
        "paced_open_p99_us": paced_summary.p99_us,
        "half_open_intervals": intervals,
        "requests_before_open": before_open,
        "failed_fast_calls": open_summary.count,
    }))
}
