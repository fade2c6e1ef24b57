//! Serving an axum router on the runtime: limits, observability, graceful drain.

mod accept;
mod deadline;
mod grpc;
mod layer;
mod limit;
mod rate_limit;
mod request_id;
mod stall;

use std::net::SocketAddr;

use platform_core::{Error, Runtime};
use tokio_util::sync::CancellationToken;

pub use crate::grpc::is_grpc;
pub use accept::{ClientAddr, serve_listener};
pub use deadline::{DEADLINE_HEADER, HeaderDeadline};
pub use layer::{InFlight, ResponseFuture, ServerLayer, ServerService};
pub use limit::OVERLOADED_HEADER;
pub use rate_limit::{RateLimit, RateLimitLayer};
pub(crate) use request_id::REQUEST_ID_NAME;
pub use request_id::{REQUEST_ID_HEADER, RequestId};

/// Runs `app` on `server.bind` and the admin endpoints on `admin.bind`
/// until SIGTERM or SIGINT, then shuts down gracefully: readiness fails at
/// once, the API keeps serving for the drain delay, stops accepting, and
/// in-flight requests get the grace period. Returns when the sequence is
/// over; `main` then returns and the process exits 0.
///
/// `app` is an axum `Router` or any other tower service that answers HTTP
/// requests: a tonic service or `Routes`, a `service_fn` (see [`App`]).
pub async fn serve(rt: &Runtime, app: impl App) -> Result<(), Error> {
    BoundServer::bind(rt, app).await?.run().await
}

/// What [`serve`] runs: any tower service that answers HTTP requests and
/// cannot fail (errors are answers), as axum's `Router`, tonic's `Routes`
/// and generated servers, and `service_fn`s answering `Infallible` are.
///
/// A `Router` gets the server layer on each route, where axum has matched
/// the route: `http.route` and the span name carry it. Any other service is
/// served as a router's fallback; the route is then the gRPC method (the
/// request path) for gRPC requests, and absent otherwise, as the semantic
/// conventions ask when the route is unknown.
pub trait App: Send + 'static {
    /// This app as an axum router.
    fn into_router(self) -> axum::Router;
}

impl<T> App for T
where
    T: tower::Service<http::Request<axum::body::Body>, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    T::Response: axum::response::IntoResponse + 'static,
    T::Future: Send + 'static,
{
    fn into_router(self) -> axum::Router {
        // A router is one too; it keeps its routes (a fallback would hide them).
        let mut app = Some(self);
        let any = &mut app as &mut dyn std::any::Any;
        if let Some(router) = any.downcast_mut::<Option<axum::Router>>() {
            return router.take().unwrap_or_default();
        }
        app.map_or_else(axum::Router::new, |service| {
            axum::Router::new().fallback_service(service)
        })
    }
}

/// The API and admin listeners, bound but not yet serving: lets a caller
/// learn the addresses (port 0 in tests) before running.
#[derive(Debug)]
pub struct BoundServer {
    rt: Runtime,
    router: axum::Router,
    api: Option<tokio::net::TcpListener>,
    admin: Option<tokio::net::TcpListener>,
    /// Served on the admin port beside its own endpoints.
    admin_routes: axum::Router,
    in_flight: InFlight,
}

impl BoundServer {
    /// Binds the listeners named in config.
    pub async fn bind(rt: &Runtime, app: impl App) -> Result<Self, Error> {
        let router = app.into_router();
        let config = rt.settings();
        let bind = |what: &'static str, addr: String| async move {
            tokio::net::TcpListener::bind(&addr)
                .await
                .map_err(|source| Error::Bind { what, addr, source })
        };
        let admin = if config.admin.enabled {
            Some(bind("admin", config.admin.bind.clone()).await?)
        } else {
            None
        };
        let api = if config.server.enabled {
            Some(bind("server", config.server.bind.clone()).await?)
        } else {
            None
        };
        Ok(BoundServer {
            rt: rt.clone(),
            router,
            api,
            admin,
            admin_routes: axum::Router::new(),
            in_flight: InFlight::default(),
        })
    }

    /// Where the API listens.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Where the admin endpoints listen.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves `routes` on the admin port too, beside `/livez`, `/metrics`
    /// and the rest (platform-grpc adds `grpc.health.v1.Health` this way).
    /// The admin port speaks HTTP/1 and HTTP/2 without TLS (h2c, as a gRPC
    /// client or a Kubernetes `grpc:` probe sends it); like the probes,
    /// these routes are neither limited nor measured by the server layer.
    /// A route that is already there panics, as axum's `merge` does.
    pub fn with_admin_routes(mut self, routes: axum::Router) -> Self {
        self.admin_routes = std::mem::take(&mut self.admin_routes).merge(routes);
        self
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
    }

    /// Serves until shutdown, then runs the shutdown sequence.
    pub async fn run(self) -> Result<(), Error> {
        let config = self.rt.settings();
        let lifecycle = self.rt.lifecycle().clone();
        // The admin server outlives the API: /readyz must answer 503 while draining.
        if let Some(addr) = self.admin_addr() {
            tracing::info!(%addr, "admin server listening");
        }
        let api_addr = self.api_addr();
        if let Some(addr) = api_addr {
            tracing::info!(%addr, "API server listening");
        }
        let admin_stop = CancellationToken::new();
        let admin_routes = self.admin_routes;
        let admin_task = self.admin.map(|listener| {
            let app = crate::admin::router(&self.rt).merge(admin_routes);
            let settings = config.server.clone();
            let stop = admin_stop.clone().cancelled_owned();
            tokio::spawn(async move {
                if let Err(e) = serve_listener(listener, app, &settings, stop).await {
                    tracing::error!(error = %e, "admin server failed");
                }
            })
        });
        // Every route gets the layer (it needs the route's `MatchedPath`);
        // one layer, so one more boxed future per request, not one per feature.
        let mut router = self.router;
        // Inside the server layer, so a 429 has its span and duration too.
        let rate = &config.server.rate_limit;
        if let Some(limit) = RateLimitLayer::with_meters(rate.rate, rate.burst, self.rt.meters()) {
            router = router.layer(limit);
        }
        let app = router.layer(ServerLayer::with_meters(
            &config.server,
            self.in_flight.clone(),
            self.rt.meters(),
        ));
        let api = self.api.map(|listener| {
            let settings = config.server.clone();
            let stop = lifecycle.stop_accepting();
            async move { serve_listener(listener, app, &settings, stop).await }
        });
        if let Some(addr) = api_addr {
            self.rt.register_endpoint(addr)?;
        }
        self.rt.mark_started();
        let outcome = match api {
            Some(api) => self.rt.run(api).await,
            None => {
                self.rt
                    .run(async {
                        lifecycle.stop_accepting().await;
                        Ok(())
                    })
                    .await
            }
        };
        admin_stop.cancel();
        if let Some(task) = admin_task {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), task).await;
        }
        outcome.map(|_| ())
    }
}
