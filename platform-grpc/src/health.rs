//! `grpc.health.v1.Health` answered from the runtime's health registry.
//!
//! The standard gRPC health protocol, which Kubernetes `grpc:` probes,
//! Envoy, grpc-health-probe and every gRPC implementation's health client
//! speak. It is served on the admin port beside `/readyz` and the rest, so
//! that probes are never queued behind, or refused with, the API's load.
//!
//! | service name asked | answers | like |
//! | --- | --- | --- |
//! | `""` (the whole server, a probe's default) | SERVING while readiness passes | `/readyz` |
//! | each service added to [`Services`](crate::Services) (`package.Service`) | the same: SERVING while readiness passes | `/readyz` |
//! | `readiness` | SERVING while readiness passes | `/readyz` |
//! | `liveness` | SERVING while liveness passes | `/livez` |
//! | `startup` | SERVING once startup passes | `/startupz` |
//! | any other | Check: NOT_FOUND; Watch: SERVICE_UNKNOWN, the stream kept open | |
//!
//! A service served by this process is as ready as the process: its
//! handlers' dependencies are the readiness checks the service registered,
//! and the runtime fails readiness at once when shutdown begins, so every
//! name but `liveness` turns NOT_SERVING as the drain starts (Kubernetes
//! stops sending traffic; callers watching move away). `liveness` and
//! `startup` exist because a Kubernetes `grpc:` probe names one service per
//! probe: a liveness probe on `""` would restart a pod whose dependency is
//! down. The readiness status is SERVING or NOT_SERVING, never UNKNOWN: a
//! check without a result yet fails readiness, as it does for `/readyz`.
//!
//! Watch sends the current status at once and then each change, as the
//! registry reports it (no polling), and ends with UNAVAILABLE when the
//! runtime stops its background tasks at the end of the shutdown, so that
//! the admin server's drain does not wait on streams that never end.
//!
//! # Why not tonic-health's reporter
//!
//! The generated service and messages are tonic-health's (it ships them
//! generated: no `protoc`). Its `HealthReporter` keeps a second copy of each
//! status that a task would have to push from the registry, and its Watch
//! fails an unknown service with NOT_FOUND where the protocol asks for
//! SERVICE_UNKNOWN on an open stream; reading the registry directly is
//! shorter than bridging and keeps one source of truth.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use platform_core::Runtime;
use platform_core::health::{HealthChanges, HealthRegistry, Kind};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The names the protocol answers for a probe, and the probe.
const PROBES: [(&str, Kind, &str); 3] = [
    ("readiness", Kind::Readiness, "readiness"),
    ("liveness", Kind::Liveness, "liveness"),
    ("startup", Kind::Startup, "startup"),
];

/// The probe a reserved service name stands for.
pub(crate) fn probe_named(name: &str) -> Option<&'static str> {
    PROBES
        .iter()
        .find(|(reserved, ..)| *reserved == name)
        .map(|(.., probe)| *probe)
}

/// The health service's routes for the admin server.
pub(crate) fn routes(rt: &Runtime, services: &[&'static str]) -> axum::Router {
    let service = HealthService::new(
        rt.health().clone(),
        services.iter().copied(),
        rt.lifecycle().task_token(),
    );
    axum::Router::new().route_service(
        &format!(
            "/{}/{{*rest}}",
            tonic_health::pb::health_server::SERVICE_NAME
        ),
        HealthServer::new(service),
    )
}

/// `grpc.health.v1.Health` over a [`HealthRegistry`]: see the module docs
/// for what each service name answers. [`serve`](crate::serve) puts it on
/// the admin port; this type is for serving it elsewhere too.
#[derive(Debug, Clone)]
pub struct HealthService {
    registry: HealthRegistry,
    /// The services served here, each answered as readiness.
    services: Arc<[String]>,
    /// Cancelled at the end of the shutdown: Watch streams end.
    stop: CancellationToken,
}

impl HealthService {
    /// The health of `registry` for `services` (their full names,
    /// `package.Service`); Watch streams end when `stop` is cancelled.
    pub fn new<'a>(
        registry: HealthRegistry,
        services: impl IntoIterator<Item = &'a str>,
        stop: CancellationToken,
    ) -> Self {
        HealthService {
            registry,
            services: services.into_iter().map(str::to_owned).collect(),
            stop,
        }
    }

    /// The probe a service name is answered with, if the name is known.
    fn kind_of(&self, service: &str) -> Option<Kind> {
        if service.is_empty() || self.services.iter().any(|s| s == service) {
            return Some(Kind::Readiness);
        }
        PROBES
            .iter()
            .find(|(name, ..)| *name == service)
            .map(|(_, kind, _)| *kind)
    }

    fn status(&self, kind: Option<Kind>) -> ServingStatus {
        match kind {
            Some(kind) if self.registry.passes(kind) => ServingStatus::Serving,
            Some(_) => ServingStatus::NotServing,
            None => ServingStatus::ServiceUnknown,
        }
    }
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status.into(),
    }
}

/// The Watch stream's state between messages.
struct Watching {
    service: HealthService,
    kind: Option<Kind>,
    changes: HealthChanges,
    last: Option<ServingStatus>,
    ended: bool,
}

impl Watching {
    /// The next message: the status when it differs from the last one sent,
    /// UNAVAILABLE once at the end of the shutdown, then nothing.
    async fn next(mut self) -> Option<(Result<HealthCheckResponse, Status>, Self)> {
        if self.ended {
            return None;
        }
        loop {
            let now = self.service.status(self.kind);
            if self.last != Some(now) {
                self.last = Some(now);
                return Some((Ok(response(now)), self));
            }
            let stop = self.service.stop.clone();
            let more = tokio::select! {
                more = self.changes.changed() => more,
                () = stop.cancelled() => false,
            };
            if !more {
                self.ended = true;
                let status = Status::unavailable("the server is shutting down");
                return Some((Err(status), self));
            }
        }
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        match self.kind_of(&request.get_ref().service) {
            Some(kind) => Ok(Response::new(response(self.status(Some(kind))))),
            None => Err(Status::not_found("no such service is served here")),
        }
    }

    type WatchStream =
        Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // Subscribed before the first status is read: no change is missed.
        let watching = Watching {
            changes: self.registry.changes(),
            kind: self.kind_of(&request.get_ref().service),
            service: self.clone(),
            last: None,
            ended: false,
        };
        let stream = futures::stream::unfold(watching, Watching::next);
        Ok(Response::new(Box::pin(stream)))
    }
}
