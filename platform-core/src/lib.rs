//! The platform runtime: one init in `main`, health, lifecycle and graceful
//! shutdown, resilience, discovery and balancing.
//!
//! ```no_run
//! # #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! # struct MySettings {}
//! # impl platform_config::Validate for MySettings {}
//! # async fn run() -> Result<(), platform_core::Error> {
//! let rt = platform_core::Runtime::<MySettings>::builder("my-service").init().await?;
//! rt.mark_started();
//! let stop = rt.lifecycle().stop_accepting();
//! rt.run(async move { stop.await; Ok(()) }).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod health;
pub mod lifecycle;
mod runtime;
pub mod settings;

pub use error::{Error, HealthError};
pub use runtime::{AppSettings, Runtime, RuntimeBuilder, ServiceInfo, checks};
pub use settings::Settings;
