//! Bounds on what one configuration file may cost to read.
//!
//! A config file is input from outside: a ConfigMap someone else edits, a
//! file a tool generated. It must not be able to take the process down, so
//! every file is refused, with a message naming it and the bound, when it is
//! larger, deeper or has more values than a real configuration needs. The
//! defaults are far above any real configuration and far below what would
//! hurt: a file at every bound loads in milliseconds and a few MiB.
//!
//! | bound | default | why |
//! | --- | --- | --- |
//! | [`Limits::max_file_size`] | 1 MiB | real files are a few KiB; a secret file is a password or a key |
//! | [`Limits::max_depth`] | 64 levels | the deepest platform key is 6 levels; a parser recursing deeper risks the stack |
//! | [`Limits::max_values`] | 100 000 | keys and list items in one file, after YAML aliases are expanded |
//! | [`Limits::max_alias_expansions`] | 10 000 | YAML alias replays: a 300-byte "billion laughs" file expands to millions |
//!
//! ```
//! use platform_config::{Limits, Loader};
//! let loader = Loader::new().limits(Limits { max_file_size: 64 * 1024, ..Limits::default() });
//! # let _ = loader;
//! ```

/// Bounds applied to every config file (and, for size, every secret file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest file read, in bytes.
    pub max_file_size: u64,
    /// Deepest nesting of tables and lists.
    pub max_depth: usize,
    /// Most values (keys and list items, nested ones included) in one file.
    pub max_values: usize,
    /// Most events a YAML file may replay through aliases (`*name`).
    pub max_alias_expansions: usize,
}

/// Default largest file: 1 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1024 * 1024;
/// Default deepest nesting: 64 levels.
pub const DEFAULT_MAX_DEPTH: usize = 64;
/// Default most values in one file: 100 000.
pub const DEFAULT_MAX_VALUES: usize = 100_000;
/// Default most YAML alias replays: 10 000 events.
pub const DEFAULT_MAX_ALIAS_EXPANSIONS: usize = 10_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_depth: DEFAULT_MAX_DEPTH,
            max_values: DEFAULT_MAX_VALUES,
            max_alias_expansions: DEFAULT_MAX_ALIAS_EXPANSIONS,
        }
    }
}
