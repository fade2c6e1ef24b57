//! gRPC for platform services: a resilient [`Channel`] for generated tonic
//! clients (discovery, balancing, retries as gRPC's proposal A6 specifies
//! them, hedging, deadlines, the breaker; see [`client`]), tonic services served on the runtime with
//! the platform's server layer, and the standard health protocol
//! (`grpc.health.v1.Health`) answered from the health registry on the admin
//! port, so that a Kubernetes `grpc:` probe works.
//!
//! The server layer is platform-http's: it recognises a gRPC call by its
//! content type and speaks gRPC to it (the deadline from `grpc-timeout`,
//! DEADLINE_EXCEEDED, INTERNAL for a panic, UNAVAILABLE over the
//! concurrency limit, `rpc.server.call.duration` and a
//! `package.Service/Method` span with the call's status code). One layer
//! for both protocols: every request pays for one header check, and a
//! service that serves both gets one set of limits. What this crate adds is
//! what only gRPC needs: the services' names (for the health protocol) and
//! the health service itself.
//!
//! ```no_run
//! # #[platform_config::settings]
//! # struct InventorySettings {}
//! use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
//!     TraceService, TraceServiceServer,
//! };
//! # #[derive(Default)]
//! # struct Collector;
//! # #[tonic::async_trait]
//! # impl TraceService for Collector {
//! #     async fn export(
//! #         &self,
//! #         _: tonic::Request<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
//! #     ) -> Result<tonic::Response<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse>, tonic::Status> {
//! #         Ok(tonic::Response::new(Default::default()))
//! #     }
//! # }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let (rt, _config) = platform_core::runtime!(InventorySettings).init().await?;
//!     let services = platform_grpc::Services::new()
//!         .add_service(TraceServiceServer::new(Collector::default()))?;
//!     platform_grpc::serve(&rt, services).await?;
//!     Ok(())
//! }
//! ```
//!
//! Cargo features: `etcd`, etcd discovery for channels (`discovery =
//! "etcd://service"`); building it needs `protoc`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
mod error;
pub mod health;
mod server;

pub use client::{
    Channel, ChannelBuilder, ChannelError, GrpcClientSettings, GrpcRuntimeBuilderExt, GrpcSettings,
    ResponseBody,
};
pub use error::ServiceError;
pub use server::{Services, bind, serve};
/// The tonic this crate is built with: generated code must use the same.
pub use tonic;
