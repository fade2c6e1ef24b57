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
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use platform_core::balance::{BalanceSettings, Balancer};
use platform_core::discovery::{EndpointId, Resolver};
use platform_core::resilience::{EndpointOutcome, OutlierDetector};

use crate::semconv::BoundDurations;

/// One place the target can be reached.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The base URL as a directory (`http://inventory:8081/api/`): paths
    /// are parsed relative to it, so the scheme and host are parsed once
    /// here rather than on every attempt.
    base: reqwest::Url,
    /// `host:port`, for errors, events and the outlier detector.
    pub(crate) label: Arc<str>,
    /// `server.address` of the semantic conventions.
    pub(crate) address: Arc<str>,
    /// `server.port`.
    pub(crate) port: u16,
    /// `http.client.request.duration` bound to this endpoint's attributes.
    pub(crate) durations: Arc<BoundDurations<DurationKey>>,
}

/// What varies in the attributes of one endpoint's attempts: method,
/// status code and error type.
pub(crate) type DurationKey = (&'static str, Option<u16>, Option<&'static str>);

impl Endpoint {
    /// Parses a base URL; errors say what is wrong with it.
    pub(crate) fn parse(base_url: &str) -> Result<Self, String> {
        let mut url =
            reqwest::Url::parse(base_url).map_err(|e| format!("{base_url:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{base_url:?}: expected an http:// or https:// URL"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{base_url:?}: a base URL has no query or fragment"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("{base_url:?} has no host"))?
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("{base_url:?} has no port"))?;
        if !url.path().ends_with('/') {
            let dir = format!("{}/", url.path());
            url.set_path(&dir);
        }
        Ok(Endpoint {
            base: url,
            label: Arc::from(format!("{host}:{port}")),
            address: Arc::from(host),
            port,
            durations: Arc::default(),
        })
    }

    /// The URL of `path` (with or without a leading slash, perhaps with a
    /// query) on this endpoint, with `query` appended.
    pub(crate) fn url(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<reqwest::Url, String> {
        let path = path.trim_start_matches('/');
        // Read as relative to the base, a first segment with a colon
        // (`a:b`) would be a scheme and a leading backslash the start of
        // another host: "./" keeps both a path on this endpoint.
        let ambiguous = path.starts_with('\\')
            || path
                .split(['/', '\\', '?', '#'])
                .next()
                .is_some_and(|first| first.contains(':'));
        let relative = if ambiguous {
            Cow::Owned(format!("./{path}"))
        } else {
            Cow::Borrowed(path)
        };
        let mut url = reqwest::Url::options()
            .base_url(Some(&self.base))
            .parse(&relative)
            .map_err(|e| format!("invalid URL for path {path:?}: {e}"))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// This base URL's scheme and path prefix on a discovered instance.
    fn at(&self, found: &platform_core::discovery::Endpoint) -> Result<Self, String> {
        let mut base = self.base.clone();
        let host = match found.ip() {
            Some(std::net::IpAddr::V6(ip)) => Cow::Owned(format!("[{ip}]")),
            _ => Cow::Borrowed(found.host()),
        };
        base.set_host(Some(&host))
            .map_err(|e| format!("discovered host {host:?} does not fit a URL: {e}"))?;
        base.set_port(Some(found.port()))
            .map_err(|()| format!("discovered endpoint {found} does not fit {}", self.base))?;
        Ok(Endpoint {
            base,
            label: Arc::from(found.authority()),
            address: Arc::from(found.host()),
            port: found.port(),
            durations: Arc::default(),
        })
    }
}

/// The pool of a target's endpoints: the base URLs of the config, or what
/// discovery finds, balanced by power of two choices over Peak-EWMA.
#[derive(Debug)]
pub(crate) enum Endpoints {
    /// Fixed base URLs, round robin.
    Fixed {
        list: Vec<Arc<Endpoint>>,
        next: AtomicUsize,
        detector: OutlierDetector<usize>,
    },
    /// Endpoints from discovery; each attempt asks the balancer.
    Discovered {
        balancer: Balancer,
        detector: Arc<OutlierDetector<EndpointId>>,
        /// `base_url`: its scheme and path prefix go on every discovered host.
        template: Endpoint,
        /// The endpoint-set generation the detector and `made` last saw.
        generation: AtomicU64,
        /// Discovered endpoints as attempts use them, made once per
        /// endpoint set rather than once per attempt.
        made: RwLock<HashMap<EndpointId, Arc<Endpoint>>>,
    },
}

/// Which endpoint an attempt went to, to report its outcome.
#[derive(Debug)]
pub(crate) enum PickKey {
    Index(usize),
    Discovered {
        id: EndpointId,
        /// Ended when the attempt is recorded: that records its latency. An
        /// attempt dropped before (a hedge that lost) counts as abandoned.
        load: platform_core::balance::Picked,
    },
}

impl PickKey {
    /// The endpoint's identity, for the call's record of where it went.
    pub(crate) fn tried(&self) -> Tried {
        match self {
            PickKey::Index(index) => Tried::Index(*index),
            PickKey::Discovered { id, .. } => Tried::Id(id.clone()),
        }
    }
}

/// An endpoint a call has sent an attempt to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tried {
    Index(usize),
    Id(EndpointId),
}

/// The endpoints one call has tried: retries and hedges go elsewhere while
/// they can (Envoy's `previous_hosts`). The first is kept inline, so the
/// common call of one attempt allocates nothing for it.
#[derive(Debug, Default)]
pub(crate) struct TriedSet {
    first: Option<Tried>,
    rest: Vec<Tried>,
}

impl TriedSet {
    pub(crate) fn insert(&mut self, tried: Tried) {
        if self.contains(&tried) {
            return;
        }
        match self.first {
            None => self.first = Some(tried),
            Some(_) => self.rest.push(tried),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn contains(&self, tried: &Tried) -> bool {
        self.first.as_ref() == Some(tried) || self.rest.contains(tried)
    }

    fn contains_index(&self, index: usize) -> bool {
        self.contains(&Tried::Index(index))
    }

    fn contains_id(&self, id: &EndpointId) -> bool {
        match &self.first {
            Some(Tried::Id(first)) if first == id => true,
            _ => self
                .rest
                .iter()
                .any(|tried| matches!(tried, Tried::Id(other) if other == id)),
        }
    }
}

impl Endpoints {
    pub(crate) fn new(list: Vec<Endpoint>, detector: OutlierDetector<usize>) -> Self {
        detector.set_endpoints(0..list.len());
        Endpoints::Fixed {
            list: list.into_iter().map(Arc::new).collect(),
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
        meters: &platform_core::Meters,
    ) -> Result<Self, String> {
        let template = Endpoint::parse(base_url)?;
        let detector = Arc::new(detector);
        let ejected = Arc::clone(&detector);
        let balancer = Balancer::with_meters(resolver, settings, meters)
            .map_err(|e| e.to_string())?
            .with_ejection(move |id: &EndpointId| ejected.is_ejected(id));
        Ok(Endpoints::Discovered {
            balancer,
            detector,
            template,
            generation: AtomicU64::new(u64::MAX),
            made: RwLock::new(HashMap::new()),
        })
    }

    /// The endpoint for the next attempt, avoiding those the call `tried`
    /// while others are in rotation, or why there is none.
    pub(crate) fn pick(&self, tried: &TriedSet) -> Result<(PickKey, Arc<Endpoint>), String> {
        match self {
            Endpoints::Fixed {
                list,
                next,
                detector,
            } => match list.len() {
                0 => Err("no endpoint configured".to_owned()),
                1 => Ok((PickKey::Index(0), Arc::clone(&list[0]))),
                n => {
                    let start = next.fetch_add(1, Ordering::Relaxed);
                    let in_rotation = |i: &usize| !detector.is_ejected(i);
                    let order = || (0..n).map(|i| (start + i) % n);
                    let index = order()
                        .find(|i| !tried.contains_index(*i) && in_rotation(i))
                        .or_else(|| order().find(in_rotation))
                        // The detector never ejects the whole pool; if it somehow
                        // did, round robin over everything beats failing.
                        .unwrap_or(start % n);
                    Ok((PickKey::Index(index), Arc::clone(&list[index])))
                }
            },
            Endpoints::Discovered {
                balancer,
                detector,
                template,
                generation,
                made,
            } => {
                let set = balancer.endpoints();
                // The detector follows the pool (its share cap counts live endpoints).
                if generation.swap(set.generation(), Ordering::Relaxed) != set.generation() {
                    detector.set_endpoints(set.endpoints().iter().map(|e| e.id().clone()));
                    made.write().unwrap_or_else(|p| p.into_inner()).clear();
                }
                let picked = if tried.is_empty() {
                    balancer.pick()
                } else {
                    balancer.pick_avoiding(&|id| tried.contains_id(id))
                }
                .map_err(|e| e.to_string())?
                .abandoned_unless_ended();
                let chosen = picked.endpoint();
                let known = made
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(chosen.id())
                    .cloned();
                let endpoint = match known {
                    Some(endpoint) => endpoint,
                    None => {
                        let endpoint = Arc::new(template.at(chosen)?);
                        made.write()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(chosen.id().clone(), Arc::clone(&endpoint));
                        endpoint
                    }
                };
                Ok((
                    PickKey::Discovered {
                        id: chosen.id().clone(),
                        load: picked,
                    },
                    endpoint,
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

    /// Whether an endpoint the call has not `tried` is in rotation: a retry
    /// would go there, and so need not wait out the backoff.
    pub(crate) fn any_other(&self, tried: &TriedSet) -> bool {
        match self {
            Endpoints::Fixed { list, detector, .. } => {
                (0..list.len()).any(|i| !tried.contains_index(i) && !detector.is_ejected(&i))
            }
            Endpoints::Discovered { balancer, .. } => {
                balancer.any_other(&|id| tried.contains_id(id))
            }
        }
    }

    /// Reports an attempt's outcome on the endpoint it went to.
    pub(crate) fn record(&self, key: PickKey, outcome: EndpointOutcome) {
        match (self, key) {
            (Endpoints::Fixed { list, detector, .. }, PickKey::Index(index)) if list.len() > 1 => {
                detector.record_outcome(&index, outcome);
            }
            (Endpoints::Discovered { detector, .. }, PickKey::Discovered { id, load }) => {
                detector.record_outcome(&id, outcome);
                // A failure must not make the endpoint look fast to the balancer.
                match outcome {
                    EndpointOutcome::Success => load.succeeded(),
                    EndpointOutcome::Failure | EndpointOutcome::Refused => load.failed(),
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
        let url = |e: &Endpoint, path: &str| e.url(path, &[]).unwrap().to_string();
        for base in ["http://inventory:8081/api/", "http://inventory:8081/api"] {
            let e = Endpoint::parse(base).unwrap();
            assert_eq!(url(&e, "/stock/1"), "http://inventory:8081/api/stock/1");
            assert_eq!(url(&e, "stock"), "http://inventory:8081/api/stock");
            assert_eq!(url(&e, ""), "http://inventory:8081/api/");
            assert_eq!(&*e.label, "inventory:8081");
        }
        let e = Endpoint::parse("https://example.test").unwrap();
        assert_eq!(e.port, 443);
        assert_eq!(url(&e, "/x"), "https://example.test/x");
        for bad in ["", "inventory:8081", "ftp://x", "http://x/?a=1", "http://"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_read_as_they_would_appended_to_the_base() {
        let e = Endpoint::parse("http://inventory:8081/api").unwrap();
        let url = |path: &str, query: &[(&str, &str)]| {
            let query: Vec<(String, String)> = query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            e.url(path, &query).unwrap().to_string()
        };
        // A colon in the first segment is a path, not a scheme.
        assert_eq!(url("/a:b", &[]), "http://inventory:8081/api/a:b");
        assert_eq!(url("a:b/c", &[]), "http://inventory:8081/api/a:b/c");
        // Nor does a backslash lead to another host.
        assert_eq!(
            url("\\\\evil.test/x", &[]),
            "http://inventory:8081/api///evil.test/x"
        );
        assert_eq!(url("/x\\y", &[]), "http://inventory:8081/api/x/y");
        assert_eq!(url("?sku=1", &[]), "http://inventory:8081/api/?sku=1");
        assert_eq!(url("/x?sku=1", &[]), "http://inventory:8081/api/x?sku=1");
        assert_eq!(url("/x#top", &[]), "http://inventory:8081/api/x#top");
        assert_eq!(
            url("/x?a=1", &[("b", "two words")]),
            "http://inventory:8081/api/x?a=1&b=two+words"
        );
        assert_eq!(url("/a b", &[]), "http://inventory:8081/api/a%20b");
        assert_eq!(url("/a/../b", &[]), "http://inventory:8081/api/b");
    }

    #[test]
    fn discovered_hosts_keep_the_base_urls_scheme_and_prefix() {
        let template = Endpoint::parse("https://inventory/v1").unwrap();
        for ((host, port), expected, label) in [
            (
                ("10.0.0.7", 9000),
                "https://10.0.0.7:9000/v1/stock",
                "10.0.0.7:9000",
            ),
            (("::1", 9000), "https://[::1]:9000/v1/stock", "[::1]:9000"),
            (
                ("inventory-2.internal", 443),
                "https://inventory-2.internal/v1/stock",
                "inventory-2.internal:443",
            ),
        ] {
            let found = platform_core::discovery::Endpoint::new(host, port);
            let e = template.at(&found).unwrap();
            assert_eq!(e.url("/stock", &[]).unwrap().to_string(), expected);
            assert_eq!(&*e.label, label);
            assert_eq!(&*e.address, found.host());
        }
    }
}
