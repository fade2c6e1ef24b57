#[platform_config::settings]
struct Port(u16);

fn main() {}
