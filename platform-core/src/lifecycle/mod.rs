//! Lifecycle: background tasks, shutdown hooks, and the shutdown sequence.
//!
//! On SIGTERM or SIGINT, in this order:
//! 1. readiness fails at once (load balancers and the kubelet notice);
//! 2. `Draining` hooks start (deregistration from discovery), and for the
//!    drain delay (default 5 s) the listener keeps serving;
//! 3. the server stops accepting; in-flight requests get the grace period
//!    (default 25 s) and are then cancelled;
//! 4. background tasks are cancelled and awaited;
//! 5. `Stopped` hooks run (close pools, flush);
//! 6. the runtime flushes telemetry and the process exits 0.
//!
//! A second signal exits at once. Every step is recorded as a
//! [`LifecycleEvent`] (and logged), so tests can check the order.

mod shutdown;
mod signals;

pub use shutdown::{HookPhase, Lifecycle, LifecycleEvent, ShutdownOutcome};
pub(crate) use signals::install as install_signal_handlers;
