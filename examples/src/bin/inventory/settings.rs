//! Inventory's own settings, the `[app]` section of its config.

use std::collections::BTreeMap;
use std::time::Duration;

use platform_config::{Validate, Validation};
use serde::{Deserialize, Serialize};

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

impl Validate for InventorySettings {
    fn validate(&self, v: &mut Validation) {
        v.check(
            self.max_reservation > 0,
            "max_reservation",
            "must be at least 1",
        );
    }
}
