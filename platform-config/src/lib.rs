//! Layered, typed, validated configuration for platform services.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod duration;
mod secret;
pub mod size;

pub use secret::{REDACTED, Secret};
