//! Keeps a resolver's published endpoint set: good answers replace it, failures keep it and mark
//! it stale. Every backend goes through here so the stale-safe rule lives in one place.

use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge};
use tokio::sync::watch;

use super::endpoint::{Endpoint, EndpointSet, Freshness};

/// Instruments shared by all resolvers of the process.
#[derive(Debug, Clone)]
struct Instruments {
    endpoints: Gauge<u64>,
    stale: Gauge<u64>,
    updates: Counter<u64>,
    errors: Counter<u64>,
    rejected: Counter<u64>,
}

impl Instruments {
    fn new(meters: &crate::Meters) -> Self {
        let meter = meters.meter(crate::meters::SCOPE);
        Self {
            endpoints: meter
                .u64_gauge("platform.discovery.endpoints")
                .with_description("Endpoints currently known for a discovery target")
                .with_unit("{endpoint}")
                .build(),
            stale: meter
                .u64_gauge("platform.discovery.stale")
                .with_description(
                    "1 when the endpoints are the last known good ones after a backend failure",
                )
                .build(),
            updates: meter
                .u64_counter("platform.discovery.updates")
                .with_description("Changes of a target's endpoint list")
                .with_unit("{update}")
                .build(),
            errors: meter
                .u64_counter("platform.discovery.errors")
                .with_description("Failed or unusable answers from a discovery backend")
                .with_unit("{error}")
                .build(),
            rejected: meter
                .u64_counter("platform.discovery.rejected_entries")
                .with_description("Discovery entries skipped as malformed or duplicate")
                .with_unit("{entry}")
                .build(),
        }
    }
}

/// The writing side of a resolver's `watch` channel.
#[derive(Debug)]
pub(crate) struct Publisher {
    target: Arc<str>,
    sender: watch::Sender<Arc<EndpointSet>>,
    instruments: Instruments,
    attributes: [KeyValue; 1],
}

impl Publisher {
    pub(crate) fn new(
        target: &str,
        meters: &crate::Meters,
    ) -> (Self, watch::Receiver<Arc<EndpointSet>>) {
        let (sender, receiver) = watch::channel(Arc::new(EndpointSet::pending()));
        let publisher = Self {
            target: target.into(),
            sender,
            instruments: Instruments::new(meters),
            attributes: [KeyValue::new(
                "platform.discovery.target",
                target.to_owned(),
            )],
        };
        (publisher, receiver)
    }

    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// A complete answer from the backend. An empty answer after a non-empty one keeps the old
    /// endpoints and marks them stale: one bad answer must never empty a pool.
    pub(crate) fn answer(&self, mut endpoints: Vec<Endpoint>) {
        endpoints.sort_by(|a, b| a.id().cmp(b.id()));
        let current = self.sender.borrow().clone();
        if endpoints.is_empty() && !current.is_empty() {
            self.problem("empty answer");
            return;
        }
        let changed = *current.endpoints != *endpoints;
        if !changed && current.freshness == Freshness::Fresh {
            return;
        }
        let next = EndpointSet {
            generation: current.generation + u64::from(changed || current.generation == 0),
            endpoints: if changed {
                endpoints.into()
            } else {
                current.endpoints.clone()
            },
            freshness: Freshness::Fresh,
            last_error: None,
            updated_at: SystemTime::now(),
            stale_since: None,
        };
        if current.freshness == Freshness::Stale {
            tracing::info!(target = %self.target, endpoints = next.len(), "discovery answers again; endpoints fresh");
        }
        if changed {
            tracing::debug!(target = %self.target, endpoints = next.len(), generation = next.generation, "discovery endpoints changed");
            self.instruments.updates.add(1, &self.attributes);
        }
        self.instruments
            .endpoints
            .record(next.len() as u64, &self.attributes);
        self.instruments.stale.record(0, &self.attributes);
        self.sender.send_replace(Arc::new(next));
    }

