//! The runtime: one init in `main` ties config, health and lifecycle together.

use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use platform_config::cli::{Action, ConfigArgs, ServiceArgs};
use platform_config::reload::{ReloadStatus, Reloader, WatchGuard};
use platform_config::{Loaded, Loader};

use crate::error::Error;
use crate::health::{CheckOutcome, HealthRegistry, Kind, ManualCheck, Status};
use crate::lifecycle::{Lifecycle, ShutdownOutcome, install_signal_handlers};
use crate::meters::Meters;
use crate::resilience::ResilienceRegistry;
use crate::settings::Settings;
use opentelemetry::metrics::Meter;

/// Names of the built-in health checks.
pub mod checks {
    /// Startup and readiness fail until start-up has finished.
    pub const STARTUP: &str = "startup";
    /// Readiness fails as soon as shutdown starts.
    pub const SHUTDOWN: &str = "shutdown";
    /// Warns (readiness still passes) while the last config reload was rejected.
    pub const CONFIG: &str = "config";
    /// Warns (readiness still passes) while self-registration in etcd is not in place.
    pub const REGISTRATION: &str = "registration";
}

/// Who this process is: for telemetry resources, `/info` and logs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceInfo {
    /// The service's name (`service.name`).
    pub name: String,
    /// Its version (`service.version`).
    pub version: String,
    /// This process, unique among the service's instances (`service.instance.id`).
    pub instance_id: String,
    /// The config profile in force (`deployment.environment.name`), if any.
    pub profile: Option<String>,
    /// When the runtime started.
    #[serde(serialize_with = "serialize_time")]
    pub started_at: SystemTime,
}

fn serialize_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::health::rfc3339(*t))
}

fn instance_id(name: &str) -> String {
    // The pod name in Kubernetes; the pid and start time tell apart processes on one host.
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| name.to_owned());
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{host}-{}-{nanos:08x}", std::process::id())
}

