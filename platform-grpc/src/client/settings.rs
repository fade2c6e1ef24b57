//! The gRPC channels' settings: the `grpc` section of the configuration.
//!
//! A section of its own rather than entries under `http.clients`: a gRPC
//! target is named by a `host:port` authority, not a base URL; what is
//! retried is a status code, not an HTTP status; idempotency is a property
//! of a method (`package.Service/Method`), not of an HTTP verb; and
//! messages, not bodies, are replayed. The shared parts (discovery,
//! balancing, timeouts, retry, budget, breaker, outlier ejection, hedging,
//! throttle, bulkhead) are the very same platform-core types, under the
//! same keys, so an entry reads like its HTTP sibling.

use std::collections::BTreeMap;
use std::time::Duration;

use platform_config::{Section, Validation};

use super::call::MethodPattern;
use super::codes::Code;

/// Outgoing gRPC calls (platform-grpc), one entry per named channel. Read
/// when the runtime's builder is given `.requires_grpc_client(name)` or
/// `.grpc_clients()` ([`GrpcRuntimeBuilderExt`]).
#[platform_config::settings(validate_with = Self::check)]
#[derive(PartialEq)]
pub struct GrpcSettings {
    /// Named channels: `[grpc.clients.inventory]` configures `Channel::for_service(&rt, "inventory")`.
    pub clients: BTreeMap<String, GrpcClientSettings>,
}

impl GrpcSettings {
    fn check(&self, v: &mut Validation) {
        for (name, client) in &self.clients {
            v.section(&format!("clients.{name}"), client);
        }
    }
}

impl Section for GrpcSettings {
    const KEY: &'static str = "grpc";
}

impl platform_core::ClientsSection for GrpcSettings {
    fn client_names(&self) -> Vec<&str> {
        self.clients.keys().map(String::as_str).collect()
    }
}

/// One named gRPC channel: where its calls go and how they behave when that fails.
#[platform_config::settings(validate_with = Self::check)]
#[derive(PartialEq)]
pub struct GrpcClientSettings {
    /// The target's address, `host:port` (`inventory:9090`), one HTTP/2
    /// connection without TLS. With `discovery` set it may stay empty.
    pub address: String,
    /// Where the target's endpoints come from, instead of `address`:
    /// `static://host:port,host:port`, `dns://name:port` (A/AAAA),
    /// `dns+srv://_grpc._tcp.name` (SRV), or `etcd://service`.
    pub discovery: String,
    /// With `discovery` set, `Channel::for_service` adds the health check
    /// `grpc-discovery:<name>` (readiness; it warns while discovery is
    /// pending, stale or empty and never fails readiness). `false` leaves it out.
    #[setting(default = true)]
    pub discovery_check: bool,
    /// How calls are spread over the endpoints.
    pub balance: platform_core::balance::BalanceSettings,
    /// Time to establish a connection (TCP and the HTTP/2 handshake).
    #[setting(default = Duration::from_secs(1))]
    pub connect_timeout: Duration,
    /// Time one attempt may take until the response headers arrive (the
    /// moment a gRPC call commits); the stream after them is bounded by the
    /// call's deadline only.
    #[setting(default = Duration::from_secs(2))]
    pub attempt_timeout: Duration,
    /// Status codes retried, by name (`UNAVAILABLE`) or number, for every
    /// method: the server's answer says the call was not done (gRPC A6's
    /// `retryableStatusCodes`).
    #[setting(default = vec!["UNAVAILABLE".to_owned()])]
    pub retry_codes: Vec<String>,
    /// Status codes retried for some methods instead of `retry_codes`
    /// (gRPC's per-method `retryPolicy`): keys are `package.Service/Method`
    /// or `package.Service/*`, a method's own entry winning over its
    /// service's; values as in `retry_codes`, an empty list for "never on a
    /// status". Say `ABORTED` for a method whose conflicts are safe to retry.
    pub method_retry_codes: BTreeMap<String, Vec<String>>,
    /// Methods safe to repeat, `package.Service/Method` or `package.Service/*`:
    /// hedged (when hedging is on), and also retried after a failure that
    /// may have reached the server without an answer (a reset, an attempt
    /// timeout). Other methods are retried only on `retry_codes` and when
    /// the request never left the client.
    pub idempotent_methods: Vec<String>,
    /// Request messages up to this size (the whole request body of a unary
    /// or finished client stream) are kept so a retry can resend them; a
    /// larger or still-open stream is sent once and never retried after its
    /// first message leaves.
    #[setting(size, default = 64 * 1024)]
    pub max_replay_message: u64,
    /// Total time a call may take, every attempt and backoff included, when
    /// the caller has no earlier deadline (tonic's `Request::set_timeout`,
    /// or the request being served). The server is given what is left of it
    /// as `grpc-timeout`, so it bounds a response stream too: raise it for
    /// a channel whose streams stay open longer.
    #[setting(default = platform_core::resilience::ResilienceSettings::default().total_timeout)]
    pub total_timeout: Duration,
    /// Retries (`max_attempts` at most 5, as gRPC A6 allows).
    pub retry: platform_core::resilience::RetrySettings,
    /// Retry budget shared by every call to this target.
    pub budget: platform_core::resilience::BudgetSettings,
    /// Circuit breaker for the whole target.
    pub breaker: platform_core::resilience::BreakerSettings,
    /// Outlier ejection of single endpoints.
    pub outlier: platform_core::resilience::OutlierSettings,
    /// Hedged calls for the `idempotent_methods` (on by default).
    pub hedge: platform_core::resilience::HedgeSettings,
    /// Adaptive throttling: calls refused locally while the target refuses
    /// most as overloaded (on by default).
    pub throttle: platform_core::resilience::ThrottleSettings,
    /// At most this many calls to the target at once (a call holds its
    /// place until its response ends); one more fails at once with
    /// RESOURCE_EXHAUSTED, without a queue. 0: no limit.
    pub max_concurrent_calls: u32,
}

