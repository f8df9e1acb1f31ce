//! Identity's configuration.

use std::net::{Ipv4Addr, SocketAddr};

use platform::config::DatabaseUrl;
use platform::net::IpRange;
use serde::{Deserialize, Serialize};

/// How identity runs. Every field has a default suitable for `bazaar up`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The address for the REST API.
    pub listen: SocketAddr,
    /// Identity's own database. Unset means the SQLite file `identity.db` in the shop's
    /// data folder.
    pub database_url: Option<DatabaseUrl>,
    /// The most database connections identity opens.
    pub max_connections: u32,
    /// How long an access token is valid, in seconds.
    pub access_token_ttl_secs: u64,
    /// How long a refresh token is valid, in seconds; each use issues a fresh one.
    pub refresh_token_ttl_secs: u64,
    /// After how many seconds the signing key is replaced by a new one.
    pub signing_key_max_age_secs: u64,
    /// The fewest characters a password may have.
    pub password_min_chars: usize,
    /// The most characters a password may have.
    pub password_max_chars: usize,
    /// Wrong passwords for one account from one network before that network must wait
    /// out the window.
    pub account_failures_per_network: u32,
    /// Wrong passwords for one account from anywhere before everyone must wait out the
    /// window (guessing spread over many networks).
    pub account_failures_overall: u32,
    /// The window failures are counted in, in seconds.
    pub account_failure_window_secs: u64,
    /// Sign-in and registration attempts one client network may make in a burst.
    pub address_attempts_burst: u32,
    /// Milliseconds until a network regains one attempt.
    pub address_attempt_refill_ms: u64,
    /// Peers whose `X-Forwarded-For` is believed: the gateway's addresses or ranges,
    /// e.g. `10.244.0.0/16` for its pods.
    pub trusted_proxies: Vec<IpRange>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8102)),
            database_url: None,
            max_connections: 8,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            signing_key_max_age_secs: 30 * 24 * 3600,
            password_min_chars: 15,
            password_max_chars: 128,
            account_failures_per_network: 10,
            account_failures_overall: 100,
            account_failure_window_secs: 15 * 60,
            address_attempts_burst: 30,
            address_attempt_refill_ms: 1000,
            trusted_proxies: platform::net::loopback(),
        }
    }
}
