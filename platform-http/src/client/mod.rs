//! The platform's HTTP client: hyper's connection pool underneath, the
//! resilience layer of `platform-core` around every call.
//!
//! A [`Client`] calls one named target, configured under
//! `http.clients.<name>` (base URL, connect / per-attempt / total timeouts,
//! retry, budget, breaker, outlier ejection, hedging, default headers). Its
//! request API reads like reqwest's; what it adds:
//!
//! - **Retries that cannot make an outage worse.** Connect failures,
//!   resets, bodies cut short, attempt timeouts and 408/429/502/503/504 are
//!   retried with full-jitter backoff, within the target's retry budget
//!   (Finagle: at most 20% more load) and the call's deadline. Everything
//!   else is the answer (a 500 too: the request broke the server, and a
//!   retry would most likely repeat it).
//! - **Idempotency respected.** A request that may have reached the server
//!   is repeated only if it is idempotent: GET, HEAD, OPTIONS, TRACE, PUT,
//!   DELETE, any request with an `Idempotency-Key` header, or one marked
//!   with [`RequestBuilder::idempotent`]. A request refused before it was
//!   sent (connection refused) is retried whatever its method.
//! - **Bodies replayed, not re-streamed.** Bodies up to `max_replay_body`
//!   are kept for replay; larger or streaming bodies are sent once.
//! - **`Retry-After` honoured** (seconds or HTTP-date) when it fits in the
//!   deadline; the call stops at once when it does not. A malformed one is
//!   ignored and counted.
//! - **Deadlines propagated.** One deadline covers every attempt and sleep:
//!   the client's `total_timeout`, [`RequestBuilder::timeout`], or — inside
//!   a handler served by [`serve`](crate::serve) — what is left of the
//!   caller's deadline. The remaining time goes to the next hop in
//!   [`DEADLINE_HEADER`](crate::server::DEADLINE_HEADER).
//! - **Fail fast.** The target's circuit breaker opens while it is down;
//!   with several endpoints ([`ClientBuilder::endpoints`]) failing ones are
//!   ejected (Envoy's outlier detection).
//! - **Observable.** One client span per call (named after the method,
//!   built straight through the OpenTelemetry SDK under the service's trace
//!   layer, not built at all when the sampler is sure to drop it), an event per
//!   attempt (`http.client.attempt`: number, endpoint, delay since the
//!   previous one, outcome) and one saying why a failed call stopped
//!   (`http.client.stopped`), as OpenTelemetry events on the span when it is
//!   sampled and as debug log events; trace context and baggage injected
//!   into every attempt; `http.client.request.duration` per attempt.
//!
//! The pool makes no attempt of its own (reqwest would resend refused
//! HTTP/2 streams twice, unbudgeted): every attempt goes through the budget.
//!
//! Every client of one target in the process shares its budget, breaker and
//! latency estimate (one [`Resilience`] per target name, from the runtime's
//! registry, [`Runtime::targets`], or the one [`ClientBuilder::registry`] names).
//!
//! ```no_run
//! # async fn run(rt: platform_core::Runtime) -> Result<(), platform_http::ClientError> {
//! #[derive(serde::Deserialize)]
//! struct Stock { available: u32 }
//!
//! let inventory = platform_http::Client::for_service(&rt, "inventory")?;
//! let stock: Stock = inventory
//!     .get("/stock/apple")
//!     .send()
//!     .await?
//!     .error_for_status()?
//!     .json()?;
//! inventory
//!     .post("/reservations")
//!     .idempotency_key("order-4711")
//!     .json(&serde_json::json!({"sku": "apple", "quantity": 1}))
//!     .send()
//!     .await?;
//! # let _ = stock.available; Ok(()) }
//! ```

mod classify;
mod endpoints;
mod error;
mod metrics;
mod propagation;
mod request;
mod response;
mod retry_after;
mod service;
mod settings;
mod trace;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioTimer;
use platform_core::discovery::{DiscoverySettings, Resolver, TargetResolver};
use platform_core::health::{CheckOptions, CheckOutcome, Kind};
use platform_core::resilience::{Resilience, ResilienceRegistry};
use platform_core::{ClientsSection, Meters, Runtime};

pub use error::ClientError;
pub use request::RequestBuilder;
pub use response::Response;
pub use service::{CallInfo, HttpService};
pub use settings::{ClientSettings, HttpSettings, RuntimeBuilderExt};

use endpoints::{Endpoint, Endpoints};
use metrics::Instruments;

