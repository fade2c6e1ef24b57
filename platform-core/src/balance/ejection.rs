//! The hook through which outlier ejection (the resilience layer) takes endpoints out of
//! rotation, and panic mode.
//!
//! Panic mode comes from Envoy: when outlier detection has ejected more than a threshold share
//! of the endpoints (default half), the likelier story is a shared cause (a bad deploy of the
//! caller, an overloaded dependency behind every endpoint) rather than many bad hosts, and
//! squeezing all traffic onto the few that remain would overload them too. So ejection is then
//! ignored and traffic spreads over every endpoint again.

use std::fmt;

use crate::discovery::EndpointId;

/// Tells the balancer which endpoints are currently ejected.
///
/// Implemented for any `Fn(&EndpointId) -> bool + Send + Sync`. Called on every pick for the
/// endpoints considered, so it must be cheap (an atomic load or a read lock).
pub trait Ejection: Send + Sync {
    /// True when `endpoint` must not get new requests (unless in panic mode).
    fn is_ejected(&self, endpoint: &EndpointId) -> bool;
}

impl<F> Ejection for F
where
    F: Fn(&EndpointId) -> bool + Send + Sync,
{
    fn is_ejected(&self, endpoint: &EndpointId) -> bool {
        self(endpoint)
    }
}

/// A boxed hook with a Debug impl, so the balancer stays Debug.
pub(crate) struct EjectionHook(pub(crate) Box<dyn Ejection>);

impl fmt::Debug for EjectionHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EjectionHook")
    }
}

/// True when `ejected` out of `total` is beyond the panic threshold.
pub(crate) fn panics(ejected: usize, total: usize, threshold: f64) -> bool {
    total > 0 && ejected as f64 > threshold * total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_starts_beyond_the_threshold() {
        assert!(!panics(2, 4, 0.5), "exactly half is not more than half");
        assert!(panics(3, 4, 0.5));
        assert!(panics(1, 1, 0.5));
        assert!(!panics(0, 0, 0.5));
        assert!(!panics(4, 4, 1.0));
    }
}
