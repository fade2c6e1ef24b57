//! The platform runtime: one init in `main`, health, lifecycle and graceful
//! shutdown, resilience, discovery and balancing.
//!
//! - [`Runtime`]: the command line, config, health registry, signals and
//!   shutdown sequence of one service process.
//! - [`health`]: named checks run in the background; probes read cached results.
//! - [`lifecycle`]: background tasks, shutdown hooks and the shutdown order.
//! - [`resilience`]: transport-neutral retries with a budget, deadlines,
//!   circuit breaking and hedging, usable directly or as tower layers.
//! - [`discovery`]: endpoints of a named target (static, DNS, etcd), kept
//!   current, stale-safe; self-registration in etcd.
//! - [`balance`]: power of two choices over Peak-EWMA, or round robin.
//!
//! # Cargo features
//!
//! | Feature | Default | What it adds |
//! |---------|---------|--------------|
//! | `dns`   | on      | DNS discovery (`dns://name:port` for A/AAAA, `dns+srv://name` for SRV) through hickory-resolver |
//! | `etcd`  | off     | etcd discovery (`etcd://service`) and `discovery::Registration` (self-registration); building etcd-client needs `protoc` (Debian `protobuf-compiler`) |
//!
//! Static targets (`static://host:port,...`) and the balancers need no feature.
//!
//! ```no_run
//! # async fn run() -> Result<(), platform_core::Error> {
//! let (rt, _config) = platform_core::Runtime::builder::<()>("my-service").init().await?;
//! rt.mark_started();
//! let stop = rt.lifecycle().stop_accepting();
//! rt.run(async move { stop.await; Ok(()) }).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod balance;
pub mod discovery;
mod error;
pub mod health;
pub mod lifecycle;
mod meters;
pub mod resilience;
mod runtime;
pub mod settings;

pub use error::{Error, HealthError};
pub use meters::Meters;

/// [`Runtime::builder`] named and versioned after the calling crate
/// (`CARGO_PKG_NAME`, `CARGO_PKG_VERSION`), so that a service cannot report
/// the wrong `service.version` by forgetting to pass it. With the settings
/// type: `runtime!(Settings)`; without, a service with no settings of its
/// own (`()`).
///
/// ```no_run
/// # #[platform_config::settings]
/// # struct Settings {}
/// # async fn run() -> Result<(), platform_core::Error> {
/// let (rt, config) = platform_core::runtime!(Settings).init().await?;
/// # let _ = (rt, config); Ok(()) }
/// ```
///
/// A package with several services (several binaries) names each with
/// `Runtime::builder("name").version(env!("CARGO_PKG_VERSION"))` instead.
#[macro_export]
macro_rules! runtime {
    () => {
        $crate::Runtime::builder::<()>(env!("CARGO_PKG_NAME")).version(env!("CARGO_PKG_VERSION"))
    };
    ($settings:ty) => {
        $crate::Runtime::builder::<$settings>(env!("CARGO_PKG_NAME"))
            .version(env!("CARGO_PKG_VERSION"))
    };
}
/// The telemetry crate, re-exported so a service links the same version
/// (and so the same OpenTelemetry) as the platform.
pub use platform_telemetry as telemetry;
pub use runtime::{
    AppSettings, ClientsSection, Config, Runtime, RuntimeBuilder, ServiceInfo, checks,
};
pub use settings::Settings;