/// The header that makes a request safe to retry whatever its method.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// A resilient HTTP client for one named target (cheap to clone).
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    target: Arc<str>,
    http: Transport,
    endpoints: Endpoints,
    resilience: Resilience,
    attempt_timeout: Duration,
    max_replay_body: u64,
    max_response_body: u64,
    default_headers: HeaderMap,
    instruments: Instruments,
}

/// The registry of clients built without one of their own.
impl Client {
    /// The client for `name`, configured by `http.clients.<name>` of the
    /// runtime's config; an error when that entry is missing or invalid.
    pub fn for_service(rt: &Runtime, name: &str) -> Result<Self, ClientError> {
        let config = rt.settings();
        let http = rt.section::<HttpSettings>().ok_or_else(|| ClientError::Config {
            target: name.to_owned(),
            key: String::new(),
            reason: "this runtime does not read the `http` section: build it with \
                     `.requires_client(name)` or `.http_clients()` (platform_http::RuntimeBuilderExt)"
                .to_owned(),
        })?;
        let settings = http.clients.get(name).ok_or_else(|| ClientError::Config {
            target: name.to_owned(),
            key: String::new(),
            reason: format!(
                "no [http.clients.{name}] in the configuration ({})",
                http.configured()
            ),
        })?;
        let mut builder = Self::builder(name, settings)
            .discovery_settings(&config.discovery)
            .registry(rt.targets())
            .meters(rt.meters().clone());
        builder.source = format!("http.clients.{name}");
        let client = builder.build()?;
        if settings.discovery_check && client.inner.endpoints.discovered_set().is_some() {
            // Stale or missing discovery data is worth a look, not an outage:
            // the last known endpoints keep serving.
            let watched = client.clone();
            let check_name = format!("discovery:{name}");
            let check = rt.health().register_sync(
                &check_name,
                CheckOptions::new(Kind::Readiness).interval(Duration::from_secs(5)),
                move || watched.discovery_health(),
            );
            match check {
                Ok(()) => tracing::info!(
                    target = name,
                    check = %check_name,
                    "health check added (warns only; http.clients.{name}.discovery_check = false leaves it out)"
                ),
                Err(e) => tracing::debug!(target = name, error = %e, "discovery check not added"),
            }
        }
        Ok(client)
    }

    /// How discovery is doing for this client, as a readiness-neutral check outcome.
    fn discovery_health(&self) -> CheckOutcome {
        match self.inner.endpoints.discovered_set() {
            Some(set) => set.health().check_outcome(),
            None => CheckOutcome::pass(),
        }
    }

    /// A client for `name` from its settings, with policies of its own
    /// (shared with no other client: see [`ClientBuilder::registry`]).
    pub fn from_settings(name: &str, settings: &ClientSettings) -> Result<Self, ClientError> {
        Self::builder(name, settings).build()
    }

    /// A builder, for what settings do not say (several endpoints, a registry of one's own).
    pub fn builder(name: &str, settings: &ClientSettings) -> ClientBuilder {
        ClientBuilder {
            name: name.to_owned(),
            settings: settings.clone(),
            endpoints: None,
            registry: None,
            source: format!("Client::builder({name:?})"),
            resilience: None,
            discovery: None,
            resolver: None,
            meters: Meters::global(),
        }
    }

    /// The target's name.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// The target's resilience policies (budget, breaker, latency estimate).
    pub fn resilience(&self) -> &Resilience {
        &self.inner.resilience
    }

    /// The endpoints (`host:port`) currently ejected as outliers.
    pub fn ejected_endpoints(&self) -> Vec<Arc<str>> {
        self.inner.endpoints.ejected()
    }

    /// A request with `method` to `path` (relative to the base URL).
    pub fn request(&self, method: Method, path: impl Into<String>) -> RequestBuilder {
        RequestBuilder::new(self.clone(), method, path.into())
    }

    /// A GET request.
    pub fn get(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// A HEAD request.
    pub fn head(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::HEAD, path)
    }

    /// A POST request (not retried once it may have reached the server,
    /// unless it carries an idempotency key or is marked idempotent).
    pub fn post(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    /// A PUT request.
    pub fn put(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::PUT, path)
    }

    /// A PATCH request (not idempotent by default).
    pub fn patch(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::PATCH, path)
    }

    /// A DELETE request.
    pub fn delete(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }
}

/// Builds a [`Client`]; see [`Client::builder`].
#[derive(Debug)]
pub struct ClientBuilder {
    name: String,
    settings: ClientSettings,
    endpoints: Option<Vec<String>>,
    registry: Option<ResilienceRegistry>,
    /// Where the settings come from, for a conflict in the registry.
    source: String,
    resilience: Option<Resilience>,
    discovery: Option<DiscoverySettings>,
    resolver: Option<Arc<dyn Resolver>>,
    meters: Meters,
}