/// The process's command line, with `--help` and `--version` naming the
/// service rather than the crate that defines the flags.
fn parse_command_line(name: &str, version: &str) -> ConfigArgs {
    use clap::{CommandFactory, FromArgMatches};
    let command = ServiceArgs::command()
        .name(name.to_owned())
        .bin_name(name.to_owned())
        .version(
            if version.is_empty() {
                "unknown"
            } else {
                version
            }
            .to_owned(),
        )
        // ServiceArgs' own doc comment describes the type, not the service.
        .about(None::<&'static str>)
        .long_about(None::<&'static str>);
    ServiceArgs::from_arg_matches(&command.get_matches())
        .unwrap_or_else(|e| e.exit())
        .config
}

/// The bounds a service's own settings type meets (blanket-implemented).
pub trait AppSettings: platform_config::Settings + Clone + std::fmt::Debug {}
impl<S: platform_config::Settings + Clone + std::fmt::Debug> AppSettings for S {}

/// A library's section of named clients (`http.clients.<name>`,
/// `grpc.clients.<name>`): what [`RuntimeBuilder::requires_client_in`]
/// checks.
pub trait ClientsSection: platform_config::Section {
    /// The names of the clients configured, in order.
    fn client_names(&self) -> Vec<&str>;

    /// Whether the client `name` is configured.
    fn has_client(&self, name: &str) -> bool {
        self.client_names().contains(&name)
    }

    /// "configured clients: a, b" (or none), for a message about a missing one.
    fn configured(&self) -> String {
        let names = self.client_names();
        format!(
            "configured clients: {}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )
    }
}

/// Declares the extension of [`RuntimeBuilder`] a client library adds for
/// its [`ClientsSection`]: one method that reads the section, one that also
/// requires a named client in it. One definition for every client library
/// (platform-http's `RuntimeBuilderExt`, platform-grpc's
/// `GrpcRuntimeBuilderExt`), so that they read and behave alike.
///
/// ```ignore
/// platform_core::clients_builder_ext! {
///     /// What platform-http adds to the runtime's builder.
///     pub trait RuntimeBuilderExt for HttpSettings, "http", "[`Client::for_service`](crate::Client::for_service)" {
///         fn http_clients;
///         fn requires_client;
///     }
/// }
/// ```
#[macro_export]
macro_rules! clients_builder_ext {
    (
        $(#[$meta:meta])*
        $vis:vis trait $name:ident for $section:ty, $key:literal, $finder:literal {
            fn $read:ident;
            fn $require:ident;
        }
    ) => {
        $(#[$meta])*
        $vis trait $name: Sized {
            #[doc = concat!("Reads the `", $key, "` section, so that ", $finder, " finds its clients.")]
            fn $read(self) -> Self;

            #[doc = concat!(
                "Reads the `", $key, "` section and requires `", $key, ".clients.<name>`: the ",
                "service calls `name` and cannot start without it. Start-up, `--check-config` ",
                "and reloads refuse a configuration without it."
            )]
            fn $require(self, name: &str) -> Self;
        }

        impl<S: $crate::AppSettings> $name for $crate::RuntimeBuilder<S> {
            fn $read(self) -> Self {
                self.section::<$section>()
            }

            fn $require(self, name: &str) -> Self {
                self.requires_client_in::<$section>(name)
            }
        }
    };
}

/// The builder methods every client of a target shares (platform-http's
/// `ClientBuilder`, platform-grpc's `ChannelBuilder`): where endpoints come
/// from, where instruments go, which policies calls go through. Expands
/// inside the builder's `impl`, whose fields `discovery`, `resolver`,
/// `meters`, `registry` and `resilience` they set; `$what` names the thing
/// built in the docs ("client", "channel").
#[macro_export]
macro_rules! target_builder_methods {
    ($what:literal) => {
        /// How discovery backends are reached (the root `discovery`
        /// section), when the settings name a `discovery` target; defaults
        /// otherwise.
        pub fn discovery_settings(mut self, settings: &$crate::discovery::DiscoverySettings) -> Self {
            self.discovery = Some(settings.clone());
            self
        }

        /// Takes the endpoints from `resolver` (one that learns them some
        /// other way, or a `ManualResolver` in tests) instead of the settings.
        pub fn resolver(mut self, resolver: impl $crate::discovery::Resolver + 'static) -> Self {
            self.resolver = Some(::std::sync::Arc::new(resolver));
            self
        }

        #[doc = concat!(
            "Creates the ", $what, "'s instruments (and those of its policies, balancer and ",
            "discovery) from `meters`: `for_service` uses the runtime's ",
            "([`Runtime::meters`](", "platform_core::Runtime::meters)); without, the ",
            "process-wide provider's."
        )]
        pub fn meters(mut self, meters: $crate::Meters) -> Self {
            self.meters = meters;
            self
        }

        #[doc = concat!(
            "Shares the target's policies (budget, breaker, ejection) through `registry` with ",
            "every other ", $what, " of the target built from it: `for_service` uses the ",
            "runtime's ([`Runtime::targets`](platform_core::Runtime::targets)). Without one, ",
            "the ", $what, " has policies of its own. Settings that differ from those the ",
            "target already has in the registry are an error naming both sources."
        )]
        pub fn registry(mut self, registry: &$crate::resilience::ResilienceRegistry) -> Self {
            self.registry = Some(registry.clone());
            self
        }

        /// Uses these policies (say with a seeded backoff) instead of
        /// building them from the settings.
        pub fn resilience(mut self, resilience: $crate::resilience::Resilience) -> Self {
            self.resilience = Some(resilience);
            self
        }
    };
}

/// Builds a [`Runtime`]; see [`Runtime::builder`].
pub struct RuntimeBuilder<S> {
    name: String,
    version: String,
    args: Option<ConfigArgs>,
    loader: Loader,
    default_config_dir: Option<PathBuf>,
    signals: bool,
    telemetry: bool,
    span_exporter: Option<platform_telemetry::SpanExporterHook>,
    rules: Vec<Rule<S>>,
    _settings: PhantomData<fn() -> S>,
}

// By hand: rules are closures.
impl<S> std::fmt::Debug for RuntimeBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("args", &self.args)
            .field("loader", &self.loader)
            .field("default_config_dir", &self.default_config_dir)
            .field("signals", &self.signals)
            .field("telemetry", &self.telemetry)
            .field("span_exporter", &self.span_exporter)
            .field("rules", &self.rules.len())
            .finish()
    }
}

