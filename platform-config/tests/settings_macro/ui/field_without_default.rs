use std::num::NonZeroU32;

#[platform_config::settings]
struct Pool {
    /// NonZeroU32 has no Default: this field needs `#[setting(default = ...)]`.
    size: NonZeroU32,
}

fn main() {}
