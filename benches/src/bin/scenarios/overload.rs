//! `overload`: a platform server of known capacity (a few workers, each
//! holding a request for about 5 ms) offered 0.5x to 3x what it can do and
//! back, by platform clients with a 1 s deadline, open loop. Side by side in
//! one run: no limit (every request queued), a static limit, the adaptive
//! limit, and the defaults (adaptive limit and adaptive throttling on the
//! clients). For the 3x step: goodput against capacity, admitted p99
//! against the unloaded p99, how fast refusals come back, how many attempts
//! the server got per call; and after the step down, how long until the
//! full goodput is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use platform_benches::report::summarize;
use platform_config::Loader;
use platform_config::cli::ConfigArgs;
use platform_core::Runtime;
use platform_http::{BoundServer, Client, ClientError};

use crate::Budget;

/// Requests served at once: the server's capacity in workers.
const WORKERS: usize = 4;
/// How long a worker holds a request.
const WORK: Duration = Duration::from_millis(5);
/// The callers' deadline.
const DEADLINE: Duration = Duration::from_secs(1);
/// Offered load, in multiples of the capacity, step by step.
const STEPS: [f64; 6] = [0.5, 1.0, 2.0, 3.0, 0.8, 0.5];
/// Which step is the overload, and which the step down after it.
const OVERLOAD_STEP: usize = 3;
const STEP_DOWN: usize = 4;
/// Goodput is looked at in slices this long (for the recovery time).
const SLICE: Duration = Duration::from_millis(250);

#[derive(Clone, Copy)]
struct Variant {
    key: &'static str,
    label: &'static str,
    server: &'static [(&'static str, &'static str)],
    throttle: bool,
    /// The throttle's window, when not the default two minutes.
    throttle_window: Option<Duration>,
}

const VARIANTS: [Variant; 5] = [
    Variant {
        key: "no_limit",
        label: "no limit (queue)",
        server: &[("server.limit.mode", "off")],
        throttle: false,
        throttle_window: None,
    },
    Variant {
        key: "static",
        label: "static limit (2x workers)",
        server: &[("server.limit.mode", "static"), ("server.limit.max", "8")],
        throttle: false,
        throttle_window: None,
    },
    Variant {
        key: "adaptive",
        label: "adaptive limit",
        server: &[],
        throttle: false,
        throttle_window: None,
    },
    Variant {
        key: "defaults",
        label: "adaptive limit + client throttling (defaults)",
        server: &[],
        throttle: true,
        throttle_window: None,
    },
    // The default window is two minutes: a few seconds of overload after
    // healthy traffic never tip it. A short one shows the throttle at work.
    Variant {
        key: "throttle_2s",
        label: "adaptive limit + client throttling (2 s window)",
        server: &[],
        throttle: true,
        throttle_window: Some(Duration::from_secs(2)),
    },
];

/// How one call ended.
#[derive(Clone, Copy, PartialEq)]
enum Outcome {
    /// 200 within the deadline.
    Good,
    /// Refused: an overloaded 503, or throttled by the client.
    Refused,
    /// Anything else: deadline passed, 504, an error.
    Failed,
}

struct Call {
    /// When it was sent, from the start of the run.
    at: Duration,
    took: Duration,
    outcome: Outcome,
    /// Attempts that reached the server.
    attempts: u32,
}

