//! `orders`: takes orders and reserves their stock in `inventory`.
//!
//! Run it with `cargo run -p platform-examples --bin orders -- --help`.

mod routes;
mod settings;

use settings::OrdersSettings;

const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/orders");

#[tokio::main]
async fn main() -> Result<(), platform_core::Error> {
    let rt = platform_core::Runtime::<OrdersSettings>::builder("orders")
        .version(env!("CARGO_PKG_VERSION"))
        .default_config_dir(CONFIG_DIR)
        .init()
        .await?;
    let app = &rt.config().app;
    let orders = routes::Orders {
        http: reqwest::Client::new(),
        inventory_url: app.inventory_url.trim_end_matches('/').to_owned(),
        max_quantity: app.max_quantity,
    };
    platform_http::serve(&rt, routes::router(orders)).await
}
