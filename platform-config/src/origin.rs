//! Where a configuration value came from.

use std::fmt;
use std::path::PathBuf;

/// The source of one configuration value, shown in error reports and in
/// `--print-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The settings type's `Default`.
    Default,
    /// A config file; the line is known for TOML files.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line of the value, where the format gives it.
        line: Option<usize>,
    },
    /// An environment variable.
    Env {
        /// The variable's name.
        var: String,
    },
    /// A file named by a `*_FILE` environment variable or `*_file` key.
    SecretFile {
        /// The file the value was read from.
        path: PathBuf,
        /// What named the file (an env var or a config file).
        named_by: Box<Origin>,
    },
    /// `--set key=value` on the command line.
    CommandLine {
        /// The argument as given, without its value.
        key: String,
    },
    /// An override given in code.
    Code,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File {
                path,
                line: Some(line),
            } => write!(f, "{}:{line}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Env { var } => write!(f, "env {var}"),
            Origin::SecretFile { path, named_by } => {
                write!(f, "file {} (named by {named_by})", path.display())
            }
            Origin::CommandLine { key } => write!(f, "--set {key}"),
            Origin::Code => f.write_str("override in code"),
        }
    }
}
