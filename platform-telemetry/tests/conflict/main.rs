//! When another `tracing` subscriber was installed first, `init` says so and
//! leaves nothing half-installed (the next call reports the same, not "already
//! initialised").

use platform_telemetry::{ServiceInfo, TelemetryError, TelemetrySettings};

#[test]
fn another_global_subscriber_is_an_error_not_a_panic() {
    tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default()).unwrap();
    let settings = TelemetrySettings::default();
    let service = ServiceInfo::new("conflict", "0");
    for _ in 0..2 {
        match platform_telemetry::init(&settings, &service) {
            Err(TelemetryError::SubscriberAlreadySet(_)) => {}
            other => panic!("expected SubscriberAlreadySet, got {other:?}"),
        }
    }
}
