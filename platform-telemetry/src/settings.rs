//! The `telemetry` configuration section: logging, tracing and metrics.
//!
//! Every default works as-is: logs on (format chosen by whether the output is a
//! terminal), trace ids generated and propagated, nothing exported until an OTLP
//! endpoint is given, Prometheus exposition on. The standard `OTEL_*` variables
//! and `RUST_LOG` rank above these values (see the crate docs).

use std::collections::BTreeMap;
use std::time::Duration;

use platform_config::Secret;
use serde::{Deserialize, Serialize};

use crate::error::TelemetryError;

/// Settings of the whole telemetry subsystem.
#[platform_config::settings(validate_with = Self::report)]
#[derive(PartialEq)]
pub struct TelemetrySettings {
    /// Log output through `tracing`.
    pub logging: LoggingSettings,
    /// Distributed tracing through OpenTelemetry.
    pub tracing: TracingSettings,
    /// Metrics through OpenTelemetry instruments.
    pub metrics: MetricsSettings,
    /// Extra resource attributes attached to every span and metric
    /// (`OTEL_RESOURCE_ATTRIBUTES` overrides keys given here).
    pub resource_attributes: BTreeMap<String, String>,
    /// Upper bound for flushing and shutting down every exporter at exit.
    #[setting(default = Duration::from_secs(5))]
    pub shutdown_timeout: Duration,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (production, log shippers).
    Json,
    /// Readable text (development).
    Text,
    /// Text when the output is a terminal, JSON otherwise.
    Auto,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogOutput {
    /// Standard output (the twelve-factor convention; what container runtimes collect).
    Stdout,
    /// Standard error.
    Stderr,
}

/// Log output settings.
#[platform_config::settings]
#[derive(PartialEq)]
pub struct LoggingSettings {
    /// Write log lines at all.
    #[setting(default = true)]
    pub enabled: bool,
    /// `json`, `text`, or `auto` (text on a terminal, JSON otherwise).
    #[setting(default = LogFormat::Auto)]
    pub format: LogFormat,
    /// `stdout` or `stderr`.
    #[setting(default = LogOutput::Stdout)]
    pub output: LogOutput,
    /// Default level: `trace`, `debug`, `info`, `warn`, `error` or `off`.
    /// `RUST_LOG`, when set, replaces this and `targets`.
    #[setting(default = "info")]
    pub level: String,
    /// Per-target levels, e.g. `{ "sqlx" = "warn", "orders::db" = "debug" }`.
    // The SDK announces itself at INFO on every start; keep its warnings.
    #[setting(default = BTreeMap::from([
        ("opentelemetry".to_owned(), "warn".to_owned()),
        ("opentelemetry_sdk".to_owned(), "warn".to_owned()),
    ]))]
    pub targets: BTreeMap<String, String>,
    /// Lines waiting for the writer thread; when full, new lines are dropped and
    /// counted rather than blocking the request path.
    #[setting(default = 8192)]
    pub queue_capacity: usize,
}

/// OTLP wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (collector port 4317).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (collector port 4318).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    pub(crate) fn parse(text: &str) -> Option<OtlpProtocol> {
        match text.trim() {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
            _ => None,
        }
    }
}

/// Where and how one signal is pushed over OTLP.
#[platform_config::settings]
#[derive(PartialEq)]
pub struct OtlpSettings {
    /// Collector base URL, e.g. `http://otel-collector:4317` (gRPC) or
    /// `http://otel-collector:4318` (HTTP; `/v1/traces` or `/v1/metrics` is
    /// appended). Empty: nothing is exported.
    pub endpoint: String,
    /// `grpc` or `http/protobuf`.
    #[setting(default = OtlpProtocol::HttpProtobuf)]
    pub protocol: OtlpProtocol,
    /// Headers sent with every export (e.g. an API key); never printed.
    pub headers: BTreeMap<String, Secret<String>>,
    /// Upper bound for one export call, retries included.
    #[setting(default = Duration::from_secs(10))]
    pub timeout: Duration,
}

/// A context propagation format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Propagator {
    /// W3C `traceparent` / `tracestate`.
    TraceContext,
    /// W3C `baggage`.
    Baggage,
}

