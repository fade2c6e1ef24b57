//! How the config section, the service identity and the standard environment
//! variables combine into the plan `init` builds.
//!
//! Everything here is a pure function of a snapshot of the environment, so the
//! precedence rules are unit-tested without touching the process environment.
//! Malformed variables never fail `init`: they are ignored and reported as
//! warnings, logged once the subscriber is up.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use opentelemetry::{KeyValue, Value};

use crate::sampling::SamplerChoice;
use crate::service::ServiceInfo;
use crate::settings::{OtlpProtocol, OtlpSettings, Propagator, TelemetrySettings};

/// The environment variables telemetry looks at, captured once.
#[derive(Debug, Clone, Default)]
pub(crate) struct EnvSnapshot {
    vars: BTreeMap<String, String>,
    /// `host.name`, read from the OS when the snapshot is taken.
    pub(crate) hostname: Option<String>,
}

const WATCHED_PREFIXES: [&str; 4] = ["OTEL_", "K8S_", "POD_", "RUST_LOG"];
const WATCHED_NAMES: [&str; 3] = ["NODE_NAME", "HOSTNAME", "CONTAINER_NAME"];

impl EnvSnapshot {
    pub(crate) fn from_process() -> EnvSnapshot {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| {
                WATCHED_PREFIXES.iter().any(|p| k.starts_with(p))
                    || WATCHED_NAMES.contains(&k.as_str())
            })
            .collect::<BTreeMap<_, _>>();
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .or_else(|| vars.get("HOSTNAME").cloned());
        EnvSnapshot { vars, hostname }
    }

    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> EnvSnapshot {
        EnvSnapshot {
            vars: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            hostname: None,
        }
    }

    /// A variable's value, trimmed; unset and empty are the same (as the OpenTelemetry spec says).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn first(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.get(n))
    }
}

/// One signal's OTLP destination after every source has been ranked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExportTarget {
    /// The full URL given to the exporter (with `/v1/<signal>` for HTTP).
    pub(crate) endpoint: String,
    pub(crate) protocol: OtlpProtocol,
    /// Headers from the config file; `OTEL_EXPORTER_OTLP_*HEADERS` are merged over
    /// them by the exporter itself (env wins per key), so they are never copied here.
    pub(crate) headers: HashMap<String, String>,
    pub(crate) timeout: Duration,
}

/// What `init` builds.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) sdk_disabled: bool,
    /// The log filter directives and where they came from.
    pub(crate) log_filter: String,
    pub(crate) log_filter_source: String,
    pub(crate) traces: Option<ExportTarget>,
    pub(crate) metrics: Option<ExportTarget>,
    pub(crate) sampler: SamplerChoice,
    pub(crate) propagators: Vec<Propagator>,
    pub(crate) resource: Vec<KeyValue>,
    /// Problems with the environment that were ignored; logged after init.
    pub(crate) warnings: Vec<String>,
}

pub(crate) fn plan(settings: &TelemetrySettings, service: &ServiceInfo, env: &EnvSnapshot) -> Plan {
    let mut warnings = Vec::new();
    let sdk_disabled = env
        .get("OTEL_SDK_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let (log_filter, log_filter_source) = match env.get("RUST_LOG") {
        Some(directives) => (directives.to_owned(), "RUST_LOG".to_owned()),
        None => (
            config_log_filter(settings),
            "telemetry.logging.level/targets".to_owned(),
        ),
    };
    let traces = export_target(
        &settings.tracing.otlp,
        "TRACES",
        "traces",
        env,
        &mut warnings,
    );
    let metrics = export_target(
        &settings.metrics.otlp,
        "METRICS",
        "metrics",
        env,
        &mut warnings,
    );
    Plan {
        sdk_disabled,
        log_filter,
        log_filter_source,
        traces,
        metrics,
        sampler: sampler(settings.tracing.sampling_ratio, env, &mut warnings),
        propagators: propagators(&settings.tracing.propagators, env, &mut warnings),
        resource: resource(settings, service, env, &mut warnings),
        warnings,
    }
}

pub(crate) fn config_log_filter(settings: &TelemetrySettings) -> String {
    let mut parts = vec![settings.logging.level.trim().to_owned()];
    parts.extend(
        settings
            .logging
            .targets
            .iter()
            .map(|(target, level)| format!("{}={}", target.trim(), level.trim())),
    );
    parts.join(",")
}

