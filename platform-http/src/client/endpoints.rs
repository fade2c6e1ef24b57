//! The endpoints of one target and which one the next attempt goes to.
//!
//! Round robin over the base URLs, skipping endpoints the outlier detector
//! has ejected (Envoy's outlier detection; the detector bounds the share
//! ejected at once, so the pool never empties). A single endpoint is never
//! ejected — the target's circuit breaker covers it — so the common case of
//! one base URL skips the detector entirely.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use platform_core::resilience::OutlierDetector;

/// One place the target can be reached.
#[derive(Debug)]
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

/// The pool of a target's endpoints.
#[derive(Debug)]
pub(crate) struct Endpoints {
    list: Vec<Endpoint>,
    next: AtomicUsize,
    detector: OutlierDetector<usize>,
}

impl Endpoints {
    pub(crate) fn new(list: Vec<Endpoint>, detector: OutlierDetector<usize>) -> Self {
        detector.set_endpoints(0..list.len());
        Endpoints {
            list,
            next: AtomicUsize::new(0),
            detector,
        }
    }

    /// The endpoint for the next attempt (its index and itself), or `None`
    /// for an empty pool.
    pub(crate) fn pick(&self) -> Option<(usize, &Endpoint)> {
        match self.list.len() {
            0 => None,
            1 => Some((0, &self.list[0])),
            n => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                let index = (0..n)
                    .map(|i| (start + i) % n)
                    .find(|i| !self.detector.is_ejected(i))
                    // The detector never ejects the whole pool; if it somehow
                    // did, round robin over everything beats failing.
                    .unwrap_or(start % n);
                Some((index, &self.list[index]))
            }
        }
    }

    /// The endpoint when there is exactly one (the span names it up front).
    pub(crate) fn single(&self) -> Option<&Endpoint> {
        match self.list.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    /// Reports an attempt's health on endpoint `index`.
    pub(crate) fn record(&self, index: usize, healthy: bool) {
        if self.list.len() > 1 {
            self.detector.record(&index, healthy);
        }
    }

    /// The labels of the endpoints ejected now.
    pub(crate) fn ejected(&self) -> Vec<Arc<str>> {
        let mut ejected = self.detector.ejected();
        ejected.sort_unstable();
        ejected
            .into_iter()
            .filter_map(|i| self.list.get(i).map(|e| e.label.clone()))
            .collect()
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
