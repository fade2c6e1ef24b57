//! Settings of the resilience layer, one type per policy, grouped in
//! [`ResilienceSettings`]. They become `http.clients.<name>.retry`,
//! `.budget`, `.breaker`, `.outlier` and `.hedge` in the HTTP client's config.
//!
//! Every default works as-is and comes from a production system that chose it
//! for a reason (named on each field). Settings are plain data: turning them
//! into policies ([`RetryPolicy::from_settings`](super::RetryPolicy::from_settings),
//! [`RetryBudget::new`](super::RetryBudget::new), ...) validates them, and an
//! impossible policy is an [`Err`](super::SettingsError), never a silent clamp.

use std::time::Duration;

use super::SettingsError;

/// All resilience settings of one call target.
#[platform_config::settings]
#[derive(PartialEq)]
pub struct ResilienceSettings {
    /// Total time a call may take, all attempts and backoff sleeps included,
    /// used when the caller has no deadline of its own (an inherited deadline
    /// or a per-call one always wins when it is shorter).
    #[setting(default = Duration::from_secs(10))]
    pub total_timeout: Duration,
    /// Retries: how many attempts and how long to wait between them.
    pub retry: RetrySettings,
    /// Retry budget shared by every call to the target.
    pub budget: BudgetSettings,
    /// Per-target circuit breaker (fail fast while the whole target is down).
    pub breaker: BreakerSettings,
    /// Per-endpoint outlier ejection.
    pub outlier: OutlierSettings,
    /// Hedged requests for idempotent calls.
    pub hedge: HedgeSettings,
    /// Client-side adaptive throttling of an overloaded target.
    pub throttle: ThrottleSettings,
    /// At most this many calls to the target at once; one more is refused
    /// at once, without a queue (a bulkhead). 0: no limit (the default).
    pub max_concurrent_calls: u32,
}

/// Client-side adaptive throttling (Google SRE book, "Handling Overload").
#[platform_config::settings]
#[derive(PartialEq)]
pub struct ThrottleSettings {
    /// Refuse calls locally, at once, while the target refuses most of them
    /// as overloaded (a platform server's overloaded 503, or 429).
    #[setting(default = true)]
    pub enabled: bool,
    /// How much more than it accepts the target keeps being sent: a call is
    /// refused locally with probability max(0, (requests − k × accepts) /
    /// (requests + 1)). The SRE book's 2; at least 1.
    #[setting(default = 2.0)]
    pub k: f64,
    /// The sliding window requests and accepts are counted over (at least 1s).
    #[setting(default = Duration::from_secs(120))]
    pub window: Duration,
}

/// Retry settings: attempts and exponential backoff with full jitter.
#[platform_config::settings]
#[derive(PartialEq)]
pub struct RetrySettings {
    /// Retry failed attempts at all. When false every call makes one attempt.
    #[setting(default = true)]
    pub enabled: bool,
    /// Attempts per call, the first one included (gRPC A6 default 3). At most
    /// 5: a larger value is rejected rather than clamped.
    #[setting(default = 3)]
    pub max_attempts: u32,
    /// Base of the exponential backoff: the n-th retry sleeps a random time in
    /// `[0, min(max_backoff, base_backoff * 2^(n-1))]` ("full jitter", AWS).
    #[setting(default = Duration::from_millis(100))]
    pub base_backoff: Duration,
    /// Upper bound of one backoff sleep.
    #[setting(default = Duration::from_secs(5))]
    pub max_backoff: Duration,
    /// Requeues per call: an attempt that never reached a server because of
    /// its endpoint (connection refused, connect failed) is sent again at
    /// once to another endpoint, when there is one, whatever the method,
    /// without drawing on the retry budget or using up an attempt (Finagle's
    /// requeues, gRPC A6's transparent retries). This bounds them, so a dead
    /// target costs at most `max_requeues` more connection attempts per
    /// call. At most 10; 0 turns requeues off.
    #[setting(default = 3)]
    pub max_requeues: u32,
}

/// Retry budget settings (Finagle's `RetryBudget`).
#[platform_config::settings]
#[derive(PartialEq)]
pub struct BudgetSettings {
    /// Limit retries by a budget shared by all calls to the target. When false
    /// retries are limited by `retry.max_attempts` alone (up to 5x the load on
    /// a failing target).
    #[setting(default = true)]
    pub enabled: bool,
    /// Share of the request rate that retries may add: 0.2 lets retries add at
    /// most 20% to the load (Finagle's default). Between 0 and 10.
    #[setting(default = 0.2)]
    pub retry_ratio: f64,
    /// Retries always allowed per second, whatever the request rate, so that a
    /// target with little traffic can still retry (Finagle's default 10).
    #[setting(default = 10)]
    pub min_retries_per_second: u32,
    /// How long a request counts towards the budget (Finagle's default 10s).
    /// Between 1s and 60s.
    #[setting(default = Duration::from_secs(10))]
    pub ttl: Duration,
}

