//! Endpoints and the endpoint sets a resolver publishes.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The stable identity of an endpoint: its `host:port` authority (IPv6 hosts in brackets).
///
/// Two answers naming the same host and port are the same endpoint, whichever backend they
/// came from, so balancer state (latency estimates, ejection) survives a refresh.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(Arc<str>);

/// A map keyed by endpoint, looked up on every call: seeded foldhash, not
/// SipHash (a lookup of a short id costs a tenth as much, and the seed keeps
/// ids from a discovery answer from being chosen to collide).
pub type EndpointMap<V> = std::collections::HashMap<EndpointId, V, foldhash::quality::RandomState>;

/// `host:port`, as in logs and metric attributes.
impl fmt::Debug for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl EndpointId {
    /// The id of `host:port`.
    pub fn new(host: &str, port: u16) -> Self {
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Self(authority.into())
    }

    /// The id as a `host:port` string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One instance of a service: where to reach it and what is known about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    id: EndpointId,
    host: Arc<str>,
    port: u16,
    /// Relative share of traffic; an SRV weight of 0 is kept as 0 and treated as 1 by balancers.
    pub weight: u32,
    /// SRV-style priority: lower is preferred; balancers use the lowest tier that can serve.
    pub priority: u16,
    /// Availability zone, when the backend knows it.
    pub zone: Option<String>,
    /// Version of the service instance, when the backend knows it.
    pub version: Option<String>,
    /// Free-form metadata (e.g. `dns.name` for the DNS name an address came from).
    pub metadata: BTreeMap<String, String>,
}

impl Endpoint {
    /// An endpoint at `host:port` with weight 1, priority 0 and no metadata.
    ///
    /// `host` is an IP address or a DNS name; IPv6 addresses are given without brackets.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        let host: String = host.into();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Self {
            id: EndpointId::new(&host, port),
            host: host.into(),
            port,
            weight: 1,
            priority: 0,
            zone: None,
            version: None,
            metadata: BTreeMap::new(),
        }
    }

    /// Sets the weight.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the zone.
    pub fn with_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// Sets the version.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// The stable id (`host:port`).
    pub fn id(&self) -> &EndpointId {
        &self.id
    }

    /// The host: an IP address (without brackets) or a DNS name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, with IPv6 addresses in brackets: ready for a URL authority.
    pub fn authority(&self) -> &str {
        self.id.as_str()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.authority())
    }
}

/// The JSON form of an endpoint, as stored in etcd by `Registration` (feature `etcd`)
/// and read back by the etcd backend.
///
/// ```json
/// {"host":"10.0.0.7","port":8080,"weight":1,"zone":"eu-west-1a","version":"1.4.2","metadata":{}}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointRecord {
    /// IP address or DNS name.
    pub host: String,
    /// Port, 1..=65535.
    pub port: u16,
    /// Relative weight (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Availability zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Service version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

fn default_weight() -> u32 {
    1
}

impl From<&Endpoint> for EndpointRecord {
    fn from(endpoint: &Endpoint) -> Self {
        Self {
            host: endpoint.host().to_owned(),
            port: endpoint.port(),
            weight: endpoint.weight,
            zone: endpoint.zone.clone(),
            version: endpoint.version.clone(),
            metadata: endpoint.metadata.clone(),
        }
    }
}

impl EndpointRecord {
    /// Checks the record and turns it into an endpoint; the error says what is wrong.
    pub fn into_endpoint(self) -> Result<Endpoint, String> {
        if self.port == 0 {
            return Err("port 0".to_owned());
        }
        let host = self.host.trim();
        if host.is_empty() {
            return Err("empty host".to_owned());
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '@')
        {
            return Err(format!("host {host:?} is not an address or a name"));
        }
        let mut endpoint = Endpoint::new(host, self.port).with_weight(self.weight);
        endpoint.zone = self.zone;
        endpoint.version = self.version;
        endpoint.metadata = self.metadata;
        Ok(endpoint)
    }
}

/// How fresh an [`EndpointSet`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// No answer yet from the backend.
    Pending,
    /// The last answer from the backend was good.
    Fresh,
    /// The backend failed or answered with nothing usable after a good answer: the endpoints are
    /// the last known good ones.
    Stale,
}

/// A snapshot of a service's endpoints, as published by a [`Resolver`](super::Resolver).
#[derive(Debug, Clone)]
pub struct EndpointSet {
    pub(crate) endpoints: Arc<[Endpoint]>,
    pub(crate) generation: u64,
    pub(crate) freshness: Freshness,
    pub(crate) last_error: Option<Arc<str>>,
    pub(crate) updated_at: SystemTime,
    pub(crate) stale_since: Option<SystemTime>,
}

