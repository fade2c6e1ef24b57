//! Retries: which failures to retry, how many times, how long to wait, and
//! how much extra load retries may add.
//!
//! Three limits apply together, the tightest wins:
//! - attempts per call ([`RetryPolicy`], 3 by default as in gRPC A6, and
//!   never more than [`MAX_ATTEMPTS_CEILING`]);
//! - the call's [`Deadline`](crate::resilience::Deadline), which covers every
//!   attempt and sleep; a server's pushback longer than what is left ends
//!   the call at once rather than sleeping into a certain failure;
//! - the target's [`RetryBudget`] (Finagle), shared by all calls, which keeps
//!   retries under 20% of the request rate when everything fails.
//!
//! What is retryable is not decided here: a transport-specific
//! [`Classifier`] says so, including whether the attempt may have reached the
//! server, so that non-idempotent calls are only retried when the server
//! certainly never saw them.

mod backoff;
mod budget;
mod policy;

pub use backoff::Backoff;
pub use budget::RetryBudget;
pub use policy::{
    Classification, Classifier, MAX_ATTEMPTS_CEILING, MAX_REQUEUES_CEILING, RetryErrors,
    RetryPolicy, Verdict,
};