/// Tracing settings.
#[platform_config::settings]
#[derive(PartialEq)]
pub struct TracingSettings {
    /// Record spans at all. Off: no spans, no trace ids in logs, nothing
    /// exported; incoming context can still be forwarded explicitly with
    /// `propagation::extract` and `propagation::inject_context`.
    #[setting(default = true)]
    pub enabled: bool,
    /// Lowest level (and per-target directives, as in `RUST_LOG`) of the spans
    /// that become traces. Separate from the log level, so quieter logs never
    /// silence traces: which traces are kept is the sampler's decision.
    #[setting(default = "info")]
    pub level: String,
    /// Share of new traces (those without a sampled parent) that are recorded,
    /// from 0.0 to 1.0. The parent's decision wins when there is one.
    #[setting(default = 1.0)]
    pub sampling_ratio: f64,
    /// Formats read from and written to request headers.
    #[setting(default = vec![Propagator::TraceContext, Propagator::Baggage])]
    pub propagators: Vec<Propagator>,
    /// Spans waiting for export; when full, new spans are dropped and counted.
    #[setting(default = 2048)]
    pub max_queue_size: usize,
    /// Spans sent in one export call.
    #[setting(default = 512)]
    pub max_export_batch_size: usize,
    /// How long a span may wait before its batch is sent.
    #[setting(default = Duration::from_secs(5))]
    pub scheduled_delay: Duration,
    /// OTLP export of spans.
    pub otlp: OtlpSettings,
}

/// Metrics settings.
#[platform_config::settings]
#[derive(PartialEq)]
pub struct MetricsSettings {
    /// Record metrics at all.
    #[setting(default = true)]
    pub enabled: bool,
    /// Keep a Prometheus text exposition for the admin server's `/metrics`.
    #[setting(default = true)]
    pub prometheus: bool,
    /// How often metrics are pushed over OTLP (when an endpoint is set).
    #[setting(default = Duration::from_secs(60))]
    pub export_interval: Duration,
    /// OTLP push of metrics (optional; empty endpoint: no push).
    pub otlp: OtlpSettings,
}

impl TelemetrySettings {
    /// Checks what serde cannot: ranges and sizes that make no sense, log
    /// filters, OTLP endpoints and headers. The first problem, for
    /// [`init`](crate::init); the config loader reports all of them (through
    /// [`platform_config::Validate`]) before `init` is ever reached.
    pub fn validate(&self) -> Result<(), TelemetryError> {
        match self.problems().into_iter().next() {
            None => Ok(()),
            Some(p) => Err(TelemetryError::InvalidSetting {
                key: format!("telemetry.{}", p.key),
                value: p.value,
                reason: p.reason,
            }),
        }
    }

    /// Every rule this section breaks, keys relative to the section.
    fn problems(&self) -> Vec<SettingProblem> {
        let mut problems = Problems::default();
        self.tracing_problems(&mut problems);
        problems.check(
            !self.metrics.export_interval.is_zero(),
            "metrics.export_interval",
            "0s".into(),
            "must be positive",
        );
        for (section, otlp) in [
            ("tracing.otlp", &self.tracing.otlp),
            ("metrics.otlp", &self.metrics.otlp),
        ] {
            otlp.problems(section, &mut problems);
        }
        self.logging_problems(&mut problems);
        problems.check(
            !self.shutdown_timeout.is_zero(),
            "shutdown_timeout",
            "0s".into(),
            "must be positive",
        );
        problems.0
    }

    fn tracing_problems(&self, problems: &mut Problems) {
        let t = &self.tracing;
        problems.check(
            (0.0..=1.0).contains(&t.sampling_ratio),
            "tracing.sampling_ratio",
            t.sampling_ratio.to_string(),
            "must be between 0.0 and 1.0",
        );
        problems.check(
            t.max_queue_size > 0,
            "tracing.max_queue_size",
            "0".into(),
            "must be at least 1",
        );
        problems.check(
            t.max_export_batch_size > 0 && t.max_export_batch_size <= t.max_queue_size,
            "tracing.max_export_batch_size",
            t.max_export_batch_size.to_string(),
            "must be between 1 and max_queue_size",
        );
        problems.check(
            !t.scheduled_delay.is_zero(),
            "tracing.scheduled_delay",
            "0s".into(),
            "must be positive",
        );
        if let Err(reason) = crate::logging::parse_filter(&t.level) {
            problems.check(false, "tracing.level", t.level.clone(), &reason);
        }
    }

