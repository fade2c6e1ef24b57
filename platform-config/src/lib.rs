//! Layered, typed, validated configuration for platform services.
//!
//! A service describes its settings as serde types with `Default`s that work
//! as they are; [`Loader`] reads them from layered sources (defaults, files,
//! profile, local override, environment, command line), reports every problem
//! at once with the key and the place it came from, and remembers the origin
//! of every value. [`Secret`] keeps passwords out of every printout.
//! [`reload::Reloader`] re-reads files when they change and swaps the value
//! atomically; [`cli::ConfigArgs`] is the command line every service shares.
//!
//! The environment traps of other loaders do not happen here: variables are
//! matched against the settings' schema (any case, `__` between levels),
//! strings stay strings (`"007"`), and list fields take comma-separated text.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
mod de;
pub mod duration;
mod files;
pub mod limits;
mod loader;
mod origin;
mod parse;
pub mod reload;
mod render;
mod report;
mod schema;
mod secret;
pub mod size;
mod sources;
mod tree;
mod validate;

pub use limits::Limits;
pub use loader::{DEFAULT_CONFIG_DIR, DEFAULT_ENV_PREFIX, Loaded, Loader, Settings};
pub use origin::Origin;
pub use report::{ConfigError, Problem, Report};
pub use secret::{REDACTED, Secret};
pub use validate::{Validate, Validation};

/// The defaults of `T` as a config file, each setting preceded by its doc comment.
pub fn render_defaults<T: Settings>() -> String {
    render::defaults::<T>()
}
