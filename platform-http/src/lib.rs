//! HTTP for platform services: the server side (a tower layer that carries
//! trace context, request ids, metrics and panics; an accept loop with header
//! limits and graceful drain), the admin server (probes, health, metrics,
//! info), [`serve`], which runs both on the runtime, and the resilient
//! [`Client`] for calling other services (retries within a budget,
//! deadlines carried to the next hop, circuit breaking, hedging).
//!
//! Cargo features: `rustls` adds HTTPS to the client (rustls with
//! aws-lc-rs; off by default, as it compiles C).
//!
//! ```no_run
//! # #[platform_config::settings]
//! # struct OrdersSettings {}
//! #[tokio::main]
//! async fn main() -> Result<(), platform_core::Error> {
//!     let (rt, _config) = platform_core::runtime!(OrdersSettings).init().await?;
//!     let app = axum::Router::new().route("/orders", axum::routing::get(|| async { "[]" }));
//!     platform_http::serve(&rt, app).await
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod client;
mod executor;
pub mod grpc;
pub mod semconv;
pub mod server;

pub use client::{
    BoxError, CallInfo, Client, ClientBuilder, ClientError, ClientSettings, HttpService,
    HttpSettings, RequestBuilder, Response, RuntimeBuilderExt,
};
pub use executor::BoxedExecutor;
pub use server::{BoundServer, InFlight, ServerLayer, serve};
