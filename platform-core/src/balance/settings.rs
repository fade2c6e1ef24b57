//! Balancer settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::BalanceError;

/// How a balancer chooses among endpoints.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Power of two choices over Peak-EWMA latency × (in-flight + 1).
    #[default]
    P2cPeakEwma,
    /// Weighted round robin.
    RoundRobin,
}

/// Balancer settings.
#[platform_config::settings]
#[derive(PartialEq)]
pub struct BalanceSettings {
    /// `p2c_peak_ewma` (the default: sends load towards fast, idle endpoints) or `round_robin`.
    #[setting(default = Strategy::P2cPeakEwma)]
    pub strategy: Strategy,
    /// Peak-EWMA decay window: how long a latency observation keeps weight (Linkerd uses 10s);
    /// on a busy endpoint a few dozen later answers outweigh it sooner.
    #[setting(default = Duration::from_secs(10))]
    pub decay: Duration,
    /// Latency assumed for an endpoint while its first request is in flight (an idle endpoint
    /// that has never answered is tried at once); its first answer replaces it.
    #[setting(default = Duration::from_millis(30))]
    pub default_rtt: Duration,
    /// Panic mode: when more than this share of the endpoints is ejected by outlier detection,
    /// ejection is ignored and all endpoints get traffic again (0 < value <= 1).
    #[setting(default = 0.5)]
    pub panic_threshold: f64,
}

impl BalanceSettings {
    /// Checks the settings; the error names the key.
    pub fn validate(&self) -> Result<(), BalanceError> {
        if self.decay.is_zero() {
            return Err(BalanceError::InvalidSettings {
                key: "balance.decay",
                reason: "must be greater than 0".into(),
            });
        }
        if !(self.panic_threshold > 0.0 && self.panic_threshold <= 1.0) {
            return Err(BalanceError::InvalidSettings {
                key: "balance.panic_threshold",
                reason: format!("{} is not in (0, 1]", self.panic_threshold),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_named_in_snake_case() {
        BalanceSettings::default().validate().unwrap();
        let json = serde_json::to_string(&BalanceSettings::default()).unwrap();
        assert!(
            json.contains("\"p2c_peak_ewma\"") && json.contains("\"10s\""),
            "{json}"
        );
        let settings: BalanceSettings =
            serde_json::from_str(r#"{"strategy":"round_robin"}"#).unwrap();
        assert_eq!(settings.strategy, Strategy::RoundRobin);
        for bad in [0.0, 1.5, f64::NAN] {
            let settings = BalanceSettings {
                panic_threshold: bad,
                ..Default::default()
            };
            assert!(
                settings
                    .validate()
                    .unwrap_err()
                    .to_string()
                    .contains("panic_threshold")
            );
        }
        let settings = BalanceSettings {
            decay: Duration::ZERO,
            ..Default::default()
        };
        assert!(settings.validate().is_err());
    }
}