pub(crate) fn run(budget: Budget) -> Result<serde_json::Value, String> {
    let step = if budget.repeats < 10 {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(6)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut results = serde_json::Map::new();
    let mut goodput_lines = Vec::new();
    let mut p99_lines = Vec::new();
    println!(
        "{:<46} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "variant", "goodput", "p99/unld", "rej p99", "recovery", "att/call", "capacity"
    );
    for variant in VARIANTS {
        let figures = rt.block_on(measure(variant, step))?;
        println!(
            "{:<46} {:>8.3} {:>10.2} {:>7.2}ms {:>8.2}s {:>9.3} {:>7.0}/s",
            variant.label,
            figures.goodput_ratio,
            figures.p99_ratio,
            figures.reject_p99_ms,
            figures.recovery_s,
            figures.attempts_per_call,
            figures.capacity
        );
        goodput_lines.push((variant.label.to_owned(), figures.goodput_by_step.clone()));
        p99_lines.push((variant.label.to_owned(), figures.p99_by_step.clone()));
        results.insert(variant.key.to_owned(), figures.json());
    }
    write_plots(&goodput_lines, &p99_lines)?;
    // The defaults' figures at the top, with the no-limit baseline's beside.
    let defaults = results["defaults"].clone();
    let baseline = results["no_limit"].clone();
    let mut out = serde_json::json!({
        "goodput_ratio": defaults["goodput_ratio"],
        "admitted_p99_over_unloaded_p99": defaults["admitted_p99_over_unloaded_p99"],
        "reject_p99_ms": defaults["reject_p99_ms"],
        "recovery_s": defaults["recovery_s"],
        "attempts_per_call": defaults["attempts_per_call"],
        "baseline_goodput_ratio": baseline["goodput_ratio"],
        "baseline_admitted_p99_over_unloaded_p99": baseline["admitted_p99_over_unloaded_p99"],
        "baseline_recovery_s": baseline["recovery_s"],
        "throttle_2s_attempts_per_call": results["throttle_2s"]["attempts_per_call"],
        "throttle_2s_goodput_ratio": results["throttle_2s"]["goodput_ratio"],
        "step_seconds": step.as_secs_f64(),
        "workers": WORKERS,
        "work_ms": WORK.as_secs_f64() * 1e3,
        "deadline_ms": DEADLINE.as_secs_f64() * 1e3,
    });
    out["variants"] = serde_json::Value::Object(results);
    Ok(out)
}

fn write_plots(
    goodput: &[platform_benches::plot::Series],
    p99: &[platform_benches::plot::Series],
) -> Result<(), String> {
    for (name, title, y, series) in [
        (
            "overload-goodput",
            "overload: goodput against offered load (steps in order, up and back)",
            "goodput / capacity",
            goodput,
        ),
        (
            "overload-p99",
            "overload: p99 of good answers against offered load",
            "p99 (ms)",
            p99,
        ),
    ] {
        let svg = platform_benches::plot::line_chart(title, "offered load / capacity", y, series);
        platform_benches::plot::write_svg(name, &svg).map_err(|e| e.to_string())?;
    }
    Ok(())
}

struct Figures {
    capacity: f64,
    goodput_ratio: f64,
    p99_ratio: f64,
    reject_p99_ms: f64,
    recovery_s: f64,
    attempts_per_call: f64,
    goodput_by_step: Vec<(f64, f64)>,
    p99_by_step: Vec<(f64, f64)>,
}

impl Figures {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "capacity_per_s": self.capacity,
            "goodput_ratio": self.goodput_ratio,
            "admitted_p99_over_unloaded_p99": self.p99_ratio,
            "reject_p99_ms": self.reject_p99_ms,
            "recovery_s": self.recovery_s,
            "attempts_per_call": self.attempts_per_call,
            "goodput_by_step": self.goodput_by_step,
            "p99_ms_by_step": self.p99_by_step,
        })
    }
}

async fn measure(variant: Variant, step: Duration) -> Result<Figures, String> {
    let held = Arc::new(Held::default());
    let (rt, server) = start_server(variant, held.clone()).await?;
    let api = server.api_addr().ok_or("no API address")?;
    let serving = tokio::spawn(server.run());
    let client = client(variant, api)?;
    let origin = Instant::now();
    let mut calls = Vec::new();
    // Capacity from what the workers actually took (timer granularity makes
    // a 5 ms sleep last longer).
    let mut capacity = WORKERS as f64 / WORK.as_secs_f64();
    let mut step_starts = Vec::new();
    for (i, multiple) in STEPS.iter().enumerate() {
        step_starts.push(origin.elapsed());
        let sent = offer(&client, capacity * multiple, step, origin).await;
        calls.extend(sent);
        if i == 0 {
            capacity = WORKERS as f64 / held.mean().as_secs_f64();
        }
    }
    rt.lifecycle().request_shutdown("overload scenario done");
    let _ = serving.await;
    Ok(figures(&calls, &step_starts, step, capacity))
}

/// Time the workers held requests, to know the capacity.
#[derive(Default)]
struct Held {
    nanos: AtomicU64,
    count: AtomicU64,
}

impl Held {
    fn add(&self, took: Duration) {
        self.nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn mean(&self) -> Duration {
        let count = self.count.load(Ordering::Relaxed).max(1);
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed) / count)
    }
}

async fn start_server(variant: Variant, held: Arc<Held>) -> Result<(Runtime, BoundServer), String> {
    let mut loader = Loader::new()
        .env_vars(Vec::<(String, String)>::new())
        .set("server.bind", "127.0.0.1:0")
        .set("admin.bind", "127.0.0.1:0")
        .set("shutdown.drain_delay", "0s")
        .set("shutdown.grace_period", "2s")
        .set("reload.enabled", "false");
    for (key, value) in variant.server {
        loader = loader.set(*key, *value);
    }
    let (rt, _config) = Runtime::builder::<()>("overload-bench")
        .args(ConfigArgs::default())
        .loader(loader)
        .without_signal_handlers()
        .without_telemetry()
        .init()
        .await
        .map_err(|e| e.to_string())?;
    let workers = Arc::new(tokio::sync::Semaphore::new(WORKERS));
    let app = axum::Router::new().route(
        "/work",
        axum::routing::get(move || {
            let (workers, held) = (workers.clone(), held.clone());
            async move {
                // Waits its turn (FIFO), then holds a worker.
                let _worker = workers.acquire().await;
                let started = Instant::now();
                tokio::time::sleep(WORK).await;
                held.add(started.elapsed());
                "done"
            }
        }),
    );
    let server = BoundServer::bind(&rt, app)
        .await
        .map_err(|e| e.to_string())?;
    Ok((rt, server))
}

