//! What the processes say about themselves (their `/metrics` and
//! `/health`), and the final report.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::load::{LoadStats, quantile, show};
use crate::processes::{Stopped, Watched};
use crate::prometheus::sum;

/// Orders' counters for its calls to inventory.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct OrdersFigures {
    pub(crate) attempts: u64,
    pub(crate) retries: u64,
    /// Retries sent at once to an instance the call had not tried.
    pub(crate) retries_elsewhere: u64,
    /// Attempts that never reached an instance, sent again at once.
    pub(crate) requeues: u64,
    pub(crate) budget_exhausted: u64,
    pub(crate) ejections: u64,
    pub(crate) ejections_refused: u64,
    pub(crate) ejections_consecutive: u64,
    pub(crate) ejections_success_rate: u64,
    pub(crate) breaker_transitions: u64,
    pub(crate) breaker_opened: u64,
    pub(crate) breaker_rejections: u64,
    /// The breaker's state at the end: closed, half-open or open.
    pub(crate) breaker_state: &'static str,
    pub(crate) hedges: u64,
    /// Calls orders refused itself while inventory refused most as
    /// overloaded (adaptive throttling).
    pub(crate) throttled: u64,
    /// Orders' own concurrency limit at the end, and the orders it refused
    /// over it (503, overloaded).
    pub(crate) limit: u64,
    pub(crate) refused_overloaded: u64,
    /// What orders' `dependency:inventory` health check says.
    pub(crate) dependency_check: Option<String>,
}

/// One inventory instance's own count of the requests it answered.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct InstanceFigures {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) requests: u64,
    pub(crate) answered_503: u64,
    /// Its concurrency limit at the end.
    pub(crate) limit: u64,
    /// Requests it refused over its concurrency limit (503, overloaded).
    pub(crate) refused_overloaded: u64,
}

/// The figures of every process at one moment.
#[derive(Debug, Default, Clone)]
pub(crate) struct Snapshot {
    pub(crate) orders: OrdersFigures,
    pub(crate) instances: Vec<InstanceFigures>,
}

const TARGET: (&str, &str) = ("target", "inventory");

impl Snapshot {
    /// Reads every process's `/metrics` (and orders' `/health`) with
    /// `client`, all at once; a process that does not answer within half a
    /// second (a stopped one) counts as zeros.
    pub(crate) async fn take(watched: &[Watched], client: &reqwest::Client) -> Snapshot {
        let get = |url: String| {
            let client = client.clone();
            async move {
                let response = client
                    .get(url)
                    .timeout(Duration::from_millis(500))
                    .send()
                    .await
                    .ok()?;
                response.text().await.ok()
            }
        };
        let pages = futures::future::join_all(watched.iter().map(|process| {
            let metrics = get(format!("http://{}/metrics", process.admin));
            let health = get(format!("http://{}/health", process.admin));
            async move {
                let (metrics, health) = futures::join!(metrics, health);
                (metrics.unwrap_or_default(), health)
            }
        }))
        .await;
        let mut snapshot = Snapshot::default();
        for (process, (metrics, health)) in watched.iter().zip(pages) {
            let count = |name: &str, labels: &[(&str, &str)]| sum(&metrics, name, labels) as u64;
            if process.service == "orders" {
                let ejections = "platform_resilience_ejections_total";
                snapshot.orders = OrdersFigures {
                    attempts: count("platform_resilience_attempts_total", &[TARGET]),
                    retries: count("platform_resilience_retries_total", &[TARGET]),
                    retries_elsewhere: count(
                        "platform_resilience_retries_total",
                        &[TARGET, ("reason", "elsewhere")],
                    ),
                    requeues: count("platform_resilience_requeues_total", &[TARGET]),
                    budget_exhausted: count(
                        "platform_resilience_budget_exhausted_total",
                        &[TARGET],
                    ),
                    ejections: count(ejections, &[TARGET]),
                    ejections_refused: count(ejections, &[TARGET, ("cause", "refused")]),
                    ejections_consecutive: count(
                        ejections,
                        &[TARGET, ("cause", "consecutive_failures")],
                    ),
                    ejections_success_rate: count(ejections, &[TARGET, ("cause", "success_rate")]),
                    breaker_transitions: count(
                        "platform_resilience_breaker_transitions_total",
                        &[TARGET],
                    ),
                    breaker_opened: count(
                        "platform_resilience_breaker_transitions_total",
                        &[TARGET, ("to", "open")],
                    ),
                    breaker_rejections: count(
                        "platform_resilience_breaker_rejections_total",
                        &[TARGET],
                    ),
                    breaker_state: match count("platform_resilience_breaker_state", &[TARGET]) {
                        0 => "closed",
                        1 => "half-open",
                        _ => "open",
                    },
                    hedges: count("platform_resilience_hedges_total", &[TARGET]),
                    throttled: count("platform_resilience_throttled_total", &[TARGET]),
                    limit: count("platform_http_server_limit", &[]),
                    refused_overloaded: count("platform_http_server_limit_rejected_total", &[]),
                    dependency_check: health.as_deref().and_then(dependency_check),
                };
            } else {
                // HTTP requests and gRPC calls alike (the `--grpc` scene):
                // a 503 over HTTP is UNAVAILABLE (14) over gRPC.
                let requests = "http_server_request_duration_seconds_count";
                let calls = "rpc_server_call_duration_seconds_count";
                snapshot.instances.push(InstanceFigures {
                    name: process.name.clone(),
                    description: process.description.clone(),
                    requests: count(requests, &[]) + count(calls, &[]),
                    answered_503: count(requests, &[("http_response_status_code", "503")])
                        + count(calls, &[("rpc_grpc_status_code", "14")]),
                    limit: count("platform_http_server_limit", &[]),
                    refused_overloaded: count("platform_http_server_limit_rejected_total", &[]),
                });
            }
        }
        snapshot
    }

