#[platform_config::settings]
struct Wrapper<T> {
    inner: T,
}

fn main() {}
