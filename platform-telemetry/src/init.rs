//! `init`: builds the pipelines from the plan and installs them process-wide.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter};
use tracing_log::AsLog as _;
use tracing_subscriber::layer::Identity;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::error::TelemetryError;
use crate::guard::{ExportRuntime, Parts, TelemetryGuard};
use crate::logging::writer::WriterHandle;
use crate::logging::{self, LogLayer};
use crate::resolve::{EnvSnapshot, ExportTarget, Plan};
use crate::service::ServiceInfo;
use crate::settings::{
    LogOutput, LoggingSettings, OtlpProtocol, Propagator, TelemetrySettings, TracingSettings,
};
use crate::traces::BoundedProcessor;
use crate::{metrics, propagation, self_metrics, traces};

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// The instrumentation scope of the SDK's own tracer and meter.
pub(crate) const SCOPE: &str = "platform-telemetry";

/// Sets up logs, traces, metrics and propagation for this process and returns
/// the guard that flushes them at exit.
///
/// Call it once, early in `main`, inside the tokio runtime or outside any
/// runtime. A second call returns [`TelemetryError::AlreadyInitialised`]; a
/// `tracing` subscriber installed by someone else first gives
/// [`TelemetryError::SubscriberAlreadySet`]. Invalid settings and log filters
/// are errors; malformed `OTEL_*` variables are ignored with a warning in the
/// log (the service still starts).
///
/// ```no_run
/// # async fn run() -> Result<(), platform_telemetry::TelemetryError> {
/// use platform_telemetry::{ServiceInfo, TelemetrySettings};
/// let settings = TelemetrySettings::default(); // normally the `telemetry` config section
/// let service = ServiceInfo::new("orders", env!("CARGO_PKG_VERSION")).with_environment("production");
/// let telemetry = platform_telemetry::init(&settings, &service)?;
/// tracing::info!("started");
/// // ... serve ...
/// telemetry.shutdown().await
/// # }
/// ```
pub fn init(
    settings: &TelemetrySettings,
    service: &ServiceInfo,
) -> Result<TelemetryGuard, TelemetryError> {
    init_with(settings, service, None)
}

/// A span exporter of the service's own (a vendor's, or a file for a test
/// rig), fed by the same bounded batch processor as OTLP export, with the
/// same queue limits and drop accounting. It runs beside the OTLP exporter
/// when one is configured, and takes sampled spans when none is.
pub struct SpanExporterHook(Box<dyn FnOnce(&TracingSettings) -> BoundedProcessor + Send>);

impl SpanExporterHook {
    /// Wraps `exporter`.
    pub fn new<E: SpanExporter + 'static>(exporter: E) -> Self {
        SpanExporterHook(Box::new(move |settings| {
            BoundedProcessor::new(exporter, settings)
        }))
    }
}

impl std::fmt::Debug for SpanExporterHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpanExporterHook")
    }
}

/// [`init`], with a span exporter of the service's own beside OTLP.
pub fn init_with_exporter(
    settings: &TelemetrySettings,
    service: &ServiceInfo,
    exporter: SpanExporterHook,
) -> Result<TelemetryGuard, TelemetryError> {
    init_with(settings, service, Some(exporter))
}

fn init_with(
    settings: &TelemetrySettings,
    service: &ServiceInfo,
    exporter: Option<SpanExporterHook>,
) -> Result<TelemetryGuard, TelemetryError> {
    settings.validate()?;
    if INITIALISED
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(TelemetryError::AlreadyInitialised);
    }
    let plan = crate::resolve::plan(settings, service, &EnvSnapshot::from_process());
    let result = install(settings, plan, exporter);
    if result.is_err() {
        // Nothing global was installed: a corrected retry may succeed.
        INITIALISED.store(false, Ordering::Release);
    }
    result
}

