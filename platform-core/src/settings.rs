//! The platform's own config sections, and the root type a service loads.

use std::time::Duration;

use platform_config::{Validate, Validation};
use serde::{Deserialize, Serialize};

/// Everything a platform service reads from config: the platform's sections
/// and the service's own, under `[app]`. A library's section (platform-http's
/// `http`) is read beside them when the runtime's builder is given it
/// ([`RuntimeBuilder::section`](crate::RuntimeBuilder::section)). `Settings` alone (`S = ()`) is the
/// platform's part, what [`Runtime::settings`](crate::Runtime::settings) gives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(bound = "S: schemars::JsonSchema + Default + Serialize")]
pub struct Settings<S = ()> {
    /// The service's API listener.
    pub server: ServerSettings,
    /// The admin listener: probes, metrics, info.
    pub admin: AdminSettings,
    /// Graceful shutdown.
    pub shutdown: ShutdownSettings,
    /// Configuration reload.
    pub reload: ReloadSettings,
    /// Logs, traces and metrics (the standard `OTEL_*` variables and `RUST_LOG` rank above these).
    pub telemetry: platform_telemetry::TelemetrySettings,
    /// How discovery backends are reached, and self-registration in etcd.
    pub discovery: crate::discovery::DiscoverySettings,
    /// The service's own settings.
    pub app: S,
}

impl<S> Settings<S> {
    /// The platform's sections alone (a copy: for start-up and reload, not per request).
    pub fn platform(&self) -> Settings {
        Settings {
            server: self.server.clone(),
            admin: self.admin.clone(),
            shutdown: self.shutdown.clone(),
            reload: self.reload.clone(),
            telemetry: self.telemetry.clone(),
            discovery: self.discovery.clone(),
            app: (),
        }
    }
}

impl<S: Validate> Validate for Settings<S> {
    fn validate(&self, v: &mut Validation) {
        v.section("server", &self.server);
        v.section("admin", &self.admin);
        v.section("shutdown", &self.shutdown);
        v.section("telemetry", &self.telemetry);
        if let Err(crate::discovery::DiscoveryError::InvalidSettings { key, reason }) =
            self.discovery.validate()
        {
            v.error(key, reason);
        }
        v.section("app", &self.app);
        // Port 0 (any free port, in tests) is the one legitimate repeat.
        let fixed_port = |bind: &str| {
            bind.parse::<std::net::SocketAddr>()
                .is_ok_and(|a| a.port() != 0)
        };
        if self.server.enabled
            && self.admin.enabled
            && self.server.bind == self.admin.bind
            && fixed_port(&self.server.bind)
        {
            v.error(
                "admin.bind",
                "must differ from server.bind: the admin server listens on its own port",
            );
        }
    }
}

fn check_bind(v: &mut Validation, bind: &str) {
    v.check(
        bind.parse::<std::net::SocketAddr>().is_ok(),
        "bind",
        format!("expected ip:port (e.g. 0.0.0.0:8080), got {bind:?}"),
    );
}

/// The service's API listener.
#[platform_config::settings(validate_with = Self::check)]
#[derive(PartialEq)]
pub struct ServerSettings {
    /// Serve the API at all (off for workers with only an admin port).
    #[setting(default = true)]
    pub enabled: bool,
    /// Address and port of the API.
    #[setting(default = "0.0.0.0:8080")]
    pub bind: String,
    /// A client must send a request's headers within this time once it has
    /// begun them, and read what it is sent: an HTTP/1 connection stuck this
    /// long in either is closed.
    #[setting(default = Duration::from_secs(10))]
    pub header_read_timeout: Duration,
    /// An HTTP/1 keep-alive connection with no request for this long is
    /// closed. Longer than the platform client keeps an idle connection
    /// (60 s), so that a client never sends on one the server is closing.
    #[setting(default = Duration::from_secs(120))]
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers) accepted.
    #[setting(size, default = 64 * 1024)]
    pub max_header_size: u64,
    /// Largest request body accepted.
    #[setting(size, default = 2 * 1024 * 1024)]
    pub max_body_size: u64,
    /// Default deadline of a request when the caller sends none.
    #[setting(default = Duration::from_secs(30))]
    pub request_timeout: Duration,
    /// The concurrency limit: requests beyond it get 503 at once rather
    /// than a place in a queue (the admin port is never limited).
    pub limit: LimitSettings,
    /// A rate limit on the whole API (off by default; a route can have its
    /// own with `platform_http::server::RateLimitLayer`).
    pub rate_limit: RateLimitSettings,
}

