//! `orders`: takes orders and reserves their stock in `inventory`.
//!
//! Inventory is called through the platform client: where it is (discovery),
//! how long to wait, when to retry and when to stop trying all come from
//! `[http.clients.inventory]` in the config.

mod routes;
mod settings;

use std::time::Duration;

use platform_config::cli::ConfigArgs;
use platform_core::health::{CheckOptions, CheckOutcome, Kind};
use platform_core::resilience::BreakerState;
use platform_http::RuntimeBuilderExt;

pub use settings::OrdersSettings;

/// Where the shipped config files are: `default.toml`, then one per profile.
const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/orders");

/// Runs orders until it is told to stop. `args` replaces the process's
/// command line (the demo passes its own); `None` parses it.
pub async fn main(args: Option<ConfigArgs>) -> Result<(), platform_core::Error> {
    let mut builder = platform_core::Runtime::builder::<OrdersSettings>("orders")
        .version(env!("CARGO_PKG_VERSION"))
        .default_config_dir(CONFIG_DIR)
        // Checked with the rest of the config: `--check-config` refuses a
        // config without it, as `Client::for_service` below would.
        .requires_client("inventory");
    if let Some(args) = args {
        builder = builder.args(args);
    }
    let (rt, config) = builder.init().await?;
    // Retries within a budget, deadlines passed on, breaker, discovery and
    // balancing: all from [http.clients.inventory]. Adds the readiness-neutral
    // `discovery:inventory` check when inventory comes from discovery.
    let inventory = platform_http::Client::for_service(&rt, "inventory")?;

    // Orders without inventory cannot take orders, but restarting orders or
    // taking it out of the load balancer would not bring inventory back:
    // report it (warn), never fail readiness over it.
    let watched = inventory.clone();
    rt.health().register_sync(
        "dependency:inventory",
        CheckOptions::new(Kind::Readiness).interval(Duration::from_secs(5)),
        move || dependency_check(&watched),
    )?;

    let orders = routes::Orders {
        inventory,
        max_quantity: config.current().app.max_quantity,
        instance: rt.info().instance_id.clone().into(),
        next_key: Default::default(),
    };
    platform_http::serve(&rt, routes::router(orders)).await
}

/// How calls to inventory are going: its breaker and its ejected instances.
fn dependency_check(inventory: &platform_http::Client) -> CheckOutcome {
    match inventory.resilience().breaker().state() {
        BreakerState::Open => {
            CheckOutcome::warn("inventory is failing: circuit open, failing fast")
        }
        BreakerState::HalfOpen => CheckOutcome::warn("inventory is recovering: circuit half-open"),
        BreakerState::Closed => {
            let ejected = inventory.ejected_endpoints();
            if ejected.is_empty() {
                CheckOutcome::pass()
            } else {
                CheckOutcome::warn(format!(
                    "inventory instances ejected: {}",
                    ejected.join(", ")
                ))
            }
        }
    }
}
