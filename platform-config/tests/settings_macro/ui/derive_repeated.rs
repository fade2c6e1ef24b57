#[platform_config::settings]
#[derive(Default, Debug, PartialEq)]
struct Server {
    port: u16,
}

fn main() {}