fn install(
    settings: &TelemetrySettings,
    plan: Plan,
    exporter: Option<SpanExporterHook>,
) -> Result<TelemetryGuard, TelemetryError> {
    // Parse filters first: a typo fails before any thread is started.
    let log_filter = logging::env_filter(&plan.log_filter, &plan.log_filter_source)?;
    let span_filter = logging::env_filter(&settings.tracing.level, "telemetry.tracing.level")?;

    let signals = Signals::of(settings, &plan);
    let export_runtime = start_export_runtime(&signals)?;
    let exported = signals.trace_target.is_some() || exporter.is_some();
    let providers = {
        // gRPC exporters spawn their connection tasks on the runtime current at build time.
        let _entered = export_runtime
            .as_ref()
            .and_then(|rt| rt.0.as_ref())
            .map(|rt| rt.enter());
        Providers::build(settings, &plan, &signals, exporter)?
    };

    let (log_layer, log_writer) = log_layer(&settings.logging, log_filter)?;
    let otel_layer = providers.tracer.as_ref().map(|provider| {
        crate::sampling::trace_layer_for(
            provider.tracer(SCOPE),
            span_filter,
            plan.sampler.clone(),
            exported,
        )
    });

    let mut parts = Parts {
        tracer_provider: providers.tracer.clone(),
        meter_provider: providers.meter.clone(),
        log_writer,
        export_runtime,
        instruments: Vec::new(),
    };
    let subscriber = tracing_subscriber::registry()
        .with(log_layer)
        .with(otel_layer);
    if let Err(e) = tracing::subscriber::set_global_default(subscriber) {
        // Stop what was started, off this thread (it may be a runtime worker).
        let _ = TelemetryGuard::new(parts, settings.shutdown_timeout).shutdown_blocking();
        return Err(TelemetryError::SubscriberAlreadySet(e.to_string()));
    }
    // Records from crates that use `log` join the same pipeline. Another `log`
    // logger installed first is not fatal: the subscriber is up, so say so there.
    let log_bridge = tracing_log::LogTracer::builder()
        .with_max_level(tracing::level_filters::LevelFilter::current().as_log())
        .init();

    parts.instruments = set_globals(&providers, &plan);
    log_outcome(&plan, &signals, log_bridge);

    let guard = TelemetryGuard::new(parts, settings.shutdown_timeout);
    #[cfg(feature = "prometheus")]
    let guard = guard.with_prometheus(providers.prometheus);
    Ok(guard)
}

/// Which signals are on, and the OTLP collector each is exported to.
struct Signals<'p> {
    traces_on: bool,
    metrics_on: bool,
    trace_target: Option<&'p ExportTarget>,
    metric_target: Option<&'p ExportTarget>,
}

impl<'p> Signals<'p> {
    fn of(settings: &TelemetrySettings, plan: &'p Plan) -> Self {
        let sdk_on = !plan.sdk_disabled;
        let traces_on = sdk_on && settings.tracing.enabled;
        let metrics_on = sdk_on && settings.metrics.enabled;
        Signals {
            traces_on,
            metrics_on,
            trace_target: plan.traces.as_ref().filter(|_| traces_on),
            metric_target: plan.metrics.as_ref().filter(|_| metrics_on),
        }
    }
}

