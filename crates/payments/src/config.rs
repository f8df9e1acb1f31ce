//! Payments' configuration.

use std::net::{Ipv4Addr, SocketAddr};

use platform::config::DatabaseUrl;
use serde::{Deserialize, Serialize};

use crate::fraud::FraudRules;
use crate::processor::SimulatorConfig;

/// How payments runs. Every field has a default suitable for `bazaar up`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The address for REST and gRPC (one port).
    pub listen: SocketAddr,
    /// Payments' own database. Unset means the SQLite file `payments.db` in the shop's
    /// data folder.
    pub database_url: Option<DatabaseUrl>,
    /// The most database connections payments opens.
    pub max_connections: u32,
    /// When a payment is approved, held for an admin's review, or declined before the
    /// card is even asked.
    pub fraud: FraudRules,
    /// How the simulated card processor behaves for its slow and flaky test cards.
    pub processor: SimulatorConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8105)),
            database_url: None,
            max_connections: platform::db::DEFAULT_MAX_CONNECTIONS,
            fraud: FraudRules::default(),
            processor: SimulatorConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = Config::default();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8105");
        assert_eq!(config.max_connections, 4);
        assert_eq!(config.fraud.hold_above_minor, 100_000);
        assert_eq!(config.fraud.decline_above_minor, 1_000_000);
        assert_eq!(config.fraud.velocity_window_secs, 3600);
        assert_eq!(config.fraud.velocity_hold_after, 5);
        assert_eq!(config.fraud.new_account_secs, 86_400);
        assert_eq!(config.fraud.new_account_hold_above_minor, 50_000);
        assert_eq!(config.processor.slow_ms, 1500);
        assert_eq!(config.processor.transient_failures, 2);
    }

    #[test]
    fn sections_may_be_partial_but_not_misspelt() {
        let config: Config =
            serde_json::from_value(json!({"fraud": {"hold_above_minor": 5}})).expect("valid");
        assert_eq!(config.fraud.hold_above_minor, 5);
        assert_eq!(
            config.fraud.velocity_hold_after, 5,
            "the rest keeps its default"
        );
        for typo in [
            json!({"fraud": {"hold_above": 5}}),
            json!({"processor": {"slow": 5}}),
            json!({"frauds": {}}),
        ] {
            assert!(
                serde_json::from_value::<Config>(typo.clone()).is_err(),
                "{typo}"
            );
        }
    }
}
