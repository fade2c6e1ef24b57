//! Inventory's own settings, the `[app]` section of its config.

use std::collections::BTreeMap;
use std::time::Duration;

use platform_config::Validation;

/// Inventory's own settings.
#[platform_config::settings(validate_with = Self::check)]
#[derive(PartialEq)]
pub struct InventorySettings {
    /// Units in stock per SKU when the service starts.
    #[setting(default = BTreeMap::from([("apple".into(), 100), ("pear".into(), 50)]))]
    pub initial_stock: BTreeMap<String, u32>,
    /// Largest quantity one reservation may take.
    #[setting(default = 10)]
    pub max_reservation: u32,
    /// Added to every answer: lets a demo or a test make one instance slow.
    pub extra_latency: Duration,
    /// Share of requests answered 503 on purpose, 0.0 to 1.0: lets a demo or
    /// a test make one instance flaky.
    pub failure_rate: f64,
    /// Requests handled at once, each holding its worker for
    /// `extra_latency`; the others wait their turn. 0: no limit. Gives an
    /// instance a known capacity (`workers / extra_latency` a second), for
    /// the demo's overload scene.
    pub workers: u32,
}

impl InventorySettings {
    fn check(&self, v: &mut Validation) {
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
