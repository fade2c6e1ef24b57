//! Health: named checks run in the background; probes read the cached result.
//!
//! Why cached: a probe that runs its checks inline is as slow as the slowest
//! dependency, and a hanging database would make the kubelet kill a healthy
//! process. Here each check runs on its own interval with its own timeout,
//! and `/livez`, `/readyz` and `/startupz` only read the last result, so a
//! probe answers in microseconds whatever the checks are doing.
//!
//! Each check is marked liveness, readiness or startup (or several), with
//! Kubernetes-style thresholds: `failure_threshold` consecutive failures
//! turn it failing, `success_threshold` consecutive successes turn it
//! passing. A check that exceeds its timeout has failed. A check may also
//! *warn*: it is reported, but probes still pass (a rejected config reload,
//! stale discovery data). Liveness never depends on an external system
//! unless the author registers such a check.

mod check;
mod registry;

pub use check::{CheckFn, CheckOptions, CheckOutcome, Kind, Status};
pub(crate) use registry::rfc3339;
pub use registry::{CheckReport, HealthChanges, HealthRegistry, HealthReport, ManualCheck};