/// A rule over the whole configuration, added with [`RuntimeBuilder::rule`].
type Rule<S> = Arc<dyn Fn(&Settings<S>, &mut platform_config::Validation) + Send + Sync>;

impl<S: AppSettings> RuntimeBuilder<S> {
    /// The service's version (`service.version`). Without it none is
    /// reported; [`runtime!`](crate::runtime) takes the calling crate's.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Uses these flags instead of parsing the process's command line.
    pub fn args(mut self, args: ConfigArgs) -> Self {
        self.args = Some(args);
        self
    }

    /// The config directory when neither `--config-dir` nor `APP_CONFIG_DIR`
    /// names one (default `./config`). It may be missing: a binary deployed
    /// without its source tree then starts from built-in defaults, env and flags.
    pub fn default_config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.default_config_dir = Some(dir.into());
        self
    }

    /// Starts from this loader (env prefix, injected env, overrides in code).
    pub fn loader(mut self, loader: Loader) -> Self {
        self.loader = loader;
        self
    }

    /// Adds a rule over the whole configuration (the service's sections and
    /// the platform's), for what no settings type can know alone. The loader
    /// checks it, so `--check-config`, start-up and every reload refuse the
    /// same inputs; keys are relative to the root.
    pub fn rule(
        mut self,
        rule: impl Fn(&Settings<S>, &mut platform_config::Validation) + Send + Sync + 'static,
    ) -> Self {
        self.rules.push(Arc::new(rule));
        self
    }

    /// Reads the section `X` under its key too, checked at start-up, by
    /// `--check-config` and on reload like the platform's own sections:
    /// for a library's settings (platform-http's `http`), which core's
    /// [`Settings`] cannot name. [`Runtime::section`] gives it.
    pub fn section<X: platform_config::Section>(mut self) -> Self {
        self.loader = self.loader.section::<X>();
        self
    }

    /// Adds the section `X` and a rule over it (keys relative to the
    /// section): what a library asks of its section for this service,
    /// such as a client the service cannot run without.
    pub fn section_rule<X: platform_config::Section>(
        mut self,
        rule: impl Fn(&X, &mut platform_config::Validation) + Send + Sync + 'static,
    ) -> Self {
        self.loader = self.loader.section::<X>().rule(rule);
        self
    }

    /// Reads the clients section `X` and requires its client `name`: the
    /// service calls `name` and cannot start without it. Start-up,
    /// `--check-config` and reloads refuse a configuration without it (the
    /// key named is `<section>.clients.<name>`).
    pub fn requires_client_in<X: ClientsSection>(self, name: &str) -> Self {
        let name = name.to_owned();
        self.section_rule(move |section: &X, v| {
            if !section.has_client(&name) {
                v.error(
                    &format!("clients.{name}"),
                    format!(
                        "missing: this service calls `{name}` ({})",
                        section.configured()
                    ),
                );
            }
        })
    }

    /// Leaves SIGTERM and SIGINT alone (tests, embedding); call
    /// [`Lifecycle::request_shutdown`] instead.
    pub fn without_signal_handlers(mut self) -> Self {
        self.signals = false;
        self
    }

    /// Leaves telemetry alone: no subscriber, no exporters (tests that start
    /// several runtimes in one process; telemetry is process-global).
    pub fn without_telemetry(mut self) -> Self {
        self.telemetry = false;
        self
    }

    /// Sends sampled spans to `exporter` as well (a vendor's exporter, or a
    /// test rig's), through the same bounded batch processor as OTLP.
    pub fn span_exporter(mut self, exporter: platform_telemetry::SpanExporterHook) -> Self {
        self.span_exporter = Some(exporter);
        self
    }

    /// Parses the command line, loads and validates config, initialises
    /// telemetry (logs, traces, metrics), creates the
    /// health registry with the built-in checks, starts config reload and
    /// installs the signal handlers. A printing flag (`--print-config`, ...)
    /// prints and exits the process.
    pub async fn init(self) -> Result<(Runtime, Config<S>), Error> {
        let args = self
            .args
            .unwrap_or_else(|| parse_command_line(&self.name, &self.version));
        let loader = args.apply(service_loader(
            self.loader,
            self.default_config_dir,
            self.rules,
        ));
        let loaded = load_or_exit::<S>(&args, &loader)?;
        let settings = loaded.value().clone();
        let instance_id = instance_id(&self.name);
        let telemetry = if self.telemetry {
            let service = platform_telemetry::ServiceInfo::new(&self.name, &self.version)
                .with_instance_id(&instance_id);
            Some(start_telemetry(
                &settings.telemetry,
                loaded.profile(),
                service,
                self.span_exporter,
            )?)
        } else {
            None
        };
        let info = ServiceInfo {
            instance_id,
            name: self.name,
            version: self.version,
            profile: loaded.profile().map(str::to_owned),
            started_at: SystemTime::now(),
        };

        let meters = meters_of(telemetry.as_ref());
        let health = HealthRegistry::new();
        let checks = BuiltInChecks::register(&health)?;
        let lifecycle = Lifecycle::new(settings.shutdown.clone());
        let reloader = Reloader::new(loader, loaded);
        let watch = if settings.reload.enabled {
            Some(reloader.watch(settings.reload.debounce)?)
        } else {
            None
        };
        follow_reloads(&lifecycle, &reloader, checks.config, &meters);
        if self.signals {
            install_signal_handlers(&lifecycle).map_err(Error::Signals)?;
        }
        tracing::info!(service = %info.name, version = %info.version, instance = %info.instance_id,
            profile = info.profile.as_deref().unwrap_or("none"), "runtime initialised");
        let config = Config { reloader };
        let runtime = Runtime {
            inner: Arc::new(Inner {
                info,
                config: Box::new(config.clone()),
                health,
                lifecycle,
                startup: checks.startup,
                shutdown: checks.shutdown,
                watch: Mutex::new(watch),
                prometheus: telemetry.as_ref().and_then(|t| t.prometheus()),
                telemetry: Mutex::new(telemetry),
                targets: ResilienceRegistry::with_meters(meters.clone()),
                meters,
            }),
        };
        Ok((runtime, config))
    }
}

