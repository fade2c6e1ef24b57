//! The HTTP client's settings: the `http` section of the configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use platform_config::{Section, Validation};

/// Outgoing HTTP calls (platform-http), one entry per named client. Read
/// when the runtime's builder is given `.requires_client(name)` or
/// `.http_clients()`.
#[platform_config::settings(validate_with = Self::check)]
#[derive(PartialEq)]
pub struct HttpSettings {
    /// Named clients: `[http.clients.inventory]` configures `Client::for_service(&rt, "inventory")`.
    pub clients: BTreeMap<String, ClientSettings>,
}

impl HttpSettings {
    fn check(&self, v: &mut Validation) {
        for (name, client) in &self.clients {
            v.section(&format!("clients.{name}"), client);
        }
    }
}

/// One named HTTP client: where it calls and how it behaves when that fails.
#[platform_config::settings(validate_with = Self::check)]
#[derive(PartialEq)]
pub struct ClientSettings {
    /// Base URL of the target, e.g. `http://inventory:8081`. With `discovery`
    /// set, only its scheme and path prefix are used; the host comes from discovery.
    pub base_url: String,
    /// Where the target's endpoints come from, instead of the host of
    /// `base_url`: `static://host:port,host:port`, `dns://name:port` (A/AAAA),
    /// `dns+srv://_http._tcp.name` (SRV), or `etcd://service`. Empty: `base_url`'s host.
    pub discovery: String,
    /// With `discovery` set, `Client::for_service` adds the health check
    /// `discovery:<name>` (readiness; it warns while discovery is pending,
    /// stale or empty and never fails readiness, since the last known
    /// endpoints keep serving). `false` leaves it out.
    #[setting(default = true)]
    pub discovery_check: bool,
    /// How requests are spread over the endpoints.
    pub balance: platform_core::balance::BalanceSettings,
    /// Time to establish a connection.
    #[setting(default = Duration::from_secs(1))]
    pub connect_timeout: Duration,
    /// Time one attempt may take, response body included.
    #[setting(default = Duration::from_secs(2))]
    pub attempt_timeout: Duration,
    /// Request bodies up to this size are buffered so a retry can resend them;
    /// larger or streaming bodies are sent once and never retried.
    #[setting(size, default = 64 * 1024)]
    pub max_replay_body: u64,
    /// Largest answer body read; a larger one is refused (`ResponseTooLarge`), not buffered.
    #[setting(size, default = 16 * 1024 * 1024)]
    pub max_response_body: u64,
    /// Headers sent with every request (values are not secrets: use code for credentials).
    pub headers: BTreeMap<String, String>,
    /// Total time a call may take, every attempt and backoff included, when the caller has no deadline.
    // A client's resilience defaults are ResilienceSettings' (a test below
    // keeps the policies' equal too).
    #[setting(default = platform_core::resilience::ResilienceSettings::default().total_timeout)]
    pub total_timeout: Duration,
    /// Retries.
    pub retry: platform_core::resilience::RetrySettings,
    /// Retry budget shared by every call to this target.
    pub budget: platform_core::resilience::BudgetSettings,
    /// Circuit breaker for the whole target.
    pub breaker: platform_core::resilience::BreakerSettings,
    /// Outlier ejection of single endpoints.
    pub outlier: platform_core::resilience::OutlierSettings,
    /// Hedged requests for idempotent calls (on by default).
    pub hedge: platform_core::resilience::HedgeSettings,
    /// Adaptive throttling: calls refused locally while the target refuses
    /// most as overloaded (on by default).
    pub throttle: platform_core::resilience::ThrottleSettings,
    /// At most this many calls to the target at once; one more fails at
    /// once with `BulkheadFull`, without a queue. 0: no limit (the default).
    pub max_concurrent_calls: u32,
}

impl ClientSettings {
    /// The resilience part, for [`platform_core::resilience::Resilience::new`].
    pub fn resilience(&self) -> platform_core::resilience::ResilienceSettings {
        platform_core::resilience::ResilienceSettings {
            total_timeout: self.total_timeout,
            retry: self.retry.clone(),
            budget: self.budget.clone(),
            breaker: self.breaker.clone(),
            outlier: self.outlier.clone(),
            hedge: self.hedge.clone(),
            throttle: self.throttle.clone(),
            max_concurrent_calls: self.max_concurrent_calls,
        }
    }
}

impl ClientSettings {
    fn check(&self, v: &mut Validation) {
        if let Err(reason) = base_url(&self.base_url) {
            v.error("base_url", reason);
        }
        let resilience = self.resilience();
        platform_core::settings::check_client(
            platform_core::settings::ClientRules {
                discovery: &self.discovery,
                balance: &self.balance,
                connect_timeout: self.connect_timeout,
                attempt_timeout: self.attempt_timeout,
                resilience: &resilience,
            },
            v,
        );
        for (name, value) in &self.headers {
            let key = format!("headers.{name}");
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                v.error(&key, "is not a valid header name");
            } else if http::HeaderValue::from_str(value).is_err() {
                v.error(&key, "is not a valid header value (control characters?)");
            }
        }
    }
}

/// A base URL the HTTP client can call: the client's own reading of it
/// (http, or https with TLS built in; a host and a port; no query,
/// fragment or credentials).
fn base_url(text: &str) -> Result<(), String> {
    super::endpoints::Endpoint::parse(text).map(drop)
}

impl Section for HttpSettings {
    const KEY: &'static str = "http";
}

impl platform_core::ClientsSection for HttpSettings {
    fn client_names(&self) -> Vec<&str> {
        self.clients.keys().map(String::as_str).collect()
    }
}

platform_core::clients_builder_ext! {
    /// What platform-http adds to the runtime's builder.
    pub trait RuntimeBuilderExt for HttpSettings, "http", "[`Client::for_service`](crate::Client::for_service)" {
        fn http_clients;
        fn requires_client;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_resilience_defaults_are_the_resilience_settings_defaults() {
        assert_eq!(
            ClientSettings::default().resilience(),
            platform_core::resilience::ResilienceSettings::default()
        );
    }
}
