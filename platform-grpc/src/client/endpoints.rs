//! The endpoints of one target, one HTTP/2 connection each, and which one
//! the next attempt goes to.
//!
//! Every pool is fed by a resolver (a fixed `address` is a static target)
//! and balanced by platform-core's [`Balancer`] (P2C over Peak-EWMA, or
//! round robin), with ejected endpoints skipped unless most are (panic
//! mode). The connections follow the endpoint set: made when an endpoint
//! is first picked, dropped when discovery no longer lists it (a call in
//! flight on it keeps it open until it ends). An empty or failing
//! discovery answer keeps the last endpoints (platform-core's rule), so
//! their connections stay.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use platform_core::balance::{BalanceSettings, Balancer, Picked};
use platform_core::discovery::{EndpointId, EndpointMap, EndpointSet, Resolver, Target};
use platform_core::resilience::{EndpointOutcome, OutlierDetector};

use super::connection::Connection;

/// `address` as one `host:port`, or what is wrong with it.
pub(crate) fn authority(address: &str) -> Result<platform_core::discovery::Endpoint, String> {
    if address.trim().is_empty() {
        return Err("empty: give host:port, or set `discovery`".to_owned());
    }
    if address.contains("://") {
        return Err(format!(
            "{address:?}: give host:port without a scheme (the channel speaks HTTP/2 without TLS)"
        ));
    }
    match format!("static://{}", address.trim()).parse::<Target>() {
        Ok(Target::Static(mut list)) if list.len() == 1 => Ok(list.remove(0)),
        Ok(_) => Err(format!(
            "{address:?}: one host:port (several go in `discovery = \"static://a:1,b:2\"`)"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// The pool of a target's endpoints and their connections.
#[derive(Debug)]
pub(crate) struct Endpoints {
    balancer: Balancer,
    detector: Arc<OutlierDetector<EndpointId>>,
    connect_timeout: Duration,
    /// The endpoint-set generation the detector and `connections` last saw.
    generation: AtomicU64,
    connections: RwLock<EndpointMap<Arc<Connection>>>,
}

/// Which endpoint an attempt went to, to report its outcome; the balancer's
/// in-flight count holds until it is recorded.
#[derive(Debug)]
pub(crate) struct PickKey {
    pub(crate) id: EndpointId,
    load: Picked,
}

impl Endpoints {
    pub(crate) fn new(
        resolver: impl Resolver + 'static,
        settings: &BalanceSettings,
        detector: OutlierDetector<EndpointId>,
        connect_timeout: Duration,
        meters: &platform_core::Meters,
    ) -> Result<Self, String> {
        let detector = Arc::new(detector);
        let ejected = Arc::clone(&detector);
        let balancer = Balancer::with_meters(resolver, settings, meters)
            .map_err(|e| e.to_string())?
            .with_ejection(move |id: &EndpointId| ejected.is_ejected(id));
        Ok(Endpoints {
            balancer,
            detector,
            connect_timeout,
            generation: AtomicU64::new(u64::MAX),
            connections: RwLock::new(EndpointMap::default()),
        })
    }

    /// The endpoint for the next attempt, avoiding those the call `tried`
    /// while others are in rotation, or why there is none.
    pub(crate) fn pick(&self, tried: &[EndpointId]) -> Result<(PickKey, Arc<Connection>), String> {
        let set = self.balancer.endpoints();
        if self.generation.swap(set.generation(), Ordering::Relaxed) != set.generation() {
            self.follow(&set);
        }
        let picked = if tried.is_empty() {
            self.balancer.pick()
        } else {
            self.balancer.pick_avoiding(&|id| tried.contains(id))
        }
        .map_err(|e| e.to_string())?
        // A hedge that lost, or an attempt cut short, counts as slow.
        .abandoned_unless_ended();
        let chosen = picked.endpoint();
        let known = self
            .connections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(chosen.id())
            .cloned();
        let connection = match known {
            Some(connection) => connection,
            None => {
                let mut connections = self.connections.write().unwrap_or_else(|p| p.into_inner());
                Arc::clone(
                    connections
                        .entry(chosen.id().clone())
                        .or_insert_with(|| Arc::new(Connection::new(chosen, self.connect_timeout))),
                )
            }
        };
        Ok((
            PickKey {
                id: chosen.id().clone(),
                load: picked,
            },
            connection,
        ))
    }

    /// Keeps the detector and the connections in step with a new endpoint
    /// set: connections to endpoints no longer listed are let go.
    fn follow(&self, set: &EndpointSet) {
        self.detector
            .set_endpoints(set.endpoints().iter().map(|e| e.id().clone()));
        let mut connections = self.connections.write().unwrap_or_else(|p| p.into_inner());
        connections.retain(|id, _| set.endpoints().iter().any(|e| e.id() == id));
    }

    /// Whether an endpoint the call has not `tried` is in rotation: a retry
    /// would go there, and so need not wait out the backoff.
    pub(crate) fn any_other(&self, tried: &[EndpointId]) -> bool {
        self.balancer.any_other(&|id| tried.contains(id))
    }

    /// Reports an attempt's outcome on the endpoint it went to.
    pub(crate) fn record(&self, key: PickKey, outcome: EndpointOutcome) {
        self.detector.record_outcome(&key.id, outcome);
        // A failure must not make the endpoint look fast to the balancer.
        match outcome {
            EndpointOutcome::Success => key.load.succeeded(),
            EndpointOutcome::Failure | EndpointOutcome::Refused => key.load.failed(),
        }
    }

    /// The endpoints ejected now (`host:port`).
    pub(crate) fn ejected(&self) -> Vec<Arc<str>> {
        let mut ejected: Vec<Arc<str>> = self
            .detector
            .ejected()
            .into_iter()
            .map(|id| Arc::from(id.as_str()))
            .collect();
        ejected.sort_unstable();
        ejected
    }

    /// The discovered endpoint set (with its freshness), for health.
    pub(crate) fn set(&self) -> Arc<EndpointSet> {
        self.balancer.endpoints()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_one_host_and_port() {
        assert_eq!(authority("inventory:9090").unwrap().port(), 9090);
        assert_eq!(authority("[::1]:9090").unwrap().host(), "::1");
        for bad in [
            "",
            "inventory",
            "http://inventory:9090",
            "a:1,b:2",
            "x:99999",
        ] {
            assert!(authority(bad).is_err(), "{bad:?}");
        }
    }
}
