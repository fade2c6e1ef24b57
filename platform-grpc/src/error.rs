//! What can go wrong putting services together.

/// A service that cannot be added to [`Services`](crate::Services).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Two services with the same name: their methods would share paths.
    #[error("the gRPC service `{name}` is added twice")]
    Duplicate {
        /// The service's full name (`package.Service`).
        name: &'static str,
    },
    /// A name the health protocol gives a meaning of its own (see
    /// [`health`](crate::health)): a service of that name could not be
    /// checked apart from it.
    #[error(
        "the gRPC service name `{name}` is reserved: the health protocol answers it for the {probe} probe"
    )]
    Reserved {
        /// The service's name.
        name: &'static str,
        /// The probe the name stands for.
        probe: &'static str,
    },
}

/// `?` in `main`, which returns the runtime's error.
impl From<ServiceError> for platform_core::Error {
    fn from(error: ServiceError) -> Self {
        platform_core::Error::Setup(Box::new(error))
    }
}
