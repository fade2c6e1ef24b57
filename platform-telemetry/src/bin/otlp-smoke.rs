//! `otlp-smoke`: sends test traces through the platform telemetry pipeline to
//! the collector named by the standard `OTEL_*` variables, then shuts down the
//! way a service does, and prints a one-line JSON report on stdout.
//!
//! Use it to check a deployment's collector path, e.g.
//! `OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 otlp-smoke --spans 10`.
//! Each round is a root span `smoke.root` with one child `smoke.child`.
//!
//! Options: `--spans N` (rounds, default 10), `--runtime multi|current`,
//! `--exit shutdown|drop` (async `shutdown().await` or dropping the guard),
//! `--payload BYTES` (size of a string attribute on each root span),
//! `--max-queue N`, `--shutdown-timeout 5s`, `--service NAME`, `--log-format json|text|auto`
//! (logs go to stderr).

use std::process::ExitCode;

use platform_telemetry::{LogFormat, LogOutput, ServiceInfo, TelemetrySettings};

struct Options {
    rounds: u64,
    current_thread: bool,
    drop_guard: bool,
    payload: usize,
    settings: TelemetrySettings,
    service: String,
}

fn parse_args() -> Result<Options, String> {
    let mut settings = TelemetrySettings::default();
    settings.logging.format = LogFormat::Json;
    settings.logging.output = LogOutput::Stderr;
    // Batches are sent at shutdown, not on a timer: delivery at exit is what is checked.
    settings.tracing.scheduled_delay = std::time::Duration::from_secs(60);
    let mut o = Options {
        rounds: 10,
        current_thread: false,
        drop_guard: false,
        payload: 0,
        settings,
        service: "otlp-smoke".to_owned(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--spans" => o.rounds = value()?.parse().map_err(|e| format!("--spans: {e}"))?,
            "--runtime" => {
                o.current_thread = match value()?.as_str() {
                    "current" => true,
                    "multi" => false,
                    other => {
                        return Err(format!("--runtime: expected current or multi, got {other}"));
                    }
                }
            }
            "--exit" => {
                o.drop_guard = match value()?.as_str() {
                    "drop" => true,
                    "shutdown" => false,
                    other => return Err(format!("--exit: expected shutdown or drop, got {other}")),
                }
            }
            "--payload" => o.payload = value()?.parse().map_err(|e| format!("--payload: {e}"))?,
            "--max-queue" => {
                let n: usize = value()?.parse().map_err(|e| format!("--max-queue: {e}"))?;
                o.settings.tracing.max_queue_size = n;
                o.settings.tracing.max_export_batch_size =
                    o.settings.tracing.max_export_batch_size.min(n);
            }
            "--shutdown-timeout" => {
                o.settings.shutdown_timeout = platform_config::duration::parse(&value()?)
                    .map_err(|e| format!("--shutdown-timeout: {e}"))?
            }
            "--service" => o.service = value()?,
            "--log-format" => {
                o.settings.logging.format = match value()?.as_str() {
                    "json" => LogFormat::Json,
                    "text" => LogFormat::Text,
                    "auto" => LogFormat::Auto,
                    other => {
                        return Err(format!(
                            "--log-format: expected json, text or auto, got {other}"
                        ));
                    }
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn run(o: Options) -> Result<serde_json::Value, String> {
    let guard = platform_telemetry::init(
        &o.settings,
        &ServiceInfo::new(o.service.clone(), env!("CARGO_PKG_VERSION")),
    )
    .map_err(|e| e.to_string())?;
    let payload = "x".repeat(o.payload);
    // i64: tracing-opentelemetry records u64 fields as strings.
    for i in 0..o.rounds as i64 {
        let root = tracing::info_span!("smoke.root", smoke.index = i, smoke.payload = %payload);
        let _in = root.enter();
        let child = tracing::info_span!("smoke.child", smoke.index = i);
        child.in_scope(|| {
            tracing::debug!("child work");
            if i == 0 {
                tracing::info!(order_id = 7, "first round");
            }
        });
    }
    tracing::info!(rounds = o.rounds, "smoke spans ended");
    tracing_log::log::info!("from the log crate");
    let shutdown_started = std::time::Instant::now();
    let shutdown = if o.drop_guard {
        drop(guard);
        "dropped".to_owned()
    } else {
        match guard.shutdown().await {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        }
    };
    let shutdown_ms = shutdown_started.elapsed().as_millis() as u64;
    let m = platform_telemetry::self_metrics::self_metrics();
    Ok(serde_json::json!({
        "spans_ended": o.rounds * 2,
        "shutdown": shutdown,
        "shutdown_ms": shutdown_ms,
        "spans_dropped": m.spans_dropped,
        "spans_exported": m.spans_exported,
        "spans_export_failed": m.spans_export_failed,
        "peak_rss_kib": peak_rss_kib(),
    }))
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("otlp-smoke: {e}");
            return ExitCode::from(2);
        }
    };
    let mut builder = if options.current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("otlp-smoke: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("otlp-smoke: {e}");
            ExitCode::FAILURE
        }
    }
}
