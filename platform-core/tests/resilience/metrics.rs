use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use platform_core::resilience::{CallOptions, OutlierDetector, OutlierSettings};

use crate::{TestError, classify, policies, quiet_settings};

/// Sum of a counter's points whose `target` attribute is `target`, per extra attribute filter.
fn counter(
    exporter: &InMemoryMetricExporter,
    name: &str,
    target: &str,
    extra: Option<KeyValue>,
) -> u64 {
    let want = KeyValue::new("target", target.to_string());
    let mut total = 0;
    for rm in exporter.get_finished_metrics().unwrap() {
        for sm in rm.scope_metrics() {
            for m in sm.metrics().filter(|m| m.name() == name) {
                if let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() {
                    for p in sum.data_points() {
                        let attrs: Vec<_> = p.attributes().cloned().collect();
                        if attrs.contains(&want) && extra.as_ref().is_none_or(|e| attrs.contains(e))
                        {
                            total += p.value();
                        }
                    }
                }
            }
        }
    }
    total
}

#[tokio::test(start_paused = true)]
async fn every_decision_is_counted_with_its_target() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    opentelemetry::global::set_meter_provider(provider.clone());
    let target = "metered";
    let opts = CallOptions::idempotent();
    let fail = |_| async { Err::<(), _>(TestError::Unavailable) };

    // An empty budget: one attempt, then "budget exhausted".
    let mut s = quiet_settings();
    s.budget.retry_ratio = 0.0;
    s.budget.min_retries_per_second = 0;
    let _ = policies(target, &s).call(&classify, &opts, fail).await;

    // A breaker opening after two failures: two retries scheduled, the second
    // refused by the now open breaker: one transition, one rejection.
    let mut s = quiet_settings();
    s.budget.enabled = false;
    s.breaker.enabled = true;
    s.breaker.consecutive_failures = 2;
    let _ = policies(target, &s).call(&classify, &opts, fail).await;

    // An ejection.
    let detector = OutlierDetector::new(target, &OutlierSettings::default()).unwrap();
    detector.set_endpoints(0..4);
    for _ in 0..5 {
        detector.record(&0, false);
    }

    // A hedge.
    let mut s = quiet_settings();
    s.hedge.enabled = true;
    s.hedge.min_samples = 1;
    let r = policies(target, &s);
    r.call(&classify, &opts, |_| async { Ok::<_, TestError>(()) })
        .await
        .unwrap();
    r.call(&classify, &opts, |a| async move {
        tokio::time::sleep(Duration::from_millis(if a.hedge { 1 } else { 100 })).await;
        Ok::<_, TestError>(())
    })
    .await
    .unwrap();

    provider.force_flush().unwrap();
    let c = |name: &str| counter(&exporter, name, target, None);
    assert_eq!(c("platform.resilience.attempts"), 1 + 2 + 3);
    assert_eq!(c("platform.resilience.retries"), 2);
    assert_eq!(c("platform.resilience.budget.exhausted"), 1);
    assert_eq!(
        counter(
            &exporter,
            "platform.resilience.breaker.transitions",
            target,
            Some(KeyValue::new("to", "open"))
        ),
        1
    );
    assert_eq!(c("platform.resilience.breaker.rejections"), 1);
    assert_eq!(c("platform.resilience.ejections"), 1);
    assert_eq!(c("platform.resilience.hedges"), 1);
    let _ = provider.shutdown();
}