    fn logging_problems(&self, problems: &mut Problems) {
        // A bare word is a valid filter directive (a target name), so a typo
        // such as `inf` would silently log nothing: levels are checked here.
        let is_level = |v: &str| {
            v.trim()
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .is_ok()
        };
        let levels = "expected trace, debug, info, warn, error or off";
        problems.check(
            is_level(&self.logging.level),
            "logging.level",
            self.logging.level.clone(),
            levels,
        );
        for (target, level) in &self.logging.targets {
            problems.check(
                is_level(level),
                &format!("logging.targets.{target}"),
                level.clone(),
                levels,
            );
        }
        // Levels fine, yet the directives they make may not parse (a target
        // name with `[` or `=` in it).
        if self.logging.targets.values().all(|l| is_level(l))
            && let Err(reason) =
                crate::logging::parse_filter(&crate::resolve::config_log_filter(self))
        {
            problems.check(
                false,
                "logging.targets",
                format!("{:?}", self.logging.targets.keys().collect::<Vec<_>>()),
                &reason,
            );
        }
        problems.check(
            self.logging.queue_capacity > 0,
            "logging.queue_capacity",
            "0".into(),
            "must be at least 1",
        );
    }
}

impl OtlpSettings {
    /// The rules of one OTLP exporter section (`tracing.otlp`, `metrics.otlp`).
    fn problems(&self, section: &str, problems: &mut Problems) {
        problems.check(
            !self.timeout.is_zero(),
            &format!("{section}.timeout"),
            "0s".into(),
            "must be positive",
        );
        if let Err(reason) = self.check_endpoint() {
            problems.check(
                false,
                &format!("{section}.endpoint"),
                self.endpoint.clone(),
                &reason,
            );
        }
        for (name, value) in &self.headers {
            let reason = if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                Some("not a valid HTTP header name")
            } else if http::HeaderValue::from_str(value.expose()).is_err() {
                Some("not a valid HTTP header value")
            } else {
                None
            };
            if let Some(reason) = reason {
                // The value is a secret: never echoed.
                problems.check(
                    false,
                    &format!("{section}.headers.{name}"),
                    platform_config::REDACTED.to_owned(),
                    reason,
                );
            }
        }
    }
}

/// The broken rules found so far.
#[derive(Default)]
struct Problems(Vec<SettingProblem>);

impl Problems {
    /// Notes `reason` against `key` (holding `value`) unless `ok`.
    fn check(&mut self, ok: bool, key: &str, value: String, reason: &str) {
        if !ok {
            self.0.push(SettingProblem {
                key: key.to_owned(),
                value,
                reason: reason.to_owned(),
            });
        }
    }
}

/// One broken rule of the telemetry section.
struct SettingProblem {
    key: String,
    value: String,
    reason: String,
}

impl TelemetrySettings {
    /// Every problem, for the loader: it validates this section with the rest
    /// of the configuration, so `--check-config`, start-up and reload refuse
    /// the same telemetry settings.
    fn report(&self, v: &mut platform_config::Validation) {
        for p in self.problems() {
            v.error(&p.key, format!("{} (got {})", p.reason, p.value));
        }
    }
}

