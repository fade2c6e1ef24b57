//! Errors from initialising and shutting down telemetry.

use std::time::Duration;

/// What went wrong in [`init`](crate::init) or [`TelemetryGuard::shutdown`](crate::TelemetryGuard::shutdown).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// `init` was already called in this process; telemetry is process-global.
    #[error("telemetry is already initialised in this process")]
    AlreadyInitialised,
    /// Another `tracing` subscriber was installed as the global default first.
    #[error("another global tracing subscriber is already installed: {0}")]
    SubscriberAlreadySet(String),
    /// A setting has a value that cannot work.
    #[error("invalid setting {key} = {value}: {reason}")]
    InvalidSetting {
        /// Full key path, e.g. `telemetry.tracing.sampling_ratio`.
        key: String,
        /// The value given.
        value: String,
        /// Why it cannot work.
        reason: String,
    },
    /// A log filter (from the config or `RUST_LOG`) does not parse.
    #[error("invalid log filter in {source_name}: {directive:?}: {reason}")]
    InvalidLogFilter {
        /// `telemetry.logging.level`, `telemetry.logging.targets.<t>` or `RUST_LOG`.
        source_name: String,
        /// The directive as written.
        directive: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The selected OTLP protocol was left out of this build by a cargo feature.
    #[error(
        "OTLP protocol {protocol} for {signal} needs the cargo feature `{feature}` of platform-telemetry"
    )]
    ProtocolNotCompiled {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// `grpc` or `http/protobuf`.
        protocol: &'static str,
        /// The missing feature.
        feature: &'static str,
    },
    /// An OTLP exporter could not be built (bad endpoint URL, TLS, ...).
    #[error("cannot build the OTLP {signal} exporter for {endpoint}: {reason}")]
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// The endpoint it was built for.
        endpoint: String,
        /// The exporter's complaint.
        reason: String,
    },
    /// The Prometheus exposition could not be set up.
    #[error("cannot set up the Prometheus exposition: {0}")]
    Prometheus(String),
    /// An OS resource (a thread, the export runtime) could not be created.
    #[error("cannot start {what}: {source}")]
    Io {
        /// What was being started.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Flushing and shutting down did not finish within the configured time;
    /// spans or metrics may have been lost.
    #[error("telemetry shutdown did not finish within {0:?}")]
    ShutdownTimedOut(Duration),
    /// A provider reported an error while shutting down.
    #[error("telemetry shutdown failed: {0}")]
    Shutdown(String),
}
