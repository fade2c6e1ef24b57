//! The runtime: start-up gating, built-in checks, config reload health, errors.

use std::time::Duration;

use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use platform_config::Loader;
use platform_config::cli::ConfigArgs;
use platform_core::health::{Kind, Status};
use platform_core::{Config, Error, Runtime, checks};

#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
struct App {
    /// Greeting.
    greeting: String,
}
impl platform_config::Validate for App {}

fn loader(dir: &std::path::Path) -> Loader {
    Loader::new()
        .config_dir(dir)
        .env_vars(Vec::<(String, String)>::new())
}

async fn init(dir: &std::path::Path) -> Result<(Runtime, Config<App>), Error> {
    Runtime::builder::<App>("svc")
        .args(ConfigArgs::default())
        .loader(loader(dir))
        .without_signal_handlers()
        .without_telemetry()
        .init()
        .await
}

#[tokio::test]
async fn startup_and_readiness_wait_for_start_up_to_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, _config) = init(dir.path()).await.unwrap();
    let health = rt.health();
    assert!(health.passes(Kind::Liveness), "alive while starting");
    assert!(!health.passes(Kind::Startup));
    assert!(!health.passes(Kind::Readiness));
    rt.mark_started();
    assert!(health.passes(Kind::Startup));
    assert!(health.passes(Kind::Readiness));
    rt.lifecycle().request_shutdown("test");
    let stop = rt.lifecycle().stop_accepting();
    // Drain delay 5 s by default: use a paused-free check of the order instead of waiting.
    let run = tokio::spawn({
        let rt = rt.clone();
        async move {
            rt.run(async move {
                stop.await;
                Ok(())
            })
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !rt.health().passes(Kind::Readiness),
        "readiness fails as soon as shutdown starts"
    );
    assert!(rt.health().passes(Kind::Liveness));
    run.abort();
}

/// Sum of the `platform.config.reloads` points with `outcome`.
fn reloads(exporter: &InMemoryMetricExporter, outcome: &str) -> u64 {
    let want = opentelemetry::KeyValue::new("outcome", outcome.to_owned());
    let mut total = 0;
    for rm in exporter.get_finished_metrics().unwrap() {
        for sm in rm.scope_metrics() {
            for m in sm
                .metrics()
                .filter(|m| m.name() == "platform.config.reloads")
            {
                if let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() {
                    total += sum
                        .data_points()
                        .filter(|p| p.attributes().any(|kv| *kv == want))
                        .map(|p| p.value())
                        .sum::<u64>();
                }
            }
        }
    }
    total
}

#[tokio::test]
async fn a_rejected_reload_warns_without_failing_readiness() {
    // The only test here that reloads: the process-wide meter provider
    // counts its reloads alone.
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    opentelemetry::global::set_meter_provider(provider.clone());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("default.toml"),
        "[app]\ngreeting = \"hi\"\n",
    )
    .unwrap();
    let (rt, config) = init(dir.path()).await.unwrap();
    rt.mark_started();
    assert_eq!(config.current().app.greeting, "hi");

    std::fs::write(
        dir.path().join("default.toml"),
        "[app]\ngreting = \"typo\"\n",
    )
    .unwrap();
    assert!(config.reloader().reload().is_err());
    // The status watcher task updates the check.
    for _ in 0..100 {
        if rt.health().status_of(checks::CONFIG) == Some(Status::Warn) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rt.health().status_of(checks::CONFIG), Some(Status::Warn));
    assert!(
        rt.health().passes(Kind::Readiness),
        "a bad reload is a warning, not an outage"
    );
    assert_eq!(config.current().app.greeting, "hi", "last good config kept");
    let report = rt.health().report();
    let check = report
        .checks
        .iter()
        .find(|c| c.name == checks::CONFIG)
        .unwrap();
    assert!(check.message.as_deref().unwrap().contains("app.greting"));

    std::fs::write(
        dir.path().join("default.toml"),
        "[app]\ngreeting = \"hello\"\n",
    )
    .unwrap();
    assert!(config.reloader().reload().unwrap());
    for _ in 0..100 {
        if rt.health().status_of(checks::CONFIG) == Some(Status::Pass) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rt.health().status_of(checks::CONFIG), Some(Status::Pass));
    assert_eq!(config.current().app.greeting, "hello");

    provider.force_flush().unwrap();
    assert_eq!(reloads(&exporter, "rejected"), 1);
    assert_eq!(reloads(&exporter, "applied"), 1);
}

