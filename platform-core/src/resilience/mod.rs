//! Transport-neutral resilience: retries with a budget, deadlines, circuit
//! breaking and hedging.
//!
//! One [`Resilience`] per call target holds its policies, built from
//! [`ResilienceSettings`] (defaults from Finagle, gRPC A6, Envoy and the SRE
//! book) and shared by every caller (a [`ResilienceRegistry`] hands them
//! out). A call goes through [`Resilience::call`] directly, or through
//! [`ResilienceLayer`] around any tower service:
//!
//! - a [`Deadline`] covers every attempt and sleep and is visible to the code
//!   making the next call ([`Deadline::current_remaining`]);
//! - a transport-specific [`Classifier`] says whether an attempt succeeded,
//!   may be retried (with the server's pushback) or not, and whether it may
//!   have reached the server;
//! - the [`RetryPolicy`] bounds attempts (3 by default, 5 at most) and sleeps
//!   a full-jitter exponential [`Backoff`] between them;
//! - the target's [`RetryBudget`] keeps retries and hedges under 20% of the
//!   request rate;
//! - the target's [`CircuitBreaker`] fails calls fast while it is down;
//!   per-endpoint [`OutlierDetector`]s take failing instances out of the pool;
//! - [`HedgePolicy`] sends a second attempt for idempotent calls slower than
//!   the observed p95 (off by default).
//!
//! Every decision is a `tracing` event (attempts and retries at debug level,
//! breaker and ejection changes at info/warn) and a counter of the
//! `platform` meter with a `target` attribute:
//! `platform.resilience.attempts`, `.retries`, `.backoff` (histogram, s),
//! `.budget.exhausted`, `.deadline.exceeded`, `.breaker.transitions`,
//! `.breaker.rejections`, `.ejections`, `.ejections.skipped`, `.hedges`.

mod breaker;
mod bulkhead;
mod call;
mod deadline;
mod error;
mod hedge;
mod layer;
mod metrics;
mod registry;
mod retry;
mod settings;
mod throttle;
mod window;

pub use breaker::{
    BreakerOpen, BreakerPermit, BreakerState, CircuitBreaker, EjectionCause, EndpointOutcome,
    OutlierDetector,
};
pub use bulkhead::{Bulkhead, BulkheadPermit};
pub use call::{Attempt, CallOptions, Resilience};
pub use deadline::{Deadline, current_request_id, request_id_scope, request_scope};
pub use error::{ResilienceError, SettingsError};
pub use hedge::{HedgePolicy, LatencyEstimate};
pub use layer::{ResilienceLayer, ResilienceService};
pub use registry::{RegistryError, ResilienceRegistry};
pub use retry::{
    Backoff, Classification, Classifier, MAX_ATTEMPTS_CEILING, MAX_REQUEUES_CEILING, RetryBudget,
    RetryErrors, RetryPolicy, Verdict,
};
pub use settings::{
    BreakerSettings, BudgetSettings, HedgeSettings, OutlierSettings, ResilienceSettings,
    RetrySettings, SuccessRateSettings, ThrottleSettings,
};
pub use throttle::{AdaptiveThrottle, Admission};