/// `loader` with the builder's fallback config directory and rules.
fn service_loader<S: AppSettings>(
    mut loader: Loader,
    default_config_dir: Option<PathBuf>,
    rules: Vec<Rule<S>>,
) -> Loader {
    if let Some(dir) = default_config_dir {
        loader = loader.fallback_config_dir(dir);
    }
    for rule in rules {
        loader = loader.rule(move |settings: &Settings<S>, v| rule(settings, v));
    }
    loader
}

/// Loads the configuration, or does what a printing flag asks and exits.
fn load_or_exit<S: AppSettings>(
    args: &ConfigArgs,
    loader: &Loader,
) -> Result<Loaded<Settings<S>>, Error> {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    match args.run(loader, &mut out, &mut err)? {
        Action::Run(loaded) => Ok(loaded),
        Action::Exit(code) => {
            use std::io::Write;
            let _ = out.flush();
            std::process::exit(i32::from(code));
        }
    }
}

/// The runtime's meter provider: its telemetry's (a no-op one with metrics
/// off), or the process-wide one when the runtime runs without telemetry
/// (tests, an embedding that set its own).
fn meters_of(telemetry: Option<&platform_telemetry::TelemetryGuard>) -> Meters {
    match telemetry.map(platform_telemetry::TelemetryGuard::meter_provider) {
        None => Meters::global(),
        Some(Some(provider)) => Meters::from_provider(provider),
        Some(None) => Meters::none(),
    }
}

/// Initialises telemetry for `service`, in the environment named by the profile.
fn start_telemetry(
    settings: &platform_telemetry::TelemetrySettings,
    profile: Option<&str>,
    mut service: platform_telemetry::ServiceInfo,
    exporter: Option<platform_telemetry::SpanExporterHook>,
) -> Result<platform_telemetry::TelemetryGuard, Error> {
    use platform_telemetry::LogFormat;
    let mut settings = settings.clone();
    // Development profiles read logs in a terminal or an IDE pane: text.
    let development = matches!(profile, Some("dev" | "development" | "local" | "test"));
    if development && settings.logging.format == LogFormat::Auto {
        settings.logging.format = LogFormat::Text;
    }
    if let Some(profile) = profile {
        service = service.with_environment(profile);
    }
    Ok(match exporter {
        Some(exporter) => platform_telemetry::init_with_exporter(&settings, &service, exporter)?,
        None => platform_telemetry::init(&settings, &service)?,
    })
}