impl GrpcClientSettings {
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

    /// The retried codes, or the first entry that is not a status code.
    pub(crate) fn codes(&self) -> Result<Vec<Code>, (String, String)> {
        parse_codes(&self.retry_codes, "retry_codes")
    }

    /// `method_retry_codes`, a method's own entries before its service's,
    /// or the key of the first entry that is wrong and why.
    pub(crate) fn method_codes(&self) -> Result<MethodCodes, (String, String)> {
        let mut parsed = self
            .method_retry_codes
            .iter()
            .map(|(method, codes)| {
                let key = format!("method_retry_codes.{method}");
                let pattern = MethodPattern::parse(method).map_err(|r| (key.clone(), r))?;
                Ok::<_, (String, String)>((pattern, parse_codes(codes, &key)?))
            })
            .collect::<Result<Vec<_>, _>>()?;
        parsed.sort_by_key(|(pattern, _)| pattern.is_wildcard());
        Ok(parsed)
    }

    fn check(&self, v: &mut Validation) {
        if self.discovery.trim().is_empty()
            && let Err(reason) = super::endpoints::authority(&self.address)
        {
            v.error("address", reason);
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
        if let Err((key, reason)) = self.codes() {
            v.error(&key, reason);
        }
        if let Err((key, reason)) = self.method_codes() {
            v.error(&key, reason);
        }
        for (i, method) in self.idempotent_methods.iter().enumerate() {
            if let Err(reason) = MethodPattern::parse(method) {
                v.error(&format!("idempotent_methods.{i}"), reason);
            }
        }
    }
}

/// Methods with retried codes of their own, a method's entries first.
pub(crate) type MethodCodes = Vec<(MethodPattern, Vec<Code>)>;

/// Status codes by name or number; the key (`<key>.<i>`) of the first
/// that is not one, and why.
fn parse_codes(names: &[String], key: &str) -> Result<Vec<Code>, (String, String)> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            Code::parse(name).ok_or_else(|| {
                (
                    format!("{key}.{i}"),
                    format!("{name:?} is not a gRPC status code (UNAVAILABLE, 14, ...)"),
                )
            })
        })
        .collect()
}

platform_core::clients_builder_ext! {
    /// What platform-grpc adds to the runtime's builder (named apart from
    /// platform-http's `RuntimeBuilderExt`, so both can be imported).
    pub trait GrpcRuntimeBuilderExt for GrpcSettings, "grpc", "[`Channel::for_service`](crate::Channel::for_service)" {
        fn grpc_clients;
        fn requires_grpc_client;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channels_resilience_defaults_are_the_resilience_settings_defaults() {
        assert_eq!(
            GrpcClientSettings::default().resilience(),
            platform_core::resilience::ResilienceSettings::default()
        );
    }

    #[test]
    fn method_retry_codes_name_the_wrong_entry_and_put_methods_before_services() {
        let mut s = GrpcClientSettings::default();
        let entry = |codes: &[&str]| codes.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
        s.method_retry_codes = [
            ("inventory.v1.Stock/*".to_owned(), entry(&["UNAVAILABLE"])),
            (
                "inventory.v1.Stock/Reserve".to_owned(),
                entry(&["aborted", "10"]),
            ),
        ]
        .into();
        let parsed = s.method_codes().unwrap();
        assert!(!parsed[0].0.is_wildcard(), "the method's own entry first");
        assert_eq!(parsed[0].1, [Code(10), Code(10)]);
        assert!(parsed[1].0.is_wildcard());

        s.method_retry_codes.insert(
            "inventory.v1.Stock/Reserve".to_owned(),
            entry(&["ABORTED", "NEVER"]),
        );
        assert_eq!(
            s.method_codes().unwrap_err().0,
            "method_retry_codes.inventory.v1.Stock/Reserve.1"
        );
        s.method_retry_codes = [("Stock".to_owned(), entry(&["ABORTED"]))].into();
        assert_eq!(s.method_codes().unwrap_err().0, "method_retry_codes.Stock");
        let mut v = Validation::default();
        s.check(&mut v);
        assert!(
            v.errors()
                .iter()
                .any(|(key, _)| key == "method_retry_codes.Stock"),
            "{:?}",
            v.errors()
        );
    }

    #[test]
    fn retry_codes_by_name_or_number() {
        let mut s = GrpcClientSettings::default();
        assert_eq!(s.codes().unwrap(), [Code::UNAVAILABLE]);
        s.retry_codes = vec!["14".into(), "resource_exhausted".into(), "NOPE".into()];
        assert_eq!(s.codes().unwrap_err().0, "retry_codes.2");
    }
}
