//! One set of policies per target, shared by everything that calls it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Resilience, ResilienceSettings, SettingsError};

/// The policies of each target and the settings they were built from.
type Targets = HashMap<Arc<str>, (ResilienceSettings, Resilience)>;

/// Hands out the [`Resilience`] of each target, building it on first use,
/// so that every client of a target shares its budget and breaker.
#[derive(Debug, Clone, Default)]
pub struct ResilienceRegistry {
    targets: Arc<Mutex<Targets>>,
}

impl ResilienceRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The policies of `target`, built from `settings` the first time. A
    /// later request with different settings gets the existing policies (the
    /// budget must stay shared) and a warning; change settings by building a
    /// new registry on reload.
    pub fn get_or_insert(
        &self,
        target: &str,
        settings: &ResilienceSettings,
    ) -> Result<Resilience, SettingsError> {
        let mut targets = self
            .targets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((existing, resilience)) = targets.get(target) {
            if existing != settings {
                tracing::warn!(
                    resilience.target = target,
                    "resilience settings differ from the first client of this target; keeping the first"
                );
            }
            return Ok(resilience.clone());
        }
        let resilience = Resilience::new(target, settings)?;
        targets.insert(Arc::from(target), (settings.clone(), resilience.clone()));
        Ok(resilience)
    }

    /// The policies of `target`, if some client built them.
    pub fn get(&self, target: &str) -> Option<Resilience> {
        let targets = self
            .targets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        targets.get(target).map(|(_, r)| r.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_budget_per_target() {
        let registry = ResilienceRegistry::new();
        let settings = ResilienceSettings::default();
        let a = registry.get_or_insert("inventory", &settings).unwrap();
        let b = registry.get_or_insert("inventory", &settings).unwrap();
        let other = registry.get_or_insert("payments", &settings).unwrap();
        let before = b.budget().balance();
        assert!(a.budget().try_withdraw());
        assert!((before - b.budget().balance() - 1.0).abs() < 1e-9, "shared");
        assert!(
            (other.budget().balance() - before).abs() < 1e-9,
            "separate per target"
        );
        assert!(registry.get("inventory").is_some());
        assert!(registry.get("nobody").is_none());
    }

    #[test]
    fn invalid_settings_are_reported_not_registered() {
        let registry = ResilienceRegistry::new();
        let mut settings = ResilienceSettings::default();
        settings.retry.max_attempts = 9;
        let err = registry.get_or_insert("inventory", &settings).unwrap_err();
        assert_eq!(err.key, "retry.max_attempts");
        assert!(registry.get("inventory").is_none());
    }
}
