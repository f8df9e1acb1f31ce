//! The cart's configuration.

use std::net::{Ipv4Addr, SocketAddr};

use platform::config::DatabaseUrl;
pub use platform::config::RedisUrl;
use serde::{Deserialize, Serialize};

/// How the cart runs. Every field has a default suitable for `bazaar up`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The address for REST and gRPC (one port).
    pub listen: SocketAddr,
    /// The cart's own database, used when `store.kind` is `sql`. Unset means the SQLite
    /// file `cart.db` in the shop's data folder.
    pub database_url: Option<DatabaseUrl>,
    /// The most database connections the cart opens.
    pub max_connections: u32,
    /// Where carts are kept: `sql` (the default) or `redis`.
    pub store: StoreConfig,
    /// The catalog's gRPC address, where prices and names come from.
    pub catalog_url: String,
    /// Inventory's gRPC address, where availability comes from.
    pub inventory_url: String,
    /// The deadline of each call to the catalog or inventory, in milliseconds.
    pub call_timeout_ms: u64,
    /// A cart nobody changed for this long is dropped as abandoned, in seconds.
    pub abandon_after_secs: u64,
    /// How often the SQL store looks for abandoned carts, in seconds. (Redis drops
    /// them by itself, through each cart's TTL.)
    pub expiry_check_secs: u64,
    /// The most different products one cart may hold.
    pub max_lines: usize,
    /// The most units of one product one cart may hold.
    pub max_quantity: i64,
}

/// Where carts are kept, chosen by `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// The cart's SQL database (`database_url`): SQLite or PostgreSQL. (A struct
    /// variant, though it has no settings, so that a stray key such as `url` is refused
    /// rather than ignored.)
    Sql {},
    /// A Redis server: one hash per customer that expires when abandoned.
    Redis {
        /// The server, e.g. `redis://127.0.0.1:6379/0`.
        url: RedisUrl,
        /// What every key the cart writes starts with, so that several shops (or
        /// tests) can share one server.
        #[serde(default = "default_key_prefix")]
        key_prefix: String,
    },
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::Sql {}
    }
}

/// The key prefix of a Redis store unless configured otherwise.
pub const DEFAULT_KEY_PREFIX: &str = "bazaar:cart:";

fn default_key_prefix() -> String {
    DEFAULT_KEY_PREFIX.to_owned()
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8104)),
            database_url: None,
            max_connections: platform::db::DEFAULT_MAX_CONNECTIONS,
            store: StoreConfig::Sql {},
            catalog_url: "http://127.0.0.1:8101".to_owned(),
            inventory_url: "http://127.0.0.1:8103".to_owned(),
            call_timeout_ms: 2000,
            abandon_after_secs: 30 * 24 * 3600,
            expiry_check_secs: 300,
            max_lines: 50,
            max_quantity: 99,
        }
    }
}

impl Config {
    /// Refuses settings the cart cannot work with, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_lines >= 1, "cart.max_lines must be at least 1");
        anyhow::ensure!(
            self.max_quantity >= 1,
            "cart.max_quantity must be at least 1"
        );
        anyhow::ensure!(
            self.abandon_after_secs >= 1,
            "cart.abandon_after_secs must be at least 1"
        );
        anyhow::ensure!(
            self.expiry_check_secs >= 1,
            "cart.expiry_check_secs must be at least 1"
        );
        anyhow::ensure!(
            self.call_timeout_ms >= 1,
            "cart.call_timeout_ms must be at least 1"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_chosen_by_kind() {
        let sql: Config = serde_json::from_value(serde_json::json!({})).expect("defaults");
        assert_eq!(sql.store, StoreConfig::Sql {});
        assert_eq!(
            serde_json::to_value(&sql.store).expect("serializes"),
            serde_json::json!({"kind": "sql"})
        );
        let explicit: Config =
            serde_json::from_value(serde_json::json!({"store": {"kind": "sql"}}))
                .expect("an explicit sql store");
        assert_eq!(explicit.store, StoreConfig::Sql {});
        let redis: Config = serde_json::from_value(serde_json::json!({
            "store": {"kind": "redis", "url": "redis://127.0.0.1:6379/0"}
        }))
        .expect("a redis store");
        let StoreConfig::Redis { url, key_prefix } = redis.store else {
            panic!("not redis: {redis:?}");
        };
        assert_eq!(url.expose(), "redis://127.0.0.1:6379/0");
        assert_eq!(key_prefix, DEFAULT_KEY_PREFIX);
        for bad in [
            serde_json::json!({"store": {"kind": "memcached"}}),
            serde_json::json!({"store": {"kind": "redis"}}),
            serde_json::json!({"store": {"kind": "redis", "url": "http://x"}}),
            serde_json::json!({"store": {"kind": "sql", "url": "redis://x"}}),
            serde_json::json!({"max_lines": 5, "colour": "red"}),
        ] {
            assert!(
                serde_json::from_value::<Config>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn nonsense_limits_are_refused() {
        let config = Config {
            max_quantity: 0,
            ..Config::default()
        };
        assert!(config.validate().is_err());
        assert!(Config::default().validate().is_ok());
    }
}
