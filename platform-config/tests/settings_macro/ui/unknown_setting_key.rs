#[platform_config::settings]
struct Server {
    /// A typo in the key.
    #[setting(defualt = 8080)]
    port: u16,
    /// `default` without a value.
    #[setting(default)]
    host: String,
    /// The struct's attribute on a field.
    #[settings(default = 1)]
    workers: u32,
}

fn main() {}
