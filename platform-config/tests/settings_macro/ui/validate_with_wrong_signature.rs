#[platform_config::settings(validate_with = Self::check)]
struct Server {
    port: u16,
}

impl Server {
    fn check(&self) -> bool {
        self.port != 0
    }
}

fn main() {}