impl OtlpSettings {
    /// An endpoint the exporter can be built for: empty (no export), or an
    /// `http://` or `https://` URL with a host, over a protocol compiled in.
    fn check_endpoint(&self) -> Result<(), String> {
        let endpoint = self.endpoint.trim();
        if endpoint.is_empty() {
            return Ok(());
        }
        let uri: http::Uri = endpoint.parse().map_err(|e| format!("not a URL: {e}"))?;
        let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
        if !matches!(scheme.as_deref(), Some("http" | "https")) || uri.host().is_none() {
            return Err("expected an http:// or https:// URL with a host".into());
        }
        if scheme.as_deref() == Some("https") && cfg!(not(feature = "tls")) {
            return Err("https needs the cargo feature `tls` of platform-telemetry".into());
        }
        let compiled = match self.protocol {
            OtlpProtocol::Grpc => cfg!(feature = "otlp-grpc"),
            OtlpProtocol::HttpProtobuf => cfg!(feature = "otlp-http"),
        };
        if !compiled {
            return Err(format!(
                "protocol {:?} is not compiled in (cargo features `otlp-grpc`, `otlp-http` of platform-telemetry)",
                self.protocol
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let defaults = TelemetrySettings::default();
        let text = toml::to_string(&defaults).unwrap();
        let back: TelemetrySettings = toml::from_str(&text).unwrap();
        assert_eq!(back, defaults);
        defaults.validate().unwrap();
    }

    #[test]
    fn reads_a_typical_section() {
        let s: TelemetrySettings = toml::from_str(
            r#"
            shutdown_timeout = "3s"
            [logging]
            format = "json"
            level = "debug"
            targets = { "hyper" = "warn" }
            [tracing]
            sampling_ratio = 0.25
            [tracing.otlp]
            endpoint = "http://collector:4317"
            protocol = "grpc"
            headers = { "x-api-key" = "hunter2" }
            "#,
        )
        .unwrap();
        assert_eq!(s.logging.format, LogFormat::Json);
        assert_eq!(s.tracing.otlp.protocol, OtlpProtocol::Grpc);
        assert_eq!(s.tracing.otlp.headers["x-api-key"].expose(), "hunter2");
        assert_eq!(s.shutdown_timeout, Duration::from_secs(3));
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    /// The section printed in the crate docs is exactly the defaults.
    #[test]
    fn the_documented_section_is_the_defaults() {
        let docs = include_str!("lib.rs");
        let start = docs.find("//! ```toml\n").unwrap() + "//! ```toml\n".len();
        let end = start + docs[start..].find("//! ```").unwrap();
        let text: String = docs[start..end]
            .lines()
            .map(|l| l.strip_prefix("//!").unwrap_or(l).trim_start())
            .map(|l| format!("{l}\n"))
            .collect();
        #[derive(serde::Deserialize)]
        struct File {
            telemetry: TelemetrySettings,
        }
        let file: File = toml::from_str(&text).unwrap();
        assert_eq!(file.telemetry, TelemetrySettings::default());
    }

    #[test]
    fn the_schema_documents_every_field() {
        let schema = serde_json::to_value(schemars::schema_for!(TelemetrySettings)).unwrap();
        let text = schema.to_string();
        for doc in [
            "Upper bound for flushing",
            "Share of new traces",
            "Headers sent with every export",
        ] {
            assert!(text.contains(doc), "{doc} missing from the schema");
        }
        // Durations are written as text ("5s"), not as serde's {secs, nanos}.
        assert_eq!(schema["properties"]["shutdown_timeout"]["type"], "string");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = toml::from_str::<TelemetrySettings>("[tracing]\nsample_ratio = 0.5").unwrap_err();
        assert!(e.to_string().contains("sample_ratio"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_to_the_loader_not_only_the_first() {
        let mut s = TelemetrySettings::default();
        s.tracing.sampling_ratio = 1.5;
        s.logging.level = "loud".into();
        s.tracing.level = "info,[".into();
        s.tracing.otlp.endpoint = "collector:4317".into();
        s.metrics
            .otlp
            .headers
            .insert("x-api-key".into(), Secret::new("line\nbreak".to_owned()));
        let mut v = platform_config::Validation::default();
        v.section("telemetry", &s);
        let keys: Vec<&str> = v.errors().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "telemetry.tracing.sampling_ratio",
                "telemetry.tracing.level",
                "telemetry.tracing.otlp.endpoint",
                "telemetry.metrics.otlp.headers.x-api-key",
                "telemetry.logging.level",
            ]
        );
        assert!(
            !format!("{:?}", v.errors()).contains("break"),
            "secret echoed"
        );
        // `init` still refuses, with the first.
        assert!(matches!(
            s.validate(),
            Err(TelemetryError::InvalidSetting { key, .. }) if key == "telemetry.tracing.sampling_ratio"
        ));
    }

    #[test]
    fn impossible_values_are_errors_naming_the_key() {
        let mut s = TelemetrySettings::default();
        s.tracing.sampling_ratio = 1.5;
        let e = s.validate().unwrap_err();
        assert!(
            e.to_string().contains("telemetry.tracing.sampling_ratio"),
            "{e}"
        );

        let mut s = TelemetrySettings::default();
        s.tracing.max_export_batch_size = s.tracing.max_queue_size + 1;
        assert!(matches!(
            s.validate(),
            Err(TelemetryError::InvalidSetting { key, .. }) if key == "telemetry.tracing.max_export_batch_size"
        ));

        let mut s = TelemetrySettings::default();
        s.logging.targets.insert("sqlx".into(), "wrn".into());
        assert!(matches!(
            s.validate(),
            Err(TelemetryError::InvalidSetting { key, .. }) if key == "telemetry.logging.targets.sqlx"
        ));
    }
}
