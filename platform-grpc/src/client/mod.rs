//! The platform's gRPC channel: what a generated tonic client is built on,
//! with the target's policies around every call.
//!
//! [`Channel::for_service`] reads `grpc.clients.<name>` (see
//! [`GrpcClientSettings`]) and gives a channel for `FooClient::new(channel)`.
//! What it adds to a plain tonic `Channel`:
//!
//! - **Discovery and balancing.** Endpoints from `address` or `discovery`
//!   (static, DNS, etcd), one HTTP/2 connection each, picked per attempt by
//!   power of two choices over Peak-EWMA latency times in-flight calls;
//!   failing endpoints ejected (outlier detection), the target's breaker
//!   failing calls fast while it is down.
//! - **Retries as gRPC specifies them** (proposal A6; see the `call` module):
//!   the `retry_codes` (UNAVAILABLE by default) within the retry budget,
//!   `grpc-retry-pushback-ms` honoured, never after the response headers,
//!   `grpc-previous-rpc-attempts` on every retry; calls that never left
//!   the client requeued at once elsewhere; an overloaded server's
//!   UNAVAILABLE never retried on the same endpoint.
//! - **Hedging** for the `idempotent_methods`, after the observed p95.
//! - **Messages replayed, streams sent once.** A request whose body is
//!   complete when the call starts (every unary call) is kept, up to
//!   `max_replay_message`, for the attempts; a client stream still open is
//!   sent once and never retried after its first message leaves. Responses
//!   are not buffered: their messages stream through to tonic.
//! - **Deadlines.** One deadline covers every attempt: the earliest of
//!   tonic's `Request::set_timeout`, the request being served (inside a
//!   handler served by [`serve`](crate::serve)) and `total_timeout`. Each
//!   attempt sends what is left of it as `grpc-timeout` (a platform server
//!   holds the whole call, response stream included, to it); the attempt's
//!   own `attempt_timeout` bounds the wait for the response headers.
//! - **Telemetry.** A client span `package.Service/Method` (`rpc.system`,
//!   `rpc.service`, `rpc.method`, `rpc.grpc.status_code`, `server.address`,
//!   `server.port`) with an event per attempt; trace context and baggage in
//!   every attempt's metadata; the request id sent on (`x-request-id`);
//!   `rpc.client.call.duration` (seconds) when the response ends, with the
//!   status from the trailers.
//!
//! Every channel and HTTP client of one target in the process shares its
//! budget, breaker and latency estimate (one
//! [`Resilience`] per target name, from
//! the runtime's registry): their resilience settings must agree.
//!
//! ```no_run
//! # use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
//! # async fn run(rt: platform_core::Runtime) -> Result<(), Box<dyn std::error::Error>> {
//! let channel = platform_grpc::Channel::for_service(&rt, "collector")?;
//! let mut client = TraceServiceClient::new(channel);
//! let mut request = tonic::Request::new(Default::default());
//! request.set_timeout(std::time::Duration::from_millis(300));
//! client.export(request).await?;
//! # Ok(()) }
//! ```

mod body;
mod call;
mod codes;
mod connection;
mod endpoints;
mod error;
mod settings;
mod timeout;
mod trace;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use platform_core::discovery::{DiscoverySettings, Resolver, TargetResolver};
use platform_core::health::{CheckOptions, CheckOutcome, Kind};
use platform_core::resilience::{Resilience, ResilienceRegistry};
use platform_core::{ClientsSection, Meters, Runtime};

pub use body::ResponseBody;
pub use error::ChannelError;
pub use settings::{GrpcClientSettings, GrpcRuntimeBuilderExt, GrpcSettings};

use call::MethodPattern;
use codes::Code;
use endpoints::Endpoints;

/// The instrumentation scope of platform-grpc's instruments.
const SCOPE: &str = "platform-grpc";

/// A resilient gRPC channel to one named target (cheap to clone): give it
/// to a generated tonic client, `FooClient::new(channel)`.
#[derive(Debug, Clone)]
pub struct Channel {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    target: Arc<str>,
    endpoints: Endpoints,
    resilience: Resilience,
    attempt_timeout: Duration,
    max_replay_message: u64,
    retry_codes: Vec<Code>,
    /// Methods with codes of their own, a method's before its service's.
    method_retry_codes: settings::MethodCodes,
    idempotent: Vec<MethodPattern>,
    instruments: Instruments,
    /// The names of the methods called, made once each.
    names: trace::NameTable,
}

