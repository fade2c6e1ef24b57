//! `faults`: the demo's scene (three instances: healthy, slow +20 ms, flaky
//! answering a quarter of its requests with 503), 200 requests/s from the
//! platform client with its defaults, and one fault injected into the
//! healthy instance part way through: none, a crash, a hang (SIGSTOP for a
//! while), a graceful restart, a black hole. The slow instance alone has
//! capacity for all of the traffic, so callers should lose nothing.
//!
//! Each fault runs on a fresh scene and a fresh client, with a meter
//! provider of its own from which the client's decisions are read: retries,
//! requeues, hedges, budget refusals, breaker openings and ejections.
//!
//! `grpc-faults` is the same scene over gRPC: the instances answer
//! `grpc.health.v1.Health/Check` (a failure is UNAVAILABLE) and the caller
//! is a generated tonic client through the platform's `Channel`, the method
//! marked idempotent (as a read is) so that it may be hedged.

use std::time::{Duration, Instant};

use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use platform_benches::fault_server::{Fault, FaultServer, Protocol};
use platform_benches::report::summarize;
use platform_core::discovery::{Endpoint, ManualResolver};

use tonic_health::pb::health_client::HealthClient;

use crate::Budget;

/// Offered load, requests per second (the demo's).
const RATE: u32 = 200;
/// The slow instance's extra latency and the flaky one's failure period.
const SLOW: Duration = Duration::from_millis(20);
const FLAKY_EVERY: u64 = 4;

/// One run's timing: how long, when the fault comes, how long it lasts.
#[derive(Debug, Clone, Copy)]
struct Timing {
    load: Duration,
    fault_at: Duration,
    hang_for: Duration,
    restart_down_for: Duration,
}

/// What one fault did to the callers.
#[derive(Debug, Clone, serde::Serialize)]
struct Outcome {
    fault: &'static str,
    requests: usize,
    success_rate: f64,
    failed: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    requeues: u64,
    retries: u64,
    hedges: u64,
    budget_refused: u64,
    breaker_opened: u64,
    ejections: u64,
    /// Requests each instance's handler saw (retries, hedges and requeues included).
    healthy_requests: u64,
    slow_requests: u64,
    flaky_requests: u64,
}

pub(crate) fn run(budget: Budget) -> Result<serde_json::Value, String> {
    run_in(Protocol::Http, budget)
}

/// `grpc-faults`: the same faults, over gRPC.
pub(crate) fn run_grpc(budget: Budget) -> Result<serde_json::Value, String> {
    run_in(Protocol::Grpc, budget)
}