fn client(variant: Variant, api: std::net::SocketAddr) -> Result<Client, String> {
    let mut settings = platform_http::ClientSettings {
        base_url: format!("http://{api}"),
        total_timeout: DEADLINE,
        attempt_timeout: DEADLINE,
        ..Default::default()
    };
    settings.throttle.enabled = variant.throttle;
    if let Some(window) = variant.throttle_window {
        settings.throttle.window = window;
    }
    // One server: ejecting it would measure ejection, not overload.
    settings.outlier.enabled = false;
    settings.hedge.enabled = false;
    Client::from_settings(&format!("overload-{}", variant.key), &settings)
        .map_err(|e| e.to_string())
}

/// Sends `rate` calls a second for `length`, open loop, and waits for them.
async fn offer(client: &Client, rate: f64, length: Duration, origin: Instant) -> Vec<Call> {
    let tick = Duration::from_millis(1);
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut owed = 0.0;
    let mut tasks = Vec::new();
    while start.elapsed() < length {
        ticker.tick().await;
        owed += rate * tick.as_secs_f64();
        while owed >= 1.0 {
            owed -= 1.0;
            let client = client.clone();
            tasks.push(tokio::spawn(async move { call(&client, origin).await }));
        }
    }
    let mut calls = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(call) = task.await {
            calls.push(call);
        }
    }
    calls
}

async fn call(client: &Client, origin: Instant) -> Call {
    let at = origin.elapsed();
    let started = Instant::now();
    let result = client.get("/work").send().await;
    let took = started.elapsed();
    let (outcome, attempts) = match &result {
        Ok(r) if r.status() == 200 && took <= DEADLINE => (Outcome::Good, r.attempts()),
        Ok(r)
            if r.headers()
                .contains_key(platform_http::server::OVERLOADED_HEADER) =>
        {
            (Outcome::Refused, r.attempts())
        }
        Ok(r) => (Outcome::Failed, r.attempts()),
        Err(ClientError::Throttled { .. }) => (Outcome::Refused, 0),
        // An attempt cut short by the deadline still reached the server.
        Err(e) => (Outcome::Failed, e.attempts().unwrap_or(1).max(1)),
    };
    Call {
        at,
        took,
        outcome,
        attempts,
    }
}

fn figures(calls: &[Call], starts: &[Duration], step: Duration, capacity: f64) -> Figures {
    let in_step = |i: usize| {
        let (from, to) = (starts[i], starts[i] + step);
        calls.iter().filter(move |c| c.at >= from && c.at < to)
    };
    let good_p99_ms = |i: usize| {
        let mut took: Vec<Duration> = in_step(i)
            .filter(|c| c.outcome == Outcome::Good)
            .map(|c| c.took)
            .collect();
        summarize(&mut took).p99_us / 1e3
    };
    let goodput = |i: usize| {
        in_step(i).filter(|c| c.outcome == Outcome::Good).count() as f64 / step.as_secs_f64()
    };
    let mut refused: Vec<Duration> = in_step(OVERLOAD_STEP)
        .filter(|c| c.outcome == Outcome::Refused)
        .map(|c| c.took)
        .collect();
    let overload_calls = in_step(OVERLOAD_STEP).count().max(1) as f64;
    let attempts: u32 = in_step(OVERLOAD_STEP).map(|c| c.attempts).sum();
    Figures {
        capacity,
        goodput_ratio: goodput(OVERLOAD_STEP) / capacity,
        p99_ratio: good_p99_ms(OVERLOAD_STEP) / good_p99_ms(0).max(f64::MIN_POSITIVE),
        reject_p99_ms: if refused.is_empty() {
            0.0
        } else {
            summarize(&mut refused).p99_us / 1e3
        },
        recovery_s: recovery(calls, starts[STEP_DOWN], step, capacity * STEPS[STEP_DOWN]),
        attempts_per_call: f64::from(attempts) / overload_calls,
        goodput_by_step: (0..STEPS.len())
            .map(|i| (STEPS[i], goodput(i) / capacity))
            .collect(),
        p99_by_step: (0..STEPS.len())
            .map(|i| (STEPS[i], good_p99_ms(i)))
            .collect(),
    }
}

/// Seconds from the step down until every later slice of the step has its
/// full goodput (95% of what is offered), or the whole step if none does.
fn recovery(calls: &[Call], from: Duration, step: Duration, offered: f64) -> f64 {
    let slices = (step.as_secs_f64() / SLICE.as_secs_f64()) as usize;
    let good_in = |k: usize| {
        let start = from + SLICE * k as u32;
        calls
            .iter()
            .filter(|c| c.outcome == Outcome::Good && c.at >= start && c.at < start + SLICE)
            .count() as f64
            / SLICE.as_secs_f64()
    };
    let full: Vec<bool> = (0..slices).map(|k| good_in(k) >= 0.95 * offered).collect();
    let recovered_from = (0..slices)
        .find(|&k| full[k..].iter().all(|f| *f))
        .unwrap_or(slices);
    recovered_from as f64 * SLICE.as_secs_f64()
}
