//! One set of policies per target, shared by everything that calls it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Resilience, ResilienceSettings, SettingsError};
use crate::Meters;

/// The policies of each target, the settings they were built from and
/// where those came from.
type Targets = HashMap<Arc<str>, (ResilienceSettings, Arc<str>, Resilience)>;

/// Why a target's policies could not be handed out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    /// The settings cannot make working policies.
    #[error(transparent)]
    Invalid(#[from] SettingsError),
    /// Two clients of one target with different settings: one budget and one
    /// breaker cannot follow both, and keeping either would silently ignore
    /// the other.
    #[error(
        "resilience settings of target {target} from {second} differ from those it already has from {first}"
    )]
    Conflict {
        /// The target.
        target: String,
        /// Where the settings in use came from.
        first: String,
        /// Where the conflicting ones came from.
        second: String,
    },
}

impl RegistryError {
    /// The settings key at fault (relative to the resilience settings; `""`
    /// for a conflict, which is the whole entry's) and what is wrong, for a
    /// client's configuration error.
    pub fn key_and_reason(&self) -> (&'static str, String) {
        match self {
            RegistryError::Invalid(e) => (e.key, format!("{} (got {})", e.reason, e.value)),
            conflict @ RegistryError::Conflict { .. } => ("", conflict.to_string()),
        }
    }
}

/// Hands out the [`Resilience`] of each target, building it on first use,
/// so that every client of a target shares its budget and breaker.
#[derive(Debug, Clone, Default)]
pub struct ResilienceRegistry {
    targets: Arc<Mutex<Targets>>,
    meters: Meters,
}

impl ResilienceRegistry {
    /// An empty registry whose policies take their instruments from the
    /// process-wide meter provider.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry whose policies take their instruments from `meters`
    /// (the runtime's registry, [`Runtime::targets`](crate::Runtime::targets), does).
    pub fn with_meters(meters: Meters) -> Self {
        Self {
            targets: Arc::default(),
            meters,
        }
    }

    /// The policies of `target`, built from `settings` the first time;
    /// `source` says where the settings come from (`http.clients.inventory`,
    /// `Client::builder("inventory")`), for the error when a later caller
    /// brings different ones.
    pub fn get_or_insert(
        &self,
        target: &str,
        settings: &ResilienceSettings,
        source: &str,
    ) -> Result<Resilience, RegistryError> {
        let mut targets = self
            .targets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((existing, first, resilience)) = targets.get(target) {
            if existing != settings {
                return Err(RegistryError::Conflict {
                    target: target.to_owned(),
                    first: first.to_string(),
                    second: source.to_owned(),
                });
            }
            return Ok(resilience.clone());
        }
        let resilience = Resilience::with_meters(target, settings, &self.meters)?;
        targets.insert(
            Arc::from(target),
            (settings.clone(), Arc::from(source), resilience.clone()),
        );
        Ok(resilience)
    }

    /// A client's policies for `target`: from `registry`, shared with the
    /// target's other clients there (`source` names the client's settings
    /// for a conflict), or built for it alone when there is no registry.
    /// What every transport's client builder does.
    pub fn shared_or_own(
        registry: Option<&ResilienceRegistry>,
        target: &str,
        settings: &ResilienceSettings,
        source: &str,
        meters: &Meters,
    ) -> Result<Resilience, RegistryError> {
        match registry {
            Some(registry) => registry.get_or_insert(target, settings, source),
            None => Ok(Resilience::with_meters(target, settings, meters)?),
        }
    }

    /// The policies of `target`, if some client built them.
    pub fn get(&self, target: &str) -> Option<Resilience> {
        let targets = self
            .targets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        targets.get(target).map(|(_, _, r)| r.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_budget_per_target() {
        let registry = ResilienceRegistry::new();
        let settings = ResilienceSettings::default();
        let a = registry.get_or_insert("inventory", &settings, "a").unwrap();
        let b = registry.get_or_insert("inventory", &settings, "b").unwrap();
        let other = registry.get_or_insert("payments", &settings, "c").unwrap();
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
        let err = registry
            .get_or_insert("inventory", &settings, "a")
            .unwrap_err();
        assert!(
            matches!(&err, RegistryError::Invalid(e) if e.key == "retry.max_attempts"),
            "{err:?}"
        );
        assert!(registry.get("inventory").is_none());
    }

    #[test]
    fn different_settings_for_one_target_are_an_error_naming_both_sources() {
        let registry = ResilienceRegistry::new();
        let settings = ResilienceSettings::default();
        registry
            .get_or_insert("inventory", &settings, "http.clients.inventory")
            .unwrap();
        let mut other = settings.clone();
        other.retry.max_attempts = 2;
        let err = registry
            .get_or_insert("inventory", &other, "Client::builder(\"inventory\")")
            .unwrap_err();
        assert_eq!(
            err,
            RegistryError::Conflict {
                target: "inventory".into(),
                first: "http.clients.inventory".into(),
                second: "Client::builder(\"inventory\")".into(),
            }
        );
        let message = err.to_string();
        assert!(message.contains("http.clients.inventory") && message.contains("Client::builder"));
    }
}
