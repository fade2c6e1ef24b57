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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use platform_core::balance::{BalanceSettings, Balancer};
use platform_core::discovery::{EndpointId, EndpointMap, Resolver};
use platform_core::resilience::{EndpointOutcome, OutlierDetector};

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};

use crate::semconv::BoundDurations;

/// One place the target can be reached.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The base URL as a directory (`http://inventory:8081/api/`): paths
    /// are read relative to it.
    base: url::Url,
    /// Its scheme and authority, as every attempt's URI has them: parsed
    /// once here rather than on every attempt.
    scheme: Scheme,
    authority: Authority,
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
            url::Url::parse(base_url).map_err(|e| format!("{base_url:?} is not a URL: {e}"))?;
        match url.scheme() {
            "http" => {}
            #[cfg(feature = "rustls")]
            "https" => {}
            #[cfg(not(feature = "rustls"))]
            "https" => {
                return Err(format!(
                    "{base_url:?}: https needs platform-http's `rustls` feature"
                ));
            }
            _ => return Err(format!("{base_url:?}: expected an http:// or https:// URL")),
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{base_url:?}: a base URL has no query or fragment"));
        }
        // They would not be sent: hyper takes the Host header from the
        // host and port alone.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "{base_url:?}: credentials in a base URL are not sent; set an \
                 `authorization` header in the client's `headers` instead"
            ));
        }
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| format!("{base_url:?} has no host"))?
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("{base_url:?} has no port"))?;
        if !url.path().ends_with('/') {
            let dir = format!("{}/", url.path());
            url.set_path(&dir);
        }
        Self::new(
            url,
            Arc::from(format!("{host}:{port}")),
            Arc::from(host),
            port,
        )
    }

    fn new(base: url::Url, label: Arc<str>, address: Arc<str>, port: u16) -> Result<Self, String> {
        let scheme = Scheme::try_from(base.scheme())
            .map_err(|e| format!("{base}: scheme not usable in a request: {e}"))?;
        let authority =
            Authority::try_from(&base[url::Position::BeforeHost..url::Position::AfterPort])
                .map_err(|e| format!("{base}: host not usable in a request: {e}"))?;
        Ok(Endpoint {
            base,
            scheme,
            authority,
            label,
            address,
            port,
            durations: Arc::default(),
        })
    }

    /// The URI of `path` (with or without a leading slash, perhaps with a
    /// query) on this endpoint, with `query` appended.
    pub(crate) fn uri(&self, path: &str, query: &[(String, String)]) -> Result<Uri, String> {
        let path = path.trim_start_matches('/');
        let mut target = if is_plain(path) {
            // What the URL parser would make of it, without parsing: the
            // common path costs a copy.
            let prefix = self.base.path();
            let mut target = String::with_capacity(prefix.len() + path.len() + 32);
            target.push_str(prefix);
            target.push_str(path);
            target
        } else {
            self.resolve(path)?
        };
        if !query.is_empty() {
            let start = match target.find('?') {
                Some(at) => at + 1,
                None => {
                    target.push('?');
                    target.len()
                }
            };
            target = url::form_urlencoded::Serializer::for_suffix(target, start)
                .extend_pairs(query)
                .finish();
        }
        let path_and_query = PathAndQuery::try_from(target)
            .map_err(|e| format!("invalid URL for path {path:?}: {e}"))?;
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path_and_query);
        Uri::from_parts(parts).map_err(|e| format!("invalid URL for path {path:?}: {e}"))
    }

    /// The path and query of `path` read by the URL parser relative to the
    /// base: dot segments resolved, what needs it percent-encoded, the
    /// fragment left out (it is never sent).
    fn resolve(&self, path: &str) -> Result<String, String> {
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
        let url = url::Url::options()
            .base_url(Some(&self.base))
            .parse(&relative)
            .map_err(|e| format!("invalid URL for path {path:?}: {e}"))?;
        Ok(url[url::Position::BeforePath..url::Position::AfterQuery].to_owned())
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
        Self::new(
            base,
            Arc::from(found.authority()),
            Arc::from(found.host()),
            found.port(),
        )
    }
}

