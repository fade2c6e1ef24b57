#[platform_config::settings]
enum Mode {
    Fast,
    Slow,
}

fn main() {}
