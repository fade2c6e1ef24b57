//! The command line every platform service shares.
//!
//! ```text
//! --config-dir DIR     directory of default.toml, <profile>.toml, local.toml (default ./config)
//! --profile NAME       profile file layered over default.toml (or APP_PROFILE)
//! --set key.path=value override one setting (repeatable; highest precedence)
//! --check-config       validate, print the report, exit 0 when valid and 2 when not
//! --print-config       print the effective configuration with the source of every value
//! --print-defaults     print the defaults as a documented config file
//! ```
//!
//! Flatten [`ConfigArgs`] into a service's own `clap` parser, or use
//! [`ServiceArgs`] when the service has no flags of its own.

use std::io::Write;
use std::path::PathBuf;

use crate::loader::{Loaded, Loader, Settings};
use crate::report::ConfigError;

/// Exit code for an invalid configuration (`--check-config` and start-up).
pub const EXIT_INVALID_CONFIG: u8 = 2;

/// The configuration flags of a platform service.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ConfigArgs {
    /// Directory holding default.toml, PROFILE.toml and local.toml [default: ./config]
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Profile whose file PROFILE.toml is layered over default.toml (else the APP_PROFILE variable)
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Override one setting, above every other source (repeatable)
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    pub set: Vec<String>,
    /// Validate the configuration, print the report, exit 0 when valid and 2 when not
    #[arg(long)]
    pub check_config: bool,
    /// Print the effective configuration with the source of every value (secrets redacted)
    #[arg(long)]
    pub print_config: bool,
    /// Print the defaults as a documented config file
    #[arg(long)]
    pub print_defaults: bool,
}

/// The standard command line for a service with no flags of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Parser)]
#[command(version)]
pub struct ServiceArgs {
    /// Configuration flags.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// What the service should do after the configuration flags were handled.
#[derive(Debug)]
pub enum Action<T> {
    /// Start with this configuration.
    Run(Loaded<T>),
    /// A printing or checking flag was handled: exit with this code.
    Exit(u8),
}

impl ConfigArgs {
    /// Applies these flags to a loader (config dir, profile, `--set`).
    pub fn apply(&self, mut loader: Loader) -> Loader {
        if let Some(dir) = &self.config_dir {
            loader = loader.config_dir(dir);
        }
        if let Some(profile) = &self.profile {
            loader = loader.profile(profile);
        }
        for arg in &self.set {
            loader = loader.set_arg(arg);
        }
        loader
    }

    /// Like [`ConfigArgs::run`] on stdout and stderr, for `main`: exits the
    /// process after a printing flag (0) or when the configuration is invalid
    /// (2, with the report on stderr); otherwise returns the configuration.
    pub fn load_or_exit<T: Settings>(&self, loader: Loader) -> Loaded<T> {
        let loader = self.apply(loader);
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        match self.run::<T>(&loader, &mut out, &mut err) {
            Ok(Action::Run(loaded)) => loaded,
            Ok(Action::Exit(code)) => {
                let _ = out.flush();
                std::process::exit(i32::from(code))
            }
            Err(e) => {
                let _ = writeln!(err, "{e}");
                std::process::exit(i32::from(EXIT_INVALID_CONFIG))
            }
        }
    }

    /// Loads the configuration and handles `--check-config`, `--print-config`
    /// and `--print-defaults`, writing to `out` and `err`.
    pub fn run<T: Settings>(
        &self,
        loader: &Loader,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<Action<T>, ConfigError> {
        if self.print_defaults {
            let _ = write!(out, "{}", loader.render_defaults::<T>());
            return Ok(Action::Exit(0));
        }
        let loaded = match loader.load::<T>() {
            Ok(loaded) => loaded,
            Err(e) if self.check_config || self.print_config => {
                let _ = writeln!(err, "{e}");
                return Ok(Action::Exit(EXIT_INVALID_CONFIG));
            }
            Err(e) => return Err(e),
        };
        if self.print_config {
            let _ = write!(out, "{}", loaded.render());
            return Ok(Action::Exit(0));
        }
        if self.check_config {
            let files: Vec<String> = loaded
                .files()
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            let _ = writeln!(
                out,
                "configuration is valid (profile: {}; files: {})",
                loaded.profile().unwrap_or("none"),
                if files.is_empty() {
                    "none".to_owned()
                } else {
                    files.join(", ")
                }
            );
            return Ok(Action::Exit(0));
        }
        Ok(Action::Run(loaded))
    }
}
