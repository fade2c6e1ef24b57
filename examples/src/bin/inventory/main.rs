//! `inventory`: keeps stock levels and takes reservations.
//!
//! Run it with `cargo run -p platform-examples --bin inventory -- --help`.

mod routes;
mod settings;

use settings::InventorySettings;

const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/inventory");

#[tokio::main]
async fn main() -> Result<(), platform_core::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let rt = platform_core::Runtime::<InventorySettings>::builder("inventory")
        .version(env!("CARGO_PKG_VERSION"))
        .default_config_dir(CONFIG_DIR)
        .init()
        .await?;
    let store = routes::Store::new(&rt.config().app);
    platform_http::serve(&rt, routes::router(store)).await
}
