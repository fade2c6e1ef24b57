//! `grpc-overhead`: what the platform's gRPC channel costs over a plain
//! tonic `Channel` to one endpoint, unary calls (`grpc.health.v1.Health/Check`
//! against tonic's own server, on its own thread).
//!
//! Measured as `overhead` measures the HTTP client: one call in flight, the
//! variants in turns on a current-thread runtime on this thread (its CPU
//! time is the client's), every variant under a service's tracing pipeline
//! with sampling off, and the platform channel once more with every span
//! kept and exported to a no-op exporter. The platform channel has every
//! feature on: retries with the budget, breaker, ejection, hedging (the
//! method is marked idempotent), telemetry.

use std::time::Duration;

use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
use platform_benches::turns::{self, Row};
use platform_core::telemetry::sampling::SamplerChoice;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::Budget;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Raw,
    Platform,
    PlatformSampled,
}

const VARIANTS: [Variant; 3] = [Variant::Raw, Variant::Platform, Variant::PlatformSampled];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Raw => "tonic Channel",
            Variant::Platform => "platform Channel",
            Variant::PlatformSampled => "platform, sampling on",
        }
    }
}

/// tonic's server with its health service, on a thread and runtime of its own.
fn start_server() -> Result<(std::net::SocketAddr, tokio::sync::oneshot::Sender<()>), String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let (_reporter, health) = tonic_health::server::health_reporter();
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
    });
    Ok((addr, stop))
}

/// The server, the two channels and the tracing pipelines the variants share.
struct Bench {
    stop: tokio::sync::oneshot::Sender<()>,
    meters: SdkMeterProvider,
    off: tracing::Dispatch,
    off_provider: opentelemetry_sdk::trace::SdkTracerProvider,
    on: tracing::Dispatch,
    on_provider: opentelemetry_sdk::trace::SdkTracerProvider,
    rt: tokio::runtime::Runtime,
    raw: HealthClient<tonic::transport::Channel>,
    platform: HealthClient<platform_grpc::Channel>,
}

impl Bench {
    fn start() -> Result<Bench, String> {
        let (addr, stop) = start_server()?;
        // Instruments are taken when a channel is built: install first.
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
        let (off, off_provider) = crate::overhead::dispatch(SamplerChoice::AlwaysOff);
        let (on, on_provider) = crate::overhead::dispatch(SamplerChoice::AlwaysOn);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let mut settings = platform_grpc::GrpcClientSettings {
            address: addr.to_string(),
            idempotent_methods: vec!["grpc.health.v1.Health/*".into()],
            ..Default::default()
        };
        settings.hedge.enabled = true;
        let (raw, platform) = rt.block_on(async {
            let raw = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| e.to_string())?
                .connect_lazy();
            let platform = platform_grpc::Channel::builder("grpc-overhead", &settings)
                .build()
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((HealthClient::new(raw), HealthClient::new(platform)))
        })?;
        Ok(Bench {
            stop,
            meters,
            off,
            off_provider,
            on,
            on_provider,
            rt,
            raw,
            platform,
        })
    }

    fn dispatch(&self, variant: Variant) -> &tracing::Dispatch {
        match variant {
            Variant::PlatformSampled => &self.on,
            _ => &self.off,
        }
    }

    async fn call(&self, variant: Variant) -> bool {
        let request = HealthCheckRequest {
            service: String::new(),
        };
        match variant {
            Variant::Raw => self.raw.clone().check(request).await.is_ok(),
            Variant::Platform | Variant::PlatformSampled => {
                self.platform.clone().check(request).await.is_ok()
            }
        }
    }

    fn shutdown(self) {
        let _ = self.off_provider.shutdown();
        let _ = self.on_provider.shutdown();
        let _ = self.meters.shutdown();
        let _ = self.stop.send(());
    }
}

/// `scenarios profile-grpc <raw|platform|sampled> [calls]`: only `calls`
/// calls of one variant (after as many to warm up), inside
/// `profiled_grpc_calls`, for `valgrind --tool=callgrind
/// --collect-atstart=no --toggle-collect='*profiled_grpc_calls*'`.
pub(crate) fn profile(args: &[String]) -> Result<(), String> {
    let variant = match args.first().map(String::as_str) {
        Some("raw") => Variant::Raw,
        Some("platform") => Variant::Platform,
        Some("sampled") => Variant::PlatformSampled,
        _ => return Err("name a variant: raw, platform, sampled".into()),
    };
    let calls: u64 = match args.get(1) {
        Some(n) => n
            .parse()
            .map_err(|_| format!("calls must be a whole number, got {n:?}"))?,
        None => 10_000,
    };
    let bench = Bench::start()?;
    let failures = tracing::dispatcher::with_default(bench.dispatch(variant), || {
        bench.rt.block_on(async {
            profiled_grpc_calls(&bench, variant, calls).await;
            profiled_grpc_calls(&bench, variant, calls).await
        })
    });
    bench.shutdown();
    println!("{}: {calls} calls, {failures} failed", variant.name());
    Ok(())
}

#[inline(never)]
async fn profiled_grpc_calls(bench: &Bench, variant: Variant, calls: u64) -> u64 {
    let mut failures = 0;
    for _ in 0..calls {
        if !bench.call(variant).await {
            failures += 1;
        }
    }
    failures
}

pub(crate) fn run(budget: Budget) -> Result<serde_json::Value, String> {
    let bench = Bench::start()?;
    let slice = (budget.load / 5).max(Duration::from_millis(200));
    let mut tallies = turns::measure(
        &bench.rt,
        VARIANTS.len(),
        slice,
        budget.repeats,
        |i| bench.dispatch(VARIANTS[i]),
        |i| bench.call(VARIANTS[i]),
    );
    bench.shutdown();

    let rows: Vec<Row> = VARIANTS
        .iter()
        .zip(tallies.iter_mut())
        .map(|(v, t)| Row::of(v.name(), t))
        .collect();
    turns::print_table("channel", &rows);
    let (p50_ratio, p99_ratio, cpu_ratio) = rows[1].ratios(&rows[0]);
    let (sampled_p50_ratio, sampled_p99_ratio, sampled_cpu_ratio) = rows[2].ratios(&rows[0]);
    turns::check("p50 ratio", p50_ratio, 1.05);
    turns::check("p99 ratio", p99_ratio, 1.10);
    turns::check("cpu ratio", cpu_ratio, 1.15);
    turns::write_charts("grpc-overhead", &rows).map_err(|e| e.to_string())?;
    Ok(serde_json::json!({
        "p50_ratio": p50_ratio,
        "p99_ratio": p99_ratio,
        "cpu_ratio": cpu_ratio,
        "sampled_p50_ratio": sampled_p50_ratio,
        "sampled_p99_ratio": sampled_p99_ratio,
        "sampled_cpu_ratio": sampled_cpu_ratio,
        "failures": rows.iter().map(|r| r.failures).sum::<u64>(),
        "rows": rows.iter().map(|r| serde_json::json!({
            "channel": r.name,
            "p50_us": r.summary.p50_us,
            "p99_us": r.summary.p99_us,
            "cpu_us_per_call": r.cpu_us,
        })).collect::<Vec<_>>(),
    }))
}
