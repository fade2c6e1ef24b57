use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use platform_core::resilience::{CallOptions, OutlierDetector, OutlierSettings};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

use crate::{TestError, classify, policies, quiet_settings};

/// Collects every event as "message field=value ...".
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

struct Line<'a>(&'a mut String);
impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut line = String::new();
        event.record(&mut Line(&mut line));
        self.0.lock().unwrap().push(line);
    }
}

impl Events {
    fn find(&self, needles: &[&str]) -> usize {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }
}

#[tokio::test(start_paused = true)]
async fn every_decision_is_a_tracing_event() {
    // A global subscriber, not a thread-local one: with `set_default`, another
    // test thread hitting the same callsites first could leave them cached as
    // "never interested" and the events here would be missed. Every line is
    // matched on this test's own target below, so other tests' events don't count.
    static EVENTS: std::sync::OnceLock<Events> = std::sync::OnceLock::new();
    let events = EVENTS
        .get_or_init(|| {
            let events = Events::default();
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(events.clone()),
            )
            .expect("no other global subscriber in this test binary");
            tracing::callsite::rebuild_interest_cache();
            events
        })
        .clone();
    let target = "resilience.target=traced";
    let opts = CallOptions::idempotent();

    let mut s = quiet_settings();
    s.breaker.enabled = true;
    s.breaker.consecutive_failures = 3;
    s.budget.retry_ratio = 0.0;
    s.budget.min_retries_per_second = 0;
    let r = policies("traced", &s);
    // The empty budget stops the first call after one attempt.
    let _ = r
        .call(&classify, &opts, |_| async {
            Err::<(), _>(TestError::Unavailable)
        })
        .await;
    assert_eq!(events.find(&["attempt", target, "attempt=1"]), 1);
    assert_eq!(
        events.find(&["not retrying", target, "retry budget exhausted"]),
        1
    );

    let mut s = quiet_settings();
    s.breaker.enabled = true;
    s.breaker.consecutive_failures = 3;
    s.budget.enabled = false;
    let r = policies("traced", &s);
    let _ = r
        .call(&classify, &opts, |_| async {
            Err::<(), _>(TestError::Unavailable)
        })
        .await;
    assert_eq!(events.find(&["retrying", target, "reason=\"backoff\""]), 2);
    assert_eq!(events.find(&["circuit breaker opened", target]), 1);
    let _ = r
        .call(&classify, &opts, |_| async { Ok::<_, TestError>(()) })
        .await;
    assert_eq!(events.find(&["circuit open: failing fast", target]), 1);
    tokio::time::advance(Duration::from_secs(5)).await;
    let _ = r
        .call(&classify, &opts, |_| async { Ok::<_, TestError>(()) })
        .await;
    assert_eq!(events.find(&["circuit breaker half-open", target]), 1);
    assert_eq!(events.find(&["circuit breaker closed", target]), 1);

    let detector: OutlierDetector<u8> =
        OutlierDetector::new("traced", &OutlierSettings::default()).unwrap();
    detector.set_endpoints([1, 2]);
    for _ in 0..5 {
        detector.record(&1, false);
    }
    assert_eq!(events.find(&["endpoint ejected", target, "endpoint=1"]), 1);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(!detector.is_ejected(&1));
    assert_eq!(events.find(&["back in the pool", target]), 1);

    let mut s = quiet_settings();
    s.hedge.enabled = true;
    s.hedge.min_samples = 1;
    let r = policies("traced", &s);
    r.call(&classify, &opts, |_| async { Ok::<_, TestError>(()) })
        .await
        .unwrap();
    r.call(&classify, &opts, |a| async move {
        tokio::time::sleep(Duration::from_millis(if a.hedge { 1 } else { 50 })).await;
        Ok::<_, TestError>(())
    })
    .await
    .unwrap();
    assert_eq!(events.find(&["hedging: second attempt sent", target]), 1);
}