/// The private runtime of the gRPC exporters, when a signal is exported over gRPC.
fn start_export_runtime(signals: &Signals<'_>) -> Result<Option<ExportRuntime>, TelemetryError> {
    let needs_runtime = [signals.trace_target, signals.metric_target]
        .iter()
        .flatten()
        .any(|t| t.protocol == OtlpProtocol::Grpc);
    if !needs_runtime {
        return Ok(None);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("telemetry-export")
        .enable_all()
        .build()
        .map_err(|source| TelemetryError::Io {
            what: "the telemetry export runtime",
            source,
        })?;
    Ok(Some(ExportRuntime(Some(runtime))))
}

/// The SDK providers of the signals that are on.
#[derive(Default)]
struct Providers {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
    #[cfg(feature = "prometheus")]
    prometheus: Option<crate::PrometheusHandle>,
}

impl Providers {
    fn build(
        settings: &TelemetrySettings,
        plan: &Plan,
        signals: &Signals<'_>,
        exporter: Option<SpanExporterHook>,
    ) -> Result<Self, TelemetryError> {
        let resource = Resource::builder_empty()
            .with_detector(Box::new(TelemetryResourceDetector))
            .with_attributes(plan.resource.clone())
            .build();
        let mut providers = Providers::default();
        if signals.traces_on {
            providers.tracer = Some(tracer_provider(
                settings,
                plan,
                resource.clone(),
                signals.trace_target,
                exporter,
            )?);
        }
        if signals.metrics_on {
            let mut builder = SdkMeterProvider::builder()
                .with_resource(resource)
                .with_view(metrics::seconds_histogram_view);
            #[cfg(feature = "prometheus")]
            if settings.metrics.prometheus {
                let (reader, handle) = crate::prometheus::reader()?;
                builder = builder.with_reader(reader);
                providers.prometheus = Some(handle);
            }
            if let Some(target) = signals.metric_target {
                builder =
                    metrics::with_otlp_reader(builder, target, settings.metrics.export_interval)?;
            }
            providers.meter = Some(builder.build());
        }
        Ok(providers)
    }
}

fn tracer_provider(
    settings: &TelemetrySettings,
    plan: &Plan,
    resource: Resource,
    target: Option<&ExportTarget>,
    exporter: Option<SpanExporterHook>,
) -> Result<SdkTracerProvider, TelemetryError> {
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(plan.sampler.to_sdk())
        .with_resource(resource);
    if let Some(target) = target {
        builder =
            builder.with_span_processor(traces::otlp_span_processor(target, &settings.tracing)?);
    }
    if let Some(SpanExporterHook(processor)) = exporter {
        builder = builder.with_span_processor(processor(&settings.tracing));
    }
    Ok(builder.build())
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The log layer and its writer thread, or a layer that does nothing when
/// logging is off.
fn log_layer(
    settings: &LoggingSettings,
    filter: EnvFilter,
) -> Result<(BoxedLayer, Option<WriterHandle>), TelemetryError> {
    if !settings.enabled {
        // Boxed rather than an `Option`: `Option<Layer>` does not forward
        // `on_register_dispatch`, which the log layer needs to find trace ids.
        return Ok((Identity::new().boxed(), None));
    }
    let out: Box<dyn std::io::Write + Send> = match settings.output {
        LogOutput::Stdout => Box::new(std::io::stdout()),
        LogOutput::Stderr => Box::new(std::io::stderr()),
    };
    let (writer, handle) =
        logging::writer::spawn(settings.queue_capacity, out).map_err(|source| {
            TelemetryError::Io {
                what: "the log writer thread",
                source,
            }
        })?;
    let format = logging::line_format(settings.format, settings.output);
    let layer = LogLayer::new(format, writer).with_filter(filter).boxed();
    Ok((layer, Some(handle)))
}

/// Makes the providers and the propagators the process's own, and registers
/// the self-monitoring counters; returns their instruments, to keep alive.
fn set_globals(providers: &Providers, plan: &Plan) -> Vec<Box<dyn std::any::Any + Send + Sync>> {
    let mut instruments = Vec::new();
    if let Some(provider) = &providers.tracer {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    if let Some(provider) = &providers.meter {
        opentelemetry::global::set_meter_provider(provider.clone());
        use opentelemetry::metrics::MeterProvider as _;
        instruments = self_metrics::register(&provider.meter(SCOPE));
    }
    install_propagators(
        &plan.propagators,
        matches!(plan.sampler, crate::sampling::SamplerChoice::ParentBased(_)),
    );
    instruments
}

/// Logs what could not be logged before the subscriber was up, then what was set up.
fn log_outcome(
    plan: &Plan,
    signals: &Signals<'_>,
    log_bridge: Result<(), tracing_log::log::SetLoggerError>,
) {
    if let Err(e) = log_bridge {
        tracing::warn!(target: "platform_telemetry", error = %e, "records of the `log` crate are not captured: another logger is installed");
    }
    for warning in &plan.warnings {
        tracing::warn!(target: "platform_telemetry", "{warning}");
    }
    tracing::info!(
        target: "platform_telemetry",
        traces_endpoint = signals.trace_target.map(|t| t.endpoint.as_str()).unwrap_or("none"),
        metrics_endpoint = signals.metric_target.map(|t| t.endpoint.as_str()).unwrap_or("none"),
        sampler = ?plan.sampler,
        sdk_disabled = plan.sdk_disabled,
        "telemetry initialised"
    );
}

/// Installs the `chosen` propagation formats as the global propagator, as
/// [`init`] does, and the direct path [`extract`](crate::propagation::extract)
/// and [`inject_context`](crate::propagation::inject_context) then take on
/// every request (no lock, no dynamic dispatch, no `String` per header). For
/// a process that sets its telemetry up by hand (a test, a benchmark):
/// setting the global propagator alone leaves them on the slower, general
/// path. `parent_based`: whether a sampled remote parent is always sampled
/// here (then the SDK keeps its flags on the spans below it).
pub fn install_propagators(chosen: &[Propagator], parent_based: bool) {
    let propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = chosen
        .iter()
        .map(|p| -> Box<dyn TextMapPropagator + Send + Sync> {
            match p {
                Propagator::TraceContext => Box::new(propagation::TraceContextPropagator::new()),
                Propagator::Baggage => Box::new(propagation::BaggagePropagator::new()),
            }
        })
        .collect();
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(propagators));
    propagation::set_active(
        chosen.contains(&Propagator::TraceContext),
        chosen.contains(&Propagator::Baggage),
        parent_based,
    );
}
