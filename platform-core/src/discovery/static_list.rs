//! The static backend: a fixed list from configuration, published once.

use super::endpoint::Endpoint;
use super::publisher::{Publisher, dedup};

/// Publishes `endpoints` (duplicates dropped) and returns; the set never changes.
pub(crate) fn publish(publisher: &Publisher, endpoints: Vec<Endpoint>) {
    let endpoints = dedup(publisher, endpoints);
    publisher.answer(endpoints);
}
