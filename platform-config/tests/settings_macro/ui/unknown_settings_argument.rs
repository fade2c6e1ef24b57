#[platform_config::settings(validate = Self::check)]
struct Server {
    port: u16,
}

impl Server {
    fn check(&self, _: &mut platform_config::Validation) {}
}

fn main() {}