fn export_target(
    config: &OtlpSettings,
    signal_upper: &str,
    signal_path: &str,
    env: &EnvSnapshot,
    warnings: &mut Vec<String>,
) -> Option<ExportTarget> {
    let mut protocol = config.protocol;
    for name in [
        format!("OTEL_EXPORTER_OTLP_{signal_upper}_PROTOCOL"),
        "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
    ] {
        if let Some(value) = env.get(&name) {
            match OtlpProtocol::parse(value) {
                Some(p) => {
                    protocol = p;
                    break;
                }
                None => warnings.push(format!(
                    "ignoring {name}={value:?}: supported protocols are grpc and http/protobuf"
                )),
            }
        }
    }
    let signal_var = format!("OTEL_EXPORTER_OTLP_{signal_upper}_ENDPOINT");
    let endpoint = if let Some(url) = env.get(&signal_var) {
        // The spec: a per-signal endpoint is used exactly as given.
        url.to_owned()
    } else {
        let base = env
            .get("OTEL_EXPORTER_OTLP_ENDPOINT")
            .unwrap_or(config.endpoint.trim());
        if base.is_empty() {
            return None;
        }
        match protocol {
            OtlpProtocol::Grpc => base.to_owned(),
            OtlpProtocol::HttpProtobuf => {
                format!("{}/v1/{signal_path}", base.trim_end_matches('/'))
            }
        }
    };
    let mut timeout = config.timeout;
    for name in [
        format!("OTEL_EXPORTER_OTLP_{signal_upper}_TIMEOUT"),
        "OTEL_EXPORTER_OTLP_TIMEOUT".to_owned(),
    ] {
        if let Some(value) = env.get(&name) {
            match value.parse::<u64>() {
                Ok(ms) if ms > 0 => {
                    timeout = Duration::from_millis(ms);
                    break;
                }
                _ => warnings.push(format!(
                    "ignoring {name}={value:?}: expected a positive number of milliseconds"
                )),
            }
        }
    }
    Some(ExportTarget {
        endpoint,
        protocol,
        headers: config
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().clone()))
            .collect(),
        timeout,
    })
}

fn sampler(config_ratio: f64, env: &EnvSnapshot, warnings: &mut Vec<String>) -> SamplerChoice {
    let arg = env
        .get("OTEL_TRACES_SAMPLER_ARG")
        .and_then(|value| match value.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Some(r),
            _ => {
                warnings.push(format!(
                    "ignoring OTEL_TRACES_SAMPLER_ARG={value:?}: expected a ratio between 0 and 1"
                ));
                None
            }
        });
    let from_config =
        SamplerChoice::ParentBased(Box::new(ratio_choice(arg.unwrap_or(config_ratio))));
    let Some(name) = env.get("OTEL_TRACES_SAMPLER") else {
        return from_config;
    };
    let ratio = || ratio_choice(arg.unwrap_or(1.0));
    match name {
        "always_on" => SamplerChoice::AlwaysOn,
        "always_off" => SamplerChoice::AlwaysOff,
        "traceidratio" => ratio(),
        "parentbased_always_on" => SamplerChoice::ParentBased(Box::new(SamplerChoice::AlwaysOn)),
        "parentbased_always_off" => SamplerChoice::ParentBased(Box::new(SamplerChoice::AlwaysOff)),
        "parentbased_traceidratio" => SamplerChoice::ParentBased(Box::new(ratio())),
        other => {
            warnings.push(format!(
                "ignoring OTEL_TRACES_SAMPLER={other:?}: not supported here; using the configured parent-based ratio sampler"
            ));
            from_config
        }
    }
}

fn ratio_choice(ratio: f64) -> SamplerChoice {
    // Exact ends avoid hashing the trace id for nothing.
    if ratio >= 1.0 {
        SamplerChoice::AlwaysOn
    } else if ratio <= 0.0 {
        SamplerChoice::AlwaysOff
    } else {
        SamplerChoice::Ratio(ratio)
    }
}