#[derive(Debug)]
struct Instruments {
    /// `rpc.client.call.duration`: one record per call, when it ends.
    duration: Histogram<f64>,
    /// Calls sent at most once because their request could not be replayed.
    not_replayable: Counter<u64>,
    target: [KeyValue; 1],
}

impl Instruments {
    fn new(target: &Arc<str>, meters: &Meters) -> Self {
        let meter = meters.meter(SCOPE);
        Instruments {
            duration: platform_http::semconv::duration_histogram(
                &meter,
                "rpc.client.call.duration",
                "Duration of gRPC calls, as the client measures them.",
            ),
            not_replayable: meter
                .u64_counter("platform.grpc.client.not_replayable")
                .with_description(
                    "Calls sent at most once because their request stream was still open or larger than max_replay_message.",
                )
                .build(),
            target: [KeyValue::new("target", Arc::clone(target))],
        }
    }

    fn target(&self) -> &[KeyValue] {
        &self.target
    }
}

impl Channel {
    /// The channel for `name`, configured by `grpc.clients.<name>` of the
    /// runtime's config; an error naming the key when that entry is missing
    /// or invalid. Needs a tokio runtime (discovery refreshes in the background).
    pub fn for_service(rt: &Runtime, name: &str) -> Result<Self, ChannelError> {
        let grpc = rt
            .section::<GrpcSettings>()
            .ok_or_else(|| ChannelError::Config {
                target: name.to_owned(),
                key: String::new(),
                reason: "this runtime does not read the `grpc` section: build it with \
                     `.requires_grpc_client(name)` or `.grpc_clients()` \
                     (platform_grpc::GrpcRuntimeBuilderExt)"
                    .to_owned(),
            })?;
        let settings = grpc.clients.get(name).ok_or_else(|| ChannelError::Config {
            target: name.to_owned(),
            key: String::new(),
            reason: format!(
                "no [grpc.clients.{name}] in the configuration ({})",
                grpc.configured()
            ),
        })?;
        let mut builder = Self::builder(name, settings)
            .discovery_settings(&rt.settings().discovery)
            .registry(rt.targets())
            .meters(rt.meters().clone());
        builder.source = format!("grpc.clients.{name}");
        let channel = builder.build()?;
        if settings.discovery_check && !settings.discovery.trim().is_empty() {
            let watched = channel.clone();
            let check_name = format!("grpc-discovery:{name}");
            let check = rt.health().register_sync(
                &check_name,
                CheckOptions::new(Kind::Readiness).interval(Duration::from_secs(5)),
                move || watched.discovery_health(),
            );
            if let Err(e) = check {
                tracing::debug!(target = name, error = %e, "discovery check not added");
            }
        }
        Ok(channel)
    }

    /// How discovery is doing for this channel: warns, never fails readiness
    /// (the last known endpoints keep serving).
    fn discovery_health(&self) -> CheckOutcome {
        self.inner.endpoints.set().health().check_outcome()
    }

    /// A builder, for what settings do not say (endpoints given in code, a
    /// resolver of one's own, policies of one's own): tests and benches.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let settings = platform_grpc::GrpcClientSettings::default();
    /// let channel = platform_grpc::Channel::builder("inventory", &settings)
    ///     .endpoints(["127.0.0.1:9090", "127.0.0.1:9091"])
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(channel.target(), "inventory");
    /// # }
    /// ```
    pub fn builder(name: &str, settings: &GrpcClientSettings) -> ChannelBuilder {
        ChannelBuilder {
            name: name.to_owned(),
            settings: settings.clone(),
            endpoints: None,
            resolver: None,
            registry: None,
            source: format!("Channel::builder({name:?})"),
            resilience: None,
            discovery: None,
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
}

type CallFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, tonic::Status>> + Send>>;

/// A call through the target's policies. Always ready: what limits calls
/// (the budget, an open breaker, the bulkhead) answers the call itself.
///
/// The error is a `tonic::Status` with the code a gRPC caller expects and
/// the [`ChannelError`] as its source, so tonic hands it on as it is.
impl tower::Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<ResponseBody>;
    type Error = tonic::Status;
    type Future = CallFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), tonic::Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> CallFuture {
        Box::pin(call::call(Arc::clone(&self.inner), request))
    }
}

