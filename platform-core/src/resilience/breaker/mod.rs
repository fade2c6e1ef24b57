//! Circuit breaking at two levels.
//!
//! - Per endpoint, [`OutlierDetector`]: an endpoint that keeps failing is
//!   taken out of the balancer's pool for a while (Envoy's outlier
//!   detection), so one bad instance does not fail a share of every call.
//! - Per target, [`CircuitBreaker`]: when the whole target is down, calls
//!   fail fast instead of queueing up behind timeouts, and a bounded number
//!   of half-open probes find out when it is back.
//!
//! Both count an attempt as a failure when its classification is
//! [`Verdict::Retryable`](crate::resilience::Verdict::Retryable) or it ran
//! out of time; an answer that is not worth retrying (a 4xx) shows a target
//! that is up.

mod outlier;
mod target;

pub use outlier::{EjectionCause, EndpointOutcome, OutlierDetector};
pub use target::{BreakerOpen, BreakerPermit, BreakerState, CircuitBreaker};