fn run_in(protocol: Protocol, budget: Budget) -> Result<serde_json::Value, String> {
    // The scene: 30 s with the fault at 8 s and a 12 s hang; a
    // quick run keeps the proportions in 12 s.
    let timing = if budget.load >= Duration::from_secs(10) {
        Timing {
            load: Duration::from_secs(30),
            fault_at: Duration::from_secs(8),
            hang_for: Duration::from_secs(12),
            restart_down_for: Duration::from_secs(1),
        }
    } else {
        Timing {
            load: Duration::from_secs(12),
            fault_at: Duration::from_secs(3),
            hang_for: Duration::from_secs(5),
            restart_down_for: Duration::from_millis(500),
        }
    };
    let faults: [(&'static str, Option<Fault>); 5] = [
        ("none", None),
        ("crash", Some(Fault::Crash)),
        ("hang", Some(Fault::Hang)),
        ("graceful-restart", Some(Fault::GracefulRestart)),
        ("blackhole", Some(Fault::Blackhole)),
    ];
    let mut outcomes = Vec::new();
    println!(
        "{:<17} {:>8} {:>9} {:>6} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>7} {:>7} {:>6}",
        "fault",
        "requests",
        "success",
        "failed",
        "p50 ms",
        "p99 ms",
        "max ms",
        "requeues",
        "retries",
        "hedges",
        "budget",
        "breaker",
        "ejects"
    );
    for (name, fault) in faults {
        let outcome = one(protocol, name, fault, timing)?;
        println!(
            "{:<17} {:>8} {:>9.5} {:>6} {:>8.2} {:>8.2} {:>8.1} {:>8} {:>7} {:>6} {:>7} {:>7} {:>6}",
            outcome.fault,
            outcome.requests,
            outcome.success_rate,
            outcome.failed,
            outcome.p50_ms,
            outcome.p99_ms,
            outcome.max_ms,
            outcome.requeues,
            outcome.retries,
            outcome.hedges,
            outcome.budget_refused,
            outcome.breaker_opened,
            outcome.ejections
        );
        outcomes.push(outcome);
    }
    for o in &outcomes {
        let (success, p99) = match o.fault {
            "none" => (0.9995, 25.0),
            "graceful-restart" => (1.0, 100.0),
            _ => (0.999, 100.0),
        };
        let met = o.success_rate >= success && o.p99_ms <= p99;
        println!(
            "  {:<17} success {:.5} (target >= {success}), p99 {:.1} ms (target <= {p99}): {}; requests seen by healthy / slow / flaky: {} / {} / {}",
            o.fault,
            o.success_rate,
            o.p99_ms,
            if met { "met" } else { "MISSED" },
            o.healthy_requests,
            o.slow_requests,
            o.flaky_requests
        );
    }
    let svg = platform_benches::plot::bar_chart(
        "faults: p99 latency of the callers (ms) by fault on one instance of three",
        "ms",
        &outcomes
            .iter()
            .map(|o| (o.fault.to_string(), o.p99_ms))
            .collect::<Vec<_>>(),
        Some(100.0),
    );
    let file = match protocol {
        Protocol::Http => "faults",
        Protocol::Grpc => "grpc-faults",
    };
    platform_benches::plot::write_svg(file, &svg).map_err(|e| e.to_string())?;
    let mut json = serde_json::Map::new();
    for o in &outcomes {
        json.insert(
            o.fault.to_string(),
            serde_json::to_value(o).map_err(|e| e.to_string())?,
        );
    }
    json.insert(
        "scene".into(),
        serde_json::json!({
            "rate": RATE,
            "load_s": timing.load.as_secs_f64(),
            "fault_at_s": timing.fault_at.as_secs_f64(),
            "hang_s": timing.hang_for.as_secs_f64(),
        }),
    );
    Ok(serde_json::Value::Object(json))
}

fn one(
    protocol: Protocol,
    name: &'static str,
    fault: Option<Fault>,
    timing: Timing,
) -> Result<Outcome, String> {
    let start = |delay, fail_every| {
        FaultServer::start_speaking(protocol, delay, fail_every).map_err(|e| e.to_string())
    };
    let healthy = start(Duration::ZERO, 0)?;
    let slow = start(SLOW, 0)?;
    let flaky = start(Duration::ZERO, FLAKY_EVERY)?;
    let endpoints: Vec<Endpoint> = [&healthy, &slow, &flaky]
        .iter()
        .map(|s| Endpoint::new(s.addr.ip().to_string(), s.addr.port()))
        .collect();
    // The client's instruments come from the global provider when it is built.
    let metrics = Metrics::install();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let calls = rt.block_on(async {
        let resolver = ManualResolver::new("inventory");
        resolver.set(endpoints);
        let client = Caller::build(protocol, &format!("inventory-{name}"), resolver)?;
        let injector = async {
            tokio::time::sleep(timing.fault_at).await;
            if let Some(fault) = fault {
                let duration = match fault {
                    Fault::Hang => timing.hang_for,
                    _ => timing.restart_down_for,
                };
                healthy.inject(fault, duration);
            }
        };
        let load = open_loop(client, timing.load);
        let ((), calls) = tokio::join!(injector, load);
        Ok::<_, String>(calls)
    })?;
    drop(rt);
    let requests = calls.len();
    let failed = calls.iter().filter(|c| !c.1).count();
    let mut latencies: Vec<Duration> = calls.iter().map(|c| c.0).collect();
    let summary = summarize(&mut latencies);
    let outcome = Outcome {
        fault: name,
        requests,
        success_rate: (requests - failed) as f64 / requests.max(1) as f64,
        failed,
        p50_ms: summary.p50_us / 1e3,
        p99_ms: summary.p99_us / 1e3,
        max_ms: summary.max_us / 1e3,
        requeues: metrics.counter("platform.resilience.requeues", None),
        retries: metrics.counter("platform.resilience.retries", None),
        hedges: metrics.counter("platform.resilience.hedges", None),
        budget_refused: metrics.counter("platform.resilience.budget.exhausted", None),
        breaker_opened: metrics.counter(
            "platform.resilience.breaker.transitions",
            Some(("to", "open")),
        ),
        ejections: metrics.counter("platform.resilience.ejections", None),
        healthy_requests: healthy.requests(),
        slow_requests: slow.requests(),
        flaky_requests: flaky.requests(),
    };
    drop((healthy, slow, flaky));
    Ok(outcome)
}

/// Sends `RATE` requests a second for `duration`, each on its own task, so
/// that a slow answer never delays the next request (an open loop, as
/// callers arriving independently do). Returns each call's latency and
/// whether it was answered 200.
async fn open_loop(client: Caller, duration: Duration) -> Vec<(Duration, bool)> {
    let period = Duration::from_secs(1) / RATE;
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let stop = Instant::now() + duration;
    let mut calls = tokio::task::JoinSet::new();
    while Instant::now() < stop {
        ticks.tick().await;
        let client = client.clone();
        calls.spawn(async move {
            let start = Instant::now();
            let ok = client.call().await;
            (start.elapsed(), ok)
        });
    }
    // Every call ends within the client's total timeout (10 s).
    calls.join_all().await
}

/// The platform's client of the scene's instances, in either protocol.
#[derive(Clone)]
enum Caller {
    Http(platform_http::Client),
    Grpc(HealthClient<platform_grpc::Channel>),
}

impl Caller {
    /// A client with the defaults, except that an ejected instance comes
    /// back within the run (as the demo sets it).
    fn build(protocol: Protocol, name: &str, resolver: ManualResolver) -> Result<Caller, String> {
        let ejection = Duration::from_secs(5);
        match protocol {
            Protocol::Http => {
                let mut settings = platform_http::ClientSettings {
                    base_url: "http://inventory".into(),
                    ..Default::default()
                };
                settings.outlier.base_ejection_time = ejection;
                platform_http::Client::builder(name, &settings)
                    .resolver(resolver)
                    .build()
                    .map(Caller::Http)
                    .map_err(|e| e.to_string())
            }
            Protocol::Grpc => {
                let mut settings = platform_grpc::GrpcClientSettings {
                    idempotent_methods: vec!["grpc.health.v1.Health/*".into()],
                    ..Default::default()
                };
                settings.outlier.base_ejection_time = ejection;
                platform_grpc::Channel::builder(name, &settings)
                    .resolver(resolver)
                    .build()
                    .map(|channel| Caller::Grpc(HealthClient::new(channel)))
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// One call: `GET /` answered 200, or `Health/Check` answered OK.
    async fn call(&self) -> bool {
        match self {
            Caller::Http(client) => {
                matches!(client.get("/").send().await, Ok(r) if r.status() == 200)
            }
            Caller::Grpc(client) => client
                .clone()
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_ok(),
        }
    }
}

/// A meter provider installed globally for one run, read at its end.
struct Metrics {
    provider: opentelemetry_sdk::metrics::SdkMeterProvider,
    exporter: opentelemetry_sdk::metrics::InMemoryMetricExporter,
}

impl Metrics {
    fn install() -> Self {
        let exporter = opentelemetry_sdk::metrics::InMemoryMetricExporter::default();
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
            .with_reader(
                opentelemetry_sdk::metrics::PeriodicReader::builder(exporter.clone()).build(),
            )
            .build();
        opentelemetry::global::set_meter_provider(provider.clone());
        Self { provider, exporter }
    }

    /// The total of a counter, over the data points whose attributes
    /// include `only` when given.
    fn counter(&self, name: &str, only: Option<(&str, &str)>) -> u64 {
        let _ = self.provider.force_flush();
        let all = self.exporter.get_finished_metrics().unwrap_or_default();
        let Some(latest) = all.last() else {
            return 0;
        };
        latest
            .scope_metrics()
            .flat_map(|s| s.metrics())
            .filter(|m| m.name() == name)
            .map(|m| match m.data() {
                AggregatedMetrics::U64(MetricData::Sum(sum)) => sum
                    .data_points()
                    .filter(|p| {
                        only.is_none_or(|(key, value)| {
                            p.attributes()
                                .any(|kv| kv.key.as_str() == key && kv.value.as_str() == value)
                        })
                    })
                    .map(|p| p.value())
                    .sum(),
                _ => 0,
            })
            .sum()
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}
