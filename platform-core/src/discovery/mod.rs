//! Service discovery: from a target name to a live, stale-safe set of endpoints.
//!
//! A [`Target`] names a service (`static://`, `dns://`, `dns+srv://`, `etcd://`; see
//! [`target`] for the forms and how Kubernetes headless services and Consul DNS
//! are consumed). A [`TargetResolver`] runs the matching backend in the background and publishes
//! an [`EndpointSet`] through a `tokio::sync::watch` channel; balancers read the latest set
//! without waiting and see every change.
//!
//! # Stale rather than empty
//!
//! A registry that goes away must not take the service's callers with it. When a backend fails,
//! or answers with nothing or only garbage after a good answer, the last known endpoints stay
//! published, the set is marked [stale](EndpointSet::is_stale) with the
//! [reason](EndpointSet::last_error), and the `platform.discovery.stale` gauge goes to 1. A
//! readiness-neutral health check can report that as a warning: the endpoints may be out of
//! date, yet calling them is better than failing every request (the same rule as Envoy's
//! "keep the last good cluster membership on EDS failure" and gRPC's resolver keeping the
//! previous address list on a resolution error). Entries that cannot be used (bad JSON, bad
//! ports, duplicates) are skipped one by one, logged and counted in
//! `platform.discovery.rejected_entries`; they never spoil the rest of an answer.
//!
//! # Example
//!
//! ```
//! use platform_core::discovery::{DiscoverySettings, Resolver, TargetResolver};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let resolver =
//!     TargetResolver::parse("static://127.0.0.1:8080,127.0.0.1:8081", &DiscoverySettings::default())?;
//! let set = resolver.ready(std::time::Duration::from_secs(1)).await;
//! assert_eq!(set.len(), 2);
//! assert!(!set.is_stale());
//! # Ok(()) }
//! ```

#[cfg(feature = "dns")]
mod dns;
mod endpoint;
mod error;
#[cfg(feature = "etcd")]
mod etcd;
mod publisher;
#[cfg(feature = "etcd")]
mod registration;
mod settings;
mod static_list;
pub mod target;

use crate::Meters;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use endpoint::{
    DiscoveryHealth, Endpoint, EndpointId, EndpointMap, EndpointRecord, EndpointSet, Freshness,
};
pub use error::DiscoveryError;
#[cfg(feature = "etcd")]
pub use registration::{Registration, RegistrationState};
pub use settings::{DiscoverySettings, DnsSettings, EtcdSettings, RegistrationSettings};
pub use target::{Target, TargetError};

use publisher::Publisher;

/// A source of endpoints: the current set and every change to it.
///
/// Implemented by [`TargetResolver`] (the configured backends) and [`ManualResolver`] (sets
/// given in code); balancers take any implementation.
pub trait Resolver: Send + Sync + fmt::Debug {
    /// The target this resolver follows, for logs, metrics and errors.
    fn target(&self) -> &str;

    /// A receiver of the endpoint set: `borrow()` for the current one, `changed()` to wait for
    /// the next. Clone the `Arc` out of a borrow rather than holding it: a held borrow blocks
    /// the backend's next update.
    fn subscribe(&self) -> watch::Receiver<Arc<EndpointSet>>;

    /// The current endpoint set.
    fn current(&self) -> Arc<EndpointSet> {
        self.subscribe().borrow().clone()
    }
}

/// A shared resolver is a resolver: a client builder can hold any resolver
/// type it is given.
impl Resolver for Arc<dyn Resolver> {
    fn target(&self) -> &str {
        (**self).target()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<EndpointSet>> {
        (**self).subscribe()
    }
}

/// Aborts the backend task when the last handle to it goes away.
#[derive(Debug)]
struct BackgroundTask(JoinHandle<()>);

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The resolver of a [`Target`]: runs the backend the target names in the background.
///
/// Cheap to clone; the backend stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct TargetResolver {
    target: Target,
    text: Arc<str>,
    receiver: watch::Receiver<Arc<EndpointSet>>,
    _task: Option<Arc<BackgroundTask>>,
    _publisher: Option<Arc<Publisher>>,
}

impl TargetResolver {
    /// Parses `target` and starts its backend. Must be called within a tokio runtime.
    pub fn parse(target: &str, settings: &DiscoverySettings) -> Result<Self, DiscoveryError> {
        Self::new(&target.parse()?, settings)
    }

    /// Starts the backend of `target`. Must be called within a tokio runtime (except for
    /// `static://`, which needs no task).
    /// Instruments from the process-wide meter provider.
    pub fn new(target: &Target, settings: &DiscoverySettings) -> Result<Self, DiscoveryError> {
        Self::with_meters(target, settings, &Meters::global())
    }

