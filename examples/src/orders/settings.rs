//! Orders' own settings, the `[app]` section of its config. Where inventory
//! is and how to call it is platform config: `[http.clients.inventory]`.

use platform_config::Validation;

/// Orders' own settings.
#[platform_config::settings(validate_with = Self::check)]
#[derive(PartialEq)]
pub struct OrdersSettings {
    /// Largest number of units in one order.
    #[setting(default = 5)]
    pub max_quantity: u32,
}

impl OrdersSettings {
    fn check(&self, v: &mut Validation) {
        v.check(self.max_quantity > 0, "max_quantity", "must be at least 1");
    }
}
