//! platform-core: the runtime of the platform SDK.
//!
//! - [`resilience`]: transport-neutral retries with a budget, deadlines,
//!   circuit breaking and hedging, usable directly or as tower layers.
//!
//! This crate has no cargo features yet.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod resilience;
