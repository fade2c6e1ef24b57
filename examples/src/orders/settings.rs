//! Orders' own settings, the `[app]` section of its config. Where inventory
//! is and how to call it is platform config: `[http.clients.inventory]`.

use platform_config::{Validate, Validation};
use serde::{Deserialize, Serialize};

/// Orders' own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OrdersSettings {
    /// Largest number of units in one order.
    pub max_quantity: u32,
}

impl Default for OrdersSettings {
    fn default() -> Self {
        OrdersSettings { max_quantity: 5 }
    }
}

impl Validate for OrdersSettings {
    fn validate(&self, v: &mut Validation) {
        v.check(self.max_quantity > 0, "max_quantity", "must be at least 1");
    }
}
