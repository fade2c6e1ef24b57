//! `orders`: takes orders and reserves their stock in `inventory`.
//!
//! Run it with `cargo run -p platform-examples --bin orders -- --help`.

mod routes;
mod settings;

use clap::Parser;
use platform_config::cli::ServiceArgs;

use settings::Settings;

const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/orders");

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = ServiceArgs::parse();
    let loader = platform_config::Loader::new().config_dir(CONFIG_DIR);
    let loaded = args.config.load_or_exit::<Settings>(loader);
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let settings = loaded.value();

    let orders = routes::Orders {
        http: reqwest::Client::new(),
        inventory_url: settings.app.inventory_url.trim_end_matches('/').to_owned(),
        max_quantity: settings.app.max_quantity,
    };
    let listener = tokio::net::TcpListener::bind(&settings.server.bind).await?;
    tracing::info!(addr = %listener.local_addr()?, inventory = %orders.inventory_url, "orders listening");
    axum::serve(listener, routes::router(orders)).await
}
