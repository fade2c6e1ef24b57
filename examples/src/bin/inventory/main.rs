//! `inventory`: keeps stock levels and takes reservations.
//!
//! Run it with `cargo run -p platform-examples --bin inventory -- --help`.

mod routes;
mod settings;

use clap::Parser;
use platform_config::cli::ServiceArgs;

use settings::Settings;

const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/inventory");

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = ServiceArgs::parse();
    let loader = platform_config::Loader::new().config_dir(CONFIG_DIR);
    let loaded = args.config.load_or_exit::<Settings>(loader);
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let settings = loaded.value();

    let listener = tokio::net::TcpListener::bind(&settings.server.bind).await?;
    tracing::info!(addr = %listener.local_addr()?, profile = loaded.profile().unwrap_or("none"), "inventory listening");
    axum::serve(listener, routes::router(routes::Store::new(&settings.app))).await
}