impl EndpointSet {
    /// A fresh set holding `endpoints` (generation 1), for tests and custom resolvers.
    pub fn fresh(endpoints: Vec<Endpoint>) -> Self {
        Self {
            endpoints: endpoints.into(),
            generation: 1,
            freshness: Freshness::Fresh,
            last_error: None,
            updated_at: SystemTime::now(),
            stale_since: None,
        }
    }

    pub(crate) fn pending() -> Self {
        Self {
            endpoints: Vec::new().into(),
            generation: 0,
            freshness: Freshness::Pending,
            last_error: None,
            updated_at: SystemTime::now(),
            stale_since: None,
        }
    }

    /// The endpoints, sorted by id.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// True when there is no endpoint.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Incremented every time the endpoint list changes (not when only freshness changes).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the set reflects the backend's latest good answer.
    pub fn freshness(&self) -> Freshness {
        self.freshness
    }

    /// True when the endpoints are the last known good ones after a failure.
    pub fn is_stale(&self) -> bool {
        self.freshness == Freshness::Stale
    }

    /// The latest backend problem, kept until the next good answer.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// When this snapshot was published.
    pub fn updated_at(&self) -> SystemTime {
        self.updated_at
    }

    /// Since when the endpoints have been stale, while they are.
    pub fn stale_since(&self) -> Option<SystemTime> {
        self.stale_since
    }

    /// The state to report in a readiness-neutral health check: anything but
    /// [`DiscoveryHealth::Healthy`] is a warning, never a reason to stop serving.
    pub fn health(&self) -> DiscoveryHealth {
        match self.freshness {
            Freshness::Pending => DiscoveryHealth::Pending {
                last_error: self.last_error.as_deref().map(str::to_owned),
            },
            Freshness::Stale => DiscoveryHealth::Stale {
                since: self.stale_since.unwrap_or(self.updated_at),
                reason: self.last_error.as_deref().unwrap_or("unknown").to_owned(),
                endpoints: self.len(),
            },
            Freshness::Fresh if self.is_empty() => DiscoveryHealth::Empty,
            Freshness::Fresh => DiscoveryHealth::Healthy {
                endpoints: self.len(),
            },
        }
    }
}

/// A discovery target's health, for health checks and status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryHealth {
    /// The backend's last answer was good and named endpoints.
    Healthy {
        /// How many.
        endpoints: usize,
    },
    /// The backend has not answered yet.
    Pending {
        /// Its latest problem, if any.
        last_error: Option<String>,
    },
    /// The backend failed after a good answer; the last known endpoints are in use.
    Stale {
        /// Since when.
        since: SystemTime,
        /// The latest problem.
        reason: String,
        /// How many endpoints are kept.
        endpoints: usize,
    },
    /// The backend answered, with no endpoint (before any good answer).
    Empty,
}

impl DiscoveryHealth {
    /// As a client's discovery health check sees it: a pass while fresh,
    /// else a warning that never fails readiness (the last known endpoints
    /// keep serving, and refusing traffic would not bring discovery back).
    pub fn check_outcome(&self) -> crate::health::CheckOutcome {
        use crate::health::CheckOutcome;
        match self {
            DiscoveryHealth::Healthy { .. } => CheckOutcome::pass(),
            DiscoveryHealth::Pending { last_error } => CheckOutcome::warn(format!(
                "no answer from discovery yet{}",
                last_error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )),
            DiscoveryHealth::Stale {
                reason, endpoints, ..
            } => CheckOutcome::warn(format!(
                "discovery failing ({reason}); using the last {endpoints} known endpoints"
            )),
            DiscoveryHealth::Empty => CheckOutcome::warn("discovery answered with no endpoints"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_get_brackets_in_the_authority_only() {
        let endpoint = Endpoint::new("[::1]", 8080);
        assert_eq!(endpoint.host(), "::1");
        assert_eq!(endpoint.authority(), "[::1]:8080");
        assert_eq!(endpoint.ip(), Some("::1".parse().unwrap()));
    }

    #[test]
    fn records_are_checked() {
        let record: EndpointRecord =
            serde_json::from_str(r#"{"host":"10.0.0.1","port":80,"zone":"a"}"#).unwrap();
        let endpoint = record.clone().into_endpoint().unwrap();
        assert_eq!(endpoint.weight, 1);
        assert_eq!(endpoint.zone.as_deref(), Some("a"));
        assert_eq!(EndpointRecord::from(&endpoint), record);

        let bad = EndpointRecord {
            port: 0,
            ..record.clone()
        };
        assert!(bad.into_endpoint().unwrap_err().contains("port 0"));
        let bad = EndpointRecord {
            host: " ".into(),
            ..record
        };
        assert!(bad.into_endpoint().is_err());
        assert!(serde_json::from_str::<EndpointRecord>(r#"{"host":"a","port":70000}"#).is_err());
    }
}
