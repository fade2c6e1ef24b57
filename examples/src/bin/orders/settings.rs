//! Orders' own settings, the `[app]` section of its config.

use platform_config::{Validate, Validation};
use serde::{Deserialize, Serialize};

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

impl Validate for OrdersSettings {
    fn validate(&self, v: &mut Validation) {
        v.check(
            self.inventory_url.starts_with("http://") || self.inventory_url.starts_with("https://"),
            "inventory_url",
            "must be an http:// or https:// URL",
        );
        v.check(self.max_quantity > 0, "max_quantity", "must be at least 1");
    }
}
