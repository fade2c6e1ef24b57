//! `orders`: takes orders and reserves their stock in `inventory`.
//!
//! Run it with `cargo run -p platform-examples --bin orders -- --help`.

mod routes;
mod settings;

use settings::OrdersSettings;

const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/orders");

/// Why orders could not start or serve.
#[derive(thiserror::Error)]
enum OrdersError {
    #[error(transparent)]
    Platform(#[from] platform_core::Error),
    #[error(transparent)]
    Client(#[from] platform_http::ClientError),
}

// `main` returning `Err` prints Debug: make it the readable report.
impl std::fmt::Debug for OrdersError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrdersError::Platform(e) => write!(f, "{e:?}"),
            OrdersError::Client(e) => write!(f, "{e}"),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), OrdersError> {
    let rt = platform_core::Runtime::<OrdersSettings>::builder("orders")
        .version(env!("CARGO_PKG_VERSION"))
        .default_config_dir(CONFIG_DIR)
        .init()
        .await?;
    // Retries within a budget, deadlines passed on, breaker: all from [http.clients.inventory].
    let inventory = platform_http::Client::for_service(&rt, "inventory")?;
    let orders = routes::Orders {
        inventory,
        max_quantity: rt.config().app.max_quantity,
    };
    Ok(platform_http::serve(&rt, routes::router(orders)).await?)
}
