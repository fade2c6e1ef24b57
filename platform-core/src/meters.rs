//! Where the platform's instruments come from.

use std::sync::Arc;

use opentelemetry::metrics::{Meter, MeterProvider};

/// The meter provider the platform's layers create their instruments from:
/// the one the runtime's telemetry built ([`Runtime::meters`]), so that an
/// instrument never depends on the order in which the process-wide provider
/// was set; or the process-wide one ([`Meters::global`], read when an
/// instrument is made), for parts built without a runtime. Cheap to clone.
///
/// [`Runtime::meters`]: crate::Runtime::meters
#[derive(Clone, Default)]
pub struct Meters(Option<Arc<dyn MeterProvider + Send + Sync>>);

impl Meters {
    /// The process-wide provider (`opentelemetry::global`), as it is when
    /// each meter is made.
    pub fn global() -> Self {
        Meters(None)
    }

    /// Instruments from `provider`.
    pub fn from_provider(provider: impl MeterProvider + Send + Sync + 'static) -> Self {
        Meters(Some(Arc::new(provider)))
    }

    /// Instruments that record nothing (metrics switched off).
    pub fn none() -> Self {
        Self::from_provider(opentelemetry::metrics::noop::NoopMeterProvider::new())
    }

    /// A meter of this provider for the instrumentation scope `scope`.
    pub fn meter(&self, scope: &'static str) -> Meter {
        match &self.0 {
            Some(provider) => provider.meter(scope),
            None => opentelemetry::global::meter(scope),
        }
    }
}

impl std::fmt::Debug for Meters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Meters(provider)"
        } else {
            "Meters(global)"
        })
    }
}

/// The scope of platform-core's own instruments.
pub(crate) const SCOPE: &str = "platform";
