//! HTTP for platform services: the server side (a tower layer that carries
//! trace context, request ids, metrics and panics; an accept loop with header
//! limits and graceful drain), the admin server (probes, health, metrics,
//! info), and [`serve`], which runs both on the runtime.
//!
//! ```no_run
//! # #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! # struct OrdersSettings {}
//! # impl platform_config::Validate for OrdersSettings {}
//! #[tokio::main]
//! async fn main() -> Result<(), platform_core::Error> {
//!     let rt = platform_core::Runtime::<OrdersSettings>::builder("orders").init().await?;
//!     let app = axum::Router::new().route("/orders", axum::routing::get(|| async { "[]" }));
//!     platform_http::serve(&rt, app).await
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod server;

pub use server::{BoundServer, InFlight, ServerLayer, serve};
