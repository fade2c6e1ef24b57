//! Orders' settings: the platform sections plus its own `[app]` section.

use platform_config::{Validate, Validation};
use serde::{Deserialize, Serialize};

/// Everything orders reads from config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Settings {
    /// The public API listener.
    pub(crate) server: ServerSettings,
    /// Orders' own settings.
    pub(crate) app: OrdersSettings,
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
            bind: "127.0.0.1:8080".into(),
        }
    }
}

/// Orders' own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct OrdersSettings {
    /// Base URL of the inventory service.
    pub(crate) inventory_url: String,
    /// Largest number of units in one order.
    pub(crate) max_quantity: u32,
}

impl Default for OrdersSettings {
    fn default() -> Self {
        OrdersSettings {
            inventory_url: "http://127.0.0.1:8081".into(),
            max_quantity: 5,
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
            self.app.inventory_url.starts_with("http://")
                || self.app.inventory_url.starts_with("https://"),
            "app.inventory_url",
            "must be an http:// or https:// URL",
        );
        v.check(
            self.app.max_quantity > 0,
            "app.max_quantity",
            "must be at least 1",
        );
    }
}