fn propagators(
    config: &[Propagator],
    env: &EnvSnapshot,
    warnings: &mut Vec<String>,
) -> Vec<Propagator> {
    let Some(list) = env.get("OTEL_PROPAGATORS") else {
        return config.to_vec();
    };
    let mut chosen = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "tracecontext" => chosen.push(Propagator::TraceContext),
            "baggage" => chosen.push(Propagator::Baggage),
            "none" => return Vec::new(),
            other => warnings.push(format!(
                "ignoring {other:?} in OTEL_PROPAGATORS: supported are tracecontext, baggage, none"
            )),
        }
    }
    chosen.dedup();
    chosen
}

/// Resource attributes, lowest to highest precedence: detected (host, process,
/// Kubernetes) < `ServiceInfo` < `telemetry.resource_attributes` <
/// `OTEL_RESOURCE_ATTRIBUTES` < `OTEL_SERVICE_NAME`.
fn resource(
    settings: &TelemetrySettings,
    service: &ServiceInfo,
    env: &EnvSnapshot,
    warnings: &mut Vec<String>,
) -> Vec<KeyValue> {
    let mut attrs: BTreeMap<String, Value> = BTreeMap::new();
    let mut put = |key: &str, value: Value| {
        attrs.insert(key.to_owned(), value);
    };
    if let Some(host) = &env.hostname {
        put("host.name", host.clone().into());
    }
    put("process.pid", Value::I64(i64::from(std::process::id())));
    for (key, names) in [
        ("k8s.pod.name", &["K8S_POD_NAME", "POD_NAME"][..]),
        ("k8s.pod.uid", &["K8S_POD_UID", "POD_UID"][..]),
        (
            "k8s.namespace.name",
            &["K8S_NAMESPACE_NAME", "K8S_POD_NAMESPACE", "POD_NAMESPACE"][..],
        ),
        ("k8s.node.name", &["K8S_NODE_NAME", "NODE_NAME"][..]),
        (
            "k8s.container.name",
            &["K8S_CONTAINER_NAME", "CONTAINER_NAME"][..],
        ),
    ] {
        if let Some(v) = env.first(names) {
            put(key, v.to_owned().into());
        }
    }
    put("service.name", service.name.clone().into());
    if !service.version.is_empty() {
        put("service.version", service.version.clone().into());
    }
    if !service.instance_id.is_empty() {
        put("service.instance.id", service.instance_id.clone().into());
    }
    if !service.environment.is_empty() {
        put(
            "deployment.environment.name",
            service.environment.clone().into(),
        );
    }
    for (k, v) in &settings.resource_attributes {
        put(k, v.clone().into());
    }
    if let Some(raw) = env.get("OTEL_RESOURCE_ATTRIBUTES") {
        match parse_resource_attributes(raw) {
            Ok(pairs) => {
                for (k, v) in pairs {
                    put(&k, v.into());
                }
            }
            // The spec: on any error the whole value is discarded.
            Err(reason) => warnings.push(format!("ignoring OTEL_RESOURCE_ATTRIBUTES: {reason}")),
        }
    }
    if let Some(name) = env.get("OTEL_SERVICE_NAME") {
        put("service.name", name.to_owned().into());
    }
    attrs
        .into_iter()
        .map(|(k, v)| KeyValue::new(k, v))
        .collect()
}

/// `key1=value1,key2=value2`, values percent-encoded (W3C baggage style).
fn parse_resource_attributes(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("entry {item:?} has no '='"))?;
        let key = k.trim();
        if key.is_empty() {
            return Err(format!("entry {item:?} has an empty key"));
        }
        let value =
            percent_decode(v.trim()).ok_or_else(|| format!("entry {item:?} has a bad %-escape"))?;
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

