//! The OpenTelemetry instruments of the resilience layer.
//!
//! Instruments come from the [`Meters`] a policy is built with (the
//! runtime's provider for clients made with `Client::for_service`), not from
//! a process-wide static: an instrument taken from the global no-op provider
//! before telemetry is initialised would stay a no-op forever.

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundCounter, Counter, Histogram, Meter};

use crate::Meters;

/// Counters and histograms shared by the policies of one target.
#[derive(Clone)]
pub(crate) struct Instruments {
    pub(crate) target: Arc<str>,
    /// For the gauges the breaker and the detector register.
    pub(crate) meter: Meter,
    target_attr: KeyValue,
    /// Bound to `target`: counted on every attempt without hashing it.
    attempts: BoundCounter<u64>,
    retries: Counter<u64>,
    backoff: Histogram<f64>,
    budget_exhausted: Counter<u64>,
    deadline_exceeded: Counter<u64>,
    breaker_transitions: Counter<u64>,
    breaker_rejections: Counter<u64>,
    ejections: Counter<u64>,
    ejections_skipped: Counter<u64>,
    hedges: Counter<u64>,
    requeues: Counter<u64>,
    throttled: Counter<u64>,
    bulkhead_full: Counter<u64>,
}

impl std::fmt::Debug for Instruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instruments")
            .field("target", &self.target)
            .finish()
    }
}

impl Instruments {
    pub(crate) fn new(target: Arc<str>, meters: &Meters) -> Self {
        let meter = meters.meter(crate::meters::SCOPE);
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .with_unit("{event}")
                .build()
        };
        let target_attr = KeyValue::new("target", target.clone());
        Self {
            target_attr: target_attr.clone(),
            target,
            attempts: counter(
                "platform.resilience.attempts",
                "Attempts made by resilient calls, first attempts, retries and hedges included.",
            )
            .bind(std::slice::from_ref(&target_attr)),
            retries: counter(
                "platform.resilience.retries",
                "Retries made by resilient calls.",
            ),
            backoff: meter
                .f64_histogram("platform.resilience.backoff")
                .with_description("Time slept before a retry (backoff or server pushback).")
                .with_unit("s")
                .build(),
            budget_exhausted: counter(
                "platform.resilience.budget.exhausted",
                "Retries or hedges refused because the target's retry budget was empty.",
            ),
            deadline_exceeded: counter(
                "platform.resilience.deadline.exceeded",
                "Calls that ran out of their deadline.",
            ),
            breaker_transitions: counter(
                "platform.resilience.breaker.transitions",
                "State changes of the target's circuit breaker.",
            ),
            breaker_rejections: counter(
                "platform.resilience.breaker.rejections",
                "Attempts refused because the target's circuit breaker was open.",
            ),
            ejections: counter(
                "platform.resilience.ejections",
                "Endpoints ejected by outlier detection.",
            ),
            ejections_skipped: counter(
                "platform.resilience.ejections.skipped",
                "Ejections not made because too many endpoints were already ejected.",
            ),
            hedges: counter(
                "platform.resilience.hedges",
                "Hedged (second) attempts sent for slow calls.",
            ),
            requeues: counter(
                "platform.resilience.requeues",
                "Attempts that never reached a server, sent again at once outside the retry budget.",
            ),
            throttled: counter(
                "platform.resilience.throttled",
                "Calls the client refused itself, at once, because the target refuses most calls as overloaded (adaptive throttling).",
            ),
            bulkhead_full: counter(
                "platform.resilience.bulkhead.rejected",
                "Calls refused at once because max_concurrent_calls calls to the target were in flight (the bulkhead).",
            ),
            meter,
        }
    }

    pub(crate) fn bulkhead_full(&self) {
        self.bulkhead_full.add(1, self.attrs());
    }

    pub(crate) fn throttled(&self) {
        self.throttled.add(1, self.attrs());
    }

    fn attrs(&self) -> &[KeyValue] {
        std::slice::from_ref(&self.target_attr)
    }

    pub(crate) fn attempt(&self) {
        self.attempts.add(1);
    }

    pub(crate) fn retry(&self, delay_secs: f64, reason: &'static str) {
        self.retries.add(
            1,
            &[self.target_attr.clone(), KeyValue::new("reason", reason)],
        );
        self.backoff.record(delay_secs, self.attrs());
    }

    pub(crate) fn budget_exhausted(&self, kind: &'static str) {
        self.budget_exhausted
            .add(1, &[self.target_attr.clone(), KeyValue::new("kind", kind)]);
    }

    pub(crate) fn deadline_exceeded(&self) {
        self.deadline_exceeded.add(1, self.attrs());
    }

    pub(crate) fn breaker_transition(&self, from: &'static str, to: &'static str) {
        self.breaker_transitions.add(
            1,
            &[
                self.target_attr.clone(),
                KeyValue::new("from", from),
                KeyValue::new("to", to),
            ],
        );
    }

    pub(crate) fn breaker_rejection(&self) {
        self.breaker_rejections.add(1, self.attrs());
    }

    pub(crate) fn ejection(&self, cause: &'static str) {
        self.ejections.add(
            1,
            &[self.target_attr.clone(), KeyValue::new("cause", cause)],
        );
    }

    pub(crate) fn ejection_skipped(&self) {
        self.ejections_skipped.add(1, self.attrs());
    }

    pub(crate) fn hedge(&self) {
        self.hedges.add(1, self.attrs());
    }

    pub(crate) fn requeue(&self) {
        self.requeues.add(1, self.attrs());
    }
}