    /// [`new`](Self::new) with instruments from `meters`.
    pub fn with_meters(
        target: &Target,
        settings: &DiscoverySettings,
        meters: &Meters,
    ) -> Result<Self, DiscoveryError> {
        let text = target.to_string();
        let (publisher, receiver) = Publisher::new(&text, meters);
        let (task, publisher) = match target {
            Target::Static(endpoints) => {
                static_list::publish(&publisher, endpoints.clone());
                (None, Some(Arc::new(publisher)))
            }
            #[cfg(feature = "dns")]
            Target::Dns { .. } | Target::DnsSrv { .. } => {
                settings.dns.validate()?;
                let lookup = dns::DnsLookup::new(target, &settings.dns)?;
                let runtime =
                    tokio::runtime::Handle::try_current().map_err(|_| DiscoveryError::NoRuntime)?;
                let task = runtime.spawn(dns::run(lookup, publisher, settings.dns.clone()));
                (Some(Arc::new(BackgroundTask(task))), None)
            }
            #[cfg(feature = "etcd")]
            Target::Etcd { service } => {
                settings.etcd.validate()?;
                let runtime =
                    tokio::runtime::Handle::try_current().map_err(|_| DiscoveryError::NoRuntime)?;
                let task =
                    runtime.spawn(etcd::run(service.clone(), publisher, settings.etcd.clone()));
                (Some(Arc::new(BackgroundTask(task))), None)
            }
            #[allow(unreachable_patterns)]
            _ => {
                let _ = settings;
                return Err(TargetError::FeatureDisabled {
                    input: text,
                    feature: target.missing_feature().unwrap_or("dns"),
                }
                .into());
            }
        };
        Ok(Self {
            target: target.clone(),
            text: text.into(),
            receiver,
            _task: task,
            _publisher: publisher,
        })
    }

    /// The parsed target.
    pub fn parsed_target(&self) -> &Target {
        &self.target
    }

    /// Waits until the backend has answered once (fresh or failed), at most `timeout`, and
    /// returns the set at that point. A set still [`Freshness::Pending`] means no answer yet.
    pub async fn ready(&self, timeout: Duration) -> Arc<EndpointSet> {
        wait_ready(self.subscribe(), timeout).await
    }
}

impl Resolver for TargetResolver {
    fn target(&self) -> &str {
        &self.text
    }

    fn subscribe(&self) -> watch::Receiver<Arc<EndpointSet>> {
        self.receiver.clone()
    }
}

/// Waits until `receiver` holds a set that is no longer pending or has an error, at most
/// `timeout`; returns the latest set either way.
pub async fn wait_ready(
    mut receiver: watch::Receiver<Arc<EndpointSet>>,
    timeout: Duration,
) -> Arc<EndpointSet> {
    let answered = |set: &Arc<EndpointSet>| {
        set.freshness() != Freshness::Pending || set.last_error().is_some()
    };
    let _ = tokio::time::timeout(timeout, receiver.wait_for(answered)).await;
    receiver.borrow().clone()
}

/// A resolver whose endpoints are set in code: for tests, benchmarks and integrations that learn
/// endpoints some other way. Follows the same stale-safe rules as the backends.
#[derive(Debug, Clone)]
pub struct ManualResolver {
    publisher: Arc<Publisher>,
    receiver: watch::Receiver<Arc<EndpointSet>>,
}

impl ManualResolver {
    /// A resolver with no answer yet, named `name` in logs and metrics.
    pub fn new(name: &str) -> Self {
        let (publisher, receiver) = Publisher::new(name, &Meters::global());
        Self {
            publisher: Arc::new(publisher),
            receiver,
        }
    }

    /// Publishes a complete answer; duplicates are dropped, and an empty answer after a non-empty
    /// one keeps the old endpoints, stale.
    pub fn set(&self, endpoints: Vec<Endpoint>) {
        static_list::publish(&self.publisher, endpoints);
    }

    /// Reports a backend failure: the endpoints are kept and marked stale.
    pub fn fail(&self, reason: &str) {
        self.publisher.problem(reason);
    }
}

impl Resolver for ManualResolver {
    fn target(&self) -> &str {
        self.publisher.target()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<EndpointSet>> {
        self.receiver.clone()
    }
}

/// Delay before the `attempt`-th reconnect (0-based): the retries' backoff
/// doubling from `min` up to `max`, with equal jitter (see
/// [`Backoff::delay_at_least_half`](crate::resilience::Backoff::delay_at_least_half)
/// for why not full jitter), never below `min`.
#[cfg(feature = "etcd")]
pub(crate) fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    // The settings were checked (min above zero, max at least min); the
    // clamps only keep a bad pair from erroring here.
    let min = min.max(Duration::from_millis(1));
    match crate::resilience::Backoff::new(min, max.max(min)) {
        Ok(backoff) => backoff
            .delay_at_least_half(attempt.saturating_add(1))
            .max(min),
        Err(_) => min,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_targets_resolve_without_a_runtime() {
        let resolver =
            TargetResolver::parse("static://b:2,a:1,b:2", &DiscoverySettings::default()).unwrap();
        let set = resolver.current();
        assert_eq!(set.freshness(), Freshness::Fresh);
        let ids: Vec<_> = set.endpoints().iter().map(|e| e.id().to_string()).collect();
        assert_eq!(ids, ["a:1", "b:2"], "sorted, duplicate dropped");
        assert_eq!(resolver.target(), "static://b:2,a:1,b:2");
    }

    #[cfg(feature = "etcd")]
    #[test]
    fn backoff_doubles_within_bounds() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for attempt in 0..40 {
            let delay = backoff(min, max, attempt);
            assert!(delay >= min && delay <= max, "{attempt}: {delay:?}");
        }
        assert!(backoff(min, max, 10) >= Duration::from_millis(500));
    }

    #[tokio::test]
    async fn manual_resolver_notifies_and_stays_stale_safe() {
        let resolver = ManualResolver::new("manual://test");
        let mut receiver = resolver.subscribe();
        resolver.set(vec![Endpoint::new("10.0.0.1", 80)]);
        receiver.changed().await.unwrap();
        assert_eq!(receiver.borrow_and_update().len(), 1);
        resolver.fail("registry down");
        receiver.changed().await.unwrap();
        let set = receiver.borrow_and_update().clone();
        assert!(set.is_stale());
        assert_eq!(set.len(), 1);
        assert_eq!(set.last_error(), Some("registry down"));
    }
}