/// A token-bucket rate limit: requests beyond it get 429 with `Retry-After`.
#[platform_config::settings(validate_with = Self::check)]
#[derive(PartialEq)]
pub struct RateLimitSettings {
    /// Requests a second on average; 0 turns the limit off.
    pub rate: f64,
    /// Requests let through at once above the rate, after a quiet spell.
    #[setting(default = 100)]
    pub burst: u32,
}

impl RateLimitSettings {
    fn check(&self, v: &mut Validation) {
        v.check(
            self.rate.is_finite() && self.rate >= 0.0,
            "rate",
            format!(
                "must be a number of requests a second, 0 or more, got {}",
                self.rate
            ),
        );
        v.check(self.burst >= 1, "burst", "must be at least 1");
    }
}

/// How the API listener's concurrency limit is set.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    /// Follows latency: shrinks when answers slow down under load (a
    /// gradient limit; see platform-http's `server::limit` docs).
    #[default]
    Adaptive,
    /// Always `max`.
    Static,
    /// No limit: every request is accepted and waits its turn.
    Off,
}

/// The API listener's concurrency limit.
#[platform_config::settings(validate_with = Self::check)]
#[derive(PartialEq)]
pub struct LimitSettings {
    /// `adaptive` (follows latency), `static` (always `max`) or `off`.
    #[setting(default = LimitMode::Adaptive)]
    pub mode: LimitMode,
    /// Where the adaptive limit starts.
    #[setting(default = 100)]
    pub initial: u32,
    /// The adaptive limit never goes below this.
    #[setting(default = 8)]
    pub min: u32,
    /// The adaptive limit never goes above this; the static limit.
    #[setting(default = 1000)]
    pub max: u32,
    /// How much slower than with no load answers may get before the
    /// adaptive limit shrinks (1.25: a quarter slower, Envoy's adaptive
    /// concurrency buffer; more lets the queue, and latency, grow further).
    #[setting(default = 1.25)]
    pub tolerance: f64,
    /// How often the adaptive limit is recomputed (from the answers of
    /// the last window, ten at least).
    #[setting(default = Duration::from_millis(100))]
    pub window: Duration,
}

impl LimitSettings {
    fn check(&self, v: &mut Validation) {
        v.check(self.max >= 1, "max", "must be at least 1");
        // The bounds of a limit that moves; a static one is only `max`.
        if self.mode == LimitMode::Adaptive {
            v.check(self.min >= 1, "min", "must be at least 1");
            v.check(self.max >= self.min, "max", "must be at least min");
            v.check(
                (self.min..=self.max).contains(&self.initial),
                "initial",
                "must be between min and max",
            );
        }
        v.check(
            self.tolerance.is_finite() && self.tolerance >= 1.0,
            "tolerance",
            format!("must be a number of at least 1, got {}", self.tolerance),
        );
        v.above_zero("window", self.window);
    }
}

impl ServerSettings {
    fn check(&self, v: &mut Validation) {
        check_bind(v, &self.bind);
        v.above_zero("header_read_timeout", self.header_read_timeout);
        v.above_zero("idle_timeout", self.idle_timeout);
        v.check(
            self.max_header_size >= 1024,
            "max_header_size",
            "must be at least 1KiB",
        );
        v.above_zero("request_timeout", self.request_timeout);
        v.section("limit", &self.limit);
        v.section("rate_limit", &self.rate_limit);
    }
}

