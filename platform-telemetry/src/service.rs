//! Who is emitting: the service identity that becomes the OpenTelemetry resource.

use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

/// The identity of the running service: becomes `service.name`,
/// `service.version`, `service.instance.id` and `deployment.environment.name`
/// on every span and metric.
///
/// ```
/// let info = platform_telemetry::ServiceInfo::new("orders", env!("CARGO_PKG_VERSION"))
///     .with_environment("production");
/// assert_eq!(info.name, "orders");
/// assert_eq!(info.instance_id.len(), 36); // a random UUID unless set
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// `service.name` (overridden by `OTEL_SERVICE_NAME`).
    pub name: String,
    /// `service.version`.
    pub version: String,
    /// `service.instance.id`: unique per process; a random UUID by default.
    pub instance_id: String,
    /// `deployment.environment.name`, usually the config profile
    /// (`production`, `staging`, `development`); empty leaves it out.
    pub environment: String,
}

impl ServiceInfo {
    /// A service with a fresh random instance id and no environment.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        ServiceInfo {
            name: name.into(),
            version: version.into(),
            instance_id: random_uuid(),
            environment: String::new(),
        }
    }

    /// Sets `deployment.environment.name` (typically the config profile).
    pub fn with_environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = environment.into();
        self
    }

    /// Sets `service.instance.id` (e.g. the pod name, when stable ids matter).
    pub fn with_instance_id(mut self, instance_id: impl Into<String>) -> Self {
        self.instance_id = instance_id.into();
        self
    }
}

/// A version-4 UUID from the SDK's random trace-id generator (no extra dependency).
fn random_uuid() -> String {
    let mut bytes = RandomIdGenerator::default().new_trace_id().to_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_uuids_and_differ() {
        let a = ServiceInfo::new("a", "1").instance_id;
        let b = ServiceInfo::new("a", "1").instance_id;
        assert_ne!(a, b);
        assert_eq!(a.as_bytes()[14], b'4');
        assert_eq!(a.matches('-').count(), 4);
    }
}