/// Whether the URL parser would take `path` (relative to a directory) as
/// it is: only characters no part of a URL encodes, no dot segment, no
/// fragment. Anything else goes through the parser.
fn is_plain(path: &str) -> bool {
    fn plain(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"-._~!$&()*+,;=:@/%".contains(&b)
    }
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    path.bytes().all(plain)
        && query.bytes().all(|b| plain(b) || b == b'?')
        && !path.split('/').any(|segment| segment == "." || segment == "..")
        // `%2e` is a dot to the parser.
        && !path.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1] == b'2' && w[2] | 0x20 == b'e')
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
        template: Box<Endpoint>,
        /// The endpoint-set generation the detector and `made` last saw.
        generation: AtomicU64,
        /// Discovered endpoints as attempts use them, made once per
        /// endpoint set rather than once per attempt.
        made: RwLock<EndpointMap<Arc<Endpoint>>>,
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
        let template = Box::new(Endpoint::parse(base_url)?);
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
            made: RwLock::new(EndpointMap::default()),
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
        let url = |e: &Endpoint, path: &str| e.uri(path, &[]).unwrap().to_string();
        for base in ["http://inventory:8081/api/", "http://inventory:8081/api"] {
            let e = Endpoint::parse(base).unwrap();
            assert_eq!(url(&e, "/stock/1"), "http://inventory:8081/api/stock/1");
            assert_eq!(url(&e, "stock"), "http://inventory:8081/api/stock");
            assert_eq!(url(&e, ""), "http://inventory:8081/api/");
            assert_eq!(&*e.label, "inventory:8081");
        }
        #[cfg(feature = "rustls")]
        {
            let e = Endpoint::parse("https://example.test").unwrap();
            assert_eq!(e.port, 443);
            assert_eq!(url(&e, "/x"), "https://example.test/x");
        }
        #[cfg(not(feature = "rustls"))]
        assert!(
            Endpoint::parse("https://example.test")
                .unwrap_err()
                .contains("rustls")
        );
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
            e.uri(path, &query).unwrap().to_string()
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
        // The fragment is the caller's: never sent.
        assert_eq!(url("/x#top", &[]), "http://inventory:8081/api/x");
        assert_eq!(
            url("/x?a=1", &[("b", "two words")]),
            "http://inventory:8081/api/x?a=1&b=two+words"
        );
        assert_eq!(url("/a b", &[]), "http://inventory:8081/api/a%20b");
        assert_eq!(url("/a/../b", &[]), "http://inventory:8081/api/b");
        assert_eq!(url("/a/%2E%2e/b", &[]), "http://inventory:8081/api/b");
        assert_eq!(
            url("/a?q=x y'", &[]),
            "http://inventory:8081/api/a?q=x%20y%27"
        );
        assert_eq!(url("/x?", &[("b", "1")]), "http://inventory:8081/api/x?b=1");
    }

    #[test]
    fn plain_paths_skip_the_parser_and_come_out_as_it_would_make_them() {
        let e = Endpoint::parse("http://inventory:8081/api").unwrap();
        let paths = [
            "",
            "/",
            "stock/1",
            "/stock/apple?sku=1&n=2",
            "/a:b/c",
            "/x/y.json",
            "/.well-known/z",
            "/a..b/",
            "/%41%2F",
            "/~user/(x)*,;=@!$&",
            "/q?a=b?c/d",
            "/a/.",
            "/a/..",
            "/a/%2e",
            "/a b",
            "/é",
            "/x\\y",
            "/x#f",
            "/x?y#f",
            "/{x}",
            "/x?'",
        ];
        for path in paths {
            let via_parser = e.resolve(path.trim_start_matches('/')).unwrap();
            let uri = e.uri(path, &[]).unwrap();
            assert_eq!(
                uri.path_and_query().unwrap().as_str(),
                via_parser,
                "{path:?}"
            );
        }
        assert!(is_plain("stock/apple?sku=1"));
        assert_eq!(
            e.uri("/a%zz", &[])
                .unwrap()
                .path_and_query()
                .unwrap()
                .as_str(),
            "/api/a%zz",
            "a stray percent sign is kept, as the parser keeps it"
        );
        assert!(!is_plain("a/../b") && !is_plain("a/%2E") && !is_plain("a b") && !is_plain("x#f"));
    }

    proptest::proptest! {
        /// Whatever the path, the URI sent is the one the URL parser makes
        /// of it (or both refuse it): the shortcut never changes a request.
        #[test]
        fn any_path_comes_out_as_the_parser_makes_it(
            path in proptest::collection::vec(proptest::sample::select(PATH_PIECES), 0..12)
        ) {
            let path: String = path.concat();
            let e = Endpoint::parse("http://inventory:8081/api").unwrap();
            let ours = e
                .uri(&path, &[])
                .map(|uri| uri.path_and_query().unwrap().as_str().to_owned());
            let parsed = e.resolve(path.trim_start_matches('/')).and_then(|target| {
                PathAndQuery::try_from(target)
                    .map(|p| p.as_str().to_owned())
                    .map_err(|e| e.to_string())
            });
            proptest::prop_assert_eq!(ours.ok(), parsed.ok(), "{:?}", path);
        }
    }

    /// What paths are made of in the property above: what URLs allow, what
    /// the parser encodes or reads specially (dot segments, percent-encoded
    /// dots, a backslash, a colon), and what it refuses.
    const PATH_PIECES: &[&str] = &[
        "a",
        "Z9",
        "/",
        ".",
        "..",
        "%2e",
        "%2E",
        "%zz",
        "%41",
        "?",
        "#",
        "&",
        "=",
        ":",
        "@",
        "!$'()*+,;~_-",
        " ",
        "\\",
        "{}",
        "|^`",
        "\"<>",
        "[]",
        "é",
    ];

    #[test]
    fn base_urls_with_credentials_are_refused() {
        let error = Endpoint::parse("http://user:secret@inventory:8081").unwrap_err();
        assert!(error.contains("credentials"), "{error}");
    }

    #[test]
    fn discovered_hosts_keep_the_base_urls_scheme_and_prefix() {
        let template = Endpoint::parse("http://inventory/v1").unwrap();
        for ((host, port), expected, label) in [
            (
                ("10.0.0.7", 9000),
                "http://10.0.0.7:9000/v1/stock",
                "10.0.0.7:9000",
            ),
            (("::1", 9000), "http://[::1]:9000/v1/stock", "[::1]:9000"),
            (
                ("inventory-2.internal", 80),
                "http://inventory-2.internal/v1/stock",
                "inventory-2.internal:80",
            ),
        ] {
            let found = platform_core::discovery::Endpoint::new(host, port);
            let e = template.at(&found).unwrap();
            assert_eq!(e.uri("/stock", &[]).unwrap().to_string(), expected);
            assert_eq!(&*e.label, label);
            assert_eq!(&*e.address, found.host());
        }
    }
}
