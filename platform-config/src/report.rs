//! Problems with a configuration, all of them at once.

use std::fmt;
use std::path::PathBuf;

use crate::origin::Origin;

/// One thing wrong with the configuration, naming the key and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A key that no settings type reads: a typo, or a setting that moved.
    #[error("unknown key `{key}` ({origin}){}", suggestion_text(.suggestion))]
    UnknownKey {
        /// The dotted key path.
        key: String,
        /// Where it was set.
        origin: Origin,
        /// The nearest valid key, when one is close.
        suggestion: Option<String>,
    },
    /// A value of the wrong type, out of range, or unparsable.
    #[error("invalid value for `{key}` ({origin}): {message}")]
    InvalidValue {
        /// The dotted key path.
        key: String,
        /// Where the value was set.
        origin: Origin,
        /// What was expected.
        message: String,
    },
    /// A rule across fields, reported by a settings type's [`Validate`](crate::Validate).
    #[error("invalid configuration at `{key}` ({origin}): {message}")]
    Invalid {
        /// The dotted key path the rule names.
        key: String,
        /// Where that key's value was set.
        origin: Origin,
        /// The rule that failed.
        message: String,
    },
    /// A file or directory that could not be read or parsed.
    #[error("{}: {message}", display_location(.path, *.line, *.column))]
    Source {
        /// The file or directory.
        path: PathBuf,
        /// 1-based line, where known.
        line: Option<usize>,
        /// 1-based column, where known (YAML, JSON and TOML syntax errors).
        column: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// An environment variable or `--set` argument that could not be used.
    #[error("{origin}: {message}")]
    Input {
        /// The variable or argument.
        origin: Origin,
        /// What is wrong.
        message: String,
    },
}

fn suggestion_text(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}

fn display_location(path: &std::path::Path, line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("{}:{line}:{column}", path.display()),
        (Some(line), None) => format!("{}:{line}", path.display()),
        _ => path.display().to_string(),
    }
}

impl Problem {
    /// The dotted key path, for problems tied to a key.
    pub fn key(&self) -> Option<&str> {
        match self {
            Problem::UnknownKey { key, .. }
            | Problem::InvalidValue { key, .. }
            | Problem::Invalid { key, .. } => Some(key),
            Problem::Source { .. } | Problem::Input { .. } => None,
        }
    }
}

/// Every problem found while loading, in the order sources were read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The problems; never empty in an error.
    pub problems: Vec<Problem>,
}

impl Report {
    pub(crate) fn push(&mut self, problem: Problem) {
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }

    /// True when nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "configuration has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Why configuration could not be loaded or watched.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration is invalid; the report lists every problem.
    #[error("{0}")]
    Invalid(Report),
    /// The config directory could not be watched for changes.
    #[error("cannot watch config directory {path}: {source}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// The watcher's error.
        #[source]
        source: notify::Error,
    },
}

impl ConfigError {
    /// The report, when the configuration itself is invalid.
    pub fn report(&self) -> Option<&Report> {
        match self {
            ConfigError::Invalid(report) => Some(report),
            ConfigError::Watch { .. } => None,
        }
    }
}
