//! Inventory's configuration.

use std::net::{Ipv4Addr, SocketAddr};

use platform::config::DatabaseUrl;
use serde::{Deserialize, Serialize};

/// How inventory runs. Every field has a default suitable for `bazaar up`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The address for the REST and gRPC API.
    pub listen: SocketAddr,
    /// Inventory's own database. Unset means the SQLite file `inventory.db` in the
    /// shop's data folder.
    pub database_url: Option<DatabaseUrl>,
    /// The most database connections inventory opens.
    pub max_connections: u32,
    /// Units a product starts with when the catalog announces it: a demo shop has stock
    /// to sell; a real one sets 0 and receives stock through adjustments.
    pub initial_stock: i64,
    /// How often held reservations are checked for expiry, in milliseconds.
    pub expiry_check_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8103)),
            database_url: None,
            max_connections: platform::db::DEFAULT_MAX_CONNECTIONS,
            initial_stock: 25,
            expiry_check_ms: 1000,
        }
    }
}