/// Builds a [`Channel`]; see [`Channel::builder`].
#[derive(Debug)]
pub struct ChannelBuilder {
    name: String,
    settings: GrpcClientSettings,
    endpoints: Option<Vec<String>>,
    resolver: Option<Arc<dyn Resolver>>,
    registry: Option<ResilienceRegistry>,
    source: String,
    resilience: Option<Resilience>,
    discovery: Option<DiscoverySettings>,
    meters: Meters,
}

impl ChannelBuilder {
    /// Calls these endpoints (`host:port`) instead of `address` or `discovery`.
    pub fn endpoints<I, A>(mut self, addresses: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<String>,
    {
        self.endpoints = Some(addresses.into_iter().map(Into::into).collect());
        self
    }

    platform_core::target_builder_methods!("channel");

    /// The channel; every invalid setting is an error naming its key.
    /// Needs a tokio runtime.
    pub fn build(self) -> Result<Channel, ChannelError> {
        let name = self.name;
        let settings = &self.settings;
        let config = |key: &str, reason: String| ChannelError::Config {
            target: name.clone(),
            key: key.to_owned(),
            reason,
        };
        if settings.connect_timeout.is_zero() {
            return Err(config("connect_timeout", "must be above zero".into()));
        }
        if settings.attempt_timeout.is_zero() {
            return Err(config("attempt_timeout", "must be above zero".into()));
        }
        let retry_codes = settings
            .codes()
            .map_err(|(key, reason)| config(&key, reason))?;
        let method_retry_codes = settings
            .method_codes()
            .map_err(|(key, reason)| config(&key, reason))?;
        let idempotent = settings
            .idempotent_methods
            .iter()
            .enumerate()
            .map(|(i, m)| {
                MethodPattern::parse(m).map_err(|r| config(&format!("idempotent_methods.{i}"), r))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let resilience = match self.resilience {
            Some(resilience) => resilience,
            None => ResilienceRegistry::shared_or_own(
                self.registry.as_ref(),
                &name,
                &settings.resilience(),
                &self.source,
                &self.meters,
            )
            .map_err(|e| {
                let (key, reason) = e.key_and_reason();
                config(key, reason)
            })?,
        };
        let detector = resilience.new_outlier_detector();
        let balance = &settings.balance;
        let connect = settings.connect_timeout;
        let meters = &self.meters;
        let endpoints = if let Some(resolver) = self.resolver {
            Endpoints::new(resolver, balance, detector, connect, meters)
                .map_err(|reason| config("balance", reason))?
        } else {
            let (key, target) = match (&self.endpoints, settings.discovery.trim()) {
                (Some(list), _) => ("address", format!("static://{}", list.join(","))),
                (None, "") => {
                    let address = endpoints::authority(&settings.address)
                        .map_err(|reason| config("address", reason))?;
                    ("address", format!("static://{}", address.authority()))
                }
                (None, discovery) => ("discovery", discovery.to_owned()),
            };
            if self.endpoints.as_ref().is_some_and(Vec::is_empty) {
                return Err(ChannelError::NoEndpoint {
                    target: Arc::from(name.as_str()),
                    reason: "no endpoint given".to_owned(),
                });
            }
            let resolver = target
                .parse()
                .map_err(platform_core::discovery::DiscoveryError::from)
                .and_then(|target| {
                    TargetResolver::with_meters(
                        &target,
                        &self.discovery.clone().unwrap_or_default(),
                        meters,
                    )
                })
                .map_err(|e| config(key, e.to_string()))?;
            Endpoints::new(resolver, balance, detector, connect, meters)
                .map_err(|reason| config("balance", reason))?
        };
        let target: Arc<str> = Arc::from(name.as_str());
        Ok(Channel {
            inner: Arc::new(Inner {
                instruments: Instruments::new(&target, meters),
                names: trace::NameTable::default(),
                target,
                endpoints,
                resilience,
                attempt_timeout: settings.attempt_timeout,
                max_replay_message: settings.max_replay_message,
                retry_codes,
                method_retry_codes,
                idempotent,
            }),
        })
    }
}
