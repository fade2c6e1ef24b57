//! `overhead`: what the platform client costs over raw reqwest, side by
//! side with the reqwest-middleware + reqwest-retry + reqwest-tracing stack.
//!
//! One request in flight at a time (so latency is the client's and the
//! server's work, not queueing), against one loopback server on its own
//! thread. The clients run on a current-thread runtime on this thread, so
//! the thread's CPU time is the client's CPU time. Variants take turns in
//! short rounds, so drifting machine load hits them alike.
//!
//! Every variant runs under the same tracing pipeline a service has
//! (registry + the platform's tracing-opentelemetry layer at INFO, W3C
//! propagator): with a sampler that keeps nothing ("sampling off"), and
//! once more for the platform client with every span kept and handed to a
//! no-op exporter through a batch processor, as a service exports
//! ("sampling on").
//!
//! A meter provider with a reader that never exports (as a service scraped
//! by Prometheus has between scrapes) is installed before the clients are
//! built, so the client's metrics cost what they cost in a service.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use platform_benches::load::{Mode, TargetServer};
use platform_benches::noop::NoopExporter;
use platform_benches::turns::{self, Row};
use platform_core::telemetry::sampling::{self, SamplerChoice};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;

use crate::Budget;

/// The trace pipeline of a service (the layer `platform_telemetry::init`
/// installs) over a provider with `sampler` and a no-op exporter behind a
/// batch processor, as a service exports (a span's end queues it; the
/// exporter runs on the processor's own thread).
pub(crate) fn dispatch(sampler: SamplerChoice) -> (tracing::Dispatch, SdkTracerProvider) {
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler.to_sdk())
        .with_batch_exporter(NoopExporter)
        .build();
    let layer = sampling::trace_layer(provider.tracer("overhead"), EnvFilter::new("info"), sampler);
    let subscriber = tracing_subscriber::registry().with(layer);
    (tracing::Dispatch::new(subscriber), provider)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Raw,
    Platform,
    Middleware,
    PlatformSampled,
    /// The defaults as shipped: hedging off.
    PlatformNoHedge,
    /// No tracing subscriber at all: what the client costs without its span.
    PlatformUntraced,
}

const VARIANTS: [Variant; 6] = [
    Variant::Raw,
    Variant::Platform,
    Variant::Middleware,
    Variant::PlatformSampled,
    Variant::PlatformNoHedge,
    Variant::PlatformUntraced,
];

impl Variant {
    /// The variant's name on the command line.
    fn key(self) -> &'static str {
        match self {
            Variant::Raw => "raw",
            Variant::Platform => "platform",
            Variant::Middleware => "middleware",
            Variant::PlatformSampled => "sampled",
            Variant::PlatformNoHedge => "no-hedge",
            Variant::PlatformUntraced => "untraced",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Variant::Raw => "raw reqwest",
            Variant::Platform => "platform client",
            Variant::Middleware => "reqwest-middleware stack",
            Variant::PlatformSampled => "platform, sampling on",
            Variant::PlatformNoHedge => "platform, hedging off",
            Variant::PlatformUntraced => "platform, no subscriber",
        }
    }
}

struct Clients {
    url: String,
    raw: reqwest::Client,
    platform: platform_http::Client,
    platform_no_hedge: platform_http::Client,
    middleware: reqwest_middleware::ClientWithMiddleware,
}

impl Clients {
    async fn call(&self, variant: Variant) -> bool {
        match variant {
            Variant::Raw => match self.raw.get(&self.url).send().await {
                Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                Err(_) => false,
            },
            Variant::Middleware => match self.middleware.get(&self.url).send().await {
                Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                Err(_) => false,
            },
            Variant::Platform | Variant::PlatformSampled | Variant::PlatformUntraced => {
                matches!(self.platform.get("/").send().await, Ok(r) if r.status() == 200)
            }
            Variant::PlatformNoHedge => {
                matches!(self.platform_no_hedge.get("/").send().await, Ok(r) if r.status() == 200)
            }
        }
    }
}

/// Everything the variants share: the server, the clients, the tracing
/// pipelines and the runtime they run on.
struct Bench {
    // Held for as long as the clients call it.
    _server: TargetServer,
    meters: SdkMeterProvider,
    off: tracing::Dispatch,
    off_provider: SdkTracerProvider,
    on: tracing::Dispatch,
    on_provider: SdkTracerProvider,
    none: tracing::Dispatch,
    rt: tokio::runtime::Runtime,
    clients: Clients,
}

impl Bench {
    fn start() -> Result<Self, String> {
        let server = TargetServer::start(Mode::Healthy).map_err(|e| e.to_string())?;
        // Instruments are taken when a client is built: install first.
        let meters = SdkMeterProvider::builder()
            .with_reader(ManualReader::builder().build())
            .build();
        opentelemetry::global::set_meter_provider(meters.clone());
        // As a service's runtime installs it (the samplers here are not
        // parent-based).
        platform_core::telemetry::install_propagators(
            &[platform_core::telemetry::Propagator::TraceContext],
            false,
        );
        let (off, off_provider) = dispatch(SamplerChoice::AlwaysOff);
        let (on, on_provider) = dispatch(SamplerChoice::AlwaysOn);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;

        let mut settings = platform_http::ClientSettings {
            base_url: server.url(),
            ..Default::default()
        };
        // Every feature on: retries, budget, breaker, ejection (on by default)
        // and hedging (off by default).
        let no_hedge = settings.clone();
        settings.hedge.enabled = true;
        let clients = rt.block_on(async {
            let retry =
                reqwest_retry::policies::ExponentialBackoff::builder().build_with_max_retries(2);
            Ok::<_, String>(Clients {
                url: format!("{}/", server.url()),
                raw: reqwest::Client::builder()
                    .build()
                    .map_err(|e| e.to_string())?,
                platform: platform_http::Client::from_settings("overhead", &settings)
                    .map_err(|e| e.to_string())?,
                platform_no_hedge: platform_http::Client::from_settings(
                    "overhead-no-hedge",
                    &no_hedge,
                )
                .map_err(|e| e.to_string())?,
                middleware: reqwest_middleware::ClientBuilder::new(
                    reqwest::Client::builder()
                        .build()
                        .map_err(|e| e.to_string())?,
                )
                .with(reqwest_tracing::TracingMiddleware::default())
                .with(reqwest_retry::RetryTransientMiddleware::new_with_policy(
                    retry,
                ))
                .build(),
            })
        })?;
        Ok(Bench {
            _server: server,
            meters,
            off,
            off_provider,
            on,
            on_provider,
            none: tracing::Dispatch::none(),
            rt,
            clients,
        })
    }

