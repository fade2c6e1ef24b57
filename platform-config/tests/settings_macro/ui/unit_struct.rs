#[platform_config::settings]
struct Nothing;

fn main() {}
