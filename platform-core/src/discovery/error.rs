//! Discovery errors.

use super::target::TargetError;

/// What can go wrong when building a resolver or registering.
///
/// Failures of a running backend never surface as errors to callers: they keep the last known
/// endpoints and mark the set stale (see [`EndpointSet::is_stale`](super::EndpointSet::is_stale)).
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The target string does not parse.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A settings value is impossible.
    #[error("invalid setting {key}: {reason}")]
    InvalidSettings {
        /// The settings key path.
        key: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The system DNS configuration could not be read.
    #[error("cannot read the system DNS configuration: {reason}")]
    SystemDns {
        /// The resolver's message.
        reason: String,
    },
    /// An etcd request failed.
    #[error("etcd {operation} failed on {key}: {reason}")]
    Etcd {
        /// The request: `connect`, `put`, `revoke`, ...
        operation: &'static str,
        /// The key or endpoint involved.
        key: String,
        /// The client's message.
        reason: String,
    },
    /// The registration task is gone (it panicked or was aborted).
    #[error("registration of {key} is no longer running")]
    RegistrationGone {
        /// The registered key.
        key: String,
    },
    /// Must be called from within a tokio runtime.
    #[error("discovery needs a tokio runtime: call it from async code")]
    NoRuntime,
}
