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
    /// The longest a session lives, however often it is refreshed: after this many
    /// seconds from signing in, the refresh token is refused and the user signs in
    /// again.
    pub session_max_age_secs: u64,
    /// After how many seconds the signing key is replaced by a new one.
    pub signing_key_max_age_secs: u64,
    /// How long the link that confirms a new account's address works, in seconds;
    /// an account still unconfirmed then is deleted, and its address is free again.
    pub confirmation_ttl_secs: u64,
    /// How often unconfirmed accounts whose link expired are deleted, in seconds.
    pub unconfirmed_sweep_secs: u64,
    /// At most one registration email (a link, or word that the address has an
    /// account) per address in this many seconds; registering it again within them
    /// changes nothing, so nobody can flood an address with mail.
    pub registration_email_secs: u64,
    /// The secret signing keys are sealed with in the database (at least 16
    /// characters; keep it in a secret store, apart from the database's backups).
    /// Unset: keys are stored plain, as in the embedded demo shop. Setting it seals the
    /// keys stored so far at the next start; losing it loses the keys (tokens already
    /// issued stop verifying, and everyone signs in again).
    pub signing_key_secret: Option<platform::config::Secret>,
    /// The shop's forwarding secret (`auth.forwarding_secret`, copied here): with it
    /// set, a forwarded client address is believed only from a request that carries it
    /// in `Bazaar-Forwarded-By`, not from any trusted peer.
    pub forwarding_secret: Option<platform::config::Secret>,
    /// The fewest characters a password may have.
    pub password_min_chars: usize,
    /// The most characters a password may have.
    pub password_max_chars: usize,
    /// Wrong passwords for one account from one network before that network must wait
    /// out the window.
    pub account_failures_per_network: u32,
    /// Wrong passwords for one account from anywhere within the window, after which
    /// networks the owner has not signed in from get one attempt per
    /// `account_slowdown_secs` (guessing spread over many networks is slowed down; the
    /// account is never locked).
    pub account_failures_overall: u32,
    /// Once an account is over `account_failures_overall`: one attempt this often,
    /// account-wide, from networks the owner has not signed in from.
    pub account_slowdown_secs: u64,
    /// The window failures are counted in, in seconds.
    pub account_failure_window_secs: u64,
    /// Sign-in and registration attempts one client network may make in a burst.
    pub address_attempts_burst: u32,
    /// Milliseconds until a network regains one attempt.
    pub address_attempt_refill_ms: u64,
    /// Password hashes (sign-in, registration, password change) run at once; each takes
    /// 19 MiB and a core for tens of milliseconds. 0 means one per core.
    pub password_hashing_threads: usize,
    /// Password hashes that may wait for a thread; beyond that, requests are answered
    /// 503 with `Retry-After` at once.
    pub password_hashing_queue: usize,
    /// Peers whose `X-Forwarded-For` is believed: the gateway's addresses or ranges,
    /// e.g. `10.244.0.0/16` for its pods.
    pub trusted_proxies: Vec<IpRange>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8102)),
            database_url: None,
            max_connections: platform::db::DEFAULT_MAX_CONNECTIONS,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            session_max_age_secs: 90 * 24 * 3600,
            signing_key_max_age_secs: 30 * 24 * 3600,
            confirmation_ttl_secs: 24 * 3600,
            unconfirmed_sweep_secs: 3600,
            registration_email_secs: 300,
            signing_key_secret: None,
            forwarding_secret: None,
            password_min_chars: 15,
            password_max_chars: 128,
            account_failures_per_network: 10,
            account_failures_overall: 100,
            account_slowdown_secs: 10,
            account_failure_window_secs: 15 * 60,
            address_attempts_burst: 30,
            address_attempt_refill_ms: 1000,
            password_hashing_threads: 0,
            password_hashing_queue: 16,
            trusted_proxies: platform::net::loopback(),
        }
    }
}

impl Config {
    /// How many password hashes may run and wait.
    pub fn hashing_limits(&self) -> crate::password::Limits {
        let threads = match self.password_hashing_threads {
            0 => std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            threads => threads,
        };
        crate::password::Limits {
            threads,
            queue: self.password_hashing_queue,
        }
    }
}
