//! The endpoints of one target and which one the next attempt goes to.
//!
//! With `discovery` set, endpoints come from the resolver and the balancer
//! (P2C Peak-EWMA or round robin) picks one per attempt, so a retry may land
//! elsewhere; ejected endpoints are skipped unless most are (panic mode).
//! Otherwise: round robin over the base URLs, skipping endpoints the outlier detector
//! has ejected (Envoy's outlier detection; the detector bounds the share
//! ejected at once, so the pool never empties). A single endpoint is never
//! ejected — the target's circuit breaker covers it — so the common case of
//! one base URL skips the detector entirely.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use platform_core::balance::{BalanceSettings, Balancer};
use platform_core::discovery::{EndpointId, Resolver};
use platform_core::resilience::OutlierDetector;

/// One place the target can be reached.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The base URL without a trailing slash (`http://inventory:8081/api`).
    pub(crate) base: String,
    /// `host:port`, for errors, events and the outlier detector.
    pub(crate) label: Arc<str>,
    /// `server.address` of the semantic conventions.
    pub(crate) address: Arc<str>,
    /// `server.port`.
    pub(crate) port: u16,
}

impl Endpoint {
    /// Parses a base URL; errors say what is wrong with it.
    pub(crate) fn parse(base_url: &str) -> Result<Self, String> {
        let url =
            reqwest::Url::parse(base_url).map_err(|e| format!("{base_url:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{base_url:?}: expected an http:// or https:// URL"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{base_url:?}: a base URL has no query or fragment"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("{base_url:?} has no host"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("{base_url:?} has no port"))?;
        Ok(Endpoint {
            base: url.as_str().trim_end_matches('/').to_owned(),
            label: Arc::from(format!("{host}:{port}")),
            address: Arc::from(host),
            port,
        })
    }

    /// The URL of `path` (with or without a leading slash) on this endpoint.
    pub(crate) fn url(&self, path: &str) -> String {
        let path = path.trim_start_matches('/');
        let mut url = String::with_capacity(self.base.len() + 1 + path.len());
        url.push_str(&self.base);
        url.push('/');
        url.push_str(path);
        url
    }
}

/// The pool of a target's endpoints: the base URLs of the config, or what
/// discovery finds, balanced by power of two choices over Peak-EWMA.
#[derive(Debug)]
pub(crate) enum Endpoints {
    /// Fixed base URLs, round robin.
    Fixed {
        list: Vec<Endpoint>,
        next: AtomicUsize,
        detector: OutlierDetector<usize>,
    },
    /// Endpoints from discovery; each attempt asks the balancer.
    Discovered {
        balancer: Balancer,
        detector: Arc<OutlierDetector<EndpointId>>,
        /// `http` or `https`, and the path prefix, from `base_url`.
        scheme: String,
        prefix: String,
        /// The endpoint-set generation the detector last saw.
        generation: AtomicU64,
    },
}

/// Which endpoint an attempt went to, to report its outcome.
#[derive(Debug)]
pub(crate) enum PickKey {
    Index(usize),
    Discovered {
        id: EndpointId,
        /// Ended when the attempt is recorded: that records its latency.
        load: platform_core::balance::Picked,
    },
}

impl Endpoints {
    pub(crate) fn new(list: Vec<Endpoint>, detector: OutlierDetector<usize>) -> Self {
        detector.set_endpoints(0..list.len());
        Endpoints::Fixed {
            list,
            next: AtomicUsize::new(0),
            detector,
        }
    }

    /// A pool fed by `resolver`: `base_url` gives the scheme and path prefix.
    pub(crate) fn discovered(
        base_url: &str,
        resolver: impl Resolver + 'static,
        settings: &BalanceSettings,
        detector: OutlierDetector<EndpointId>,
    ) -> Result<Self, String> {
        let template = Endpoint::parse(base_url)?;
        let scheme = template
            .base
            .split_once("://")
            .map(|(scheme, _)| scheme.to_owned())
            .unwrap_or_else(|| "http".to_owned());
        let prefix = reqwest::Url::parse(&template.base)
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        let detector = Arc::new(detector);
        let ejected = Arc::clone(&detector);
        let balancer = Balancer::new(resolver, settings)
            .map_err(|e| e.to_string())?
            .with_ejection(move |id: &EndpointId| ejected.is_ejected(id));
        Ok(Endpoints::Discovered {
            balancer,
            detector,
            scheme,
            prefix,
            generation: AtomicU64::new(u64::MAX),
        })
    }

    /// The endpoint for the next attempt, or why there is none.
    pub(crate) fn pick(&self) -> Result<(PickKey, Cow<'_, Endpoint>), String> {
        match self {
            Endpoints::Fixed {
                list,
                next,
                detector,
            } => match list.len() {
                0 => Err("no endpoint configured".to_owned()),
                1 => Ok((PickKey::Index(0), Cow::Borrowed(&list[0]))),
                n => {
                    let start = next.fetch_add(1, Ordering::Relaxed);
                    let index = (0..n)
                        .map(|i| (start + i) % n)
                        .find(|i| !detector.is_ejected(i))
                        // The detector never ejects the whole pool; if it somehow
                        // did, round robin over everything beats failing.
                        .unwrap_or(start % n);
                    Ok((PickKey::Index(index), Cow::Borrowed(&list[index])))
                }
            },
            Endpoints::Discovered {
                balancer,
                detector,
                scheme,
                prefix,
                generation,
            } => {
                let set = balancer.endpoints();
                // The detector follows the pool (its share cap counts live endpoints).
                if generation.swap(set.generation(), Ordering::Relaxed) != set.generation() {
                    detector.set_endpoints(set.endpoints().iter().map(|e| e.id().clone()));
                }
                let picked = balancer.pick().map_err(|e| e.to_string())?;
                let chosen = picked.endpoint();
                let authority = chosen.authority();
                let endpoint = Endpoint {
                    base: format!("{scheme}://{authority}{prefix}"),
                    label: Arc::from(authority),
                    address: Arc::from(chosen.host()),
                    port: chosen.port(),
                };
                Ok((
                    PickKey::Discovered {
                        id: chosen.id().clone(),
                        load: picked,
                    },
                    Cow::Owned(endpoint),
                ))
            }
        }
    }

    /// The endpoint when there is exactly one fixed one (the span names it up front).
    pub(crate) fn single(&self) -> Option<&Endpoint> {
        match self {
            Endpoints::Fixed { list, .. } => match list.as_slice() {
                [only] => Some(only),
                _ => None,
            },
            Endpoints::Discovered { .. } => None,
        }
    }

    /// Reports an attempt's health on the endpoint it went to.
    pub(crate) fn record(&self, key: PickKey, healthy: bool) {
        match (self, key) {
            (Endpoints::Fixed { list, detector, .. }, PickKey::Index(index)) if list.len() > 1 => {
                detector.record(&index, healthy);
            }
            (Endpoints::Discovered { detector, .. }, PickKey::Discovered { id, load }) => {
                detector.record(&id, healthy);
                // A failure must not make the endpoint look fast to the balancer.
                if !healthy {
                    load.failed();
                }
            }
            _ => {}
        }
    }

    /// The labels of the endpoints ejected now.
    pub(crate) fn ejected(&self) -> Vec<Arc<str>> {
        match self {
            Endpoints::Fixed { list, detector, .. } => {
                let mut ejected = detector.ejected();
                ejected.sort_unstable();
                ejected
                    .into_iter()
                    .filter_map(|i| list.get(i).map(|e| e.label.clone()))
                    .collect()
            }
            Endpoints::Discovered { detector, .. } => {
                let mut ejected: Vec<Arc<str>> = detector
                    .ejected()
                    .into_iter()
                    .map(|id| Arc::from(id.to_string().as_str()))
                    .collect();
                ejected.sort_unstable();
                ejected
            }
        }
    }

    /// The discovered endpoint set (with its freshness), for health.
    pub(crate) fn discovered_set(&self) -> Option<Arc<platform_core::discovery::EndpointSet>> {
        match self {
            Endpoints::Fixed { .. } => None,
            Endpoints::Discovered { balancer, .. } => Some(balancer.endpoints()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_parse_or_say_why() {
        let e = Endpoint::parse("http://inventory:8081/api/").unwrap();
        assert_eq!(e.url("/stock/1"), "http://inventory:8081/api/stock/1");
        assert_eq!(e.url("stock"), "http://inventory:8081/api/stock");
        assert_eq!(&*e.label, "inventory:8081");
        let e = Endpoint::parse("https://example.test").unwrap();
        assert_eq!(e.port, 443);
        assert_eq!(e.url("/x"), "https://example.test/x");
        for bad in ["", "inventory:8081", "ftp://x", "http://x/?a=1", "http://"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