/// Decodes `%XX` escapes. `percent-encoding` passes a malformed escape
/// through as text; the spec discards the whole variable then, so escapes
/// are checked first.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> ServiceInfo {
        ServiceInfo::new("orders", "1.2.3")
            .with_instance_id("i-1")
            .with_environment("staging")
    }

    fn attr<'a>(plan: &'a Plan, key: &str) -> Option<&'a Value> {
        plan.resource
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[test]
    fn defaults_export_nothing_and_sample_everything() {
        let plan = plan(
            &TelemetrySettings::default(),
            &service(),
            &EnvSnapshot::default(),
        );
        assert!(!plan.sdk_disabled);
        assert_eq!(plan.traces, None);
        assert_eq!(plan.metrics, None);
        assert_eq!(
            plan.sampler,
            SamplerChoice::ParentBased(Box::new(SamplerChoice::AlwaysOn))
        );
        assert_eq!(
            plan.propagators,
            vec![Propagator::TraceContext, Propagator::Baggage]
        );
        assert_eq!(
            plan.log_filter,
            "info,opentelemetry=warn,opentelemetry_sdk=warn"
        );
        assert!(plan.warnings.is_empty());
    }

    #[test]
    fn env_endpoints_rank_above_config_and_http_gets_the_signal_path() {
        let mut s = TelemetrySettings::default();
        s.tracing.otlp.endpoint = "http://from-config:4318".into();
        let p = plan(&s, &service(), &EnvSnapshot::default());
        assert_eq!(
            p.traces.unwrap().endpoint,
            "http://from-config:4318/v1/traces"
        );

        let env =
            EnvSnapshot::from_pairs(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318/")]);
        let p = plan(&s, &service(), &env);
        assert_eq!(p.traces.unwrap().endpoint, "http://generic:4318/v1/traces");
        // The generic variable turns metric push on too, as the spec expects.
        assert_eq!(
            p.metrics.unwrap().endpoint,
            "http://generic:4318/v1/metrics"
        );

        let env = EnvSnapshot::from_pairs(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
        ]);
        assert_eq!(
            plan(&s, &service(), &env).traces.unwrap().endpoint,
            "http://traces:9999/custom"
        );
    }

    #[test]
    fn grpc_endpoints_are_used_as_given() {
        let env = EnvSnapshot::from_pairs(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        let t = plan(&TelemetrySettings::default(), &service(), &env)
            .traces
            .unwrap();
        assert_eq!(t.protocol, OtlpProtocol::Grpc);
        assert_eq!(t.endpoint, "http://collector:4317");
    }

    #[test]
    fn per_signal_protocol_and_timeout_win_and_bad_values_are_warnings() {
        let env = EnvSnapshot::from_pairs(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "carrier-pigeon"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "soon"),
        ]);
        let p = plan(&TelemetrySettings::default(), &service(), &env);
        let t = p.traces.unwrap();
        assert_eq!(t.protocol, OtlpProtocol::Grpc);
        assert_eq!(t.timeout, Duration::from_millis(2500));
        assert_eq!(p.metrics.unwrap().protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        assert!(p.warnings.iter().any(|w| w.contains("carrier-pigeon")));
    }

    #[test]
    fn sdk_disabled_only_for_true() {
        for (value, disabled) in [
            ("true", true),
            ("TRUE", true),
            ("false", false),
            ("1", false),
        ] {
            let env = EnvSnapshot::from_pairs(&[("OTEL_SDK_DISABLED", value)]);
            assert_eq!(
                plan(&TelemetrySettings::default(), &service(), &env).sdk_disabled,
                disabled,
                "{value}"
            );
        }
    }

    #[test]
    fn samplers_from_env() {
        let s = TelemetrySettings::default();
        let choice =
            |pairs: &[(&str, &str)]| plan(&s, &service(), &EnvSnapshot::from_pairs(pairs)).sampler;
        assert_eq!(
            choice(&[("OTEL_TRACES_SAMPLER", "always_off")]),
            SamplerChoice::AlwaysOff
        );
        assert_eq!(
            choice(&[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1")
            ]),
            SamplerChoice::ParentBased(Box::new(SamplerChoice::Ratio(0.1)))
        );
        assert_eq!(
            choice(&[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "2")
            ]),
            SamplerChoice::AlwaysOn
        );
        assert_eq!(
            choice(&[("OTEL_TRACES_SAMPLER", "xray")]),
            SamplerChoice::ParentBased(Box::new(SamplerChoice::AlwaysOn))
        );
        let mut s = TelemetrySettings::default();
        s.tracing.sampling_ratio = 0.5;
        assert_eq!(
            plan(&s, &service(), &EnvSnapshot::default()).sampler,
            SamplerChoice::ParentBased(Box::new(SamplerChoice::Ratio(0.5)))
        );
    }

    #[test]
    fn propagators_from_env() {
        let s = TelemetrySettings::default();
        let p = |v: &str| {
            plan(
                &s,
                &service(),
                &EnvSnapshot::from_pairs(&[("OTEL_PROPAGATORS", v)]),
            )
        };
        assert_eq!(p("baggage").propagators, vec![Propagator::Baggage]);
        assert!(p("none").propagators.is_empty());
        let with_b3 = p("tracecontext,b3");
        assert_eq!(with_b3.propagators, vec![Propagator::TraceContext]);
        assert_eq!(with_b3.warnings.len(), 1);
    }

    #[test]
    fn resource_precedence() {
        let mut s = TelemetrySettings::default();
        s.resource_attributes
            .insert("team".into(), "payments".into());
        s.resource_attributes.insert("region".into(), "eu".into());
        let env = EnvSnapshot::from_pairs(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "region=us%2Deast,service.name=from-attrs",
            ),
            ("POD_NAME", "orders-7d9f"),
            ("K8S_NAMESPACE_NAME", "shop"),
        ]);
        let p = plan(&s, &service(), &env);
        assert_eq!(attr(&p, "team"), Some(&Value::from("payments")));
        assert_eq!(attr(&p, "region"), Some(&Value::from("us-east")));
        assert_eq!(attr(&p, "service.name"), Some(&Value::from("from-attrs")));
        assert_eq!(attr(&p, "service.version"), Some(&Value::from("1.2.3")));
        assert_eq!(attr(&p, "service.instance.id"), Some(&Value::from("i-1")));
        assert_eq!(
            attr(&p, "deployment.environment.name"),
            Some(&Value::from("staging"))
        );
        assert_eq!(attr(&p, "k8s.pod.name"), Some(&Value::from("orders-7d9f")));
        assert_eq!(attr(&p, "k8s.namespace.name"), Some(&Value::from("shop")));
        assert!(matches!(attr(&p, "process.pid"), Some(Value::I64(_))));

        let env = EnvSnapshot::from_pairs(&[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
            ("OTEL_SERVICE_NAME", "from-env"),
        ]);
        assert_eq!(
            attr(&plan(&s, &service(), &env), "service.name"),
            Some(&Value::from("from-env"))
        );
    }

    #[test]
    fn resource_attribute_values_are_percent_decoded() {
        assert_eq!(
            parse_resource_attributes("a=us%2Deast, b=caf%C3%A9 ,c=%25,d=plain").unwrap(),
            [
                ("a".to_owned(), "us-east".to_owned()),
                ("b".to_owned(), "café".to_owned()),
                ("c".to_owned(), "%".to_owned()),
                ("d".to_owned(), "plain".to_owned()),
            ]
        );
        for bad in ["x=%zz", "x=%2", "x=100%", "x=%C3", "x=%", "=v", "novalue"] {
            assert!(parse_resource_attributes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_resource_attributes_are_discarded_whole() {
        let env = EnvSnapshot::from_pairs(&[("OTEL_RESOURCE_ATTRIBUTES", "team=a,broken,x=%zz")]);
        let p = plan(&TelemetrySettings::default(), &service(), &env);
        assert_eq!(attr(&p, "team"), None);
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn rust_log_replaces_the_configured_filter() {
        let mut s = TelemetrySettings::default();
        s.logging.targets.clear();
        s.logging.targets.insert("hyper".into(), "warn".into());
        assert_eq!(
            plan(&s, &service(), &EnvSnapshot::default()).log_filter,
            "info,hyper=warn"
        );
        let env = EnvSnapshot::from_pairs(&[("RUST_LOG", "debug")]);
        let p = plan(&s, &service(), &env);
        assert_eq!(
            (p.log_filter.as_str(), p.log_filter_source.as_str()),
            ("debug", "RUST_LOG")
        );
    }

    #[test]
    fn config_headers_are_carried_env_headers_are_not_copied() {
        let mut s = TelemetrySettings::default();
        s.tracing.otlp.endpoint = "http://c:4318".into();
        s.tracing
            .otlp
            .headers
            .insert("x-api-key".into(), "k".to_owned().into());
        let env = EnvSnapshot::from_pairs(&[("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=other")]);
        let t = plan(&s, &service(), &env).traces.unwrap();
        assert_eq!(t.headers.get("x-api-key").map(String::as_str), Some("k"));
    }
}
