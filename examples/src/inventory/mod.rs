//! `inventory`: keeps stock levels and takes reservations.
//!
//! Start-up is the whole of a golden-path `main`: the runtime (command line,
//! layered config, telemetry, health, signals), the service's own state and
//! health checks, then `serve` (API and admin servers, self-registration in
//! etcd when configured, graceful drain on SIGTERM). It answers over HTTP
//! and gRPC on one port, and the gRPC health protocol on its admin port.

pub mod grpc;
mod routes;
mod settings;

use std::time::Duration;

use platform_config::cli::ConfigArgs;
use platform_core::health::{CheckOptions, Kind};

pub use settings::InventorySettings;

/// Where the shipped config files are: `default.toml`, then one per profile.
const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/inventory");

/// Runs inventory until it is told to stop. `args` replaces the process's
/// command line (the demo passes its own); `None` parses it.
pub async fn main(args: Option<ConfigArgs>) -> Result<(), platform_core::Error> {
    let mut builder = platform_core::Runtime::builder::<InventorySettings>("inventory")
        .version(env!("CARGO_PKG_VERSION"))
        .default_config_dir(CONFIG_DIR);
    if let Some(args) = args {
        builder = builder.args(args);
    }
    let (rt, config) = builder.init().await?;
    let store = routes::Store::new(&config.current().app);

    // Readiness-neutral: an empty shelf is worth a look, and the service can
    // still answer every other SKU.
    let checked = store.clone();
    rt.health().register_sync(
        "store",
        CheckOptions::new(Kind::Readiness).interval(Duration::from_secs(5)),
        move || checked.check(),
    )?;

    // One port for both APIs: gRPC calls are told apart by their content
    // type; the admin port answers the gRPC health protocol too.
    let services = platform_grpc::Services::new()
        .add_service(grpc::server(store.clone()))?
        .with_http(routes::router(store));
    platform_grpc::serve(&rt, services).await
}
