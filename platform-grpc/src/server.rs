//! Serving tonic services on the runtime.

use platform_core::{Error, Runtime};
use platform_http::BoundServer;

use crate::ServiceError;

/// The gRPC services a process serves: tonic's [`Routes`](tonic::service::Routes)
/// and their names, which the health protocol answers for.
#[derive(Debug, Clone, Default)]
pub struct Services {
    routes: tonic::service::Routes,
    names: Vec<&'static str>,
    /// An HTTP API served on the same port.
    http: Option<axum::Router>,
}

impl Services {
    /// No services yet: a call to any method is UNIMPLEMENTED.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a generated tonic server (`FooServer::new(handler)`). A second
    /// service of the same name, or one named as a probe of the health
    /// protocol, is refused: tonic would panic on the first and the health
    /// protocol could not tell the second apart.
    ///
    /// ```
    /// use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    ///     TraceService, TraceServiceServer,
    /// };
    /// # #[derive(Default, Clone)]
    /// # struct Collector;
    /// # #[tonic::async_trait]
    /// # impl TraceService for Collector {
    /// #     async fn export(
    /// #         &self,
    /// #         _: tonic::Request<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
    /// #     ) -> Result<tonic::Response<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse>, tonic::Status> {
    /// #         Ok(tonic::Response::new(Default::default()))
    /// #     }
    /// # }
    /// let services = platform_grpc::Services::new()
    ///     .add_service(TraceServiceServer::new(Collector))
    ///     .unwrap();
    /// assert_eq!(services.names(), ["opentelemetry.proto.collector.trace.v1.TraceService"]);
    /// let twice = services.add_service(TraceServiceServer::new(Collector));
    /// assert!(matches!(twice, Err(platform_grpc::ServiceError::Duplicate { .. })));
    /// ```
    pub fn add_service<S>(mut self, service: S) -> Result<Self, ServiceError>
    where
        S: tonic::codegen::Service<
                http::Request<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        let name = S::NAME;
        if let Some(probe) = crate::health::probe_named(name) {
            return Err(ServiceError::Reserved { name, probe });
        }
        if self.names.contains(&name) {
            return Err(ServiceError::Duplicate { name });
        }
        self.names.push(name);
        self.routes = self.routes.add_service(service);
        Ok(self)
    }

    /// Serves `router` on the same port: a service with an HTTP API and a
    /// gRPC one (the server layer tells a gRPC call by its content type;
    /// gRPC paths are `/package.Service/Method`, which an HTTP route does
    /// not take). Each route of `router` keeps its `http.route`. A path
    /// neither serves is 404 to an HTTP request and UNIMPLEMENTED to a
    /// gRPC call. `router` must not have a fallback of its own (axum
    /// refuses to merge two; it panics when the server is bound).
    pub fn with_http(mut self, router: axum::Router) -> Self {
        self.http = Some(match self.http.take() {
            Some(http) => http.merge(router),
            None => router,
        });
        self
    }

    /// The names of the services added (`package.Service`).
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }
}

/// Binds the API and admin listeners for `services` (as
/// [`BoundServer::bind`] does for an axum router) with
/// `grpc.health.v1.Health` added to the admin port. Run it with
/// [`BoundServer::run`]; [`serve`] does both.
pub async fn bind(rt: &Runtime, services: Services) -> Result<BoundServer, Error> {
    let health = crate::health::routes(rt, &services.names);
    let mut router = services.routes.into_axum_router();
    if let Some(http) = services.http {
        // tonic's fallback answers any path UNIMPLEMENTED, which would
        // tell an HTTP caller of a wrong path "200 OK".
        router = router.merge(http).fallback(not_found_or_unimplemented);
    }
    let server = BoundServer::bind(rt, router).await?;
    Ok(server.with_admin_routes(health))
}

/// Runs `services` on `server.bind` with the platform's server layer, and
/// the admin endpoints with `grpc.health.v1.Health` on `admin.bind`, until
/// SIGTERM or SIGINT; then drains as [`platform_http::serve`] does:
/// readiness (and so the health protocol) says NOT_SERVING at once, calls
/// in flight finish within the grace period, HTTP/2 connections get a
/// GOAWAY.
pub async fn serve(rt: &Runtime, services: Services) -> Result<(), Error> {
    bind(rt, services).await?.run().await
}

/// A path no route takes: UNIMPLEMENTED to a gRPC call, 404 otherwise.
async fn not_found_or_unimplemented(request: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    if platform_http::server::is_grpc(request.headers()) {
        tonic::Status::unimplemented("")
            .into_http::<axum::body::Body>()
            .into_response()
    } else {
        http::StatusCode::NOT_FOUND.into_response()
    }
}