impl ClientBuilder {
    /// Calls these base URLs in turn instead of `base_url`, ejecting the
    /// ones that keep failing.
    pub fn endpoints<I, U>(mut self, base_urls: I) -> Self
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        self.endpoints = Some(base_urls.into_iter().map(Into::into).collect());
        self
    }

    platform_core::target_builder_methods!("client");

    /// The client; every invalid setting is an error naming its key.
    pub fn build(self) -> Result<Client, ClientError> {
        let name = self.name;
        let settings = &self.settings;
        let config = |key: &str, reason: String| ClientError::Config {
            target: name.clone(),
            key: key.to_owned(),
            reason,
        };
        let explicit_endpoints = self.endpoints.is_some();
        let base_urls = self
            .endpoints
            .unwrap_or_else(|| vec![settings.base_url.clone()]);
        let list = base_urls
            .iter()
            .map(|url| Endpoint::parse(url))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| config("base_url", reason))?;
        if list.is_empty() {
            return Err(ClientError::NoEndpoint {
                target: Arc::from(name.as_str()),
            });
        }
        if settings.connect_timeout.is_zero() {
            return Err(config("connect_timeout", "must be above zero".into()));
        }
        if settings.attempt_timeout.is_zero() {
            return Err(config("attempt_timeout", "must be above zero".into()));
        }
        let default_headers =
            default_headers(settings).map_err(|(key, reason)| config(&key, reason))?;
        let resilience = match self.resilience {
            Some(resilience) => resilience,
            None => policies(
                &name,
                settings,
                self.registry.as_ref(),
                &self.source,
                &self.meters,
            )
            .map_err(|(key, reason)| config(key, reason))?,
        };
        let http = transport(settings.connect_timeout)
            .map_err(|e| config("", format!("cannot build the HTTP client: {e}")))?;
        let endpoints = endpoints(
            list,
            self.resolver,
            explicit_endpoints,
            settings,
            self.discovery.as_ref(),
            &resilience,
            &self.meters,
        )
        .map_err(|reason| config("discovery", reason))?;
        let target = Arc::from(name.as_str());
        Ok(Client {
            inner: Arc::new(Inner {
                instruments: Instruments::new(&target, &self.meters),
                target,
                http,
                endpoints,
                resilience,
                attempt_timeout: settings.attempt_timeout,
                max_replay_body: settings.max_replay_body,
                max_response_body: settings.max_response_body,
                default_headers,
            }),
        })
    }
}

/// Where the client's calls go: `resolver`'s endpoints, the `list` given in
/// code, the target's `discovery` setting, or its base URL, in that order.
/// Keyed by index for a fixed list, by address for discovered endpoints.
fn endpoints(
    list: Vec<Endpoint>,
    resolver: Option<Arc<dyn Resolver>>,
    explicit_endpoints: bool,
    settings: &ClientSettings,
    discovery_settings: Option<&DiscoverySettings>,
    resilience: &Resilience,
    meters: &Meters,
) -> Result<Endpoints, String> {
    let discovery = settings.discovery.trim();
    if let Some(resolver) = resolver {
        let detector = resilience.new_outlier_detector();
        return discovered(settings, resolver, detector, meters);
    }
    if explicit_endpoints || discovery.is_empty() {
        return Ok(Endpoints::new(list, resilience.new_outlier_detector()));
    }
    // Needs a tokio runtime: the resolver refreshes in the background.
    let resolver = discovery
        .parse()
        .map_err(platform_core::discovery::DiscoveryError::from)
        .and_then(|target| {
            TargetResolver::with_meters(
                &target,
                &discovery_settings.cloned().unwrap_or_default(),
                meters,
            )
        })
        .map_err(|e| e.to_string())?;
    discovered(
        settings,
        resolver,
        resilience.new_outlier_detector(),
        meters,
    )
}

/// The target's policies: from `registry`, shared with the target's other
/// clients there, or its own; the key and what is wrong otherwise.
fn policies(
    name: &str,
    settings: &ClientSettings,
    registry: Option<&ResilienceRegistry>,
    source: &str,
    meters: &Meters,
) -> Result<Resilience, (&'static str, String)> {
    ResilienceRegistry::shared_or_own(registry, name, &settings.resilience(), source, meters)
        .map_err(|e| e.key_and_reason())
}

