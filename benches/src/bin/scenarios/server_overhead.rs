//! `server-overhead`: what the platform's server layer costs over bare axum,
//! side by side with the stack a team assembles by hand.
//!
//! Each server runs in a process of its own (this binary, `serve-bench
//! <variant>`), so that its CPU time is its own and its telemetry is
//! installed process-wide exactly as a service has it:
//! - `bare`: `axum::serve` on the route, nothing else;
//! - `diy`: axum with tower-http's `SetRequestId`/`PropagateRequestId`,
//!   `TraceLayer` continuing the caller's trace through tracing-opentelemetry,
//!   a hand-written OpenTelemetry duration-metric middleware, a timeout, a
//!   body limit and `CatchPanic`, under a JSON log layer;
//! - `platform`: `platform_http::serve` on a `Runtime` with default settings
//!   (sampling ratio 1.0, tracing on, no exporter);
//! - `platform-export`: the same with a no-op span exporter behind the
//!   platform's batch processor, as a service exporting its spans has.
//!
//! The load comes from this process, on one thread, over keep-alive HTTP/1.1
//! connections with a minimal client: closed loop (32 connections, as fast as
//! the server answers) for throughput and CPU per request, and an open loop
//! at a fixed 1,000 requests/s (one request every millisecond) for latency
//! below saturation. Variants take turns in short slices, so drifting machine
//! load hits them alike. Two routes: `/hello` (a string) and `/work` (about
//! 50 µs of CPU).
//!
//! `scenarios profile-server <variant> <requests>` serves one variant on a
//! current-thread runtime inside `profiled_server` and loads it from another
//! thread, for `valgrind --tool=callgrind --toggle-collect='*profiled_server*'`:
//! the difference between two request counts divided by their difference is
//! the server's instructions per request.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use platform_benches::load::{RawClient, closed_loop};
use platform_benches::noop::NoopExporter;
use platform_benches::report::{Summary, summarize};

use crate::Budget;

/// The servers compared, in the order they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Bare,
    Diy,
    Platform,
    PlatformExport,
}

const VARIANTS: [Variant; 4] = [
    Variant::Bare,
    Variant::Diy,
    Variant::Platform,
    Variant::PlatformExport,
];

impl Variant {
    fn key(self) -> &'static str {
        match self {
            Variant::Bare => "bare",
            Variant::Diy => "diy",
            Variant::Platform => "platform",
            Variant::PlatformExport => "platform-export",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Variant::Bare => "bare axum",
            Variant::Diy => "hand-rolled stack",
            Variant::Platform => "platform serve",
            Variant::PlatformExport => "platform, spans exported",
        }
    }

    fn from_key(key: &str) -> Result<Variant, String> {
        VARIANTS
            .into_iter()
            .find(|v| v.key() == key)
            .ok_or_else(|| {
                format!(
                    "unknown server variant {key:?}; known: {}",
                    VARIANTS.map(Variant::key).join(", ")
                )
            })
    }
}

/// The CPU a handler of `/work` burns: a stand-in for real work.
const WORK: Duration = Duration::from_micros(50);

async fn work() -> &'static str {
    let started = Instant::now();
    let mut x = 0u64;
    while started.elapsed() < WORK {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    std::hint::black_box(x);
    "done\n"
}

fn routes() -> axum::Router {
    axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "Hello, world!\n" }))
        .route("/work", axum::routing::get(work))
}

/// A platform runtime with default settings but for loopback ports, no
/// drain delay and no reload watcher.
async fn platform_runtime(export: bool) -> Result<platform_core::Runtime, platform_core::Error> {
    let mut builder = platform_core::Runtime::builder::<()>("server-bench")
        .args(platform_config::cli::ConfigArgs::default())
        .loader(
            platform_config::Loader::new()
                .env_vars(Vec::<(String, String)>::new())
                .set("server.bind", "127.0.0.1:0")
                .set("admin.bind", "127.0.0.1:0")
                .set("shutdown.drain_delay", "0s")
                .set("reload.enabled", "false"),
        )
        .without_signal_handlers();
    if export {
        builder = builder.span_exporter(platform_core::telemetry::SpanExporterHook::new(
            NoopExporter,
        ));
    }
    Ok(builder.init().await?.0)
}

