//! Logs, traces and metrics for platform services: one [`init`] call, a guard
//! that flushes at exit, OTLP export, a Prometheus exposition, and W3C
//! propagation helpers.
//!
//! ```no_run
//! # async fn run() -> Result<(), platform_telemetry::TelemetryError> {
//! use platform_telemetry::{ServiceInfo, TelemetrySettings};
//! let telemetry = platform_telemetry::init(
//!     &TelemetrySettings::default(),
//!     &ServiceInfo::new("orders", "1.4.2").with_environment("production"),
//! )?;
//! let metrics = telemetry.prometheus(); // serve `metrics.render()` at /metrics
//! tracing::info!(order_id = 42, "order created"); // carries trace_id/span_id inside a span
//! telemetry.shutdown().await
//! # }
//! ```
//!
//! # What a service gets
//! - **Logs** through `tracing`: JSON lines or readable text
//!   (`telemetry.logging.format = "json" | "text" | "auto"`; auto picks text on a
//!   terminal), level and per-target levels from the config or `RUST_LOG`, and
//!   `trace_id` / `span_id` on every line written inside a span. Lines go
//!   through a bounded queue to a writer thread: a slow stdout drops and counts
//!   lines instead of blocking requests.
//! - **Traces** through `tracing` spans (tracing-opentelemetry), exported over
//!   OTLP gRPC or HTTP/protobuf by a bounded batch processor, with a
//!   parent-based ratio sampler. With no endpoint nothing is exported and
//!   nothing fails; trace ids are still made and propagated. The targets of the
//!   SDK's own dependencies (hyper, h2, tonic, tower, reqwest, opentelemetry)
//!   never become spans, so telemetry never traces itself.
//! - **Metrics** through the `opentelemetry` API (`opentelemetry::global::meter`),
//!   rendered for Prometheus by [`PrometheusHandle`] and optionally pushed over OTLP.
//!   Histograms with unit `s` get the semantic-convention buckets
//!   [`SECONDS_BUCKETS`] (the SDK default suits milliseconds); instruments
//!   without a description get their name as Prometheus HELP, so `promtool`
//!   accepts the exposition.
//! - **Propagation**: W3C `traceparent`/`tracestate` (Trace Context level 2,
//!   repeated headers combined, limits enforced) and `baggage` over
//!   `http::HeaderMap` ([`propagation`]).
//! - **Self-monitoring**: spans and log lines dropped, failed exports and
//!   dropped `traceparent`, `tracestate` and `baggage` headers as metrics
//!   ([`self_metrics`]).
//! - **Resource**: `service.name`, `service.version`, `service.instance.id`,
//!   `deployment.environment.name` (from [`ServiceInfo`]), `host.name`,
//!   `process.pid`, and `k8s.pod.name`, `k8s.pod.uid`, `k8s.namespace.name`,
//!   `k8s.node.name`, `k8s.container.name` from the downward-API variables
//!   `K8S_POD_NAME`/`POD_NAME`, `K8S_POD_UID`/`POD_UID`,
//!   `K8S_NAMESPACE_NAME`/`K8S_POD_NAMESPACE`/`POD_NAMESPACE`,
//!   `K8S_NODE_NAME`/`NODE_NAME`, `K8S_CONTAINER_NAME`/`CONTAINER_NAME`.
//!
//! # Configuration and the standard variables
//! Settings come from the `telemetry` section ([`TelemetrySettings`]). The
//! standard variables rank **above** the config file, because the OpenTelemetry
//! specification makes the environment the way operators configure an SDK
//! (a collector address injected by the platform must win over a value baked
//! into the image). From lowest to highest:
//!
//! | What | Ranking (low → high) |
//! |---|---|
//! | everything | `OTEL_SDK_DISABLED=true` switches traces and metrics off whatever else is set (logs stay on) |
//! | log filter | `logging.level` + `logging.targets` < `RUST_LOG` (replaces both) |
//! | endpoint | `<signal>.otlp.endpoint` < `OTEL_EXPORTER_OTLP_ENDPOINT` < `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `..._METRICS_ENDPOINT` (used as given; the other two get `/v1/<signal>` appended for HTTP) |
//! | protocol | `<signal>.otlp.protocol` < `OTEL_EXPORTER_OTLP_PROTOCOL` < `OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL` (`grpc`, `http/protobuf`) |
//! | timeout | `<signal>.otlp.timeout` < `OTEL_EXPORTER_OTLP_TIMEOUT` < `OTEL_EXPORTER_OTLP_<SIGNAL>_TIMEOUT` (milliseconds) |
//! | headers | `<signal>.otlp.headers` < `OTEL_EXPORTER_OTLP_HEADERS` < `OTEL_EXPORTER_OTLP_<SIGNAL>_HEADERS`, merged per header name; never logged |
//! | sampler | `tracing.sampling_ratio` (parent-based) < `OTEL_TRACES_SAMPLER` (`always_on`, `always_off`, `traceidratio`, `parentbased_*`) with `OTEL_TRACES_SAMPLER_ARG` (which alone also replaces the configured ratio) |
//! | propagators | `tracing.propagators` < `OTEL_PROPAGATORS` (`tracecontext`, `baggage`, `none`) |
//! | resource | detected < [`ServiceInfo`] < `resource_attributes` < `OTEL_RESOURCE_ATTRIBUTES` < `OTEL_SERVICE_NAME` |
//!
//! Setting `OTEL_EXPORTER_OTLP_ENDPOINT` therefore turns on metric push as well
//! as trace export, as the specification says. A malformed variable is ignored
//! with a warning in the log; an invalid config value is an error from [`init`].
//!
//! The section with its defaults (every key optional):
//!
//! ```toml
//! [telemetry]
//! shutdown_timeout = "5s"
//! resource_attributes = {}
//!
//! [telemetry.logging]
//! enabled = true
//! format = "auto"          # json | text | auto (text on a terminal)
//! output = "stdout"        # stdout | stderr
//! level = "info"
//! targets = { opentelemetry = "warn", opentelemetry_sdk = "warn" }  # per-target levels, e.g. sqlx = "warn"
//! queue_capacity = 8192
//!
//! [telemetry.tracing]
//! enabled = true
//! level = "info"           # spans traced, independent of the log level
//! sampling_ratio = 1.0     # parent-based
//! propagators = ["tracecontext", "baggage"]
//! max_queue_size = 2048
//! max_export_batch_size = 512
//! scheduled_delay = "5s"
//! otlp = { endpoint = "", protocol = "http/protobuf", headers = {}, timeout = "10s" }
//!
//! [telemetry.metrics]
//! enabled = true
//! prometheus = true
//! export_interval = "1m"
//! otlp = { endpoint = "", protocol = "http/protobuf", headers = {}, timeout = "10s" }
//! ```
//!
//! # Cargo features
//! - `otlp-grpc` (default): OTLP over gRPC (tonic). The exporter's connections
//!   run on a private one-thread runtime, so export works whatever runtime the
//!   service uses and survives its shutdown.
//! - `otlp-http` (default): OTLP over HTTP/protobuf (blocking reqwest client on
//!   the batch thread).
//! - `prometheus` (default): [`PrometheusHandle`].
//! - `tls`: rustls (aws-lc) with the system roots for `https://` collector
//!   endpoints. Without it an `https://` endpoint is an error from [`init`].
//! - `testing`: [`testing`], to capture spans, logs and metrics in a service's tests.
//!
//! # One OpenTelemetry version
//! [`opentelemetry`], [`opentelemetry_sdk`], [`tracing`] and
//! [`tracing_opentelemetry`] are re-exported; use them from here so a service
//! never links a second copy (which silently splits traces).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod call_span;
mod error;
mod guard;
mod init;
mod logging;
// Without an OTLP feature the export plumbing is compiled but never used.
#[cfg_attr(
    not(any(feature = "otlp-grpc", feature = "otlp-http")),
    allow(dead_code, unused_imports)
)]
mod metrics;
#[cfg(feature = "prometheus")]
mod prometheus;
pub mod propagation;
mod resolve;
pub mod sampling;
pub mod self_metrics;
mod service;
pub mod settings;
#[cfg(feature = "testing")]
pub mod testing;
// Without an OTLP feature the export plumbing is compiled but never used.
#[cfg_attr(
    not(any(feature = "otlp-grpc", feature = "otlp-http")),
    allow(dead_code, unused_imports)
)]
mod traces;

pub use error::TelemetryError;
pub use guard::TelemetryGuard;
pub use init::{SpanExporterHook, init, init_with_exporter, install_propagators};
pub use metrics::SECONDS_BUCKETS;
#[cfg(feature = "prometheus")]
pub use prometheus::PrometheusHandle;
pub use service::ServiceInfo;
pub use settings::{LogFormat, LogOutput, OtlpProtocol, Propagator, TelemetrySettings};

pub use opentelemetry;
pub use opentelemetry_sdk;
pub use tracing;
pub use tracing_opentelemetry;