/// The target's `headers` setting as a header map, or the key and what is
/// wrong with it.
fn default_headers(settings: &ClientSettings) -> Result<HeaderMap, (String, String)> {
    let mut headers = HeaderMap::new();
    for (key, value) in &settings.headers {
        let invalid = |what: &str| {
            (
                format!("headers.{key}"),
                format!("not a valid header {what}"),
            )
        };
        let name = HeaderName::from_bytes(key.as_bytes()).map_err(|_| invalid("name"))?;
        let value = HeaderValue::from_str(value).map_err(|_| invalid("value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Endpoints kept current by `resolver`, or what is wrong with the target.
fn discovered(
    settings: &ClientSettings,
    resolver: impl Resolver + 'static,
    outliers: platform_core::resilience::OutlierDetector<platform_core::discovery::EndpointId>,
    meters: &Meters,
) -> Result<Endpoints, String> {
    Endpoints::discovered(
        &settings.base_url,
        resolver,
        &settings.balance,
        outliers,
        meters,
    )
}

/// How long an idle connection is kept for reuse.
const IDLE_CONNECTION_KEPT: Duration = Duration::from_secs(60);

#[cfg(feature = "rustls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "rustls"))]
type Connector = HttpConnector;

/// The connection pool under every [`Client`]: hyper's, without reqwest
/// over it. reqwest parsed each request's URL twice (once more in its
/// redirect policy) and checked proxies on every request; the platform
/// follows no redirects and goes through no proxy, and a third of a call's
/// instructions went there.
pub(crate) type Transport = hyper_util::client::legacy::Client<Connector, AttemptBody>;

/// An attempt's body: the call's bytes (shared, so a retry sends them
/// again) or its stream.
pub(crate) type AttemptBody = http_body_util::Either<http_body_util::Full<Bytes>, StreamingBody>;

/// A streamed request body.
pub(crate) type StreamingBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// The error of a streamed body or of the transport.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The pool, with what reqwest set by default and the platform relies on:
/// `TCP_NODELAY` (a small request is not held back by Nagle's algorithm)
/// and TCP keep-alive, so a peer gone silent is found.
///
/// hyper makes no attempt of its own beyond resending a request that was
/// never written because its pooled connection closed first: the server
/// never saw the first copy, so it adds no load. A refused HTTP/2 stream
/// is an error here, an attempt the retry budget counts.
fn transport(connect_timeout: Duration) -> Result<Transport, String> {
    Ok(
        hyper_util::client::legacy::Client::builder(crate::BoxedExecutor)
            // Below the platform server's `server.idle_timeout` (120 s): a
            // pooled connection is dropped here before the server closes
            // it, so no request is sent on a connection being closed.
            .pool_idle_timeout(IDLE_CONNECTION_KEPT)
            .pool_timer(TokioTimer::new())
            .build(connector(connect_timeout)?),
    )
}

/// How the pool connects: TCP, then TLS for `https://` with the feature.
fn connector(connect_timeout: Duration) -> Result<Connector, String> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.set_keepalive(Some(TCP_KEEPALIVE));
    #[cfg(feature = "rustls")]
    {
        http.enforce_http(false);
        Ok(hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| format!("TLS: {e}"))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http))
    }
    #[cfg(not(feature = "rustls"))]
    Ok(http)
}

/// How often an idle connection is probed (reqwest's default).
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// An HTTP/2 server refusing every stream (REFUSED_STREAM, which reqwest
    /// retries by default); returns its address and the streams it saw.
    async fn refusing_h2_server() -> (std::net::SocketAddr, Arc<AtomicU32>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let streams = Arc::new(AtomicU32::new(0));
        let seen = streams.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Ok(mut connection) = h2::server::handshake(socket).await else {
                        return;
                    };
                    while let Some(Ok((_request, mut respond))) = connection.accept().await {
                        seen.fetch_add(1, Ordering::SeqCst);
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                    }
                });
            }
        });
        (addr, streams)
    }

    #[tokio::test]
    async fn the_transport_makes_no_attempt_of_its_own() {
        let (addr, streams) = refusing_h2_server().await;
        let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
        // The control: reqwest as it comes resends the refused request.
        let stock = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        assert!(stock.get(uri.to_string()).send().await.is_err());
        assert_eq!(
            streams.swap(0, Ordering::SeqCst),
            3,
            "1 + reqwest's 2 retries"
        );

        let ours: Transport = hyper_util::client::legacy::Client::builder(crate::BoxedExecutor)
            .http2_only(true)
            .build(connector(Duration::from_secs(1)).unwrap());
        let request = http::Request::get(uri)
            .body(AttemptBody::Left(http_body_util::Full::new(Bytes::new())))
            .unwrap();
        assert!(ours.request(request).await.is_err());
        assert_eq!(streams.load(Ordering::SeqCst), 1, "the one attempt made");
    }
}
