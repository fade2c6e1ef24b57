//! Inventory's settings: the platform sections plus its own `[app]` section.

use std::collections::BTreeMap;
use std::time::Duration;

use platform_config::{Validate, Validation};
use serde::{Deserialize, Serialize};

/// Everything inventory reads from config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Settings {
    /// The public API listener.
    pub(crate) server: ServerSettings,
    /// Inventory's own settings.
    pub(crate) app: InventorySettings,
}

/// The public API listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ServerSettings {
    /// Address and port the API listens on.
    pub(crate) bind: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: "127.0.0.1:8081".into(),
        }
    }
}

/// Inventory's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct InventorySettings {
    /// Units in stock per SKU when the service starts.
    pub(crate) initial_stock: BTreeMap<String, u32>,
    /// Largest quantity one reservation may take.
    pub(crate) max_reservation: u32,
    /// Added to every answer: lets a demo make one instance slow.
    #[serde(with = "platform_config::duration")]
    #[schemars(with = "String")]
    pub(crate) extra_latency: Duration,
}

impl Default for InventorySettings {
    fn default() -> Self {
        InventorySettings {
            initial_stock: BTreeMap::from([("apple".into(), 100), ("pear".into(), 50)]),
            max_reservation: 10,
            extra_latency: Duration::ZERO,
        }
    }
}

impl Validate for Settings {
    fn validate(&self, v: &mut Validation) {
        v.check(
            self.server.bind.parse::<std::net::SocketAddr>().is_ok(),
            "server.bind",
            format!("expected ip:port, got {:?}", self.server.bind),
        );
        v.check(
            self.app.max_reservation > 0,
            "app.max_reservation",
            "must be at least 1",
        );
    }
}
