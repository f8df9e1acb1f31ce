//! Identity's configuration.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use platform::config::DatabaseUrl;
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
    /// Sign-in attempts one account may make in a burst.
    pub account_attempts_burst: u32,
    /// Seconds until an account regains one attempt.
    pub account_attempt_refill_secs: u64,
    /// Sign-in and registration attempts one client address may make in a burst.
    pub address_attempts_burst: u32,
    /// Milliseconds until an address regains one attempt.
    pub address_attempt_refill_ms: u64,
    /// Peers whose `X-Forwarded-For` is believed: the gateway's addresses.
    pub trusted_proxies: Vec<IpAddr>,
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
            account_attempts_burst: 10,
            account_attempt_refill_secs: 30,
            address_attempts_burst: 30,
            address_attempt_refill_ms: 1000,
            trusted_proxies: vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
        }
    }
}