    /// A failure of the backend (or an unusable answer): keep the endpoints, mark them stale.
    pub(crate) fn problem(&self, reason: &str) {
        let current = self.sender.borrow().clone();
        let error_type = if reason == "empty answer" {
            "empty_answer"
        } else {
            "backend_error"
        };
        self.instruments.errors.add(
            1,
            &[
                self.attributes[0].clone(),
                KeyValue::new("error.type", error_type),
            ],
        );
        let freshness = match current.freshness {
            Freshness::Pending => Freshness::Pending,
            Freshness::Fresh | Freshness::Stale => Freshness::Stale,
        };
        if current.freshness == Freshness::Fresh {
            tracing::warn!(target = %self.target, endpoints = current.len(), reason, "discovery backend failed; keeping the last known endpoints (stale)");
        } else {
            tracing::debug!(target = %self.target, reason, "discovery backend still failing");
        }
        if freshness == Freshness::Stale {
            self.instruments.stale.record(1, &self.attributes);
        }
        let now = SystemTime::now();
        let next = EndpointSet {
            endpoints: current.endpoints.clone(),
            generation: current.generation,
            freshness,
            last_error: Some(reason.into()),
            updated_at: now,
            stale_since: (freshness == Freshness::Stale)
                .then(|| current.stale_since.unwrap_or(now)),
        };
        self.sender.send_replace(Arc::new(next));
    }

    /// An entry of an answer was skipped.
    pub(crate) fn rejected(&self, entry: &str, reason: &'static str, detail: &str) {
        tracing::warn!(target = %self.target, entry, reason, detail, "discovery entry skipped");
        self.instruments.rejected.add(
            1,
            &[self.attributes[0].clone(), KeyValue::new("reason", reason)],
        );
    }

    /// True once nobody can read the endpoints any more: the backend task may stop.
    #[cfg(any(feature = "dns", feature = "etcd"))]
    pub(crate) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// Drops duplicates (same id) from `endpoints`, reporting each one.
pub(crate) fn dedup(publisher: &Publisher, endpoints: Vec<Endpoint>) -> Vec<Endpoint> {
    let mut seen = std::collections::HashSet::new();
    endpoints
        .into_iter()
        .filter(|endpoint| {
            let fresh = seen.insert(endpoint.id().clone());
            if !fresh {
                publisher.rejected(
                    endpoint.authority(),
                    "duplicate",
                    "same host and port listed twice",
                );
            }
            fresh
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(ports: &[u16]) -> Vec<Endpoint> {
        ports
            .iter()
            .map(|port| Endpoint::new("10.0.0.1", *port))
            .collect()
    }

    #[test]
    fn failures_and_empty_answers_keep_the_last_good_endpoints() {
        let (publisher, receiver) = Publisher::new("test://x", &crate::Meters::global());
        assert_eq!(receiver.borrow().freshness(), Freshness::Pending);

        publisher.problem("connection refused");
        assert_eq!(
            receiver.borrow().freshness(),
            Freshness::Pending,
            "nothing to be stale about yet"
        );

        publisher.answer(endpoints(&[2, 1]));
        let set = receiver.borrow().clone();
        assert_eq!(set.freshness(), Freshness::Fresh);
        assert_eq!(set.generation(), 1);
        assert_eq!(set.endpoints()[0].port(), 1, "sorted by id");

        publisher.problem("timeout");
        let set = receiver.borrow().clone();
        assert!(set.is_stale());
        let since = set.stale_since().unwrap();
        assert!(matches!(
            set.health(),
            super::super::DiscoveryHealth::Stale { endpoints: 2, .. }
        ));
        assert_eq!(set.len(), 2);
        assert_eq!(set.last_error(), Some("timeout"));
        assert_eq!(set.generation(), 1);

        publisher.answer(Vec::new());
        assert!(receiver.borrow().is_stale());
        assert_eq!(receiver.borrow().len(), 2);
        assert_eq!(
            receiver.borrow().stale_since(),
            Some(since),
            "stale since the first failure"
        );

        publisher.answer(endpoints(&[1, 2]));
        let set = receiver.borrow().clone();
        assert_eq!(set.freshness(), Freshness::Fresh);
        assert_eq!(set.generation(), 1, "same list: no new generation");
        assert_eq!(set.last_error(), None);
        assert_eq!(set.stale_since(), None);
        assert_eq!(
            set.health(),
            super::super::DiscoveryHealth::Healthy { endpoints: 2 }
        );

        publisher.answer(endpoints(&[3]));
        assert_eq!(receiver.borrow().generation(), 2);
    }

    #[test]
    fn an_empty_first_answer_is_fresh_and_empty() {
        let (publisher, receiver) = Publisher::new("test://x", &crate::Meters::global());
        publisher.answer(Vec::new());
        assert_eq!(receiver.borrow().freshness(), Freshness::Fresh);
        assert!(receiver.borrow().is_empty());
        assert_eq!(receiver.borrow().generation(), 1);
    }

    #[test]
    fn duplicates_are_dropped() {
        let (publisher, _receiver) = Publisher::new("test://x", &crate::Meters::global());
        let list = dedup(&publisher, endpoints(&[1, 2, 1]));
        assert_eq!(list.len(), 2);
    }
}
