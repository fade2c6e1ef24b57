//! `#[platform_config::settings]`: what a converted struct reads, writes,
//! prints and checks, and the misuse it refuses at compile time.

mod compile_fail;
mod reading;
mod validation;
