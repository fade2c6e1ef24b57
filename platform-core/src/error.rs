//! Errors of the runtime, health and lifecycle.

use std::fmt;

/// Why a service could not start or run. `main` can return it: the process
/// prints the message (the full configuration report, for a bad config) and
/// exits non-zero.
#[derive(thiserror::Error)]
pub enum Error {
    /// The configuration is invalid or cannot be watched.
    #[error(transparent)]
    Config(#[from] platform_config::ConfigError),
    /// A health check could not be registered.
    #[error(transparent)]
    Health(#[from] HealthError),
    /// Discovery or self-registration could not start.
    #[error(transparent)]
    Discovery(#[from] crate::discovery::DiscoveryError),
    /// Self-registration is configured but this build has no etcd support.
    #[error(
        "discovery.registration.enabled is true but the platform was built without the `etcd` feature"
    )]
    RegistrationUnavailable,
    /// A listener could not be bound.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// Which listener (`server`, `admin`).
        what: &'static str,
        /// The address from config.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// Telemetry could not be initialised.
    #[error("telemetry: {0}")]
    Telemetry(#[from] platform_telemetry::TelemetryError),
    /// A client of another service (`platform_http::Client`, ...) could not
    /// be built: the crate that defines the client converts its error into
    /// this one, so that `main` uses `?` on it too. Downcast the source to
    /// match on it (`platform_http::ClientError` for the HTTP client).
    #[error(transparent)]
    Client(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The service could not be put together: a library's own wiring error
    /// (`platform_grpc::ServiceError` for a gRPC service added twice, ...),
    /// converted by that library so that `main` uses `?` on it. Downcast
    /// the source to match on it.
    #[error(transparent)]
    Setup(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A server stopped with an error.
    #[error("{what} server failed: {source}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// Its error.
        #[source]
        source: std::io::Error,
    },
}

// `main` returning `Err` prints Debug: make that the readable message.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            if !self.to_string().contains(&s.to_string()) {
                write!(f, "\n  caused by: {s}")?;
            }
            source = s.source();
        }
        Ok(())
    }
}

/// A health check that cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    /// Two checks with one name.
    #[error("a health check named `{name}` is already registered")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// Impossible options.
    #[error("health check `{name}`: {reason}")]
    InvalidCheck {
        /// The check.
        name: String,
        /// What is wrong.
        reason: String,
    },
}