    fn dispatch(&self, variant: Variant) -> &tracing::Dispatch {
        match variant {
            Variant::PlatformSampled => &self.on,
            Variant::PlatformUntraced => &self.none,
            _ => &self.off,
        }
    }

    fn shutdown(&self) {
        let _ = self.off_provider.shutdown();
        let _ = self.on_provider.shutdown();
        let _ = self.meters.shutdown();
    }
}

/// `scenarios profile-overhead <variant> [requests]`: only `requests`
/// calls of one variant (after as many to warm up), inside
/// `profiled_calls`, for `valgrind --tool=callgrind
/// --collect-atstart=no --toggle-collect='*profiled_calls*'`: instruction
/// counts per request, repeatable on a noisy machine.
pub(crate) fn profile(args: &[String]) -> Result<(), String> {
    let names = VARIANTS.map(Variant::key).join(", ");
    let variant = args
        .first()
        .and_then(|name| VARIANTS.into_iter().find(|v| v.key() == name))
        .ok_or_else(|| format!("name a variant: {names}"))?;
    let requests: u64 = match args.get(1) {
        Some(n) => n
            .parse()
            .map_err(|_| format!("requests must be a whole number, got {n:?}"))?,
        None => 10_000,
    };
    let bench = Bench::start()?;
    let failures = tracing::dispatcher::with_default(bench.dispatch(variant), || {
        bench.rt.block_on(async {
            profiled_calls(&bench.clients, variant, requests).await;
            profiled_calls(&bench.clients, variant, requests).await
        })
    });
    bench.shutdown();
    println!("{}: {requests} requests, {failures} failed", variant.name());
    Ok(())
}

#[inline(never)]
async fn profiled_calls(clients: &Clients, variant: Variant, requests: u64) -> u64 {
    let mut failures = 0;
    for _ in 0..requests {
        if !clients.call(variant).await {
            failures += 1;
        }
    }
    failures
}

pub(crate) fn run(budget: Budget) -> Result<serde_json::Value, String> {
    let bench = Bench::start()?;
    let Bench {
        ref rt,
        ref clients,
        ..
    } = bench;
    let slice = (budget.load / 5).max(Duration::from_millis(200));
    let mut tallies = turns::measure(
        rt,
        VARIANTS.len(),
        slice,
        budget.repeats,
        |i| bench.dispatch(VARIANTS[i]),
        |i| clients.call(VARIANTS[i]),
    );
    bench.shutdown();

    let rows: Vec<Row> = VARIANTS
        .iter()
        .zip(tallies.iter_mut())
        .map(|(v, t)| Row::of(v.name(), t))
        .collect();
    let raw = &rows[0];
    turns::print_table("client", &rows);
    let (p50_ratio, p99_ratio, cpu_ratio) = rows[1].ratios(raw);
    let (middleware_p50_ratio, middleware_p99_ratio, middleware_cpu_ratio) = rows[2].ratios(raw);
    let (sampling_p50_ratio, _, sampling_cpu_ratio) = rows[3].ratios(&rows[1]);
    turns::check("p50 ratio", p50_ratio, 1.05);
    turns::check("p99 ratio", p99_ratio, 1.10);
    turns::check("cpu ratio", cpu_ratio, 1.15);
    turns::check("sampling on / off p50", sampling_p50_ratio, 1.03);
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "  below the middleware stack: p50 {} cpu {}",
        met(p50_ratio < middleware_p50_ratio),
        met(cpu_ratio < middleware_cpu_ratio),
    );
    turns::write_charts("overhead", &rows).map_err(|e| e.to_string())?;

    Ok(serde_json::json!({
        "p50_ratio": p50_ratio,
        "p99_ratio": p99_ratio,
        "cpu_ratio": cpu_ratio,
        "middleware_p50_ratio": middleware_p50_ratio,
        "middleware_p99_ratio": middleware_p99_ratio,
        "middleware_cpu_ratio": middleware_cpu_ratio,
        "sampling_p50_ratio": sampling_p50_ratio,
        "sampling_cpu_ratio": sampling_cpu_ratio,
        "raw_p50_us": raw.summary.p50_us,
        "raw_p99_us": raw.summary.p99_us,
        "raw_cpu_us_per_request": raw.cpu_us,
        "platform_p50_us": rows[1].summary.p50_us,
        "platform_p99_us": rows[1].summary.p99_us,
        "platform_cpu_us_per_request": rows[1].cpu_us,
        "requests_per_variant": rows[0].summary.count,
        "failures": rows.iter().map(|r| r.failures).sum::<u64>(),
    }))
}
