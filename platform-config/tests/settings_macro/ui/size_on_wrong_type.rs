use std::time::Duration;

#[platform_config::settings]
struct Limits {
    #[setting(size)]
    timeout: Duration,
    #[setting(size)]
    max_body: u32,
}

fn main() {}