/// The built-in checks that the runtime itself passes and fails.
struct BuiltInChecks {
    startup: ManualCheck,
    shutdown: ManualCheck,
    config: ManualCheck,
}

impl BuiltInChecks {
    fn register(health: &HealthRegistry) -> Result<Self, Error> {
        Ok(BuiltInChecks {
            startup: health.manual(
                checks::STARTUP,
                &[Kind::Startup, Kind::Readiness],
                Status::Unknown,
            )?,
            shutdown: health.manual(checks::SHUTDOWN, &[Kind::Readiness], Status::Pass)?,
            config: health.manual(checks::CONFIG, &[Kind::Readiness], Status::Pass)?,
        })
    }
}

/// Follows the reloader's status in the background: counts reloads and
/// keeps the `config` check warning while the last reload is rejected.
fn follow_reloads<S: AppSettings>(
    lifecycle: &Lifecycle,
    reloader: &Reloader<Settings<S>>,
    config_check: ManualCheck,
    meters: &Meters,
) {
    let mut status = reloader.subscribe_status();
    let mut metrics = ReloadMetrics::new(&meters.meter(crate::meters::SCOPE));
    lifecycle.spawn_task("config-reload-health", move |token| async move {
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                changed = status.changed() => if changed.is_err() { return },
            }
            let s = status.borrow_and_update().clone();
            metrics.record(&s);
            config_check.set(match &s.last_error {
                None => CheckOutcome::pass(),
                Some(report) => CheckOutcome::warn(format!(
                    "last reload rejected, running on the previous configuration: {report}"
                )),
            });
        }
    });
}

/// The `platform.config.reloads` counter, fed from the reloader's running totals.
struct ReloadMetrics {
    reloads: opentelemetry::metrics::Counter<u64>,
    applied: u64,
    rejected: u64,
}

impl ReloadMetrics {
    fn new(meter: &opentelemetry::metrics::Meter) -> Self {
        let reloads = meter
            .u64_counter("platform.config.reloads")
            .with_description("Config reloads: `applied` (valid, in force) or `rejected` (invalid, the previous config kept).")
            .with_unit("{reload}")
            .build();
        ReloadMetrics {
            reloads,
            applied: 0,
            rejected: 0,
        }
    }

    fn record(&mut self, status: &ReloadStatus) {
        // Updates may coalesce: count what changed since the last one seen.
        for (outcome, total, seen) in [
            ("applied", status.reloads, &mut self.applied),
            ("rejected", status.failed_reloads, &mut self.rejected),
        ] {
            let new = total.saturating_sub(*seen);
            if new > 0 {
                self.reloads
                    .add(new, &[opentelemetry::KeyValue::new("outcome", outcome)]);
            }
            *seen = total;
        }
    }
}

/// The platform runtime of one service process: who it is, its health,
/// lifecycle, the policies of the targets it calls and the platform's
/// sections of its configuration. Cheap to clone. Not generic: the service's
/// own settings come with it from [`RuntimeBuilder::init`] as a [`Config`].
///
/// ```no_run
/// # #[platform_config::settings]
/// # struct OrdersSettings {}
/// # async fn run() -> Result<(), platform_core::Error> {
/// let (rt, config) = platform_core::Runtime::builder::<OrdersSettings>("orders")
///     .version(env!("CARGO_PKG_VERSION"))
///     .init()
///     .await?;
/// let orders = config.current(); // Arc<Settings<OrdersSettings>>, reload-aware
/// let server = &rt.settings().server; // the platform's sections
/// # let _ = (orders, server); Ok(()) }
/// ```
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("info", &self.inner.info)
            .finish_non_exhaustive()
    }
}

struct Inner {
    info: ServiceInfo,
    config: Box<dyn PlatformView>,
    health: HealthRegistry,
    lifecycle: Lifecycle,
    startup: ManualCheck,
    shutdown: ManualCheck,
    watch: Mutex<Option<WatchGuard>>,
    telemetry: Mutex<Option<platform_telemetry::TelemetryGuard>>,
    prometheus: Option<platform_telemetry::PrometheusHandle>,
    targets: ResilienceRegistry,
    meters: Meters,
}

