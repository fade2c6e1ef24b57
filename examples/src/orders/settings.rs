//! Orders' own settings, the `[app]` section of its config. Where inventory
//! is and how to call it is platform config: `[http.clients.inventory]`, or
//! `[grpc.clients.inventory]` when orders calls it over gRPC.

use platform_config::Validation;

/// Orders' own settings.
#[platform_config::settings(validate_with = Self::check)]
#[derive(PartialEq)]
pub struct OrdersSettings {
    /// Largest number of units in one order.
    #[setting(default = 5)]
    pub max_quantity: u32,
    /// How orders calls inventory: `http` (its JSON API, with
    /// `[http.clients.inventory]`) or `grpc` (`proto/inventory.proto`, with
    /// `[grpc.clients.inventory]`). Inventory serves both on one port.
    #[setting(default = InventoryApi::Http)]
    pub inventory_api: InventoryApi,
}

/// The API orders calls inventory through.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum InventoryApi {
    /// `POST /reservations` with a JSON body.
    #[default]
    Http,
    /// `platform.examples.inventory.v1.Inventory/Reserve`.
    Grpc,
}

impl OrdersSettings {
    fn check(&self, v: &mut Validation) {
        v.check(self.max_quantity > 0, "max_quantity", "must be at least 1");
    }
}