    /// Each instance's share of the requests inventory received: `healthy 61%  slow 1% ...`.
    pub(crate) fn traffic_shares(&self) -> String {
        let total: u64 = self.instances.iter().map(|i| i.requests).sum();
        self.instances
            .iter()
            .map(|i| format!("{} {:.0}%", short(&i.name), percent(i.requests, total)))
            .collect::<Vec<_>>()
            .join("  ")
    }
}

/// `inventory-slow` → `slow`.
fn short(name: &str) -> &str {
    name.strip_prefix("inventory-").unwrap_or(name)
}

fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

/// `status: message` of the `dependency:inventory` check in a `/health` body.
fn dependency_check(health: &str) -> Option<String> {
    let report: serde_json::Value = serde_json::from_str(health).ok()?;
    let check = report["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "dependency:inventory")?;
    let status = check["status"].as_str().unwrap_or("unknown");
    Some(match check["message"].as_str() {
        Some(message) => format!("{status}: {message}"),
        None => status.to_owned(),
    })
}

/// The final figures, also written as JSON with `--report-json`.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) seconds: f64,
    pub(crate) sent: u64,
    pub(crate) ok: u64,
    pub(crate) success_rate: f64,
    pub(crate) no_answer: u64,
    pub(crate) shed: u64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) orders: OrdersFigures,
    pub(crate) instances: Vec<InstanceFigures>,
    pub(crate) stopped_cleanly: bool,
    /// The fault injected, as the demo described it.
    pub(crate) fault: Option<String>,
}

