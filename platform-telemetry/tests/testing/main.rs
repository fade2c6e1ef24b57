//! The capture helper as a service author uses it in their own tests.

use opentelemetry::KeyValue;
use opentelemetry::trace::Status;
use platform_telemetry::testing::TelemetryCapture;

/// Code under test: what a handler in a service might do.
fn charge(meter: &opentelemetry::metrics::Meter, amount: i64) -> Result<(), String> {
    let span = tracing::info_span!("payments.charge", payment.amount = amount);
    let _in = span.enter();
    meter
        .u64_counter("payments.attempts")
        .build()
        .add(1, &[KeyValue::new("currency", "EUR")]);
    meter
        .f64_histogram("payments.duration")
        .with_unit("s")
        .build()
        .record(0.2, &[]);
    let _db = tracing::info_span!("db.query", db.system.name = "postgresql").entered();
    if amount > 100 {
        tracing::error!(amount, "limit exceeded");
        return Err("limit".into());
    }
    tracing::info!("charged");
    Ok(())
}

#[test]
fn captures_spans_logs_and_metrics() {
    let capture = TelemetryCapture::new();
    let meter = capture.meter("payments");
    {
        let _on = capture.set_default();
        charge(&meter, 30).unwrap();
        charge(&meter, 500).unwrap_err();
    }

    let spans = capture.spans();
    let charges: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "payments.charge")
        .collect();
    assert_eq!(charges.len(), 2);
    let db = spans.iter().find(|s| s.name == "db.query").unwrap();
    assert!(
        charges
            .iter()
            .any(|c| c.span_context.span_id() == db.parent_span_id),
        "db.query is a child"
    );
    let failed = spans
        .iter()
        .find(|s| s.name == "db.query" && matches!(s.status, Status::Error { .. }));
    assert!(failed.is_some(), "an error event marks the span as failed");

    let logs = capture.log_lines();
    assert_eq!(logs.len(), 2, "{logs:#?}");
    assert_eq!(logs[1]["level"], "ERROR");
    assert_eq!(logs[1]["fields"]["amount"], 500);
    assert_eq!(logs[1]["span"], "db.query");
    assert_eq!(
        logs[0]["trace_id"],
        charges[0].span_context.trace_id().to_string()
    );

    assert_eq!(capture.counter_total("payments.attempts"), Some(2));
    assert_eq!(capture.histogram_count("payments.duration"), Some(2));
}

#[test]
fn captures_on_other_threads_do_not_mix() {
    let a = TelemetryCapture::new();
    let b = TelemetryCapture::new();
    let other = std::thread::spawn(move || {
        let _on = b.set_default();
        tracing::info_span!("on-b").in_scope(|| tracing::info!("from b"));
        b
    });
    {
        let _on = a.set_default();
        tracing::info_span!("on-a").in_scope(|| tracing::info!("from a"));
    }
    let b = other.join().unwrap();
    assert_eq!(
        a.spans()
            .iter()
            .map(|s| s.name.to_string())
            .collect::<Vec<_>>(),
        ["on-a"]
    );
    assert_eq!(
        b.spans()
            .iter()
            .map(|s| s.name.to_string())
            .collect::<Vec<_>>(),
        ["on-b"]
    );
    assert_eq!(a.log_lines()[0]["message"], "from a");
}