/// The service's configuration, kept current by reloads: the platform's
/// sections and the service's own (`app`). Cheap to clone; give it to the
/// handlers that read settings (as axum state, for instance).
pub struct Config<S> {
    reloader: Reloader<Settings<S>>,
}

impl<S> Clone for Config<S> {
    fn clone(&self) -> Self {
        Config {
            reloader: self.reloader.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Config<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config").finish_non_exhaustive()
    }
}

impl<S: AppSettings> Config<S> {
    /// The configuration in force now (it changes on reload).
    pub fn current(&self) -> Arc<Settings<S>> {
        self.reloader.current()
    }

    /// The configuration with provenance, for `/config` and `--print-config`.
    pub fn loaded(&self) -> Loaded<Settings<S>> {
        self.reloader.loaded()
    }

    /// Reload control and status.
    pub fn reloader(&self) -> &Reloader<Settings<S>> {
        &self.reloader
    }
}

/// What the runtime reads of a configuration whose service part it does not know.
trait PlatformView: Send + Sync {
    /// The platform's sections in force now.
    fn platform(&self) -> Settings;
    /// The whole configuration with provenance, secrets redacted (`/config`).
    fn render(&self) -> String;
    /// The libraries' sections in force now.
    fn sections(&self) -> platform_config::Sections;
}

impl<S: AppSettings> PlatformView for Config<S> {
    fn platform(&self) -> Settings {
        self.current().platform()
    }

    fn render(&self) -> String {
        self.loaded().render()
    }

    fn sections(&self) -> platform_config::Sections {
        self.loaded().sections()
    }
}

impl Runtime {
    /// Starts building the runtime of the service `name` whose own settings
    /// are `S` (`()` for none); give its version with
    /// [`RuntimeBuilder::version`], or use [`runtime!`](crate::runtime),
    /// which takes both from the calling crate.
    pub fn builder<S: AppSettings>(name: impl Into<String>) -> RuntimeBuilder<S> {
        RuntimeBuilder {
            name: name.into(),
            // Not the SDK's own version: that would be reported as the
            // service's. Unknown until given.
            version: String::new(),
            args: None,
            loader: Loader::new(),
            default_config_dir: None,
            signals: true,
            telemetry: true,
            span_exporter: None,
            rules: Vec::new(),
            _settings: PhantomData,
        }
    }

    /// Who this process is.
    pub fn info(&self) -> &ServiceInfo {
        &self.inner.info
    }

    /// The platform's sections of the configuration in force now (the
    /// service's own are in its [`Config`]).
    pub fn settings(&self) -> Settings {
        self.inner.config.platform()
    }

    /// The library section `X` in force now, if the builder was given it
    /// ([`RuntimeBuilder::section`]).
    pub fn section<X: platform_config::Section>(&self) -> Option<Arc<X>> {
        self.inner.config.sections().get::<X>()
    }

    /// The whole configuration in force, with the source of each value and
    /// secrets redacted (what `/config` shows).
    pub fn render_config(&self) -> String {
        self.inner.config.render()
    }

    /// The health registry: add the service's own checks here.
    pub fn health(&self) -> &HealthRegistry {
        &self.inner.health
    }

    /// The resilience policies (budget, breaker, ...) of each target this
    /// process calls, shared by all its clients of that target. Owned by the
    /// runtime, not the process: two runtimes (tests) share nothing.
    pub fn targets(&self) -> &ResilienceRegistry {
        &self.inner.targets
    }

    /// A meter of the runtime's meter provider, for instruments of the
    /// platform's layers and the service's own: what telemetry exports.
    /// Without telemetry (`without_telemetry`), the process-wide provider's.
    pub fn meter(&self, scope: &'static str) -> Meter {
        self.inner.meters.meter(scope)
    }

    /// The runtime's meter provider, for parts built apart from it (a
    /// client's builder) whose instruments should be exported with the rest.
    pub fn meters(&self) -> &Meters {
        &self.inner.meters
    }

