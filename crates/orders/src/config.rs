//! The orders service's configuration.

use std::net::{Ipv4Addr, SocketAddr};

use platform::config::DatabaseUrl;
use serde::{Deserialize, Serialize};

use crate::saga::Deadlines;

/// How the orders service runs. Every field has a default suitable for `bazaar up`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The address for the REST API.
    pub listen: SocketAddr,
    /// The service's own database. Unset means the SQLite file `orders.db` in the
    /// shop's data folder.
    pub database_url: Option<DatabaseUrl>,
    /// The most database connections the service opens.
    pub max_connections: u32,
    /// The cart service (gRPC), read when an order is placed.
    pub cart_url: String,
    /// The payments service (gRPC), asked whether a payment method exists.
    pub payments_url: String,
    /// How long a call to another service may take, in milliseconds.
    pub call_timeout_ms: u64,
    /// How long inventory holds an order's stock while it is being paid, in seconds.
    pub reservation_hold_secs: u64,
    /// When each saga step times out, how often it is re-sent, and when it gives up.
    pub deadlines: Deadlines,
    /// How often the saga looks for steps whose deadline passed, in milliseconds.
    pub deadline_check_ms: u64,
    /// The most lines an order may have.
    pub max_lines: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8107)),
            database_url: None,
            max_connections: platform::db::DEFAULT_MAX_CONNECTIONS,
            cart_url: "http://127.0.0.1:8104".to_owned(),
            payments_url: "http://127.0.0.1:8105".to_owned(),
            call_timeout_ms: 2_000,
            reservation_hold_secs: 900,
            deadlines: Deadlines::default(),
            deadline_check_ms: 500,
            max_lines: 50,
        }
    }
}
