/// Converted from the hand-written form, its serde line left behind.
#[platform_config::settings]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct Server {
    #[serde(rename = "bindAddress")]
    #[setting(default = "0.0.0.0:8080")]
    bind: String,
}

fn main() {}
