//! Inventory's own settings, the `[app]` section of its config.

use std::collections::BTreeMap;
use std::time::Duration;

use platform_config::{Validate, Validation};
use serde::{Deserialize, Serialize};

/// Inventory's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct InventorySettings {
    /// Units in stock per SKU when the service starts.
    pub initial_stock: BTreeMap<String, u32>,
    /// Largest quantity one reservation may take.
    pub max_reservation: u32,
    /// Added to every answer: lets a demo or a test make one instance slow.
    #[serde(with = "platform_config::duration")]
    #[schemars(with = "String")]
    pub extra_latency: Duration,
    /// Share of requests answered 503 on purpose, 0.0 to 1.0: lets a demo or
    /// a test make one instance flaky.
    pub failure_rate: f64,
}

impl Default for InventorySettings {
    fn default() -> Self {
        InventorySettings {
            initial_stock: BTreeMap::from([("apple".into(), 100), ("pear".into(), 50)]),
            max_reservation: 10,
            extra_latency: Duration::ZERO,
            failure_rate: 0.0,
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
        v.check(
            (0.0..=1.0).contains(&self.failure_rate),
            "failure_rate",
            "must be between 0.0 and 1.0",
        );
    }
}