/// Serves `variant` on loopback, writes its address to `addr_file` and
/// serves until `stop` completes.
async fn serve_variant(
    variant: Variant,
    addr_file: Option<&Path>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let announce = |addr: SocketAddr| -> Result<(), String> {
        if let Some(path) = addr_file {
            // Written whole under another name, then renamed: never read half-written.
            let partial = path.with_extension("partial");
            std::fs::write(&partial, addr.to_string()).map_err(|e| e.to_string())?;
            std::fs::rename(&partial, path).map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    match variant {
        Variant::Bare | Variant::Diy => {
            let app = if variant == Variant::Diy {
                diy::install_telemetry();
                diy::layered(routes())
            } else {
                routes()
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| e.to_string())?;
            announce(listener.local_addr().map_err(|e| e.to_string())?)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
                .map_err(|e| e.to_string())
        }
        Variant::Platform | Variant::PlatformExport => {
            let rt = platform_runtime(variant == Variant::PlatformExport)
                .await
                .map_err(|e| e.to_string())?;
            let server = platform_http::BoundServer::bind(&rt, routes())
                .await
                .map_err(|e| e.to_string())?;
            announce(server.api_addr().ok_or("no API listener")?)?;
            let lifecycle = rt.lifecycle().clone();
            tokio::spawn(async move {
                stop.await;
                lifecycle.request_shutdown("bench over");
            });
            server.run().await.map_err(|e| e.to_string())
        }
    }
}

/// `scenarios serve-bench <variant> <addr-file>`: a server process for the
/// scenario; it exits when its standard input closes (the scenario ended or died).
pub(crate) fn serve_child(args: &[String]) -> Result<(), String> {
    let variant = Variant::from_key(args.first().ok_or("name a server variant")?)?;
    let addr_file = PathBuf::from(args.get(1).ok_or("name the address file")?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().lock().read_until(0, &mut sink);
        let _ = stop_tx.send(());
    });
    rt.block_on(serve_variant(variant, Some(&addr_file), async {
        let _ = stop_rx.await;
    }))
}

/// A server process of one variant; killed when dropped.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(variant: Variant, dir: &Path) -> Result<Self, String> {
        let addr_file = dir.join(format!("{}.addr", variant.key()));
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = std::process::Command::new(exe)
            .arg("serve-bench")
            .arg(variant.key())
            .arg(&addr_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the {} server: {e}", variant.key()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                break text
                    .trim()
                    .parse()
                    .map_err(|e| format!("bad address {text:?}: {e}"))?;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the {} server exited: {status}", variant.key()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!(
                    "the {} server did not start in 30 s",
                    variant.key()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(ServerProcess { child, addr })
    }

    /// CPU time of all the process's threads so far (Linux schedstat, ns).
    fn cpu_time(&self) -> Duration {
        let tasks = format!("/proc/{}/task", self.child.id());
        let mut total = 0u64;
        if let Ok(entries) = std::fs::read_dir(tasks) {
            for entry in entries.flatten() {
                if let Ok(stat) = std::fs::read_to_string(entry.path().join("schedstat"))
                    && let Some(ns) = stat
                        .split_whitespace()
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                {
                    total += ns;
                }
            }
        }
        Duration::from_nanos(total)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing stdin asks for a clean exit; kill if it takes too long.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connections of the closed loop: enough to keep the server saturated.
const CLOSED_CONNECTIONS: usize = 32;
/// Open loop: this many connections, each sending every `OPEN_PERIOD`, phases
/// spread so that one request leaves every millisecond (1,000 per second).
const OPEN_CONNECTIONS: u32 = 4;
const OPEN_PERIOD: Duration = Duration::from_millis(4);

/// Latencies of an open loop at a fixed rate; measured from each request's
/// send, so the timer's own lateness is not counted.
async fn open_loop(addr: SocketAddr, path: &str, duration: Duration) -> (Vec<Duration>, usize) {
    let start = tokio::time::Instant::now() + Duration::from_millis(5);
    let stop = start + duration;
    let mut tasks = Vec::new();
    for phase in 0..OPEN_CONNECTIONS {
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut client = RawClient::connect(addr, &path).await?;
            let mut ticks = tokio::time::interval_at(
                start + Duration::from_millis(u64::from(phase)),
                OPEN_PERIOD,
            );
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            loop {
                let tick = ticks.tick().await;
                if tick >= stop {
                    break;
                }
                let t = Instant::now();
                match client.get().await {
                    Ok(200) => latencies.push(t.elapsed()),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            Ok::<_, std::io::Error>((latencies, errors))
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for task in tasks {
        match task.await {
            Ok(Ok((latencies, e))) => {
                all.extend(latencies);
                errors += e;
            }
            _ => errors += 1,
        }
    }
    (all, errors)
}

#[derive(Default)]
struct Tally {
    requests: u64,
    seconds: f64,
    cpu: Duration,
    errors: usize,
    latencies: Vec<Duration>,
}

impl Tally {
    fn throughput(&self) -> f64 {
        self.requests as f64 / self.seconds.max(f64::EPSILON)
    }

    fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
}

/// One variant's results: closed loop on both routes, open loop on `/hello`.
#[derive(Default)]
struct Results {
    hello: Tally,
    work: Tally,
    open: Tally,
}

async fn closed_slice(server: &ServerProcess, path: &str, slice: Duration, tally: &mut Tally) {
    let cpu_before = server.cpu_time();
    let started = Instant::now();
    let (latencies, errors) = closed_loop(server.addr, path, CLOSED_CONNECTIONS, slice).await;
    tally.seconds += started.elapsed().as_secs_f64();
    tally.cpu += server.cpu_time().saturating_sub(cpu_before);
    tally.requests += latencies.len() as u64;
    tally.errors += errors;
}

pub(crate) fn run(budget: Budget) -> Result<serde_json::Value, String> {
    let dir = tempdir()?;
    let servers = VARIANTS
        .into_iter()
        .map(|v| ServerProcess::start(v, &dir))
        .collect::<Result<Vec<_>, _>>()?;
    let load = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let slice = (budget.load / 4).max(Duration::from_millis(250));
    let mut results: Vec<Results> = VARIANTS.iter().map(|_| Results::default()).collect();
    load.block_on(async {
        // Round 0 warms connections, caches and allocators; not counted.
        for round in 0..=budget.repeats {
            for k in 0..servers.len() {
                let i = (k + round) % servers.len();
                let server = &servers[i];
                let mut scratch = Results::default();
                let r = if round == 0 {
                    &mut scratch
                } else {
                    &mut results[i]
                };
                closed_slice(server, "/hello", slice, &mut r.hello).await;
                closed_slice(server, "/work", slice, &mut r.work).await;
                let (latencies, errors) = open_loop(server.addr, "/hello", slice).await;
                r.open.requests += latencies.len() as u64;
                r.open.errors += errors;
                r.open.latencies.extend(latencies);
            }
        }
    });
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
    report(&mut results)
}

fn report(results: &mut [Results]) -> Result<serde_json::Value, String> {
    let open: Vec<Summary> = results
        .iter_mut()
        .map(|r| summarize(&mut r.open.latencies))
        .collect();
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>7}",
        "server", "hello r/s", "work r/s", "cpu us/req", "work cpu", "p50 us", "p99 us", "errors"
    );
    for ((variant, r), o) in VARIANTS.iter().zip(results.iter()).zip(&open) {
        println!(
            "{:<26} {:>10.0} {:>10.0} {:>10.1} {:>10.1} {:>9.1} {:>9.1} {:>7}",
            variant.name(),
            r.hello.throughput(),
            r.work.throughput(),
            r.hello.cpu_us(),
            r.work.cpu_us(),
            o.p50_us,
            o.p99_us,
            r.hello.errors + r.work.errors + r.open.errors,
        );
    }
    let bare = &results[0];
    let ratios = |i: usize| {
        let r = &results[i];
        serde_json::json!({
            "throughput_ratio": r.hello.throughput() / bare.hello.throughput(),
            "work_throughput_ratio": r.work.throughput() / bare.work.throughput(),
            "cpu_ratio": r.hello.cpu_us() / bare.hello.cpu_us(),
            "work_cpu_ratio": r.work.cpu_us() / bare.work.cpu_us(),
            "p50_ratio": open[i].p50_us / open[0].p50_us,
            "p99_ratio": open[i].p99_us / open[0].p99_us,
        })
    };
    let platform = ratios(2);
    let diy = ratios(1);
    let export = ratios(3);
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    println!("ratios to bare axum:");
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "", "hello r/s", "work r/s", "cpu", "work cpu", "p50", "p99"
    );
    for (i, v) in [(1, &diy), (2, &platform), (3, &export)] {
        println!(
            "{:<26} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>9.3} {:>9.3}",
            VARIANTS[i].name(),
            f(v, "throughput_ratio"),
            f(v, "work_throughput_ratio"),
            f(v, "cpu_ratio"),
            f(v, "work_cpu_ratio"),
            f(v, "p50_ratio"),
            f(v, "p99_ratio"),
        );
    }
    let check = |name: &str, ok: bool, value: String| {
        println!("  {name}: {value} {}", if ok { "met" } else { "MISSED" });
    };
    let (t, c) = (f(&platform, "throughput_ratio"), f(&platform, "cpu_ratio"));
    check("throughput ratio >= 0.85", t >= 0.85, format!("{t:.3}"));
    check("cpu ratio <= 1.20", c <= 1.20, format!("{c:.3}"));
    let (p50, p99) = (f(&platform, "p50_ratio"), f(&platform, "p99_ratio"));
    check(
        "open-loop p50 ratio <= 1.10",
        p50 <= 1.10,
        format!("{p50:.3}"),
    );
    check(
        "open-loop p99 ratio <= 1.20",
        p99 <= 1.20,
        format!("{p99:.3}"),
    );
    check(
        "ahead of the hand-rolled stack (throughput, cpu)",
        t > f(&diy, "throughput_ratio") && c < f(&diy, "cpu_ratio"),
        format!(
            "{t:.3} vs {:.3}, {c:.3} vs {:.3}",
            f(&diy, "throughput_ratio"),
            f(&diy, "cpu_ratio")
        ),
    );
    let sampling_throughput = f(&export, "throughput_ratio") / t;
    let sampling_cpu = f(&export, "cpu_ratio") / c;
    check(
        "exporting spans changes throughput by <= 3%",
        (sampling_throughput - 1.0).abs() <= 0.03,
        format!("{sampling_throughput:.3}"),
    );
    check(
        "exporting spans changes cpu by <= 3%",
        (sampling_cpu - 1.0).abs() <= 0.03,
        format!("{sampling_cpu:.3}"),
    );

    let mut out = serde_json::json!({
        "connections": CLOSED_CONNECTIONS,
        "open_loop_rate_per_s": 1000,
        "work_us": WORK.as_micros() as u64,
        "sampling_throughput_ratio": sampling_throughput,
        "sampling_cpu_ratio": sampling_cpu,
        "export": export,
        "errors": results.iter().map(|r| r.hello.errors + r.work.errors + r.open.errors).sum::<usize>(),
    });
    for (key, value) in platform.as_object().into_iter().flatten() {
        out[key] = value.clone();
    }
    for (key, value) in diy.as_object().into_iter().flatten() {
        out[format!("diy_{key}")] = value.clone();
    }
    for ((variant, r), o) in VARIANTS.iter().zip(results.iter()).zip(&open) {
        out["variants"][variant.key()] = serde_json::json!({
            "hello_requests_per_s": r.hello.throughput(),
            "work_requests_per_s": r.work.throughput(),
            "hello_cpu_us_per_request": r.hello.cpu_us(),
            "work_cpu_us_per_request": r.work.cpu_us(),
            "open_p50_us": o.p50_us,
            "open_p99_us": o.p99_us,
            "open_requests": o.count,
        });
    }
    let bars = |f: &dyn Fn(usize) -> f64| {
        VARIANTS
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name().to_owned(), f(i)))
            .collect::<Vec<_>>()
    };
    let plots = [
        (
            "server-overhead-throughput",
            "requests/s, trivial handler, 32 connections",
            "req/s",
            bars(&|i| results[i].hello.throughput()),
        ),
        (
            "server-overhead-cpu",
            "server CPU per request, trivial handler",
            "us",
            bars(&|i| results[i].hello.cpu_us()),
        ),
        (
            "server-overhead-p99",
            "p99 latency at 1,000 requests/s",
            "us",
            bars(&|i| open[i].p99_us),
        ),
    ];
    for (file, title, unit, data) in plots {
        let svg = platform_benches::plot::bar_chart(title, unit, &data, None);
        platform_benches::plot::write_svg(file, &svg).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn tempdir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("server-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// `scenarios profile-server <variant> [requests]`.
pub(crate) fn profile(args: &[String]) -> Result<(), String> {
    let variant = Variant::from_key(args.first().ok_or("name a server variant")?)?;
    let requests: u64 = match args.get(1) {
        Some(n) => n
            .parse()
            .map_err(|_| format!("requests must be a whole number, got {n:?}"))?,
        None => 10_000,
    };
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<Result<SocketAddr, String>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || profiled_server(variant, addr_tx, stop_rx));
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| "the server did not start".to_owned())??;
    let load = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let failures = load.block_on(async {
        let mut client = RawClient::connect(addr, "/hello")
            .await
            .map_err(|e| e.to_string())?;
        let mut failures = 0u64;
        for _ in 0..requests {
            if !matches!(client.get().await, Ok(200)) {
                failures += 1;
            }
        }
        Ok::<_, String>(failures)
    })?;
    let _ = stop_tx.send(());
    server
        .join()
        .map_err(|_| "the server thread panicked".to_owned())??;
    println!("{}: {requests} requests, {failures} failed", variant.name());
    let mut out = std::io::stdout().lock();
    let _ = out.flush();
    Ok(())
}

#[inline(never)]
fn profiled_server(
    variant: Variant,
    addr_tx: std::sync::mpsc::Sender<Result<SocketAddr, String>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let dir = tempdir()?;
    let addr_file = dir.join(format!("{}.addr", variant.key()));
    let result = rt.block_on(async {
        let file = addr_file.clone();
        let serving = tokio::spawn(async move {
            serve_variant(variant, Some(&file), async {
                let _ = stop.await;
            })
            .await
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                let _ = addr_tx.send(text.trim().parse().map_err(|e| format!("{e}")));
                break;
            }
            if Instant::now() > deadline || serving.is_finished() {
                let _ = addr_tx.send(Err("the server did not start".to_owned()));
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        serving.await.map_err(|e| e.to_string())?
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The stack a team assembles by hand from tower-http and
/// tracing-opentelemetry, with the platform's features.
mod diy {
    use std::time::Instant;

    use axum::extract::{MatchedPath, Request};
    use axum::middleware::Next;
    use axum::response::Response;
    use opentelemetry::propagation::Extractor;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tower::ServiceBuilder;
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    use tower_http::trace::TraceLayer;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::KeyValue;

    /// JSON logs at INFO, spans to OpenTelemetry (every trace sampled, as the
    /// platform's default), W3C propagation, metrics to a meter provider
    /// with a pull reader (as when Prometheus scrapes).
    pub(super) fn install_telemetry() {
        let provider = SdkTracerProvider::builder().build();
        let tracer = provider.tracer("diy");
        opentelemetry::global::set_tracer_provider(provider);
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let meters = SdkMeterProvider::builder()
            .with_reader(ManualReader::builder().build())
            .build();
        opentelemetry::global::set_meter_provider(meters);
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stdout)
                    .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
            )
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
            );
        let _ = tracing::subscriber::set_global_default(subscriber);
    }

    struct Headers<'a>(&'a http::HeaderMap);

    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }

        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(http::HeaderName::as_str).collect()
        }
    }

    fn make_span(request: &Request) -> tracing::Span {
        let method = request.method().as_str();
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let span = tracing::info_span!(
            "http.server.request",
            otel.name = %format!("{method} {}", route.unwrap_or("")),
            otel.kind = "server",
            http.request.method = %method,
            url.path = %request.uri().path(),
            http.route = route,
            http.response.status_code = tracing::field::Empty,
            request_id = ?request.headers().get("x-request-id"),
        );
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&Headers(request.headers()))
        });
        let _ = span.set_parent(parent);
        span
    }

    /// The duration metric with its semantic-convention attributes.
    async fn record_duration(request: Request, next: Next) -> Response {
        use std::sync::OnceLock;
        static DURATION: OnceLock<opentelemetry::metrics::Histogram<f64>> = OnceLock::new();
        let histogram = DURATION.get_or_init(|| {
            opentelemetry::global::meter("diy")
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .build()
        });
        let started = Instant::now();
        let method = request.method().to_string();
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned());
        let response = next.run(request).await;
        let mut attributes = vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new(
                "http.response.status_code",
                i64::from(response.status().as_u16()),
            ),
        ];
        if let Some(route) = route {
            attributes.push(KeyValue::new("http.route", route));
        }
        histogram.record(started.elapsed().as_secs_f64(), &attributes);
        response
    }

    pub(super) fn layered(router: axum::Router) -> axum::Router {
        router
            .route_layer(axum::middleware::from_fn(record_duration))
            .layer(
                ServiceBuilder::new()
                    .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                    .layer(
                        TraceLayer::new_for_http()
                            .make_span_with(make_span)
                            .on_response(
                                |response: &http::Response<_>,
                                 _: std::time::Duration,
                                 span: &tracing::Span| {
                                    span.record(
                                        "http.response.status_code",
                                        response.status().as_u16(),
                                    );
                                },
                            ),
                    )
                    .layer(PropagateRequestIdLayer::x_request_id())
                    .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        std::time::Duration::from_secs(30),
                    ))
                    .layer(axum::extract::DefaultBodyLimit::max(2 * 1024 * 1024))
                    .layer(tower_http::catch_panic::CatchPanicLayer::new()),
            )
    }
}