/// The admin listener.
#[platform_config::settings(validate_with = Self::check)]
#[derive(PartialEq)]
pub struct AdminSettings {
    /// Serve the admin endpoints.
    #[setting(default = true)]
    pub enabled: bool,
    /// Address and port of the admin endpoints; all interfaces by default so the kubelet can probe.
    #[setting(default = "0.0.0.0:9090")]
    pub bind: String,
    /// Serve `/config` (the effective configuration, secrets redacted). Off by default: it shows internals.
    pub config_endpoint: bool,
}

impl AdminSettings {
    fn check(&self, v: &mut Validation) {
        check_bind(v, &self.bind);
    }
}

/// Graceful shutdown on SIGTERM or SIGINT.
#[platform_config::settings]
#[derive(PartialEq)]
pub struct ShutdownSettings {
    /// After the signal, keep serving this long with readiness failing, so load balancers stop sending traffic.
    #[setting(default = Duration::from_secs(5))]
    pub drain_delay: Duration,
    /// Then stop accepting; in-flight requests, background tasks and shutdown hooks share this long before what is left is cut (one budget of drain_delay + grace_period from the signal).
    // With the telemetry flush (5 s) and the admin server (1 s) the worst
    // case is 36 s: the manifests' terminationGracePeriodSeconds is 40.
    #[setting(default = Duration::from_secs(25))]
    pub grace_period: Duration,
}

/// Configuration reload.
#[platform_config::settings]
#[derive(PartialEq)]
pub struct ReloadSettings {
    /// Watch the config directory and reload on change.
    #[setting(default = true)]
    pub enabled: bool,
    /// Quiet period after the last change before reloading.
    #[setting(default = platform_config::reload::DEFAULT_DEBOUNCE)]
    pub debounce: Duration,
}

/// What every transport's client settings have in common, for
/// [`check_client`]: the keys they share, under the same names.
#[derive(Debug, Clone, Copy)]
pub struct ClientRules<'a> {
    /// `discovery`: a target string, or empty for none.
    pub discovery: &'a str,
    /// `balance`.
    pub balance: &'a crate::balance::BalanceSettings,
    /// `connect_timeout`.
    pub connect_timeout: Duration,
    /// `attempt_timeout`.
    pub attempt_timeout: Duration,
    /// `total_timeout`, `retry`, `budget`, `breaker`, `outlier`, `hedge`,
    /// `throttle`, `max_concurrent_calls`.
    pub resilience: &'a crate::resilience::ResilienceSettings,
}

/// Checks the rules every client's settings share (platform-http's
/// `http.clients.<name>`, platform-grpc's `grpc.clients.<name>`), keys
/// relative to the client's entry: a discovery target that parses and is
/// compiled in, balancing, timeouts above zero and an attempt no longer
/// than the call, and the resilience policies' own rules, checked without
/// building policies (so `--check-config` makes no instruments).
pub fn check_client(client: ClientRules<'_>, v: &mut Validation) {
    if !client.discovery.trim().is_empty() {
        match client.discovery.parse::<crate::discovery::Target>() {
            Err(e) => v.error("discovery", e.to_string()),
            Ok(target) => {
                if let Some(feature) = target.missing_feature() {
                    v.error(
                        "discovery",
                        format!("`{target}` needs the cargo feature `{feature}` of platform-core"),
                    );
                }
            }
        }
    }
    if let Err(crate::balance::BalanceError::InvalidSettings { key, reason }) =
        client.balance.validate()
    {
        v.error(key, reason);
    }
    v.above_zero("connect_timeout", client.connect_timeout);
    v.above_zero("attempt_timeout", client.attempt_timeout);
    v.check(
        client.attempt_timeout <= client.resilience.total_timeout,
        "attempt_timeout",
        "must not exceed total_timeout",
    );
    if let Err(e) = client.resilience.check() {
        v.error(e.key, format!("{} (got {})", e.reason, e.value));
    }
}
