//! The catalog's configuration.

use std::net::{Ipv4Addr, SocketAddr};

use platform::config::DatabaseUrl;
use serde::{Deserialize, Serialize};

/// How the catalog runs. Every field has a default suitable for `bazaar up`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The address for REST and gRPC (one port).
    pub listen: SocketAddr,
    /// The catalog's own database. Unset means the SQLite file `catalog.db` in the
    /// shop's data folder.
    pub database_url: Option<DatabaseUrl>,
    /// The most database connections the catalog opens.
    pub max_connections: u32,
    /// Load the demo catalog on first start (it is never loaded twice).
    pub seed_demo_data: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8101)),
            database_url: None,
            max_connections: platform::db::DEFAULT_MAX_CONNECTIONS,
            seed_demo_data: true,
        }
    }
}