/// Per-target circuit breaker settings.
#[platform_config::settings]
#[derive(PartialEq)]
pub struct BreakerSettings {
    /// Fail fast while the whole target is down.
    #[setting(default = true)]
    pub enabled: bool,
    /// Consecutive failed attempts (over all endpoints) after which the
    /// breaker opens, if `failure_ratio` of the window failed too.
    #[setting(default = 10)]
    pub consecutive_failures: u32,
    /// Share of the attempts over the last `window` that must have failed
    /// for the breaker to open (Hystrix's error threshold, 50%). The run of
    /// `consecutive_failures` alone is not enough: one endpoint of several
    /// that hangs or dies fails its attempts in bursts (they time out
    /// together) while the others answer, and that is outlier ejection's
    /// business; the breaker is for the target as a whole. Above 0, at most 1.
    #[setting(default = 0.5)]
    pub failure_ratio: f64,
    /// The rolling window `failure_ratio` is measured over (at least 1s).
    /// Once a target fails outright, the breaker opens when its failures
    /// outnumber the window's successes: within about half the window at a
    /// steady rate.
    #[setting(default = Duration::from_secs(5))]
    pub window: Duration,
    /// How long the breaker stays open before letting probes through, and the
    /// interval over which half-open probes are counted.
    #[setting(default = Duration::from_secs(5))]
    pub open_duration: Duration,
    /// Probe attempts let through per `open_duration` interval while half-open.
    #[setting(default = 1)]
    pub half_open_probes: u32,
}

/// Per-endpoint outlier ejection settings (Envoy's outlier detection).
#[platform_config::settings]
#[derive(PartialEq)]
pub struct OutlierSettings {
    /// Eject endpoints that keep failing.
    #[setting(default = true)]
    pub enabled: bool,
    /// Consecutive failures of one endpoint that eject it (Envoy's default 5).
    #[setting(default = 5)]
    pub consecutive_failures: u32,
    /// Ejection time of a first ejection; the n-th ejection in a row lasts n
    /// times as long (Envoy's default 30s).
    #[setting(default = Duration::from_secs(30))]
    pub base_ejection_time: Duration,
    /// Longest ejection (Envoy's default 300s).
    #[setting(default = Duration::from_secs(300))]
    pub max_ejection_time: Duration,
    /// Largest share of the endpoints ejected at once, between 0 and 1. The
    /// pool is never emptied by ejection: with 0.5 and one endpoint, nothing
    /// is ejected.
    #[setting(default = 0.5)]
    pub max_ejection_share: f64,
    /// Eject an endpoint at once when it refuses a connection: nothing
    /// listens there (a crashed or stopped instance), and every request sent
    /// to it until the next ejection check would be refused too.
    #[setting(default = true)]
    pub eject_refused: bool,
    /// Ejection of an endpoint whose success rate falls well below its peers'.
    pub success_rate: SuccessRateSettings,
}

/// Success-rate ejection (Envoy's success-rate and failure-percentage
/// outlier detection, relative to the peers): an instance that fails a
/// quarter of its requests interleaves failures with successes and never
/// fails five in a row, yet costs its callers a retry on every fourth call.
#[platform_config::settings]
#[derive(PartialEq)]
pub struct SuccessRateSettings {
    /// Eject endpoints whose success rate falls well below their peers'.
    #[setting(default = true)]
    pub enabled: bool,
    /// The window success rates are measured over (between 1s and 10m).
    #[setting(default = Duration::from_secs(10))]
    pub window: Duration,
    /// Attempts an endpoint, and its peers together, must have made within
    /// the window before its success rate is judged (at least 1).
    #[setting(default = 50)]
    pub min_requests: u32,
    /// How far below its peers' success rate an endpoint's must fall to be
    /// ejected, as a share of theirs: with 0.1 and peers at 100%, an
    /// endpoint below 90% is ejected. When every endpoint fails alike,
    /// nothing is ejected: that is the target's breaker's business. Above 0,
    /// below 1.
    #[setting(default = 0.1)]
    pub drop: f64,
}

/// Hedged requests: a second attempt for a slow idempotent call.
#[platform_config::settings]
#[derive(PartialEq)]
pub struct HedgeSettings {
    /// Send a second attempt, to another endpoint, when an idempotent call
    /// is slower than usual. On by default: it is what rescues the calls
    /// stuck on an instance that hangs (a stopped process, a black hole),
    /// for about 5% more attempts ("The Tail at Scale"), and those draw on
    /// the retry budget, so hedging never adds more load than retries could.
    #[setting(default = true)]
    pub enabled: bool,
    /// Latency quantile after which the second attempt is sent (0.95: the
    /// observed p95, "The Tail at Scale").
    #[setting(default = 0.95)]
    pub quantile: f64,
    /// Successful attempts observed before hedging starts, so that the
    /// estimate means something.
    #[setting(default = 20)]
    pub min_samples: u32,
    /// Shortest hedging delay, whatever the estimate says.
    #[setting(default = Duration::from_millis(1))]
    pub min_delay: Duration,
}