    /// Shutdown signal, background tasks and hooks.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    /// The Prometheus exposition of the service's metrics (for `/metrics`),
    /// when telemetry is on with `telemetry.metrics.prometheus`.
    pub fn prometheus(&self) -> Option<&platform_telemetry::PrometheusHandle> {
        self.inner.prometheus.as_ref()
    }

    /// Registers this instance, listening on `bound`, in etcd when
    /// `discovery.registration.enabled`: the record is kept alive under a
    /// lease, its state shows as the readiness-neutral check `registration`,
    /// and it is removed as soon as shutdown starts (before the drain delay
    /// ends, so callers stop picking this instance while it still serves).
    /// The HTTP server calls this with its API address.
    pub fn register_endpoint(&self, bound: std::net::SocketAddr) -> Result<(), Error> {
        let config = self.settings();
        if !config.discovery.registration.enabled {
            return Ok(());
        }
        self.start_registration(bound, &config)
    }

    #[cfg(feature = "etcd")]
    fn start_registration(
        &self,
        bound: std::net::SocketAddr,
        config: &Settings,
    ) -> Result<(), Error> {
        use crate::discovery::{Registration, RegistrationState};
        use crate::lifecycle::HookPhase;
        let settings = &config.discovery.registration;
        let endpoint = settings
            .advertised_endpoint(bound)?
            .with_version(&self.inner.info.version);
        let registration = Registration::start(
            &self.inner.info.name,
            &endpoint,
            &config.discovery.etcd,
            settings,
        )?;
        let check = self
            .health()
            .manual(checks::REGISTRATION, &[Kind::Readiness], Status::Pass)?;
        let mut states = registration.subscribe();
        self.lifecycle()
            .spawn_task("registration-health", move |token| async move {
                loop {
                    let outcome = match &*states.borrow_and_update() {
                        RegistrationState::Registered { .. } => CheckOutcome::pass(),
                        RegistrationState::Registering => CheckOutcome::warn("registering in etcd"),
                        RegistrationState::Lost { reason } => {
                            CheckOutcome::warn(format!("registration lost, retrying: {reason}"))
                        }
                        RegistrationState::Deregistered => CheckOutcome::warn("deregistered"),
                    };
                    check.set(outcome);
                    tokio::select! {
                        _ = token.cancelled() => return,
                        changed = states.changed() => if changed.is_err() { return },
                    }
                }
            });
        tracing::info!(key = registration.key(), "registering in etcd");
        self.lifecycle().on_shutdown(HookPhase::Draining, "deregister", move || async move {
            let key = registration.key().to_owned();
            match registration.deregister().await {
                Ok(()) => tracing::info!(%key, "deregistered from etcd"),
                Err(e) => tracing::warn!(%key, error = %e, "deregistration failed; the record expires with its lease"),
            }
        });
        Ok(())
    }

    #[cfg(not(feature = "etcd"))]
    fn start_registration(
        &self,
        _bound: std::net::SocketAddr,
        _config: &Settings,
    ) -> Result<(), Error> {
        Err(Error::RegistrationUnavailable)
    }

    /// Marks start-up finished: the startup probe passes and readiness may.
    pub fn mark_started(&self) {
        self.inner.startup.set(CheckOutcome::pass());
    }

    /// Runs `server` until shutdown, then the shutdown sequence (see
    /// [`crate::lifecycle`]). The server must stop accepting when
    /// `lifecycle().stop_accepting()` completes.
    pub async fn run<F>(&self, server: F) -> Result<ShutdownOutcome, Error>
    where
        F: std::future::Future<Output = std::io::Result<()>>,
    {
        let outcome = self.inner.lifecycle.run(&self.inner.shutdown, server).await;
        self.inner.health.stop();
        drop(
            self.inner
                .watch
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let telemetry = self
            .inner
            .telemetry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(telemetry) = telemetry {
            // Last step: everything recorded during shutdown is flushed too.
            if let Err(e) = telemetry.shutdown().await {
                eprintln!("telemetry shutdown: {e}");
            }
        }
        match &outcome.server_error {
            Some(e) => Err(Error::Serve {
                what: "api",
                source: std::io::Error::other(e.clone()),
            }),
            None => Ok(outcome),
        }
    }
}
