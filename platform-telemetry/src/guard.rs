//! The guard that flushes and shuts telemetry down at exit.
//!
//! Why a thread: the SDK's `shutdown` blocks the calling thread until the batch
//! thread has exported. Called on a tokio worker (worse, on the only thread of a
//! `current_thread` runtime) it stalls the runtime, and a gRPC exporter driven
//! by that runtime can then never finish: the "no span arrives, shutdown times
//! out" failure. Here the gRPC exporter runs on a private runtime, and shutdown
//! always happens on a plain thread; the async [`TelemetryGuard::shutdown`]
//! awaits that thread without blocking the runtime, and `Drop` waits for it for
//! at most the configured time.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::error::TelemetryError;
use crate::logging::writer::WriterHandle;

/// Slack on top of the shutdown timeout for threads to hand back their answer.
const HANDOFF: Duration = Duration::from_millis(500);

/// Keeps telemetry running; flushes and shuts it down when shut down or dropped.
///
/// Keep it alive for the life of the service (`let _telemetry = init(..)?;` in
/// `main`, not `let _ = ...`, which drops it at once). Prefer
/// `guard.shutdown().await` at the end of `main`; dropping it does the same,
/// blocking the dropping thread for at most `telemetry.shutdown_timeout`.
#[must_use = "dropping the guard shuts telemetry down"]
pub struct TelemetryGuard {
    parts: Option<Parts>,
    timeout: Duration,
    #[cfg(feature = "prometheus")]
    prometheus: Option<crate::PrometheusHandle>,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("active", &self.parts.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Everything that must be flushed and stopped, in that order.
pub(crate) struct Parts {
    pub(crate) tracer_provider: Option<SdkTracerProvider>,
    pub(crate) meter_provider: Option<SdkMeterProvider>,
    pub(crate) log_writer: Option<WriterHandle>,
    /// Drives the gRPC exporters' connections; dropped last, off any runtime.
    pub(crate) export_runtime: Option<ExportRuntime>,
    /// Observable self-metric instruments; their callbacks live as long as these.
    pub(crate) instruments: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl Parts {
    fn shutdown_blocking(self, timeout: Duration) -> Result<(), TelemetryError> {
        let deadline = Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let mut problems = Vec::new();
        if let Some(provider) = self.tracer_provider
            && let Err(e) = provider.shutdown_with_timeout(left())
        {
            problems.push(format!("traces: {e}"));
        }
        if let Some(provider) = self.meter_provider
            && let Err(e) = provider.shutdown_with_timeout(left())
        {
            problems.push(format!("metrics: {e}"));
        }
        drop(self.instruments);
        for problem in &problems {
            tracing::warn!(target: "platform_telemetry", problem = %problem, "telemetry shutdown incomplete");
        }
        // Logs last, so the providers' final words are written.
        if let Some(writer) = self.log_writer
            && !writer.close(left().max(Duration::from_millis(100)))
        {
            problems.push("logs: the writer did not drain in time".to_owned());
        }
        if let Some(mut rt) = self.export_runtime
            && let Some(rt) = rt.0.take()
        {
            rt.shutdown_timeout(left().min(Duration::from_secs(1)));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TelemetryError::Shutdown(problems.join("; ")))
        }
    }
}

/// The private runtime that drives the gRPC exporters' connections.
///
/// Dropping a tokio runtime from async code panics; an init that fails half-way
/// (inside the service's runtime) drops this one, so dropping never blocks.
#[derive(Debug)]
pub(crate) struct ExportRuntime(pub(crate) Option<tokio::runtime::Runtime>);

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs the shutdown on its own thread and waits for it at most `timeout` (+ hand-off).
fn shutdown_bounded(parts: Parts, timeout: Duration) -> Result<(), TelemetryError> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("telemetry-shutdown".into())
        .spawn(move || {
            let _ = tx.send(parts.shutdown_blocking(timeout));
        })
        .map_err(|source| TelemetryError::Io {
            what: "the telemetry shutdown thread",
            source,
        })?;
    rx.recv_timeout(timeout + HANDOFF)
        .unwrap_or(Err(TelemetryError::ShutdownTimedOut(timeout)))
}

impl TelemetryGuard {
    pub(crate) fn new(parts: Parts, timeout: Duration) -> Self {
        TelemetryGuard {
            parts: Some(parts),
            timeout,
            #[cfg(feature = "prometheus")]
            prometheus: None,
        }
    }

    #[cfg(feature = "prometheus")]
    pub(crate) fn with_prometheus(mut self, handle: Option<crate::PrometheusHandle>) -> Self {
        self.prometheus = handle;
        self
    }

    /// The Prometheus exposition, for the admin server's `/metrics`; `None` when
    /// metrics or the exposition are switched off.
    #[cfg(feature = "prometheus")]
    pub fn prometheus(&self) -> Option<crate::PrometheusHandle> {
        self.prometheus.clone()
    }

    /// The meter provider these settings built (`None` with metrics off):
    /// the platform's own instruments are created from it, not from the
    /// process's global provider.
    pub fn meter_provider(&self) -> Option<opentelemetry_sdk::metrics::SdkMeterProvider> {
        self.parts.as_ref()?.meter_provider.clone()
    }

    /// Flushes every pending span, metric and log line and shuts the exporters
    /// down, within `telemetry.shutdown_timeout`. Works on multi-thread and
    /// current-thread runtimes: the blocking part runs on its own thread.
    pub async fn shutdown(mut self) -> Result<(), TelemetryError> {
        let Some(parts) = self.parts.take() else {
            return Ok(());
        };
        let timeout = self.timeout;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("telemetry-shutdown-wait".into())
            .spawn(move || {
                let _ = tx.send(shutdown_bounded(parts, timeout));
            })
            .map_err(|source| TelemetryError::Io {
                what: "the telemetry shutdown thread",
                source,
            })?;
        rx.await
            .unwrap_or(Err(TelemetryError::ShutdownTimedOut(timeout)))
    }

    /// The blocking form of [`shutdown`](Self::shutdown), for code outside any
    /// async runtime.
    pub fn shutdown_blocking(mut self) -> Result<(), TelemetryError> {
        match self.parts.take() {
            Some(parts) => shutdown_bounded(parts, self.timeout),
            None => Ok(()),
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(parts) = self.parts.take()
            && let Err(e) = shutdown_bounded(parts, self.timeout)
        {
            // The log writer may be gone; stderr is the last resort.
            eprintln!("platform-telemetry: {e}");
        }
    }
}
