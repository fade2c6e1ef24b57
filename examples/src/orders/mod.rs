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
use platform_grpc::GrpcRuntimeBuilderExt;
use platform_http::RuntimeBuilderExt;

use routes::Inventory;

pub use settings::{InventoryApi, OrdersSettings};

/// Where the shipped config files are: `default.toml`, then one per profile.
const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/orders");

/// Runs orders until it is told to stop. `args` replaces the process's
/// command line (the demo passes its own); `None` parses it.
pub async fn main(args: Option<ConfigArgs>) -> Result<(), platform_core::Error> {
    let mut builder = platform_core::Runtime::builder::<OrdersSettings>("orders")
        .version(env!("CARGO_PKG_VERSION"))
        .default_config_dir(CONFIG_DIR)
        // Checked with the rest of the config: `--check-config` refuses a
        // config without them, as `for_service` below would. Both APIs'
        // clients are configured, so that switching is one setting.
        .requires_client("inventory")
        .requires_grpc_client("inventory");
    if let Some(args) = args {
        builder = builder.args(args);
    }
    let (rt, config) = builder.init().await?;
    // Retries within a budget, deadlines passed on, breaker, discovery and
    // balancing: all from [http.clients.inventory] (or [grpc.clients.inventory]).
    // Adds the readiness-neutral `discovery:inventory` check when inventory
    // comes from discovery.
    let inventory = match config.current().app.inventory_api {
        InventoryApi::Http => {
            Inventory::Http(platform_http::Client::for_service(&rt, "inventory")?)
        }
        InventoryApi::Grpc => {
            Inventory::grpc(platform_grpc::Channel::for_service(&rt, "inventory")?)
        }
    };

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
fn dependency_check(inventory: &Inventory) -> CheckOutcome {
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