/// Prints the report; whether the demo went as it should: orders were
/// served and every process stopped by itself after SIGTERM.
pub(crate) fn print(
    stats: &LoadStats,
    snapshot: &Snapshot,
    stopped: &[Stopped],
    fault: Option<&crate::fault::Injected>,
    log_dir: &Path,
    json: Option<&Path>,
) -> bool {
    let mut latencies = stats.latencies.clone();
    let p50 = quantile(&mut latencies, 0.50);
    let p99 = quantile(&mut latencies, 0.99);
    let max = latencies.last().copied();
    let orders = &snapshot.orders;
    let calls = stats.answered().max(1);
    let total_requests: u64 = snapshot.instances.iter().map(|i| i.requests).sum();
    // The instance the demo killed on purpose is not expected to exit 0.
    let stopped_cleanly = stopped
        .iter()
        .all(|s| (!s.killed && s.exit_code == Some(0)) || fault.is_some_and(|f| f.killed(&s.name)));

    println!("\nReport after {:.1}s", stats.elapsed.as_secs_f64());
    println!(
        "  orders          {} sent, {} created: {:.2}% success",
        stats.sent,
        stats.ok,
        stats.success_percent()
    );
    let others: Vec<String> = stats
        .by_status
        .iter()
        .map(|(status, n)| format!("{n} × {status}"))
        .collect();
    if !others.is_empty() || stats.no_answer > 0 || stats.shed > 0 {
        println!(
            "  not created     {}  no answer: {}  shed by the load generator: {}",
            if others.is_empty() {
                "-".into()
            } else {
                others.join(", ")
            },
            stats.no_answer,
            stats.shed
        );
    }
    println!(
        "  goodput         {:.0} orders created a second",
        stats.ok as f64 / stats.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    );
    println!(
        "  latency         p50 {}  p99 {}  max {}",
        show(p50),
        show(p99),
        show(max)
    );
    // The budget's defaults: retries may add 20% of the calls, plus 10 a second.
    let first_attempts = orders
        .attempts
        .saturating_sub(orders.retries + orders.hedges);
    let allowed = 0.2 * first_attempts as f64 + 10.0 * stats.elapsed.as_secs_f64();
    println!(
        "  retries         {} ({:.1} per 100 orders): {:.0}% of what the retry budget allowed (20% of {} calls + 10/s), {} refused",
        orders.retries,
        orders.retries as f64 * 100.0 / calls as f64,
        orders.retries as f64 * 100.0 / allowed.max(1.0),
        first_attempts,
        orders.budget_exhausted
    );
    println!(
        "  elsewhere       {} of the retries went at once to an instance the order had not tried; {} requeues (attempts that never reached an instance, sent again at once, outside the budget); {} hedges",
        orders.retries_elsewhere, orders.requeues, orders.hedges
    );
    println!(
        "  ejections       {} ({} refused connections, {} success rate below its peers', {} failures in a row)",
        orders.ejections,
        orders.ejections_refused,
        orders.ejections_success_rate,
        orders.ejections_consecutive
    );
    println!(
        "  breaker         {} now; opened {} times, {} state changes, {} calls failed fast",
        orders.breaker_state,
        orders.breaker_opened,
        orders.breaker_transitions,
        orders.breaker_rejections
    );
    if let Some(fault) = fault {
        println!("  fault           {fault}");
    }
    let refused: u64 = snapshot
        .instances
        .iter()
        .map(|i| i.refused_overloaded)
        .sum();
    if refused > 0 || orders.throttled > 0 || orders.refused_overloaded > 0 {
        let limits: Vec<String> = snapshot
            .instances
            .iter()
            .map(|i| format!("{} {}", i.name.trim_start_matches("inventory-"), i.limit))
            .collect();
        println!(
            "  overload        orders refused {} orders over its concurrency limit (now {}), inventory {refused} requests over its own (now {}); orders' client throttled {} calls to inventory itself",
            orders.refused_overloaded,
            orders.limit,
            limits.join(", "),
            orders.throttled
        );
    }
    println!("  traffic         requests each inventory instance answered (retries included):");
    for instance in &snapshot.instances {
        let line = format!(
            "    {:<18} {:>6} ({:>5.1}%)  {:>5} answered 503   {}",
            instance.name,
            instance.requests,
            percent(instance.requests, total_requests),
            instance.answered_503,
            instance.description
        );
        println!("{}", line.trim_end());
    }
    if let Some(check) = &orders.dependency_check {
        println!("  orders' health  dependency:inventory {check}");
    }
    let ends: Vec<String> = stopped
        .iter()
        .map(|s| match (s.killed, s.exit_code) {
            (true, _) => format!("{} killed (did not stop in time)", s.name),
            (false, Some(code)) => format!("{} exit {code}", s.name),
            (false, None) => format!("{} ended by a signal", s.name),
        })
        .collect();
    println!("  shutdown        SIGTERM to each: {}", ends.join(", "));
    println!("  logs            {}", log_dir.display());

    let report = Report {
        seconds: stats.elapsed.as_secs_f64(),
        sent: stats.sent,
        ok: stats.ok,
        success_rate: stats.success_percent() / 100.0,
        no_answer: stats.no_answer,
        shed: stats.shed,
        p50_ms: p50.map(|d| d.as_secs_f64() * 1000.0),
        p99_ms: p99.map(|d| d.as_secs_f64() * 1000.0),
        orders: orders.clone(),
        instances: snapshot.instances.clone(),
        stopped_cleanly,
        fault: fault.map(ToString::to_string),
    };
    if let Some(path) = json {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(path, bytes));
        if let Err(e) = written {
            eprintln!("cannot write the report to {}: {e}", path.display());
            return false;
        }
    }
    stopped_cleanly && stats.ok > 0
}