#[tokio::test]
async fn an_invalid_config_is_a_start_up_error_with_the_whole_report() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("default.toml"),
        "[shutdown]\ndrain_delay = \"soon\"\n[admin]\nbind = \"nowhere\"\n",
    )
    .unwrap();
    let e = init(dir.path()).await.unwrap_err();
    let printed = format!("{e:?}");
    assert!(
        printed.starts_with("configuration has 2 problems"),
        "{printed}"
    );
    assert!(
        printed.contains("shutdown.drain_delay") && printed.contains("admin.bind"),
        "{printed}"
    );
    assert!(matches!(e, Error::Config(_)));
}

#[tokio::test]
async fn the_service_info_names_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, _) = Runtime::builder::<App>("svc")
        .version("1.2.3")
        .args(ConfigArgs {
            profile: None,
            ..ConfigArgs::default()
        })
        .loader(loader(dir.path()))
        .without_signal_handlers()
        .without_telemetry()
        .init()
        .await
        .unwrap();
    let info = rt.info();
    assert_eq!(
        (info.name.as_str(), info.version.as_str()),
        ("svc", "1.2.3")
    );
    assert!(!info.instance_id.is_empty());

    // From the calling crate (this test is in platform-core), and never the
    // SDK's own version by default.
    let dir = tempfile::tempdir().unwrap();
    let start = |builder: platform_core::RuntimeBuilder<App>| {
        builder
            .args(ConfigArgs::default())
            .loader(loader(dir.path()))
            .without_signal_handlers()
            .without_telemetry()
            .init()
    };
    let (rt, _) = start(platform_core::runtime!(App)).await.unwrap();
    let info = rt.info();
    assert_eq!(
        (info.name.as_str(), info.version.as_str()),
        ("platform-core", env!("CARGO_PKG_VERSION"))
    );
    let (rt, _) = start(Runtime::builder::<App>("svc")).await.unwrap();
    assert_eq!(rt.info().version, "", "no version given: none reported");
}

#[tokio::test]
async fn overload_settings_are_checked_with_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("default.toml"),
        "[server.limit]\nmin = 0\ntolerance = 0.5\n[server.rate_limit]\nrate = -1.0\nburst = 0\n",
    )
    .unwrap();
    let e = init(dir.path()).await.unwrap_err();
    let text = e.to_string();
    for key in [
        "server.limit.min",
        "server.limit.tolerance",
        "server.rate_limit.rate",
        "server.rate_limit.burst",
    ] {
        assert!(text.contains(key), "{key} not in {text}");
    }
}

#[tokio::test]
async fn discovery_settings_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("default.toml"),
        "[discovery.registration]\nlease_ttl = \"500ms\"\n",
    )
    .unwrap();
    let e = init(dir.path()).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("discovery.registration.lease_ttl"), "{text}");
}

/// The loader validates every section: telemetry settings are refused by
/// `--check-config` exactly as by start-up, all at once.
#[tokio::test]
async fn telemetry_settings_are_refused_by_the_loader_all_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("default.toml"),
        "[telemetry.tracing]\nsampling_ratio = 1.5\n[telemetry.logging]\nlevel = \"loud\"\n",
    )
    .unwrap();
    let e = loader(dir.path())
        .load::<platform_core::settings::Settings<App>>()
        .unwrap_err();
    let keys: Vec<&str> = e
        .report()
        .unwrap()
        .problems
        .iter()
        .filter_map(|p| p.key())
        .collect();
    assert_eq!(
        keys,
        [
            "telemetry.tracing.sampling_ratio",
            "telemetry.logging.level",
        ],
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.contains("default.toml:2"),
        "names the file and line: {text}"
    );
    // Start-up refuses with the same report.
    let started = init(dir.path()).await.unwrap_err().to_string();
    assert_eq!(started, text);
}
