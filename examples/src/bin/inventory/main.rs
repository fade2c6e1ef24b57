//! `inventory`: keeps stock levels and takes reservations.
//!
//! Run it with `cargo run -p platform-examples --bin inventory -- --help`.

mod routes;
mod settings;

use settings::InventorySettings;

const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/inventory");

#[tokio::main]
async fn main() -> Result<(), platform_core::Error> {
    let rt = platform_core::Runtime::<InventorySettings>::builder("inventory")
        .version(env!("CARGO_PKG_VERSION"))
        .default_config_dir(CONFIG_DIR)
        .init()
        .await?;
    let store = routes::Store::new(&rt.config().app);
    platform_http::serve(&rt, routes::router(store)).await
}