impl ResilienceSettings {
    /// Every rule the policies built from these settings enforce, checked
    /// without building them: a config check (`--check-config`, a reload)
    /// makes no instruments and registers no gauges.
    pub fn check(&self) -> Result<(), SettingsError> {
        SettingsError::when(
            self.total_timeout.is_zero(),
            "total_timeout",
            self.total_timeout,
            "must be more than zero",
        )?;
        super::RetryPolicy::from_settings(&self.retry)?;
        super::RetryBudget::new(&self.budget)?;
        super::HedgePolicy::new(&self.hedge)?;
        self.breaker.check()?;
        self.outlier.check()?;
        self.throttle.check()
    }
}

impl OutlierSettings {
    /// What a policy built from these settings would refuse, without
    /// building one (a config check makes no instruments).
    pub fn check(&self) -> Result<(), SettingsError> {
        SettingsError::when(
            self.consecutive_failures == 0,
            "outlier.consecutive_failures",
            self.consecutive_failures,
            "must be at least 1",
        )?;
        SettingsError::when(
            self.base_ejection_time.is_zero(),
            "outlier.base_ejection_time",
            self.base_ejection_time,
            "must be more than zero",
        )?;
        SettingsError::when(
            self.max_ejection_time < self.base_ejection_time,
            "outlier.max_ejection_time",
            self.max_ejection_time,
            "must be at least outlier.base_ejection_time",
        )?;
        SettingsError::when(
            !(0.0..=1.0).contains(&self.max_ejection_share),
            "outlier.max_ejection_share",
            self.max_ejection_share,
            "must be a number between 0 and 1",
        )?;
        let rate = &self.success_rate;
        SettingsError::when(
            !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&rate.window),
            "outlier.success_rate.window",
            rate.window,
            "must be between 1s and 10m",
        )?;
        SettingsError::when(
            rate.min_requests == 0,
            "outlier.success_rate.min_requests",
            rate.min_requests,
            "must be at least 1",
        )?;
        SettingsError::when(
            !(rate.drop > 0.0 && rate.drop < 1.0),
            "outlier.success_rate.drop",
            rate.drop,
            "must be above 0 and below 1",
        )?;
        Ok(())
    }
}

impl BreakerSettings {
    /// What a policy built from these settings would refuse, without
    /// building one (a config check makes no instruments).
    pub fn check(&self) -> Result<(), SettingsError> {
        SettingsError::when(
            self.consecutive_failures == 0,
            "breaker.consecutive_failures",
            self.consecutive_failures,
            "must be at least 1",
        )?;
        SettingsError::when(
            self.open_duration.is_zero(),
            "breaker.open_duration",
            self.open_duration,
            "must be more than zero",
        )?;
        SettingsError::when(
            !(self.failure_ratio > 0.0 && self.failure_ratio <= 1.0),
            "breaker.failure_ratio",
            self.failure_ratio,
            "must be above 0 and at most 1",
        )?;
        SettingsError::when(
            self.window < Duration::from_secs(1),
            "breaker.window",
            self.window,
            "must be at least 1s",
        )?;
        SettingsError::when(
            self.half_open_probes == 0,
            "breaker.half_open_probes",
            self.half_open_probes,
            "must be at least 1 (or the breaker could never close)",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_gives_defaults() {
        let s: ResilienceSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, ResilienceSettings::default());
    }

    #[test]
    fn durations_are_human() {
        let s: ResilienceSettings = serde_json::from_str(
            r#"{"total_timeout":"2s","retry":{"base_backoff":"50ms"},"outlier":{"max_ejection_time":"5m"}}"#,
        )
        .unwrap();
        assert_eq!(s.total_timeout, Duration::from_secs(2));
        assert_eq!(s.retry.base_backoff, Duration::from_millis(50));
        assert_eq!(s.outlier.max_ejection_time, Duration::from_secs(300));
        assert_eq!(s.retry.max_attempts, 3);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_json::from_str::<ResilienceSettings>(r#"{"retry":{"max_atempts":4}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_atempts"), "{err}");
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = toml::to_string(&ResilienceSettings::default()).unwrap();
        let back: ResilienceSettings = toml::from_str(&text).unwrap();
        assert_eq!(back, ResilienceSettings::default());
    }
}
